//! Who may sign in to the console, and with which role: a TOML file of users with argon2
//! password hashes (PHC strings), made with `ncy-console hash-password`:
//!
//! ```toml
//! [[users]]
//! name = "alice"                     # letters, digits, `.`, `_`, `-`, `@`; 1 to 64 characters
//! role = "operator"                  # `viewer` (reads only) or `operator` (may act)
//! password_hash = "$argon2id$v=19$m=19456,t=2,p=1$…"
//! ```
//!
//! The file is checked whole at start (a bad one stops the console with exit 64) and read again
//! on every signed-in request, so removing a user or changing a role takes effect at that user's
//! next click, on every replica: a session names a user, and the role is always the file's. A
//! file that stops parsing while serving keeps the last good users (logged), so a bad edit cannot
//! lock every operator out during an incident.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, OnceLock, PoisonError},
};

use argon2::{
    Algorithm, Argon2, Params,
    password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash},
};
use serde::Deserialize;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads every page; every action is refused.
    Viewer,
    /// Reads and acts: cancel, pause, resume, retry, delete.
    Operator,
}

impl Role {
    /// The role as written in the users file and in the session cookie.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
        }
    }

    /// The role from its name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "viewer" => Some(Self::Viewer),
            "operator" => Some(Self::Operator),
            _ => None,
        }
    }
}

/// One user of the file.
#[derive(Clone)]
pub struct User {
    /// The sign-in name.
    pub name: String,
    /// What the user may do.
    pub role: Role,
    password_hash: String,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// Why a users file is refused.
#[derive(Debug, thiserror::Error)]
pub enum UsersFileError {
    /// The file cannot be read.
    #[error("cannot read the users file: {0}")]
    Read(#[from] std::io::Error),
    /// Not TOML of the expected shape (an unknown role or field is named here).
    #[error("not a valid users file: {0}")]
    Parse(String),
    /// Not UTF-8 text.
    #[error("not a valid users file: not UTF-8 text")]
    NotText,
    /// No `[[users]]` entry.
    #[error("lists no users; add at least one [[users]] entry")]
    NoUsers,
    /// A name outside the allowed characters or length.
    #[error("user name {0:?} must be 1 to 64 letters, digits, `.`, `_`, `-` or `@`")]
    BadName(String),
    /// The same name twice.
    #[error("user {0:?} is listed twice")]
    Duplicate(String),
    /// A hash that is not an argon2 PHC string.
    #[error(
        "user {0:?}: password_hash is not an argon2 PHC string ($argon2id$v=19$m=…); make one with `ncy-console hash-password`"
    )]
    BadHash(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileShape {
    #[serde(default)]
    users: Vec<UserEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    name: String,
    role: Role,
    password_hash: String,
}

/// The users of one version of the file, by name.
#[derive(Debug, Clone)]
pub struct UserTable {
    users: BTreeMap<String, User>,
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
}

/// The hash is argon2 in PHC format with parameters argon2 accepts.
fn valid_hash(hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Algorithm::try_from(parsed.algorithm.as_str()).is_ok()
            && Params::try_from(&parsed).is_ok()
            && parsed.salt.is_some()
            && parsed.hash.is_some()
    })
}

impl UserTable {
    /// Parses and checks the text of a users file.
    pub fn parse(text: &str) -> Result<Self, UsersFileError> {
        let shape: FileShape = toml::from_str(text).map_err(|e| {
            // One line (the error's own text draws the line with a caret under it).
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
            let message = e.message().trim().replace('\n', " ");
            UsersFileError::Parse(match line {
                Some(n) => format!("line {n}: {message}"),
                None => message,
            })
        })?;
        if shape.users.is_empty() {
            return Err(UsersFileError::NoUsers);
        }
        let mut users = BTreeMap::new();
        for entry in shape.users {
            if !valid_name(&entry.name) {
                return Err(UsersFileError::BadName(entry.name));
            }
            if !valid_hash(entry.password_hash.trim()) {
                return Err(UsersFileError::BadHash(entry.name));
            }
            if users.contains_key(&entry.name) {
                return Err(UsersFileError::Duplicate(entry.name));
            }
            let user = User {
                name: entry.name.clone(),
                role: entry.role,
                password_hash: entry.password_hash.trim().to_owned(),
            };
            users.insert(entry.name, user);
        }
        Ok(Self { users })
    }

    /// Reads and checks the users file at `path`.
    pub fn load(path: &Path) -> Result<Self, UsersFileError> {
        let text = std::fs::read_to_string(path)?;
        Self::parse(&text)
    }

    /// The user called `name`.
    pub fn get(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    /// The password hash of some user, for the time an unknown name costs (see [`verify`]).
    fn any_hash(&self) -> Option<&str> {
        self.users.values().next().map(|u| u.password_hash.as_str())
    }
}

/// The users file, read again on use. Cheap to share.
#[derive(Debug)]
pub struct Users {
    path: PathBuf,
    /// The bytes last read and the table they gave (the last good one if they did not parse).
    last: Mutex<(Vec<u8>, Arc<UserTable>)>,
}

impl Users {
    /// Users from `path`, starting from `table` (read from it at start).
    pub fn new(path: PathBuf, table: UserTable) -> Self {
        Self {
            path,
            last: Mutex::new((Vec::new(), Arc::new(table))),
        }
    }

