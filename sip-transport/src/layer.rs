//! The transport layer: its builder, and the handle the layers above send with.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use sip_core::{Flow, Message, Target, Transport};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, trace};

use crate::config::TransportConfig;
use crate::conn::Conn;
use crate::error::SendError;
use crate::event::{CloseReason, TransportEvent};
use crate::queue::{Item, Notice, Refused};
use crate::registry::{pending_key, Registry};
use crate::stats::{Counters, Stats};
use crate::tls::{TlsClientConfig, TlsServerConfig};
use crate::udp::UdpGroup;
use crate::{response, stream, udp};

/// The largest UDP payload (IPv4: 65 535 − 8 − 20).
const MAX_DATAGRAM: usize = 65_507;

/// State shared by the handle and every task.
pub(crate) struct Shared {
    pub(crate) cfg: TransportConfig,
    pub(crate) events: mpsc::Sender<TransportEvent>,
    pub(crate) stats: Counters,
    pub(crate) registry: Mutex<Registry>,
    pub(crate) udp: Vec<UdpGroup>,
    pub(crate) listeners: Vec<(Transport, SocketAddr)>,
    pub(crate) tls_client: Option<TlsClientConfig>,
    pub(crate) shutdown: watch::Sender<bool>,
    #[cfg(feature = "dns")]
    pub(crate) resolver: Option<crate::resolve::Resolver>,
    /// Sees UDP requests on their receive task first ([`TransportBuilder::inline`]).
    pub(crate) inline: Option<Arc<dyn crate::InlineHandler>>,
}

/// Entry point: `TransportLayer::builder()`.
#[derive(Debug)]
pub struct TransportLayer {
    _private: (),
}

impl TransportLayer {
    /// A builder with no listeners and the default [`TransportConfig`].
    pub fn builder() -> TransportBuilder {
        TransportBuilder::default()
    }
}

/// Configures listeners and limits, then starts the transport layer
/// ([`TransportBuilder::build`]).
#[derive(Debug, Default)]
pub struct TransportBuilder {
    udp: Vec<SocketAddr>,
    tcp: Vec<SocketAddr>,
    tls: Vec<(SocketAddr, TlsServerConfig)>,
    #[cfg(feature = "ws")]
    ws: Vec<(SocketAddr, Option<TlsServerConfig>)>,
    tls_client: Option<TlsClientConfig>,
    config: TransportConfig,
    #[cfg(feature = "dns")]
    resolver: Option<crate::resolve::Resolver>,
    inline: InlineSlot,
}

/// The optional inline handler (a trait object without `Debug`).
#[derive(Default, Clone)]
struct InlineSlot(Option<Arc<dyn crate::InlineHandler>>);

impl std::fmt::Debug for InlineSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Some(..)" } else { "None" })
    }
}

impl TransportBuilder {
    /// Lets `handler` see every UDP request on the task that received it, and answer it there
    /// (see [`InlineHandler`](crate::InlineHandler)).
    pub fn inline(mut self, handler: Arc<dyn crate::InlineHandler>) -> Self {
        self.inline = InlineSlot(Some(handler));
        self
    }

    /// Adds a UDP address (port 0: the system picks one; see [`TransportHandle::local_addrs`]).
    /// Requests to UDP targets are sent from the first UDP address of their address family.
    pub fn udp(mut self, addr: SocketAddr) -> Self {
        self.udp.push(addr);
        self
    }

    /// Adds a TCP listener.
    pub fn tcp(mut self, addr: SocketAddr) -> Self {
        self.tcp.push(addr);
        self
    }

    /// Adds a TLS listener with its server configuration.
    pub fn tls(mut self, addr: SocketAddr, config: TlsServerConfig) -> Self {
        self.tls.push((addr, config));
        self
    }

    /// Adds a WebSocket listener (RFC 7118: HTTP upgrade with `Sec-WebSocket-Protocol: sip`).
    #[cfg(feature = "ws")]
    pub fn ws(mut self, addr: SocketAddr) -> Self {
        self.ws.push((addr, None));
        self
    }

