//! The file store on an S3-compatible server: a real moto server (`ncy_testkit::MotoServer`, pinned
//! in the tests' venv by `scripts/test-peers.sh`) on loopback; a report and two backups go through
//! it, and are read back with a separate S3 client. Then an S3 outage: with the server
//! stopped, report and backup jobs are postponed without using their attempts, and once it is
//! started again on its port each completes with its file in the bucket, nothing dead-lettered.

use std::time::Duration;

use crate::support::jobs::{StackEnv, dead_letters, enqueue, get, job, wait_state};
use crate::support::metrics::postponed;
use crate::support::stop;
use futures_util::TryStreamExt;
use ncy_proto::jobs::v1::{self as pb, JobState};
use ncy_testkit::MotoServer;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

const T: Duration = Duration::from_secs(60);
const BUCKET: &str = "ncy-files";

/// A stack whose worker stores its files in `s3://ncy-files/ncy` at `url`.
async fn s3_stack(url: &str, extra: &[(&str, &str)]) -> anyhow::Result<StackEnv> {
    let mut env = StackEnv::new(&[
        ("NCY_WORKER_FILE_STORE", &format!("s3://{BUCKET}/ncy")),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT", url),
        ("AWS_ALLOW_HTTP", "true"),
    ])
    .await?;
    for (k, v) in extra {
        env.set(k, v);
    }
    Ok(env)
}

/// A user who is a member of an organization with a project holding one task assigned to them;
/// returns the user and the project.
async fn fixture(pg: &PgPool) -> anyhow::Result<(Uuid, Uuid)> {
    let (user, org, project) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    sqlx::query("INSERT INTO users (id, email, name) VALUES ($1, 's3@example.com', 'Sam')")
        .bind(user)
        .execute(pg)
        .await?;
    sqlx::query("INSERT INTO organizations (id, name, slug) VALUES ($1, 'S3 Org', 's3-org')")
        .bind(org)
        .execute(pg)
        .await?;
    // A report is built only for a member of the organization that owns the data.
    sqlx::query("INSERT INTO organization_members (organization_id, user_id) VALUES ($1, $2)")
        .bind(org)
        .bind(user)
        .execute(pg)
        .await?;
    sqlx::query("INSERT INTO projects (id, organization_id, name) VALUES ($1, $2, 'Bucket')")
        .bind(project)
        .bind(org)
        .execute(pg)
        .await?;
    sqlx::query("INSERT INTO tasks (project_id, assignee_id, title) VALUES ($1, $2, 'Upload it')")
        .bind(project)
        .bind(user)
        .execute(pg)
        .await?;
    Ok((user, project))
}

/// A csv `project_tasks` report of `project` for `user`, with the default attempts and backoff.
fn report(user: Uuid, project: Uuid) -> pb::EnqueueRequest {
    let payload = serde_json::json!({"reportType": "project_tasks", "format": "csv",
        "userId": user.to_string(), "projectId": project.to_string()});
    job("report", "generate-report", &payload.to_string())
}

/// A client of the bucket of its own (signed requests, as moto wants).
fn bucket(url: &str) -> anyhow::Result<AmazonS3> {
    Ok(AmazonS3Builder::new()
        .with_endpoint(url)
        .with_allow_http(true)
        .with_bucket_name(BUCKET)
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .build()?)
}

