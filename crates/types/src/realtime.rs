//! The realtime vocabulary: rooms and the envelope every delivered message carries.
//!
//! Room names are the seed's Socket.IO rooms (`user:<id>`, `org:<id>`, `project:<id>`) plus
//! `broadcast`. The envelope's `(offset, epoch)` pair lets a reconnecting client ask for exactly
//! what it missed (see the room bus in crates/bus).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::error::ValidationError;
use crate::ids::parse_uuid;

/// Longest event name, in bytes.
pub const MAX_EVENT_LEN: usize = 64;

/// A room messages are published to. Ids are canonical lowercase hyphenated UUIDs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Room {
    User(String),
    Org(String),
    Project(String),
    Broadcast,
}

impl Room {
    /// The room of one user.
    pub fn user(id: Uuid) -> Self {
        Room::User(id.to_string())
    }

    /// The room of one organization.
    pub fn org(id: Uuid) -> Self {
        Room::Org(id.to_string())
    }

    /// The room of one project.
    pub fn project(id: Uuid) -> Self {
        Room::Project(id.to_string())
    }

    /// The wire name: `user:<id>`, `org:<id>`, `project:<id>` or `broadcast`.
    pub fn name(&self) -> String {
        match self {
            Room::User(id) => format!("user:{id}"),
            Room::Org(id) => format!("org:{id}"),
            Room::Project(id) => format!("project:{id}"),
            Room::Broadcast => "broadcast".to_owned(),
        }
    }
}

impl fmt::Display for Room {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl FromStr for Room {
    type Err = ValidationError;

    /// Parses a wire name, checking the id is a UUID; errors name the field `room`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "broadcast" {
            return Ok(Room::Broadcast);
        }
        let (kind, id) = s.split_once(':').ok_or_else(|| {
            ValidationError::new(
                "room",
                "must be user:<id>, org:<id>, project:<id> or broadcast",
            )
        })?;
        let id = parse_uuid("room", id)?.to_string();
        match kind {
            "user" => Ok(Room::User(id)),
            "org" => Ok(Room::Org(id)),
            "project" => Ok(Room::Project(id)),
            _ => Err(ValidationError::new(
                "room",
                format!("unknown room kind {kind:?}, expected user, org or project"),
            )),
        }
    }
}

impl TryFrom<String> for Room {
    type Error = ValidationError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<Room> for String {
    fn from(room: Room) -> Self {
        room.name()
    }
}

/// What every delivered realtime message carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// Room name (see [`Room::name`]).
    pub room: String,
    /// Event name, e.g. `task_updated`.
    pub event: String,
    /// The event's JSON payload.
    pub data: Value,
    /// Position of the message in its room's history, increasing by one per message.
    pub offset: u64,
    /// Identity of the room's history; a new epoch means older offsets are meaningless.
    pub epoch: String,
    /// Publish time, ms since the Unix epoch.
    pub ts_ms: i64,
    /// Publisher's idempotency or message id, when it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// Checks an event name: 1 to 64 bytes of `[A-Za-z0-9_.:-]`, naming the field `event`.
pub fn validate_event(event: &str) -> Result<(), ValidationError> {
    let ok = !event.is_empty()
        && event.len() <= MAX_EVENT_LEN
        && event
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            "event",
            format!(
                "must be 1 to {MAX_EVENT_LEN} characters of letters, digits, '_', '.', ':' and '-'"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: &str = "0b0e2c9e-5d3a-4b8e-9a39-6f1b2f6c7a11";

    #[test]
    fn rooms_round_trip() {
        for name in [
            format!("user:{ID}"),
            format!("org:{ID}"),
            format!("project:{ID}"),
            "broadcast".to_owned(),
        ] {
            let room: Room = name.parse().expect(&name);
            assert_eq!(room.name(), name);
            assert_eq!(room.to_string(), name);
        }
        let id: Uuid = ID.parse().expect("uuid");
        assert_eq!(Room::user(id), Room::User(ID.to_owned()));
        assert_eq!(Room::project(id).name(), format!("project:{ID}"));
        assert_eq!(Room::org(id).name(), format!("org:{ID}"));
    }

    #[test]
    fn room_ids_are_normalized() {
        let room: Room = format!("user:{}", ID.to_uppercase())
            .parse()
            .expect("valid");
        assert_eq!(room.name(), format!("user:{ID}"));
    }

    #[test]
    fn bad_rooms_name_the_field() {
        for bad in [
            "",
            "user",
            "user:",
            "user:42",
            "team:0b0e2c9e-5d3a-4b8e-9a39-6f1b2f6c7a11",
            "Broadcast",
            "user:{0b0e2c9e-5d3a-4b8e-9a39-6f1b2f6c7a11}",
        ] {
            assert_eq!(bad.parse::<Room>().expect_err(bad).field, "room", "{bad}");
        }
    }

    #[test]
    fn rooms_serialize_as_their_names() {
        let room = Room::Project(ID.to_owned());
        assert_eq!(
            serde_json::to_value(&room).expect("ser"),
            json!(format!("project:{ID}"))
        );
        let back: Room = serde_json::from_value(json!(format!("project:{ID}"))).expect("de");
        assert_eq!(back, room);
        assert!(serde_json::from_value::<Room>(json!("project:x")).is_err());
    }

    #[test]
    fn envelope_wire_shape() {
        let env = Envelope {
            room: format!("project:{ID}"),
            event: "task_updated".into(),
            data: json!({"taskId": 7}),
            offset: 12,
            epoch: "e1".into(),
            ts_ms: 1_700_000_000_000,
            id: None,
        };
        let wire = serde_json::to_value(&env).expect("ser");
        assert_eq!(
            wire,
            json!({"room": format!("project:{ID}"), "event": "task_updated",
                   "data": {"taskId": 7}, "offset": 12, "epoch": "e1", "tsMs": 1_700_000_000_000_i64})
        );
        let back: Envelope = serde_json::from_value(wire).expect("de");
        assert_eq!(back, env);
        let with_id = Envelope {
            id: Some("m1".into()),
            ..env
        };
        assert_eq!(
            serde_json::to_value(&with_id).expect("ser")["id"],
            json!("m1")
        );
    }

    #[test]
    fn event_names() {
        assert!(validate_event("task_updated").is_ok());
        assert!(validate_event("job:progress").is_ok());
        for bad in ["", "has space", &"e".repeat(MAX_EVENT_LEN + 1)] {
            assert_eq!(validate_event(bad).expect_err(bad).field, "event");
        }
    }
}
