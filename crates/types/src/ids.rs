//! Parsing of the ids that travel on the wire (users, organizations, projects, tasks are UUIDs).
//!
//! Only the hyphenated form is accepted (any case). The braced and URN forms that `uuid` would also
//! take are refused because ids end up inside Redis keys, where a brace changes the hash slot; callers
//! print the returned [`Uuid`], which is always the canonical lowercase hyphenated form.

use uuid::Uuid;

use crate::error::ValidationError;

/// Length of the hyphenated text form, `123e4567-e89b-12d3-a456-426614174000`.
const HYPHENATED_LEN: usize = 36;

/// Parses `value` as a hyphenated UUID, naming `field` if it is not one.
pub fn parse_uuid(field: &str, value: &str) -> Result<Uuid, ValidationError> {
    let invalid = || {
        ValidationError::new(
            field,
            "must be a UUID like 123e4567-e89b-12d3-a456-426614174000",
        )
    };
    if value.is_empty() {
        return Err(ValidationError::new(field, "is required"));
    }
    if value.len() != HYPHENATED_LEN {
        return Err(invalid());
    }
    Uuid::try_parse(value).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_hyphenated_and_normalizes_case() {
        let id = parse_uuid("userId", "123E4567-E89B-12D3-A456-426614174000").expect("valid");
        assert_eq!(id.to_string(), "123e4567-e89b-12d3-a456-426614174000");
    }

    #[test]
    fn refuses_other_forms_naming_the_field() {
        for bad in [
            "not-a-uuid",
            "123e4567e89b12d3a456426614174000",
            "{123e4567-e89b-12d3-a456-426614174000}",
            "urn:uuid:123e4567-e89b-12d3-a456-426614174000",
            "123e4567-e89b-12d3-a456-42661417400g",
        ] {
            let err = parse_uuid("payload.userId", bad).expect_err(bad);
            assert_eq!(err.field, "payload.userId", "{bad}");
        }
    }

    #[test]
    fn empty_is_reported_as_required() {
        let err = parse_uuid("id", "").expect_err("empty");
        assert_eq!(err.field, "id");
        assert_eq!(err.message, "is required");
    }
}
