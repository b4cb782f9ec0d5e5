//! Entities: what "entity X changed" invalidates, defined once for InvalidateEntity (`api.rs`) and
//! for a row changed in PostgreSQL (`db_notify.rs`).
//!
//! An entity kind has a name, which is at once the family of its record (`<name>:<id>`) and of its
//! tag (`<name>:<id>`), and may have lists cached beside the record under the same id. Invalidating
//! the entity deletes its own keys (record and lists, from L2 and every L1) and invalidates its tag,
//! which drops every entry that depends on it: the member and task lists tagged `user:<member>`,
//! an entry a caller Set with the tag `project:<id>`. A change to a list's rows alone (a membership,
//! a task) deletes the lists and leaves the tag: nothing else depends on the list.
//!
//! | kind | own keys | tag |
//! |---|---|---|
//! | `user` | `user:X` | `user:X` |
//! | `org` | `org:X`, `org_members:X` | `org:X` |
//! | `project` | `project:X`, `project_tasks:X` | `project:X` |
//! | any other loader kind `k` | `k:X` | `k:X` |
//!
//! The first three are the proto's `EntityType` values, with UUID ids. Every other loader kind,
//! from `NCY_CACHE_LOADERS_FILE` or a default list kind, is an entity of its own, named in the
//! request's `kind` and with ids in its loader's format. Its tag is `<kind>:<id>` like the seed
//! kinds', never another tag its loader attaches: a kind tagged `user:{id}` depends on the user,
//! and invalidating that entry must not invalidate the user's other entries.
//!
//! Why here rather than in ncy-types: which keys an entity owns is the cache gateway's contract
//! (its proto's `EntityType`, its loaders), and the kinds of the loaders file exist only in the
//! running gateway. ncy-types keeps what every service needs: key layout and which service owns
//! which family (`KEY_FAMILIES`), against which `seed_families_are_loader_families` checks this
//! table.
use std::sync::Arc;

use ncy_proto::cache::v1 as pb;
use ncy_types::keys::entry_key;

use crate::{
    error::CacheError,
    loaders::{Loader, Loaders},
};

/// A kind of entity.
#[derive(Debug, Clone)]
pub enum EntityKind {
    /// `ENTITY_TYPE_USER`.
    User,
    /// `ENTITY_TYPE_ORG`.
    Org,
    /// `ENTITY_TYPE_PROJECT`.
    Project,
    /// Any other loader kind: its one key and its tag.
    Loaded(Arc<Loader>),
}

/// What one change invalidates: logical keys to delete and a tag to invalidate.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Invalidation {
    /// Logical keys (`org:X`), deleted from L2 and every L1.
    pub keys: Vec<String>,
    /// The tag (`org:X`) whose entries are dropped, if the change reaches beyond the keys.
    pub tag: Option<String>,
}

impl EntityKind {
    /// The seed kind of a proto `EntityType`; `None` for unspecified or unknown values.
    pub fn of_type(entity_type: i32) -> Option<Self> {
        match pb::EntityType::try_from(entity_type).ok()? {
            pb::EntityType::Unspecified => None,
            pb::EntityType::User => Some(Self::User),
            pb::EntityType::Org => Some(Self::Org),
            pb::EntityType::Project => Some(Self::Project),
        }
    }

    /// The kind called `name`: a seed kind, else a loader kind; INVALID_ARGUMENT naming `field`.
    pub fn named(field: &str, name: &str, loaders: &Loaders) -> Result<Self, CacheError> {
        match name {
            "user" => Ok(Self::User),
            "org" => Ok(Self::Org),
            "project" => Ok(Self::Project),
            _ => loaders.find(name).map(Self::Loaded).ok_or_else(|| {
                CacheError::invalid(
                    field,
                    format!("unknown entity kind {name:?}: user, org, project or a loader kind"),
                )
            }),
        }
    }

    /// The kind an InvalidateEntity request names: `entity_type` or `kind`, exactly one.
    pub fn requested(
        req: &pb::InvalidateEntityRequest,
        loaders: &Loaders,
    ) -> Result<Self, CacheError> {
        match (req.entity_type, req.kind.is_empty()) {
            (0, false) => Self::named("kind", &req.kind, loaders),
            (_, false) => Err(CacheError::invalid(
                "kind",
                "set exactly one of entity_type and kind, not both",
            )),
            (t, true) => Self::of_type(t).ok_or_else(|| {
                CacheError::invalid("entity_type", "must be USER, ORG or PROJECT (or set kind)")
            }),
        }
    }

