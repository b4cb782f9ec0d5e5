//! Keys of the realtime room bus: one hash tag per room.
//!
//! The publish script bumps the room's offset in `meta`, appends to `history` and publishes on the
//! room's channel in one step; all of a room's keys are tagged `{<p>:room:<room>}` so that step
//! runs on one Redis Cluster slot.

use super::KeySpace;

/// The keys of one realtime room, all in one cluster slot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoomKeys {
    room: String,
    tag: String,
}

impl KeySpace {
    /// The keys of room `room_name` (e.g. `project:<uuid>`, see `Room::name`), tagged
    /// `{<p>:room:<room_name>}`.
    pub fn room(&self, room_name: &str) -> RoomKeys {
        RoomKeys {
            room: room_name.to_owned(),
            tag: format!("{{{}:room:{room_name}}}", self.prefix()),
        }
    }

    /// Pub/sub channel a gateway instance publishes its own liveness probe on (and expects it back
    /// on its subscription connection): `<p>:bus:probe:<instance>`.
    pub fn bus_probe(&self, instance: &str) -> String {
        format!("{}:bus:probe:{instance}", self.prefix())
    }

    /// Pub/sub channel every gateway instance of the deployment listens on for server-side control
    /// (disconnect a user, unsubscribe a user from a room): `<p>:bus:control`.
    pub fn realtime_control_channel(&self) -> String {
        format!("{}:bus:control", self.prefix())
    }

    /// Hash of announced user statuses (user id → `online`/`away`/`busy`/`offline`), read by
    /// presence: `<p>:realtime:user_status`.
    pub fn user_status(&self) -> String {
        format!("{}:realtime:user_status", self.prefix())
    }
}

impl RoomKeys {
    /// The room name these keys belong to.
    pub fn room(&self) -> &str {
        &self.room
    }

    /// The hash tag shared by every key of this room, braces included.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// Stream of the room's last N messages (MAXLEN ~N, EXPIRE): `…:history`.
    pub fn history(&self) -> String {
        format!("{}:history", self.tag)
    }

    /// Hash holding the room's epoch and last offset: `…:meta`.
    pub fn meta(&self) -> String {
        format!("{}:meta", self.tag)
    }

    /// Pub/sub channel the room's live messages are published on: `…:channel`.
    pub fn channel(&self) -> String {
        format!("{}:channel", self.tag)
    }

    /// Hash of online users (user id → expiry ms): `…:presence`.
    pub fn presence(&self) -> String {
        format!("{}:presence", self.tag)
    }

    /// Idempotency record of one publish (e.g. a `Broadcast` with an idempotency key): `…:dedup:<key>`.
    pub fn dedup(&self, key: &str) -> String {
        format!("{}:dedup:{key}", self.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::super::hash_slot;
    use super::*;

    fn ks() -> KeySpace {
        KeySpace::new("ncy").expect("valid prefix")
    }

    #[test]
    fn room_key_formats() {
        let r = ks().room("project:p1");
        assert_eq!(r.room(), "project:p1");
        assert_eq!(r.tag(), "{ncy:room:project:p1}");
        assert_eq!(r.history(), "{ncy:room:project:p1}:history");
        assert_eq!(r.meta(), "{ncy:room:project:p1}:meta");
        assert_eq!(r.channel(), "{ncy:room:project:p1}:channel");
        assert_eq!(r.presence(), "{ncy:room:project:p1}:presence");
        assert_eq!(r.dedup("k1"), "{ncy:room:project:p1}:dedup:k1");
        assert_eq!(ks().bus_probe("i1"), "ncy:bus:probe:i1");
        assert_eq!(ks().user_status(), "ncy:realtime:user_status");
        assert_eq!(ks().realtime_control_channel(), "ncy:bus:control");
    }

    #[test]
    fn all_keys_of_one_room_share_a_slot() {
        for name in ["broadcast", "user:u1", "org:o1", "project:p1"] {
            let r = ks().room(name);
            let slot = hash_slot(r.tag());
            for key in [
                r.history(),
                r.meta(),
                r.channel(),
                r.presence(),
                r.dedup("x"),
            ] {
                assert_eq!(hash_slot(&key), slot, "{key}");
            }
        }
    }

    #[test]
    fn different_rooms_and_queues_use_different_tags() {
        let k = ks();
        assert_ne!(k.room("user:1").tag(), k.room("user:2").tag());
        assert_ne!(k.room("email").tag(), k.queue("email").tag());
    }
}
