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

mod auth;
mod inline;
mod limits;
pub mod location;
pub mod probe;
mod retransmit;
mod service;

pub use inline::InlineRegistrar;
pub use probe::ProbeOptions;
pub use service::{serve, ServiceOptions};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use sip_auth::{
    DigestServer, MemoryStore, Rejection, ServerConfig, ServerKey, Throttle, ThrottleConfig,
    UriCheck,
};
use sip_core::addr::ContactValue;
use sip_core::uri::{AnyUri, Host};
use sip_core::{Flow, HeaderName, Message, Method};
use tokio::sync::broadcast;

use auth::AuthStep;
pub use limits::{FieldLimits, FieldTooLarge};
pub use retransmit::RETRANSMISSION_WINDOW;
use retransmit::{Lookup, ResponseCache};

pub use location::{
    apply_register, plan_register, AorBindings, Binding, BindingChange, BindingChanges,
    BindingExtra, Bindings, ContactUpdate, LocationStore, Lost, MemoryLocationStore,
    RegisterChange, RegisterError, StoreLimits,
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
    /// Caps on bindings: per AOR, in count and in bytes over the whole store.
    pub limits: StoreLimits,
    /// Largest contact, Call-ID, instance and Path one REGISTER may store; beyond them the
    /// answer is 400 (or 413 for too many contacts) with a reason naming the field.
    pub field_limits: FieldLimits,
    /// Authentication.
    pub auth: AuthMode,
    /// Failure throttling (on by default). Only evidence of guessing counts (a wrong response,
    /// an unknown user, a forged nonce, a nonce count replayed on a request that is not a
    /// retransmission); a stale nonce, a missing Authorization or a retransmission never do.
    /// `max_failures` (10) failures of one username from one source within `window` (5
    /// minutes) block that pair; `max_failures_per_source` (100) over any usernames block the
    /// source, so the devices behind one NAT do not lock each other out.
    pub throttle: Option<ThrottleConfig>,
    /// How the digest `uri` is compared with the Request-URI (default
    /// [`UriCheck::Relaxed`]: a mismatch is logged at debug level and accepted). SIPp's
    /// `[authentication]` puts the address it sends to in `uri=`, and proxies and NATs that
    /// rewrite the Request-URI change it; the digest still covers the `uri` the client chose,
    /// and the nonce with its count refuses any second use ([`UriCheck`] has the full
    /// reasoning). Choose [`UriCheck::Strict`] to refuse credentials not made for this
    /// Request-URI.
    pub uri_check: UriCheck,
    /// Most answers kept to recognise retransmissions (default 32 768, about 1 000 requests
    /// per second for 64·T1; 0: none). Each answer is kept 64·T1 (32 s) keyed by Call-ID,
    /// CSeq and top Via branch, and a retransmission gets the same answer again without
    /// being authenticated or counted again. Needed when REGISTER is answered with digest
    /// authentication and without server transactions (a retransmission's credentials would
    /// otherwise look like a replay); with them it only costs a little. In
    /// [`AuthMode::Open`] no cache is kept: a retransmission is applied again, which changes
    /// nothing (same Call-ID and CSeq) and is answered with the same bindings.
    pub response_cache: usize,
    /// Allow digest answers without qop (RFC 2069 form, as GB28181 cameras send). Default true.
    pub allow_missing_qop: bool,
    /// RFC 3261 §10.3 step 5: an authenticated user may bind only their own AOR (its user part
    /// is their username). This hook, when set, is asked about every other AOR (third-party
    /// registration, an operator's account, a device registering a group's AOR) with the
    /// username and the canonical AOR; `false` (or no hook, the default) answers 403.
    pub third_party: Option<ThirdPartyPolicy>,
    /// Digest algorithms offered in 401 challenges, one WWW-Authenticate each, strongest
    /// first (default SHA-256 and MD5). Some clients (SIPp 3.6, older phones and cameras) only
    /// read the first challenge and give up unless it is MD5: offer `[Md5]` alone for them.
    pub algorithms: Vec<sip_core::auth::Algorithm>,
    /// A `Server` header for the 200s the registrar builds, written with the rest of the
    /// response (default `None`). [`serve`] and [`InlineRegistrar`] add the endpoint's own to
    /// responses that have none, which costs an edit of the built response; setting it here
    /// spares the most frequent answer that.
    pub server: Option<String>,
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
            field_limits: FieldLimits::default(),
            auth: AuthMode::Open,
            throttle: Some(ThrottleConfig::default()),
            uri_check: UriCheck::Relaxed,
            response_cache: 32_768,
            allow_missing_qop: true,
            third_party: None,
            algorithms: vec![
                sip_core::auth::Algorithm::Sha256,
                sip_core::auth::Algorithm::Md5,
            ],
            server: None,
        }
    }
}

