//! The key families of the platform and who owns each: the one list every guard is derived from.
//!
//! A family is the first segment of a key under the deployment prefix `<p>`: `user` in
//! `<p>:user:<id>`, `q` in `{<p>:q:email}:job:<id>`. The cache gateway lets its callers name keys
//! (`Set("report:1")` writes `<p>:report:1`), so a caller could otherwise name a key another service
//! keeps state in and replace it (`Set("realtime:user_status")` would turn the realtime gateway's
//! status hash into a string). The gateway consults this list: callers may only write
//! [`Owner::CacheClients`] families, and read or delete those and [`Owner::CacheLoaders`] ones.
//!
//! A new builder in this module gets its family added here; the test at the bottom calls every
//! builder and fails on a key whose family is missing. The cache gateway's other lists follow from
//! this one: its `key_pattern` metrics labels are the plain families callers may read plus its
//! loader kinds.

/// Which service writes a family's keys, and so what callers of the cache gateway may do with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Owner {
    /// Entries callers of the cache gateway write and read by key (Set, Get, Delete, …). Every
    /// family not in [`KEY_FAMILIES`] is one of these too (`report:1`, `feed:7`).
    CacheClients,
    /// Entries the cache gateway fills from PostgreSQL through its loaders (GetOrLoad serves them
    /// as authoritative). Callers may read and delete them (a delete forces a reload), not write.
    CacheLoaders,
    /// The cache gateway's own state behind dedicated RPCs: rate limits, sessions and their index,
    /// tag timestamps, load leases, the invalidation channel.
    CacheGateway,
    /// The realtime gateway and the room bus: user statuses, rooms, liveness probes.
    Realtime,
    /// The job engine: queues and cron schedules.
    Jobs,
    /// Every service's instance registry (the runtime's): which instances are live, with their
    /// last reported snapshot.
    Runtime,
}

impl Owner {
    /// Who that is, for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            Self::CacheClients => "callers of the cache",
            Self::CacheLoaders => "the cache gateway's loaders",
            Self::CacheGateway => "the cache gateway's own RPCs",
            Self::Realtime => "the realtime gateway",
            Self::Jobs => "the job engine",
            Self::Runtime => "the services' instance registry",
        }
    }
}

/// Where a family's keys sit under the deployment prefix `<p>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    /// `<p>:<family>:…`: the same space as the keys callers of the cache name.
    Plain,
    /// `{<p>:<family>…}…`: hash-tagged, starting with `{`, so no cache key (always `<p>:…`) can
    /// be one of them.
    Tagged,
}

/// One key family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyFamily {
    /// The first segment of its keys (after the prefix).
    pub name: &'static str,
    /// Who writes it.
    pub owner: Owner,
    /// Where its keys sit.
    pub layout: Layout,
}

const fn family(name: &'static str, owner: Owner, layout: Layout) -> KeyFamily {
    KeyFamily {
        name,
        owner,
        layout,
    }
}

/// Every key family the services write. Cache-client keys of other families need no entry.
pub const KEY_FAMILIES: &[KeyFamily] = &[
    family("api", Owner::CacheClients, Layout::Plain),
    family("user", Owner::CacheLoaders, Layout::Plain),
    family("org", Owner::CacheLoaders, Layout::Plain),
    family("org_members", Owner::CacheLoaders, Layout::Plain),
    family("project", Owner::CacheLoaders, Layout::Plain),
    family("project_tasks", Owner::CacheLoaders, Layout::Plain),
    family("rate_limit", Owner::CacheGateway, Layout::Plain),
    family("session", Owner::CacheGateway, Layout::Plain),
    family("user_sessions", Owner::CacheGateway, Layout::Plain),
    family("cache", Owner::CacheGateway, Layout::Plain),
    family("realtime", Owner::Realtime, Layout::Plain),
    family("bus", Owner::Realtime, Layout::Plain),
    family("room", Owner::Realtime, Layout::Tagged),
    family("q", Owner::Jobs, Layout::Tagged),
    family("cron", Owner::Jobs, Layout::Tagged),
    family("instances", Owner::Runtime, Layout::Plain),
];

/// The family segment of a logical cache key: `user` of `user:1`, the whole key without a colon.
pub fn family_name(key: &str) -> &str {
    key.split_once(':').map_or(key, |(family, _)| family)
}

/// The logical key of entry `id` of a family filled by id (a loader kind): `<family>:<id>`.
/// [`KeySpace::cache_key`](super::KeySpace::cache_key) of it is the full key.
pub fn entry_key(family: &str, id: impl std::fmt::Display) -> String {
    format!("{family}:{id}")
}

impl KeyFamily {
    /// The family of a logical cache key (`<family>:…`, or the whole key without a colon), when it
    /// is a listed plain family. `None`: a cache-client key.
    pub fn of_logical(key: &str) -> Option<&'static KeyFamily> {
        Self::plain(family_name(key))
    }

    /// The listed plain family called `name`.
    pub fn plain(name: &str) -> Option<&'static KeyFamily> {
        KEY_FAMILIES
            .iter()
            .find(|f| f.layout == Layout::Plain && f.name == name)
    }

    /// Whether callers of the cache gateway may read and delete keys of this family by name.
    pub fn cache_readable(&self) -> bool {
        matches!(self.owner, Owner::CacheClients | Owner::CacheLoaders)
    }

    /// Whether callers of the cache gateway may write keys of this family by name.
    pub fn cache_writable(&self) -> bool {
        self.owner == Owner::CacheClients
    }
}

