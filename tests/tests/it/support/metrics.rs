//! Reading `/metrics` in a process whose services share one recorder: every admin port renders
//! the same series, and other tests add to them. A test compares a reading with one it took
//! before (a delta), or reads a series whose labels it alone produces.
use std::net::SocketAddr;

/// The sum of the samples of `name` whose labels include every `labels` pair, on the `/metrics`
/// of `admin` (0 while the series is absent or the endpoint does not answer).
pub async fn sample(admin: SocketAddr, name: &str, labels: &[(&str, &str)]) -> f64 {
    let Ok((_, body)) = ncy_testkit::http_get(admin, "/metrics").await else {
        return 0.0;
    };
    let start = format!("{name}{{");
    let labels: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!(r#"{k}="{v}""#))
        .collect();
    body.lines()
        .filter(|l| l.starts_with(&start) && labels.iter().all(|m| l.contains(m.as_str())))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `queue_jobs_postponed_total{queue, dependency}`: how many attempts the process's workers have
/// postponed for `dependency`'s outage.
pub async fn postponed(admin: SocketAddr, queue: &str, dependency: &str) -> f64 {
    sample(
        admin,
        "queue_jobs_postponed_total",
        &[("queue", queue), ("dependency", dependency)],
    )
    .await
}
