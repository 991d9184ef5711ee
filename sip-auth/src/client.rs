//! The client side (RFC 3261 §22.2–22.3, RFC 7616 §3.4): answering 401/407 challenges with
//! credentials that are bound to realms, so a challenge for a realm the user did not configure is
//! refused rather than answered (a client that answers any realm hands out its password hash to
//! whoever asks).

use std::borrow::Cow;
use std::fmt;

use sip_core::auth::{Algorithm, Challenge, Credentials, NonceCount, Qop};

use crate::hash::{self, DigestParams, HashFunction, HexDigest};
use crate::random::{DefaultRandom, RandomError, RandomSource};
use crate::DigestRequest;

/// A username and password for one realm, optionally only for one host.
#[derive(Clone)]
pub struct Account {
    realm: String,
    username: String,
    password: String,
    host: Option<String>,
}

impl Account {
    /// Credentials for `realm` (compared exactly, as RFC 7616 §3.3 realms are case-sensitive).
    pub fn new(
        realm: impl Into<String>,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Account {
        Account {
            realm: realm.into(),
            username: username.into(),
            password: password.into(),
            host: None,
        }
    }

    /// Answer only challenges from `host` (compared case-insensitively with the host the caller
    /// says the challenge came from).
    pub fn host(mut self, host: impl Into<String>) -> Account {
        self.host = Some(host.into());
        self
    }

    /// The realm.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// The username.
    pub fn username(&self) -> &str {
        &self.username
    }
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("realm", &self.realm)
            .field("username", &self.username)
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

/// Why a challenge was not answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No challenge was given.
    #[error("no challenge")]
    NoChallenge,
    /// No Digest challenge (only other schemes).
    #[error("no Digest challenge")]
    NotDigest,
    /// A Digest challenge lacks its realm or nonce.
    #[error("challenge without realm or nonce")]
    Malformed,
    /// No account is configured for the realm: the challenge is refused, never answered.
    #[error("no credentials for realm {realm:?}")]
    UnknownRealm {
        /// The realm asked for.
        realm: String,
    },
    /// The realm's account is bound to another host.
    #[error("credentials for realm {realm:?} are not for host {host:?}")]
    HostNotAllowed {
        /// The realm asked for.
        realm: String,
        /// The host the challenge came from.
        host: String,
    },
    /// No offered algorithm is supported.
    #[error("no supported algorithm offered")]
    UnsupportedAlgorithm,
    /// No offered qop is supported.
    #[error("no supported qop offered")]
    UnsupportedQop,
    /// The server challenged again, without `stale`, the nonce we just answered: the credentials
    /// are wrong (RFC 3261 §22.2: do not retry with the same credentials).
    #[error("credentials for realm {realm:?} were refused")]
    Refused {
        /// The realm.
        realm: String,
    },
    /// [`DigestClient::authorize`] was called for a realm with no challenge answered yet.
    #[error("no challenge seen yet for realm {realm:?}")]
    NoSession {
        /// The realm.
        realm: String,
    },
}

impl ClientError {
    /// How telling an error is when several challenges fail (the most telling is reported).
    fn rank(&self) -> u8 {
        match self {
            ClientError::NoChallenge => 0,
            ClientError::NotDigest => 1,
            ClientError::Malformed => 2,
            ClientError::UnknownRealm { .. } => 3,
            ClientError::HostNotAllowed { .. } => 4,
            ClientError::UnsupportedAlgorithm | ClientError::UnsupportedQop => 5,
            ClientError::Refused { .. } | ClientError::NoSession { .. } => 6,
        }
    }
}

/// What the client remembers about a realm's current nonce.
#[derive(Clone)]
struct Session {
    realm: String,
    account: usize,
    nonce: String,
    nc: u32,
    algorithm: Algorithm,
    echo_algorithm: bool,
    qop: Option<Qop>,
    opaque: Option<String>,
    ha1: HexDigest,
    /// For `-sess`: the cnonce the session key was made with (RFC 2617 §3.2.2.2).
    sess_cnonce: Option<String>,
}

/// The client side of digest authentication.
///
/// Holds the accounts and, per realm, the last nonce answered, so that later requests reuse it
/// with an increasing `nc` ([`authorize`](Self::authorize)). Memory is bounded by the number of
/// accounts.
pub struct DigestClient<R = DefaultRandom> {
    accounts: Vec<Account>,
    sessions: Vec<Session>,
    prefer_auth_int: bool,
    rng: R,
}

impl<R> fmt::Debug for DigestClient<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestClient")
            .field("accounts", &self.accounts)
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

impl DigestClient<DefaultRandom> {
    /// A client with a random generator seeded by the operating system.
    pub fn new() -> Result<Self, RandomError> {
        Ok(DigestClient::with_random(DefaultRandom::from_os()?))
    }
}

impl<R: RandomSource> DigestClient<R> {
    /// A client drawing cnonces from `rng`.
    pub fn with_random(rng: R) -> Self {
        DigestClient {
            accounts: Vec::new(),
            sessions: Vec::new(),
            prefer_auth_int: false,
            rng,
        }
    }

