//! What the worker does with jobs while a dependency is down: an attempt that failed because the
//! SMTP server, PostgreSQL, Redis or the object store (S3) is unreachable
//! ([`JobError::unavailable`]) says nothing about the job, so it does not use an attempt. The
//! runner postpones the job instead (`Engine::postpone`: FAILED, due again later, the attempt
//! given back), and a ten-second database restart or a thirty-second SMTP or S3 outage no longer
//! dead-letters jobs that would have succeeded a moment later.
//!
//! Bounded, so a dependency that never comes back (a misconfigured SMTP host) still ends in the
//! dead-letter queue: this process tracks one outage *streak* per dependency, from its first
//! unavailable failure to its last. While a streak is younger than the grace period
//! (`NCY_JOBS_OUTAGE_GRACE_SECS`, default 600; 0 never postpones) its failures postpone; after it,
//! they are ordinary retryable failures and the job's attempts and backoff apply. A streak ends
//! once no unavailable failure of its dependency was seen for [`QUIET`]: longer than the longest
//! postponement, so a single waiting job keeps its streak alive. A success does not end a streak:
//! a job whose failure is wrongly classified as an outage would otherwise be postponed forever
//! while its neighbours succeed. (If the streak does end, e.g. because an ordinary backoff after
//! the grace is longer than [`QUIET`], the job's next outage failure starts a new grace; each round
//! has used an attempt, so the job still ends in the dead-letter queue after its attempts.)
//!
//! The postponement grows with the outage's age, `clamp(age, 1 s, NCY_JOBS_OUTAGE_MAX_DELAY_MS)` (30 s by default) with ±20 % jitter, so
//! thousands of waiting jobs neither hammer a dead server nor wait long once it is back.
//!
//! One log line when a streak starts, one when it outlasts the grace, one when it ends; the
//! counter `queue_jobs_postponed_total{queue, dependency}` counts postponed attempts.
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::processors::{Dependency, JobError};

/// A streak ends after this long without an unavailable failure of its dependency.
pub const QUIET: Duration = Duration::from_secs(60);

/// Shortest postponement (before jitter); the longest is `NCY_JOBS_OUTAGE_MAX_DELAY_MS`.
const MIN_DELAY: Duration = Duration::from_secs(1);

/// What to do with an attempt that failed because its dependency is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Postpone the job by this long, giving the attempt back.
    Postpone(Duration),
    /// The outage outlasted the grace (or postponing is off): an ordinary retryable failure.
    Count,
}

/// One outage of one dependency, as this process saw it.
#[derive(Debug, Clone, Copy)]
struct Streak {
    first: Instant,
    last: Instant,
    failures: u64,
    past_grace: bool,
}

/// The outage streaks of this worker process, shared by its queues' runners.
#[derive(Debug)]
pub struct Outages {
    grace: Duration,
    max_delay: Duration,
    streaks: Mutex<HashMap<Dependency, Streak>>,
}

impl Outages {
    /// A tracker that postpones for `grace` into an outage, by at most `max_delay` (before
    /// jitter); a `grace` of `Duration::ZERO` never postpones.
    pub fn new(grace: Duration, max_delay: Duration) -> Self {
        Self {
            grace,
            max_delay,
            streaks: Mutex::default(),
        }
    }

    /// Records that an attempt failed at `now` because `dependency` is down (`error` is logged
    /// when this starts a streak) and says what to do with the job.
    pub fn unavailable(&self, dependency: Dependency, error: &str, now: Instant) -> Decision {
        if self.grace.is_zero() {
            return Decision::Count;
        }
        let mut streaks = self.streaks.lock().unwrap_or_else(PoisonError::into_inner);
        let streak = streaks.entry(dependency).or_insert_with(|| {
            tracing::warn!(
                dependency = dependency.as_str(),
                grace_secs = self.grace.as_secs(),
                error,
                "dependency unavailable: postponing its jobs without using their attempts"
            );
            Streak {
                first: now,
                last: now,
                failures: 0,
                past_grace: false,
            }
        });
        streak.last = streak.last.max(now);
        streak.failures += 1;
        let age = now.saturating_duration_since(streak.first);
        if age < self.grace {
            return Decision::Postpone(jittered(
                age.clamp(MIN_DELAY.min(self.max_delay), self.max_delay),
            ));
        }
        if !streak.past_grace {
            streak.past_grace = true;
            tracing::warn!(
                dependency = dependency.as_str(),
                outage_secs = age.as_secs(),
                grace_secs = self.grace.as_secs(),
                "dependency still unavailable after the grace: its failures use attempts again"
            );
        }
        Decision::Count
    }

