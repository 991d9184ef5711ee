//! The UserAgent: calls, registrations and instant messages on an [`Endpoint`], with the
//! dialog layer ([`sip_dialog`]) keeping every dialog's state.
//!
//! - [`UserAgent::builder`]: the endpoint, an identity (AOR and display name), credentials per
//!   realm, an optional outbound proxy and the Contact to advertise.
//! - [`UserAgent::call`] places a call ([`Call`], with [`CallEvent`]s: trying, ringing with or
//!   without early media, answered with the remote SDP, failed, ended);
//!   [`UserAgent::incoming`] yields [`IncomingCall`]s to ring, accept or reject. On a call:
//!   [`Call::bye`], [`Call::reinvite`], [`Call::update`], [`Call::info`], [`Call::refer`] and
//!   [`Call::cancel`] while it rings. SDP is opaque bytes here.
//! - RFC 3262 PRACK both ways (reliable provisionals required with
//!   [`UserAgentBuilder::prack`], always acknowledged); RFC 4028 session timers
//!   ([`UserAgentBuilder::session_timer`]: 422/Min-SE, refresh by UPDATE or re-INVITE, BYE at
//!   expiry); UPDATE in early and confirmed dialogs (RFC 3311); offers answered by the
//!   application with [`UserAgentBuilder::manual_answers`] ([`CallEvent::OfferRequest`],
//!   [`Call::answer_offer`]); REFER received ([`CallEvent::Refer`], [`Call::accept_refer`] with
//!   sipfrag NOTIFYs through a [`ReferNotifier`], [`Call::reject_refer`]).
//! - [`UserAgent::register`] keeps a [`Registration`] fresh (RFC 3261 §10.2) until closed.
//! - [`UserAgent::message`] sends an RFC 3428 MESSAGE; [`UserAgent::messages`] yields the
//!   ones that arrive.
//! - RFC 6665 subscriptions, both roles, on this endpoint: [`UserAgent::subscribe`] gives a
//!   [`Subscription`] (refreshed, NOTIFYs as [`SubscriptionEvent`]s, unsubscribe);
//!   [`UserAgent::subscriptions`] yields [`IncomingSubscription`]s to accept (a [`Notifier`]
//!   to NOTIFY state on) or reject. The protocol is [`sip_dialog::subscription`]'s.
//!
//! Every request is retried once per digest challenge (401/407, CSeq + 1) with the realm's
//! credentials. The 2xx of an INVITE we answer is retransmitted until its ACK (T1, T2 from the
//! builder) and the call ended with BYE if none comes; the ACK of a 2xx we receive is built by
//! the dialog layer and sent again for every retransmission; extra 2xx from forks are ACKed and
//! ended with BYE. One tracing span per call carries its Call-ID and tags.
//!
//! The UserAgent takes over the endpoint's events ([`Endpoint::next_event`]): give it an
//! endpoint of its own.
//!
//! ```no_run
//! use sip_stack::endpoint::Endpoint;
//! use sip_stack::ua::{CallEvent, UserAgent};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let endpoint = Endpoint::builder().udp("127.0.0.1:5070".parse()?).build().await?;
//! let ua = UserAgent::builder(endpoint)
//!     .aor("sip:alice@example.com")
//!     .display_name("Alice")
//!     .credentials("example.com", "alice", "secret")
//!     .build()?;
//! let mut call = ua.call("sip:bob@127.0.0.1:5080", "v=0\r\n".into()).await?;
//! while let Some(event) = call.next_event().await {
//!     if let CallEvent::Answered { .. } = event {
//!         call.bye().await?;
//!     }
//! }
//! # Ok(())
//! # }
//! ```

mod call;
mod in_dialog;
mod incoming;
mod notifier;
mod offer;
mod outbound;
mod prack;
mod pump;
mod refer;
mod registration;
mod retransmit;
mod session_timer;
mod shared;
mod subscription;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sip_auth::{Account, DigestClient};
use sip_core::builder::RequestBuilder;
use sip_core::{Method, Target, Transport};
use sip_dialog::{DialogTable, Limits};
use tokio::sync::mpsc;