    /// Adds a secure WebSocket listener (TLS, then the RFC 7118 upgrade).
    #[cfg(feature = "ws")]
    pub fn wss(mut self, addr: SocketAddr, config: TlsServerConfig) -> Self {
        self.ws.push((addr, Some(config)));
        self
    }

    /// The configuration for connections we open to TLS targets (without it, sending to a
    /// TLS target fails with [`SendError::TlsNotConfigured`]).
    pub fn tls_client(mut self, config: TlsClientConfig) -> Self {
        self.tls_client = Some(config);
        self
    }

    /// The RFC 3263 resolver for responses whose top Via has a sent-by name and no `received`
    /// (§5, RFC 3261 §18.2.2); without it they fail with [`SendError::NoRoute`].
    #[cfg(feature = "dns")]
    pub fn resolver(mut self, resolver: crate::resolve::Resolver) -> Self {
        self.resolver = Some(resolver);
        self
    }

    /// Replaces the configuration and limits.
    pub fn config(mut self, config: TransportConfig) -> Self {
        self.config = config;
        self
    }

    /// Binds every listener and starts the receive tasks; must be called inside a tokio
    /// runtime. Returns the handle for sending and the receiver of [`TransportEvent`]s (bounded
    /// by [`TransportConfig::event_capacity`]: while it is full, reading stops).
    pub async fn build(self) -> io::Result<(TransportHandle, mpsc::Receiver<TransportEvent>)> {
        let cfg = self.config;
        let mut groups = Vec::new();
        let mut listeners = Vec::new();
        for addr in self.udp {
            let g = UdpGroup::bind(
                addr,
                cfg.udp_sockets_per_addr,
                cfg.udp_reuse_port,
                cfg.udp_recv_buffer,
            )?;
            listeners.push((Transport::Udp, g.local));
            groups.push(g);
        }
        let mut tcp = Vec::new();
        for addr in self.tcp {
            let l = stream::listen(addr)?;
            listeners.push((Transport::Tcp, l.local_addr()?));
            tcp.push((l, None));
        }
        for (addr, tls) in self.tls {
            let l = stream::listen(addr)?;
            listeners.push((Transport::Tls, l.local_addr()?));
            tcp.push((l, Some(tokio_rustls::TlsAcceptor::from(tls.inner))));
        }
        #[cfg(feature = "ws")]
        let mut ws = Vec::new();
        #[cfg(feature = "ws")]
        for (addr, tls) in self.ws {
            let l = stream::listen(addr)?;
            let t = if tls.is_some() {
                Transport::Wss
            } else {
                Transport::Ws
            };
            listeners.push((t, l.local_addr()?));
            ws.push((l, tls.map(|c| tokio_rustls::TlsAcceptor::from(c.inner))));
        }
        let (tx, rx) = mpsc::channel(cfg.event_capacity.max(1));
        let (shutdown, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            cfg,
            events: tx,
            stats: Counters::default(),
            registry: Mutex::new(Registry::default()),
            udp: groups,
            listeners,
            tls_client: self.tls_client,
            shutdown,
            #[cfg(feature = "dns")]
            resolver: self.resolver,
            inline: self.inline.0,
        });
        for g in &shared.udp {
            for s in &g.sockets {
                tokio::spawn(udp::receive(shared.clone(), s.clone(), g.local));
            }
        }
        for (l, tls) in tcp {
            tokio::spawn(stream::accept_loop(shared.clone(), l, tls));
        }
        #[cfg(feature = "ws")]
        for (l, tls) in ws {
            tokio::spawn(crate::ws::accept_loop(shared.clone(), l, tls));
        }
        for (t, a) in &shared.listeners {
            info!(transport = %t, addr = %a, "listening");
        }
        let handle = TransportHandle {
            _owner: Some(Arc::new(Owner {
                shared: shared.clone(),
            })),
            shared: shared.clone(),
        };
        Ok((handle, rx))
    }
}

