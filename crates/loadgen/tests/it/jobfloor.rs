//! `loadgen jobs-floor` through its command line against the test Redis: every pre-filled job is
//! claimed and finished once, the figures line says so, and no key of the run is left behind.
use crate::support;

fn redis_url() -> String {
    std::env::var("NCY_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

#[test]
fn jobs_floor_drains_every_job_once_and_cleans_up() {
    let url = redis_url();
    let v = support::figures(&[
        "jobs-floor",
        "--redis-url",
        &url,
        "--jobs",
        "500",
        "--concurrency",
        "8",
        "--loops",
        "3",
    ]);
    assert_eq!(v["bench"], "jobs-floor");
    assert_eq!(v["jobs"], 500);
    assert_eq!(v["claimed"], 500, "{v}");
    assert_eq!(v["finished"], 500, "{v}");
    assert_eq!(v["activate"], true);
    assert!(v["jobs_per_sec"].as_f64().is_some_and(|r| r > 0.0), "{v}");
    assert!(v["redis_cpu_us_per_job"].is_number(), "{v}");

    let tag = v["key_tag"].as_str().expect("key_tag").to_owned();
    let mut conn = redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection())
        .expect("connect to the test Redis");
    let left: u64 = redis::cmd("EXISTS")
        .arg(format!("{tag}:ready"))
        .arg(format!("{tag}:done"))
        .arg(format!("{tag}:job:0"))
        .arg(format!("{tag}:job:499"))
        .query(&mut conn)
        .expect("EXISTS");
    assert_eq!(left, 0, "keys of {tag} were left behind");
}

#[test]
fn jobs_floor_refuses_a_redis_that_is_not_on_loopback() {
    let out = support::loadgen(&[
        "jobs-floor",
        "--redis-url",
        "redis://192.0.2.1:6379",
        "--jobs",
        "10",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--redis-url"));
}
