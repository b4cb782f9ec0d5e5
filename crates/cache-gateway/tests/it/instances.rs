//! `Stats(all_instances)`: two gateways of one deployment, each asked, list both with each
//! instance's own numbers (read through one of them only); the one stopped gracefully is gone at
//! once; without the flag nothing changes.
use std::time::Duration;

use ncy_proto::cache::v1::{StatsRequest, StatsResponse};

use crate::support::{Client, Gateway, World, get, set};

/// Report interval of the gateways here, so the test waits for reports a short while.
const REPORT_MS: &str = "200";
const WAIT: Duration = Duration::from_secs(20);

async fn all(client: &Client) -> StatsResponse {
    client
        .clone()
        .stats(StatsRequest {
            all_instances: true,
        })
        .await
        .unwrap()
        .into_inner()
}

/// Hits over every layer.
fn hits(s: &StatsResponse) -> u64 {
    s.layers.iter().map(|l| l.hits).sum()
}

fn ids(s: &StatsResponse) -> Vec<&str> {
    s.instances.iter().map(|i| i.instance_id.as_str()).collect()
}

fn entry<'s>(s: &'s StatsResponse, id: &str) -> &'s StatsResponse {
    s.instances
        .iter()
        .find(|i| i.instance_id == id)
        .unwrap_or_else(|| panic!("{id} listed in {s:?}"))
}

/// Waits until `asked` lists exactly `expected` (sorted by id) and `ok` holds of its answer.
async fn listed(
    asked: &Client,
    expected: &[&str],
    ok: impl Fn(&StatsResponse) -> bool,
) -> StatsResponse {
    let mut sorted = expected.to_vec();
    sorted.sort_unstable();
    let ok = &ok;
    let sorted = &sorted;
    ncy_testkit::assert_eventually(&format!("{sorted:?} listed"), WAIT, || async move {
        let s = all(asked).await;
        ids(&s) == *sorted && ok(&s)
    })
    .await;
    all(asked).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_instance_is_listed_with_its_own_numbers_and_a_stopped_one_goes() -> anyhow::Result<()>
{
    let w = World::new().await?;
    let env = w.env_with(&[("NCY_INSTANCE_REPORT_MS", REPORT_MS)]);
    let a = Gateway::start(&env).await?;
    let b = Gateway::start(&env).await?;
    // Reads through `a` only.
    let mut ca = a.client.clone();
    ca.set(set("report:1", r#"{"n":1}"#)).await?;
    assert!(ca.get(get("report:1")).await?.into_inner().found);
    assert!(ca.get(get("report:1")).await?.into_inner().found);
    let (sa, sb) = (a.stats().await, b.stats().await);
    assert_eq!((hits(&sa), hits(&sb)), (2, 0), "{sa:?} {sb:?}");
    let (ida, idb) = (sa.instance_id.clone(), sb.instance_id.clone());

    // Without the flag, only this instance.
    assert!(sa.instances.is_empty() && sb.instances.is_empty());
    assert!(sa.reported_at_ms > 0);

    // Asked of `b`: both, `a` with the reads it served (as last reported), `b` fresh.
    let from_b = listed(&b.client, &[&ida, &idb], |s| hits(entry(s, &ida)) == 2).await;
    let (a_seen, b_seen) = (entry(&from_b, &ida), entry(&from_b, &idb));
    assert_eq!(a_seen.layers, sa.layers, "a's own numbers");
    assert_eq!(a_seen.l1_entries, sa.l1_entries);
    assert_eq!(hits(b_seen), 0);
    assert_eq!(
        b_seen.reported_at_ms, from_b.reported_at_ms,
        "b's entry is its fresh answer"
    );
    assert_eq!(b_seen.layers, from_b.layers);
    assert!(a_seen.reported_at_ms > 0 && a_seen.reported_at_ms <= from_b.reported_at_ms);
    assert!(
        from_b.instances.iter().all(|i| i.instances.is_empty()),
        "no nesting"
    );
    assert_eq!(from_b.instance_id, idb);
    assert_eq!(hits(&from_b), 0, "the top level stays b's own");

    // Asked of `a`: the same two.
    let from_a = listed(&a.client, &[&ida, &idb], |_| true).await;
    assert_eq!(hits(entry(&from_a, &ida)), 2);
    assert_eq!(hits(entry(&from_a, &idb)), 0);

    // `a` drains: it removed itself, so `b` lists only itself at once.
    a.stop().await;
    let after = all(&b.client).await;
    assert_eq!(ids(&after), [idb.as_str()]);
    b.stop().await;
    Ok(())
}
