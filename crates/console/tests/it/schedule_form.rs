//! Creating, editing and deleting schedules from the console against a real scheduler, each
//! outcome checked through the scheduler's own API: what it refuses comes back on the form with
//! its message and what was typed (escaped), nothing written; a taken name is refused on create;
//! an edit keeps a pause and the backoff the form does not show; a viewer's forged POSTs and
//! another site's POSTs change nothing.
use ncy_proto::jobs::v1 as pb;

use crate::pages::shows_escaped;
use crate::support::{Backbone, Browser, Console, OPERATOR, Origin, Page, VIEWER};

const NAME: &str = "weekly-report";

/// Schedule `name` as the scheduler lists it, `None` when it has none.
async fn listed(backbone: &Backbone, name: &str) -> anyhow::Result<Option<pb::Schedule>> {
    let list = backbone
        .jobs
        .clone()
        .list_schedules(pb::ListSchedulesRequest::default())
        .await?
        .into_inner();
    Ok(list.schedules.into_iter().find(|s| s.name == name))
}

/// The form of a weekly `noop` schedule in Paris, with `cron` and `description`.
fn form<'a>(name: &'a str, cron: &'a str, description: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("name", name),
        ("description", description),
        ("cron", cron),
        ("time_zone", "Europe/Paris"),
        ("queue", "email"),
        ("job_type", "noop"),
        ("payload", "{\"report\": \"weekly\"}"),
        ("priority", "4"),
        ("attempts", "5"),
        ("missed", "skip"),
        ("enabled", "on"),
    ]
}

/// `form` with field `key` set to `value`.
fn with<'a>(
    mut form: Vec<(&'a str, &'a str)>,
    key: &str,
    value: &'a str,
) -> Vec<(&'a str, &'a str)> {
    for field in &mut form {
        if field.0 == key {
            field.1 = value;
        }
    }
    form
}

/// Posts `form` to `path` and expects the redirect back to the list with `done`.
async fn saves(
    browser: &mut Browser,
    path: &str,
    form: &[(&str, &str)],
    done: &str,
) -> anyhow::Result<Page> {
    let page = browser.post(path, form, Origin::Console).await?;
    anyhow::ensure!(page.status == 303, "{path}: {} {}", page.status, page.body);
    let back = format!("/schedules?done={done}&schedule={NAME}");
    anyhow::ensure!(
        page.location() == Some(back.as_str()),
        "{:?}",
        page.location()
    );
    browser.get(&back).await
}