impl super::KeySpace {
    /// The listed family of a full key of this key space, `None` for cache-client keys and keys of
    /// other prefixes.
    pub fn family_of(&self, key: &str) -> Option<&'static KeyFamily> {
        if let Some(logical) = self.logical(key) {
            return KeyFamily::of_logical(logical);
        }
        let prefix = self.prefix();
        let rest = key
            .strip_prefix('{')
            .and_then(|r| r.strip_prefix(prefix))
            .and_then(|r| r.strip_prefix(':'))?;
        let name = rest.split([':', '}']).next().unwrap_or_default();
        KEY_FAMILIES
            .iter()
            .find(|f| f.layout == Layout::Tagged && f.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::super::KeySpace;
    use super::*;

    fn ks() -> KeySpace {
        KeySpace::new("ncy").expect("valid prefix")
    }

    /// Every key builder of this module, with the owner of the family its key must fall in.
    fn every_builder(k: &KeySpace) -> Vec<(String, Owner)> {
        let json = serde_json::json!({"a": 1});
        let q = k.queue("email");
        let r = k.room("project:p1");
        let mut keys = vec![
            (k.api("e", &json), Owner::CacheClients),
            (k.user("1"), Owner::CacheLoaders),
            (k.org("1"), Owner::CacheLoaders),
            (k.org_members("1"), Owner::CacheLoaders),
            (k.project("1"), Owner::CacheLoaders),
            (k.project_tasks("1"), Owner::CacheLoaders),
            (k.rate_limit("api", "1"), Owner::CacheGateway),
            (k.session("1"), Owner::CacheGateway),
            (k.user_sessions("1"), Owner::CacheGateway),
            (k.cache_tag("t"), Owner::CacheGateway),
            (k.cache_lease(&k.user("1")), Owner::CacheGateway),
            (k.cache_invalidation_channel(), Owner::CacheGateway),
            (k.realtime("c"), Owner::Realtime),
            (k.user_status(), Owner::Realtime),
            (k.bus_probe("i1"), Owner::Realtime),
            (k.realtime_control_channel(), Owner::Realtime),
            (k.schedules(), Owner::Jobs),
            (k.schedule_last_fired(), Owner::Jobs),
            (k.schedule_lease("s"), Owner::Jobs),
            (k.instances("cache-gateway"), Owner::Runtime),
        ];
        let room = [
            r.history(),
            r.meta(),
            r.channel(),
            r.presence(),
            r.dedup("k"),
        ];
        keys.extend(room.into_iter().map(|key| (key, Owner::Realtime)));
        let mut queue = q.fixed_keys();
        queue.extend([
            q.ready(0),
            q.job("j1"),
            q.job_prefix(),
            q.dedup("k"),
            q.dedup_prefix(),
            q.promoter_wake_channel(),
            q.events_channel(),
            q.history(20_000),
        ]);
        keys.extend(queue.into_iter().map(|key| (key, Owner::Jobs)));
        keys
    }

    #[test]
    fn every_builder_s_key_is_in_a_listed_family_of_its_owner() {
        let k = ks();
        for (key, owner) in every_builder(&k) {
            let family = k.family_of(&key);
            assert_eq!(family.map(|f| f.owner), Some(owner), "{key}");
        }
    }

    #[test]
    fn only_cache_client_families_are_writable_and_loader_ones_readable() {
        let k = ks();
        for (key, owner) in every_builder(&k) {
            let family = k.family_of(&key).expect("listed");
            assert_eq!(
                family.cache_writable(),
                owner == Owner::CacheClients,
                "{key}"
            );
            assert_eq!(
                family.cache_readable(),
                matches!(owner, Owner::CacheClients | Owner::CacheLoaders),
                "{key}"
            );
        }
    }

    #[test]
    fn names_are_unique_per_layout() {
        for (i, a) in KEY_FAMILIES.iter().enumerate() {
            for b in &KEY_FAMILIES[i + 1..] {
                assert!(a.name != b.name || a.layout != b.layout, "{}", a.name);
            }
        }
    }

    #[test]
    fn entry_keys_are_the_builders_keys_without_the_prefix() {
        let k = ks();
        assert_eq!(k.cache_key(&entry_key("user", "1")), k.user("1"));
        assert_eq!(
            k.cache_key(&entry_key("project_tasks", "p")),
            k.project_tasks("p")
        );
        assert_eq!(family_name(&entry_key("org_members", "o:1")), "org_members");
        assert_eq!(family_name("user"), "user");
        assert_eq!(family_name(""), "");
    }

    #[test]
    fn logical_keys_map_to_their_plain_family() {
        let f = |key| KeyFamily::of_logical(key).map(|f| f.name);
        assert_eq!(f("realtime:user_status"), Some("realtime"));
        assert_eq!(f("realtime"), Some("realtime"));
        assert_eq!(f("user:1"), Some("user"));
        assert_eq!(f("cache:tag:x"), Some("cache"));
        assert_eq!(f("instances:cache-gateway"), Some("instances"));
        for client in ["report:1", "userx:1", "", "q:email", "room:1", "cron"] {
            assert_eq!(f(client), None, "{client}");
        }
        let k = ks();
        assert_eq!(k.family_of("other:user:1"), None);
        assert_eq!(k.family_of("{other:q:email}:job:1"), None);
        assert_eq!(k.family_of("ncy:report:1"), None);
    }
}