/// Decides whether an authenticated user (first argument) may bind an AOR that is not their
/// own (second argument, canonical `sip:user@host`): [`RegistrarConfig::third_party`].
pub type ThirdPartyPolicy = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

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
    /// Retransmitted requests answered again from the response cache.
    pub retransmissions: AtomicU64,
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
    /// Retransmitted requests answered again from the response cache.
    pub retransmissions: u64,
}

/// What the location store holds ([`Registrar::memory`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreMemory {
    /// AORs with bindings.
    pub aors: usize,
    /// Bindings.
    pub bindings: usize,
    /// Bytes they take ([`location::aor_footprint`] summed), when the store counts them.
    pub bytes: Option<usize>,
    /// `bytes / bindings`.
    pub bytes_per_binding: Option<usize>,
}

/// The registrar: RFC 3261 §10.3 over a [`LocationStore`].
pub struct Registrar<S: LocationStore = MemoryLocationStore> {
    config: RegistrarConfig,
    store: S,
    digest: Option<Mutex<DigestServer>>,
    throttle: Option<Mutex<Throttle>>,
    events: broadcast::Sender<RegistrarEvent>,
    stats: RegistrarStats,
    /// Answers by (Call-ID, CSeq, branch), for retransmissions.
    cache: Option<ResponseCache>,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The canonical AOR of a To URI: `sip:user@host` (scheme and host lower-cased, no port or
/// parameters), or `None` when To is not a sip/sips URI with a user.
pub fn canonical_aor(to: &AnyUri<'_>) -> Option<String> {
    aor_key(to).map(|a| a.to_string())
}

/// [`canonical_aor`] written on the stack (most AORs fit in 96 bytes): the key of a
/// REGISTER's work, which allocates only when the store keeps it.
fn aor_key(to: &AnyUri<'_>) -> Option<AorKey> {
    use std::fmt::Write as _;
    let uri = to.as_uri()?;
    let user = uri.user()?;
    let mut aor = AorKey(smallvec::SmallVec::new());
    aor.0
        .extend_from_slice(if uri.is_secure() { b"sips:" } else { b"sip:" });
    aor.0.extend_from_slice(user.as_bytes());
    aor.0.push(b'@');
    match uri.host() {
        Host::Domain(d) => aor.0.extend(d.bytes().map(|c| c.to_ascii_lowercase())),
        h => {
            let _ = write!(aor, "{h}");
        }
    }
    Some(aor)
}

/// A canonical AOR (UTF-8: built only from `str`s and ASCII case mapping).
struct AorKey(smallvec::SmallVec<[u8; 96]>);

impl std::ops::Deref for AorKey {
    type Target = str;
    fn deref(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Write for AorKey {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

impl std::fmt::Display for AorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
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
                    .allow_missing_qop(config.allow_missing_qop)
                    .uri_check(config.uri_check);
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
            store,
            digest,
            throttle,
            events,
            stats: RegistrarStats::default(),
            // Without authentication a retransmission is applied again, which changes nothing
            // (same Call-ID and CSeq: §10.3 step 7 keeps the bindings) and gives the same
            // answer; only credentials make a second arrival look like a replay.
            cache: (config.response_cache > 0 && matches!(config.auth, AuthMode::Digest(_)))
                .then(|| ResponseCache::new(config.response_cache, RETRANSMISSION_WINDOW)),
            config,
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
            retransmissions: s.retransmissions.load(Ordering::Relaxed),
        }
    }

    /// What the location store holds and what it costs: bindings, bytes, bytes per binding
    /// (the byte figures when the store keeps count, as [`MemoryLocationStore`] does).
    pub async fn memory(&self) -> StoreMemory {
        let (aors, bindings) = self.store.counts().await;
        let bytes = self.store.bytes().await;
        StoreMemory {
            aors,
            bindings,
            bytes,
            bytes_per_binding: bytes.filter(|_| bindings > 0).map(|b| b / bindings),
        }
    }

    /// Answers held for retransmissions ([`RegistrarConfig::response_cache`]).
    pub fn cached_responses(&self) -> usize {
        self.cache.as_ref().map_or(0, ResponseCache::len)
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
    /// (RFC 3261 §10.3), a GB28181 keepalive MESSAGE (200 and liveness; challenged in digest
    /// mode when the AOR has no binding on that flow or source), another MESSAGE 415 with
    /// Accept, OPTIONS (200), anything else 405. `None` only when no response can be built from the request (it lacks the
    /// headers a response copies): drop it.
    ///
    /// A retransmission of a request answered within 64·T1 gets the same response again,
    /// without authentication or counting ([`RegistrarConfig::response_cache`]); one arriving
    /// while another worker answers the original waits for that answer.
    pub async fn handle(
        &self,
        req: &Message,
        flow: Flow,
        now: Instant,
        wall: SystemTime,
    ) -> Option<Message> {
        let Some(cache) = &self.cache else {
            return self.answer(req, flow, now, wall).await;
        };
        let Some(mut key) = cache.key(req) else {
            return self.answer(req, flow, now, wall).await;
        };
        loop {
            match cache.begin(key, req, now) {
                Lookup::New(ticket) => {
                    let response = self.answer(req, flow, now, wall).await;
                    ticket.finish(response.as_ref(), now);
                    return response;
                }
                Lookup::Answered(response) => {
                    self.retransmission_answered(req, flow);
                    return Some(response);
                }
                Lookup::InFlight(k) => {
                    if let Some(response) = cache.wait(&k, req).await {
                        self.retransmission_answered(req, flow);
                        return Some(response);
                    }
                    // The first worker gave up without an answer: answer it ourselves.
                    key = k;
                }
            }
        }
    }

    fn retransmission_answered(&self, req: &Message, flow: Flow) {
        inc(&self.stats.retransmissions);
        tracing::debug!(call_id = req.call_id().unwrap_or("-"), method = %req.method().map(|m| m.as_str()).unwrap_or("-"), %flow, "retransmission answered again");
    }

    async fn answer(
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
            Some(Method::Message) if is_gb28181_keepalive(req) => {
                self.keepalive(req, flow, now, wall).await
            }
            // RFC 3261 §21.4.13: a MESSAGE is allowed here, but only the GB28181 keepalive's
            // body is understood.
            Some(Method::Message) => req
                .response(415)
                .header("Accept", "Application/MANSCDP+xml")
                .header("Allow", "REGISTER, OPTIONS, MESSAGE")
                .build(),
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

    /// A GB28181 keepalive MESSAGE: 200 and an [`RegistrarEvent::Alive`]. With digest
    /// authentication, a keepalive from an AOR that has no binding on this flow or from this
    /// source address proves nothing (anyone can send one) and is challenged like a REGISTER;
    /// once it carries good credentials it is accepted.
    async fn keepalive(
        &self,
        req: &Message,
        flow: Flow,
        now: Instant,
        wall: SystemTime,
    ) -> sip_core::Result<Message> {
        inc(&self.stats.keepalives);
        let Some(aor) = req.from().ok().and_then(|f| canonical_aor(f.uri())) else {
            return req.response(400).reason("Bad From").build();
        };
        let bindings = self.store.lookup(&aor, now).await;
        let known = bindings
            .iter()
            .any(|b| b.flow == flow || b.flow.remote.ip() == flow.remote.ip());
        if !known {
            match self.authenticate_step(req, &aor, flow.remote.ip(), wall)? {
                AuthStep::Proceed => {}
                AuthStep::Respond(m) => return Ok(m),
                AuthStep::Replayed(user) => {
                    let evidence = self.cache.as_ref().is_none_or(|c| c.vouches_new(now));
                    return self.auth_failure(
                        req,
                        flow.remote.ip(),
                        user.as_deref(),
                        Rejection::Replay,
                        evidence,
                        wall,
                    );
                }
            }
        }
        self.store.set_offline(&aor, flow, false).await;
        tracing::debug!(%aor, %flow, known, "GB28181 keepalive");
        self.emit(RegistrarEvent::Alive { aor });
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
        if !self.serves_domain(ruri.host_str()) {
            return req.response(404).reason("Domain Not Served").build();
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
        // Step 5 (before auth so the AOR user can be checked against the authenticated one):
        // the To URI is an AOR of a domain this registrar serves.
        let to = req.to()?;
        let Some(aor) = aor_key(to.uri()) else {
            return req
                .response(404)
                .reason("Not Found (address-of-record)")
                .build();
        };
        if !self.serves_domain(to_host(&aor)) {
            return req
                .response(404)
                .reason("Not Found (domain of the address-of-record)")
                .build();
        }
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
                {
                    tracing::debug!(%aor, "retransmitted REGISTER answered again");
                    return self.ok_response(req, &bindings, now, wall);
                }
                let source = flow.remote.ip();
                // Not in the response cache: a true replay, unless the cache had to forget
                // answers that may still be retransmitted (then it proves nothing).
                let evidence = self.cache.as_ref().is_none_or(|c| c.vouches_new(now));
                return self.auth_failure(
                    req,
                    source,
                    user.as_deref(),
                    Rejection::Replay,
                    evidence,
                    wall,
                );
            }
        }
        // Step 6: the contacts.
        let header_expires = match req.expires() {
            Some(Ok(e)) => Some(e),
            Some(Err(_)) => return req.response(400).reason("Bad Expires").build(),
            None => None,
        };
        let mut change = RegisterChange {
            call_id: req.call_id().unwrap_or_default().into(),
            cseq: req.cseq()?.seq,
            remove_all: false,
            contacts: smallvec::SmallVec::new(),
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
                contact: addr.uri_str().into(),
                expires: requested.min(self.config.max_expires),
                q: addr.q().unwrap_or(1000),
                instance: addr.instance().map(|i| i.into_owned()),
                reg_id: addr.reg_id(),
            });
        }
        if let Err(e) = self.config.field_limits.check(&change) {
            return req.response(e.status).reason(e.reason).build();
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
            (
                self.store.lookup(&aor, now).await.into(),
                BindingChanges::new(),
            )
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
                Err(RegisterError::Unavailable(e)) => {
                    // A networked store is down (RFC 3261 §21.5.4): try again shortly.
                    tracing::warn!(%aor, error = %e, "REGISTER not applied: store unavailable");
                    return req
                        .response(503)
                        .reason("Location Store Unavailable")
                        .header("Retry-After", "5")
                        .build();
                }
            }
        };
        // Every change is logged; events are built only for someone listening (each carries
        // the AOR as a String).
        let listened = self.events.receiver_count() > 0;
        for ch in changes {
            let (b, kind): (&Binding, fn(String, Binding) -> RegistrarEvent) = match &ch {
                BindingChange::Added(b) => {
                    tracing::info!(%aor, contact = %b.contact, expires = b.remaining(now), %flow, "registered");
                    (b, |aor, binding| RegistrarEvent::Registered {
                        aor,
                        binding,
                    })
                }
                BindingChange::Refreshed(b) => {
                    tracing::debug!(%aor, contact = %b.contact, expires = b.remaining(now), "refreshed");
                    (b, |aor, binding| RegistrarEvent::Refreshed { aor, binding })
                }
                BindingChange::Removed(b) => {
                    tracing::info!(%aor, contact = %b.contact, "unregistered");
                    (b, |aor, binding| RegistrarEvent::Unregistered {
                        aor,
                        binding,
                    })
                }
            };
            if listened {
                self.emit(kind(aor.to_string(), b.clone()));
            }
        }
        inc(&self.stats.accepted);
        self.ok_response(req, &bindings, now, wall)
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
            outbound |= binding.instance().is_some() && binding.reg_id().is_some();
            // Written straight into the response (no String, no formatter per Contact).
            b = b.header_with("Contact", |out| write_contact(out, binding, now));
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
        if let Some(server) = &self.config.server {
            b = b.header("Server", server);
        }
        // GB28181 devices set their clock from the Date of the 200 (GB/T 28181 §9.1.2).
        let date = http_date_bytes(wall);
        b = b.header("Date", std::str::from_utf8(&date).unwrap_or_default());
        b.build()
    }
}

