//! A stateless dispatcher (RFC 3261 §16.11): the front-end of a cluster, spreading requests
//! over registrar and proxy nodes without creating transactions.
//!
//! - REGISTER goes to the registrar nodes, every other method to the proxy nodes; the node is
//!   chosen by a weighted hash of the Call-ID ([`NodeSet::pick`]), so all requests of a
//!   dialog that pass here (the INVITE, its CANCEL and ACK, retransmissions) reach one node.
//! - Each node is probed with OPTIONS every [`DispatcherConfig::probe_interval`]; it is taken
//!   out after [`HealthPolicy::down_after`] misses and put back after
//!   [`HealthPolicy::up_after`] answers. Its answers report its load in the [`LOAD_HEADER`]
//!   header ([`LoadReporter`] adds it on a node), which weights the choice; a node at its
//!   maximum load gets nothing new. Nodes can be added while running ([`Dispatcher::add_node`]).
//! - Requests are forwarded statelessly (`forward.rs`, written by `relay.rs` straight from the
//!   received bytes into one reused buffer): Max-Forwards, our Via with a branch stable across
//!   retransmissions, CANCEL and the ACK of an error, loop detection by that branch (482), no
//!   Record-Route (later in-dialog requests go to the node that record-routed); responses go
//!   back by their Via. Requests that carry a Route (in-dialog requests naming their node) or
//!   come from a node are forwarded by their Route or Request-URI, not dispatched. What the
//!   fast path leaves (a strict router before us, several of our Routes on top, a hop by name)
//!   goes through the proxy core's stateless path
//!   ([`crate::proxy::stateless::forward_request`], [`crate::proxy::stateless::forward_response`]).
//!   Only what forwarding uses is checked (§16.3): the transport's full validation is off by
//!   default ([`DispatcherConfig::transport`]).
//! - Devices behind NAT (RFC 3327 Path with RFC 5626 §5.2 flow tokens, [`FlowTokens`]): a
//!   REGISTER from a device leaves with `Path: <sip:TOKEN@dispatcher;lr;ob>` on top (and
//!   `Require: path`), TOKEN naming the flow it came in on (transport, our address, its source
//!   address: for TCP its connection) under an HMAC. The registrar node keeps the Path with
//!   the binding, so any proxy node reaches the device with that Path as a preloaded Route:
//!   the request comes back here, and a top Route with a token of ours sends it out on that
//!   flow (403 for a token that is not ours, 430 Flow Failed when the connection is gone),
//!   with a Record-Route carrying the same token on dialog-forming requests, so the dialog's
//!   later requests pass here too. A request that arrives on the very flow its token names is
//!   the device's own (its route set starts with our Record-Route): the token is popped and
//!   the request goes on by its next Route.
//! - Nothing is kept per request except the bounded Call-ID pin table; the dispatcher runs on
//!   sip-transport's [`TransportHandle`] directly, sending with `enqueue` (it never waits for a
//!   peer).

mod flow_token;
mod forward;
mod load;
mod nodes;
mod relay;

pub use flow_token::{FlowTokens, TokenError};
pub use load::{LoadReporter, LOAD_HEADER};
pub use nodes::{HealthPolicy, NodeConfig, NodeId, NodeSet, NodeStats, Role, AFFINITY_TTL};

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use sip_core::addr::NameAddr;
use sip_core::{Flow, HeaderName, Message, Method, Target, Transport};
use sip_transport::{
    InlineHandler, TransportConfig, TransportEvent, TransportHandle, TransportLayer,
};
use tokio::sync::mpsc;

use crate::proxy::stateless::{forward_request, forward_response, ResponseHop};
use crate::proxy::{ForwardOptions, Identity, Interface, NextHop, ProxyTarget};

/// The branch prefix of our OPTIONS probes: `z9hG4bKdsp.<node>.<seq>`.
const PROBE_PREFIX: &str = "z9hG4bKdsp.";