    /// Adds an account (replacing one for the same realm and host).
    pub fn add_account(&mut self, account: Account) {
        self.accounts
            .retain(|a| !(a.realm == account.realm && a.host == account.host));
        self.sessions.clear();
        self.accounts.push(account);
    }

    /// Use `auth-int` (protecting the body) whenever it is offered, not only when it is the
    /// only option.
    pub fn prefer_auth_int(&mut self, on: bool) {
        self.prefer_auth_int = on;
    }

    /// Answers the challenges of a 401 or 407, for `request` sent to `host`: put the result in
    /// an Authorization (401) or Proxy-Authorization (407) header.
    ///
    /// Picks, among Digest challenges whose realm has an account (bound to `host`, if the account
    /// says so), the strongest supported algorithm (server order among equals). qop `auth` is
    /// used when offered (or `auth-int` when it is the only one, or preferred), none when the
    /// challenge has no qop. A fresh cnonce is drawn, `nc` starts at 1 for a new nonce, `opaque`
    /// is echoed. A `stale=true` challenge is answered with its new nonce; a non-stale challenge
    /// repeating the nonce just answered means the password is wrong
    /// ([`ClientError::Refused`]). A realm without an account is refused
    /// ([`ClientError::UnknownRealm`]), never answered.
    pub fn respond(
        &mut self,
        challenges: &[Challenge<'_>],
        host: &str,
        request: &DigestRequest<'_>,
    ) -> Result<Credentials<'static>, ClientError> {
        let mut best: Option<(u8, usize, &Challenge<'_>, Algorithm, Option<Qop>)> = None;
        let mut error = ClientError::NoChallenge;
        let mut fail = |e: ClientError| {
            if e.rank() >= error.rank() {
                error = e;
            }
        };
        for c in challenges {
            match self.candidate(c, host) {
                Ok((account, algorithm, qop)) => {
                    let better = best
                        .as_ref()
                        .is_none_or(|(s, ..)| algorithm.strength() > *s);
                    if better {
                        best = Some((algorithm.strength(), account, c, algorithm, qop));
                    }
                }
                Err(e) => fail(e),
            }
        }
        let Some((_, account, c, algorithm, qop)) = best else {
            return Err(error);
        };
        let realm = c.realm.as_deref().unwrap_or_default();
        let nonce = c.nonce.as_deref().unwrap_or_default();
        let previous = self.sessions.iter().position(|s| s.realm == realm);
        if let Some(i) = previous {
            let same_nonce = self.sessions.get(i).is_some_and(|s| s.nonce == nonce);
            if same_nonce && !c.stale {
                self.sessions.remove(i);
                return Err(ClientError::Refused {
                    realm: realm.to_owned(),
                });
            }
            self.sessions.remove(i);
        }
        let Some(acc) = self.accounts.get(account) else {
            return Err(ClientError::UnknownRealm {
                realm: realm.to_owned(),
            });
        };
        let ha1 = hash::ha1(
            HashFunction::of(algorithm),
            &acc.username,
            &acc.realm,
            &acc.password,
        );
        let sess_cnonce = algorithm.is_session().then(|| self.cnonce());
        self.sessions.push(Session {
            realm: realm.to_owned(),
            account,
            nonce: nonce.to_owned(),
            nc: 0,
            algorithm,
            echo_algorithm: c.algorithm.is_some(),
            qop,
            opaque: c.opaque.as_deref().map(str::to_owned),
            ha1,
            sess_cnonce,
        });
        self.authorize(realm, request)
    }

    /// Credentials for another request in `realm`, reusing the nonce last answered with the
    /// next `nc` (RFC 7616 §3.4: pre-emptive authorization). Servers that use one-time nonces,
    /// or whose nonce has expired, answer with a new challenge to pass to
    /// [`respond`](Self::respond).
    pub fn authorize(
        &mut self,
        realm: &str,
        request: &DigestRequest<'_>,
    ) -> Result<Credentials<'static>, ClientError> {
        let Some(i) = self.sessions.iter().position(|s| s.realm == realm) else {
            return Err(ClientError::NoSession {
                realm: realm.to_owned(),
            });
        };
        let fresh = self.cnonce();
        let Some(s) = self.sessions.get_mut(i) else {
            return Err(ClientError::NoSession {
                realm: realm.to_owned(),
            });
        };
        let Some(acc) = self.accounts.get(s.account) else {
            return Err(ClientError::UnknownRealm {
                realm: realm.to_owned(),
            });
        };
        s.nc = s.nc.wrapping_add(1).max(1);
        let cnonce = s.sess_cnonce.clone().unwrap_or(fresh);
        let nc = s.qop.map(|_| NonceCount(s.nc));
        let send_cnonce = s.qop.is_some() || s.algorithm.is_session();
        let params = DigestParams {
            algorithm: s.algorithm,
            nonce: &s.nonce,
            cnonce: Some(&cnonce),
            nc,
            qop: s.qop,
            method: request.method,
            uri: request.uri,
            body: request.body,
        };
        let response = hash::response(&s.ha1, &params);
        Ok(Credentials {
            scheme: Cow::Borrowed("Digest"),
            username: Some(Cow::Owned(acc.username.clone())),
            realm: Some(Cow::Owned(s.realm.clone())),
            nonce: Some(Cow::Owned(s.nonce.clone())),
            uri: Some(Cow::Owned(request.uri.to_owned())),
            response: Some(Cow::Owned(response.as_str().to_owned())),
            algorithm: s
                .echo_algorithm
                .then(|| Cow::Borrowed(s.algorithm.as_str())),
            cnonce: send_cnonce.then_some(Cow::Owned(cnonce)),
            opaque: s.opaque.clone().map(Cow::Owned),
            qop: s.qop.map(|q| Cow::Borrowed(q.as_str())),
            nc,
            userhash: false,
            other: Vec::new(),
        })
    }

