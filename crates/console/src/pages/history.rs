//! The overview's throughput charts: jobs completed and attempts failed per minute over the last
//! hour, and per quarter hour over the last 24 hours, from the job-scheduler's `QueueHistory`,
//! for all queues summed or one queue chosen on the page (`/?chart=<queue>`).
//!
//! Drawn on the server as inline SVG (stacked bars: completed below, failed above) so they need
//! no script and no chart library; each has a `<title>` and `<desc>` with the totals, the totals
//! are printed under it, and the non-empty buckets are listed as a table in a `<details>`.
//!
//! Cost: the history of every queue is fetched at most once per [`REFRESH`] per console
//! instance (two calls: 60 and 1,440 minutes) and shared by every page load and every queue
//! choice in that time; the live table does not carry the charts. A failed fetch (the scheduler
//! down, or one that does not implement `QueueHistory` yet) is kept just as long, and the page
//! shows a note where the charts would be.
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use askama::Template;
use ncy_proto::jobs::v1::{QueueHistoryRequest, QueueHistoryResponse};
use tokio::time::Instant;

use crate::{
    error::{ConsoleError, code_name},
    upstream::{self, JobsClient},
};

/// How long one fetch of the history serves the page.
pub const REFRESH: Duration = Duration::from_secs(60);

/// The charts' drawing area, in SVG user units.
const WIDTH: f64 = 560.0;
const HEIGHT: f64 = 120.0;
/// Room on the left for the scale, below for the times.
const LEFT: f64 = 44.0;
const BOTTOM: f64 = 18.0;

/// Both spans of every queue's history, as last fetched.
#[derive(Debug, Clone)]
struct Fetched {
    hour: QueueHistoryResponse,
    day: QueueHistoryResponse,
}

/// A fetch's history, or why there is none (in words for the page).
type Outcome = Result<Arc<Fetched>, String>;

/// The last fetch (or its failure) and when it was made, shared by every page load.
#[derive(Default)]
pub struct HistoryCache {
    last: Mutex<Option<(Instant, Outcome)>>,
}

impl HistoryCache {
    /// The history, fetched again only when the last fetch is older than [`REFRESH`].
    async fn get(&self, jobs: &JobsClient) -> Outcome {
        if let Some((at, result)) = &*self.last.lock().unwrap_or_else(PoisonError::into_inner)
            && at.elapsed() < REFRESH
        {
            return result.clone();
        }
        // Two page loads at once may both fetch; the calls are cheap and the race is rare.
        let result = fetch(jobs).await.map(Arc::new).map_err(|e| match e {
            ConsoleError::Upstream { service, status } => {
                format!("{service} answered {}", code_name(status.code()))
            }
            other => other.to_string(),
        });
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((Instant::now(), result.clone()));
        result
    }
}

async fn fetch(jobs: &JobsClient) -> Result<Fetched, ConsoleError> {
    let ask = |minutes| {
        let mut jobs = jobs.clone();
        async move {
            upstream::jobs(
                jobs.queue_history(QueueHistoryRequest {
                    queue: String::new(),
                    minutes,
                })
                .await,
            )
        }
    };
    let (hour, day) = tokio::join!(ask(60), ask(24 * 60));
    Ok(Fetched {
        hour: hour?,
        day: day?,
    })
}

/// One bar: a bucket's counts and where they are drawn.
pub struct Bar {
    /// The bucket's start, `HH:MM`.
    label: String,
    completed: u64,
    failed: u64,
    x: String,
    width: String,
    completed_y: String,
    completed_h: String,
    failed_y: String,
    failed_h: String,
}

/// One chart, ready to draw.
#[derive(Template)]
#[template(path = "overview_chart.html")]
pub struct Chart {
    /// `hour` or `day`: ids in the page and the tests' markers.
    id: &'static str,
    title: String,
    /// What one bar is, e.g. `minute`.
    bucket: &'static str,
    bars: Vec<Bar>,
    completed: u64,
    failed: u64,
    /// The busiest bucket's total (the top of the scale).
    peak: u64,
    first: String,
    last: String,
    width: f64,
    height: f64,
    left: f64,
    plot_bottom: f64,
    text_y: f64,
}

impl Chart {
    /// Non-empty buckets, for the table of numbers.
    fn busy(&self) -> impl Iterator<Item = &Bar> {
        self.bars.iter().filter(|b| b.completed + b.failed > 0)
    }
}

/// The charts section of the overview.
pub struct Charts {
    /// The chosen queue (`None`: all queues summed).
    pub queue: Option<String>,
    /// Every queue, for the choice.
    pub queues: Vec<String>,
    /// The rendered charts, or why there are none.
    pub body: Result<Vec<String>, String>,
}

/// The charts of `queue` (all queues when `None` or not a queue the history knows).
pub async fn charts(cache: &HistoryCache, jobs: &JobsClient, queue: Option<&str>) -> Charts {
    let fetched = match cache.get(jobs).await {
        Ok(f) => f,
        Err(why) => {
            return Charts {
                queue: None,
                queues: Vec::new(),
                body: Err(why),
            };
        }
    };
    let queues: Vec<String> = fetched
        .hour
        .queues
        .iter()
        .map(|s| s.queue.clone())
        .collect();
    let queue = queue.filter(|q| queues.iter().any(|n| n == q));
    let whose = queue.map_or_else(|| "all queues".to_owned(), |q| format!("queue {q}"));
    let charts = [
        ("hour", &fetched.hour, 1, "minute", "Last hour"),
        ("day", &fetched.day, 15, "15 minutes", "Last 24 hours"),
    ];
    let mut body = Vec::new();
    for (id, history, per_bar, bucket, span) in charts {
        let points = summed(history, queue);
        let chart = draw(id, format!("{span}, {whose}"), bucket, &points, per_bar);
        match chart.render() {
            Ok(html) => body.push(html),
            Err(e) => {
                tracing::error!(error = %e, "a chart failed to render");
                return Charts {
                    queue: queue.map(str::to_owned),
                    queues,
                    body: Err("the chart could not be drawn".to_owned()),
                };
            }
        }
    }
    Charts {
        queue: queue.map(str::to_owned),
        queues,
        body: Ok(body),
    }
}

