//! A registrar (RFC 3261 §10.3) with digest authentication, RFC 3327 Path, RFC 5626 outbound
//! and the GB28181 camera profile.
//!
//! [`Registrar::handle`] takes a REGISTER (or a GB28181 keepalive MESSAGE) with the flow it came
//! on and the current time, applies it to a [`LocationStore`] and returns the response to send.
//! It does no I/O of its own, so every rule is tested without sockets; the Endpoint feeds it
//! requests and sends its answers.
//!
//! ```
//! use std::time::{Instant, SystemTime};
//! use sip_stack::core::{Flow, Message, Transport};
//! use sip_stack::registrar::{Registrar, RegistrarConfig};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let registrar = Registrar::open(RegistrarConfig::new("example.com"));
//! let req = Message::parse(&b"REGISTER sip:example.com SIP/2.0\r\n\
//!     Via: SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bKnashds7\r\n\
//!     To: <sip:bob@example.com>\r\nFrom: <sip:bob@example.com>;tag=456248\r\n\
//!     Call-ID: 843817637684230@998sdasdh09\r\nCSeq: 1826 REGISTER\r\n\
//!     Contact: <sip:bob@192.0.2.4>\r\nExpires: 7200\r\nContent-Length: 0\r\n\r\n"[..]).unwrap();
//! let flow = Flow {
//!     transport: Transport::Udp,
//!     local: "192.0.2.1:5060".parse().unwrap(),
//!     remote: "192.0.2.4:5060".parse().unwrap(),
//! };
//! let resp = registrar.handle(&req, flow, Instant::now(), SystemTime::now()).await.unwrap();
//! assert_eq!(resp.status(), Some(200));
//! assert_eq!(resp.contacts().next().unwrap().unwrap().expires(), Some(7200));
//! # });
//! ```

pub mod location;
mod service;

pub use service::{serve, ServiceOptions};

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use sip_auth::{
    DigestRequest, DigestServer, MemoryStore, Outcome, Rejection, ServerConfig, ServerKey,
    Throttle, ThrottleConfig, ThrottleDecision,
};
use sip_core::addr::ContactValue;
use sip_core::auth::Credentials;
use sip_core::builder::ResponseBuilder;
use sip_core::uri::{AnyUri, Host};
use sip_core::{Flow, HeaderName, Message, Method};
use tokio::sync::broadcast;

pub use location::{
    apply_register, Binding, BindingChange, BindingExtra, ContactUpdate, LocationStore, Lost,
    MemoryLocationStore, RegisterChange, RegisterError, StoreLimits,
};

/// Option tags the registrar understands in Require (RFC 3261 §8.2.2.3).
const SUPPORTED: &[&str] = &["path", "outbound", "gb28181"];

/// How the registrar authenticates.
#[derive(Clone, Default)]
pub enum AuthMode {
    /// No authentication (lab use only: anyone can register anything).
    #[default]
    Open,
    /// Digest authentication against these users (`user:realm:password` or HA1).
    Digest(Arc<MemoryStore>),
}

/// Configuration of a [`Registrar`].
#[derive(Clone)]
pub struct RegistrarConfig {
    /// The realm challenged for, and the default domain.
    pub realm: String,
    /// Domains served: a REGISTER whose Request-URI host is not one of them gets 404. Empty:
    /// any domain (GB28181 platforms use numeric domain IDs).
    pub domains: Vec<String>,
    /// Expires granted when the request names none (default 3600).
    pub default_expires: u32,
    /// Below this (and above 0) the answer is 423 with Min-Expires (default 60).
    pub min_expires: u32,
    /// Longer requested intervals are shortened to this (default 86 400, what GB28181
    /// cameras ask for).
    pub max_expires: u32,
    /// Caps on bindings.
    pub limits: StoreLimits,
    /// Authentication.
    pub auth: AuthMode,
    /// Failure throttling (on by default: 10 failures in 5 minutes block a source or user).
    pub throttle: Option<ThrottleConfig>,
    /// Allow digest answers without qop (RFC 2069 form, as GB28181 cameras send). Default true.
    pub allow_missing_qop: bool,
    /// Whether an authenticated user may register only their own AOR (default true).
    pub same_user_only: bool,
    /// Digest algorithms offered in 401 challenges, one WWW-Authenticate each, strongest
    /// first (default SHA-256 and MD5). Some clients (SIPp 3.6, older phones and cameras) only
    /// read the first challenge and give up unless it is MD5: offer `[Md5]` alone for them.
    pub algorithms: Vec<sip_core::auth::Algorithm>,
}

