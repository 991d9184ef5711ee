//! The state the UserAgent's handles and tasks share, and the plumbing they all use: where a
//! URI goes (resolution), fresh Vias, and sending a request with one digest retry per
//! challenge (RFC 3261 §22.2: 401/407 answered with credentials for the realm, CSeq + 1).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use sip_auth::{DigestClient, DigestRequest};
use sip_core::uri::Uri;
use sip_core::{Flow, HeaderName, Message, Target, Transport};
use sip_dialog::invite::InviteUsage;
use sip_dialog::{DialogId, DialogTable};
use tokio::sync::{mpsc, Notify};

use super::call::CallEvent;
use super::{IncomingCall, IncomingMessage, UaError};
use crate::endpoint::{Endpoint, EndpointError, ServerTransaction};

/// Identity and routing of a UserAgent.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub aor: String,
    pub display_name: Option<String>,
    pub contact: String,
    pub transport: Transport,
    pub proxy: Option<Target>,
    /// Next hops by RFC 3263 with the endpoint's resolver.
    pub rfc3263: bool,
    pub t1: std::time::Duration,
    pub t2: std::time::Duration,
    /// RFC 3262: require reliable provisionals of callees, send ours reliably when supported.
    pub prack: bool,
    /// RFC 4028: the session interval we ask for and grant at most.
    pub session_timer: Option<sip_dialog::session_timer::Config>,
    /// Offers in dialogs are held for the application (CallEvent::OfferRequest).
    pub manual_answers: bool,
    /// RFC 5626: our instance ID (`urn:uuid:…`), when registrations use outbound.
    pub instance: Option<String>,
    /// RFC 6665: the settings of the subscriptions we accept (expires bounds, queue, rate).
    pub notifier: sip_dialog::subscription::NotifierConfig,
}

/// The usage state kept on each dialog in the table.
#[derive(Debug)]
pub(crate) struct Usage {
    pub invite: InviteUsage,
    pub call: u64,
    /// The flow the dialog's requests arrived on (reused for connection-oriented transports).
    pub flow: Option<Flow>,
}

/// One call as the UserAgent tracks it.
pub(crate) struct CallSlot {
    pub events: mpsc::UnboundedSender<CallEvent>,
    pub dialog: Option<DialogId>,
    pub span: tracing::Span,
    /// Our current session description (answers re-INVITEs and UPDATEs that offer).
    pub local_sdp: Bytes,
    /// UAS: the INVITE's server transaction (2xx retransmissions go on it).
    pub invite_txn: Option<Arc<ServerTransaction>>,
    /// Wakes the 2xx retransmission task when the ACK arrives or the call ends.
    pub wake: Arc<Notify>,
    /// UAS: the incoming call has not been answered yet.
    pub unanswered: bool,
    /// UAS: its reliable provisionals (RFC 3262), once one is sent.
    pub reliable: Option<super::prack::UasReliable>,
    /// Its session timer (RFC 4028), while the session is timed.
    pub session: Option<super::session_timer::SessionSlot>,
    /// An offer (re-INVITE or UPDATE) held for the application's answer.
    pub pending_offer: Option<super::offer::PendingOffer>,
    /// UAC: the INVITE task, for UPDATEs in the early dialog.
    pub early_updates: Option<super::offer::EarlyUpdates>,
    /// REFERs received (RFC 3515): the one held for the application.
    pub refer: super::refer::ReferSlot,
}

pub(crate) struct State {
    pub dialogs: DialogTable<Usage>,
    pub calls: HashMap<u64, CallSlot>,
    pub next_call: u64,
    /// RFC 5626: the reg-id of the next registration.
    pub next_reg_id: u32,
    pub incoming: Option<mpsc::UnboundedSender<IncomingCall>>,
    pub messages: Option<mpsc::UnboundedSender<IncomingMessage>>,
    /// RFC 6665 subscriber: our SUBSCRIBEs by Call-ID (their NOTIFYs go to their task).
    pub subscribers: HashMap<String, mpsc::Sender<ServerTransaction>>,
    /// RFC 6665 notifier: the subscriptions we accepted, by dialog.
    pub notifiers: HashMap<DialogId, super::notifier::NotifierSlot>,
    /// Where new SUBSCRIBEs go, once the application asked.
    pub subscriptions: Option<mpsc::UnboundedSender<super::IncomingSubscription>>,
}

pub(crate) struct Shared {
    pub endpoint: Endpoint,
    pub config: Config,
    pub state: Mutex<State>,
    pub digest: Mutex<DigestClient>,
    /// Flows that closed (registrations re-register when theirs goes).
    pub flow_closed: tokio::sync::broadcast::Sender<Flow>,
}

impl Shared {
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn via(&self) -> String {
        self.endpoint.via(self.config.transport)
    }

    pub fn now() -> std::time::Instant {
        tokio::time::Instant::now().into_std()
    }

    /// Where a request for `uri` goes: the outbound proxy when configured, else the URI's
    /// host and port (RFC 3263 reduced to A/AAAA lookups), transport from its `transport`
    /// parameter or the configured one.
    pub async fn destination(&self, uri: &str) -> Result<Target, UaError> {
        if let Some(p) = &self.config.proxy {
            return Ok(p.clone());
        }
        #[cfg(feature = "dns")]
        if self.config.rfc3263 {
            return self.resolve_rfc3263(uri).await;
        }
        resolve(uri, self.config.transport).await
    }

