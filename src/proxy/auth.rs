//! Proxy authentication (RFC 3261 §22.3): 407 with Proxy-Authenticate for new INVITE,
//! MESSAGE and SUBSCRIBE requests from the domain's own users, verified with sip-auth (nonce
//! replay protection) and a failure throttle per source and user.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use sip_auth::{
    CredentialStore, DigestRequest, DigestServer, Outcome, Rejection, ServerConfig, ServerKey,
    Throttle, ThrottleConfig, ThrottleDecision,
};
use sip_core::auth::{Algorithm, Credentials, Qop};
use sip_core::{HeaderName, Message, Method};

use super::validate::Refusal;

/// What authentication decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthCheck {
    /// Not subject to authentication, or authenticated (as this user).
    Proceed(Option<String>),
    /// Answer this instead (407 challenge, 403 throttled or not allowed, 400 malformed).
    Refuse(Refusal),
}

/// Counters of proxy authentication.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AuthCounters {
    /// 407 challenges sent.
    pub challenges: u64,
    /// Requests authenticated.
    pub authenticated: u64,
    /// Failed verifications.
    pub failures: u64,
    /// Requests refused by the throttle.
    pub throttled: u64,
}

/// The proxy's authenticator for one realm.
pub struct ProxyAuth<S: CredentialStore + Send + Sync + 'static> {
    realm: String,
    users: Arc<S>,
    digest: Mutex<DigestServer>,
    throttle: Mutex<Throttle>,
    counters: Mutex<AuthCounters>,
}

impl<S: CredentialStore + Send + Sync + 'static> std::fmt::Debug for ProxyAuth<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyAuth")
            .field("realm", &self.realm)
            .finish_non_exhaustive()
    }
}