async fn read(s3: &AmazonS3, key: &str) -> anyhow::Result<Vec<u8>> {
    Ok(s3
        .get(&ObjectPath::from(key))
        .await?
        .bytes()
        .await?
        .to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reports_and_backups_go_to_an_s3_compatible_store() -> anyhow::Result<()> {
    let moto = MotoServer::start(&[BUCKET]).await?;
    let url = moto.url();
    let env = s3_stack(&url, &[]).await?;
    let (user, project) = fixture(&env.db.pool().await?).await?;
    let (mut c, sched) = env.scheduler().await?;
    let work = env.worker().await?;

    let id = enqueue(&mut c, report(user, project)).await?;
    wait_state(&c, &id, JobState::Completed, T).await;
    let result: Value = serde_json::from_str(&get(&mut c, &id).await?.result_json)?;
    let key = result["key"].as_str().expect("key");
    let s3 = bucket(&url)?;
    let body = String::from_utf8(read(&s3, &format!("ncy/{key}")).await?)?;
    assert!(
        body.starts_with("Title,Status,") && body.contains("Upload it,todo,0,Sam,s3@example.com"),
        "{body}"
    );

    let mut backups = Vec::new();
    for _ in 0..2 {
        let id = enqueue(
            &mut c,
            job("cleanup", "backup-database", r#"{"keepLast":1}"#),
        )
        .await?;
        wait_state(&c, &id, JobState::Completed, T).await;
        let r: Value = serde_json::from_str(&get(&mut c, &id).await?.result_json)?;
        backups.push(format!("ncy/{}", r["key"].as_str().expect("key")));
    }
    let listed: Vec<String> = s3
        .list(Some(&ObjectPath::from("ncy/backups")))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await?;
    assert_eq!(listed, backups[1..], "only the newest is kept");
    let dump = read(&s3, &backups[1]).await?;
    assert!(dump.starts_with(b"PGDMP"), "a custom-format dump");
    stop(work).await?;
    stop(sched).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reports_and_backups_wait_out_an_s3_outage_and_are_stored_once_it_is_back()
-> anyhow::Result<()> {
    let moto = MotoServer::start(&[BUCKET]).await?;
    // The outage is a closed gate in front of moto: moto keeps its bucket, so the store comes
    // back as it was (restarting moto would answer NoSuchBucket until the bucket is made again).
    let mut gate = ncy_testkit::TcpGate::open_to(([127, 0, 0, 1], moto.port).into()).await?;
    let url = format!("http://127.0.0.1:{}", gate.port);
    // Jobs resume within 2 s of the server's return instead of up to 30 s (the default).
    let env = s3_stack(&url, &[("NCY_JOBS_OUTAGE_MAX_DELAY_MS", "2000")]).await?;
    let (user, project) = fixture(&env.db.pool().await?).await?;
    let (mut c, sched) = env.scheduler().await?;
    let (work, admin) = env.worker_with_admin().await?;

    // The counter is the process's: read as a delta from before the outage.
    let report_before = postponed(admin, "report", "object_store").await;
    let cleanup_before = postponed(admin, "cleanup", "object_store").await;
    gate.close();
    // The default attempts (3) and backoff: without postponing, three failures are a dead letter.
    let report = enqueue(&mut c, report(user, project)).await?;
    let backup = enqueue(
        &mut c,
        job("cleanup", "backup-database", r#"{"keepLast":1}"#),
    )
    .await?;
    // Each fails against the stopped server (once object_store's own retries give up) and waits
    // as FAILED with the error, its attempt given back.
    for id in [&report, &backup] {
        ncy_testkit::assert_eventually(&format!("job {id} postponed"), T, || {
            let (mut c, id) = (c.clone(), id.clone());
            async move {
                get(&mut c, &id).await.is_ok_and(|j| {
                    j.state() == JobState::Failed
                        && j.attempts_made == 0
                        && j.last_error
                            .starts_with(&format!("file store s3://{BUCKET}/ncy: cannot write"))
                })
            }
        })
        .await;
    }
    // The outage lasts until each job has failed as often as it has attempts.
    ncy_testkit::assert_eventually("three failures of each job", T, || async {
        postponed(admin, "report", "object_store").await >= report_before + 3.0
            && postponed(admin, "cleanup", "object_store").await >= cleanup_before + 3.0
    })
    .await;
    for id in [&report, &backup] {
        let j = get(&mut c, id).await?;
        assert_ne!(j.state(), JobState::Dead, "{j:?}");
        assert!(j.attempts_made <= 1, "no attempt used up: {j:?}");
    }
    assert!(dead_letters(&mut c).await?.is_empty());

    // Back, as it was.
    gate.open().await?;
    let s3 = bucket(&url)?;
    for id in [&report, &backup] {
        wait_state(&c, id, JobState::Completed, T).await;
        let j = get(&mut c, id).await?;
        assert_eq!(j.attempts_made, 1, "only the attempt that stored it: {j:?}");
        let result: Value = serde_json::from_str(&j.result_json)?;
        let key = format!("ncy/{}", result["key"].as_str().expect("key"));
        assert!(!read(&s3, &key).await?.is_empty(), "{key} is in the bucket");
    }
    assert!(dead_letters(&mut c).await?.is_empty(), "nothing lost");
    stop(work).await?;
    stop(sched).await
}