impl RegistrarConfig {
    /// Defaults for a realm: open, any domain, expires 3600 (min 60, max 86 400).
    pub fn new(realm: impl Into<String>) -> RegistrarConfig {
        RegistrarConfig {
            realm: realm.into(),
            domains: Vec::new(),
            default_expires: 3600,
            min_expires: 60,
            max_expires: 86_400,
            limits: StoreLimits::default(),
            auth: AuthMode::Open,
            throttle: Some(ThrottleConfig::default()),
            allow_missing_qop: true,
            same_user_only: true,
            algorithms: vec![
                sip_core::auth::Algorithm::Sha256,
                sip_core::auth::Algorithm::Md5,
            ],
        }
    }
}

/// What the application hears about registrations (the "user center" notifications).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrarEvent {
    /// A new contact for an AOR.
    Registered {
        /// The AOR.
        aor: String,
        /// The binding.
        binding: Binding,
    },
    /// An existing contact re-registered.
    Refreshed {
        /// The AOR.
        aor: String,
        /// The binding.
        binding: Binding,
    },
    /// The client removed a contact.
    Unregistered {
        /// The AOR.
        aor: String,
        /// The binding.
        binding: Binding,
    },
    /// A contact expired without being refreshed.
    Expired {
        /// The AOR.
        aor: String,
        /// The binding.
        binding: Binding,
    },
    /// A contact became unreachable (its TCP/TLS flow closed, or keep-alives failed).
    Offline {
        /// The AOR.
        aor: String,
        /// The binding.
        binding: Binding,
    },
    /// A device proved it is alive (GB28181 keepalive, or an answered probe).
    Alive {
        /// The AOR.
        aor: String,
    },
}

/// Counters an operator reads.
#[derive(Debug, Default)]
pub struct RegistrarStats {
    /// REGISTER requests handled.
    pub registers: AtomicU64,
    /// REGISTERs answered 200.
    pub accepted: AtomicU64,
    /// 401 challenges sent.
    pub challenges: AtomicU64,
    /// Failed authentications (wrong response, forged nonce, replay…).
    pub auth_failures: AtomicU64,
    /// Requests refused by throttling.
    pub throttled: AtomicU64,
    /// GB28181 keepalives.
    pub keepalives: AtomicU64,
}

/// A snapshot of [`RegistrarStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RegistrarCounters {
    /// REGISTER requests handled.
    pub registers: u64,
    /// REGISTERs answered 200.
    pub accepted: u64,
    /// 401 challenges sent.
    pub challenges: u64,
    /// Failed authentications.
    pub auth_failures: u64,
    /// Requests refused by throttling.
    pub throttled: u64,
    /// GB28181 keepalives.
    pub keepalives: u64,
}

/// The registrar: RFC 3261 §10.3 over a [`LocationStore`].
pub struct Registrar<S: LocationStore = MemoryLocationStore> {
    config: RegistrarConfig,
    store: S,
    digest: Option<Mutex<DigestServer>>,
    throttle: Option<Mutex<Throttle>>,
    events: broadcast::Sender<RegistrarEvent>,
    stats: RegistrarStats,
    /// Recent requests that removed bindings (Call-ID, CSeq, when): a retransmission of one
    /// finds no binding to recognise it by. Bounded in count and kept 64·T1 (32 s).
    removals: Mutex<std::collections::VecDeque<(Instant, Box<str>, u32)>>,
}