#[tokio::test]
async fn an_operator_creates_edits_and_deletes_a_schedule() -> anyhow::Result<()> {
    let backbone = Backbone::start().await?;
    let console = Console::start(backbone.addr).await?;
    let mut operator = console.signed_in(OPERATOR).await?;
    let list = operator.get("/schedules").await?;
    assert!(
        list.body.contains("href=\"/schedules/new\""),
        "{}",
        list.body
    );
    let blank = operator.get("/schedules/new").await?;
    assert_eq!(blank.status, 200, "{}", blank.body);
    assert!(
        blank.body.contains("action=\"/schedules/new\""),
        "{}",
        blank.body
    );

    // Created, with every option the form offers.
    let script = "<script>alert(1)</script> weekly";
    let page = saves(
        &mut operator,
        "/schedules/new",
        &form(NAME, "0 9 * * 1", script),
        "created",
    )
    .await?;
    assert!(
        page.body.contains(&format!("Schedule {NAME} created.")),
        "{}",
        page.body
    );
    let s = listed(&backbone, NAME)
        .await?
        .ok_or_else(|| anyhow::anyhow!("not created"))?;
    assert_eq!(
        (
            s.cron.as_str(),
            s.time_zone.as_str(),
            s.queue.as_str(),
            s.job_type.as_str()
        ),
        ("0 9 * * 1", "Europe/Paris", "email", "noop")
    );
    assert_eq!(s.options.map(|o| (o.priority, o.attempts)), Some((4, 5)));
    assert_eq!(s.missed_run_policy(), pb::MissedRunPolicy::Skip);
    assert!(s.enabled && !s.paused && s.next_run_at_ms > 0, "{s:?}");
    assert_eq!(s.description, script);
    assert!(!page.body.contains("<script>alert"), "escaped in the list");
    assert!(shows_escaped(&page.body, script), "{}", page.body);
    assert!(
        page.body.contains("Europe/Paris (UTC+0"),
        "next run in the schedule's zone: {}",
        page.body
    );
    let row = &page.body[page
        .body
        .find(&format!("<tr data-schedule=\"{NAME}\""))
        .unwrap_or(0)..];
    let row = &row[..row.find("</tr>").unwrap_or(0)];
    assert!(
        row.contains(&format!("href=\"/schedules/{NAME}/edit\"")),
        "{row}"
    );
    assert!(
        row.contains(&format!(
            "action=\"/schedules/{NAME}/delete\" data-confirm="
        )),
        "{row}"
    );

    // The name is taken: refused, the existing schedule untouched.
    let taken = operator
        .post(
            "/schedules/new",
            &form(NAME, "0 0 1 1 *", "mine now"),
            Origin::Console,
        )
        .await?;
    assert_eq!(taken.status, 409, "{}", taken.body);
    assert!(taken.body.contains("already exists"), "{}", taken.body);
    assert!(
        taken
            .body
            .contains(&format!("href=\"/schedules/{NAME}/edit\""))
    );
    assert!(
        taken.body.contains("value=\"0 0 1 1 *\""),
        "typed values kept"
    );
    let same = listed(&backbone, NAME).await?;
    assert_eq!(same.as_ref().map(|s| s.cron.as_str()), Some("0 9 * * 1"));

    // What the scheduler refuses: its message naming the field, the values kept, nothing written.
    let refusals = [
        (
            form("bad-cron", "61 * * * *", script),
            "cron: minute must be 0–59",
            "cron",
        ),
        (
            with(
                form("bad-zone", "0 9 * * 1", script),
                "time_zone",
                "Mars/Olympus",
            ),
            "time_zone:",
            "time_zone",
        ),
        (
            with(
                with(
                    form("bad-payload", "0 9 * * 1", script),
                    "job_type",
                    "send-email",
                ),
                "payload",
                "{\"to\": \"<script>x</script>\"}",
            ),
            "refused this schedule: payload",
            "payload",
        ),
    ];
    for (fields, says, field) in refusals {
        let name = fields[0].1;
        let page = operator
            .post("/schedules/new", &fields, Origin::Console)
            .await?;
        assert_eq!(page.status, 400, "{name}: {}", page.body);
        assert!(page.body.contains(says), "{name}: {}", page.body);
        assert!(
            page.body.contains(&format!("value=\"{name}\"")),
            "{name}: name kept"
        );
        assert!(
            shows_escaped(&page.body, script),
            "{name}: description kept"
        );
        assert!(!page.body.contains("<script>"), "{name}: escaped");
        let marked = format!("name=\"{field}\"");
        let input = &page.body[page.body.find(&marked).unwrap_or(0)..];
        assert!(
            input[..input.find('>').unwrap_or(0)].contains("aria-invalid=\"true\""),
            "{name}: {field} marked"
        );
        assert!(
            listed(&backbone, name).await?.is_none(),
            "{name} not created"
        );
    }
    let typed = operator
        .post(
            "/schedules/new",
            &form("bad-cron", "61 * * * *", ""),
            Origin::Console,
        )
        .await?;
    assert!(
        typed.body.contains("value=\"61 * * * *\""),
        "{}",
        typed.body
    );
    assert!(typed.body.contains("selected>skip them"), "{}", typed.body);

    // Edited while paused: the new cron saved, the pause and the unshown backoff kept.
    let mut fixed = pb::UpsertScheduleRequest {
        name: NAME.into(),
        cron: s.cron.clone(),
        time_zone: s.time_zone.clone(),
        queue: s.queue.clone(),
        job_type: s.job_type.clone(),
        payload_json: s.payload_json.clone(),
        options: s.options,
        enabled: Some(true),
        missed_run_policy: s.missed_run_policy,
        description: s.description.clone(),
    };
    let backoff = pb::Backoff {
        r#type: pb::BackoffType::Fixed as i32,
        delay_ms: 5000,
    };
    if let Some(o) = fixed.options.as_mut() {
        o.backoff = Some(backoff);
    }
    backbone.jobs.clone().upsert_schedule(fixed).await?;
    let paused = operator
        .post(&format!("/schedules/{NAME}/pause"), &[], Origin::Console)
        .await?;
    assert_eq!(paused.status, 303, "{}", paused.body);
    let edit = operator.get(&format!("/schedules/{NAME}/edit")).await?;
    assert_eq!(edit.status, 200, "{}", edit.body);
    for shown in [
        "value=\"0 9 * * 1\"",
        "value=\"Europe/Paris\"",
        "value=\"4\"",
        "value=\"5\"",
        "selected>skip them",
        "saving keeps it paused",
        "fixed from 5000 ms",
    ] {
        assert!(edit.body.contains(shown), "{shown}: {}", edit.body);
    }
    assert!(shows_escaped(&edit.body, script) && !edit.body.contains("<script>"));
    assert!(!edit.body.contains("name=\"name\""), "the name is fixed");
    assert!(
        edit.body.contains(&format!(
            "action=\"/schedules/{NAME}/delete\" data-confirm="
        )),
        "{}",
        edit.body
    );
    let edited = with(
        form("other-name", "30 8 * * 1-5", "weekdays"),
        "priority",
        "6",
    );
    let edited: Vec<_> = edited
        .into_iter()
        .filter(|(k, _)| *k != "enabled")
        .collect();
    let page = saves(
        &mut operator,
        &format!("/schedules/{NAME}/edit"),
        &edited,
        "saved",
    )
    .await?;
    assert!(page.body.contains("saved"), "{}", page.body);
    let s = listed(&backbone, NAME)
        .await?
        .ok_or_else(|| anyhow::anyhow!("gone"))?;
    assert_eq!(
        (s.cron.as_str(), s.description.as_str()),
        ("30 8 * * 1-5", "weekdays")
    );
    assert!(s.paused && !s.enabled, "pause kept, disabled: {s:?}");
    assert_eq!(s.options.map(|o| o.priority), Some(6));
    assert_eq!(s.options.and_then(|o| o.backoff), Some(backoff));
    assert!(
        listed(&backbone, "other-name").await?.is_none(),
        "the URL names the schedule"
    );

    // A refused edit changes nothing.
    let bad = with(edited.clone(), "cron", "* * *");
    let page = operator
        .post(&format!("/schedules/{NAME}/edit"), &bad, Origin::Console)
        .await?;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(
        page.body.contains("cron: must have 5 fields"),
        "{}",
        page.body
    );
    assert!(page.body.contains("value=\"* * *\""), "{}", page.body);
    let same = listed(&backbone, NAME).await?;
    assert_eq!(same.map(|s| s.cron), Some("30 8 * * 1-5".to_owned()));

    // An edit of a schedule that is not there does not create it.
    assert_eq!(operator.get("/schedules/no-such/edit").await?.status, 404);
    let missing = operator
        .post("/schedules/no-such/edit", &edited, Origin::Console)
        .await?;
    assert_eq!(missing.status, 404, "{}", missing.body);
    assert!(listed(&backbone, "no-such").await?.is_none());

    // Deleted.
    let page = saves(
        &mut operator,
        &format!("/schedules/{NAME}/delete"),
        &[],
        "deleted",
    )
    .await?;
    assert!(
        page.body.contains(&format!("Schedule {NAME} deleted.")),
        "{}",
        page.body
    );
    assert!(listed(&backbone, NAME).await?.is_none());
    let again = operator
        .post(&format!("/schedules/{NAME}/delete"), &[], Origin::Console)
        .await?;
    assert_eq!(again.status, 404, "{}", again.body);
    console.stop().await?;
    backbone.stop().await
}