/// Configuration of a [`Dispatcher`].
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// UDP listeners.
    pub udp: Vec<SocketAddr>,
    /// TCP listeners.
    pub tcp: Vec<SocketAddr>,
    /// How often each node is probed (default 2 s).
    pub probe_interval: Duration,
    /// When nodes go out and come back.
    pub health: HealthPolicy,
    /// Transport limits. By default the transport does not run the full
    /// [`Message::validate`] on what it receives: a stateless forwarder checks what it uses
    /// (top Via, Max-Forwards, Call-ID, From, To, CSeq present, the top Route), and the nodes
    /// behind it validate the rest (RFC 3261 §16.3 step 1 asks no more of a proxy).
    pub transport: TransportConfig,
    /// Add a Path with a flow token to the REGISTERs of devices (default true), so that nodes
    /// reach devices behind NAT through the dispatcher.
    pub path: bool,
    /// The key of the flow tokens (`None`: a random one per process). Dispatchers that share
    /// one key, or one restarted with the same key, recognise each other's tokens.
    pub flow_key: Option<Vec<u8>>,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig {
            udp: Vec::new(),
            tcp: Vec::new(),
            probe_interval: Duration::from_secs(2),
            health: HealthPolicy::default(),
            transport: TransportConfig {
                validate: false,
                ..TransportConfig::default()
            },
            path: true,
            flow_key: None,
        }
    }
}

/// The dispatcher's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DispatcherCounters {
    /// Requests forwarded to a node.
    pub dispatched: u64,
    /// Requests forwarded on by their Route or Request-URI (in-dialog, or from a node).
    pub relayed: u64,
    /// Responses forwarded upstream.
    pub responses: u64,
    /// Requests answered 503 (no node) or 483 (Max-Forwards), or dropped.
    pub refused: u64,
    /// Messages that could not be sent or routed.
    pub dropped: u64,
    /// Requests sent to a device on the flow its token names (RFC 5626 §5.3).
    pub to_flows: u64,
}

#[derive(Debug, Default)]
struct Counters {
    dispatched: AtomicU64,
    relayed: AtomicU64,
    responses: AtomicU64,
    refused: AtomicU64,
    dropped: AtomicU64,
    to_flows: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A running dispatcher: its transport, its nodes and its counters.
#[derive(Debug)]
pub struct Dispatcher {
    transport: TransportHandle,
    identity: Identity,
    nodes: Mutex<NodeSet>,
    counters: Counters,
    opts: ForwardOptions,
    tokens: FlowTokens,
    path: bool,
    /// Our interfaces' sent-by values (the responses whose top Via is ours).
    sent_bys: Vec<String>,
}

/// The dispatcher as the transport's [`InlineHandler`]: relays on the receive task.
struct InlineRelay(Arc<OnceLock<Weak<Dispatcher>>>);

thread_local! {
    /// Where the receive tasks of this thread write what they forward (the allocation is
    /// reused once the transport has sent the previous message).
    static RELAY_BUF: std::cell::RefCell<BytesMut> =
        std::cell::RefCell::new(BytesMut::with_capacity(8192));
}

impl InlineRelay {
    fn with(
        &self,
        msg: Message,
        f: impl FnOnce(&Dispatcher, Message, &mut BytesMut),
    ) -> Option<Message> {
        let Some(d) = self.0.get().and_then(Weak::upgrade) else {
            // Not started yet, or stopping: the event loop decides.
            return Some(msg);
        };
        RELAY_BUF.with(|b| match b.try_borrow_mut() {
            Ok(mut buf) => {
                f(&d, msg, &mut buf);
                None
            }
            Err(_) => Some(msg),
        })
    }
}

impl InlineHandler for InlineRelay {
    fn request(&self, request: Message, flow: Flow, _: &TransportHandle) -> Option<Message> {
        self.with(request, |d, m, buf| d.on_request(m, flow, buf))
    }