use crate::endpoint::Endpoint;
use shared::{Config, Shared, State};

pub use call::{Call, CallEnd, CallEvent};
pub use incoming::{IncomingCall, IncomingCalls, IncomingMessage, IncomingMessages};
pub use notifier::{
    IncomingSubscription, IncomingSubscriptions, Notifier, NotifierEnd, NotifierEvent,
};
pub use offer::OfferAnswer;
pub use refer::ReferNotifier;
pub use registration::{Registration, RegistrationState};
pub use retransmit::{AckOutcome, AckReport, Pending2xx, TwoXxRetransmitter};
pub use sip_dialog::subscription::{Content, EventKey, Notification, NotifierConfig, SubState};
pub use subscription::{Subscription, SubscriptionEvent};

/// Methods the UserAgent handles (the Allow header it sends).
pub(crate) const ALLOW: &str =
    "INVITE, ACK, CANCEL, BYE, OPTIONS, PRACK, UPDATE, INFO, MESSAGE, SUBSCRIBE, NOTIFY, REFER";

/// What went wrong in a UserAgent operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UaError {
    /// A URI could not be parsed or its host resolved.
    #[error("bad or unresolvable URI: {0}")]
    BadUri(String),
    /// The builder lacks something or holds something invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// The endpoint refused or is gone.
    #[error("endpoint: {0}")]
    Endpoint(String),
    /// No final response came (timeout or transport error).
    #[error("no final response: {0}")]
    NoResponse(String),
    /// Digest authentication failed (the challenge could not be answered, or again).
    #[error("authentication failed")]
    AuthFailed,
    /// The request was answered with this final status.
    #[error("rejected with {0}")]
    Rejected(u16),
    /// A subscription's NOTIFY queue is full and refuses more
    /// ([`sip_dialog::subscription::Overflow::Reject`]).
    #[error("NOTIFY queue full")]
    QueueFull,
    /// The call has no confirmed dialog (not answered yet, or ended).
    #[error("no dialog: the call is not established")]
    NoDialog,
    /// An INVITE is already pending in the dialog.
    #[error("an INVITE is pending in the dialog")]
    Pending,
    /// The incoming call was cancelled by the caller.
    #[error("cancelled by the caller")]
    Cancelled,
    /// The dialog layer refused (table full, dialog terminated, malformed message).
    #[error("dialog: {0}")]
    Dialog(String),
}

impl From<sip_dialog::Error> for UaError {
    fn from(e: sip_dialog::Error) -> Self {
        UaError::Dialog(e.to_string())
    }
}

impl From<sip_core::Error> for UaError {
    fn from(e: sip_core::Error) -> Self {
        UaError::Dialog(e.to_string())
    }
}

/// Configuration of a [`UserAgent`].
pub struct UserAgentBuilder {
    endpoint: Endpoint,
    aor: Option<String>,
    display_name: Option<String>,
    accounts: Vec<Account>,
    proxy: Option<Target>,
    contact: Option<String>,
    transport: Transport,
    t1: Duration,
    t2: Duration,
    limits: Limits,
    rfc3263: bool,
    prack: bool,
    session_timer: Option<sip_dialog::session_timer::Config>,
    manual_answers: bool,
    instance: Option<String>,
    notifier: NotifierConfig,
}

impl UserAgentBuilder {
    /// Our address of record (From of what we send), e.g. `sip:alice@example.com`.
    pub fn aor(mut self, aor: impl Into<String>) -> Self {
        self.aor = Some(aor.into());
        self
    }

    /// The display name in From.
    pub fn display_name(mut self, name: impl Into<String>) -> Self {
        self.display_name = Some(name.into());
        self
    }

