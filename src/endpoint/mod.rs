//! The Endpoint: the async driver that owns the transport layer, the transaction layer and its
//! timers on tokio, and hands the transaction user (TU) requests and responses.
//!
//! One task (the driver) owns the sans-IO [`TransactionLayer`](sip_transaction::TransactionLayer): it feeds it what the transport
//! delivers, the TU's actions and timer expiries, and carries out what the layer asks (send
//! these bytes, tell the TU this). The TU talks to it through cheap handles:
//!
//! - [`Endpoint::request`] sends a request in a client transaction and returns a
//!   [`ClientTransaction`] that yields every provisional and the final response;
//! - [`Endpoint::next_event`] yields [`ServerEvent`]s: new requests (each with a
//!   [`ServerTransaction`] handle to respond on, several provisionals then a final), CANCELs
//!   of pending INVITEs (already answered 200/487 by the endpoint, RFC 3261 §9.2), ACKs of 2xx
//!   and stray 2xx retransmissions (for the dialog layer), and flows that opened or closed;
//! - [`Endpoint::send_stateless`] sends outside any transaction;
//! - [`Endpoint::counters`] reads the counters; [`Endpoint::shutdown`] lets live transactions
//!   finish within a deadline.
//!
//! ```
//! use std::time::Duration;
//! use sip_stack::endpoint::{Endpoint, ServerEvent};
//! use sip_stack::core::{builder::RequestBuilder, Method, Target, Transport};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = Endpoint::builder().udp("127.0.0.1:0".parse()?).build().await?;
//! let client = Endpoint::builder().udp("127.0.0.1:0".parse()?).build().await?;
//! let server_addr = server.local_addr(Transport::Udp).unwrap();
//!
//! let answering = server.clone();
//! tokio::spawn(async move {
//!     while let Some(ServerEvent::Request(txn)) = answering.next_event().await {
//!         let ok = txn.request().response(200).build().unwrap();
//!         txn.respond(ok).await.unwrap();
//!     }
//! });
//!
//! let options = RequestBuilder::new(Method::Options, &format!("sip:{server_addr}"))
//!     .header("Via", client.via(Transport::Udp))
//!     .header("From", "<sip:alice@example.com>;tag=a1")
//!     .header("To", format!("<sip:{server_addr}>"))
//!     .header("Call-ID", client.new_call_id())
//!     .header("CSeq", "1 OPTIONS")
//!     .build()?;
//! let mut txn = client.request(options, Target::new(Transport::Udp, server_addr)).await?;
//! let response = txn.final_response().await?;
//! assert_eq!(response.status(), Some(200));
//! client.shutdown(Duration::from_secs(1)).await;
//! server.shutdown(Duration::from_secs(1)).await;
//! # Ok(())
//! # }
//! ```

mod driver;
mod handles;
mod identity;
mod queue;
#[cfg(feature = "dns")]
mod resolve;
mod tu;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sip_core::random::{IdGenerator, OsRandom};
use sip_core::{Flow, Message, Target, Transport};
use sip_transaction::{Config as TxnConfig, TerminationReason, TransactionKey};
use sip_transport::{
    CloseReason, SendError, TlsClientConfig, TlsServerConfig, TransportConfig, TransportHandle,
};
use tokio::sync::{mpsc, oneshot, watch};

pub use handles::{ClientTransaction, ServerTransaction};
#[cfg(feature = "dns")]
pub use resolve::next_hop;
pub use sip_transaction::Destination;

/// A fresh random tag (RFC 3261 §19.3).
pub(crate) fn random_tag() -> String {
    IdGenerator::new(OsRandom).tag()
}

/// Who answers a CANCEL's INVITE (RFC 3261 §9.2, §16.10).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CancelMode {
    /// A user agent (the default): the endpoint answers the CANCEL 200 and the INVITE 487
    /// itself, then tells the TU ([`ServerEvent::Cancelled`]).
    #[default]
    Ua,
    /// A proxy (§16.10): the endpoint answers the CANCEL 200 but leaves the INVITE to the TU,
    /// which cancels its branches and forwards their final answer (a 487, usually).
    Proxy,
}

