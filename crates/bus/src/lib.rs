//! ncy-bus: the realtime room bus shared by the realtime gateway and every service that sends a
//! realtime message (worker alerts, job notifications).
//!
//! - [`BusPublisher`]: one Lua script per publish — epoch created if absent, offset = HINCRBY,
//!   XADD to the room's capped history stream, EXPIRE, PUBLISH — so history and live delivery never
//!   disagree, whoever publishes. The published payload is the browser's `message` frame itself,
//!   encoded once by the publisher and forwarded byte for byte by every gateway.
//! - [`History`]: reads a room's meta and history for recovery after a reconnect.
//! - [`Subscriber`]: one pub/sub connection per gateway instance, subscribing only rooms with local
//!   members, resubscribing and replaying missed history after a reconnect, with a liveness probe.
//! - [`Presence`]: who is online in a room (hash user/connection → expiry, expired lazily).
//!
//! Keys come from `ncy_types::KeySpace::room` (`{<p>:room:<room>}` hash tag), so each script
//! touches one Redis Cluster slot.
#![forbid(unsafe_code)]

mod error;
mod history;
mod message;
mod presence;
mod publish;
mod subscriber;

pub use error::BusError;
pub use history::{History, Recovery};
pub use message::BusMessage;
pub use presence::{Presence, PresenceChange, PresenceUser};
pub use publish::{BusPublisher, PublishOptions, Published};
pub use subscriber::{Deliver, Subscriber, SubscriberConfig};