/// `(minute_at_ms, completed, failed)` per minute, oldest first, over `queue` or every queue.
fn summed(history: &QueueHistoryResponse, queue: Option<&str>) -> Vec<(i64, u64, u64)> {
    let mut minutes: BTreeMap<i64, (u64, u64)> = BTreeMap::new();
    for series in &history.queues {
        if queue.is_some_and(|q| q != series.queue) {
            continue;
        }
        for p in &series.points {
            let m = minutes.entry(p.minute_at_ms).or_default();
            m.0 = m.0.saturating_add(p.completed);
            m.1 = m.1.saturating_add(p.failed);
        }
    }
    minutes.into_iter().map(|(t, (c, f))| (t, c, f)).collect()
}

fn hhmm(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%H:%M").to_string())
        .unwrap_or_default()
}

/// A number for an SVG attribute.
fn n(v: f64) -> String {
    format!("{v:.1}")
}

/// The chart of `points` with `per_bar` minutes in each bar.
fn draw(
    id: &'static str,
    title: String,
    bucket: &'static str,
    points: &[(i64, u64, u64)],
    per_bar: usize,
) -> Chart {
    let buckets: Vec<(i64, u64, u64)> = points
        .chunks(per_bar.max(1))
        .map(|c| {
            let (c0, f0) = c.iter().fold((0u64, 0u64), |(a, b), p| {
                (a.saturating_add(p.1), b.saturating_add(p.2))
            });
            (c.first().map_or(0, |p| p.0), c0, f0)
        })
        .collect();
    let peak = buckets
        .iter()
        .map(|b| b.1.saturating_add(b.2))
        .max()
        .unwrap_or(0);
    let plot_w = WIDTH - LEFT;
    let plot_h = HEIGHT - BOTTOM;
    let slot = plot_w / buckets.len().max(1) as f64;
    let scale = |v: u64| v as f64 / peak.max(1) as f64 * (plot_h - 4.0);
    let bars = buckets
        .iter()
        .enumerate()
        .map(|(i, &(at, completed, failed))| {
            let x = LEFT + i as f64 * slot;
            let ch = scale(completed);
            let fh = scale(failed);
            Bar {
                label: hhmm(at),
                completed,
                failed,
                x: n(x + slot * 0.1),
                width: n((slot * 0.8).max(0.5)),
                completed_y: n(plot_h - ch),
                completed_h: n(ch),
                failed_y: n(plot_h - ch - fh),
                failed_h: n(fh),
            }
        })
        .collect();
    Chart {
        id,
        title,
        bucket,
        bars,
        completed: buckets.iter().map(|b| b.1).sum(),
        failed: buckets.iter().map(|b| b.2).sum(),
        peak,
        first: buckets.first().map(|b| hhmm(b.0)).unwrap_or_default(),
        last: buckets.last().map(|b| hhmm(b.0)).unwrap_or_default(),
        width: WIDTH,
        height: HEIGHT,
        left: LEFT,
        plot_bottom: plot_h,
        text_y: HEIGHT - 4.0,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use ncy_proto::jobs::v1::{HistoryPoint, QueueHistorySeries};

    use super::*;

    fn series(queue: &str, counts: &[(u64, u64)]) -> QueueHistorySeries {
        QueueHistorySeries {
            queue: queue.to_owned(),
            points: counts
                .iter()
                .enumerate()
                .map(|(i, &(completed, failed))| HistoryPoint {
                    minute_at_ms: 1_700_000_000_000 + i as i64 * 60_000,
                    completed,
                    failed,
                })
                .collect(),
        }
    }

    #[test]
    fn queues_sum_by_minute_and_one_can_be_chosen() {
        let h = QueueHistoryResponse {
            queues: vec![
                series("a", &[(1, 0), (2, 1)]),
                series("b", &[(10, 5), (0, 0)]),
            ],
        };
        let all = summed(&h, None);
        assert_eq!(
            all.iter().map(|p| (p.1, p.2)).collect::<Vec<_>>(),
            [(11, 5), (2, 1)]
        );
        assert_eq!(summed(&h, Some("a"))[1], (all[1].0, 2, 1));
    }

    #[test]
    fn bars_group_minutes_and_the_totals_are_text() {
        let points: Vec<(i64, u64, u64)> = (0..60).map(|i| (i * 60_000, 1, i as u64 % 2)).collect();
        let chart = draw(
            "day",
            "Last 24 hours, all queues".into(),
            "15 minutes",
            &points,
            15,
        );
        assert_eq!(chart.bars.len(), 4);
        assert_eq!((chart.completed, chart.failed, chart.peak), (60, 30, 23));
        let html = chart.render().unwrap_or_default();
        assert!(html.contains("<title"), "{html}");
        assert!(html.contains("60 completed"), "{html}");
        assert!(html.contains("30 failed attempts"), "{html}");
    }

    #[tokio::test]
    async fn a_history_that_cannot_be_read_is_a_reason_not_an_error() {
        let key = crate::upstream::ApiKey::new(None).unwrap();
        let jobs = crate::upstream::jobs_client("http://127.0.0.1:1", key).unwrap();
        let charts = charts(&HistoryCache::default(), &jobs, None).await;
        let why = charts.body.err().unwrap_or_default();
        assert!(why.contains("job-scheduler answered UNAVAILABLE"), "{why}");
    }
}
