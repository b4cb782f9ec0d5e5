//! The file store on an S3-compatible server: a real moto server (pinned in the tests' venv by
//! `scripts/test-peers.sh`) on loopback; a report and two backups go through it, and are read back
//! with a separate S3 client.
mod jobs_support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::TryStreamExt;
use jobs_support::{StackEnv, enqueue, get, job, stop, wait_state};
use ncy_proto::jobs::v1::JobState;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::Value;
use uuid::Uuid;

const T: Duration = Duration::from_secs(60);
const BUCKET: &str = "ncy-files";

/// The moto server, killed (by its own handle) when dropped.
struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts moto on a free loopback port; returns it and its URL.
async fn moto() -> anyhow::Result<(Moto, String)> {
    let port = ncy_testkit::free_port();
    let child = Command::new(ncy_testkit::moto_server_bin()?)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let server = Moto(child);
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    ncy_testkit::assert_eventually("moto answers", T, || {
        let (http, url) = (http.clone(), url.clone());
        async move { http.get(&url).send().await.is_ok() }
    })
    .await;
    let created = http.put(format!("{url}/{BUCKET}")).send().await?;
    anyhow::ensure!(
        created.status().is_success(),
        "create bucket: {}",
        created.status()
    );
    Ok((server, url))
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
    let (_moto, url) = moto().await?;
    let env = StackEnv::new(&[
        ("NCY_WORKER_FILE_STORE", &format!("s3://{BUCKET}/ncy")),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT", &url),
        ("AWS_ALLOW_HTTP", "true"),
    ])
    .await?;
    let pg = env.db.pool().await?;
    let (user, org, project) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    sqlx::query("INSERT INTO users (id, email, name) VALUES ($1, 's3@example.com', 'Sam')")
        .bind(user)
        .execute(&pg)
        .await?;
    sqlx::query("INSERT INTO organizations (id, name, slug) VALUES ($1, 'S3 Org', 's3-org')")
        .bind(org)
        .execute(&pg)
        .await?;
    // A report is built only for a member of the organization that owns the data.
    sqlx::query("INSERT INTO organization_members (organization_id, user_id) VALUES ($1, $2)")
        .bind(org)
        .bind(user)
        .execute(&pg)
        .await?;
    sqlx::query("INSERT INTO projects (id, organization_id, name) VALUES ($1, $2, 'Bucket')")
        .bind(project)
        .bind(org)
        .execute(&pg)
        .await?;
    sqlx::query("INSERT INTO tasks (project_id, assignee_id, title) VALUES ($1, $2, 'Upload it')")
        .bind(project)
        .bind(user)
        .execute(&pg)
        .await?;
    let (mut c, sched) = env.scheduler().await?;
    let work = env.worker().await?;

    let payload = serde_json::json!({"reportType": "project_tasks", "format": "csv",
        "userId": user.to_string(), "projectId": project.to_string()});
    let id = enqueue(
        &mut c,
        job("report", "generate-report", &payload.to_string()),
    )
    .await?;
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