    /// Credentials for `realm` (sip-auth answers only challenges for configured realms).
    pub fn credentials(
        mut self,
        realm: impl Into<String>,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.accounts.push(Account::new(realm, username, password));
        self
    }

    /// Sends every request to this outbound proxy (with a loose Route to it on requests
    /// outside dialogs).
    pub fn outbound_proxy(mut self, proxy: Target) -> Self {
        self.proxy = Some(proxy);
        self
    }

    /// The Contact URI to advertise (default: `sip:USER@HOST:PORT` from the endpoint's advertised
    /// address for the transport, with a `transport` parameter when not UDP).
    pub fn contact(mut self, contact: impl Into<String>) -> Self {
        self.contact = Some(contact.into());
        self
    }

    /// The transport for requests whose URI names none (default UDP).
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// T1 and T2 for the 2xx retransmissions (default 500 ms, 4 s: use the endpoint's).
    pub fn timers(mut self, t1: Duration, t2: Duration) -> Self {
        self.t1 = t1;
        self.t2 = t2;
        self
    }

    /// Finds the next hop of requests outside dialogs (and of in-dialog requests that do not
    /// reuse a connection) by RFC 3263 (NAPTR, SRV, then A/AAAA) with the endpoint's resolver
    /// ([`EndpointBuilder::dns`](crate::endpoint::EndpointBuilder::dns),
    /// [`resolver_config`](crate::endpoint::EndpointBuilder::resolver_config)), instead of
    /// an address lookup of the URI's host. The transport then comes from DNS when the URI
    /// names none. Needs the `dns` feature.
    #[cfg(feature = "dns")]
    pub fn rfc3263(mut self, on: bool) -> Self {
        self.rfc3263 = on;
        self
    }

    /// RFC 3262 (default off): our INVITEs carry `Require: 100rel`, and incoming calls whose
    /// INVITE supports `100rel` get reliable provisionals. Off, reliable provisionals are still
    /// acknowledged (`Supported: 100rel` is always sent) and sent when an INVITE requires them.
    pub fn prack(mut self, on: bool) -> Self {
        self.prack = on;
        self
    }

    /// RFC 4028 session timers (default off): our INVITEs ask for `secs` seconds (raised to
    /// the Min-SE of a 422 and retried), incoming sessions are granted at most `secs`, and
    /// INVITEs from UACs without the extension are timed with us as refresher. Off, a
    /// session the peer asks to time is still timed. `secs` is raised to 90 (§4).
    pub fn session_timer(mut self, secs: u32) -> Self {
        self.session_timer = Some(sip_dialog::session_timer::Config::new(
            secs,
            sip_dialog::session_timer::MIN_SE,
        ));
        self
    }

    /// Offers the peer makes in a dialog (re-INVITE, UPDATE with SDP) are held for the
    /// application: [`CallEvent::OfferRequest`], answered with [`Call::answer_offer`]
    /// (200 with its SDP, or a rejection such as 488 or 491). Default off: they are answered
    /// at once with our current SDP and reported as [`CallEvent::Offer`].
    pub fn manual_answers(mut self, on: bool) -> Self {
        self.manual_answers = on;
        self
    }

