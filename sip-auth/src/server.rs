//! The server side (RFC 3261 §22.1–22.4, RFC 7616 §3.3–3.5): challenges for 401/407, verification
//! of Authorization / Proxy-Authorization, and Authentication-Info.

use std::borrow::Cow;
use std::fmt;
use std::time::{Duration, SystemTime};

use sip_core::auth::{Algorithm, AuthenticationInfo, Challenge, Credentials, NonceCount, Qop};
use subtle::ConstantTimeEq;

use crate::hash::{self, DigestParams, HashFunction, HexDigest};
use crate::nonce::{NonceCodec, NonceId, ServerKey};
use crate::random::{DefaultRandom, RandomError, RandomSource};
use crate::replay::{ReplayCheck, ReplayTable};
use crate::store::CredentialStore;
use crate::{secs, DigestRequest};

fn need<'c>(v: &'c Option<Cow<'_, str>>, name: &'static str) -> Result<&'c str, Rejection> {
    v.as_deref().ok_or(Rejection::MissingParam(name))
}

/// Configuration of a [`DigestServer`]; build it with [`ServerConfig::new`] and the chained
/// setters.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    realm: String,
    algorithms: Vec<Algorithm>,
    qop: Vec<Qop>,
    nonce_lifetime: Duration,
    max_tracked_nonces: usize,
    one_time_nonces: bool,
    allow_missing_qop: bool,
    next_nonce: bool,
    opaque: Option<String>,
    domain: Option<String>,
    uri_check: UriCheck,
}

/// How the digest `uri` parameter is compared with the Request-URI (RFC 7616 §3.4.6,
/// RFC 2617 §3.2.2.5: the server "SHOULD check that the Request-URI … is the same as" the
/// digest-uri).
///
/// # Security reasoning
///
/// The response digest covers the `uri` the client wrote, whatever it is: the server hashes
/// that very string, so nobody can alter it without the secret. What the check adds is a binding
/// of the credentials to the request's target: an Authorization captured on its way to one
/// Request-URI cannot be attached to a request for another. For REGISTER that binding is
/// worth little, because a registration's effect lies in To and Contact, which `qop=auth`
/// never covers, and because the nonce (issued here, MAC'd, bound to the realm, short-lived)
/// with its nonce count already refuses any second use of the credentials. It is worth
/// something for a proxy challenging requests to many targets on a path it does not trust.
/// Meanwhile an exact comparison fails real clients: SIPp's `[authentication]` puts the
/// address it sends to in `uri=` whatever the Request-URI says, and any proxy or NAT helper that
/// rewrites the Request-URI breaks it. Kamailio, Asterisk, FreeSWITCH and PJSIP do not
/// enforce it for REGISTER either.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum UriCheck {
    /// The `uri` must be equivalent to the Request-URI by RFC 3261 §19.1.4
    /// ([`Uri::equivalent`](sip_core::uri::Uri::equivalent): `sip:Example.COM` matches
    /// `sip:example.com`); otherwise [`Rejection::UriMismatch`]. The library's default.
    #[default]
    Strict,
    /// A `uri` that is not equivalent is accepted; [`Authenticated::uri_mismatch`] reports it
    /// so the caller can log it. A registrar's default ([`UriCheck`] explains why).
    Relaxed,
}

/// Whether a digest `uri` names the Request-URI: equal as written, or equivalent URIs
/// (RFC 3261 §19.1.4). A `uri` that does not parse matches only itself.
pub fn digest_uri_matches(digest_uri: &str, request_uri: &str) -> bool {
    if digest_uri == request_uri {
        return true;
    }
    match (
        sip_core::uri::Uri::parse(digest_uri),
        sip_core::uri::Uri::parse(request_uri),
    ) {
        (Ok(a), Ok(b)) => a.equivalent(&b),
        _ => false,
    }
}

impl ServerConfig {
    /// Defaults: algorithms SHA-256 then MD5, `qop="auth,auth-int"`, nonces live 5 minutes,
    /// 65 536 nonces tracked for replay, nonces reusable (with increasing `nc`), clients must
    /// send a qop, no `nextnonce`, no `opaque`.
    pub fn new(realm: impl Into<String>) -> ServerConfig {
        ServerConfig {
            realm: realm.into(),
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            qop: vec![Qop::Auth, Qop::AuthInt],
            nonce_lifetime: Duration::from_secs(300),
            max_tracked_nonces: 65_536,
            one_time_nonces: false,
            allow_missing_qop: false,
            next_nonce: false,
            opaque: None,
            domain: None,
            uri_check: UriCheck::Strict,
        }
    }