    /// For a failed attempt: `Some((dependency, delay))` when it should be postponed (its
    /// dependency is down and the outage is within the grace), `None` to record it as usual.
    pub fn postpone(&self, error: &JobError, now: Instant) -> Option<(Dependency, Duration)> {
        let dependency = error.unavailable?;
        match self.unavailable(dependency, &error.message, now) {
            Decision::Postpone(delay) => Some((dependency, delay)),
            Decision::Count => None,
        }
    }

    /// How long without an unavailable failure ends a streak: [`QUIET`], or twice the longest
    /// postponement if that is longer, so a single waiting job keeps its streak alive.
    fn quiet(&self) -> Duration {
        QUIET.max(self.max_delay.saturating_mul(2))
    }

    /// Ends (and logs) the streaks without an unavailable failure for [`Outages::quiet`] before
    /// `now`.
    pub fn sweep(&self, now: Instant) {
        let mut streaks = self.streaks.lock().unwrap_or_else(PoisonError::into_inner);
        streaks.retain(|dependency, s| {
            let over = now.saturating_duration_since(s.last) >= self.quiet();
            if over {
                tracing::info!(
                    dependency = dependency.as_str(),
                    outage_secs = s.last.saturating_duration_since(s.first).as_secs(),
                    failures = s.failures,
                    "dependency outage over: no unavailable failure for {} s",
                    self.quiet().as_secs()
                );
            }
            !over
        });
    }

    /// Sweeps every few seconds until `stop`.
    pub async fn sweep_until(self: std::sync::Arc<Self>, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(QUIET / 12) => self.sweep(Instant::now()),
            }
        }
    }
}

/// `d` ± 20 %.
fn jittered(d: Duration) -> Duration {
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let jitter = ms / 5;
    Duration::from_millis(ms - jitter + rand::rng().random_range(0..=2 * jitter))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delay(d: Decision) -> Duration {
        match d {
            Decision::Postpone(d) => d,
            Decision::Count => panic!("expected a postponement"),
        }
    }

    #[test]
    fn postpones_within_the_grace_with_a_delay_growing_with_the_outage() {
        let o = Outages::new(Duration::from_secs(600), Duration::from_secs(30));
        let t0 = Instant::now();
        let first = delay(o.unavailable(Dependency::Smtp, "down", t0));
        assert!((800..=1200).contains(&first.as_millis()), "{first:?}");
        let later = delay(o.unavailable(Dependency::Smtp, "down", t0 + Duration::from_secs(10)));
        assert!((8_000..=12_000).contains(&later.as_millis()), "{later:?}");
        let capped = delay(o.unavailable(Dependency::Smtp, "down", t0 + Duration::from_secs(500)));
        assert!(
            (24_000..=36_000).contains(&capped.as_millis()),
            "{capped:?}"
        );
        // Another dependency has a streak of its own.
        let pg = delay(o.unavailable(Dependency::Postgres, "down", t0 + Duration::from_secs(500)));
        assert!(pg <= Duration::from_millis(1200), "{pg:?}");
    }

    #[test]
    fn counts_once_the_outage_outlasts_the_grace_and_a_quiet_spell_ends_it() {
        let o = Outages::new(Duration::from_secs(60), Duration::from_secs(30));
        let t0 = Instant::now();
        let mut t = t0;
        // Failures every 30 s keep the streak alive until the grace is used up.
        while t < t0 + Duration::from_secs(60) {
            assert!(matches!(
                o.unavailable(Dependency::Smtp, "down", t),
                Decision::Postpone(_)
            ));
            t += Duration::from_secs(30);
            o.sweep(t);
        }
        assert_eq!(o.unavailable(Dependency::Smtp, "down", t), Decision::Count);
        o.sweep(t + QUIET - Duration::from_secs(1));
        assert_eq!(
            o.unavailable(Dependency::Smtp, "down", t + QUIET - Duration::from_secs(1)),
            Decision::Count,
            "still the same outage"
        );
        // Quiet for QUIET: the outage is over, the next one has a grace of its own.
        let later = t + 3 * QUIET;
        o.sweep(later);
        assert!(matches!(
            o.unavailable(Dependency::Smtp, "down", later),
            Decision::Postpone(_)
        ));
    }

    #[test]
    fn a_zero_grace_never_postpones() {
        let o = Outages::new(Duration::ZERO, Duration::from_secs(30));
        assert_eq!(
            o.unavailable(Dependency::Postgres, "down", Instant::now()),
            Decision::Count
        );
    }
}
