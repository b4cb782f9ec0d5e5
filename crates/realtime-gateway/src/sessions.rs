//! The authenticated sockets of this instance, by user.
//!
//! Why: every server-side decision about a user — access revoked, `DisconnectUser`,
//! `UnsubscribeUser` — has to reach that user's sockets, including one that is in no room at all
//! (its joins failed). The hub only knows rooms, so each socket registers here when it
//! authenticates and leaves when it ends. One entry per user, one pointer per socket.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use uuid::Uuid;

use crate::hub::Outbox;

/// Sockets by user.
#[derive(Default)]
pub struct Sessions {
    by_user: Mutex<HashMap<Uuid, Vec<Arc<Outbox>>>>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Vec<Arc<Outbox>>>> {
        self.by_user.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers an authenticated socket of `user`.
    pub fn add(&self, user: Uuid, outbox: Arc<Outbox>) {
        self.lock().entry(user).or_default().push(outbox);
    }

    /// Forgets socket `conn` of `user`.
    pub fn remove(&self, user: Uuid, conn: u64) {
        let mut by_user = self.lock();
        if let Some(sockets) = by_user.get_mut(&user) {
            sockets.retain(|o| o.id != conn);
            if sockets.is_empty() {
                by_user.remove(&user);
            }
        }
    }

    /// The sockets of `user` on this instance.
    pub fn of(&self, user: Uuid) -> Vec<Arc<Outbox>> {
        self.lock().get(&user).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_come_and_go_per_user() {
        let s = Sessions::default();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        s.add(a, Outbox::new(1, 4));
        s.add(a, Outbox::new(2, 4));
        s.add(b, Outbox::new(3, 4));
        let ids = |u| s.of(u).iter().map(|o| o.id).collect::<Vec<_>>();
        assert_eq!(ids(a), vec![1, 2]);
        s.remove(a, 1);
        assert_eq!(ids(a), vec![2]);
        s.remove(a, 2);
        assert!(ids(a).is_empty());
        assert_eq!(ids(b), vec![3]);
    }
}