    /// How the digest `uri` is checked against the Request-URI (default
    /// [`UriCheck::Strict`]; see [`UriCheck`] for the reasoning).
    pub fn uri_check(mut self, check: UriCheck) -> Self {
        self.uri_check = check;
        self
    }

    /// The algorithms offered and accepted, in order of preference: challenges are sent in
    /// this order (RFC 8760 §2.4: most preferred first). The default lists the strongest first;
    /// put MD5 first when the fleet includes clients that read only the first challenge (SIPp,
    /// many devices) — clients that pick the strongest they support still use SHA-256.
    /// Duplicates are dropped; an empty list is replaced by MD5.
    pub fn algorithms(mut self, algorithms: &[Algorithm]) -> Self {
        let mut a: Vec<Algorithm> = Vec::new();
        for x in algorithms {
            if !a.contains(x) {
                a.push(*x);
            }
        }
        if a.is_empty() {
            a.push(Algorithm::Md5);
        }
        self.algorithms = a;
        self
    }

    /// The qop options offered. An empty list sends no qop: clients answer in the RFC 2069 form,
    /// which carries no `nc`, so each nonce is then accepted once only.
    pub fn qop(mut self, qop: &[Qop]) -> Self {
        self.qop = qop.to_vec();
        self.qop.dedup();
        self
    }

    /// How long a nonce is accepted; after that an authentic nonce is answered `stale=true`.
    pub fn nonce_lifetime(mut self, lifetime: Duration) -> Self {
        self.nonce_lifetime = lifetime;
        self
    }

    /// The most nonces tracked for replay protection (at least 1). When full, the oldest are
    /// forgotten and their clients are asked, with `stale=true`, to take a new nonce.
    pub fn max_tracked_nonces(mut self, cap: usize) -> Self {
        self.max_tracked_nonces = cap.max(1);
        self
    }

    /// One-time nonces: each nonce authenticates one request; a second use is answered
    /// `stale=true`, and Authentication-Info carries a `nextnonce`.
    pub fn one_time_nonces(mut self, on: bool) -> Self {
        self.one_time_nonces = on;
        self
    }

    /// Accept credentials without qop although qop was offered (old devices, many GB28181
    /// cameras). Such a nonce is accepted once only.
    pub fn allow_missing_qop(mut self, on: bool) -> Self {
        self.allow_missing_qop = on;
        self
    }

    /// Put a fresh `nextnonce` in every Authentication-Info.
    pub fn next_nonce(mut self, on: bool) -> Self {
        self.next_nonce = on;
        self
    }

    /// An `opaque` value sent in challenges that clients must echo.
    pub fn opaque(mut self, opaque: impl Into<String>) -> Self {
        self.opaque = Some(opaque.into());
        self
    }

    /// A `domain` (space-separated URIs) sent in challenges.
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// The realm.
    pub fn realm(&self) -> &str {
        &self.realm
    }
}

/// Why credentials were refused.
///
/// A server answers these with a new challenge (401/407), except the malformed ones
/// ([`Rejection::is_malformed`]) which deserve a 400. To avoid telling an attacker which
/// usernames exist, answer [`UnknownUser`](Rejection::UnknownUser) and
/// [`WrongResponse`](Rejection::WrongResponse) identically; the distinction is for logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The scheme is not Digest.
    #[error("scheme is not Digest")]
    NotDigest,
    /// A required parameter is missing.
    #[error("missing {0} parameter")]
    MissingParam(&'static str),
    /// `nc` is zero (counts start at 1).
    #[error("bad nonce count")]
    BadNonceCount,
    /// `userhash=true` is not supported by this server.
    #[error("userhash not supported")]
    UserhashNotSupported,
    /// The realm is not this server's.
    #[error("realm mismatch")]
    RealmMismatch,
    /// The algorithm is unknown or not configured.
    #[error("algorithm not allowed")]
    AlgorithmNotAllowed,
    /// The qop is unknown, was not offered, or is missing where required.
    #[error("qop not allowed")]
    QopNotAllowed,
    /// The `opaque` differs from the one sent.
    #[error("opaque mismatch")]
    OpaqueMismatch,
    /// The digest `uri` is not equivalent to the Request-URI (with [`UriCheck::Strict`]).
    #[error("uri does not match the Request-URI")]
    UriMismatch,
    /// The nonce was not issued by this server (for this realm, under a current key).
    #[error("nonce not issued by this server")]
    ForgedNonce,
    /// The nonce count was already used with this nonce.
    #[error("replayed nonce count")]
    Replay,
    /// The store knows no such user (or no secret for the algorithm's hash).
    #[error("unknown user")]
    UnknownUser,
    /// The response digest is wrong.
    #[error("wrong response")]
    WrongResponse,
}

