//! SIP digest authentication (RFC 3261 §22, RFC 7616, RFC 8760), sans-IO: no sockets, no clock,
//! randomness from an injectable [`RandomSource`].
//!
//! - **Server**: [`DigestServer`] builds the challenges of a 401/407 (MD5, SHA-256, SHA-512-256
//!   and their `-sess` variants, in the configured order of preference (strongest first by default), `qop="auth,auth-int"`), with stateless nonces
//!   (timestamp + HMAC-SHA-256 under a rotatable [`ServerKey`]) and nonce-count replay protection
//!   in bounded memory; it verifies Authorization / Proxy-Authorization into a typed [`Outcome`]
//!   and builds Authentication-Info. Secrets come from a [`CredentialStore`] that returns HA1, so
//!   passwords need not be stored ([`MemoryStore`] reads a users file).
//! - **Throttling**: [`Throttle`] counts failures per (source address, username) and, with a
//!   higher limit, per source address, and tells the server when to stop listening.
//! - **Client**: [`DigestClient`] answers challenges only for the realms it has an [`Account`]
//!   for, with the strongest algorithm offered.
//!
//! Headers are the typed values of [`sip_core::auth`]; this crate takes the method,
//! Request-URI and body as plain arguments ([`DigestRequest`]).
//!
//! # Security choices
//!
//! - **Nonces** are `issued ‖ salt ‖ key id ‖ HMAC-SHA-256(key, issued ‖ salt ‖ key id ‖ realm)`
//!   (66 hex digits). A forged nonce, one from another key or another realm, is refused by the
//!   MAC without touching any table; keys rotate with the previous one still accepted. A nonce
//!   the MAC refuses but whose digest is right (issued before a restart with a new key, or under
//!   a retired one) is answered `stale`: the client knows the secret, so it is not guessing.
//! - **Replay**: the `nc` values accepted per nonce are remembered in a table ordered by issue
//!   time and capped; expired nonces leave it first, then the oldest. The table keeps the
//!   greatest nonce it ever dropped, and an authentic nonce at or below that mark that it no
//!   longer holds is answered `stale` (whatever its `nc`), so eviction never makes a nonce
//!   replayable; a nonce above the mark has never been accepted. Only requests whose digest
//!   verified are recorded, so an attacker cannot fill the table or burn a client's counts.
//! - **Staleness** is only reported for a request whose digest is right (RFC 7616 §3.3); a
//!   wrong digest on an old nonce is a [`Rejection::WrongResponse`].
//! - **uri** is compared with the Request-URI by URI equivalence (RFC 3261 §19.1.4), and the
//!   check is a policy ([`UriCheck`]): `Strict` (the default here) refuses a mismatch,
//!   `Relaxed` (a registrar's default) accepts and reports it; [`UriCheck`] gives the reasoning.
//! - **RFC 2069 form** (no qop, as GB28181 cameras send) carries no `nc`: such a nonce is
//!   accepted once; the client is then asked, with `stale=true`, to take a new one.
//! - **Unknown users** cost the same hashing as known ones; the distinction
//!   ([`Rejection::UnknownUser`]) is for logs, not for the answer.
//! - The **store** keeps HA1 values only (a password given to [`MemoryStore`] is hashed at once).
//! - **Clients** answer only realms they have an [`Account`] for, optionally only from one host,
//!   and stop when the server re-challenges the very nonce they answered without `stale`.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use sip_auth::{
//!     Account, DefaultRandom, DigestClient, DigestRequest, DigestServer, MemoryStore, Outcome,
//!     ServerConfig, ServerKey,
//! };
//! use sip_core::auth::{Challenge, Credentials};
//!
//! let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
//! let mut users = MemoryStore::new();
//! users.insert_password("alice", "example.com", "wonderland");
//! let mut server = DigestServer::with_random(
//!     ServerConfig::new("example.com"),
//!     ServerKey::from_bytes([7; 32]),
//!     DefaultRandom::from_seed([1; 32]),
//! );
//! let mut client = DigestClient::with_random(DefaultRandom::from_seed([2; 32]));
//! client.add_account(Account::new("example.com", "alice", "wonderland"));
//!
//! // Server: 401 with one WWW-Authenticate per algorithm.
//! let headers: Vec<String> = server.challenges(now, false).iter().map(|c| c.to_string()).collect();
//!
//! // Client: parse them and answer.
//! let parsed = headers.iter().map(|h| Challenge::parse(h)).collect::<Result<Vec<_>, _>>()?;
//! let request = DigestRequest::new("REGISTER", "sip:example.com", b"");
//! let authorization = client.respond(&parsed, "example.com", &request)?.to_string();
//!
//! // Server: verify the Authorization header.
//! let credentials = Credentials::parse(&authorization)?;
//! match server.verify(now, &credentials, &request, &users) {
//!     Outcome::Authenticated(who) => assert_eq!(who.username, "alice"),
//!     other => panic!("{other:?}"),
//! }
//! // The same request again is a replay.
//! assert!(matches!(server.verify(now, &credentials, &request, &users), Outcome::Rejected(_)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod client;
pub mod hash;
mod nonce;
mod random;
mod replay;
mod server;
mod store;
mod throttle;

use std::time::{SystemTime, UNIX_EPOCH};

pub use client::{Account, ClientError, DigestClient};
pub use hash::{HashFunction, HexDigest};
pub use nonce::ServerKey;
pub use random::{DefaultRandom, RandomError, RandomSource};
pub use server::{
    digest_uri_matches, Authenticated, DigestServer, Outcome, Rejection, ServerConfig, UriCheck,
};
pub use store::{CredentialStore, Ha1, MemoryStore, UsersFileError, UsersFileErrorKind};
pub use throttle::{BlockScope, Throttle, ThrottleConfig, ThrottleDecision};

/// The parts of a request that a digest covers (RFC 7616 §3.4.3: method and digest-uri; with
/// `auth-int`, the body).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DigestRequest<'a> {
    /// The method (`REGISTER`, `INVITE`…).
    pub method: &'a str,
    /// The Request-URI, as written in the request line.
    pub uri: &'a str,
    /// The message body (empty when there is none).
    pub body: &'a [u8],
}

impl<'a> DigestRequest<'a> {
    /// A request from its method, Request-URI and body.
    pub fn new(method: &'a str, uri: &'a str, body: &'a [u8]) -> DigestRequest<'a> {
        DigestRequest { method, uri, body }
    }
}

/// Whole seconds since the Unix epoch (0 for an earlier time).
fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