/// How a send went at once.
pub(crate) enum Outcome {
    /// A datagram was written (a waiting sender's notice is not needed).
    Written(Flow),
    /// Queued: the notice will be answered (the flow, when known).
    Queued(Option<Flow>),
}

fn notice(tag: Option<u64>) -> Notice {
    tag.map_or(Notice::None, Notice::Tag)
}

/// Shuts the layer down when the last handle is dropped.
struct Owner {
    shared: Arc<Shared>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
    }
}

/// Where to send: back on a flow, or to a target (reusing an open connection to it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    /// An existing flow: the connection it names, or for UDP the peer address from the local
    /// socket it names.
    Flow(Flow),
    /// A resolved target: over UDP from our socket of the same address family; over TCP or TLS
    /// on an open connection to that address, or a new one.
    Target(Target),
}

impl From<Flow> for Destination {
    fn from(f: Flow) -> Self {
        Destination::Flow(f)
    }
}

impl From<Target> for Destination {
    fn from(t: Target) -> Self {
        Destination::Target(t)
    }
}

impl From<&Target> for Destination {
    fn from(t: &Target) -> Self {
        Destination::Target(t.clone())
    }
}

/// The sending side of the transport layer; cheap to clone. The layer shuts down when the last
/// clone is dropped or [`TransportHandle::shutdown`] is called.
#[derive(Clone)]
pub struct TransportHandle {
    /// `None` for the handle an [`InlineHandler`](crate::InlineHandler) is lent: it sends but
    /// does not keep the layer alive (the layer holds the handler).
    _owner: Option<Arc<Owner>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for TransportHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportHandle")
            .field("listeners", &self.shared().listeners)
            .finish_non_exhaustive()
    }
}

impl TransportHandle {
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Whether every message is checked with `Message::validate` before it is delivered
    /// ([`TransportConfig::validate`]): what arrives has passed it, and a layer above need
    /// not run it again.
    pub fn validates_inbound(&self) -> bool {
        self.shared.cfg.validate
    }

    /// A handle that sends on the layer without keeping it alive.
    pub(crate) fn unowned(shared: Arc<Shared>) -> TransportHandle {
        TransportHandle {
            _owner: None,
            shared,
        }
    }

    /// Sends bytes (one whole message, or a keep-alive) and returns the flow they went on,
    /// once they are written (for a connection: handed to the socket by its writer task).
    /// No size-based transport switch happens here: see [`TransportHandle::send_request`].
    /// The Endpoint's driver uses [`TransportHandle::enqueue`] instead, which never waits.
    pub async fn send(&self, dest: impl Into<Destination>, data: Bytes) -> Result<Flow, SendError> {
        let (tx, rx) = oneshot::channel();
        let r = self.dispatch(dest.into(), data, Notice::Done(tx));
        self.finish(r, rx).await
    }

    async fn finish(
        &self,
        r: Result<Outcome, SendError>,
        rx: oneshot::Receiver<Result<Flow, SendError>>,
    ) -> Result<Flow, SendError> {
        match r {
            Ok(Outcome::Written(f)) => Ok(f),
            Ok(Outcome::Queued(_)) => rx.await.unwrap_or(Err(SendError::Shutdown)),
            Err(e) => {
                Counters::bump(&self.shared().stats.send_errors);
                Err(e)
            }
        }
    }

    /// Queues bytes for a destination and returns at once, never waiting for a peer: a
    /// datagram is sent now; on a connection the message joins its write queue (in order
    /// behind what was queued before); to a target with no open connection, one connection
    /// is opened and every message for it waits in its queue meanwhile.
    ///
    /// Returns the flow when it is known (`None` while a connection is being opened). A
    /// failure found now is returned; one found later (the connection could not be opened,
    /// closed, or timed out writing) is reported as [`TransportEvent::SendFailed`] with
    /// `tag`, when a tag is given.
    pub fn enqueue(
        &self,
        dest: impl Into<Destination>,
        data: Bytes,
        tag: Option<u64>,
    ) -> Result<Option<Flow>, SendError> {
        let r = self.dispatch(dest.into(), data, notice(tag));
        self.outcome(r)
    }

