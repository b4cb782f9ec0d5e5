//! Tests of the job vocabulary: names, queue rules, option limits, and every payload rule
//! (each failing case asserts the field the client is told to fix).

use serde_json::{Value, json};

use super::*;

const USER: &str = "0b0e2c9e-5d3a-4b8e-9a39-6f1b2f6c7a11";
const PROJECT: &str = "5f2b7c1e-8a4d-4c3f-b2a1-9e8d7c6b5a40";
const ORG: &str = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d";

fn field_of(job_type: JobType, payload: Value) -> String {
    validate_payload(job_type, &payload.to_string())
        .expect_err(&payload.to_string())
        .field
}

#[test]
fn queue_names_round_trip() {
    for q in QueueName::ALL {
        assert_eq!(q.as_str().parse::<QueueName>(), Ok(q));
        assert_eq!(q.to_string(), q.as_str());
    }
    let names: Vec<&str> = QueueName::ALL.iter().map(|q| q.as_str()).collect();
    assert_eq!(names, ["email", "notification", "report", "cleanup"]);
    let err = "Email".parse::<QueueName>().expect_err("case matters");
    assert_eq!(err.field, "queue");
}

#[test]
fn job_types_round_trip_with_seed_names() {
    // The seed's wire names never change (producers send them); new types may come beside them.
    let names: Vec<&str> = JobType::ALL.iter().map(|t| t.as_str()).collect();
    for seed in [
        "send-email",
        "send-welcome-email",
        "send-notification",
        "generate-report",
        "cleanup-old-data",
        "backup-database",
        "noop",
        "sleep",
        "fail",
    ] {
        assert!(names.contains(&seed), "{seed} missing from {names:?}");
    }
    let mut unique = names.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique.len(),
        names.len(),
        "a wire name is used twice: {names:?}"
    );
    for &t in JobType::ALL {
        assert_eq!(t.as_str().parse::<JobType>(), Ok(t));
        assert_eq!(
            serde_json::to_value(t).expect("serializes"),
            json!(t.as_str())
        );
    }
    assert_eq!(
        "sendEmail".parse::<JobType>().expect_err("x").field,
        "jobType"
    );
}

#[test]
fn job_types_go_to_their_queues() {
    use JobType::*;
    use QueueName::*;
    let expected = [
        (SendEmail, Email),
        (SendWelcomeEmail, Email),
        (SendNotification, Notification),
        (GenerateReport, Report),
        (CleanupOldData, Cleanup),
        (BackupDatabase, Cleanup),
    ];
    for (job_type, queue) in expected {
        assert_eq!(job_type.default_queue(), queue);
        for other in QueueName::ALL {
            assert_eq!(
                job_type.allowed_on(other),
                other == queue,
                "{job_type} on {other}"
            );
        }
    }
    assert!(QueueName::ALL.iter().all(|q| Noop.allowed_on(*q)));
    assert!(QueueName::ALL.iter().all(|q| Sleep.allowed_on(*q)));
    assert!(QueueName::ALL.iter().all(|q| Fail.allowed_on(*q)));
    assert!(Sleep.is_test_only() && Fail.is_test_only() && !Noop.is_test_only());
}

#[test]
fn option_limits() {
    assert_eq!(check_priority(0), Ok(0));
    assert_eq!(check_priority(10), Ok(MAX_PRIORITY));
    assert_eq!(check_priority(11).expect_err("11").field, "priority");
    assert_eq!(check_priority(-1).expect_err("-1").field, "priority");
    assert_eq!(check_attempts(0), Ok(DEFAULT_ATTEMPTS));
    assert_eq!(check_attempts(25), Ok(MAX_ATTEMPTS));
    assert_eq!(check_attempts(26).expect_err("26").field, "attempts");
    assert_eq!(check_attempts(-3).expect_err("-3").field, "attempts");
    assert_eq!(check_delay_ms(0), Ok(0));
    assert_eq!(check_delay_ms(-1).expect_err("-1").field, "delayMs");
    assert_eq!(MAX_PAYLOAD_BYTES, 1_048_576);
    assert_eq!(cron_idempotency_key("backup", 42), "cron:backup:42");
}

#[test]
fn backoff_grows_from_two_seconds_and_is_capped() {
    let b = Backoff::default();
    assert_eq!(b, DEFAULT_BACKOFF);
    assert_eq!(
        [b.delay_ms(1), b.delay_ms(2), b.delay_ms(3)],
        [2_000, 4_000, 8_000]
    );
    assert_eq!(b.delay_ms(200), MAX_BACKOFF_DELAY_MS);
    let fixed = Backoff {
        kind: BackoffKind::Fixed,
        delay_ms: 500,
    };
    assert_eq!(fixed.delay_ms(7), 500);
    assert_eq!(
        serde_json::to_value(b).expect("serializes"),
        json!({"kind": "exponential", "delayMs": 2000})
    );
}

