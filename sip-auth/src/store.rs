//! Where a server finds its users' secrets: a [`CredentialStore`] returns HA1 =
//! H(username:realm:password) for the hash function in use, so plain passwords need not be kept.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::hash::{self, HashFunction, HexDigest};

/// An HA1 value, `H(username:realm:password)` as lowercase hex, for one hash function.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Ha1 {
    hash: HashFunction,
    hex: HexDigest,
}

impl Ha1 {
    /// Computes HA1 from a password.
    pub fn from_password(hash: HashFunction, username: &str, realm: &str, password: &str) -> Ha1 {
        Ha1 {
            hash,
            hex: hash::ha1(hash, username, realm, password),
        }
    }

    /// Takes a precomputed HA1 in hex (either case); `None` unless it has the length of `hash`.
    pub fn from_hex(hash: HashFunction, hex: &str) -> Option<Ha1> {
        if hex.len() != hash.hex_len() {
            return None;
        }
        HexDigest::from_hex(hex).map(|hex| Ha1 { hash, hex })
    }

    /// The hash function this HA1 belongs to.
    pub fn hash(&self) -> HashFunction {
        self.hash
    }

    /// The lowercase hex digits.
    pub fn as_hex(&self) -> &HexDigest {
        &self.hex
    }
}

impl fmt::Debug for Ha1 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ha1({:?}, ..)", self.hash)
    }
}

/// Looks up a user's HA1.
///
/// Implement it over a database or a directory; [`MemoryStore`] is the in-memory one. It is asked
/// once per verified request, with the hash function of the algorithm the client chose (the
/// server derives the `-sess` HA1 itself).
pub trait CredentialStore {
    /// HA1 of `username` in `realm` for `hash`, or `None` when the user is unknown (or has no
    /// secret for that hash function).
    fn ha1(&self, username: &str, realm: &str, hash: HashFunction) -> Option<Ha1>;
}

impl<T: CredentialStore + ?Sized> CredentialStore for &T {
    fn ha1(&self, username: &str, realm: &str, hash: HashFunction) -> Option<Ha1> {
        (**self).ha1(username, realm, hash)
    }
}

impl<T: CredentialStore + ?Sized> CredentialStore for Arc<T> {
    fn ha1(&self, username: &str, realm: &str, hash: HashFunction) -> Option<Ha1> {
        (**self).ha1(username, realm, hash)
    }
}

impl<T: CredentialStore + ?Sized> CredentialStore for Box<T> {
    fn ha1(&self, username: &str, realm: &str, hash: HashFunction) -> Option<Ha1> {
        (**self).ha1(username, realm, hash)
    }
}

/// A user's HA1 per hash function (index: [`slot`]), and which were given explicitly.
#[derive(Clone, Default)]
struct Secret {
    ha1: [Option<Ha1>; 3],
    tagged: [bool; 3],
    from_password: bool,
}

const HASHES: [HashFunction; 3] = [
    HashFunction::Md5,
    HashFunction::Sha256,
    HashFunction::Sha512_256,
];

fn slot(hash: HashFunction) -> usize {
    match hash {
        HashFunction::Md5 => 0,
        HashFunction::Sha256 => 1,
        HashFunction::Sha512_256 => 2,
    }
}

impl Secret {
    /// Sets the HA1s not given explicitly from a password. The password itself is not kept.
    fn set_password(&mut self, username: &str, realm: &str, password: &str) {
        for hash in HASHES {
            let i = slot(hash);
            if let (Some(h), false) = (
                self.ha1.get_mut(i),
                self.tagged.get(i).copied().unwrap_or(true),
            ) {
                *h = Some(Ha1::from_password(hash, username, realm, password));
            }
        }
        self.from_password = true;
    }

    /// Sets an explicit HA1; returns whether one was already given for that hash function.
    fn set_ha1(&mut self, ha1: Ha1) -> bool {
        let i = slot(ha1.hash());
        let before = self.tagged.get(i).copied().unwrap_or(false);
        if let (Some(h), Some(t)) = (self.ha1.get_mut(i), self.tagged.get_mut(i)) {
            *h = Some(ha1);
            *t = true;
        }
        before
    }
}

/// Users held in memory: by realm, then by username, each with an HA1 per hash function
/// (computed from a password when given one; the password is not kept).
#[derive(Clone, Default)]
pub struct MemoryStore {
    realms: HashMap<String, HashMap<String, Secret>>,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("users", &self.len())
            .finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn secret(&mut self, username: &str, realm: &str) -> &mut Secret {
        self.realms
            .entry(realm.to_owned())
            .or_default()
            .entry(username.to_owned())
            .or_default()
    }

