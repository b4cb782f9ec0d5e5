//! `ncyctl cache …` run as a process against a cache gateway running in this process.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::support::{Stack, ctl, json, ncyctl_input, ncyctl_open_input, ncyctl_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_get_invalidate_an_entity_and_read_stats() {
    let stack = Stack::new().await;
    let cache = stack.cache().await;
    let url = cache.url.as_str();
    let user = uuid::Uuid::new_v4().to_string();
    let (own, derived) = (format!("user:{user}"), format!("profile:{user}"));
    let tag = format!("user:{user}");
    let pool = stack.db.pool().await.unwrap();
    sqlx::query("INSERT INTO users (id, email, name) VALUES ($1::uuid, 'ada@example.com', 'Ada')")
        .bind(&user)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    // A user entry is loader-backed: only a load writes it, never `set`.
    ctl(url, &["cache", "set", &own, r#"{"name":"Mallory"}"#])
        .await
        .fails(1, &["invalid argument", "key", "loader-backed"]);
    let loaded = ctl(url, &["cache", "load", "user", &user]).await;
    assert!(loaded.ok().contains("\"Ada\""), "{loaded:#?}");
    assert_eq!(loaded.stderr, format!("{own} from L3\n"));
    let set = ctl(
        url,
        &[
            "cache",
            "set",
            &derived,
            r#"{"bio":"x"}"#,
            "--ttl",
            "600",
            "--tag",
            &tag,
        ],
    )
    .await;
    assert!(
        set.ok().starts_with(&format!("{derived} (expires 20")),
        "{set:#?}"
    );

    // The value on stdout (pipeable), where it came from on stderr.
    let got = ctl(url, &["cache", "get", &own]).await;
    let value: serde_json::Value = serde_json::from_str(got.ok()).unwrap();
    assert_eq!(value["name"], "Ada", "{got:#?}");
    assert!(
        got.stderr.starts_with(&format!("{own} from L1")),
        "{got:#?}"
    );
    let got = json(url, &["cache", "get", &derived]).await;
    assert_eq!(
        (got["found"].as_bool(), got["value_json"].as_str()),
        (Some(true), Some(r#"{"bio":"x"}"#))
    );
    let both = json(url, &["cache", "mget", &own, &derived, "absent:1"]).await;
    let found: Vec<bool> = both["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["found"].as_bool().unwrap())
        .collect();
    assert_eq!(found, [true, true, false]);

    // Invalidating the user removes its own key and everything tagged with it.
    let inv = ctl(url, &["cache", "invalidate", "entity", "user", &user]).await;
    assert_eq!(
        inv.ok(),
        format!("deleted keys: {own}; invalidated tags: {tag}\n")
    );
    let again = json(url, &["cache", "invalidate", "entity", "user", &user]).await;
    assert_eq!(again["invalidated_tags"], serde_json::json!([tag]));
    for key in [&own, &derived] {
        ctl(url, &["cache", "get", key])
            .await
            .fails(1, &[&format!("{key} is not cached")]);
        assert_eq!(json(url, &["cache", "get", key]).await["found"], false);
    }

    // Hits and misses of this instance: the table has both layers and the counters moved.
    let stats = ctl(url, &["cache", "stats"]).await;
    let out = stats.ok();
    assert!(out.starts_with("instance "), "{out}");
    assert!(out.contains("L1") && out.contains("L2"), "{out}");
    assert!(
        out.contains("Redis available; backplane connected"),
        "{out}"
    );
    let stats = json(url, &["cache", "stats"]).await;
    let layers = stats["layers"].as_array().unwrap();
    let hits: i64 = layers.iter().map(|l| l["hits"].as_i64().unwrap()).sum();
    let misses: i64 = layers.iter().map(|l| l["misses"].as_i64().unwrap()).sum();
    assert!(hits >= 4 && misses >= 1, "{stats}");

    // By tag, by pattern, one key; and an entity read through from PostgreSQL.
    for n in 1..=3 {
        json(
            url,
            &["cache", "set", &format!("feed:{n}"), "[]", "--tag", "feeds"],
        )
        .await;
    }
    let tag = ctl(url, &["cache", "invalidate", "tag", "feeds"]).await;
    assert!(tag.ok().starts_with("feeds invalidated at 20"), "{tag:#?}");
    ctl(url, &["cache", "get", "feed:1"])
        .await
        .fails(1, &["feed:1 is not cached"]);
    for n in 1..=3 {
        json(url, &["cache", "set", &format!("page:{n}"), "{}"]).await;
    }
    let dry = ctl(
        url,
        &["cache", "invalidate", "pattern", "page:*", "--dry-run"],
    )
    .await;
    assert_eq!(dry.ok(), "3 keys match\n");
    let removed = json(url, &["cache", "invalidate", "pattern", "page:*"]).await;
    assert_eq!(removed["removed"], 3, "{removed}");
    json(url, &["cache", "set", "page:9", "{}"]).await;
    assert_eq!(
        ctl(url, &["cache", "delete", "page:9"]).await.ok(),
        "page:9: deleted\n"
    );
    assert_eq!(
        json(url, &["cache", "delete", "page:9"]).await["existed"],
        false
    );
    // Invalidated above, so read through from PostgreSQL again.
    let loaded = ctl(url, &["cache", "load", "user", &user]).await;
    assert!(loaded.ok().contains("\"Ada\""), "{loaded:#?}");
    assert_eq!(loaded.stderr, format!("{own} from L3\n"));
    let again = json(url, &["cache", "load", "user", &user]).await;
    assert_eq!(again["layer"], "CACHE_LAYER_L1", "{again}");
    ctl(
        url,
        &["cache", "load", "user", &uuid::Uuid::new_v4().to_string()],
    )
    .await
    .fails(1, &["not found"]);

    // The address can come from the environment instead of --addr.
    let via_env = ncyctl_with(&["cache", "get", "absent:2"], &[("NCY_CACHE_ADDR", url)]).await;
    via_env.fails(1, &["absent:2 is not cached"]);
    cache.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_sessions() {
    let stack = Stack::new().await;
    let cache = stack.cache().await;
    let url = cache.url.as_str();
    let limit = [
        "cache",
        "rate-limit",
        "api",
        "203.0.113.7",
        "--limit",
        "2",
        "--window-secs",
        "60",
    ];

    assert_eq!(ctl(url, &limit).await.ok(), "allowed; 1 of 2 left\n");
    let second = json(url, &limit).await;
    assert_eq!(
        (second["allowed"].as_bool(), second["remaining"].as_i64()),
        (Some(true), Some(0))
    );
    // A refusal is an answer, not a failure of the command: exit 0.
    let refused = ctl(url, &limit).await;
    assert!(
        refused.ok().starts_with("limited; retry after "),
        "{refused:#?}"
    );

    let user = uuid::Uuid::new_v4().to_string();
    let put = ctl(
        url,
        &[
            "cache",
            "sessions",
            "put",
            "sess-0001-ops-test",
            "--user",
            &user,
            "--data",
            r#"{"theme":"dark"}"#,
        ],
    )
    .await;
    assert!(
        put.ok()
            .starts_with("sess-0001-ops-test created; expires 20"),
        "{put:#?}"
    );
    json(
        url,
        &[
            "cache",
            "sessions",
            "put",
            "sess-0002-ops-test",
            "--user",
            &user,
        ],
    )
    .await;
    let shown = ctl(url, &["cache", "sessions", "get", "sess-0001-ops-test"]).await;
    let out = shown.ok();
    assert!(
        out.contains(&format!("user     {user}")) && out.contains(r#"data     {"theme":"dark"}"#),
        "{out}"
    );
    let list = ctl(url, &["cache", "sessions", "list", &user]).await;
    assert!(
        list.ok().contains("sess-0001-ops-test") && list.stdout.contains("sess-0002-ops-test"),
        "{list:#?}"
    );
    let one = json(url, &["cache", "sessions", "get", "sess-0001-ops-test"]).await;
    assert_eq!(one["session"]["user_id"], user.as_str());
    let gone = ctl(url, &["cache", "sessions", "delete-user", &user]).await;
    assert_eq!(gone.ok(), format!("2 sessions of {user} deleted\n"));
    let again = json(url, &["cache", "sessions", "delete-user", &user]).await;
    assert_eq!(again["deleted"], 0, "{again}");
    let none = json(url, &["cache", "sessions", "list", &user]).await;
    assert_eq!(none["sessions"], serde_json::json!([]));
    ctl(url, &["cache", "sessions", "get", "sess-0001-ops-test"])
        .await
        .fails(1, &["not found"]);
    cache.stop().await;
}

/// `cache get-stream`: keys on stdin, answers in input order over one GetStream, in text and JSON;
/// a refused key (over 1 KiB) is reported on its own line and makes the exit code 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_stream_reads_keys_from_stdin_in_order() {
    let stack = Stack::new().await;
    let cache = stack.cache().await;
    let url = cache.url.as_str();
    let id = uuid::Uuid::new_v4();
    let keys: Vec<String> = (0..150).map(|i| format!("stream:{id}:{i}")).collect();
    for k in keys.iter().step_by(2) {
        ctl(url, &["cache", "set", k, &format!(r#"{{"k":"{k}"}}"#)])
            .await
            .ok();
    }
    // Blank lines are skipped; 150 keys exceed the gateway's 64 reads in flight.
    let input = format!("{}\n\n", keys.join("\n"));
    let run = ncyctl_input(&["cache", "get-stream", "--addr", url], &input).await;
    let lines: Vec<&str> = run.ok().lines().collect();
    assert_eq!(lines.len(), keys.len(), "{run:#?}");
    for (i, (line, key)) in lines.iter().zip(&keys).enumerate() {
        let expected = if i % 2 == 0 {
            format!("{key}\tL1\t{{\"k\":\"{key}\"}}")
        } else {
            format!("{key}\t-")
        };
        assert_eq!(*line, expected);
    }
    assert_eq!(run.stderr, "75 found, 75 not cached, 0 refused\n");

    let long = "x".repeat(2000);
    let input = format!("{}\n{long}\n{}\n", keys[0], keys[1]);
    let run = ncyctl_input(&["--json", "cache", "get-stream", "--addr", url], &input).await;
    run.fails(1, &["1 found, 1 not cached, 1 refused"]);
    let answers: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(answers.len(), 3, "{run:#?}");
    assert_eq!(answers[0]["response"]["found"], true);
    assert_eq!(answers[0]["response"]["key"], keys[0].as_str());
    assert_eq!(
        answers[1]["error_code"], 3,
        "INVALID_ARGUMENT: {}",
        answers[1]
    );
    assert!(
        answers[1]["error_message"]
            .as_str()
            .unwrap()
            .contains("key"),
        "{}",
        answers[1]
    );
    assert_eq!(answers[2]["response"]["found"], false);

    // A failed call ends the command even while stdin stays open (a terminal): here the address is
    // a job-scheduler, which does not serve CacheService.
    let scheduler = stack.scheduler().await;
    let run = ncyctl_open_input(
        &["cache", "get-stream", "--addr", scheduler.url.as_str()],
        "user:1\n",
    )
    .await;
    run.fails(1, &["not implemented"]);
    scheduler.stop().await;
    cache.stop().await;
}

/// Two gateways of one deployment: `stats --all-instances` asked of either lists both, with the
/// reads each served (as last reported: every 200 ms here), as JSON and as a table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_all_instances_lists_every_gateway() {
    let mut stack = Stack::new().await;
    ncy_testkit::set_env(&mut stack.env, "NCY_INSTANCE_REPORT_MS", "200");
    let (a, b) = (stack.cache().await, stack.cache().await);
    json(&a.url, &["cache", "set", "report:1", "{}"]).await;
    assert_eq!(
        json(&a.url, &["cache", "get", "report:1"]).await["found"],
        true
    );
    let own = |url: String| async move { json(&url, &["cache", "stats"]).await };
    let (ida, idb) = (
        own(a.url.clone()).await["instance_id"]
            .as_str()
            .unwrap()
            .to_owned(),
        own(b.url.clone()).await["instance_id"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    let hits = |s: &serde_json::Value| -> i64 {
        let layers = s["layers"].as_array().unwrap();
        layers.iter().map(|l| l["hits"].as_i64().unwrap()).sum()
    };
    let mut expected = [ida.clone(), idb.clone()];
    expected.sort();

    let url = b.url.clone();
    let listed = move || {
        let url = url.clone();
        async move { json(&url, &["cache", "stats", "--all-instances"]).await }
    };
    let reported = move |s: &serde_json::Value| -> bool {
        let ids: Vec<&str> = s["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["instance_id"].as_str().unwrap())
            .collect();
        ids == expected
            && s["instances"]
                .as_array()
                .unwrap()
                .iter()
                .map(hits)
                .sum::<i64>()
                == 1
    };
    ncy_testkit::assert_eventually(
        "both listed, a with its read",
        Duration::from_secs(20),
        || {
            let (listed, reported) = (listed.clone(), reported.clone());
            async move { reported(&listed().await) }
        },
    )
    .await;
    let s = listed().await;
    assert_eq!(s["instance_id"], idb.as_str(), "b answered");
    for i in s["instances"].as_array().unwrap() {
        let expected_hits = if i["instance_id"] == ida.as_str() {
            1
        } else {
            0
        };
        assert_eq!(hits(i), expected_hits, "{i}");
        assert!(i["reported_at_ms"].as_i64().unwrap() > 0, "{i}");
        assert_eq!(i["instances"], serde_json::json!([]), "{i}");
    }
    let single = json(&b.url, &["cache", "stats"]).await;
    assert_eq!(single["instances"], serde_json::json!([]));

    let table = ctl(&a.url, &["cache", "stats", "--all-instances"]).await;
    let out = table.ok();
    assert!(
        out.starts_with("2 live cache-gateway instance(s); * answered"),
        "{out}"
    );
    assert!(
        out.contains(&format!("{ida} *")) && out.contains(&idb),
        "{out}"
    );
    a.stop().await;
    b.stop().await;
}
