//! Field rules shared by the payload types: emails, bounded text, template names, ranges.
//!
//! Deliberately simple and strict: the payloads feed SMTP headers and file lookups, so anything
//! that could inject a header line or walk out of the template folder is refused here, at enqueue.

use crate::error::ValidationError;

/// Longest email address (RFC 5321 path limit).
pub(crate) const MAX_EMAIL_LEN: usize = 254;
const MAX_LOCAL_PART_LEN: usize = 64;

/// `value` must look like `local@domain.tld`, with nothing a mail header could be split on.
pub(crate) fn email(field: &str, value: &str) -> Result<(), ValidationError> {
    let bad = || ValidationError::new(field, "must be an email address like name@example.com");
    if value.is_empty() {
        return Err(ValidationError::new(field, "is required"));
    }
    if value.len() > MAX_EMAIL_LEN {
        return Err(ValidationError::new(
            field,
            format!("must be at most {MAX_EMAIL_LEN} characters"),
        ));
    }
    let (local, domain) = value.split_once('@').ok_or_else(bad)?;
    let local_ok = !local.is_empty()
        && local.len() <= MAX_LOCAL_PART_LEN
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local.chars().all(|c| {
            c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c) || !c.is_ascii()
        })
        && local.chars().all(|c| !c.is_control() && !c.is_whitespace());
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| {
                    c.is_ascii_alphanumeric() || c == '-' || (!c.is_ascii() && c.is_alphanumeric())
                })
        });
    if local_ok && domain_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

/// Required single-line text of at most `max_chars` characters (no control characters, so it is
/// safe in a mail header or a log line).
pub(crate) fn line(field: &str, value: &str, max_chars: usize) -> Result<(), ValidationError> {
    text(field, value, max_chars)?;
    if value.chars().any(char::is_control) {
        return Err(ValidationError::new(
            field,
            "must be a single line without control characters",
        ));
    }
    Ok(())
}

/// Required text: not blank, at most `max_chars` characters.
pub(crate) fn text(field: &str, value: &str, max_chars: usize) -> Result<(), ValidationError> {
    if value.trim().is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if value.chars().count() > max_chars {
        return Err(ValidationError::new(
            field,
            format!("must be at most {max_chars} characters"),
        ));
    }
    Ok(())
}

/// A name of `[A-Za-z0-9_-]` segments separated by `/` (no dots, so no `..` and no extension),
/// at most `max_len` bytes: safe to resolve inside a folder.
pub(crate) fn path_name(field: &str, value: &str, max_len: usize) -> Result<(), ValidationError> {
    if value.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if value.len() > max_len {
        return Err(ValidationError::new(
            field,
            format!("must be at most {max_len} characters"),
        ));
    }
    let ok = value.split('/').all(|segment| {
        !segment.is_empty()
            && segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    });
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            field,
            "must be made of letters, digits, '_' and '-', in segments separated by '/'",
        ))
    }
}

/// A short identifier-like token of `[A-Za-z0-9_.:-]`, at most `max_len` bytes.
pub(crate) fn token(field: &str, value: &str, max_len: usize) -> Result<(), ValidationError> {
    if value.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if value.len() > max_len
        || !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
    {
        return Err(ValidationError::new(
            field,
            format!(
                "must be at most {max_len} characters of letters, digits, '_', '.', ':' and '-'"
            ),
        ));
    }
    Ok(())
}

/// An optional number that, when present, lies in `min..=max`.
pub(crate) fn range(
    field: &str,
    value: Option<u32>,
    min: u32,
    max: u32,
) -> Result<(), ValidationError> {
    match value {
        Some(v) if !(min..=max).contains(&v) => Err(ValidationError::new(
            field,
            format!("must be between {min} and {max}"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        for good in [
            "a@b.co",
            "first.last+tag@mail.example.com",
            "x_y-z@sub-domain.io",
        ] {
            assert!(email("to", good).is_ok(), "{good}");
        }
        let too_long = format!("{}@example.com", "a".repeat(250));
        for bad in [
            "",
            "plain",
            "@b.co",
            "a@",
            "a@b",
            "a@@b.co",
            "a b@c.co",
            "a@b..co",
            "a@-b.co",
            "a\r\nBcc: x@y.z@b.co",
            "<a@b.co>",
            ".a@b.co",
            "a@b.co,c@d.co",
            &too_long,
        ] {
            assert_eq!(email("to", bad).expect_err(bad).field, "to", "{bad:?}");
        }
    }

    #[test]
    fn lines_refuse_blank_long_and_multiline() {
        assert!(line("subject", "Hello", 10).is_ok());
        assert!(line("subject", "   ", 10).is_err());
        assert!(line("subject", "12345678901", 10).is_err());
        assert!(line("subject", "a\nBcc: x", 100).is_err());
        assert!(text("message", "multi\nline", 100).is_ok());
    }

    #[test]
    fn path_names_cannot_escape() {
        assert!(path_name("template", "welcome", 64).is_ok());
        assert!(path_name("template", "emails/password-reset", 64).is_ok());
        for bad in [
            "",
            "../etc/passwd",
            "/abs",
            "a//b",
            "a/",
            "with.dot",
            "sp ace",
        ] {
            assert!(path_name("template", bad, 64).is_err(), "{bad}");
        }
    }

    #[test]
    fn tokens_and_ranges() {
        assert!(token("type", "TASK_UPDATED", 64).is_ok());
        assert!(token("type", "has space", 64).is_err());
        assert!(range("days", None, 1, 10).is_ok());
        assert!(range("days", Some(1), 1, 10).is_ok());
        assert!(range("days", Some(0), 1, 10).is_err());
        assert!(range("days", Some(11), 1, 10).is_err());
    }
}