    fn response(&self, response: Message, _: Flow, _: &TransportHandle) -> Option<Message> {
        self.with(response, |d, m, buf| d.on_response(m, buf))
    }
}

impl Dispatcher {
    /// Binds the listeners, adds `nodes` and starts dispatching and probing. Stops when the
    /// last handle is dropped or [`Dispatcher::shutdown`] is called.
    pub async fn start(
        config: DispatcherConfig,
        nodes: Vec<NodeConfig>,
    ) -> std::io::Result<Arc<Dispatcher>> {
        let mut b = TransportLayer::builder().config(config.transport.clone());
        for a in &config.udp {
            b = b.udp(*a);
        }
        for a in &config.tcp {
            b = b.tcp(*a);
        }
        let tokens = match &config.flow_key {
            Some(k) => FlowTokens::with_key(k),
            None => FlowTokens::random()?,
        };
        // Run to completion: UDP requests and responses are relayed on the receive task that
        // read them (no queue, no hand-off); TCP goes through the event loop below.
        let slot: Arc<OnceLock<Weak<Dispatcher>>> = Arc::default();
        b = b.inline(Arc::new(InlineRelay(slot.clone())));
        let (transport, events) = b.build().await?;
        let interfaces: Vec<Interface> = transport
            .local_addrs()
            .into_iter()
            .map(|(t, a)| Interface::new(t, a))
            .collect();
        let sent_bys = interfaces.iter().map(|i| i.advertised.clone()).collect();
        let mut set = NodeSet::new(config.health);
        for n in nodes {
            set.add(n);
        }
        let d = Arc::new(Dispatcher {
            transport,
            identity: Identity::new(interfaces, Vec::new()),
            nodes: Mutex::new(set),
            counters: Counters::default(),
            opts: ForwardOptions {
                record_route: false,
                ..ForwardOptions::default()
            },
            tokens,
            path: config.path,
            sent_bys,
        });
        let _ = slot.set(Arc::downgrade(&d));
        tokio::spawn(Self::receive(Arc::downgrade(&d), events));
        tokio::spawn(Self::probe(Arc::downgrade(&d), config.probe_interval));
        Ok(d)
    }

    fn nodes(&self) -> std::sync::MutexGuard<'_, NodeSet> {
        // Every update leaves the set consistent; a panic elsewhere does not poison it.
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a node while running (see [`NodeSet::add`]).
    pub fn add_node(&self, node: NodeConfig) -> NodeId {
        let target = node.target.clone();
        let (id, added) = {
            let mut nodes = self.nodes();
            let before = nodes.len();
            let id = nodes.add(node);
            (id, nodes.len() > before)
        };
        if added {
            tracing::info!(node = %target.addr, transport = %target.transport, "node added");
        }
        id
    }

    /// Every node's state: up or down, load, requests forwarded.
    pub fn stats(&self) -> Vec<NodeStats> {
        self.nodes().stats()
    }

    /// The counters.
    pub fn counters(&self) -> DispatcherCounters {
        let c = &self.counters;
        DispatcherCounters {
            dispatched: c.dispatched.load(Ordering::Relaxed),
            relayed: c.relayed.load(Ordering::Relaxed),
            responses: c.responses.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            to_flows: c.to_flows.load(Ordering::Relaxed),
        }
    }

    /// The transport (bound addresses, statistics).
    pub fn transport(&self) -> &TransportHandle {
        &self.transport
    }

    /// Stops the transport (and with it the dispatcher's tasks).
    pub fn shutdown(&self) {
        self.transport.shutdown();
    }

    async fn receive(
        this: std::sync::Weak<Dispatcher>,
        mut events: mpsc::Receiver<TransportEvent>,
    ) {
        // Every forwarded message is written here; its allocation is reused once the
        // transport has sent the previous one.
        let mut buf = BytesMut::with_capacity(8192);
        while let Some(ev) = events.recv().await {
            let Some(d) = this.upgrade() else { return };
            if let TransportEvent::Message { msg, flow, .. } = ev {
                if msg.is_request() {
                    d.on_request(msg, flow, &mut buf);
                } else {
                    d.on_response(msg, &mut buf);
                }
            }
        }
    }