impl Rejection {
    /// Whether the credentials were malformed (answer 400) rather than wrong (answer 401/407).
    pub fn is_malformed(&self) -> bool {
        matches!(self, Rejection::MissingParam(_) | Rejection::BadNonceCount)
    }

    /// Whether the rejection is evidence of guessing, to be counted by a
    /// [`Throttle`](crate::Throttle): a wrong response, an unknown user, a nonce this server never issued,
    /// or a nonce count used before. A caller must count a replay only when the request is
    /// not a retransmission of one already answered (a retransmission repeats its `nc`).
    /// Configuration mismatches (realm, algorithm, qop, opaque, uri) and malformed
    /// credentials are answered but prove nothing about the password.
    pub fn is_evidence(&self) -> bool {
        matches!(
            self,
            Rejection::WrongResponse
                | Rejection::UnknownUser
                | Rejection::ForgedNonce
                | Rejection::Replay
        )
    }
}

/// Who a request was authenticated as, and what Authentication-Info needs.
#[derive(Clone)]
pub struct Authenticated {
    /// The username.
    pub username: String,
    /// The realm.
    pub realm: String,
    /// The algorithm used.
    pub algorithm: Algorithm,
    /// The qop used (`None` for the RFC 2069 form).
    pub qop: Option<Qop>,
    /// The nonce count used.
    pub nc: Option<NonceCount>,
    /// The digest `uri` was not equivalent to the Request-URI, and [`UriCheck::Relaxed`]
    /// accepted it (log it).
    pub uri_mismatch: bool,
    session_ha1: HexDigest,
    nonce: String,
    cnonce: Option<String>,
    uri: String,
}

impl fmt::Debug for Authenticated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticated")
            .field("username", &self.username)
            .field("realm", &self.realm)
            .field("algorithm", &self.algorithm)
            .field("qop", &self.qop)
            .field("nc", &self.nc)
            .finish_non_exhaustive()
    }
}

/// The result of [`DigestServer::verify`].
#[derive(Debug, Clone)]
#[must_use]
pub enum Outcome {
    /// The credentials are good.
    Authenticated(Authenticated),
    /// The digest was right but the nonce is too old or used up: answer 401/407 with
    /// [`DigestServer::challenges`]`(now, true)` so the client retries without asking its user.
    Stale,
    /// The credentials are refused.
    Rejected(Rejection),
}

/// The server side of digest authentication for one realm.
///
/// Sans-IO: every call takes the current time; the server reads no clock and keeps no socket.
/// Memory is bounded by [`ServerConfig::max_tracked_nonces`].
pub struct DigestServer<R = DefaultRandom> {
    config: ServerConfig,
    codec: NonceCodec,
    replay: ReplayTable,
    rng: R,
}

impl<R> fmt::Debug for DigestServer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestServer")
            .field("config", &self.config)
            .field("tracked_nonces", &self.replay.len())
            .finish_non_exhaustive()
    }
}

impl DigestServer<DefaultRandom> {
    /// A server with a random generator seeded by the operating system.
    pub fn new(config: ServerConfig, key: ServerKey) -> Result<Self, RandomError> {
        Ok(DigestServer::with_random(
            config,
            key,
            DefaultRandom::from_os()?,
        ))
    }
}