    /// The users as the file says now; the last good table when it cannot be read or parsed.
    pub async fn current(&self) -> Arc<UserTable> {
        let read = tokio::fs::read(&self.path).await;
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        match read {
            Ok(bytes) if bytes == last.0 => {}
            Ok(bytes) => {
                match std::str::from_utf8(&bytes)
                    .map_err(|_| UsersFileError::NotText)
                    .and_then(UserTable::parse)
                {
                    Ok(table) => {
                        if !last.0.is_empty() {
                            tracing::info!(file = %self.path.display(), "users file changed; reloaded");
                        }
                        last.1 = Arc::new(table);
                    }
                    Err(e) => {
                        metrics::counter!("console_users_file_errors_total").increment(1);
                        tracing::error!(file = %self.path.display(), error = %e, "users file changed but is not valid; keeping the previous users");
                    }
                }
                last.0 = bytes;
            }
            Err(e) => {
                metrics::counter!("console_users_file_errors_total").increment(1);
                tracing::error!(file = %self.path.display(), error = %e, "cannot read the users file; keeping the previous users");
            }
        }
        last.1.clone()
    }
}

/// Hashes `password` as an argon2id PHC string with the library's recommended parameters.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    Ok(Argon2::default()
        .hash_password(password.as_bytes())?
        .to_string())
}

/// The role of `name` when `password` is theirs; `None` for an unknown name or a wrong password,
/// which cost the same argon2 work (an unknown name is checked against another user's hash), so
/// the answer time does not tell which names exist. Runs on the blocking pool.
pub async fn verify(table: Arc<UserTable>, name: String, password: String) -> Option<Role> {
    let work = tokio::task::spawn_blocking(move || {
        let (role, hash) = match table.get(&name) {
            Some(user) => (Some(user.role), user.password_hash.clone()),
            None => (None, decoy_hash(table.any_hash())),
        };
        let parsed = PasswordHash::new(&hash).ok()?;
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        role.filter(|_| ok)
    });
    work.await.ok().flatten()
}

/// A hash of a random password with the same parameters as `like` (a user's hash), made once.
fn decoy_hash(like: Option<&str>) -> String {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY
        .get_or_init(|| {
            let params = like
                .and_then(|h| PasswordHash::new(h).ok())
                .and_then(|h| Params::try_from(&h).ok())
                .unwrap_or_default();
            Argon2::new(Algorithm::Argon2id, argon2::Version::V0x13, params)
                .hash_password(b"no user has this password")
                .map(|h| h.to_string())
                .unwrap_or_default()
        })
        .clone()
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A hash with the smallest argon2 cost, so tests do not spend seconds on it.
    pub(crate) fn cheap_hash(password: &str) -> String {
        let params = Params::new(Params::MIN_M_COST, 1, 1, None).unwrap();
        Argon2::new(Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password(password.as_bytes())
            .unwrap()
            .to_string()
    }

    fn file(entries: &[(&str, &str, &str)]) -> String {
        entries
            .iter()
            .map(|(n, r, h)| {
                format!("[[users]]\nname = \"{n}\"\nrole = \"{r}\"\npassword_hash = \"{h}\"\n")
            })
            .collect()
    }

    #[test]
    fn a_good_file_parses() {
        let h = cheap_hash("pw");
        let t =
            UserTable::parse(&file(&[("ana", "viewer", &h), ("bo.b", "operator", &h)])).unwrap();
        assert_eq!(t.get("ana").unwrap().role, Role::Viewer);
        assert_eq!(t.get("bo.b").unwrap().role, Role::Operator);
        assert!(t.get("carl").is_none());
        assert!(
            !format!("{t:?}").contains("argon2"),
            "hashes stay out of Debug"
        );
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        let h = cheap_hash("pw");
        let cases = [
            (String::new(), "no users"),
            ("users = [".to_owned(), "valid"),
            (file(&[("ana", "admin", &h)]), "admin"),
            (file(&[("ana", "viewer", "plaintext")]), "PHC"),
            (
                file(&[("ana", "viewer", "$pbkdf2-sha256$i=1000$c2FsdA$aGFzaA")]),
                "PHC",
            ),
            (file(&[("a b", "viewer", &h)]), "letters"),
            (
                file(&[("ana", "viewer", &h), ("ana", "operator", &h)]),
                "twice",
            ),
            (
                format!("{}extra = 1\n", file(&[("ana", "viewer", &h)])),
                "extra",
            ),
        ];
        for (text, needle) in cases {
            let err = UserTable::parse(&text).expect_err(&text).to_string();
            assert!(err.contains(needle), "{text:?} → {err}");
        }
    }

    #[tokio::test]
    async fn verify_accepts_only_the_right_password_of_a_known_user() {
        let h = cheap_hash("correct horse");
        let t = Arc::new(UserTable::parse(&file(&[("ana", "operator", &h)])).unwrap());
        let ok = verify(t.clone(), "ana".into(), "correct horse".into()).await;
        assert_eq!(ok, Some(Role::Operator));
        assert_eq!(verify(t.clone(), "ana".into(), "wrong".into()).await, None);
        assert_eq!(verify(t, "bob".into(), "correct horse".into()).await, None);
    }

    #[tokio::test]
    async fn the_file_is_read_again_and_a_bad_edit_keeps_the_last_users() {
        let h = cheap_hash("pw");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        std::fs::write(&path, file(&[("ana", "operator", &h)])).unwrap();
        let users = Users::new(path.clone(), UserTable::load(&path).unwrap());
        assert_eq!(
            users.current().await.get("ana").unwrap().role,
            Role::Operator
        );
        std::fs::write(&path, file(&[("ana", "viewer", &h)])).unwrap();
        assert_eq!(users.current().await.get("ana").unwrap().role, Role::Viewer);
        std::fs::write(&path, "not toml [").unwrap();
        assert_eq!(users.current().await.get("ana").unwrap().role, Role::Viewer);
        std::fs::write(&path, file(&[("bo", "viewer", &h)])).unwrap();
        assert!(users.current().await.get("ana").is_none());
    }
}
