//! Cron expressions: 5 fields (standard cron, day-of-week 0–7 with 0 and 7 = Sunday) or 6 with
//! leading seconds, evaluated in an IANA time zone (UTC default) by the `cron` crate (whose
//! day-of-week is 1–7 from Sunday; numeric days are translated), and the ticks they give. Errors
//! name the field (`cron`, `timeZone`) and its real bounds.
use std::str::FromStr;

use chrono::{TimeZone, Utc};
use chrono_tz::Tz;
use ncy_types::ValidationError;

/// Parses a 5- or 6-field expression and a time zone (empty = UTC); errors name `cron`/`timeZone`.
pub fn parse(
    expr: &str,
    time_zone: &str,
) -> std::result::Result<(cron::Schedule, Tz), ValidationError> {
    let tz = if time_zone.is_empty() {
        Tz::UTC
    } else {
        Tz::from_str(time_zone)
            .map_err(|_| ValidationError::new("timeZone", "is not an IANA time zone"))?
    };
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let mut six: Vec<String> = match fields.len() {
        5 => std::iter::once("0")
            .chain(fields.iter().copied())
            .map(str::to_owned)
            .collect(),
        6 => fields.iter().map(|f| (*f).to_owned()).collect(),
        _ => {
            return Err(ValidationError::new(
                "cron",
                "must have 5 fields (minute hour day-of-month month day-of-week) or 6 with leading seconds",
            ));
        }
    };
    check_ranges(&six).map_err(|m| ValidationError::new("cron", m))?;
    six[5] = translate_dow(&six[5]).map_err(|m| ValidationError::new("cron", m))?;
    let schedule = cron::Schedule::from_str(&six.join(" "))
        .map_err(|e| ValidationError::new("cron", format!("is not a valid expression: {e}")))?;
    Ok((schedule, tz))
}

/// The six fields (seconds first) by name, with the values standard cron allows.
const FIELDS: [(&str, u64, u64); 6] = [
    ("second", 0, 59),
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),
];

/// Checks every number of every field against its field's bounds, so an error names the field and
/// its real range (the `cron` crate answers "Minutes must be less than 59" for 61, and counts
/// days of the week from 1). Names (`JAN`, `MON`), `*`, `?` are left to the crate.
fn check_ranges(six: &[String]) -> std::result::Result<(), String> {
    let number = |s: &str| -> Option<Option<u64>> {
        // Some(None): digits too many to be any field's value.
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())
    };
    for (field, &(name, min, max)) in six.iter().zip(FIELDS.iter()) {
        for item in field.split(',') {
            let (range, step) = match item.split_once('/') {
                Some((r, s)) => (r, Some(s)),
                None => (item, None),
            };
            if let Some(step) = step.and_then(number) {
                match step {
                    Some(n) if (1..=max).contains(&n) => {}
                    _ => return Err(format!("{name} step must be 1–{max} (got {item:?})")),
                }
            }
            let (low, high) = range.split_once('-').unwrap_or((range, range));
            let mut bounds = Vec::new();
            for part in [low, high] {
                if let Some(n) = number(part) {
                    match n {
                        Some(n) if (min..=max).contains(&n) => bounds.push(n),
                        _ => return Err(format!("{name} must be {min}–{max} (got {item:?})")),
                    }
                }
            }
            if let [a, b] = bounds[..]
                && a > b
            {
                return Err(format!("{name} range must run low to high (got {item:?})"));
            }
        }
    }
    Ok(())
}

