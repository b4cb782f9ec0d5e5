//! Histogram samples recorded while nobody scrapes `/metrics` do not pile up: the upkeep task
//! every service runs folds them into their buckets. Its own test binary, not a module of `it`: it
//! measures this process's RSS, which any test running beside it would grow.
use std::time::Duration;

use ncy_runtime::metrics::{prometheus, upkeep};
use tokio_util::sync::CancellationToken;

const CHUNKS: u64 = 20;
const PER_CHUNK: u64 = 200_000;

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .expect("VmRSS in /proc/self/status")
        * 1024
}

/// Paused time on one thread: each `advance` runs the upkeep task's due ticks before the next chunk
/// of samples, with nothing recording meanwhile, so every sample must come out in the buckets.
#[tokio::test(start_paused = true)]
async fn unscraped_histogram_samples_are_folded_and_memory_stays_flat() {
    let handle = prometheus();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(upkeep(
        handle.clone(),
        Duration::from_millis(20),
        cancel.clone(),
    ));
    let histogram = metrics::histogram!("ncy_test_upkeep_seconds");

    let mut baseline = 0;
    for chunk in 0..CHUNKS {
        for i in 0..PER_CHUNK {
            histogram.record((i % 1000) as f64 / 1e6);
        }
        // An upkeep period passes between chunks; nothing reads /metrics meanwhile.
        tokio::time::advance(Duration::from_millis(25)).await;
        tokio::task::yield_now().await;
        if chunk == 0 {
            baseline = rss_bytes();
        }
    }
    let grown = rss_bytes().saturating_sub(baseline);
    // Kept as raw samples, the 3.8M recorded after the baseline would be 60+ MB.
    assert!(
        grown < 8 << 20,
        "RSS grew by {grown} bytes over {} unscraped samples",
        (CHUNKS - 1) * PER_CHUNK
    );

    // Folded, not dropped: the scrape sees every sample.
    let text = handle.render();
    let count: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("ncy_test_upkeep_seconds_count "))
        .unwrap_or_else(|| panic!("no _count line in:\n{text}"))
        .trim()
        .parse()
        .expect("a count");
    assert_eq!(count, CHUNKS * PER_CHUNK);

    cancel.cancel();
    task.await.expect("upkeep stops when cancelled");
}