    /// Adds (or replaces) a user's password. The HA1 of every hash function for which no HA1
    /// was given is computed now; the password itself is not kept.
    pub fn insert_password(&mut self, username: &str, realm: &str, password: &str) {
        self.secret(username, realm)
            .set_password(username, realm, password);
    }

    /// Adds (or replaces) a user's HA1 for the hash function of `ha1`.
    pub fn insert_ha1(&mut self, username: &str, realm: &str, ha1: Ha1) {
        self.secret(username, realm).set_ha1(ha1);
    }

    /// Number of (user, realm) entries.
    pub fn len(&self) -> usize {
        self.realms.values().map(HashMap::len).sum()
    }

    /// Whether the store has no user.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads a users file: one `user:realm:secret` per line; blank lines and lines starting with
    /// `#` are skipped. The username and realm may not contain `:`; the secret is everything
    /// after the second `:` and is one of
    ///
    /// - `{MD5}hex32`, `{SHA-256}hex64`, `{SHA-512-256}hex64`: an HA1 for that hash function
    ///   (tags are case-insensitive; give one line per hash function you offer);
    /// - exactly 32 hex digits: an MD5 HA1 (the common `htdigest`-like form);
    /// - `{plain}password`: a password, whatever it looks like;
    /// - anything else: a password. Exactly 64 hex digits is refused as ambiguous (SHA-256 and
    ///   SHA-512-256 HA1s both have that length): tag it.
    ///
    /// The first bad line stops the load and is reported with its (1-based) number.
    ///
    /// ```
    /// use sip_auth::MemoryStore;
    /// let store = MemoryStore::from_users_file(
    ///     "# users\nalice:example.com:wonderland\nbob:example.com:939e7578ed9e3c518a452acee763bce9\n",
    /// )?;
    /// assert_eq!(store.len(), 2);
    /// let err = MemoryStore::from_users_file("ok:r:p\nbroken-line\n").unwrap_err();
    /// assert_eq!(err.line, 2);
    /// # Ok::<(), sip_auth::UsersFileError>(())
    /// ```
    pub fn from_users_file(text: &str) -> Result<MemoryStore, UsersFileError> {
        let mut store = MemoryStore::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let err = |kind| UsersFileError { line, kind };
            let l = raw.strip_suffix('\r').unwrap_or(raw);
            let trimmed = l.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let mut fields = l.splitn(3, ':');
            let (Some(user), Some(realm), Some(secret)) =
                (fields.next(), fields.next(), fields.next())
            else {
                return Err(err(UsersFileErrorKind::MissingField));
            };
            if user.is_empty() {
                return Err(err(UsersFileErrorKind::EmptyUsername));
            }
            if realm.is_empty() {
                return Err(err(UsersFileErrorKind::EmptyRealm));
            }
            let entry = store.secret(user, realm);
            let duplicate = match parse_secret(secret).map_err(err)? {
                Parsed::Password(p) => {
                    let again = entry.from_password;
                    entry.set_password(user, realm, p);
                    again
                }
                Parsed::Ha1(h) => entry.set_ha1(h),
            };
            if duplicate {
                return Err(err(UsersFileErrorKind::Duplicate));
            }
        }
        Ok(store)
    }
}

enum Parsed<'a> {
    Password(&'a str),
    Ha1(Ha1),
}

fn parse_secret(secret: &str) -> Result<Parsed<'_>, UsersFileErrorKind> {
    if let Some(rest) = secret.strip_prefix('{') {
        let Some((tag, value)) = rest.split_once('}') else {
            return Err(UsersFileErrorKind::UnknownTag);
        };
        let hash = match tag.to_ascii_uppercase().as_str() {
            "PLAIN" => return Ok(Parsed::Password(value)),
            "MD5" => HashFunction::Md5,
            "SHA-256" => HashFunction::Sha256,
            "SHA-512-256" => HashFunction::Sha512_256,
            _ => return Err(UsersFileErrorKind::UnknownTag),
        };
        return Ha1::from_hex(hash, value)
            .map(Parsed::Ha1)
            .ok_or(UsersFileErrorKind::BadHa1);
    }
    let all_hex = !secret.is_empty() && secret.bytes().all(|b| b.is_ascii_hexdigit());
    match secret.len() {
        32 if all_hex => Ha1::from_hex(HashFunction::Md5, secret)
            .map(Parsed::Ha1)
            .ok_or(UsersFileErrorKind::BadHa1),
        64 if all_hex => Err(UsersFileErrorKind::Ambiguous),
        _ => Ok(Parsed::Password(secret)),
    }
}