/// How long a removal is remembered for retransmissions (64·T1, as a server transaction).
const REMOVAL_MEMORY: Duration = Duration::from_secs(32);
/// Most removals remembered.
const MAX_REMOVALS: usize = 16_384;

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The canonical AOR of a To URI: `sip:user@host` (scheme and host lower-cased, no port or
/// parameters), or `None` when To is not a sip/sips URI with a user.
pub fn canonical_aor(to: &AnyUri<'_>) -> Option<String> {
    let uri = to.as_uri()?;
    let user = uri.user()?;
    let scheme = if uri.is_secure() { "sips" } else { "sip" };
    let host = match uri.host() {
        Host::Domain(d) => d.to_ascii_lowercase(),
        h => h.to_string(),
    };
    Some(format!("{scheme}:{user}@{host}"))
}

impl Registrar<MemoryLocationStore> {
    /// A registrar keeping bindings in memory. With [`AuthMode::Digest`] a random server key is
    /// drawn from the OS.
    pub fn open(config: RegistrarConfig) -> Registrar<MemoryLocationStore> {
        let store = MemoryLocationStore::new(config.limits);
        Registrar::with_store(config, store)
    }
}

impl<S: LocationStore> Registrar<S> {
    /// A registrar over any store.
    pub fn with_store(config: RegistrarConfig, store: S) -> Registrar<S> {
        let digest = match &config.auth {
            AuthMode::Open => None,
            AuthMode::Digest(_) => {
                let server_config = ServerConfig::new(config.realm.clone())
                    .algorithms(&config.algorithms)
                    .qop(&[sip_core::auth::Qop::Auth])
                    .allow_missing_qop(config.allow_missing_qop);
                let mut seed = [0u8; 32];
                for chunk in seed.chunks_mut(8) {
                    use sip_core::random::RandomSource as _;
                    chunk.copy_from_slice(&sip_core::random::OsRandom.next_u64().to_le_bytes());
                }
                let key = ServerKey::from_bytes(seed);
                DigestServer::new(server_config, key).ok().map(Mutex::new)
            }
        };
        let throttle = config.throttle.map(|t| Mutex::new(Throttle::new(t)));
        let (events, _) = broadcast::channel(1024);
        Registrar {
            config,
            store,
            digest,
            throttle,
            events,
            stats: RegistrarStats::default(),
            removals: Mutex::new(std::collections::VecDeque::new()),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RegistrarConfig {
        &self.config
    }

    /// The location store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Subscribes to registration events.
    pub fn events(&self) -> broadcast::Receiver<RegistrarEvent> {
        self.events.subscribe()
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> RegistrarCounters {
        let s = &self.stats;
        RegistrarCounters {
            registers: s.registers.load(Ordering::Relaxed),
            accepted: s.accepted.load(Ordering::Relaxed),
            challenges: s.challenges.load(Ordering::Relaxed),
            auth_failures: s.auth_failures.load(Ordering::Relaxed),
            throttled: s.throttled.load(Ordering::Relaxed),
            keepalives: s.keepalives.load(Ordering::Relaxed),
        }
    }

    /// Publishes an event to the subscribers (used by the service's keep-alive prober).
    pub fn emit_event(&self, event: RegistrarEvent) {
        self.emit(event);
    }

    fn emit(&self, event: RegistrarEvent) {
        // No subscriber is fine: events are a convenience, not a queue.
        let _ = self.events.send(event);
    }

    /// Handles a request meant for the registrar and returns the response to send: REGISTER
    /// (RFC 3261 §10.3), a GB28181 keepalive MESSAGE (200 and liveness), OPTIONS (200), anything
    /// else 405. `None` only when no response can be built from the request (it lacks the
    /// headers a response copies): drop it.
    pub async fn handle(
        &self,
        req: &Message,
        flow: Flow,
        now: Instant,
        wall: SystemTime,
    ) -> Option<Message> {
        let built = match req.method() {
            Some(Method::Register) => {
                inc(&self.stats.registers);
                self.register(req, flow, now, wall).await
            }
            Some(Method::Message) if is_gb28181_keepalive(req) => self.keepalive(req, flow).await,
            Some(Method::Options) => req
                .response(200)
                .header("Allow", "REGISTER, OPTIONS, MESSAGE")
                .header("Accept", "application/sdp")
                .build(),
            _ => req
                .response(405)
                .header("Allow", "REGISTER, OPTIONS, MESSAGE")
                .build(),
        };
        built.or_else(|_| req.response(500).build()).ok()
    }

    /// Runs [`LocationStore::sweep`] and reports expired bindings as events.
    pub async fn sweep(&self, now: Instant) -> usize {
        let lost = self.store.sweep(now).await;
        let n = lost.len();
        for l in lost {
            tracing::info!(aor = %l.aor, contact = %l.binding.contact, "binding expired");
            self.emit(RegistrarEvent::Expired {
                aor: l.aor,
                binding: l.binding,
            });
        }
        n
    }

    /// A flow closed: removes (TCP/TLS, outbound) or marks offline the bindings on it.
    pub async fn flow_closed(&self, flow: Flow) -> usize {
        let lost = self.store.flow_closed(flow).await;
        let n = lost.len();
        for l in lost {
            tracing::info!(aor = %l.aor, contact = %l.binding.contact, %flow, "flow closed: binding offline");
            self.emit(RegistrarEvent::Offline {
                aor: l.aor,
                binding: l.binding,
            });
        }
        n
    }

    async fn keepalive(&self, req: &Message, flow: Flow) -> sip_core::Result<Message> {
        inc(&self.stats.keepalives);
        if let Some(aor) = req.from().ok().and_then(|f| canonical_aor(f.uri())) {
            if self.store.set_offline(&aor, flow, false).await > 0
                || !self.store.lookup(&aor, Instant::now()).await.is_empty()
            {
                tracing::debug!(%aor, %flow, "GB28181 keepalive");
            }
            self.emit(RegistrarEvent::Alive { aor });
        }
        req.response(200).build()
    }

    async fn register(
        &self,
        req: &Message,
        flow: Flow,
        now: Instant,
        wall: SystemTime,
    ) -> sip_core::Result<Message> {
        // §10.3 step 1: the domain of the Request-URI.
        let ruri = match req.request_uri() {
            Some(Ok(u)) => u,
            Some(Err(e)) => return req.response(e.response_status().0).build(),
            None => return req.response(400).build(),
        };
        if !self.config.domains.is_empty() {
            let host = ruri.host_str();
            if !self
                .config
                .domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(host))
            {
                return req.response(404).reason("Domain Not Served").build();
            }
        }
        // Step 2: Require.
        let unsupported: Vec<&str> = req
            .values(HeaderName::Require)
            .filter(|t| !SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(t)))
            .collect();
        if !unsupported.is_empty() {
            return req
                .response(420)
                .header("Unsupported", unsupported.join(", "))
                .build();
        }
        // Step 5 (before auth so the AOR user can be checked against the authenticated one).
        let to = req.to()?;
        let Some(aor) = canonical_aor(to.uri()) else {
            return req
                .response(404)
                .reason("Not Found (address-of-record)")
                .build();
        };
        // Steps 3–4: authentication and authorization.
        match self.authenticate_step(req, &aor, flow.remote.ip(), wall)? {
            AuthStep::Proceed => {}
            AuthStep::Respond(m) => return Ok(m),
            AuthStep::Replayed(user) => {
                // Without a server transaction (Endpoint stateless methods) a retransmitted
                // REGISTER reaches us again: its Call-ID and CSeq are those of the bindings it
                // made, and it gets the same 200 again. Anything else is a replay.
                let bindings = self.store.lookup(&aor, now).await;
                let call_id = req.call_id().unwrap_or_default();
                let cseq = req.cseq()?.seq;
                if bindings
                    .iter()
                    .any(|b| &*b.call_id == call_id && b.cseq == cseq)
                    || self.removed_by(call_id, cseq, now)
                {
                    tracing::debug!(%aor, "retransmitted REGISTER answered again");
                    return self.ok_response(req, &bindings, now, wall);
                }
                let source = flow.remote.ip();
                return self.auth_failure(req, source, user.as_deref(), Rejection::Replay, wall);
            }
        }
        // Step 6: the contacts.
        let header_expires = match req.expires() {
            Some(Ok(e)) => Some(e),
            Some(Err(_)) => return req.response(400).reason("Bad Expires").build(),
            None => None,
        };
        let mut change = RegisterChange {
            call_id: req.call_id().unwrap_or_default().to_owned(),
            cseq: req.cseq()?.seq,
            remove_all: false,
            contacts: Vec::new(),
            flow,
            path: req.values(HeaderName::Path).map(str::to_owned).collect(),
        };
        let mut too_brief = false;
        for c in req.contacts() {
            let c = match c {
                Ok(c) => c,
                Err(_) => return req.response(400).reason("Bad Contact").build(),
            };
            let Some(addr) = c.addr() else {
                change.remove_all = true;
                continue;
            };
            let requested = addr
                .expires()
                .or(header_expires)
                .unwrap_or(self.config.default_expires);
            if requested != 0 && requested < self.config.min_expires {
                too_brief = true;
            }
            change.contacts.push(ContactUpdate {
                contact: addr.uri_str().to_owned(),
                expires: requested.min(self.config.max_expires),
                q: addr.q().unwrap_or(1000),
                instance: addr.instance().map(|i| i.into_owned()),
                reg_id: addr.reg_id(),
            });
        }
        if change.remove_all && (!change.contacts.is_empty() || header_expires != Some(0)) {
            return req
                .response(400)
                .reason("Contact * needs Expires 0 and no other contact")
                .build();
        }
        if too_brief {
            return req
                .response(423)
                .header("Min-Expires", self.config.min_expires.to_string())
                .build();
        }
        // Step 8 (no Contact): a query for the current bindings.
        let (bindings, changes) = if change.contacts.is_empty() && !change.remove_all {
            (self.store.lookup(&aor, now).await, Vec::new())
        } else {
            match self.store.register(&aor, change, now).await {
                Ok(r) => r,
                Err(e @ RegisterError::OutOfOrder { .. }) => {
                    tracing::debug!(%aor, error = %e, "REGISTER refused");
                    return req
                        .response(500)
                        .reason("Out of Order")
                        .header("Retry-After", "1")
                        .build();
                }
                Err(RegisterError::TooManyForAor | RegisterError::StoreFull) => {
                    return req
                        .response(503)
                        .reason("Too Many Registrations")
                        .header("Retry-After", "60")
                        .build()
                }
                Err(RegisterError::Unavailable(_)) => {
                    return req.response(500).header("Retry-After", "5").build()
                }
            }
        };
        if changes
            .iter()
            .any(|c| matches!(c, BindingChange::Removed(_)))
        {
            self.remember_removal(req, now);
        }
        for ch in changes {
            let event = match ch {
                BindingChange::Added(b) => {
                    tracing::info!(%aor, contact = %b.contact, expires = b.remaining(now), %flow, "registered");
                    RegistrarEvent::Registered {
                        aor: aor.clone(),
                        binding: b,
                    }
                }
                BindingChange::Refreshed(b) => {
                    tracing::debug!(%aor, contact = %b.contact, expires = b.remaining(now), "refreshed");
                    RegistrarEvent::Refreshed {
                        aor: aor.clone(),
                        binding: b,
                    }
                }
                BindingChange::Removed(b) => {
                    tracing::info!(%aor, contact = %b.contact, "unregistered");
                    RegistrarEvent::Unregistered {
                        aor: aor.clone(),
                        binding: b,
                    }
                }
            };
            self.emit(event);
        }
        inc(&self.stats.accepted);
        self.ok_response(req, &bindings, now, wall)
    }

    /// The stateless first step of digest authentication (what an
    /// [`Endpoint`](crate::endpoint::Endpoint) calls through [`StatelessResponder`](crate::endpoint::StatelessResponder) before any
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
        if !self.config.domains.is_empty()
            && !self
                .config
                .domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(ruri.host_str()))
        {
            return None;
        }
        if req
            .values(HeaderName::Require)
            .any(|t| !SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(t)))
        {
            return None;
        }
        let aor = canonical_aor(req.to().ok()?.uri())?;
        inc(&self.stats.registers);
        self.authenticate(req, &aor, flow.remote.ip(), wall)
            .ok()
            .flatten()
    }

    fn remember_removal(&self, req: &Message, now: Instant) {
        let (Some(call_id), Ok(cseq)) = (req.call_id(), req.cseq()) else {
            return;
        };
        let mut r = self.removals.lock().unwrap_or_else(|e| e.into_inner());
        while r
            .front()
            .is_some_and(|(t, ..)| now.saturating_duration_since(*t) > REMOVAL_MEMORY)
            || r.len() >= MAX_REMOVALS
        {
            r.pop_front();
        }
        r.push_back((now, call_id.into(), cseq.seq));
    }

    fn removed_by(&self, call_id: &str, cseq: u32, now: Instant) -> bool {
        let r = self.removals.lock().unwrap_or_else(|e| e.into_inner());
        r.iter().any(|(t, c, n)| {
            &**c == call_id && *n == cseq && now.saturating_duration_since(*t) <= REMOVAL_MEMORY
        })
    }

    /// Returns `Some(response)` when the request must be refused or challenged.
    fn authenticate(
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
                .auth_failure(req, source, user.as_deref(), Rejection::Replay, wall)
                .map(Some),
        }
    }

    fn authenticate_step(
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
            if let ThrottleDecision::Blocked { retry_after } = t.check(wall, Some(source), username)
            {
                inc(&self.stats.throttled);
                tracing::warn!(%source, user = username.unwrap_or("-"), "throttled: too many failed authentications");
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
        let request = DigestRequest::new("REGISTER", uri, req.body());
        match server.verify(wall, &creds, &request, &**users) {
            Outcome::Authenticated(who) => {
                if let Some(t) = &self.throttle {
                    t.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .record_success(&who.username);
                }
                let user_of_aor = aor
                    .split_once(':')
                    .and_then(|(_, r)| r.split_once('@'))
                    .map(|(u, _)| u);
                if self.config.same_user_only && user_of_aor != Some(who.username.as_str()) {
                    tracing::warn!(user = %who.username, %aor, "authenticated user may not register this AOR");
                    return req.response(403).build().map(AuthStep::Respond);
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
                self.auth_failure(req, source, username, why, wall)
                    .map(AuthStep::Respond)
            }
        }
    }

    /// A failed authentication: counted, fed to the throttle, answered 400 (malformed) or
    /// with a fresh challenge.
    fn auth_failure(
        &self,
        req: &Message,
        source: IpAddr,
        username: Option<&str>,
        why: Rejection,
        wall: SystemTime,
    ) -> sip_core::Result<Message> {
        inc(&self.stats.auth_failures);
        tracing::warn!(%source, user = username.unwrap_or("-"), reason = %why, "authentication failed");
        if let Some(t) = &self.throttle {
            let _ = t.lock().unwrap_or_else(|e| e.into_inner()).record_failure(
                wall,
                Some(source),
                username,
            );
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

    fn ok_response(
        &self,
        req: &Message,
        bindings: &[Binding],
        now: Instant,
        wall: SystemTime,
    ) -> sip_core::Result<Message> {
        let mut b = req.response(200);
        let mut outbound = false;
        for binding in bindings {
            let mut v = format!("<{}>;expires={}", binding.contact, binding.remaining(now));
            if binding.q != 1000 {
                v.push_str(&format!(";q={}", q_string(binding.q)));
            }
            if let (Some(i), Some(r)) = (binding.instance(), binding.reg_id()) {
                v.push_str(&format!(";+sip.instance=\"{i}\";reg-id={r}"));
                outbound = true;
            }
            b = b.header("Contact", v);
        }
        // RFC 3327 §5.3: the Path is echoed when the UA supports it.
        if req.has_token(HeaderName::Supported, "path") {
            for p in req.values(HeaderName::Path) {
                b = b.header("Path", p);
            }
        }
        if outbound && req.has_token(HeaderName::Supported, "outbound") {
            b = b.header("Require", "outbound");
        }
        // GB28181 devices set their clock from the Date of the 200 (GB/T 28181 §9.1.2).
        b = b.header("Date", http_date(wall));
        b.build()
    }
}

/// Where authentication leaves a request (moved once; boxing would cost an allocation).
#[allow(clippy::large_enum_variant)]
enum AuthStep {
    /// Authenticated (or no authentication configured): go on.
    Proceed,
    /// Answer with this (challenge, refusal).
    Respond(Message),
    /// Authentic credentials whose nonce count was already used: a retransmission if the
    /// request was already applied, else a replay (the username, for the failure count).
    Replayed(Option<String>),
}

fn q_string(q: u16) -> String {
    if q >= 1000 {
        "1".into()
    } else {
        format!("0.{:03}", q).trim_end_matches('0').to_owned()
    }
}

/// RFC 1123 date (RFC 3261 §20.17: always GMT).
pub fn http_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let days = secs / 86_400;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    let mon = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(month - 1) as usize];
    format!("{weekday}, {d:02} {mon} {year} {h:02}:{m:02}:{s:02} GMT")
}

/// A GB28181 keepalive: MESSAGE with an `Application/MANSCDP+xml` body whose CmdType is
/// `Keepalive`.
pub fn is_gb28181_keepalive(req: &Message) -> bool {
    let is_manscdp =
        matches!(req.content_type(), Some(Ok(ct)) if ct.essence_eq("application/manscdp+xml"));
    is_manscdp && memchr::memmem::find(req.body(), b"<CmdType>Keepalive</CmdType>").is_some()
}

impl<S: LocationStore> crate::endpoint::StatelessResponder for Registrar<S> {
    fn respond(&self, request: &Message, flow: Flow) -> Option<Message> {
        self.stateless_challenge(request, flow, SystemTime::now())
    }
}

/// Whether the contact is a `*` (for callers building their own registrar logic).
pub fn is_star(c: &ContactValue<'_>) -> bool {
    c.is_star()
}

#[cfg(test)]
mod tests;
