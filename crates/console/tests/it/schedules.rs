//! The schedules page against a scheduler that installed its default schedules: every schedule
//! listed with its values as text; Pause, Resume and Run now for an operator, checked through the
//! scheduler's own API; the same refused to a viewer, who is shown no button for them.
use std::time::Duration;

use ncy_proto::jobs::v1 as pb;
use ncy_testkit::assert_eventually;

use crate::pages::{shows_escaped, urlencode};
use crate::support::{Backbone, Console, OPERATOR, Origin, VIEWER};

/// Ours: it fires on January 1st only, so no tick of its own lands during a test.
const OURS: &str = "new-year-mail";

/// The row of schedule `name` in a schedules page.
fn row<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    let rest = &body[body.find(&format!("<tr data-schedule=\"{name}\""))?..];
    Some(&rest[..rest.find("</tr>")?])
}

/// Schedule `name` as the scheduler lists it.
async fn listed(backbone: &Backbone, name: &str) -> anyhow::Result<pb::Schedule> {
    let list = backbone
        .jobs
        .clone()
        .list_schedules(pb::ListSchedulesRequest::default())
        .await?
        .into_inner();
    list.schedules
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| anyhow::anyhow!("no schedule {name}"))
}

#[tokio::test]
async fn schedules_are_listed_paused_resumed_and_run() -> anyhow::Result<()> {
    let backbone = Backbone::start_with(&[("NCY_CRON_INSTALL_DEFAULTS", "true")]).await?;
    let ours = pb::UpsertScheduleRequest {
        name: OURS.into(),
        cron: "0 9 1 1 *".into(),
        time_zone: "Europe/Paris".into(),
        queue: "email".into(),
        job_type: "noop".into(),
        payload_json: "{}".into(),
        description: "<b>once</b> a year & no more".into(),
        ..Default::default()
    };
    backbone.jobs.clone().upsert_schedule(ours).await?;
    assert_eventually(
        "the defaults are installed",
        Duration::from_secs(30),
        || {
            let backbone = &backbone;
            async move { listed(backbone, "cleanup-old-data").await.is_ok() }
        },
    )
    .await;
    let console = Console::start(backbone.addr).await?;
    let pause = format!("/schedules/{OURS}/pause");
    let resume = format!("/schedules/{OURS}/resume");
    let run = format!("/schedules/{OURS}/run");

    let mut viewer = console.signed_in(VIEWER).await?;
    assert!(
        viewer.get("/").await?.body.contains("href=\"/schedules\""),
        "nav link"
    );
    let page = viewer.get("/schedules").await?;
    assert_eq!(page.status, 200, "{}", page.body);
    for name in ["backup-database", "cleanup-old-data", OURS] {
        assert!(row(&page.body, name).is_some(), "{name}: {}", page.body);
    }
    let cleanup = row(&page.body, "cleanup-old-data").unwrap_or_default();
    assert!(cleanup.contains("<code>0 2 * * *</code>"), "{cleanup}");
    assert!(cleanup.contains("href=\"/queues/cleanup\""), "{cleanup}");
    assert!(
        cleanup.contains("enabled") && cleanup.contains(" UTC</td>"),
        "{cleanup}"
    );
    let mine = row(&page.body, OURS).unwrap_or_default();
    assert!(
        mine.contains("Europe/Paris") && mine.contains("<td>noop</td>"),
        "{mine}"
    );
    assert!(shows_escaped(mine, "<b>once</b> a year"), "{mine}");
    assert!(!page.body.contains("Run now") && !page.body.contains("/pause\""));
    let mut operator = console.signed_in(OPERATOR).await?;
    for path in [&pause, &run] {
        assert_eq!(viewer.post(path, &[], Origin::Console).await?.status, 403);
        let cross_site = operator.post(path, &[], Origin::Evil).await?;
        assert_eq!(cross_site.status, 403, "{}", cross_site.body);
    }
    assert!(!listed(&backbone, OURS).await?.paused);
    assert!(backbone.waiting("email").await?.is_empty(), "nothing ran");

    let page = operator.get("/schedules").await?;
    let mine = row(&page.body, OURS).unwrap_or_default();
    assert!(mine.contains(">Run now<") && mine.contains(&format!("action=\"{pause}\"")));
    let done = operator.post(&pause, &[], Origin::Console).await?;
    assert_eq!(done.status, 303, "{}", done.body);
    let back = format!("/schedules?done=paused&schedule={OURS}");
    assert_eq!(done.location(), Some(back.as_str()));
    let paused = listed(&backbone, OURS).await?;
    assert!(paused.paused && paused.next_run_at_ms == 0, "{paused:?}");
    let page = operator.get(&back).await?;
    assert!(
        page.body.contains(&format!("Schedule {OURS} paused")),
        "{}",
        page.body
    );
    let mine = row(&page.body, OURS).unwrap_or_default();
    assert!(mine.contains("<td data-next-run>paused</td>"), "{mine}");
    assert!(mine.contains(&format!("action=\"{resume}\"")), "{mine}");
    let again = operator.post(&pause, &[], Origin::Console).await?;
    assert_eq!(
        again.location(),
        Some(format!("/schedules?done=already-paused&schedule={OURS}").as_str())
    );

    let done = operator.post(&resume, &[], Origin::Console).await?;
    assert_eq!(
        done.location(),
        Some(format!("/schedules?done=resumed&schedule={OURS}").as_str())
    );
    let resumed = listed(&backbone, OURS).await?;
    assert!(!resumed.paused && resumed.next_run_at_ms > 0, "{resumed:?}");

    let done = operator.post(&run, &[], Origin::Console).await?;
    assert_eq!(done.status, 303, "{}", done.body);
    let jobs = backbone.waiting("email").await?;
    let [job] = jobs.as_slice() else {
        anyhow::bail!("one job from Run now, not {jobs:?}");
    };
    let to = format!("/jobs/{}?done=triggered", urlencode(&job.id));
    assert_eq!(done.location(), Some(to.as_str()));
    let fired = backbone.job(&job.id).await?;
    assert_eq!(
        (fired.schedule_name.as_str(), fired.job_type.as_str()),
        (OURS, "noop")
    );
    let page = operator.get(&to).await?;
    assert!(page.body.contains("Schedule run now"), "{}", page.body);
    assert_eq!(
        operator
            .post("/schedules/no-such-schedule/pause", &[], Origin::Console)
            .await?
            .status,
        404
    );
    console.stop().await?;
    backbone.stop().await
}