    /// RFC 5626 outbound for every [`UserAgent::register`]: REGISTER carries `Supported:
    /// outbound, path` and a Contact with `+sip.instance="<instance>"` (a `urn:uuid:`… that
    /// stays the same across restarts) and a `reg-id` per registration; after a flow fails the
    /// registration is made again at once, then with the §4.5 back-off (30 s doubling to
    /// 1800 s, 50–100 % jitter) while attempts fail. The CRLF keep-alive on the flow is the
    /// transport's: set `TransportConfig::keepalive_interval` on the endpoint.
    pub fn outbound(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into());
        self
    }

    /// The settings of the subscriptions we accept as notifier (RFC 6665 §4.2: Expires
    /// bounds, NOTIFY queue and its overflow, the least interval between NOTIFYs). Default:
    /// [`NotifierConfig::default`].
    pub fn notifier(mut self, config: NotifierConfig) -> Self {
        self.notifier = config;
        self
    }

    /// Caps of the dialog table.
    pub fn dialog_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Starts the UserAgent: it takes over the endpoint's events. Needs a tokio runtime.
    pub fn build(self) -> Result<UserAgent, UaError> {
        let aor = self
            .aor
            .ok_or_else(|| UaError::Config("an AOR is required".into()))?;
        let parsed = sip_core::uri::Uri::parse(&aor).map_err(|_| UaError::BadUri(aor.clone()))?;
        let user = parsed.user().unwrap_or("ua").to_owned();
        let contact = match self.contact {
            Some(c) => c,
            None => {
                let addr = self
                    .endpoint
                    .advertised(self.transport)
                    .or_else(|| self.endpoint.advertised(Transport::Udp))
                    .ok_or_else(|| UaError::Config("the endpoint has no listener".into()))?;
                match self.transport {
                    Transport::Udp => format!("sip:{user}@{addr}"),
                    t => format!("sip:{user}@{addr};transport={}", t.as_str().to_lowercase()),
                }
            }
        };
        let mut digest = DigestClient::new().map_err(|e| UaError::Config(e.to_string()))?;
        for a in self.accounts {
            digest.add_account(a);
        }
        let (flow_closed, _) = tokio::sync::broadcast::channel(64);
        let shared = Arc::new(Shared {
            endpoint: self.endpoint,
            config: Config {
                aor,
                display_name: self.display_name,
                contact,
                transport: self.transport,
                proxy: self.proxy,
                rfc3263: self.rfc3263,
                t1: self.t1,
                t2: self.t2,
                prack: self.prack,
                session_timer: self.session_timer,
                manual_answers: self.manual_answers,
                instance: self.instance,
                notifier: self.notifier,
            },
            state: Mutex::new(State {
                dialogs: DialogTable::new(self.limits),
                calls: HashMap::new(),
                next_call: 0,
                next_reg_id: 1,
                incoming: None,
                messages: None,
                subscribers: HashMap::new(),
                notifiers: HashMap::new(),
                subscriptions: None,
            }),
            digest: Mutex::new(digest),
            flow_closed,
        });
        let pump = tokio::spawn(pump::pump(shared.clone()));
        Ok(UserAgent {
            shared,
            pump: Arc::new(pump),
        })
    }
}

/// A SIP user agent on an [`Endpoint`]. Cheap to clone.
#[derive(Clone)]
pub struct UserAgent {
    shared: Arc<Shared>,
    pump: Arc<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for UserAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserAgent")
            .field("aor", &self.shared.config.aor)
            .field("contact", &self.shared.config.contact)
            .finish_non_exhaustive()
    }
}

impl UserAgent {
    /// Starts configuring a UserAgent on `endpoint`.
    pub fn builder(endpoint: Endpoint) -> UserAgentBuilder {
        UserAgentBuilder {
            endpoint,
            aor: None,
            display_name: None,
            accounts: Vec::new(),
            proxy: None,
            contact: None,
            transport: Transport::Udp,
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            limits: Limits::default(),
            rfc3263: false,
            prack: false,
            session_timer: None,
            manual_answers: false,
            instance: None,
            notifier: NotifierConfig::default(),
        }
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.shared.endpoint
    }

    /// The Contact URI advertised.
    pub fn contact(&self) -> &str {
        &self.shared.config.contact
    }

    /// Places a call to `target` with the SDP `offer` (RFC 3261 §13.2). The returned
    /// [`Call`] yields its events.
    pub async fn call(&self, target: &str, offer: Bytes) -> Result<Call, UaError> {
        call::place(self.shared.clone(), target, offer).await
    }