/// Methods challenged: those that start something on a user's behalf.
fn challenged(m: Option<Method<'_>>) -> bool {
    matches!(
        m,
        Some(Method::Invite | Method::Message | Method::Subscribe | Method::Publish)
    )
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<S: CredentialStore + Send + Sync + 'static> ProxyAuth<S> {
    /// An authenticator for `realm` over `users`, challenging with `algorithms` (strongest
    /// first; MD5 first for clients that read only the first challenge). `key` signs nonces.
    pub fn new(
        realm: impl Into<String>,
        users: Arc<S>,
        algorithms: &[Algorithm],
        key: [u8; 32],
        throttle: ThrottleConfig,
    ) -> Result<ProxyAuth<S>, sip_auth::RandomError> {
        let realm = realm.into();
        let config = ServerConfig::new(realm.clone())
            .algorithms(algorithms)
            .qop(&[Qop::Auth])
            .allow_missing_qop(true);
        Ok(ProxyAuth {
            digest: Mutex::new(DigestServer::new(config, ServerKey::from_bytes(key))?),
            realm,
            users,
            throttle: Mutex::new(Throttle::new(throttle)),
            counters: Mutex::new(AuthCounters::default()),
        })
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> AuthCounters {
        *lock(&self.counters)
    }

    /// Whether `req` needs credentials: a new (no To tag) INVITE, MESSAGE or SUBSCRIBE whose
    /// From is a user of our realm.
    pub fn applies(&self, req: &Message) -> bool {
        if !challenged(req.method()) {
            return false;
        }
        if req.to().ok().and_then(|t| t.tag()).is_some() {
            return false;
        }
        req.from()
            .ok()
            .and_then(|f| {
                f.sip_uri()
                    .map(|u| u.host_str().eq_ignore_ascii_case(&self.realm))
            })
            .unwrap_or(false)
    }

    /// Removes the credentials for our realm from a request we authenticated, before it is
    /// forwarded (RFC 3261 §22.3: a proxy consumes the Proxy-Authorization values of its
    /// own realm; those of other realms are left for the proxies they are meant for).
    /// Returns how many were removed.
    pub fn consume_credentials(&self, req: &mut Message) -> usize {
        let ours = |v: &str| {
            Credentials::parse(v)
                .ok()
                .is_some_and(|c| c.realm.as_deref() == Some(self.realm.as_str()))
        };
        let mut kept: Vec<String> = Vec::new();
        let mut removed = 0;
        for v in req.header_lines(HeaderName::ProxyAuthorization) {
            match std::str::from_utf8(v) {
                Ok(text) if ours(text) => removed += 1,
                Ok(text) => kept.push(text.to_owned()),
                Err(_) => kept.push(String::from_utf8_lossy(v).into_owned()),
            }
        }
        if removed == 0 {
            return 0;
        }
        req.remove_header(HeaderName::ProxyAuthorization);
        for v in kept {
            let at = req.header_count().saturating_sub(1);
            let _ = req.insert_header(at, "Proxy-Authorization", &v);
        }
        removed
    }

    /// Checks a request from `source` at wall-clock `now`.
    pub fn check(&self, req: &Message, source: IpAddr, now: SystemTime) -> AuthCheck {
        if !self.applies(req) {
            return AuthCheck::Proceed(None);
        }
        let creds: Option<Credentials<'_>> = req
            .header_lines(HeaderName::ProxyAuthorization)
            .filter_map(|v| std::str::from_utf8(v).ok())
            .filter_map(|v| Credentials::parse(v).ok())
            .find(|c| c.is_digest() && c.realm.as_deref() == Some(self.realm.as_str()));
        let username = creds
            .as_ref()
            .and_then(|c| c.username.as_deref().map(str::to_owned));
        if let ThrottleDecision::Blocked { retry_after, scope } =
            lock(&self.throttle).check(now, source, username.as_deref())
        {
            tracing::debug!(%source, user = username.as_deref().unwrap_or("-"), ?scope, "proxy authentication throttled");
            lock(&self.counters).throttled += 1;
            return AuthCheck::Refuse(Refusal {
                reason: Some("Too Many Failed Attempts"),
                headers: vec![("Retry-After", retry_after.as_secs().max(1).to_string())],
                ..Refusal::status(403)
            });
        }
        let Some(creds) = creds else {
            return self.challenge(now, false);
        };
        let method = req.method().map(|m| m.as_str()).unwrap_or_default();
        let uri = req.uri_str().unwrap_or_default();
        let request = DigestRequest::new(method, uri, req.body());
        let outcome = lock(&self.digest).verify(now, &creds, &request, &*self.users);
        match outcome {
            Outcome::Authenticated(who) => {
                lock(&self.throttle).record_success(source, &who.username);
                lock(&self.counters).authenticated += 1;
                // The From user must be the authenticated one.
                let from_user = req
                    .from()
                    .ok()
                    .and_then(|f| f.sip_uri().and_then(|u| u.user().map(str::to_owned)));
                if from_user.as_deref() != Some(who.username.as_str()) {
                    return AuthCheck::Refuse(Refusal {
                        reason: Some("From Does Not Match Credentials"),
                        ..Refusal::status(403)
                    });
                }
                AuthCheck::Proceed(Some(who.username))
            }
            Outcome::Stale => self.challenge(now, true),
            Outcome::Rejected(why) => self.failure(now, source, username.as_deref(), why),
        }
    }

    fn failure(
        &self,
        now: SystemTime,
        source: IpAddr,
        username: Option<&str>,
        why: Rejection,
    ) -> AuthCheck {
        tracing::warn!(%source, user = username.unwrap_or("-"), reason = %why, "proxy authentication failed");
        lock(&self.counters).failures += 1;
        // Only evidence of guessing counts against the source (a stale nonce, a missing
        // header or a retransmission never does).
        if why.is_evidence() {
            let _ = lock(&self.throttle).record_failure(now, source, username);
        }
        if why.is_malformed() {
            return AuthCheck::Refuse(Refusal {
                reason: Some("Bad Proxy-Authorization"),
                ..Refusal::status(400)
            });
        }
        self.challenge(now, false)
    }

    fn challenge(&self, now: SystemTime, stale: bool) -> AuthCheck {
        lock(&self.counters).challenges += 1;
        let headers = lock(&self.digest)
            .challenges(now, stale)
            .into_iter()
            .map(|c| ("Proxy-Authenticate", c.to_string()))
            .collect();
        AuthCheck::Refuse(Refusal {
            headers,
            ..Refusal::status(407)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sip_auth::{Account, DigestClient, MemoryStore};

    fn auth() -> ProxyAuth<MemoryStore> {
        let users = MemoryStore::from_users_file("alice:example.com:secret\n").unwrap();
        ProxyAuth::new(
            "example.com",
            Arc::new(users),
            &[Algorithm::Md5],
            [7; 32],
            ThrottleConfig::default(),
        )
        .unwrap()
    }

    #[test]
    fn own_credentials_are_consumed_foreign_ones_kept() {
        let a = auth();
        let mut m = invite(
            "alice@example.com",
            "Proxy-Authorization: Digest username=\"alice\", realm=\"example.com\", nonce=\"x\", uri=\"sip:bob@example.com\", response=\"00000000000000000000000000000000\"\r\n\
             Proxy-Authorization: Digest username=\"alice\", realm=\"other.net\", nonce=\"y\", uri=\"sip:bob@example.com\", response=\"11111111111111111111111111111111\"\r\n",
        );
        assert_eq!(a.consume_credentials(&mut m), 1);
        let left: Vec<&[u8]> = m.header_lines(HeaderName::ProxyAuthorization).collect();
        assert_eq!(left.len(), 1);
        assert!(std::str::from_utf8(left[0])
            .unwrap()
            .contains("realm=\"other.net\""));
        let reparsed = Message::parse(m.to_bytes()).unwrap();
        assert_eq!(
            reparsed
                .header_lines(HeaderName::ProxyAuthorization)
                .count(),
            1
        );
        assert_eq!(a.consume_credentials(&mut m), 0);
    }

    fn invite(from: &str, extra: &str) -> Message {
        Message::parse(
            format!(
                "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKa\r\n\
                 {extra}From: <sip:{from}>;tag=1\r\nTo: <sip:bob@example.com>\r\n\
                 Call-ID: c1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            )
            .into_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn challenge_then_accept_then_replay_refused() {
        let a = auth();
        let src: IpAddr = "192.0.2.9".parse().unwrap();
        let now = SystemTime::now();
        let AuthCheck::Refuse(r) = a.check(&invite("alice@example.com", ""), src, now) else {
            panic!("no challenge")
        };
        assert_eq!(r.status, 407);
        let resp = r.response(&invite("alice@example.com", "")).unwrap();
        let challenge = resp
            .challenge(HeaderName::ProxyAuthenticate)
            .unwrap()
            .unwrap();
        let mut client = DigestClient::new().unwrap();
        client.add_account(Account::new("example.com", "alice", "secret"));
        let creds = client
            .respond(
                &[challenge],
                "example.com",
                &DigestRequest::new("INVITE", "sip:bob@example.com", b""),
            )
            .unwrap();
        let signed = invite(
            "alice@example.com",
            &format!("Proxy-Authorization: {creds}\r\n"),
        );
        assert_eq!(
            a.check(&signed, src, now),
            AuthCheck::Proceed(Some("alice".into()))
        );
        // The same credentials again (same nonce count): a replay, challenged again.
        assert!(matches!(
            a.check(&signed, src, now),
            AuthCheck::Refuse(Refusal { status: 407, .. })
        ));
        assert_eq!(a.counters().authenticated, 1);
        assert_eq!(a.counters().failures, 1);
    }

    #[test]
    fn only_our_users_and_new_requests() {
        let a = auth();
        let src: IpAddr = "192.0.2.9".parse().unwrap();
        let now = SystemTime::now();
        assert_eq!(
            a.check(&invite("carol@example.org", ""), src, now),
            AuthCheck::Proceed(None)
        );
        let mut in_dialog = invite("alice@example.com", "");
        in_dialog
            .set_header(HeaderName::To, "<sip:bob@example.com>;tag=9")
            .unwrap();
        assert_eq!(a.check(&in_dialog, src, now), AuthCheck::Proceed(None));
    }

    #[test]
    fn failures_throttled() {
        let a = auth();
        let src: IpAddr = "192.0.2.66".parse().unwrap();
        let now = SystemTime::now();
        let bad = invite(
            "alice@example.com",
            "Proxy-Authorization: Digest username=\"alice\", realm=\"example.com\", nonce=\"x\", uri=\"sip:bob@example.com\", response=\"00000000000000000000000000000000\"\r\n",
        );
        let mut statuses = Vec::new();
        for _ in 0..12 {
            if let AuthCheck::Refuse(r) = a.check(&bad, src, now) {
                statuses.push(r.status);
            }
        }
        assert_eq!(statuses.first(), Some(&407));
        assert_eq!(statuses.last(), Some(&403));
        assert!(a.counters().throttled > 0);
    }
}