#[tokio::test]
async fn viewers_and_other_sites_change_no_schedule() -> anyhow::Result<()> {
    let backbone = Backbone::start().await?;
    let ours = pb::UpsertScheduleRequest {
        name: NAME.into(),
        cron: "0 9 1 1 *".into(),
        queue: "email".into(),
        job_type: "noop".into(),
        payload_json: "{}".into(),
        ..Default::default()
    };
    backbone.jobs.clone().upsert_schedule(ours).await?;
    let before = listed(&backbone, NAME).await?;
    let console = Console::start(backbone.addr).await?;
    let mut viewer = console.signed_in(VIEWER).await?;
    let list = viewer.get("/schedules").await?;
    assert_eq!(list.status, 200, "{}", list.body);
    for hidden in ["/schedules/new", "/edit\"", "/delete\""] {
        assert!(!list.body.contains(hidden), "{hidden} shown to a viewer");
    }
    for path in [
        "/schedules/new".to_owned(),
        format!("/schedules/{NAME}/edit"),
    ] {
        let page = viewer.get(&path).await?;
        assert_eq!(page.status, 403, "{path}: {}", page.body);
    }
    let edit = format!("/schedules/{NAME}/edit");
    let delete = format!("/schedules/{NAME}/delete");
    let forged = form("forged", "* * * * *", "forged");
    let mut operator = console.signed_in(OPERATOR).await?;
    for (path, fields) in [
        ("/schedules/new", &forged),
        (edit.as_str(), &forged),
        (delete.as_str(), &vec![]),
    ] {
        let page = viewer.post(path, fields, Origin::Console).await?;
        assert_eq!(page.status, 403, "viewer {path}: {}", page.body);
        for from in [Origin::Evil, Origin::Absent] {
            let page = operator.post(path, fields, from).await?;
            assert_eq!(page.status, 403, "{from:?} {path}: {}", page.body);
        }
    }
    assert!(
        listed(&backbone, "forged").await?.is_none(),
        "nothing created"
    );
    assert_eq!(listed(&backbone, NAME).await?, before, "nothing changed");
    console.stop().await?;
    backbone.stop().await
}