    async fn probe(this: std::sync::Weak<Dispatcher>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(d) = this.upgrade() else { return };
            let round = d.nodes().probe_round();
            for (id, seq) in round {
                let Some(target) = d.nodes().target(id).cloned() else {
                    continue;
                };
                let Some(options) = d.probe_request(&target, id, seq) else {
                    continue;
                };
                if let Err(e) = d.transport.enqueue(target.clone(), options, None) {
                    tracing::debug!(node = %target.addr, error = %e, "probe not sent");
                }
            }
        }
    }

    fn probe_request(&self, target: &Target, id: NodeId, seq: u64) -> Option<Bytes> {
        let me = self
            .identity
            .interface_for(target.transport)
            .or_else(|| self.identity.interfaces().first())?;
        let uri = match target.transport {
            Transport::Udp => format!("sip:{}", target.addr),
            t => format!(
                "sip:{};transport={}",
                target.addr,
                t.as_str().to_ascii_lowercase()
            ),
        };
        Some(Bytes::from(format!(
            "OPTIONS {uri} SIP/2.0\r\nVia: SIP/2.0/{} {};rport;branch={PROBE_PREFIX}{id}.{seq}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:dispatcher@{}>;tag=dsp{id}\r\nTo: <{uri}>\r\n\
             Call-ID: dsp.{id}.{seq}@{}\r\nCSeq: {} OPTIONS\r\nContent-Length: 0\r\n\r\n",
            target.transport,
            me.advertised,
            me.advertised,
            me.advertised,
            (seq % (1 << 31)).max(1),
        )))
    }

    fn respond(&self, req: &Message, flow: Flow, status: u16) {
        bump(&self.counters.refused);
        if req.method() == Some(Method::Ack) {
            return;
        }
        let mut b = req.response(status);
        if status == 503 {
            b = b.header("Retry-After", "5");
        }
        if let Ok(resp) = b.build() {
            let _ = self
                .transport
                .enqueue_response(resp.to_bytes(), Some(flow), None);
        }
    }

    /// The general path (through the proxy core), for what the fast path leaves: a strict
    /// router before us, several of our Routes on top, Route values sharing a line, a
    /// request from a node routed by its Request-URI, a next hop that is not an address.
    fn on_request_general(&self, mut req: Message, flow: Flow) {
        if let Some(Ok(0)) = req.max_forwards() {
            return self.respond(&req, flow, 483);
        }
        // Read before §16.4 pops it: a top Route of ours may carry a flow token.
        let token = match self.own_token(&req) {
            Some(Ok(f)) => Some(f),
            Some(Err(e)) => {
                tracing::debug!(error = %e, peer = %flow.remote, "flow token refused");
                return self.respond(&req, flow, 403);
            }
            None => None,
        };
        if crate::proxy::route::preprocess(&mut req, &self.identity).is_err() {
            return self.respond(&req, flow, 400);
        }
        match token {
            // Toward the device, on its flow. A request that came in on that flow is the
            // device's own: it goes on by its next Route, as any other.
            Some(device) if !same_flow(&device, &flow) => self.to_device(req, flow, device),
            _ => self.on_routed_request(req, flow),
        }
    }

    /// The flow named by the token in the top Route, when that Route is ours and has a user
    /// part (`None` otherwise).
    fn own_token(&self, req: &Message) -> Option<Result<Flow, TokenError>> {
        let top = req.values(HeaderName::Route).next()?;
        let addr = NameAddr::parse(top).ok()?;
        let uri = addr.sip_uri()?;
        if !self.identity.is_us(uri) {
            return None;
        }
        let user = uri.user()?;
        Some(self.tokens.decode(user))
    }