    /// Its name: the family of its record and of its tag.
    pub fn name(&self) -> &str {
        match self {
            Self::User => "user",
            Self::Org => "org",
            Self::Project => "project",
            Self::Loaded(loader) => &loader.kind,
        }
    }

    /// The families of the lists cached beside its record under the same id.
    pub fn lists(&self) -> &'static [&'static str] {
        match self {
            Self::User | Self::Loaded(_) => &[],
            Self::Org => &["org_members"],
            Self::Project => &["project_tasks"],
        }
    }

    /// Validates and normalises an id of this kind (INVALID_ARGUMENT naming `id`).
    pub fn normalize_id(&self, id: &str) -> Result<String, CacheError> {
        match self {
            Self::Loaded(loader) => loader.normalize_id(id),
            _ => Ok(ncy_types::parse_uuid("id", id)?.to_string()),
        }
    }

    /// The entity `id` changed: its record and lists, and its tag.
    pub fn changed(&self, id: &str) -> Invalidation {
        let mut keys = vec![entry_key(self.name(), id)];
        keys.extend(self.lists().iter().map(|list| entry_key(list, id)));
        Invalidation {
            keys,
            tag: Some(format!("{}:{id}", self.name())),
        }
    }

    /// Only the rows of the lists of entity `id` changed (a membership, a task): the lists.
    pub fn lists_changed(&self, id: &str) -> Invalidation {
        Invalidation {
            keys: self
                .lists()
                .iter()
                .map(|list| entry_key(list, id))
                .collect(),
            tag: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ncy_types::keys::{KeyFamily, Owner};

    use super::*;

    const ID: &str = "123e4567-e89b-12d3-a456-426614174000";

    fn loaders() -> Loaders {
        Loaders::load(None, Duration::from_secs(60)).expect("defaults")
    }

    fn seeds() -> [EntityKind; 3] {
        [EntityKind::User, EntityKind::Org, EntityKind::Project]
    }

    #[test]
    fn seed_kinds_keep_their_keys_and_tags() {
        let changed = |kind: EntityKind| kind.changed(ID);
        assert_eq!(
            changed(EntityKind::User),
            Invalidation {
                keys: vec![format!("user:{ID}")],
                tag: Some(format!("user:{ID}")),
            }
        );
        assert_eq!(
            changed(EntityKind::Org),
            Invalidation {
                keys: vec![format!("org:{ID}"), format!("org_members:{ID}")],
                tag: Some(format!("org:{ID}")),
            }
        );
        assert_eq!(
            changed(EntityKind::Project),
            Invalidation {
                keys: vec![format!("project:{ID}"), format!("project_tasks:{ID}")],
                tag: Some(format!("project:{ID}")),
            }
        );
        assert_eq!(
            EntityKind::Org.lists_changed(ID),
            Invalidation {
                keys: vec![format!("org_members:{ID}")],
                tag: None,
            }
        );
    }

    #[test]
    fn seed_families_are_loader_families() {
        let loaders = loaders();
        for kind in seeds() {
            for family in std::iter::once(kind.name()).chain(kind.lists().iter().copied()) {
                let listed = KeyFamily::plain(family).map(|f| f.owner);
                assert_eq!(listed, Some(Owner::CacheLoaders), "{family}");
                assert!(loaders.backs(family), "{family}");
            }
        }
    }

    #[test]
    fn proto_types_and_names_agree() {
        let loaders = loaders();
        for (t, kind) in [1, 2, 3].into_iter().zip(seeds()) {
            let by_type = EntityKind::of_type(t).expect("seed type");
            let by_name = EntityKind::named("kind", kind.name(), &loaders).expect("seed name");
            assert_eq!(by_type.name(), kind.name());
            assert_eq!(by_name.name(), kind.name());
        }
        assert!(EntityKind::of_type(0).is_none());
        assert!(EntityKind::of_type(99).is_none());
    }

    #[test]
    fn other_loader_kinds_are_entities_of_their_own() {
        let loaders = loaders();
        let kind = EntityKind::named("kind", "org_members", &loaders).expect("loader kind");
        assert_eq!(
            kind.changed(ID),
            Invalidation {
                keys: vec![format!("org_members:{ID}")],
                tag: Some(format!("org_members:{ID}")),
            }
        );
        let err = EntityKind::named("kind", "nope", &loaders).expect_err("unknown");
        assert!(err.to_string().starts_with("kind:"), "{err}");
    }
}
