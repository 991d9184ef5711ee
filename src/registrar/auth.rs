//! RFC 3261 §10.3 steps 3–4 (authentication and authorization): digest challenges, the
//! stateless first challenge, verification, throttling of what is evidence of guessing, and
//! §10.3 step 5's rule that a user binds only their own AOR.

use std::net::IpAddr;
use std::time::SystemTime;

use sip_auth::{DigestRequest, DigestServer, Outcome, Rejection, ThrottleDecision};
use sip_core::auth::Credentials;
use sip_core::builder::ResponseBuilder;
use sip_core::{Flow, HeaderName, Message, Method};

use super::{canonical_aor, inc, to_host, AuthMode, LocationStore, Registrar, SUPPORTED};

impl<S: LocationStore> Registrar<S> {
    /// The stateless first step of digest authentication (what an
    /// [`Endpoint`](crate::endpoint::Endpoint) calls through
    /// [`StatelessResponder`](crate::endpoint::StatelessResponder) before any
    /// transaction exists): a REGISTER for a served domain without credentials for our realm
    /// gets its 401 challenge (or 403 when its source is throttled) with no state kept, as
    /// high-rate registrars do; everything else returns `None` and takes the full path.
    pub fn stateless_challenge(
        &self,
        req: &Message,
        flow: Flow,
        wall: SystemTime,
    ) -> Option<Message> {
        if req.method() != Some(Method::Register) || self.digest.is_none() {
            return None;
        }
        let has_credentials = req
            .header_lines(HeaderName::Authorization)
            .filter_map(|v| std::str::from_utf8(v).ok())
            .filter_map(|v| Credentials::parse(v).ok())
            .any(|c| c.is_digest() && c.realm.as_deref() == Some(self.config.realm.as_str()));
        if has_credentials {
            return None;
        }
        // Requests that §10.3 steps 1, 2 and 5 refuse before authentication take the full path.
        let ruri = req.request_uri()?.ok()?;
        if !self.serves_domain(ruri.host_str()) {
            return None;
        }
        if req
            .values(HeaderName::Require)
            .any(|t| !SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(t)))
        {
            return None;
        }
        let aor = canonical_aor(req.to().ok()?.uri())?;
        if !self.serves_domain(to_host(&aor)) {
            return None;
        }
        inc(&self.stats.registers);
        self.authenticate(req, &aor, flow.remote.ip(), wall)
            .ok()
            .flatten()
    }

    /// Returns `Some(response)` when the request must be refused or challenged.
    pub(super) fn authenticate(
        &self,
        req: &Message,
        aor: &str,
        source: IpAddr,
        wall: SystemTime,
    ) -> sip_core::Result<Option<Message>> {
        match self.authenticate_step(req, aor, source, wall)? {
            AuthStep::Proceed => Ok(None),
            AuthStep::Respond(m) => Ok(Some(m)),
            AuthStep::Replayed(user) => self
                .auth_failure(req, source, user.as_deref(), Rejection::Replay, true, wall)
                .map(Some),
        }
    }

    pub(super) fn authenticate_step(
        &self,
        req: &Message,
        aor: &str,
        source: IpAddr,
        wall: SystemTime,
    ) -> sip_core::Result<AuthStep> {
        let (Some(digest), AuthMode::Digest(users)) = (&self.digest, &self.config.auth) else {
            return Ok(AuthStep::Proceed);
        };
        // The credentials for our realm, if any (others are ignored, §22.4).
        let creds: Option<Credentials<'_>> = req
            .header_lines(HeaderName::Authorization)
            .filter_map(|v| std::str::from_utf8(v).ok())
            .filter_map(|v| Credentials::parse(v).ok())
            .find(|c| c.is_digest() && c.realm.as_deref() == Some(self.config.realm.as_str()));
        let username_owned: Option<String> = creds
            .as_ref()
            .and_then(|c| c.username.as_deref().map(str::to_owned));
        let username = username_owned.as_deref();
        if let Some(throttle) = &self.throttle {
            let t = throttle.lock().unwrap_or_else(|e| e.into_inner());
            if let ThrottleDecision::Blocked { retry_after, scope } =
                t.check(wall, source, username)
            {
                inc(&self.stats.throttled);
                tracing::warn!(%source, user = username.unwrap_or("-"), blocked = scope.as_str(), "throttled: too many failed authentications");
                return req
                    .response(403)
                    .reason("Too Many Failed Attempts")
                    .header("Retry-After", retry_after.as_secs().max(1).to_string())
                    .build()
                    .map(AuthStep::Respond);
            }
        }
        let mut server = digest.lock().unwrap_or_else(|e| e.into_inner());
        let Some(creds) = creds else {
            // An unanswered first challenge is not a failure.
            inc(&self.stats.challenges);
            return self
                .challenge(req, &mut server, wall, false)
                .map(AuthStep::Respond);
        };
        let uri = req.uri_str().unwrap_or_default();
        let request = DigestRequest::new(
            req.method().map_or("REGISTER", |m| m.as_str()),
            uri,
            req.body(),
        );
        match server.verify(wall, &creds, &request, &**users) {
            Outcome::Authenticated(who) => {
                if who.uri_mismatch {
                    tracing::debug!(user = %who.username, digest_uri = creds.uri.as_deref().unwrap_or("-"), request_uri = uri, "digest uri is not the Request-URI: accepted (UriCheck::Relaxed)");
                }
                if let Some(t) = &self.throttle {
                    t.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .record_success(source, &who.username);
                }
                if !self.may_bind(&who.username, aor) {
                    tracing::warn!(user = %who.username, %aor, "authenticated user may not register this AOR");
                    return req
                        .response(403)
                        .reason("Not Your Address-of-Record")
                        .build()
                        .map(AuthStep::Respond);
                }
                Ok(AuthStep::Proceed)
            }
            Outcome::Stale => {
                inc(&self.stats.challenges);
                self.challenge(req, &mut server, wall, true)
                    .map(AuthStep::Respond)
            }
            // The same request again: a retransmission when its Call-ID and CSeq are those of
            // a binding it created (handled by the caller, which can read the store).
            Outcome::Rejected(Rejection::Replay) => Ok(AuthStep::Replayed(username_owned)),
            Outcome::Rejected(why) => {
                drop(server);
                self.auth_failure(req, source, username, why, why.is_evidence(), wall)
                    .map(AuthStep::Respond)
            }
        }
    }

    /// §10.3 step 5: whether `username` may bind `aor` (its own, or the policy hook says so).
    fn may_bind(&self, username: &str, aor: &str) -> bool {
        let user_of_aor = aor
            .split_once(':')
            .and_then(|(_, r)| r.rsplit_once('@'))
            .map(|(u, _)| u);
        user_of_aor == Some(username)
            || self
                .config
                .third_party
                .as_ref()
                .is_some_and(|allow| allow(username, aor))
    }

    /// §10.3 step 5: whether the To URI's domain is one this registrar serves (any, when
    /// [`RegistrarConfig::domains`] is empty).
    pub(super) fn serves_domain(&self, host: &str) -> bool {
        self.config.domains.is_empty()
            || self
                .config
                .domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(host))
    }

    /// A failed authentication: counted, fed to the throttle when it is `evidence` of
    /// guessing, answered 400 (malformed) or with a fresh challenge.
    pub(super) fn auth_failure(
        &self,
        req: &Message,
        source: IpAddr,
        username: Option<&str>,
        why: Rejection,
        evidence: bool,
        wall: SystemTime,
    ) -> sip_core::Result<Message> {
        inc(&self.stats.auth_failures);
        tracing::warn!(%source, user = username.unwrap_or("-"), reason = %why, counted = evidence, "authentication failed");
        if let (Some(t), true) = (&self.throttle, evidence) {
            let decision = t
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .record_failure(wall, source, username);
            if let ThrottleDecision::Blocked { scope, .. } = decision {
                tracing::warn!(%source, user = username.unwrap_or("-"), blocked = scope.as_str(), "throttle: blocking for the window");
            }
        }
        if why.is_malformed() {
            return req.response(400).reason("Bad Authorization").build();
        }
        let Some(digest) = &self.digest else {
            return req.response(403).build();
        };
        let mut server = digest.lock().unwrap_or_else(|e| e.into_inner());
        inc(&self.stats.challenges);
        self.challenge(req, &mut server, wall, false)
    }

    fn challenge(
        &self,
        req: &Message,
        server: &mut DigestServer,
        wall: SystemTime,
        stale: bool,
    ) -> sip_core::Result<Message> {
        let mut b: ResponseBuilder = req.response(401);
        for ch in server.challenges(wall, stale) {
            b = b.header("WWW-Authenticate", ch.to_string());
        }
        b.build()
    }
}

/// Where authentication leaves a request (moved once; boxing would cost an allocation).
#[allow(clippy::large_enum_variant)]
pub(super) enum AuthStep {
    /// Authenticated (or no authentication configured): go on.
    Proceed,
    /// Answer with this (challenge, refusal).
    Respond(Message),
    /// Authentic credentials whose nonce count was already used: a retransmission if the
    /// request was already applied, else a replay (the username, for the failure count).
    Replayed(Option<String>),
}