    /// RFC 5626 §5.3: a request for a device, sent out on the flow its token names.
    fn to_device(&self, req: Message, incoming: Flow, device: Flow) {
        let target = ProxyTarget {
            flow: Some(device),
            outbound: true,
            ..ProxyTarget::uri(req.uri_str().unwrap_or_default())
        };
        let mut out =
            match forward_request(&req, Some(&incoming), &target, &self.identity, &self.opts) {
                Ok(f) => f.request,
                Err(e) => {
                    tracing::debug!(error = %e, "request not forwarded");
                    return self.respond(&req, incoming, 502);
                }
            };
        // The dialog's later requests must pass here too, both ways: from the node toward the
        // device (the token sends them to its flow) and from the device (popped, on by the
        // node's Record-Route).
        if creates_dialog(&req) {
            let rr = self.token_uri(&device, device.transport, device.local);
            if out.push_record_route(&format!("<{rr}>")).is_err() {
                return self.respond(&req, incoming, 500);
            }
        }
        match self.transport.enqueue(device, out.to_bytes(), None) {
            Ok(_) => bump(&self.counters.to_flows),
            Err(e) => {
                // The connection is gone (or the socket refused): 430 Flow Failed tells the
                // node to try another binding.
                tracing::debug!(flow = %device, error = %e, "flow failed");
                self.respond(&req, incoming, 430);
            }
        }
    }

    /// `sip:TOKEN@ADDR;lr;ob` (and `;transport=` other than UDP): a URI that leads back to us
    /// over `transport`, naming `flow`.
    fn token_uri(&self, flow: &Flow, transport: Transport, local: SocketAddr) -> String {
        let token = self.tokens.encode(flow);
        let advertised = self
            .identity
            .interface_at(transport, local)
            .map_or_else(|| local.to_string(), |i| i.advertised.clone());
        match transport {
            Transport::Udp => format!("sip:{token}@{advertised};lr;ob"),
            t => format!(
                "sip:{token}@{advertised};transport={};lr;ob",
                t.as_str().to_ascii_lowercase()
            ),
        }
    }

    /// RFC 3327 §5.2: our Path on top of the REGISTER, naming the flow it came in on, and
    /// `Require: path` (the registrar must keep it, or refuse with 420).
    fn add_path(&self, reg: &mut Message, incoming: &Flow, toward: &Flow) -> sip_core::Result<()> {
        let path = format!(
            "<{}>",
            self.token_uri(incoming, toward.transport, toward.local)
        );
        let below: Vec<String> = reg.values(HeaderName::Path).map(str::to_owned).collect();
        reg.remove_header(HeaderName::Path);
        reg.append_header("Path", &path)?;
        for p in &below {
            reg.append_header("Path", p)?;
        }
        if !reg.has_token(HeaderName::Require, "path") {
            reg.append_header("Require", "path")?;
        }
        Ok(())
    }

