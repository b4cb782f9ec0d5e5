//! generate-report failures end to end: a missing project, a user outside the data's
//! organization and a `userId` that is not the job's owner (final), and an unwritable or full file store and a database that is down
//! (retried, then dead-lettered with the message that says which).

use crate::support::jobs::{dead_letters, enqueue, get, wait_state};
use crate::support::report::{T, fixture, report, run_report, stack};
use crate::support::stop;
use ncy_proto::jobs::v1::JobState;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_report_for_a_user_outside_the_organization_is_dead_lettered_at_once_and_sends_nothing()
-> anyhow::Result<()> {
    let files = tempfile::tempdir()?;
    let env = stack(files.path()).await?;
    let pg = env.db.pool().await?;
    let fx = fixture(&pg).await?;
    // Eve owns another organization; Vic is a mere viewer of the fixture's one.
    let (eve, other_org, vic) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    sqlx::query(
        "INSERT INTO users (id, email, name) VALUES ($1, 'eve@example.com', 'Eve'),
                                                   ($2, 'vic@example.com', 'Vic')",
    )
    .bind(eve)
    .bind(vic)
    .execute(&pg)
    .await?;
    sqlx::query("INSERT INTO organizations (id, name, slug) VALUES ($1, 'Evil', 'evil')")
        .bind(other_org)
        .execute(&pg)
        .await?;
    sqlx::query(
        "INSERT INTO organization_members (organization_id, user_id, role)
         VALUES ($1, $2, 'owner'), ($3, $4, 'viewer')",
    )
    .bind(other_org)
    .bind(eve)
    .bind(fx.org)
    .bind(vic)
    .execute(&pg)
    .await?;
    let (mut c, sched) = env.scheduler().await?;
    let work = env.worker().await?;

    let project = serde_json::json!({"reportType": "project_tasks", "format": "csv",
        "userId": eve.to_string(), "projectId": fx.project.to_string()});
    let org = serde_json::json!({"reportType": "organization_activity", "format": "excel",
        "userId": eve.to_string(), "organizationId": fx.org.to_string()});
    let cases = [
        (
            project,
            format!(
                "user {eve} may not read project {}: not a member of its organization",
                fx.project
            ),
        ),
        (
            org,
            format!(
                "user {eve} may not read organization {}: not a member of it",
                fx.org
            ),
        ),
    ];
    for (payload, error) in cases {
        let id = enqueue(&mut c, report(&payload, 3)).await?;
        assert_dead_at_once(&mut c, &id, &error).await?;
    }
    assert!(
        !files.path().join("reports").exists(),
        "no file was written"
    );
    let notified: i64 = sqlx::query_scalar("SELECT count(*) FROM notifications WHERE user_id = $1")
        .bind(eve)
        .fetch_one(&pg)
        .await?;
    assert_eq!(notified, 0, "no notification row");
    assert!(
        env.room_history(eve).await?.is_empty(),
        "nothing was pushed to the user's room"
    );

    // Any member may read, a viewer included.
    let result = run_report(
        &mut c,
        serde_json::json!({"reportType": "project_tasks", "format": "csv",
            "userId": vic.to_string(), "projectId": fx.project.to_string()}),
    )
    .await?;
    assert_eq!(result["rows"], 5, "{result}");
    stop(work).await?;
    stop(sched).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_project_is_dead_lettered_without_retries() -> anyhow::Result<()> {
    let files = tempfile::tempdir()?;
    let env = stack(files.path()).await?;
    let fx = fixture(&env.db.pool().await?).await?;
    let (mut c, sched) = env.scheduler().await?;
    let work = env.worker().await?;
    let missing = Uuid::new_v4();
    let payload = serde_json::json!({"reportType": "project_tasks", "format": "pdf",
        "userId": fx.user.to_string(), "projectId": missing.to_string()});
    let id = enqueue(&mut c, report(&payload, 3)).await?;
    assert_dead_at_once(&mut c, &id, &format!("project {missing} does not exist")).await?;
    assert!(
        !files.path().join("reports").exists(),
        "no file was written"
    );
    stop(work).await?;
    stop(sched).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unwritable_file_store_is_retried_then_dead_lettered_with_its_message()
-> anyhow::Result<()> {
    // A store directory whose parent is a regular file cannot be created, even by root.
    let tmp = tempfile::tempdir()?;
    let plain = tmp.path().join("plain-file");
    std::fs::write(&plain, "not a directory")?;
    let store = plain.join("files");
    let env = stack(&store).await?;
    let fx = fixture(&env.db.pool().await?).await?;
    let (mut c, sched) = env.scheduler().await?;
    let work = env.worker().await?;
    let payload = serde_json::json!({"reportType": "project_tasks", "format": "csv",
        "userId": fx.user.to_string(), "projectId": fx.project.to_string()});
    let id = enqueue(&mut c, report(&payload, 2)).await?;
    wait_state(&c, &id, JobState::Dead, T).await;
    let dead = get(&mut c, &id).await?;
    assert_eq!(dead.attempts_made, 2, "retried per its policy");
    assert!(
        dead.last_error
            .starts_with(&format!("file store {}: not writable:", store.display())),
        "{}",
        dead.last_error
    );
    let letters = dead_letters(&mut c).await?;
    assert!(
        !letters[0].non_retryable && letters[0].job_id == id,
        "{letters:?}"
    );
    stop(work).await?;
    stop(sched).await
}

/// Job `id` ends DEAD after one attempt with `error`, and its dead letter says it is not worth a
/// retry, with the same error.
async fn assert_dead_at_once(
    c: &mut crate::support::jobs::Client,
    id: &str,
    error: &str,
) -> anyhow::Result<()> {
    wait_state(c, id, JobState::Dead, T).await;
    let dead = get(c, id).await?;
    assert_eq!(dead.attempts_made, 1, "no retry: {id}");
    assert_eq!(dead.last_error, error);
    let letters = dead_letters(c).await?;
    let letter = letters
        .iter()
        .find(|l| l.job_id == id)
        .ok_or_else(|| anyhow::anyhow!("no dead letter for {id}: {letters:?}"))?;
    assert!(letter.non_retryable, "{letter:?}");
    assert_eq!(letter.error, error);
    Ok(())
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_file_store_is_retried_then_dead_lettered_with_its_message() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let store = tmp.path().join("small");
    std::fs::create_dir(&store)?;
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&store)
        .output()?;
    assert!(
        mounted.status.success(),
        "this test mounts a 64 KiB tmpfs (needs root): {}",
        String::from_utf8_lossy(&mounted.stderr)
    );
    let _guard = Tmpfs(store.clone());
    // Fill it up, leaving no room for a report.
    let fill = std::fs::write(store.join("filler"), vec![7u8; 128 * 1024]);
    assert!(fill.is_err(), "the tmpfs is full");
    let env = stack(&store).await?;
    let fx = fixture(&env.db.pool().await?).await?;
    let (mut c, sched) = env.scheduler().await?;
    let work = env.worker().await?;
    let payload = serde_json::json!({"reportType": "project_tasks", "format": "pdf",
        "userId": fx.user.to_string(), "projectId": fx.project.to_string()});
    let id = enqueue(&mut c, report(&payload, 2)).await?;
    wait_state(&c, &id, JobState::Dead, T).await;
    let dead = get(&mut c, &id).await?;
    assert_eq!(dead.attempts_made, 2, "retried per its policy");
    let prefix = format!(
        "file store {}: cannot write reports/{}/",
        store.display(),
        fx.user
    );
    assert!(
        dead.last_error.starts_with(&prefix) && dead.last_error.contains("No space left"),
        "{}",
        dead.last_error
    );
    stop(work).await?;
    stop(sched).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_that_is_down_is_retried_then_dead_lettered() -> anyhow::Result<()> {
    let files = tempfile::tempdir()?;
    let mut env = stack(files.path()).await?;
    let fx = fixture(&env.db.pool().await?).await?;
    let (mut c, sched) = env.scheduler().await?;
    // This worker's database is a port where nothing listens.
    let port = ncy_testkit::free_port();
    env.set(
        "DATABASE_URL",
        &format!("postgres://postgres@127.0.0.1:{port}/nowhere"),
    );
    // An unreachable database is an outage, which the worker waits out without using attempts
    // for NCY_JOBS_OUTAGE_GRACE_SECS; with the grace 0 (postponing off) this is the path every
    // outage takes once its grace is over: each attempt fails and counts, then the dead letter.
    env.set("NCY_JOBS_OUTAGE_GRACE_SECS", "0");
    let work = env.worker().await?;
    let payload = serde_json::json!({"reportType": "project_tasks", "format": "csv",
        "userId": fx.user.to_string(), "projectId": fx.project.to_string()});
    let id = enqueue(&mut c, report(&payload, 2)).await?;
    wait_state(&c, &id, JobState::Dead, T).await;
    let dead = get(&mut c, &id).await?;
    assert_eq!(dead.attempts_made, 2, "retried per its policy");
    assert!(
        dead.last_error.starts_with("database error:"),
        "{}",
        dead.last_error
    );
    assert!(
        !files.path().join("reports").exists(),
        "no file was written"
    );
    stop(work).await?;
    stop(sched).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_report_for_another_user_than_the_jobs_owner_is_dead_lettered_at_once_and_sends_nothing()
-> anyhow::Result<()> {
    let files = tempfile::tempdir()?;
    let env = stack(files.path()).await?;
    let pg = env.db.pool().await?;
    // Ada and Bob are both members of the fixture's organization: membership alone lets either
    // read its project, so only the owner rule stops Bob's job from building Ada's report.
    let fx = fixture(&pg).await?;
    let bob: Uuid = sqlx::query_scalar("SELECT id FROM users WHERE email = 'bob@example.com'")
        .fetch_one(&pg)
        .await?;
    let (mut c, sched) = env.scheduler().await?;
    let work = env.worker().await?;

    let for_ada = serde_json::json!({"reportType": "project_tasks", "format": "csv",
        "userId": fx.user.to_string(), "projectId": fx.project.to_string()});
    let mut req = report(&for_ada, 3);
    req.owner_user_id = bob.to_string();
    let id = enqueue(&mut c, req).await?;
    let error = format!(
        "userId {} is not the job's owner {bob}: a report is built only for the user who asked \
         for it",
        fx.user
    );
    assert_dead_at_once(&mut c, &id, &error).await?;
    assert!(
        !files.path().join("reports").exists(),
        "no file was written"
    );
    for user in [fx.user, bob] {
        let notified: i64 =
            sqlx::query_scalar("SELECT count(*) FROM notifications WHERE user_id = $1")
                .bind(user)
                .fetch_one(&pg)
                .await?;
        assert_eq!(notified, 0, "no notification row for {user}");
    }
    // Ada hears nothing; Bob, the job's owner, only that his job failed (no progress was made).
    assert!(
        env.room_history(fx.user).await?.is_empty(),
        "nothing was pushed to Ada's room"
    );
    assert_eq!(room_events(&env.room_history(bob).await?)?, ["job_failed"]);

    // The owner's own report, and an ownerless one (an internal service's), are built as before.
    let mut own = report(&for_ada, 1);
    own.owner_user_id = fx.user.to_string();
    let id = enqueue(&mut c, own).await?;
    wait_state(&c, &id, JobState::Completed, T).await;
    let result: serde_json::Value = serde_json::from_str(&get(&mut c, &id).await?.result_json)?;
    assert_eq!(result["rows"], 5, "{result}");
    let result = run_report(&mut c, for_ada).await?;
    assert_eq!(result["rows"], 5, "{result}");
    stop(work).await?;
    stop(sched).await
}

/// The event names of a room's history entries (each entry's fields hold the message's JSON).
fn room_events(history: &[redis::Value]) -> anyhow::Result<Vec<String>> {
    let mut events = Vec::new();
    for entry in history {
        let (_, fields): (String, Vec<String>) = redis::from_redis_value(entry.clone())?;
        for field in fields {
            if let Ok(message) = serde_json::from_str::<serde_json::Value>(&field)
                && let Some(event) = message["event"].as_str()
            {
                events.push(event.to_owned());
            }
        }
    }
    Ok(events)
}