/// A binding as a Contact value of a 200: `<uri>;expires=N[;q=..][;+sip.instance="..";reg-id=N]`.
fn write_contact(out: &mut Vec<u8>, binding: &Binding, now: Instant) {
    out.push(b'<');
    out.extend_from_slice(binding.contact.as_bytes());
    out.extend_from_slice(b">;expires=");
    out.extend_from_slice(sip_core::builder::decimal_digits(
        binding.remaining(now),
        &mut [0; 20],
    ));
    if binding.q != 1000 {
        let mut q = String::new();
        push_q(&mut q, binding.q);
        out.extend_from_slice(b";q=");
        out.extend_from_slice(q.as_bytes());
    }
    if let (Some(i), Some(r)) = (binding.instance(), binding.reg_id()) {
        out.extend_from_slice(b";+sip.instance=\"");
        out.extend_from_slice(i.as_bytes());
        out.extend_from_slice(b"\";reg-id=");
        out.extend_from_slice(sip_core::builder::decimal_digits(
            u64::from(r),
            &mut [0; 20],
        ));
    }
}

/// The host of a canonical AOR (`sip:user@host`).
fn to_host(aor: &str) -> &str {
    aor.rsplit_once('@').map_or("", |(_, h)| h)
}

/// A q-value in thousandths as written in Contact (`1`, `0.5`, `0.125`).
fn push_q(out: &mut String, q: u16) {
    if q >= 1000 {
        out.push('1');
        return;
    }
    out.push_str("0.");
    let digits = [q / 100, q / 10 % 10, q % 10];
    let last = digits.iter().rposition(|&d| d != 0).unwrap_or(0);
    for d in &digits[..=last] {
        out.push(char::from(b'0' + *d as u8));
    }
}