    fn on_routed_request(&self, req: Message, flow: Flow) {
        // Loose-routed (a Route left after ours: an in-dialog request that names its node),
        // or from a node toward a device: on by Route or Request-URI, not dispatched.
        let relay = req.has(HeaderName::Route) || self.nodes().is_node(flow.remote);
        let Some(uri) = req.uri_str().map(str::to_owned) else {
            return;
        };
        let mut target = ProxyTarget::uri(uri);
        let is_register = req.method() == Some(Method::Register);
        let mut node_flow = None;
        if !relay {
            let role = if is_register {
                Role::Registrar
            } else {
                Role::Proxy
            };
            let call_id = req.call_id().unwrap_or("");
            let node = {
                let mut nodes = self.nodes();
                nodes
                    .pick(role, call_id, Instant::now())
                    .and_then(|id| nodes.target(id).cloned())
            };
            let Some(node) = node else {
                return self.respond(&req, flow, 503);
            };
            let Some(local) = self.identity.interface_for(node.transport).map(|i| i.local) else {
                return self.respond(&req, flow, 503);
            };
            // The node is the next hop whatever the Request-URI says: the proxy core sends
            // over a given flow when the target is marked so (as for an outbound binding).
            let f = Flow {
                transport: node.transport,
                local,
                remote: node.addr,
            };
            target.flow = Some(f);
            target.outbound = true;
            node_flow = Some(f);
        }
        let fwd = match forward_request(&req, Some(&flow), &target, &self.identity, &self.opts) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(error = %e, "request not forwarded");
                return self.respond(&req, flow, 502);
            }
        };
        let dest = match fwd.hop {
            NextHop::Address {
                transport,
                host,
                port,
            } => match host.parse::<IpAddr>() {
                Ok(ip) => Target::new(transport, SocketAddr::new(ip, port)),
                // No DNS here: a dispatcher relays to addresses.
                Err(_) => return self.respond(&req, flow, 502),
            },
            NextHop::Flow(f) => Target::new(f.transport, f.remote),
        };
        let mut out = fwd.request;
        if let (true, true, Some(toward)) = (self.path, is_register, node_flow) {
            if self.add_path(&mut out, &flow, &toward).is_err() {
                return self.respond(&req, flow, 500);
            }
        }
        match self.transport.enqueue(dest.clone(), out.to_bytes(), None) {
            Ok(_) => bump(if relay {
                &self.counters.relayed
            } else {
                &self.counters.dispatched
            }),
            Err(e) => {
                tracing::debug!(to = %dest.addr, error = %e, "request not sent");
                bump(&self.counters.dropped);
            }
        }
    }

    fn on_response(&self, resp: Message, buf: &mut BytesMut) {
        if let Some(probe) = probe_of(&resp) {
            return self.on_probe_answer(&resp, probe);
        }
        match relay::response_is_ours(&resp, &self.sent_bys) {
            Some(true) => {}
            Some(false) => return bump(&self.counters.dropped),
            None => return self.on_response_general(resp),
        }
        let Some((t, addr)) = relay::upstream(&resp) else {
            return bump(&self.counters.dropped);
        };
        let out = relay::write_response(buf, &resp);
        match self.transport.enqueue(Target::new(t, addr), out, None) {
            Ok(_) => bump(&self.counters.responses),
            Err(_) => bump(&self.counters.dropped),
        }
    }

    fn on_probe_answer(&self, resp: &Message, probe: (NodeId, u64)) {
        let (id, seq) = probe;
        let load = resp
            .headers_named(LOAD_HEADER)
            .next()
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.trim().parse().ok());
        let status = resp.status().unwrap_or(500);
        self.nodes().probe_answered(id, seq, status, load);
    }

    fn on_response_general(&self, resp: Message) {
        if let Some(probe) = probe_of(&resp) {
            let (id, seq) = probe;
            let load = resp
                .headers_named(LOAD_HEADER)
                .next()
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.trim().parse().ok());
            let status = resp.status().unwrap_or(500);
            self.nodes().probe_answered(id, seq, status, load);
            return;
        }
        match forward_response(resp, &self.identity) {
            Ok((m, ResponseHop::Address(t, addr))) => {
                match self
                    .transport
                    .enqueue(Target::new(t, addr), m.to_bytes(), None)
                {
                    Ok(_) => bump(&self.counters.responses),
                    Err(_) => bump(&self.counters.dropped),
                }
            }
            Ok((_, ResponseHop::Name(..))) | Err(_) => bump(&self.counters.dropped),
        }
    }
}

/// Whether a request came in on the flow a token names: the same connection, or for UDP the
/// same source address on the same socket.
fn same_flow(token: &Flow, incoming: &Flow) -> bool {
    token.transport == incoming.transport
        && token.remote == incoming.remote
        && token.local == incoming.local
}

/// A request that may create a dialog (out of any dialog: no To tag): our Record-Route keeps
/// the dialog's later requests on the device's flow.
fn creates_dialog(req: &Message) -> bool {
    matches!(
        req.method(),
        Some(Method::Invite | Method::Subscribe | Method::Refer | Method::Notify)
    ) && req.to().ok().is_none_or(|t| t.tag().is_none())
}

/// The node and sequence number of a response to one of our probes.
fn probe_of(resp: &Message) -> Option<(NodeId, u64)> {
    let branch = relay::top_branch(resp)?;
    let rest = branch.strip_prefix(PROBE_PREFIX.as_bytes())?;
    let rest = std::str::from_utf8(rest).ok()?;
    let (id, seq) = rest.split_once('.')?;
    Some((id.parse().ok()?, seq.parse().ok()?))
}

#[cfg(test)]
mod tests;