impl CredentialStore for MemoryStore {
    fn ha1(&self, username: &str, realm: &str, hash: HashFunction) -> Option<Ha1> {
        let s = self.realms.get(realm)?.get(username)?;
        s.ha1.get(slot(hash)).copied().flatten()
    }
}

/// A bad line in a users file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("users file line {line}: {kind}")]
pub struct UsersFileError {
    /// The 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub kind: UsersFileErrorKind,
}

/// What is wrong with a users file line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UsersFileErrorKind {
    /// Fewer than three `:`-separated fields.
    #[error("expected user:realm:secret")]
    MissingField,
    /// The username is empty.
    #[error("empty username")]
    EmptyUsername,
    /// The realm is empty.
    #[error("empty realm")]
    EmptyRealm,
    /// A `{tag}` that is not `MD5`, `SHA-256`, `SHA-512-256` or `plain`.
    #[error("unknown secret tag (use {{MD5}}, {{SHA-256}}, {{SHA-512-256}} or {{plain}})")]
    UnknownTag,
    /// A tagged HA1 that is not hex of the right length.
    #[error("HA1 is not hex of the hash function's length")]
    BadHa1,
    /// 64 hex digits without a tag: SHA-256 or SHA-512-256?
    #[error("64 hex digits are ambiguous: tag them {{SHA-256}} or {{SHA-512-256}}, or {{plain}}")]
    Ambiguous,
    /// The same user, realm and secret kind appear twice.
    #[error("duplicate entry")]
    Duplicate,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_file() {
        let text = "# comment\n\n  # indented comment\r\n\
                    alice:example.com:wonder:land\r\n\
                    bob:example.com:{SHA-256}9A36EC8C2B0C4A3F9D94F6E0A3D1B0E0C6D8F1A2B3C4D5E6F708192A3B4C5D6E\n\
                    bob:example.com:{md5}939e7578ed9e3c518a452acee763bce9\n\
                    carol:example.com:{plain}939e7578ed9e3c518a452acee763bce9\n\
                    dave:example.com:939e7578ed9e3c518a452acee763bce9\n";
        let s = MemoryStore::from_users_file(text).unwrap();
        assert_eq!(s.len(), 4);
        let alice = s.ha1("alice", "example.com", HashFunction::Md5).unwrap();
        assert_eq!(
            alice,
            Ha1::from_password(HashFunction::Md5, "alice", "example.com", "wonder:land")
        );
        let bob = s.ha1("bob", "example.com", HashFunction::Sha256).unwrap();
        assert!(bob.as_hex().as_str().starts_with("9a36ec8c"));
        assert!(s
            .ha1("bob", "example.com", HashFunction::Sha512_256)
            .is_none());
        let carol = s.ha1("carol", "example.com", HashFunction::Md5).unwrap();
        assert_ne!(carol.as_hex().as_str(), "939e7578ed9e3c518a452acee763bce9");
        let dave = s.ha1("dave", "example.com", HashFunction::Md5).unwrap();
        assert_eq!(dave.as_hex().as_str(), "939e7578ed9e3c518a452acee763bce9");
        assert!(s.ha1("dave", "example.com", HashFunction::Sha256).is_none());
        assert!(s.ha1("dave", "other", HashFunction::Md5).is_none());
        assert!(!format!("{alice:?}").contains(alice.as_hex().as_str()));
    }

    #[test]
    fn bad_lines_are_numbered() {
        let cases = [
            ("a:b:c\nnope\n", 2, UsersFileErrorKind::MissingField),
            (":r:p", 1, UsersFileErrorKind::EmptyUsername),
            ("u::p", 1, UsersFileErrorKind::EmptyRealm),
            ("#\nu:r:{SHA-1}00", 2, UsersFileErrorKind::UnknownTag),
            ("u:r:{MD5}abc", 1, UsersFileErrorKind::BadHa1),
            ("u:r:{MD5", 1, UsersFileErrorKind::UnknownTag),
            (
                &format!("u:r:{}", "a".repeat(64)),
                1,
                UsersFileErrorKind::Ambiguous,
            ),
            ("u:r:p\n\nu:r:q", 3, UsersFileErrorKind::Duplicate),
        ];
        for (text, line, kind) in cases {
            assert_eq!(
                MemoryStore::from_users_file(text).unwrap_err(),
                UsersFileError { line, kind },
                "{text:?}"
            );
        }
    }
}
