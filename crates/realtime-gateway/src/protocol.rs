//! The browser protocol: JSON text frames on `/ws` (documented with examples in
//! docs/protocol.md).
//!
//! Client → server frames are one tagged enum, so an unknown `type` or a missing field is one
//! parse error answered with an error frame. Server → client frames are built here; `message`
//! frames are not — they arrive from the bus already encoded, once per message for every socket.
use std::collections::HashMap;

use serde::Deserialize;
use serde_json::json;

/// A client's position in a room: the last (offset, epoch) it received.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Position {
    /// Last offset received.
    pub offset: u64,
    /// Epoch it belonged to.
    pub epoch: String,
}

/// What a client may send.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// `{"type":"authenticate","token":…,"since":{"user:<id>":{"offset":3,"epoch":"…"}}}`
    Authenticate {
        token: String,
        #[serde(default)]
        since: HashMap<String, Position>,
    },
    /// `{"type":"refresh","token":…}` — a fresh token before `exp`.
    Refresh { token: String },
    /// `{"type":"join_project","projectId":…,"since":{"offset":…,"epoch":…}}`
    JoinProject {
        #[serde(rename = "projectId")]
        project_id: String,
        #[serde(default)]
        since: Option<Position>,
    },
    /// `{"type":"leave_project","projectId":…}`
    LeaveProject {
        #[serde(rename = "projectId")]
        project_id: String,
    },
    /// `{"type":"presence","room":"project:<id>"}`
    Presence { room: String },
    /// `{"type":"ping"}` — answered with `pong` (application-level keepalive).
    Ping,
}

/// `authenticated {userId}`.
pub fn authenticated(user_id: &str, exp: u64) -> String {
    json!({"type": "authenticated", "userId": user_id, "exp": exp}).to_string()
}

/// `authentication_failed {reason}`.
pub fn authentication_failed(reason: &str) -> String {
    json!({"type": "authentication_failed", "reason": reason}).to_string()
}

/// `joined {room, epoch, offset, recovered?}`: the socket is a member; `offset`/`epoch` are the
/// room's position when it joined (the client's baseline for recovery).
pub fn joined(room: &str, epoch: &str, offset: u64, recovered: Option<bool>) -> String {
    let mut v = json!({"type": "joined", "room": room, "epoch": epoch, "offset": offset});
    if let Some(r) = recovered {
        v["recovered"] = json!(r);
    }
    v.to_string()
}

/// `left {room}`.
pub fn left(room: &str) -> String {
    json!({"type": "left", "room": room}).to_string()
}

/// `left {room, reason}`: the server took the socket out of the room — `revoked` (access was
/// withdrawn: membership removed, project deleted or moved, a refresh naming another organization)
/// or `unsubscribed` (`UnsubscribeUser`). Nothing more of that room follows this frame.
pub fn left_with_reason(room: &str, reason: &str) -> String {
    json!({"type": "left", "room": room, "reason": reason}).to_string()
}

/// `pong`.
pub fn pong() -> String {
    json!({"type": "pong"}).to_string()
}

/// `presence {room, users:[{userId, connections, lastSeenAt}], total, truncated}`: the first `max`
/// of `users` (ordered by user id), `total` users online in the room, `truncated` when some were
/// left out.
pub fn presence(room: &str, users: &[ncy_bus::PresenceUser], max: usize) -> String {
    let listed: Vec<_> = users
        .iter()
        .take(max)
        .map(|u| json!({"userId": u.user_id, "connections": u.connections, "lastSeenAt": u.last_seen_ms}))
        .collect();
    let truncated = listed.len() < users.len();
    json!({"type": "presence", "room": room, "users": listed, "total": users.len(),
           "truncated": truncated})
    .to_string()
}

/// `refreshed {exp}`.
pub fn refreshed(exp: u64) -> String {
    json!({"type": "refreshed", "exp": exp}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_client_frames() {
        let f: ClientFrame = serde_json::from_str(
            r#"{"type":"join_project","projectId":"p","since":{"offset":3,"epoch":"e"}}"#,
        )
        .expect("join");
        assert!(matches!(
            f,
            ClientFrame::JoinProject {
                since: Some(Position { offset: 3, .. }),
                ..
            }
        ));
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"nope"}"#).is_err());
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"authenticate"}"#).is_err());
        let a: ClientFrame =
            serde_json::from_str(r#"{"type":"authenticate","token":"t"}"#).expect("auth");
        assert!(matches!(a, ClientFrame::Authenticate { since, .. } if since.is_empty()));
    }
}