/// RFC 1123 date (RFC 3261 §20.17: always GMT).
pub fn http_date(t: SystemTime) -> String {
    let mut s = String::with_capacity(29);
    write_http_date(&mut s, t);
    s
}

/// [`http_date`] appended to `out`.
///
/// The text changes once a second, so each thread keeps the last one it wrote: a registrar
/// answering thousands of REGISTERs a second formats the date once per second, not per answer.
pub fn write_http_date(out: &mut String, t: SystemTime) {
    // Only ASCII is ever written into the array.
    out.push_str(std::str::from_utf8(&http_date_bytes(t)).unwrap_or_default());
}

/// The RFC 1123 date of `t`, formatted once per second per thread.
fn http_date_bytes(t: SystemTime) -> [u8; 29] {
    use std::cell::Cell;
    thread_local! {
        static LAST: Cell<(u64, [u8; 29])> = const { Cell::new((u64::MAX, [0; 29])) };
    }
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    LAST.with(|last| {
        let (at, text) = last.get();
        if at == secs {
            return text;
        }
        let text = format_http_date(secs);
        last.set((secs, text));
        text
    })
}

/// `Www, DD Mon YYYY HH:MM:SS GMT` for `secs` after the epoch (years 1970..=9999).
fn format_http_date(secs: u64) -> [u8; 29] {
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
    let year = (yoe + era * 400 + i64::from(month <= 2)).clamp(0, 9999) as u64;
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    let mon = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(month - 1) as usize];
    let mut o = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    o[..3].copy_from_slice(weekday.as_bytes());
    let two = |o: &mut [u8; 29], at: usize, v: u64| {
        o[at] = b'0' + (v / 10 % 10) as u8;
        o[at + 1] = b'0' + (v % 10) as u8;
    };
    two(&mut o, 5, d as u64);
    o[8..11].copy_from_slice(mon.as_bytes());
    two(&mut o, 12, year / 100);
    two(&mut o, 14, year % 100);
    two(&mut o, 17, h);
    two(&mut o, 20, m);
    two(&mut o, 23, s);
    o
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
#[cfg(test)]
mod tests_field;