    /// The first target RFC 3263 §4 gives for `uri` (a target marked down after a failure
    /// comes last, as the resolver orders them).
    #[cfg(feature = "dns")]
    async fn resolve_rfc3263(&self, uri: &str) -> Result<Target, UaError> {
        let parsed = Uri::parse(uri).map_err(|_| UaError::BadUri(uri.to_owned()))?;
        let resolver = self.endpoint.resolver()?;
        let targets = resolver
            .resolve(&parsed)
            .await
            .map_err(|e| UaError::Endpoint(format!("{uri}: {e}")))?;
        targets
            .into_iter()
            .next()
            .ok_or_else(|| UaError::BadUri(uri.to_owned()))
    }

    /// In a dialog: connection-oriented flows are reused (the peer's connection), otherwise the
    /// next hop is resolved.
    pub async fn dialog_destination(
        &self,
        next_hop: &str,
        flow: Option<Flow>,
    ) -> Result<Target, UaError> {
        if let Some(f) = flow.filter(|f| f.transport.is_reliable() && self.config.proxy.is_none()) {
            return Ok(Target::new(f.transport, f.remote));
        }
        self.destination(next_hop).await
    }

    /// Sends `build(authorization)` and waits for its final response. A 401 or 407 is answered
    /// once per challenge with the realm's credentials (sip-auth refuses a realm without an
    /// account and a repeated nonce); `build` is called again and must use CSeq + 1.
    pub async fn send_with_auth<F, Fut>(
        &self,
        target: &Target,
        mut build: F,
    ) -> Result<Message, UaError>
    where
        F: FnMut(Option<(HeaderName, String)>) -> Fut,
        Fut: std::future::Future<Output = Result<Message, UaError>>,
    {
        let mut auth = None;
        for _ in 0..3 {
            let request = build(auth.take()).await?;
            let mut txn = self
                .endpoint
                .request(request.clone(), target.clone())
                .await?;
            let response = txn.final_response().await?;
            match self.answer_challenge(&request, &response, target) {
                Some(a) => auth = Some(a),
                None => return Ok(response),
            }
        }
        Err(UaError::AuthFailed)
    }

    /// The Authorization / Proxy-Authorization for a 401 / 407 to `request`, or `None` when
    /// the response is something else or the challenge cannot be answered.
    pub fn answer_challenge(
        &self,
        request: &Message,
        response: &Message,
        target: &Target,
    ) -> Option<(HeaderName, String)> {
        let (challenge, credentials) = match response.status() {
            Some(401) => (HeaderName::WwwAuthenticate, HeaderName::Authorization),
            Some(407) => (
                HeaderName::ProxyAuthenticate,
                HeaderName::ProxyAuthorization,
            ),
            _ => return None,
        };
        let challenges: Vec<_> = response
            .challenges(challenge)
            .filter_map(Result::ok)
            .collect();
        let method = request.method()?;
        let uri = request.uri_str()?;
        let host = target
            .server_name
            .clone()
            .unwrap_or_else(|| target.addr.ip().to_string());
        let req = DigestRequest::new(method.as_str(), uri, request.body());
        let mut digest = self.digest.lock().unwrap_or_else(|e| e.into_inner());
        match digest.respond(&challenges, &host, &req) {
            Ok(c) => Some((credentials, c.to_string())),
            Err(e) => {
                tracing::debug!(error = %e, "challenge not answered");
                None
            }
        }
    }
}

/// A SIP URI's host and port as a socket address.
pub(crate) async fn resolve(uri: &str, default_transport: Transport) -> Result<Target, UaError> {
    let bad = || UaError::BadUri(uri.to_owned());
    let parsed = Uri::parse(uri).map_err(|_| bad())?;
    let transport =
        parsed
            .transport()
            .and_then(Transport::from_name)
            .unwrap_or(if parsed.is_secure() {
                Transport::Tls
            } else {
                default_transport
            });
    let host = parsed
        .host_str()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = parsed.port().unwrap_or(transport.default_port());
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(Target::new(transport, SocketAddr::new(ip, port)));
    }
    let mut addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| bad())?;
    let addr = addrs.next().ok_or_else(bad)?;
    let mut t = Target::new(transport, addr);
    t.server_name = Some(host.to_owned());
    Ok(t)
}

impl From<EndpointError> for UaError {
    fn from(e: EndpointError) -> Self {
        match e {
            EndpointError::NoFinalResponse(r) => UaError::NoResponse(format!("{r:?}")),
            other => UaError::Endpoint(other.to_string()),
        }
    }
}

/// The UA-level defaults of a request outside any dialog (RFC 3261 §8.1.1): Via with a fresh
/// branch, From our AOR with `tag`, To `to`, Call-ID, CSeq, Max-Forwards (by the builder),
/// Contact, and a loose Route to the outbound proxy when there is one.
#[allow(clippy::too_many_arguments)]
pub(crate) fn out_of_dialog(
    shared: &Shared,
    method: sip_core::Method<'_>,
    request_uri: &str,
    to: &str,
    call_id: &str,
    tag: &str,
    cseq: u32,
) -> sip_core::builder::RequestBuilder {
    let c = &shared.config;
    let mut b = sip_core::builder::RequestBuilder::new(method, request_uri)
        .header("Via", shared.via())
        .from_addr(c.display_name.as_deref(), &c.aor, tag)
        .to_addr(None, to, None)
        .call_id(call_id)
        .cseq(cseq);
    if let Some(p) = &c.proxy {
        b = b.route(&format!("sip:{};lr", p.addr));
    }
    if method != sip_core::Method::Message {
        b = b.contact(&c.contact);
    }
    if let Some(ua) = shared.endpoint.user_agent() {
        b = b.header("User-Agent", ua);
    }
    b
}
