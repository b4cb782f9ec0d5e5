//! Opaque ids that encode their queue: a job id is `<queue>.<32 hex>`, a dead-letter id is
//! `<queue>.<stream entry id>`, so the server finds the hash-tagged keys from the id alone.
//! Clients never parse them (the proto says so); only this module does.
use ncy_types::ValidationError;
use ncy_types::jobs::QueueName;

/// A new random job id of `queue` (UUID v7: time-ordered, so ids sort roughly by creation).
pub fn new_job_id(queue: QueueName) -> String {
    format!("{}.{}", queue.as_str(), uuid::Uuid::now_v7().simple())
}

/// The queue and the local part of a job id; the error names `field`.
pub fn parse_job_id(id: &str, field: &str) -> Result<QueueName, ValidationError> {
    let (queue, rest) = split(id, field)?;
    if rest.len() != 32 || !rest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ValidationError::new(field, "is not a job id"));
    }
    Ok(queue)
}

/// A dead-letter id from its queue and stream entry id.
pub fn dead_letter_id(queue: QueueName, entry: &str) -> String {
    format!("{}.{entry}", queue.as_str())
}

/// The queue and stream entry id of a dead-letter id; the error names `field`.
pub fn parse_dead_letter_id(id: &str, field: &str) -> Result<(QueueName, String), ValidationError> {
    let (queue, rest) = split(id, field)?;
    // Both parts must fit 64 bits, or Redis refuses the id (an error of the request, found here).
    if crate::listing::StreamId::parse(rest).is_none() {
        return Err(ValidationError::new(field, "is not a dead-letter id"));
    }
    Ok((queue, rest.to_owned()))
}

fn split<'a>(id: &'a str, field: &str) -> Result<(QueueName, &'a str), ValidationError> {
    if id.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    let (queue, rest) = id
        .split_once('.')
        .ok_or_else(|| ValidationError::new(field, "is malformed"))?;
    let queue = queue
        .parse::<QueueName>()
        .map_err(|_| ValidationError::new(field, "is malformed"))?;
    Ok((queue, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_round_trip_and_reject_garbage() {
        let id = new_job_id(QueueName::Report);
        assert!(id.starts_with("report."));
        assert_eq!(parse_job_id(&id, "jobId"), Ok(QueueName::Report));
        for bad in [
            "",
            "report",
            "report.",
            "nope.0123",
            "email.xyz",
            "email.{a}",
        ] {
            assert_eq!(parse_job_id(bad, "jobId").expect_err(bad).field, "jobId");
        }
    }

    #[test]
    fn dead_letter_ids_round_trip() {
        let id = dead_letter_id(QueueName::Email, "1700000000000-3");
        assert_eq!(
            parse_dead_letter_id(&id, "deadLetterId"),
            Ok((QueueName::Email, "1700000000000-3".to_owned()))
        );
        for bad in [
            "email.1",
            "email.a-1",
            "x.1-1",
            "email.1-",
            "email.99999999999999999999-0",
        ] {
            assert!(parse_dead_letter_id(bad, "deadLetterId").is_err(), "{bad}");
        }
    }
}