    fn outcome(&self, r: Result<Outcome, SendError>) -> Result<Option<Flow>, SendError> {
        match r {
            Ok(Outcome::Written(f)) => Ok(Some(f)),
            Ok(Outcome::Queued(f)) => Ok(f),
            Err(e) => {
                Counters::bump(&self.shared().stats.send_errors);
                Err(e)
            }
        }
    }

    pub(crate) fn dispatch(
        &self,
        dest: Destination,
        data: Bytes,
        notice: Notice,
    ) -> Result<Outcome, SendError> {
        if *self.shared().shutdown.borrow() {
            return Err(SendError::Shutdown);
        }
        match dest {
            Destination::Flow(flow) => match flow.transport {
                Transport::Udp => self.send_udp(Some(flow.local), flow.remote, data, notice),
                _ => {
                    let conn = self.conn(&flow).ok_or(SendError::FlowClosed(flow))?;
                    conn.enqueue(&self.shared().stats, Item { data, notice })?;
                    Ok(Outcome::Queued(Some(flow)))
                }
            },
            Destination::Target(t) => match t.transport {
                Transport::Udp => self.send_udp(None, t.addr, data, notice),
                _ => self.to_target(&t, Item { data, notice }),
            },
        }
    }

    /// A message for a TCP/TLS target: on a reusable open connection, else in the queue of
    /// the connection being opened to it, else in a new one's.
    fn to_target(&self, target: &Target, item: Item) -> Result<Outcome, SendError> {
        let shared = self.shared();
        let mut reg = shared.registry.lock().map_err(|_| SendError::Shutdown)?;
        if let Some(conn) = reg.find(target) {
            drop(reg);
            conn.enqueue(&shared.stats, item)?;
            return Ok(Outcome::Queued(Some(conn.flow)));
        }
        let queue = match reg.pending(&pending_key(target)) {
            Some(q) => q,
            None => {
                let plan = stream::plan(shared, target)?;
                stream::begin_connect(shared, &mut reg, target, plan)?
            }
        };
        drop(reg);
        match queue.push(item) {
            Ok(()) => Ok(Outcome::Queued(None)),
            Err((Refused::Full, _)) => Err(SendError::ConnectQueueFull(target.addr)),
            Err((Refused::Closed, _)) => Err(SendError::ConnectTimeout(target.addr)),
        }
    }