#[test]
fn backoff_kinds_have_one_spelling() {
    for k in BackoffKind::ALL {
        assert_eq!(k.as_str().parse::<BackoffKind>(), Ok(k));
        assert_eq!(
            serde_json::to_value(k).expect("serializes"),
            json!(k.as_str())
        );
        assert_eq!(k.to_string(), k.as_str());
    }
    let err = "Fixed".parse::<BackoffKind>().expect_err("case matters");
    assert_eq!(err.field, "backoff.kind");
    assert!("".parse::<BackoffKind>().is_err());
}

#[test]
fn payload_envelope_rules() {
    let big = format!(r#"{{"x":"{}"}}"#, "a".repeat(MAX_PAYLOAD_BYTES));
    assert_eq!(
        validate_payload(JobType::Noop, &big)
            .expect_err("big")
            .field,
        "payload"
    );
    assert_eq!(
        validate_payload(JobType::Noop, "{")
            .expect_err("json")
            .field,
        "payload"
    );
    assert_eq!(
        validate_payload(JobType::Noop, "[1]")
            .expect_err("arr")
            .field,
        "payload"
    );
    assert_eq!(field_of(JobType::SendEmail, json!(null)), "payload");
    let noop = validate_payload(JobType::Noop, r#"{"anything":[1,{"goes":true}]}"#);
    assert_eq!(noop, Ok(json!({"anything": [1, {"goes": true}]})));
    assert_eq!(validate_payload(JobType::Noop, "{}"), Ok(json!({})));
}

fn email() -> Value {
    json!({"to": "ada@example.com", "subject": "Hi", "template": "welcome"})
}

fn with(mut base: Value, key: &str, value: Value) -> Value {
    base[key] = value;
    base
}

#[test]
fn email_payload() {
    let ok = validate_payload(JobType::SendEmail, &email().to_string()).expect("valid");
    assert_eq!(ok["data"], json!({}), "defaults are filled in");
    assert_eq!(ok["cc"], json!([]));
    let full = with(email(), "cc", json!(["b@example.org"]));
    let full = with(full, "data", json!({"name": "Ada"}));
    let parsed = parse_payload(JobType::SendEmail, &full.to_string()).expect("valid");
    assert_eq!(parsed.job_type(), JobType::SendEmail);

    let cases = [
        (with(email(), "to", json!("not-an-email")), "payload.to"),
        (with(email(), "to", json!(5)), "payload.to"),
        (with(email(), "subject", json!("")), "payload.subject"),
        (
            with(email(), "subject", json!("a\r\nBcc: x@y.z")),
            "payload.subject",
        ),
        (
            with(email(), "template", json!("../secret")),
            "payload.template",
        ),
        (
            with(email(), "cc", json!(["ok@example.com", "bad"])),
            "payload.cc[1]",
        ),
        (with(email(), "cc", json!(vec!["a@b.co"; 51])), "payload.cc"),
        (with(email(), "data", json!([1])), "payload.data"),
        (with(email(), "subjet", json!("typo")), "payload.subjet"),
        (
            with(email(), "data", json!({"appUrl": "https://evil.example"})),
            "payload.data.appUrl",
        ),
        (
            with(email(), "data", json!({"taskUrl": "javascript:alert(1)"})),
            "payload.data.taskUrl",
        ),
        (
            json!({"subject": "Hi", "template": "welcome"}),
            "payload.to",
        ),
    ];
    for (payload, field) in cases {
        assert_eq!(
            field_of(JobType::SendEmail, payload.clone()),
            field,
            "{payload}"
        );
    }
}

#[test]
fn serde_messages_are_readable() {
    let err = validate_payload(JobType::SendEmail, r#"{"subject":"s","template":"t"}"#)
        .expect_err("missing");
    assert_eq!(err.to_string(), "payload.to: is required");
    let unknown = with(email(), "bcc", json!([]));
    let err = validate_payload(JobType::SendEmail, &unknown.to_string()).expect_err("unknown");
    assert_eq!(err.field, "payload.bcc");
    assert!(
        err.message.starts_with("is not a known field"),
        "{}",
        err.message
    );
    assert!(err.message.contains("subject"), "{}", err.message);
}

#[test]
fn welcome_email_payload() {
    let ok = json!({"userId": USER, "email": "ada@example.com", "name": "Ada"});
    assert!(validate_payload(JobType::SendWelcomeEmail, &ok.to_string()).is_ok());
    let cases = [
        (with(ok.clone(), "userId", json!("42")), "payload.userId"),
        (with(ok.clone(), "email", json!("ada")), "payload.email"),
        (with(ok.clone(), "name", json!(" ")), "payload.name"),
        (
            with(ok.clone(), "name", json!("x".repeat(201))),
            "payload.name",
        ),
        (
            json!({"userId": USER, "email": "ada@example.com"}),
            "payload.name",
        ),
    ];
    for (payload, field) in cases {
        assert_eq!(
            field_of(JobType::SendWelcomeEmail, payload.clone()),
            field,
            "{payload}"
        );
    }
}

#[test]
fn notification_payload() {
    let ok = json!({"userId": USER, "type": "TASK_UPDATED", "message": "Task moved",
                    "metadata": {"taskId": 1}});
    let value = validate_payload(JobType::SendNotification, &ok.to_string()).expect("valid");
    assert_eq!(value, ok);
    let cases = [
        (with(ok.clone(), "userId", json!("nope")), "payload.userId"),
        (with(ok.clone(), "type", json!("")), "payload.type"),
        (with(ok.clone(), "type", json!("has space")), "payload.type"),
        (with(ok.clone(), "message", json!("")), "payload.message"),
        (
            with(ok.clone(), "message", json!("m".repeat(10_001))),
            "payload.message",
        ),
        (json!({"userId": USER, "message": "m"}), "payload.type"),
    ];
    for (payload, field) in cases {
        assert_eq!(
            field_of(JobType::SendNotification, payload.clone()),
            field,
            "{payload}"
        );
    }
}

fn report() -> Value {
    json!({"reportType": "project_tasks", "format": "csv", "userId": USER, "projectId": PROJECT})
}

#[test]
fn report_payload() {
    assert!(validate_payload(JobType::GenerateReport, &report().to_string()).is_ok());
    let org = json!({"reportType": "organization_activity", "format": "excel", "userId": USER,
                     "organizationId": ORG, "fromMs": 0, "toMs": 1_700_000_000_000_i64});
    let parsed = parse_payload(JobType::GenerateReport, &org.to_string()).expect("valid");
    let JobPayload::GenerateReport(data) = parsed else {
        panic!("wrong variant")
    };
    assert_eq!(data.format, ReportFormat::Excel);
    assert_eq!(data.format.extension(), "xlsx");

    let no_project = json!({"reportType": "project_tasks", "format": "pdf", "userId": USER,
                            "organizationId": ORG});
    let cases = [
        (
            with(report(), "reportType", json!("weekly")),
            "payload.reportType",
        ),
        (with(report(), "format", json!("docx")), "payload.format"),
        (with(report(), "userId", json!("u")), "payload.userId"),
        (with(report(), "projectId", json!("p")), "payload.projectId"),
        (no_project, "payload.projectId"),
        (
            with(report(), "reportType", json!("organization_activity")),
            "payload.organizationId",
        ),
        (with(report(), "fromMs", json!(-1)), "payload.fromMs"),
        (
            with(with(report(), "fromMs", json!(10)), "toMs", json!(5)),
            "payload.toMs",
        ),
        (
            with(report(), "fromMs", json!("yesterday")),
            "payload.fromMs",
        ),
    ];
    for (payload, field) in cases {
        assert_eq!(
            field_of(JobType::GenerateReport, payload.clone()),
            field,
            "{payload}"
        );
    }
}

#[test]
fn cleanup_and_backup_payloads() {
    assert!(validate_payload(JobType::CleanupOldData, "{}").is_ok());
    let ok = json!({"notificationsOlderThanDays": 30, "jobsOlderThanDays": 3650});
    assert_eq!(
        validate_payload(JobType::CleanupOldData, &ok.to_string()),
        Ok(ok)
    );
    let cases = [
        (
            json!({"notificationsOlderThanDays": 0}),
            "payload.notificationsOlderThanDays",
        ),
        (
            json!({"jobsOlderThanDays": 3651}),
            "payload.jobsOlderThanDays",
        ),
        (
            json!({"jobsOlderThanDays": -1}),
            "payload.jobsOlderThanDays",
        ),
        (json!({"olderThan": 3}), "payload.olderThan"),
    ];
    for (payload, field) in cases {
        assert_eq!(
            field_of(JobType::CleanupOldData, payload.clone()),
            field,
            "{payload}"
        );
    }

    assert!(validate_payload(JobType::BackupDatabase, "{}").is_ok());
    assert!(validate_payload(JobType::BackupDatabase, r#"{"keepLast":1000}"#).is_ok());
    assert_eq!(
        field_of(JobType::BackupDatabase, json!({"keepLast": 0})),
        "payload.keepLast"
    );
    assert_eq!(
        field_of(JobType::BackupDatabase, json!({"keepLast": 1001})),
        "payload.keepLast"
    );
}