    /// The account, algorithm and qop with which `c` could be answered.
    fn candidate(
        &self,
        c: &Challenge<'_>,
        host: &str,
    ) -> Result<(usize, Algorithm, Option<Qop>), ClientError> {
        if !c.is_digest() {
            return Err(ClientError::NotDigest);
        }
        let (Some(realm), Some(_)) = (c.realm.as_deref(), c.nonce.as_deref()) else {
            return Err(ClientError::Malformed);
        };
        let mut host_error = None;
        let account = self.accounts.iter().position(|a| {
            let host_ok = a
                .host
                .as_deref()
                .is_none_or(|h| h.eq_ignore_ascii_case(host));
            if a.realm == realm && !host_ok {
                host_error = Some(ClientError::HostNotAllowed {
                    realm: realm.to_owned(),
                    host: host.to_owned(),
                });
            }
            a.realm == realm && host_ok
        });
        let Some(account) = account else {
            return Err(host_error.unwrap_or_else(|| ClientError::UnknownRealm {
                realm: realm.to_owned(),
            }));
        };
        let algorithm = c
            .algorithm()
            .map_err(|_| ClientError::UnsupportedAlgorithm)?;
        let qop = if c.qop.is_empty() {
            None
        } else {
            let offered: Vec<Qop> = c.qop_options().collect();
            let auth = offered.contains(&Qop::Auth);
            let int = offered.contains(&Qop::AuthInt);
            match (auth, int) {
                (_, true) if self.prefer_auth_int || !auth => Some(Qop::AuthInt),
                (true, _) => Some(Qop::Auth),
                _ => return Err(ClientError::UnsupportedQop),
            }
        };
        Ok((account, algorithm, qop))
    }

    fn cnonce(&mut self) -> String {
        let mut b = [0u8; 16];
        self.rng.fill_bytes(&mut b);
        HexDigest::encode(&b).as_str().to_owned()
    }
}