    /// Sends a datagram now. A socket whose send buffer is full (rare: the kernel drains it
    /// at line rate) gets the datagram from a task of its own, so the caller never waits.
    fn send_udp(
        &self,
        local: Option<SocketAddr>,
        to: SocketAddr,
        data: Bytes,
        notice: Notice,
    ) -> Result<Outcome, SendError> {
        if data.len() > MAX_DATAGRAM {
            return Err(SendError::TooLarge {
                size: data.len(),
                limit: MAX_DATAGRAM,
            });
        }
        let shared = self.shared();
        let group = match local {
            Some(l) => shared.udp.iter().find(|g| g.local == l),
            None => shared
                .udp
                .iter()
                .find(|g| g.local.is_ipv4() == to.is_ipv4()),
        };
        let no_socket = || SendError::NoTransport {
            transport: Transport::Udp,
            addr: to,
        };
        let group = group.ok_or_else(no_socket)?;
        let sock = group.pick(to).ok_or_else(no_socket)?;
        let flow = Flow {
            transport: Transport::Udp,
            local: group.local,
            remote: to,
        };
        if matches!(notice, Notice::None) && crate::udp_batch::offer(sock, &data, to) {
            // An inline handler's send: it leaves with the rest of the receive batch.
            return Ok(Outcome::Written(flow));
        }
        match sock.try_send_to(&data, to) {
            Ok(_) => {
                shared.stats.sent(Transport::Udp, data.len());
                trace!(%flow, size = data.len(), "sent");
                Ok(Outcome::Written(flow))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                Counters::bump(&shared.stats.udp_sends_deferred);
                let sock = sock.clone();
                let shared = shared.clone();
                tokio::spawn(async move {
                    let r = match sock.send_to(&data, to).await {
                        Ok(_) => {
                            shared.stats.sent(Transport::Udp, data.len());
                            Ok(flow)
                        }
                        Err(source) => {
                            Counters::bump(&shared.stats.send_errors);
                            Err(SendError::Io { addr: to, source })
                        }
                    };
                    match (r, notice) {
                        (r, Notice::Done(tx)) => {
                            let _ = tx.send(r);
                        }
                        (Err(error), Notice::Tag(tag)) => {
                            let ev = TransportEvent::SendFailed { tag, error };
                            let _ = shared.events.send(ev).await;
                        }
                        _ => {}
                    }
                });
                Ok(Outcome::Queued(Some(flow)))
            }
            Err(source) => Err(SendError::Io { addr: to, source }),
        }
    }

    /// RFC 3261 §18.1.1 for a request about to be sent to `target`: a `sips:` Request-URI
    /// only goes over TLS ([`SendError::SipsRequiresTls`]); a request to a UDP target larger
    /// than [`TransportConfig::udp_mtu_threshold`] goes over TCP to the same address, with its
    /// top Via transport rewritten to `TCP` (the switch is logged and counted). Returns the
    /// target to use. Call it before the request enters a client transaction, so that the
    /// transaction knows its transport is reliable.
    pub fn prepare_request(&self, target: &Target, msg: &mut Message) -> Result<Target, SendError> {
        let sips = msg
            .uri_str()
            .and_then(|u| u.get(..5))
            .is_some_and(|s| s.eq_ignore_ascii_case("sips:"));
        if sips && target.transport != Transport::Tls {
            Counters::bump(&self.shared().stats.send_errors);
            return Err(SendError::SipsRequiresTls(target.transport));
        }
        let threshold = self.shared().cfg.udp_mtu_threshold;
        if target.transport == Transport::Udp && threshold.is_some_and(|t| msg.encoded_len() > t) {
            crate::via::set_top_via_transport(msg, Transport::Tcp)?;
            Counters::bump(&self.shared().stats.udp_to_tcp_switches);
            info!(
                target = %target.addr,
                size = msg.encoded_len(),
                threshold = threshold.unwrap_or_default(),
                call_id = msg.call_id().unwrap_or_default(),
                "request larger than the UDP threshold: sending over TCP (RFC 3261 §18.1.1)"
            );
            return Ok(Target {
                transport: Transport::Tcp,
                ..target.clone()
            });
        }
        Ok(target.clone())
    }

    /// Sends a request to a target (RFC 3261 §18.1.1, see [`TransportHandle::prepare_request`])
    /// and returns the flow it went on.
    ///
    /// - A `sips:` Request-URI is only sent over TLS ([`SendError::SipsRequiresTls`]).
    /// - A request to a UDP target larger than [`TransportConfig::udp_mtu_threshold`] goes over
    ///   TCP to the same address with its top Via transport rewritten to `TCP`; the switch is
    ///   logged and counted, and the returned flow says TCP (the transaction is then reliable:
    ///   no retransmissions, and its ACK/CANCEL must use the same Via).
    /// - An open connection to the target is reused before a new one is opened.
    pub async fn send_request(&self, target: &Target, msg: &Message) -> Result<Flow, SendError> {
        let mut m = msg.clone();
        let target = self.prepare_request(target, &mut m)?;
        self.send(target, m.to_bytes()).await
    }

