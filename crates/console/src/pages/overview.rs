//! The overview, `/`: every queue's counts by state and whether it is paused, each number linking
//! to where those jobs are listed. The table is the fragment `live.rs` re-renders for the
//! page's Server-Sent Events, so the page works without JavaScript and stays fresh with it.
//! Above it, the throughput charts (`history.rs`), drawn at page load from a history fetched at
//! most once a minute. Under it, every cache-gateway instance's hit ratio per layer and every
//! realtime-gateway instance's connections, rooms and messages out per second (`instances.rs`),
//! each from one `Stats{all_instances}` call per render; a gateway that fails or is slow gets a
//! line saying so and never holds up or hides the queue counts.
use std::{future::Future, sync::Arc, time::Duration};

use askama::Template;
use axum::{
    Extension,
    extract::{Query, State},
    response::Html,
};
use ncy_proto::cache::v1::StatsRequest as CacheStatsRequest;
use ncy_proto::jobs::v1::{QueueStatsRequest, QueueSummary};
use ncy_proto::realtime::v1::StatsRequest as RealtimeStatsRequest;
use serde::Deserialize;

use super::instances::{self, InstanceRow, MessageRates};
use super::{Nav, render, time, url_part};
use crate::{
    AppState,
    access::CurrentUser,
    error::ConsoleError,
    upstream::{self, CacheClient, JobsClient, RealtimeClient},
};

/// How long the overview waits for a gateway's Stats before saying it did not answer: the
/// queue counts are rendered with the gateways', so a slow gateway must not delay them.
pub const GATEWAY_WAIT: Duration = Duration::from_secs(1);

/// The services the overview reads, one call each per render.
#[derive(Clone)]
pub struct Sources {
    /// QueueStats.
    pub jobs: JobsClient,
    /// The cache-gateway's Stats with every instance.
    pub cache: CacheClient,
    /// The realtime-gateway's Stats with every instance.
    pub realtime: RealtimeClient,
}

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

/// One gateway's table under the queues: its instances, or why they cannot be shown.
pub struct GatewaySection {
    /// Names the section in the page (`data-gateway`).
    key: &'static str,
    /// Its heading, linking to `page`.
    title: &'static str,
    page: &'static str,
    /// `(key, header)` of each cell.
    columns: &'static [(&'static str, &'static str)],
    rows: Result<Vec<InstanceRow>, String>,
}

impl GatewaySection {
    /// The cells of `row` with their column keys (the template names each cell by them).
    fn cells<'a>(&self, row: &'a InstanceRow) -> Vec<(&'static str, &'a str)> {
        self.columns
            .iter()
            .map(|(key, _)| *key)
            .zip(row.cells.iter().map(String::as_str))
            .collect()
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
    /// The cache-gateway's and realtime-gateway's instances.
    gateways: Vec<GatewaySection>,
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

async fn queues(jobs: &JobsClient) -> Result<Vec<QueueRow>, ConsoleError> {
    let stats = upstream::jobs(jobs.clone().queue_stats(QueueStatsRequest::default()).await)?;
    Ok(stats.queues.iter().map(QueueRow::of).collect())
}

/// What the page says about a service it cannot read.
fn unavailable(e: &ConsoleError) -> String {
    match e {
        ConsoleError::Upstream { service, status } => format!(
            "{service} is unavailable ({}); retrying.",
            crate::error::code_name(status.code())
        ),
        other => other.to_string(),
    }
}

/// A gateway's answer within [`GATEWAY_WAIT`], through `upstream` (which counts a failure).
async fn gateway_answer<T>(
    service: &'static str,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    upstream: fn(Result<tonic::Response<T>, tonic::Status>) -> Result<T, ConsoleError>,
) -> Result<T, String> {
    let answer = tokio::time::timeout(GATEWAY_WAIT, call)
        .await
        .unwrap_or_else(|_| {
            Err(tonic::Status::deadline_exceeded(format!(
                "{service} did not answer within {GATEWAY_WAIT:?}"
            )))
        });
    upstream(answer).map_err(|e| {
        let registry = matches!(&e, ConsoleError::Upstream { status, .. }
            if status.code() == tonic::Code::Unavailable);
        if registry {
            // Also what a gateway answers when its Redis (the instance registry) is down.
            format!(
                "{} If only its Redis is down, its own page shows the instance that answers.",
                unavailable(&e)
            )
        } else {
            unavailable(&e)
        }
    })
}

async fn cache_section(cache: &CacheClient) -> GatewaySection {
    let mut cache = cache.clone();
    let call = cache.stats(CacheStatsRequest {
        all_instances: true,
    });
    let answer = gateway_answer(upstream::CACHE_GATEWAY, call, upstream::cache).await;
    GatewaySection {
        key: "cache",
        title: "Cache instances",
        page: "/cache",
        columns: instances::CACHE_OVERVIEW_COLUMNS,
        rows: answer.map(|stats| instances::cache_overview_rows(&stats)),
    }
}

/// The realtime section; `rates` takes this answer's snapshots first.
async fn realtime_section(realtime: &RealtimeClient, rates: &mut MessageRates) -> GatewaySection {
    let mut realtime = realtime.clone();
    let call = realtime.stats(RealtimeStatsRequest {
        all_instances: true,
    });
    let answer = gateway_answer(upstream::REALTIME_GATEWAY, call, upstream::realtime).await;
    let answered_at_ms = chrono::Utc::now().timestamp_millis();
    GatewaySection {
        key: "realtime",
        title: "Realtime instances",
        page: "/realtime",
        columns: instances::REALTIME_OVERVIEW_COLUMNS,
        rows: answer.map(|stats| {
            rates.update(&stats, answered_at_ms);
            instances::realtime_overview_rows(&stats, rates)
        }),
    }
}

/// Both gateways' sections, read at once.
async fn gateways(sources: &Sources, rates: &mut MessageRates) -> Vec<GatewaySection> {
    let (cache, realtime) = tokio::join!(
        cache_section(&sources.cache),
        realtime_section(&sources.realtime, rates)
    );
    vec![cache, realtime]
}

fn now() -> String {
    chrono::Utc::now().format("%H:%M:%S UTC").to_string()
}

/// The live fragment's HTML: one QueueStats call and one Stats call per gateway. When the counts
/// cannot be read, a notice saying why in place of the queues table (the live page keeps running
/// and recovers on the next poll); the gateways' sections are shown either way. `rates` carries
/// the realtime instances' previous snapshots from one call to the next.
pub async fn live_html(sources: &Sources, rates: &mut MessageRates) -> String {
    let (queues, gateways) = tokio::join!(queues(&sources.jobs), gateways(sources, rates));
    let (queues, problem) = match queues {
        Ok(q) => (q, None),
        Err(e) => (Vec::new(), Some(unavailable(&e))),
    };
    let table = OverviewTable {
        queues,
        updated: now(),
        problem,
        gateways,
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
    let sources = Sources {
        jobs: app.jobs.clone(),
        cache: app.cache.clone(),
        realtime: app.realtime.clone(),
    };
    // A page load has seen no earlier snapshot: its rates read `—` until the live updates come.
    let mut rates = MessageRates::default();
    let (queues, gateways, charts) = tokio::join!(
        queues(&app.jobs),
        gateways(&sources, &mut rates),
        super::history::charts(&app.history, &app.jobs, chosen)
    );
    let table = OverviewTable {
        queues: queues?,
        updated: now(),
        problem: None,
        gateways,
    };
    render(&OverviewPage {
        nav: Nav::for_user("overview", &user),
        table: table.render()?,
        charts,
    })
}