/// Answers some requests without a transaction, before the transaction layer sees them: a
/// registrar's 401 challenges, an overloaded server's 503. A stateless answer keeps no state, so
/// a retransmitted request is simply answered again (RFC 3261 §8.2.7, §16.11).
pub trait StatelessResponder: Send + Sync + 'static {
    /// The response to send back on `flow`, or `None` to let the request create a server
    /// transaction as usual. Called on the driver task: it must be quick and never block.
    fn respond(&self, request: &Message, flow: Flow) -> Option<Message>;
}

/// What went wrong with an Endpoint call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// Binding a listener failed.
    #[error("binding a listener failed: {0}")]
    Bind(#[from] io::Error),
    /// The transaction layer refused the action.
    #[error(transparent)]
    Transaction(#[from] sip_transaction::Error),
    /// The transaction ended without a final response: timeout (the TU treats it as 408) or
    /// transport error (503), RFC 3261 §8.1.3.1.
    #[error("transaction ended without a final response: {0:?}")]
    NoFinalResponse(TerminationReason),
    /// The transport refused to send (RFC 3261 §18.1.1: a `sips:` request over a transport
    /// other than TLS, no socket for the target's family, the connection limit…).
    #[error(transparent)]
    Send(#[from] SendError),
    /// The endpoint is shutting down or gone.
    #[error("endpoint is shut down")]
    Shutdown,
    /// RFC 3263 found no server for the request's next hop (a proxy answers 503).
    #[cfg(feature = "dns")]
    #[error(transparent)]
    Resolve(#[from] sip_transport::ResolveError),
}

/// The User-Agent / Server value an endpoint uses unless told otherwise.
pub const DEFAULT_USER_AGENT: &str = concat!("sip-stack/", env!("CARGO_PKG_VERSION"));

/// Configuration of an [`Endpoint`].
pub struct EndpointBuilder {
    udp: Vec<SocketAddr>,
    tcp: Vec<SocketAddr>,
    tls: Vec<(SocketAddr, TlsServerConfig)>,
    #[cfg(feature = "ws")]
    ws: Vec<(SocketAddr, Option<TlsServerConfig>)>,
    tls_client: Option<TlsClientConfig>,
    transport: TransportConfig,
    timers: TxnConfig,
    user_agent: Option<String>,
    event_capacity: usize,
    stateless: Option<Arc<dyn StatelessResponder>>,
    stateless_methods: Vec<sip_core::Method<'static>>,
    inline: Option<Arc<dyn sip_transport::InlineHandler>>,
    advertise: Vec<(Transport, String)>,
    cancel_mode: CancelMode,
    #[cfg(feature = "dns")]
    resolver: resolve::ResolverSlot,
}

impl Default for EndpointBuilder {
    fn default() -> Self {
        EndpointBuilder {
            udp: Vec::new(),
            tcp: Vec::new(),
            tls: Vec::new(),
            #[cfg(feature = "ws")]
            ws: Vec::new(),
            tls_client: None,
            transport: TransportConfig::default(),
            timers: TxnConfig::default(),
            user_agent: Some(DEFAULT_USER_AGENT.to_owned()),
            event_capacity: 4096,
            stateless: None,
            stateless_methods: Vec::new(),
            inline: None,
            advertise: Vec::new(),
            cancel_mode: CancelMode::Ua,
            #[cfg(feature = "dns")]
            resolver: resolve::ResolverSlot::default(),
        }
    }
}

impl EndpointBuilder {
    /// Listens on UDP at `addr` (port 0: any free port).
    pub fn udp(mut self, addr: SocketAddr) -> Self {
        self.udp.push(addr);
        self
    }

    /// Listens on TCP at `addr`.
    pub fn tcp(mut self, addr: SocketAddr) -> Self {
        self.tcp.push(addr);
        self
    }

    /// Listens on TLS at `addr` with this certificate.
    pub fn tls(mut self, addr: SocketAddr, config: TlsServerConfig) -> Self {
        self.tls.push((addr, config));
        self
    }

    /// Listens for SIP over WebSocket at `addr` (RFC 7118; browsers' softphones).
    #[cfg(feature = "ws")]
    pub fn ws(mut self, addr: SocketAddr) -> Self {
        self.ws.push((addr, None));
        self
    }

    /// Listens for SIP over secure WebSocket at `addr` with this certificate (RFC 7118).
    #[cfg(feature = "ws")]
    pub fn wss(mut self, addr: SocketAddr, config: TlsServerConfig) -> Self {
        self.ws.push((addr, Some(config)));
        self
    }

    /// Trust roots (and optional client certificate) for TLS connections we open.
    pub fn tls_client(mut self, config: TlsClientConfig) -> Self {
        self.tls_client = Some(config);
        self
    }

    /// Transport limits and keep-alives.
    pub fn transport_config(mut self, config: TransportConfig) -> Self {
        self.transport = config;
        self
    }

    /// Transaction timers (T1, T2, T4…) and the transaction table's cap.
    pub fn transaction_config(mut self, config: TxnConfig) -> Self {
        self.timers = config;
        self
    }

    /// The User-Agent / Server header value the endpoint adds to what it builds itself
    /// (`None`: none).
    pub fn user_agent(mut self, ua: Option<String>) -> Self {
        self.user_agent = ua;
        self
    }

    /// Answers the requests `responder` picks without creating transactions.
    pub fn stateless(mut self, responder: Arc<dyn StatelessResponder>) -> Self {
        self.stateless = Some(responder);
        self
    }

    /// Lets `handler` see UDP requests on the task that received them and answer them there,
    /// before the driver and the TU (run to completion: no hand-off, no queue). What it returns
    /// goes on as usual. The [`Registrar`](crate::registrar::Registrar) has one for REGISTER:
    /// [`InlineRegistrar`](crate::registrar::InlineRegistrar).
    pub fn inline(mut self, handler: Arc<dyn sip_transport::InlineHandler>) -> Self {
        self.inline = Some(handler);
        self
    }

    /// Requests of these methods reach the TU without a server transaction and are answered
    /// statelessly (as high-rate registrars answer REGISTER): no state is kept, and a
    /// retransmitted request reaches the TU again, which must answer it idempotently (the
    /// [`Registrar`](crate::registrar::Registrar) answers a repeated Call-ID/CSeq with the
    /// current bindings). This departs from RFC 3261 §17.2 for those methods: use it only for
    /// idempotent ones. INVITE, ACK and CANCEL are never handled this way.
    pub fn stateless_methods(mut self, methods: &[sip_core::Method<'static>]) -> Self {
        self.stateless_methods = methods
            .iter()
            .copied()
            .filter(|m| {
                !matches!(
                    m,
                    sip_core::Method::Invite | sip_core::Method::Ack | sip_core::Method::Cancel
                )
            })
            .collect();
        self
    }

    /// The address to put in Via, Contact and Record-Route for `transport` (`host` or
    /// `host:port`; without a port, the listener's): for a socket bound to `0.0.0.0`, or a
    /// server behind NAT. Responses whose top Via names it are ours too (RFC 3261 §18.1.2).
    ///
    /// ```
    /// # use sip_stack::endpoint::Endpoint;
    /// # use sip_stack::core::Transport;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ep = Endpoint::builder()
    ///     .udp("0.0.0.0:0".parse()?)
    ///     .advertise(Transport::Udp, "sip.example.com:5060")
    ///     .build()
    ///     .await?;
    /// assert!(ep.via(Transport::Udp).starts_with("SIP/2.0/UDP sip.example.com:5060;rport;branch=z9hG4bK"));
    /// # ep.shutdown(std::time::Duration::from_secs(1)).await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn advertise(mut self, transport: Transport, host_port: &str) -> Self {
        self.advertise.retain(|(t, _)| *t != transport);
        self.advertise.push((transport, host_port.to_owned()));
        self
    }

    /// Who answers the INVITE of a CANCEL: the endpoint ([`CancelMode::Ua`], the default) or
    /// the TU ([`CancelMode::Proxy`]).
    pub fn cancel_mode(mut self, mode: CancelMode) -> Self {
        self.cancel_mode = mode;
        self
    }

    /// Capacity of the TU event channel (default 4096). New requests that find it full are
    /// answered 503; ACKs, CANCELs and flow events wait in a backlog instead (never lost).
    pub fn event_capacity(mut self, n: usize) -> Self {
        self.event_capacity = n.max(1);
        self
    }

    /// Binds the listeners and starts the driver task. Must be called within a tokio runtime.
    pub async fn build(self) -> Result<Endpoint, EndpointError> {
        #[cfg(feature = "dns")]
        let resolver = self.take_resolver();
        let mut tb = sip_transport::TransportLayer::builder().config(self.transport);
        if let Some(h) = self.inline {
            tb = tb.inline(h);
        }
        for a in self.udp {
            tb = tb.udp(a);
        }
        for a in self.tcp {
            tb = tb.tcp(a);
        }
        for (a, c) in self.tls {
            tb = tb.tls(a, c);
        }
        #[cfg(feature = "ws")]
        for (a, c) in self.ws {
            tb = match c {
                Some(c) => tb.wss(a, c),
                None => tb.ws(a),
            };
        }
        if let Some(c) = self.tls_client {
            tb = tb.tls_client(c);
        }
        // RFC 3263 §5: responses to a Via sent-by name are resolved by the same resolver.
        #[cfg(feature = "dns")]
        if let Ok(r) = resolver.get() {
            tb = tb.resolver(r);
        }
        let (transport, transport_events) = tb.build().await?;
        let (cmd_tx, cmd_rx) = mpsc::channel(self.event_capacity);
        let (event_tx, event_rx) = mpsc::channel(self.event_capacity);
        let (counters, counters_rx) = watch::channel(Counters::default());
        let identity = identity::Identity::new(transport.local_addrs(), &self.advertise);
        let strays = Arc::new(AtomicUsize::new(0));
        let driver = driver::Driver::new(driver::Parts {
            layer: sip_transaction::TransactionLayer::new(self.timers),
            transport: transport.clone(),
            transport_events,
            cmd_back: cmd_tx.clone(),
            cmd: cmd_rx,
            events: event_tx,
            strays: strays.clone(),
            counters,
            stateless: self.stateless,
            stateless_methods: self.stateless_methods,
            cancel_mode: self.cancel_mode,
            identity: identity.clone(),
        });
        let done = tokio::spawn(driver.run());
        Ok(Endpoint {
            inner: Arc::new(Inner {
                cmd: cmd_tx,
                events: tokio::sync::Mutex::new(event_rx),
                strays,
                transport,
                identity,
                counters: counters_rx,
                user_agent: self.user_agent,
                done: Mutex::new(Some(done)),
                #[cfg(feature = "dns")]
                resolver,
            }),
        })
    }
}

struct Inner {
    cmd: mpsc::Sender<Command>,
    events: tokio::sync::Mutex<mpsc::Receiver<ServerEvent>>,
    /// Stray responses handed to the channel and not yet read (their cap is the driver's).
    strays: Arc<AtomicUsize>,
    transport: TransportHandle,
    identity: identity::Identity,
    counters: watch::Receiver<Counters>,
    user_agent: Option<String>,
    done: Mutex<Option<tokio::task::JoinHandle<()>>>,
    #[cfg(feature = "dns")]
    resolver: resolve::ResolverSlot,
}

/// A SIP endpoint: transports, transactions and timers on tokio. Cheap to clone.
#[derive(Clone)]
pub struct Endpoint {
    inner: Arc<Inner>,
}

/// Counters an operator reads (a snapshot).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Live transactions.
    pub live: usize,
    /// Live transactions by kind: INVITE client, non-INVITE client, INVITE server, non-INVITE
    /// server.
    pub live_by_kind: [usize; 4],
    /// Transactions created, by the same kinds.
    pub created: [u64; 4],
    /// Retransmissions sent by timers.
    pub retransmissions_sent: u64,
    /// Retransmitted requests and responses absorbed.
    pub retransmissions_absorbed: u64,
    /// Transactions that timed out (B, F, H).
    pub timeouts: u64,
    /// Transport errors reported to transactions.
    pub transport_errors: u64,
    /// Requests answered 503 because the transaction table was full.
    pub overload_503: u64,
    /// Messages received from the transport.
    pub messages_in: u64,
    /// Messages sent.
    pub messages_out: u64,
    /// Requests answered statelessly by the [`StatelessResponder`].
    pub stateless_responses: u64,
    /// New requests answered 503 because the TU was behind (its channel full, or events
    /// waiting in the backlog): explicit back-pressure, never a silent drop.
    pub tu_overload_503: u64,
    /// Events (ACKs, CANCELs, flow events, stray responses) waiting for room in the TU
    /// channel now. They are never dropped.
    pub tu_backlog: usize,
    /// The largest the backlog has been.
    pub tu_backlog_peak: usize,
    /// Whether reading from the transport is paused because the backlog is at its cap.
    pub reading_paused: bool,
    /// Stray responses dropped because too many already waited for the TU (they are the one
    /// kind of event anyone can forge, so they have their own cap).
    pub stray_responses_dropped: u64,
    /// Provisionals and repeated 2xx dropped because a client transaction's TU did not read
    /// its responses (room is always kept for the first final response).
    pub responses_dropped: u64,
    /// Responses dropped because their top Via was not ours (RFC 3261 §18.1.2).
    pub foreign_responses_dropped: u64,
    /// Sends the transport could not complete (each reported to its transaction).
    pub send_failures: u64,
    /// Requests answered 500 because the TU dropped them without a final response.
    pub abandoned_500: u64,
    /// CANCELs that matched a pending INVITE.
    pub cancels_received: u64,
}

pub(crate) enum Command {
    Request {
        request: Message,
        target: Target,
        responses: queue::ResponseSender,
        reply: oneshot::Sender<
            Result<(TransactionKey, oneshot::Receiver<TerminationReason>), EndpointError>,
        >,
    },
    Respond {
        key: TransactionKey,
        response: Message,
        to_tag: handles::ToTag,
        reply: oneshot::Sender<Result<(), EndpointError>>,
    },
    Stateless {
        message: Message,
        destination: Destination,
    },
    Cancel {
        key: TransactionKey,
        reply: oneshot::Sender<Result<(), EndpointError>>,
    },
    /// A [`ServerTransaction`] was dropped without a final response.
    Abandoned {
        key: Option<TransactionKey>,
        request: Message,
        flow: Flow,
        to_tag: handles::ToTag,
    },
    Shutdown {
        deadline: Duration,
        done: oneshot::Sender<()>,
    },
}

/// What the endpoint tells the TU.
#[derive(Debug)]
pub enum ServerEvent {
    /// A new request in a server transaction (not ACK, not CANCEL): respond on it.
    Request(ServerTransaction),
    /// A CANCEL matched a pending INVITE: the endpoint answered the CANCEL 200 and, in
    /// [`CancelMode::Ua`], the INVITE 487 (RFC 3261 §9.2). In [`CancelMode::Proxy`] the INVITE
    /// is the TU's to answer (§16.10).
    Cancelled {
        /// The INVITE server transaction that was cancelled.
        invite: TransactionKey,
        /// The CANCEL request.
        cancel: Message,
    },
    /// An ACK the transaction layer does not absorb (the ACK of a 2xx), for the dialog layer.
    Ack {
        /// The ACK.
        request: Message,
        /// The flow it came on.
        flow: Flow,
    },
    /// A response matching no client transaction (2xx retransmissions, other forks; a 2xx
    /// from another fork after a non-2xx final). Capped apart from other events
    /// ([`Counters::stray_responses_dropped`]).
    StrayResponse {
        /// The response.
        response: Message,
        /// The flow it came on.
        flow: Flow,
    },
    /// A TCP/TLS flow opened.
    FlowOpened(Flow),
    /// A TCP/TLS flow closed (a registrar drops the bindings that lived on it).
    FlowClosed {
        /// The flow.
        flow: Flow,
        /// Why.
        reason: CloseReason,
    },
}

impl Endpoint {
    /// Starts configuring an endpoint.
    pub fn builder() -> EndpointBuilder {
        EndpointBuilder::default()
    }

    /// Sends a request in a new client transaction. The request must carry a top Via with a
    /// `z9hG4bK` branch ([`Endpoint::via`] makes one).
    pub async fn request(
        &self,
        request: Message,
        target: Target,
    ) -> Result<ClientTransaction, EndpointError> {
        let (responses_tx, responses) = queue::response_queue(driver::RESPONSE_QUEUE);
        let (reply, rx) = oneshot::channel();
        self.inner
            .cmd
            .reserve()
            .await
            .map_err(|_| EndpointError::Shutdown)
            .map(|slot| {
                slot.send(Command::Request {
                    request,
                    target,
                    responses: responses_tx,
                    reply,
                })
            })?;
        let (key, ended) = rx.await.map_err(|_| EndpointError::Shutdown)??;
        Ok(ClientTransaction {
            key,
            responses,
            ended,
            cmd: self.inner.cmd.clone(),
            #[cfg(feature = "dns")]
            failover: None,
        })
    }

    /// The next event for the TU; `None` once the endpoint has shut down. Several tasks may
    /// call this concurrently: each event goes to one of them.
    pub async fn next_event(&self) -> Option<ServerEvent> {
        let ev = self.inner.events.lock().await.recv().await;
        if let Some(ServerEvent::StrayResponse { .. }) = ev {
            self.inner.strays.fetch_sub(1, Ordering::Relaxed);
        }
        ev
    }

    /// Sends a message outside any transaction (the ACK of a 2xx, a 2xx retransmission, a
    /// stateless response or forward).
    pub async fn send_stateless(
        &self,
        message: Message,
        destination: Destination,
    ) -> Result<(), EndpointError> {
        self.inner
            .cmd
            .reserve()
            .await
            .map_err(|_| EndpointError::Shutdown)
            .map(|slot| {
                slot.send(Command::Stateless {
                    message,
                    destination,
                })
            })
    }

    /// Whether the transport validates every message before it is delivered
    /// (`TransportConfig::validate`, the default): a request handed to the TU has passed
    /// `Message::validate` already.
    pub fn validates_inbound(&self) -> bool {
        self.inner.transport.validates_inbound()
    }

    /// The bound address of the first listener of a transport.
    pub fn local_addr(&self, transport: Transport) -> Option<SocketAddr> {
        self.inner.transport.local_addr(transport)
    }

    /// The transport layer (for its statistics, flows and keep-alive control).
    pub fn transport(&self) -> &TransportHandle {
        &self.inner.transport
    }

    /// The User-Agent string configured.
    pub fn user_agent(&self) -> Option<&str> {
        self.inner.user_agent.as_deref()
    }

    /// The `host:port` we go by over `transport`, for Via, Contact and Record-Route: the
    /// advertised address ([`EndpointBuilder::advertise`]), else the listener's bound address
    /// (`None` without a listener of that transport).
    pub fn advertised(&self, transport: Transport) -> Option<String> {
        self.inner.identity.sent_by(transport)
    }

    /// A Via value for a request we send over `transport`: our advertised address (else our
    /// listening address) as sent-by, `rport` (RFC 3581) and a fresh branch.
    pub fn via(&self, transport: Transport) -> String {
        let sent_by = self
            .advertised(transport)
            .or_else(|| self.advertised(Transport::Udp))
            .unwrap_or_else(|| "0.0.0.0".to_owned());
        let branch = IdGenerator::new(OsRandom).branch();
        format!("SIP/2.0/{transport} {sent_by};rport;branch={branch}")
    }

    /// A fresh Call-ID.
    pub fn new_call_id(&self) -> String {
        let host = self
            .advertised(Transport::Udp)
            .and_then(|a| a.rsplit_once(':').map(|(h, _)| h.to_owned()));
        IdGenerator::new(OsRandom).call_id(host.as_deref())
    }

    /// A fresh tag.
    pub fn new_tag(&self) -> String {
        random_tag()
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> Counters {
        *self.inner.counters.borrow()
    }

    /// Waits until no transaction is live (every table empty): for tests and orderly stops.
    pub async fn wait_idle(&self) {
        let mut rx = self.inner.counters.clone();
        let _ = rx.wait_for(|c| c.live == 0).await;
    }

    /// Stops taking new requests (they are answered 503), lets live transactions finish until
    /// `deadline`, then aborts every one still live (client and server, CANCEL and 503
    /// transactions included) and closes the transports. Returns by the deadline.
    pub async fn shutdown(&self, deadline: Duration) {
        let (done, rx) = oneshot::channel();
        if self
            .inner
            .cmd
            .send(Command::Shutdown { deadline, done })
            .await
            .is_ok()
        {
            let _ = rx.await;
        }
        let handle = self
            .inner
            .done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(h) = handle {
            let _ = h.await;
        }
        self.inner.transport.shutdown();
    }
}
