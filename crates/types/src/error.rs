//! The one error of this crate: bad input, named by the field it came from.
//!
//! Every service turns a [`ValidationError`] into `INVALID_ARGUMENT` (gRPC) or an error frame
//! (WebSocket) whose text starts with the field, so a client can tell which of its inputs to fix.

/// Input that was rejected, with the field that carried it (e.g. `payload.to`, `prefix`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// The field as the client wrote it (camelCase for JSON payloads, dotted for nesting).
    pub field: String,
    /// What is wrong with it, in words a client developer understands.
    pub message: String,
}

impl ValidationError {
    /// An error for `field` saying `message`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same error with its field nested under `parent` (`to` under `payload` → `payload.to`).
    #[must_use]
    pub fn nested_under(mut self, parent: &str) -> Self {
        self.field = if self.field.is_empty() {
            parent.to_owned()
        } else if self.field.starts_with('[') {
            format!("{parent}{}", self.field)
        } else {
            format!("{parent}.{}", self.field)
        };
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_field_first() {
        let err = ValidationError::new("payload.to", "must be an email address");
        assert_eq!(err.to_string(), "payload.to: must be an email address");
    }

    #[test]
    fn nesting_joins_with_dots_and_keeps_indexes_attached() {
        assert_eq!(
            ValidationError::new("to", "x")
                .nested_under("payload")
                .field,
            "payload.to"
        );
        assert_eq!(
            ValidationError::new("[2]", "x")
                .nested_under("payload.cc")
                .field,
            "payload.cc[2]"
        );
        assert_eq!(
            ValidationError::new("", "x").nested_under("payload").field,
            "payload"
        );
    }
}