impl<R: RandomSource> DigestServer<R> {
    /// A server drawing nonce salts from `rng`.
    pub fn with_random(config: ServerConfig, key: ServerKey, rng: R) -> Self {
        DigestServer {
            codec: NonceCodec::new(&key),
            replay: ReplayTable::new(config.max_tracked_nonces),
            config,
            rng,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Makes `key` the current nonce key. Nonces under the previous key stay valid (until they
    /// expire, or [`retire_previous_key`](Self::retire_previous_key)); older ones are refused.
    pub fn rotate_key(&mut self, key: ServerKey) {
        self.codec.rotate(&key);
    }

    /// Stops accepting nonces issued under the previous key.
    pub fn retire_previous_key(&mut self) {
        self.codec.retire_previous();
    }

    /// Number of nonces tracked for replay protection (never more than the configured cap).
    pub fn tracked_nonces(&self) -> usize {
        self.replay.len()
    }

    /// A fresh nonce.
    pub fn new_nonce(&mut self, now: SystemTime) -> String {
        let mut salt = [0u8; 8];
        self.rng.fill_bytes(&mut salt);
        let id = NonceId {
            issued: secs(now),
            salt: u64::from_be_bytes(salt),
        };
        self.codec.issue(&self.config.realm, id)
    }

    /// The challenges for a 401 (WWW-Authenticate) or 407 (Proxy-Authenticate): one per
    /// configured algorithm, in the configured order of preference, sharing one fresh nonce. `stale` marks the answer
    /// to [`Outcome::Stale`].
    pub fn challenges(&mut self, now: SystemTime, stale: bool) -> Vec<Challenge<'static>> {
        let nonce = self.new_nonce(now);
        let c = &self.config;
        c.algorithms
            .iter()
            .map(|a| Challenge {
                scheme: Cow::Borrowed("Digest"),
                realm: Some(Cow::Owned(c.realm.clone())),
                domain: c.domain.clone().map(Cow::Owned),
                nonce: Some(Cow::Owned(nonce.clone())),
                opaque: c.opaque.clone().map(Cow::Owned),
                stale,
                algorithm: Some(Cow::Borrowed(a.as_str())),
                qop: c.qop.iter().map(|q| Cow::Borrowed(q.as_str())).collect(),
                ..Challenge::default()
            })
            .collect()
    }

    /// Verifies credentials against `request` (RFC 7616 §3.4, RFC 3261 §22.4).
    ///
    /// Checks, in order: scheme and required parameters; realm; algorithm allowed; qop allowed;
    /// `uri` equivalent to the Request-URI (RFC 3261 §19.1.4; only reported, not refused,
    /// under [`UriCheck::Relaxed`]); `opaque`; the response digest, compared in constant time;
    /// that this server issued the nonce (HMAC; a nonce it did not issue touches no table and
    /// is [`Rejection::ForgedNonce`], unless the digest is right: a nonce from before a
    /// restart or under a retired key is then [`Outcome::Stale`]); then freshness (an expired nonce with a right digest is
    /// [`Outcome::Stale`]) and the nonce count (a count seen before is
    /// [`Rejection::Replay`]). Only a request that passes every check is recorded.
    pub fn verify<S: CredentialStore + ?Sized>(
        &mut self,
        now: SystemTime,
        credentials: &Credentials<'_>,
        request: &DigestRequest<'_>,
        store: &S,
    ) -> Outcome {
        match self.check(now, credentials, request, store) {
            Ok(o) => o,
            Err(r) => Outcome::Rejected(r),
        }
    }

    fn check<S: CredentialStore + ?Sized>(
        &mut self,
        now: SystemTime,
        cr: &Credentials<'_>,
        request: &DigestRequest<'_>,
        store: &S,
    ) -> Result<Outcome, Rejection> {
        use Rejection as R;
        if !cr.is_digest() {
            return Err(R::NotDigest);
        }
        let username = need(&cr.username, "username")?;
        let realm = need(&cr.realm, "realm")?;
        let nonce = need(&cr.nonce, "nonce")?;
        let uri = need(&cr.uri, "uri")?;
        let response = need(&cr.response, "response")?;
        if cr.userhash {
            return Err(R::UserhashNotSupported);
        }
        let c = &self.config;
        if realm != c.realm {
            return Err(R::RealmMismatch);
        }
        let algorithm = cr.algorithm().map_err(|_| R::AlgorithmNotAllowed)?;
        if !c.algorithms.contains(&algorithm) {
            return Err(R::AlgorithmNotAllowed);
        }
        let qop = cr.qop().map_err(|_| R::QopNotAllowed)?;
        match qop {
            Some(q) if !c.qop.contains(&q) => return Err(R::QopNotAllowed),
            None if !c.qop.is_empty() && !c.allow_missing_qop => return Err(R::QopNotAllowed),
            _ => {}
        }
        let cnonce = cr.cnonce.as_deref();
        if qop.is_some() {
            let nc = cr.nc.ok_or(R::MissingParam("nc"))?;
            if nc.0 == 0 {
                return Err(R::BadNonceCount);
            }
        }
        if (qop.is_some() || algorithm.is_session()) && cnonce.is_none() {
            return Err(R::MissingParam("cnonce"));
        }
        let uri_mismatch = !digest_uri_matches(uri, request.uri);
        if uri_mismatch && c.uri_check == UriCheck::Strict {
            return Err(R::UriMismatch);
        }
        if let Some(o) = &c.opaque {
            if cr.opaque.as_deref() != Some(o.as_str()) {
                return Err(R::OpaqueMismatch);
            }
        }
        let id = self.codec.check(&c.realm, nonce);

        let hash = HashFunction::of(algorithm);
        let stored = store.ha1(username, realm, hash);
        let ha1 = stored.map_or_else(
            // Same work for an unknown user as for a known one.
            || hash::ha1(hash, username, realm, ""),
            |h| *h.as_hex(),
        );
        let nc = if qop.is_some() { cr.nc } else { None };
        let params = DigestParams {
            algorithm,
            nonce,
            cnonce,
            nc,
            qop,
            method: request.method,
            uri,
            body: request.body,
        };
        let session_ha1 = hash::session_ha1(&ha1, &params);
        let expected = hash::response_with_session_ha1(&session_ha1, &params);
        let matches: bool = expected.as_bytes().ct_eq(response.as_bytes()).into();
        let Some(id) = id else {
            // Not our nonce. With a right digest the client knows the secret and answered a
            // nonce from before a restart or a retired key: stale, so it takes a new one
            // (RFC 7616 §3.3) without being counted as guessing.
            return if stored.is_some() && matches {
                Ok(Outcome::Stale)
            } else {
                Err(R::ForgedNonce)
            };
        };
        if stored.is_none() {
            return Err(R::UnknownUser);
        }
        if !matches {
            return Err(R::WrongResponse);
        }

        let now_s = secs(now);
        let lifetime = c.nonce_lifetime.as_secs();
        if now_s.saturating_sub(id.issued) > lifetime {
            return Ok(Outcome::Stale);
        }
        let one_time = c.one_time_nonces;
        match self.replay.check(id, nc.map(|n| n.0), one_time) {
            ReplayCheck::Replay => return Err(R::Replay),
            ReplayCheck::Stale => return Ok(Outcome::Stale),
            ReplayCheck::Fresh => {}
        }
        self.replay
            .record(id, nc.map(|n| n.0), now_s.saturating_sub(lifetime));
        Ok(Outcome::Authenticated(Authenticated {
            username: username.to_owned(),
            realm: realm.to_owned(),
            algorithm,
            qop,
            nc,
            uri_mismatch,
            session_ha1,
            nonce: nonce.to_owned(),
            cnonce: cnonce.map(str::to_owned),
            uri: uri.to_owned(),
        }))
    }

    /// The Authentication-Info for the response to an authenticated request (RFC 7616 §3.5):
    /// `rspauth` (the digest with an empty method, proving the server knows the secret; with
    /// `auth-int` it covers `response_body`), `qop`, `cnonce` and `nc` echoed, and a fresh
    /// `nextnonce` in one-time mode or when configured.
    pub fn authentication_info(
        &mut self,
        now: SystemTime,
        auth: &Authenticated,
        response_body: &[u8],
    ) -> AuthenticationInfo<'static> {
        let params = DigestParams {
            algorithm: auth.algorithm,
            nonce: &auth.nonce,
            cnonce: auth.cnonce.as_deref(),
            nc: auth.nc,
            qop: auth.qop,
            method: "",
            uri: &auth.uri,
            body: response_body,
        };
        let rspauth = hash::response_with_session_ha1(&auth.session_ha1, &params);
        let nextnonce = (self.config.one_time_nonces || self.config.next_nonce)
            .then(|| Cow::Owned(self.new_nonce(now)));
        AuthenticationInfo {
            nextnonce,
            qop: auth.qop.map(|q| Cow::Borrowed(q.as_str())),
            rspauth: Some(Cow::Owned(rspauth.as_str().to_owned())),
            cnonce: auth.cnonce.clone().map(Cow::Owned),
            nc: auth.nc,
            other: Vec::new(),
        }
    }
}