    /// Queues a request per RFC 3261 §18.1.1 (see [`TransportHandle::prepare_request`] and
    /// [`TransportHandle::enqueue`]).
    pub fn enqueue_request(
        &self,
        target: &Target,
        msg: &Message,
        tag: Option<u64>,
    ) -> Result<Option<Flow>, SendError> {
        let mut m = msg.clone();
        let target = self.prepare_request(target, &mut m)?;
        self.enqueue(target, m.to_bytes(), tag)
    }

    /// Sends a response where RFC 3261 §18.2.2 says, and returns the flow it went on.
    ///
    /// With `flow` (the flow the request came on): a reliable flow that is still open carries
    /// it. Otherwise, and when the flow has closed, the destination comes from the top Via:
    /// over TCP/TLS to `received` (or the sent-by address) and the sent-by port, reusing or
    /// opening a connection; over UDP (from the flow's local socket) to `maddr`, else
    /// `received`:`rport` (RFC 3581), else `received` or sent-by and the sent-by port. A
    /// sent-by domain name without `received` is resolved per RFC 3263 §5 when the layer has a
    /// resolver ([`TransportBuilder::resolver`]); otherwise it is [`SendError::NoRoute`]. A
    /// WebSocket request whose connection closed cannot be answered (RFC 7118 §5).
    pub async fn send_response(
        &self,
        msg: &Message,
        flow: Option<Flow>,
    ) -> Result<Flow, SendError> {
        let (tx, rx) = oneshot::channel();
        let r = self.route_response(msg.to_bytes(), Some(msg), flow, Notice::Done(tx));
        self.finish(r, rx).await
    }

    /// Queues a response where RFC 3261 §18.2.2 says (see [`TransportHandle::send_response`]
    /// and [`TransportHandle::enqueue`]); `data` is the whole response, read again only when
    /// its Via decides.
    pub fn enqueue_response(
        &self,
        data: Bytes,
        flow: Option<Flow>,
        tag: Option<u64>,
    ) -> Result<Option<Flow>, SendError> {
        let r = self.route_response(data, None, flow, notice(tag));
        self.outcome(r)
    }

    /// [`enqueue_response`](Self::enqueue_response) for a response to `request` (the request
    /// as received and stamped): the destination is read from the request's top Via, which the
    /// response copies, through the request's own header index instead of a scan of `data`.
    ///
    /// For a server answering on the receive task (an [`InlineHandler`](crate::InlineHandler)).
    pub fn enqueue_response_to(
        &self,
        data: Bytes,
        request: &Message,
        flow: Option<Flow>,
        tag: Option<u64>,
    ) -> Result<Option<Flow>, SendError> {
        let r = self.route_response(data, Some(request), flow, notice(tag));
        self.outcome(r)
    }

    /// Where the response to `request` goes over UDP (RFC 3261 §18.2.2): for the request an
    /// [`InlineHandler`](crate::InlineHandler) is looking at, what the receive path computed
    /// when it stamped its Via; otherwise read from its top Via. For a handler that answers
    /// later, on a task of its own, through
    /// [`enqueue_response_at`](Self::enqueue_response_at).
    pub fn reply_destination(&self, request: &Message) -> Option<Target> {
        crate::udp_batch::reply_to(request).or_else(|| response::destination(request).ok())
    }

    /// [`enqueue_response`](Self::enqueue_response) for a response whose destination is known
    /// ([`reply_destination`](Self::reply_destination)): it goes on `flow` when that is an
    /// open connection, else to `target`.
    pub fn enqueue_response_at(
        &self,
        data: Bytes,
        target: Target,
        flow: Option<Flow>,
        tag: Option<u64>,
    ) -> Result<Option<Flow>, SendError> {
        let r = self.route_response_known(data, None, Some(target), flow, notice(tag));
        self.outcome(r)
    }

