//! A message as it travels on the bus: the browser frame bytes plus the routing fields parsed out
//! of them (room, offset, epoch).
//!
//! The payload is the complete `{"type":"message",…}` frame, so a gateway forwards the same bytes to
//! every member without encoding it again.
use bytes::Bytes;
use ncy_types::Envelope;
use serde::Deserialize;

use crate::BusError;

/// One published message.
#[derive(Debug, Clone, PartialEq)]
pub struct BusMessage {
    /// Room name, e.g. `project:<uuid>`.
    pub room: String,
    /// Position in the room's history (1, 2, …).
    pub offset: u64,
    /// Identity of the room's history.
    pub epoch: String,
    /// The browser frame, JSON text.
    pub payload: Bytes,
}

#[derive(Deserialize)]
struct Head {
    room: String,
    offset: u64,
    epoch: String,
}

#[derive(Deserialize)]
struct Full {
    room: String,
    event: String,
    #[serde(default)]
    data: serde_json::Value,
    offset: u64,
    epoch: String,
    ts: i64,
}

impl BusMessage {
    /// Parses a payload from pub/sub or history; a malformed one is an error, never a panic.
    pub fn parse(payload: impl Into<Bytes>) -> Result<Self, BusError> {
        let payload = payload.into();
        let head: Head = serde_json::from_slice(&payload)
            .map_err(|e| BusError::Protocol(format!("bus message: {e}")))?;
        Ok(Self {
            room: head.room,
            offset: head.offset,
            epoch: head.epoch,
            payload,
        })
    }

    /// The payload as text (it is always JSON, so UTF-8).
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.payload).unwrap_or_default()
    }

    /// The typed envelope, for consumers that want the event and data.
    pub fn envelope(&self) -> Result<Envelope, BusError> {
        let full: Full = serde_json::from_slice(&self.payload)
            .map_err(|e| BusError::Protocol(format!("bus message: {e}")))?;
        Ok(Envelope {
            room: full.room,
            event: full.event,
            data: full.data,
            offset: full.offset,
            epoch: full.epoch,
            ts_ms: full.ts,
            id: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_frames_and_rejects_garbage() {
        let m = BusMessage::parse(Bytes::from_static(
            br#"{"type":"message","room":"broadcast","event":"e","data":{"a":1},"offset":3,"epoch":"x","ts":5}"#,
        ))
        .expect("valid");
        assert_eq!(
            (m.room.as_str(), m.offset, m.epoch.as_str()),
            ("broadcast", 3, "x")
        );
        let env = m.envelope().expect("envelope");
        assert_eq!(env.data["a"], 1);
        assert_eq!(env.ts_ms, 5);
        assert!(BusMessage::parse(Bytes::from_static(b"nope")).is_err());
        assert!(BusMessage::parse(Bytes::from_static(br#"{"room":"r"}"#)).is_err());
    }
}