/// Standard day-of-week numbers (0–7, Sunday 0 or 7) to the `cron` crate's (1–7, Sunday 1).
fn translate_dow(field: &str) -> std::result::Result<String, String> {
    let day = |s: &str| -> std::result::Result<Option<u8>, String> {
        if s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty() {
            let n: u8 = s.parse().map_err(|_| format!("bad day of week {s:?}"))?;
            if n > 7 {
                return Err(format!("day of week {n} is out of range 0-7"));
            }
            Ok(Some(n))
        } else {
            Ok(None)
        }
    };
    let mut out = Vec::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        let suffix = step.map(|s| format!("/{s}")).unwrap_or_default();
        if let Some((a, b)) = range.split_once('-') {
            match (day(a)?, day(b)?) {
                (Some(a), Some(7)) => {
                    out.push(format!("{}-7{suffix}", a + 1));
                    if step.is_none() {
                        out.push("1".to_owned());
                    }
                }
                (Some(a), Some(b)) => out.push(format!("{}-{}{suffix}", a + 1, b + 1)),
                _ => out.push(item.to_owned()),
            }
        } else {
            match day(range)? {
                Some(n) => out.push(format!("{}{suffix}", n % 7 + 1)),
                None => out.push(item.to_owned()),
            }
        }
    }
    Ok(out.join(","))
}

/// The first tick strictly after `after_ms`.
pub fn next_tick(schedule: &cron::Schedule, tz: Tz, after_ms: i64) -> Option<i64> {
    let after = Utc
        .timestamp_millis_opt(after_ms)
        .single()?
        .with_timezone(&tz);
    schedule
        .after(&after)
        .find(|t| t.timestamp_millis() > after_ms && !is_repeat(t))
        .map(|t| t.timestamp_millis())
}

/// The latest tick at or before `at_ms`.
pub fn latest_tick(schedule: &cron::Schedule, tz: Tz, at_ms: i64) -> Option<i64> {
    let at = Utc
        .timestamp_millis_opt(at_ms + 1)
        .single()?
        .with_timezone(&tz);
    schedule
        .after(&at)
        .rev()
        .find(|t| t.timestamp_millis() <= at_ms && !is_repeat(t))
        .map(|t| t.timestamp_millis())
}