    /// The stream of incoming calls. Until it is first asked for, INVITEs are answered 480;
    /// asking again replaces the previous stream.
    pub fn incoming(&self) -> IncomingCalls {
        let (tx, rx) = mpsc::unbounded_channel();
        self.shared.state().incoming = Some(tx);
        IncomingCalls { rx }
    }

    /// The stream of MESSAGE requests received (answered 200). Until asked for, MESSAGEs are
    /// answered 480.
    pub fn messages(&self) -> IncomingMessages {
        let (tx, rx) = mpsc::unbounded_channel();
        self.shared.state().messages = Some(tx);
        IncomingMessages { rx }
    }

    /// Sends a MESSAGE (RFC 3428) and returns the final status (digest retried).
    pub async fn message(
        &self,
        target: &str,
        content_type: &str,
        body: Bytes,
    ) -> Result<u16, UaError> {
        let shared = &self.shared;
        let dest = shared.destination(target).await?;
        let call_id = shared.endpoint.new_call_id();
        let tag = shared.endpoint.new_tag();
        let mut cseq = 0u32;
        let response = shared
            .send_with_auth(&dest, |auth| {
                cseq += 1;
                let mut b = self
                    .out_of_dialog(Method::Message, target, &call_id, &tag, cseq)
                    .body(content_type, body.clone());
                if let Some((name, value)) = auth {
                    b = b.header(name.canonical().unwrap_or("Authorization"), value);
                }
                std::future::ready(b.build().map_err(UaError::from))
            })
            .await?;
        Ok(response.status().unwrap_or(0))
    }

    /// Registers our Contact with `registrar` (a SIP URI, e.g. `sip:example.com` or
    /// `sip:127.0.0.1:5060`) for `expires` seconds and keeps it fresh (RFC 3261 §10.2) until
    /// [`Registration::close`].
    pub async fn register(&self, registrar: &str, expires: u32) -> Result<Registration, UaError> {
        registration::start(self.shared.clone(), registrar, expires).await
    }

    /// Subscribes to `event` (e.g. `presence`) of `target` (RFC 6665 §4.1) for `expires`
    /// seconds, with `accept` as the Accept header (empty: none, the package's default). It
    /// returns once the subscription is accepted (a 2xx, or a NOTIFY that came first) and is
    /// refreshed before it expires until [`Subscription::unsubscribe`]; NOTIFYs arrive as
    /// [`SubscriptionEvent`]s. Digest challenges are answered (CSeq + 1); a refusal is
    /// `Err(Rejected(status))`.
    pub async fn subscribe(
        &self,
        target: &str,
        event: &str,
        expires: u32,
        accept: &[&str],
    ) -> Result<Subscription, UaError> {
        subscription::start(self.shared.clone(), target, event, expires, accept).await
    }

    /// The stream of SUBSCRIBEs that arrive (RFC 6665 §4.2): accept one to NOTIFY its
    /// subscriber ([`IncomingSubscription::accept`] gives a [`Notifier`]), or reject it. Until
    /// it is first asked for, SUBSCRIBEs are answered 489 (Bad Event); asking again replaces
    /// the previous stream.
    pub fn subscriptions(&self) -> IncomingSubscriptions {
        let (tx, rx) = mpsc::unbounded_channel();
        self.shared.state().subscriptions = Some(tx);
        IncomingSubscriptions { rx }
    }

    /// Counters of the dialog table.
    pub fn dialog_stats(&self) -> sip_dialog::Stats {
        self.shared.state().dialogs.stats()
    }

    /// Stops handling the endpoint's events.
    pub fn close(&self) {
        self.pump.abort();
    }

    /// A request outside any dialog: From our AOR with `tag`, To `target`, Call-ID, CSeq,
    /// Contact, a Route to the outbound proxy when there is one.
    fn out_of_dialog(
        &self,
        method: Method<'_>,
        target: &str,
        call_id: &str,
        tag: &str,
        cseq: u32,
    ) -> RequestBuilder {
        shared::out_of_dialog(&self.shared, method, target, target, call_id, tag, cseq)
    }
}