    fn route_response(
        &self,
        data: Bytes,
        msg: Option<&Message>,
        flow: Option<Flow>,
        notice: Notice,
    ) -> Result<Outcome, SendError> {
        self.route_response_known(data, msg, None, flow, notice)
    }

    fn route_response_known(
        &self,
        data: Bytes,
        msg: Option<&Message>,
        known: Option<Target>,
        flow: Option<Flow>,
        notice: Notice,
    ) -> Result<Outcome, SendError> {
        if let Some(f) = flow.filter(|f| f.transport.is_reliable()) {
            match self.conn(&f) {
                Some(c) if !c.queue.is_closed() => {
                    c.enqueue(&self.shared().stats, Item { data, notice })?;
                    return Ok(Outcome::Queued(Some(f)));
                }
                _ => debug!(flow = %f, "request's flow closed: response sent per its Via"),
            }
        }
        // Most responses: one Via found in the bytes. Anything unusual (folding, a quoted
        // parameter, no route from the Via alone): the whole message is parsed.
        let fast = match (known, msg) {
            (Some(t), _) => Some(t),
            // The request an inline handler is answering: its destination was computed when
            // its Via was stamped.
            (None, Some(m)) => crate::udp_batch::reply_to(m),
            (None, None) => response::destination_from_bytes(&data).and_then(Result::ok),
        };
        let target = match fast {
            Some(t) => t,
            None => {
                let parsed;
                let msg = match msg {
                    Some(m) => m,
                    None => {
                        parsed = Message::parse(data.clone())?;
                        &parsed
                    }
                };
                match response::destination(msg) {
                    Ok(t) => t,
                    Err(e @ SendError::NoRoute(_)) => {
                        #[cfg(feature = "dns")]
                        if self.shared().resolver.is_some() {
                            if let Some(sent_by) = crate::resolve::sent_by_name(msg) {
                                return Ok(self.resolve_response(sent_by, data, notice));
                            }
                        }
                        return Err(e);
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        match flow.filter(|f| f.transport == Transport::Udp && target.transport == Transport::Udp) {
            Some(f) => self.send_udp(Some(f.local), target.addr, data, notice),
            None => self.dispatch(Destination::Target(target), data, notice),
        }
    }

    /// The bound addresses of every listener (with the ports the system chose for port 0).
    pub fn local_addrs(&self) -> Vec<(Transport, SocketAddr)> {
        self.shared().listeners.clone()
    }

    /// The first bound address of a transport.
    pub fn local_addr(&self, transport: Transport) -> Option<SocketAddr> {
        self.shared()
            .listeners
            .iter()
            .find(|(t, _)| *t == transport)
            .map(|(_, a)| *a)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.shared().stats.snapshot()
    }

    /// The TCP and TLS flows open now.
    pub fn flows(&self) -> Vec<Flow> {
        self.shared()
            .registry
            .lock()
            .map(|r| r.flows())
            .unwrap_or_default()
    }

    /// Whether a flow can still be sent on: a TCP/TLS flow whose connection is open, or a UDP
    /// flow of one of our sockets.
    pub fn is_open(&self, flow: &Flow) -> bool {
        match flow.transport {
            Transport::Udp => self.shared().udp.iter().any(|g| g.local == flow.local),
            _ => self.conn(flow).is_some(),
        }
    }

    /// Closes a TCP/TLS flow (reported as [`CloseReason::Local`]); `false` if it is not open.
    pub fn close_flow(&self, flow: &Flow) -> bool {
        match self.conn(flow) {
            Some(c) => {
                c.request_close(CloseReason::Local);
                true
            }
            None => false,
        }
    }

    /// Stops listening and closes every connection (each reported closed with
    /// [`CloseReason::Shutdown`]); later sends fail with [`SendError::Shutdown`].
    pub fn shutdown(&self) {
        self.shared().shutdown.send_replace(true);
    }

    fn conn(&self, flow: &Flow) -> Option<Arc<Conn>> {
        self.shared().registry.lock().ok().and_then(|r| r.get(flow))
    }
}