/// Whether `t` is the second occurrence of a local time the clocks went back over. The `cron`
/// crate walks wall-clock time and yields both (going back from inside the repeated hour, the
/// later one first, which is still in the future); a schedule fires once, at the first.
fn is_repeat(t: &chrono::DateTime<Tz>) -> bool {
    let local = t.timezone().from_local_datetime(&t.naive_local());
    matches!(local, chrono::LocalResult::Ambiguous(first, _) if first != *t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_fields_are_standard_cron_with_sunday_zero() {
        let (s, tz) = parse("0 3 * * 0", "").expect("valid");
        // 2026-11-25 is a Wednesday; the next Sunday 03:00 UTC is 2026-11-29.
        let wed = Utc
            .with_ymd_and_hms(2026, 11, 25, 12, 0, 0)
            .single()
            .expect("date");
        let next = next_tick(&s, tz, wed.timestamp_millis()).expect("next");
        let want = Utc
            .with_ymd_and_hms(2026, 11, 29, 3, 0, 0)
            .single()
            .expect("date");
        assert_eq!(next, want.timestamp_millis());
        let (s7, _) = parse("0 3 * * 7", "").expect("valid");
        assert_eq!(next_tick(&s7, tz, wed.timestamp_millis()), Some(next));
        let (daily, _) = parse("0 2 * * *", "UTC").expect("valid");
        let want = Utc
            .with_ymd_and_hms(2026, 11, 26, 2, 0, 0)
            .single()
            .expect("date");
        assert_eq!(
            next_tick(&daily, tz, wed.timestamp_millis()),
            Some(want.timestamp_millis())
        );
        let (weekdays, _) = parse("0 9 * * 1-5", "").expect("valid");
        let sat = Utc
            .with_ymd_and_hms(2026, 11, 28, 12, 0, 0)
            .single()
            .expect("date");
        let mon = Utc
            .with_ymd_and_hms(2026, 11, 30, 9, 0, 0)
            .single()
            .expect("date");
        assert_eq!(
            next_tick(&weekdays, tz, sat.timestamp_millis()),
            Some(mon.timestamp_millis())
        );
    }

    #[test]
    fn seconds_and_time_zones() {
        let (s, tz) = parse("*/10 * * * * *", "Europe/Paris").expect("valid");
        let t = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 1)
            .single()
            .expect("date");
        assert_eq!(
            next_tick(&s, tz, t.timestamp_millis()),
            Some(t.timestamp_millis() + 9_000)
        );
        assert_eq!(
            latest_tick(&s, tz, t.timestamp_millis()),
            Some(t.timestamp_millis() - 1_000)
        );
        let (paris, tz) = parse("0 2 * * *", "Europe/Paris").expect("valid");
        let want = Utc
            .with_ymd_and_hms(2026, 1, 1, 1, 0, 0)
            .single()
            .expect("date");
        assert_eq!(
            next_tick(&paris, tz, t.timestamp_millis()),
            Some(want.timestamp_millis())
        );
    }

    /// Found by `fuzz/fuzz_targets/cron_expr.rs`: when the clocks go back, 02:20 happens twice;
    /// from the first, the latest tick was the second, an hour in the future, and the fired tick
    /// was labelled with it.
    #[test]
    fn a_repeated_local_time_is_one_tick_at_its_first_occurrence() {
        let (s, tz) = parse("20  2 * * 0", "Europe/Paris").expect("valid");
        let now = 3_875_696_999_424; // 2092-10-24T14:29:59.424Z, the Friday before
        let first = 3_875_818_800_000; // 2092-10-26T02:20+02:00
        let second = 3_875_822_400_000; // 2092-10-26T02:20+01:00, the same wall-clock time
        assert_eq!(next_tick(&s, tz, now), Some(first));
        assert_eq!(latest_tick(&s, tz, first), Some(first));
        assert_eq!(latest_tick(&s, tz, first + 500), Some(first));
        assert_eq!(latest_tick(&s, tz, second + 500), Some(first));
        let week = 7 * 24 * 3_600_000;
        assert_eq!(latest_tick(&s, tz, first - 1), Some(first - week));
        let next_week = second + week; // CET from then on
        for t in [first, first + 500, second - 1, second, second + 500] {
            assert_eq!(next_tick(&s, tz, t), Some(next_week), "{t}");
        }
    }

    #[test]
    fn bad_expressions_and_zones_name_the_field() {
        assert_eq!(parse("* * *", "").expect_err("3 fields").field, "cron");
        assert_eq!(parse("61 * * * *", "").expect_err("minute").field, "cron");
        for (expr, message) in [
            ("61 * * * *", "minute must be 0–59 (got \"61\")"),
            ("0 24 * * *", "hour must be 0–23 (got \"24\")"),
            ("0 0 0 * *", "day-of-month must be 1–31 (got \"0\")"),
            ("0 0 * 13 *", "month must be 1–12 (got \"13\")"),
            ("0 0 * * 8", "day-of-week must be 0–7 (got \"8\")"),
            ("60 * * * * *", "second must be 0–59 (got \"60\")"),
            ("1,5-70 * * * *", "minute must be 0–59 (got \"5-70\")"),
            ("*/0 * * * *", "minute step must be 1–59 (got \"*/0\")"),
            (
                "0 */99999999999999999999 * * *",
                "hour step must be 1–23 (got \"*/99999999999999999999\")",
            ),
            (
                "30-10 * * * *",
                "minute range must run low to high (got \"30-10\")",
            ),
        ] {
            assert_eq!(parse(expr, "").expect_err(expr).message, message, "{expr}");
        }
        for good in [
            "59 23 31 12 7",
            "0-59/15 0 1 1 0",
            "0 0 * JAN-MAR MON-FRI",
            "*/5 * * * * *",
        ] {
            assert!(parse(good, "").is_ok(), "{good}");
        }
        assert_eq!(parse("0 0 * * 9", "").expect_err("dow").field, "cron");
        assert_eq!(
            parse("0 0 * * *", "Mars/Olympus").expect_err("tz").field,
            "timeZone"
        );
    }
}
