//! generate-report end to end: enqueued through the job-scheduler's gRPC API, run by a worker on
//! the real PostgreSQL, Redis and a temporary file-store directory; the files are opened with
//! independent readers (csv, calamine, lopdf) and their rows checked against the inserted data.

use std::collections::BTreeSet;

use crate::support::jobs::enqueue;
use crate::support::report::{T, fixture, read_file, report, run_report, stack};
use crate::support::stop;
use futures_util::StreamExt;
use ncy_proto::jobs::v1::{self as pb, JobState};
use serde_json::Value;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_csv_project_report_is_stored_with_progress_and_the_user_is_notified()
-> anyhow::Result<()> {
    let files = tempfile::tempdir()?;
    let env = stack(files.path()).await?;
    let pg = env.db.pool().await?;
    let fx = fixture(&pg).await?;
    let (mut c, sched) = env.scheduler().await?;
    let payload = serde_json::json!({"reportType": "project_tasks", "format": "csv",
        "userId": fx.user.to_string(), "projectId": fx.project.to_string()});
    let id = enqueue(&mut c, report(&payload, 1)).await?;
    // Watching before a worker exists: every progress event of the run is on the stream.
    let mut events = c
        .watch_job(pb::WatchJobRequest { job_id: id.clone() })
        .await?
        .into_inner();
    let work = env.worker().await?;
    let mut seen = Vec::new();
    while let Some(ev) = tokio::time::timeout(T, events.next()).await? {
        seen.push(ev?);
    }
    let progress: Vec<(i32, String)> = seen
        .iter()
        .filter(|e| e.r#type() == pb::JobEventType::Progress)
        .map(|e| (e.progress, e.message.clone()))
        .collect();
    let percents: Vec<i32> = progress.iter().map(|p| p.0).collect();
    assert_eq!(percents, [10, 50, 80, 100], "{progress:?}");
    let last = seen.last().expect("events");
    assert_eq!(last.state(), JobState::Completed, "{seen:?}");

    let result: Value = serde_json::from_str(&last.result_json)?;
    let key = result["key"].as_str().expect("key").to_owned();
    assert!(
        key.starts_with(&format!(
            "reports/{}/project_tasks-{}-",
            fx.user, fx.project
        )) && key.ends_with(".csv"),
        "{key}"
    );
    assert_eq!(
        result["url"],
        format!("https://app.example.com/files/{key}")
    );
    assert_eq!(
        (result["rows"].as_u64(), result["format"].as_str()),
        (Some(5), Some("csv"))
    );
    let bytes = read_file(files.path(), &result)?;
    let mut reader = csv::Reader::from_reader(bytes.as_slice());
    assert_eq!(
        reader.headers()?.iter().collect::<Vec<_>>(),
        [
            "Title",
            "Status",
            "Priority",
            "Assignee",
            "Assignee email",
            "Due",
            "Created"
        ]
    );
    let mut rows = BTreeSet::new();
    for rec in reader.records() {
        let rec = rec?;
        rows.insert((rec[0].to_owned(), rec[1].to_owned(), rec[4].to_owned()));
    }
    assert_eq!(rows, fx.tasks);

    // The REPORT_READY notification row, and the same notification in the user's room.
    let (message, metadata): (String, Value) = sqlx::query_as(
        "SELECT message, metadata FROM notifications WHERE user_id = $1 AND type = 'REPORT_READY'",
    )
    .bind(fx.user)
    .fetch_one(&pg)
    .await?;
    assert!(message.contains("ready"), "{message}");
    assert_eq!(metadata["url"], result["url"]);
    assert_eq!(metadata["format"], "csv");
    assert_eq!(metadata["rows"], 5);
    assert!(key.ends_with(metadata["fileName"].as_str().expect("fileName")));
    let history = format!("{:?}", env.room_history(fx.user).await?);
    assert!(
        history.contains("REPORT_READY") && history.contains(result["url"].as_str().expect("url")),
        "{history}"
    );
    stop(work).await?;
    stop(sched).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn xlsx_and_pdf_project_reports_hold_every_task_and_the_summaries() -> anyhow::Result<()> {
    use calamine::Reader;
    let files = tempfile::tempdir()?;
    let env = stack(files.path()).await?;
    let fx = fixture(&env.db.pool().await?).await?;
    let (mut c, sched) = env.scheduler().await?;
    let work = env.worker().await?;
    let payload = |format: &str| {
        serde_json::json!({"reportType": "project_tasks", "format": format,
            "userId": fx.user.to_string(), "projectId": fx.project.to_string()})
    };

    let xlsx = run_report(&mut c, payload("excel")).await?;
    assert!(
        xlsx["key"].as_str().expect("key").ends_with(".xlsx"),
        "{xlsx}"
    );
    let bytes = read_file(files.path(), &xlsx)?;
    let mut book = calamine::Xlsx::new(std::io::Cursor::new(bytes))?;
    assert_eq!(book.sheet_names(), ["Tasks", "Summary"]);
    let tasks = book.worksheet_range("Tasks")?;
    let mut rows = tasks.rows();
    let header: Vec<String> = rows
        .next()
        .expect("header")
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(header[..2], ["Title", "Status"]);
    let found: BTreeSet<(String, String, String)> = rows
        .map(|r| (r[0].to_string(), r[1].to_string(), r[4].to_string()))
        .collect();
    assert_eq!(found, fx.tasks);
    let summary = book.worksheet_range("Summary")?;
    let cells: Vec<Vec<String>> = summary
        .rows()
        .map(|r| r.iter().map(|c| c.to_string()).collect())
        .collect();
    assert_eq!(cells[0][0], "Tasks of project Apollo");
    // By status: todo 2; by assignee: Bob has 2 tasks, none done; Ada 2, one done.
    assert!(cells.iter().any(|r| r[..2] == ["todo", "2"]), "{cells:?}");
    assert!(
        cells
            .iter()
            .any(|r| r[..3] == ["Bob Builder <bob@example.com>", "2", "0"]),
        "{cells:?}"
    );
    assert!(
        cells
            .iter()
            .any(|r| r[..3] == ["Ada Lovelace <ada@example.com>", "2", "1"]),
        "{cells:?}"
    );

    let pdf = run_report(&mut c, payload("pdf")).await?;
    let bytes = read_file(files.path(), &pdf)?;
    assert!(bytes.starts_with(b"%PDF-"));
    let doc = lopdf::Document::load_mem(&bytes)?;
    let pages: Vec<u32> = doc.get_pages().keys().copied().collect();
    let text = doc.extract_text(&pages)?;
    for (title, status, email) in &fx.tasks {
        assert!(text.contains(title.as_str()), "{title} in {text}");
        assert!(
            text.contains(status.as_str()) && text.contains(email.as_str()),
            "{text}"
        );
    }
    assert!(
        text.contains("By assignee") && text.contains("Tasks of project Apollo"),
        "{text}"
    );
    stop(work).await?;
    stop(sched).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_organization_activity_report_counts_per_member_in_the_period() -> anyhow::Result<()> {
    let files = tempfile::tempdir()?;
    let env = stack(files.path()).await?;
    let pg = env.db.pool().await?;
    let fx = fixture(&pg).await?;
    // A project and a task from last year fall outside the period.
    let old = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO projects (id, organization_id, name, created_at) VALUES ($1, $2, 'Old', now() - interval '400 days')",
    )
    .bind(old)
    .bind(fx.org)
    .execute(&pg)
    .await?;
    sqlx::query(
        "INSERT INTO tasks (project_id, title, created_at) VALUES ($1, 'Ancient', now() - interval '400 days')",
    )
    .bind(old)
    .execute(&pg)
    .await?;
    let (mut c, sched) = env.scheduler().await?;
    let work = env.worker().await?;
    let now_ms = chrono_now_ms();
    let result = run_report(
        &mut c,
        serde_json::json!({"reportType": "organization_activity", "format": "csv",
            "userId": fx.user.to_string(), "organizationId": fx.org.to_string(),
            "fromMs": now_ms - 7 * 24 * 3600 * 1000, "toMs": now_ms + 60_000}),
    )
    .await?;
    assert_eq!(result["rows"], 2, "{result}");
    let bytes = read_file(files.path(), &result)?;
    let mut reader = csv::Reader::from_reader(bytes.as_slice());
    let rows: Vec<Vec<String>> = reader
        .records()
        .map(|r| r.map(|r| r.iter().map(str::to_owned).collect()))
        .collect::<Result<_, _>>()?;
    // Member, Email, Role, Projects created, Tasks assigned, Tasks completed.
    assert_eq!(
        rows,
        [
            ["Ada Lovelace", "ada@example.com", "owner", "1", "2", "1"],
            ["Bob Builder", "bob@example.com", "member", "0", "2", "0"],
        ]
    );
    assert!(
        result["key"]
            .as_str()
            .expect("key")
            .contains(&format!("/organization_activity-{}-", fx.org))
    );
    stop(work).await?;
    stop(sched).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_task_titled_like_a_formula_is_text_in_the_csv_and_xlsx_reports() -> anyhow::Result<()> {
    use calamine::Reader;
    const FORMULA: &str = r#"=HYPERLINK("http://x","y")"#;
    let files = tempfile::tempdir()?;
    let env = stack(files.path()).await?;
    let pg = env.db.pool().await?;
    let fx = fixture(&pg).await?;
    for title in [FORMULA, "-1+2", "@SUM(A1:A9)"] {
        sqlx::query("INSERT INTO tasks (project_id, title, priority) VALUES ($1, $2, 4)")
            .bind(fx.project)
            .bind(title)
            .execute(&pg)
            .await?;
    }
    let (mut c, sched) = env.scheduler().await?;
    let work = env.worker().await?;
    let payload = |format: &str| {
        serde_json::json!({"reportType": "project_tasks", "format": format,
            "userId": fx.user.to_string(), "projectId": fx.project.to_string()})
    };

    let csv = run_report(&mut c, payload("csv")).await?;
    let bytes = read_file(files.path(), &csv)?;
    let mut reader = csv::Reader::from_reader(bytes.as_slice());
    let rows: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>()?;
    let titles: BTreeSet<&str> = rows.iter().map(|r| &r[0]).collect();
    for quoted in [r#"'=HYPERLINK("http://x","y")"#, "'-1+2", "'@SUM(A1:A9)"] {
        assert!(titles.contains(quoted), "{quoted} in {titles:?}");
    }
    assert!(!titles.contains(FORMULA), "{titles:?}");
    // The other titles are as typed, and the numeric column holds bare numbers.
    assert!(titles.contains("Design the rocket"), "{titles:?}");
    for r in &rows {
        assert!(
            r[2].parse::<i64>().is_ok(),
            "priority {:?} is a number",
            &r[2]
        );
    }

    // The xlsx has the title as typed, as a string cell: no formula anywhere on the sheet.
    let xlsx = run_report(&mut c, payload("excel")).await?;
    let bytes = read_file(files.path(), &xlsx)?;
    let mut book = calamine::Xlsx::new(std::io::Cursor::new(bytes))?;
    let tasks = book.worksheet_range("Tasks")?;
    assert!(
        tasks
            .rows()
            .any(|r| r[0] == calamine::Data::String(FORMULA.to_owned())),
        "{tasks:?}"
    );
    let formulas = book.worksheet_formula("Tasks")?;
    assert!(
        formulas.used_cells().all(|(_, _, f)| f.is_empty()),
        "{formulas:?}"
    );
    stop(work).await?;
    stop(sched).await
}

fn chrono_now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default(),
    )
    .unwrap_or_default()
}
