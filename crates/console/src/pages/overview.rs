//! The overview, `/`: every queue's counts by state and whether it is paused, each number linking
//! to where those jobs are listed. The table is the fragment `live.rs` re-renders for the
//! page's Server-Sent Events, so the page works without JavaScript and stays fresh with it.
//! Above it, the throughput charts (`history.rs`), drawn at page load from a history fetched at
//! most once a minute.
use std::sync::Arc;

use askama::Template;
use axum::{
    Extension,
    extract::{Query, State},
    response::Html,
};
use ncy_proto::jobs::v1::{QueueStatsRequest, QueueSummary};
use serde::Deserialize;

use super::{Nav, render, time, url_part};
use crate::{
    AppState,
    access::CurrentUser,
    error::ConsoleError,
    upstream::{self, JobsClient},
};

/// One queue's row.
pub struct QueueRow {
    /// The queue's name.
    pub name: String,
    /// The name as a URL part.
    pub url: String,
    /// Whether workers are told not to start its jobs.
    pub paused: bool,
    /// Whether its rate limit holds jobs back right now.
    pub limited: bool,
    /// Counts by state, in the table's column order: waiting, delayed, active, completed,
    /// failed, cancelled, dead letters.
    pub counts: [(&'static str, u64); 7],
    /// Workers seen on it.
    pub workers: i32,
    /// When the oldest waiting job was enqueued.
    pub oldest_waiting: String,
}

impl QueueRow {
    /// The row of one queue summary.
    pub fn of(q: &QueueSummary) -> Self {
        Self {
            name: q.queue.clone(),
            url: url_part(&q.queue),
            paused: q.paused,
            limited: q.rate_limit.as_ref().is_some_and(|r| r.limited),
            counts: [
                ("waiting", q.waiting),
                ("delayed", q.delayed),
                ("active", q.active),
                ("completed", q.completed),
                ("failed", q.failed),
                ("cancelled", q.cancelled),
                ("dead", q.dead_letters),
            ],
            workers: q.workers,
            oldest_waiting: time(q.oldest_waiting_at_ms),
        }
    }
}

/// The live table.
#[derive(Template)]
#[template(path = "overview_table.html")]
pub struct OverviewTable {
    queues: Vec<QueueRow>,
    updated: String,
    /// Why the counts could not be read (shown in place of the table).
    problem: Option<String>,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    nav: Nav,
    table: String,
    charts: super::history::Charts,
}

/// The query of the overview: which queue the charts show (absent: all queues summed).
#[derive(Debug, Default, Deserialize)]
pub struct OverviewQuery {
    chart: Option<String>,
}

async fn table(jobs: &JobsClient) -> Result<OverviewTable, ConsoleError> {
    let stats = upstream::jobs(jobs.clone().queue_stats(QueueStatsRequest::default()).await)?;
    Ok(OverviewTable {
        queues: stats.queues.iter().map(QueueRow::of).collect(),
        updated: chrono::Utc::now().format("%H:%M:%S UTC").to_string(),
        problem: None,
    })
}

/// The table's HTML; when the counts cannot be read, a notice saying why (the live page keeps
/// running and recovers on the next poll).
pub async fn table_html(jobs: &JobsClient) -> String {
    let table = match table(jobs).await {
        Ok(t) => t,
        Err(e) => OverviewTable {
            queues: Vec::new(),
            updated: chrono::Utc::now().format("%H:%M:%S UTC").to_string(),
            problem: Some(match &e {
                ConsoleError::Upstream { service, status } => format!(
                    "{service} is unavailable ({}); retrying.",
                    crate::error::code_name(status.code())
                ),
                other => other.to_string(),
            }),
        },
    };
    table.render().unwrap_or_else(|e| {
        tracing::error!(error = %e, "overview table failed to render");
        String::new()
    })
}

/// `GET /`.
pub async fn page(
    State(app): State<Arc<AppState>>,
    Extension(user): Extension<CurrentUser>,
    Query(query): Query<OverviewQuery>,
) -> Result<Html<String>, ConsoleError> {
    let chosen = query.chart.as_deref().filter(|q| !q.is_empty());
    let (table, charts) = tokio::join!(
        table(&app.jobs),
        super::history::charts(&app.history, &app.jobs, chosen)
    );
    render(&OverviewPage {
        nav: Nav::for_user("overview", &user),
        table: table?.render()?,
        charts,
    })
}
