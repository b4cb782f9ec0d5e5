//! WebSocket client frames: what `connection::on_text` does with an incoming text frame.
//!
//! The input is the frame's text (a text frame is valid UTF-8 by the time the gateway sees it).
//! It goes through the same `serde_json::from_str::<ClientFrame>` the connection calls, then
//! through the parsing the connection applies to the fields of each frame: room names
//! (`presence`, the keys of `authenticate.since`) as `ncy_types::Room`, project ids as UUIDs
//! turned into `project:<id>` rooms. Nothing may panic; a room that parses must print to a name
//! that parses back to the same room.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ncy_types::Room;
use realtime_gateway::ClientFrame;
use uuid::Uuid;

fn room_round_trips(name: &str) {
    if let Ok(room) = name.parse::<Room>() {
        let printed = room.name();
        let again: Room = printed
            .parse()
            .unwrap_or_else(|e| panic!("{name:?} parsed, but its name {printed:?} does not: {e}"));
        assert_eq!(room, again, "{name:?} -> {printed:?}");
        assert_eq!(printed, again.name());
    }
}

fn project_room(project_id: &str) {
    if let Ok(project) = Uuid::parse_str(project_id) {
        room_round_trips(&Room::project(project).name());
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(frame) = serde_json::from_str::<ClientFrame>(text) else {
        return;
    };
    // Error frames quote the frame in logs via Debug; it must not panic either.
    let _ = format!("{frame:?}");
    match frame {
        ClientFrame::Authenticate { token, since } => {
            let _ = token.len();
            for (room, position) in &since {
                room_round_trips(room);
                let _ = (position.offset, position.epoch.len());
            }
        }
        ClientFrame::Refresh { token } => {
            let _ = token.len();
        }
        ClientFrame::JoinProject { project_id, since } => {
            project_room(&project_id);
            if let Some(p) = since {
                let _ = (p.offset, p.epoch.len());
            }
        }
        ClientFrame::LeaveProject { project_id } => project_room(&project_id),
        ClientFrame::Presence { room } => room_round_trips(&room),
        ClientFrame::Ping => {}
    }
});
