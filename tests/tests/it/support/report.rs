//! Shared setup of the report tests: a stack whose file store is a temporary directory, and a
//! fixture organization with members, a project and tasks.
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use super::jobs::{Client, StackEnv, enqueue, get, job, retried, wait_state};
use ncy_proto::jobs::v1::{self as pb, JobState};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

pub const T: Duration = Duration::from_secs(30);

/// What the fixture inserted.
pub struct Fixture {
    pub user: Uuid,
    pub org: Uuid,
    pub project: Uuid,
    /// (title, status, assignee email) of each task.
    pub tasks: BTreeSet<(String, String, String)>,
}

/// An organization with two members, a project and five tasks (one unassigned).
pub async fn fixture(pg: &PgPool) -> anyhow::Result<Fixture> {
    let (ada, bob, org, project) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    sqlx::query(
        "INSERT INTO users (id, email, name) VALUES ($1, 'ada@example.com', 'Ada Lovelace'),
                                                   ($2, 'bob@example.com', 'Bob Builder')",
    )
    .bind(ada)
    .bind(bob)
    .execute(pg)
    .await?;
    sqlx::query("INSERT INTO organizations (id, name, slug) VALUES ($1, 'Acme', 'acme')")
        .bind(org)
        .execute(pg)
        .await?;
    sqlx::query(
        "INSERT INTO organization_members (organization_id, user_id, role)
         VALUES ($1, $2, 'owner'), ($1, $3, 'member')",
    )
    .bind(org)
    .bind(ada)
    .bind(bob)
    .execute(pg)
    .await?;
    sqlx::query(
        "INSERT INTO projects (id, organization_id, name, created_by)
         VALUES ($1, $2, 'Apollo', $3)",
    )
    .bind(project)
    .bind(org)
    .bind(ada)
    .execute(pg)
    .await?;
    let rows = [
        ("Design the rocket", "done", Some(ada)),
        ("Build the engine", "in_progress", Some(bob)),
        ("Test, then \"launch\"", "todo", Some(bob)),
        ("Write the press release", "review", Some(ada)),
        ("Find a pilot", "todo", None),
    ];
    let mut tasks = BTreeSet::new();
    for (i, (title, status, who)) in rows.iter().enumerate() {
        sqlx::query(
            "INSERT INTO tasks (project_id, assignee_id, title, status, priority)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(project)
        .bind(*who)
        .bind(*title)
        .bind(*status)
        .bind(i16::try_from(i % 5)?)
        .execute(pg)
        .await?;
        let email = match who {
            Some(id) if *id == ada => "ada@example.com",
            Some(_) => "bob@example.com",
            None => "",
        };
        tasks.insert(((*title).to_owned(), (*status).to_owned(), email.to_owned()));
    }
    Ok(Fixture {
        user: ada,
        org,
        project,
        tasks,
    })
}

/// A stack whose file store is a fresh temporary directory.
pub async fn stack(files: &Path) -> anyhow::Result<StackEnv> {
    StackEnv::new(&[
        ("NCY_WORKER_FILE_STORE", &files.display().to_string()),
        ("NCY_REPORT_LINK_BASE_URL", "https://app.example.com/files/"),
    ])
    .await
}

pub fn report(payload: &Value, attempts: i32) -> pb::EnqueueRequest {
    retried(
        job("report", "generate-report", &payload.to_string()),
        attempts,
        100,
    )
}

/// Runs one report to completion; returns its result JSON.
pub async fn run_report(c: &mut Client, payload: Value) -> anyhow::Result<Value> {
    let id = enqueue(c, report(&payload, 1)).await?;
    wait_state(c, &id, JobState::Completed, T).await;
    Ok(serde_json::from_str(&get(c, &id).await?.result_json)?)
}

pub fn read_file(files: &Path, result: &Value) -> anyhow::Result<Vec<u8>> {
    let key = result["key"].as_str().expect("key");
    let bytes = std::fs::read(files.join(key))?;
    assert_eq!(result["bytes"], bytes.len(), "{result}");
    Ok(bytes)
}
