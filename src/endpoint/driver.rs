//! The driver task: the only owner of the transaction layer. It reads the clock, sleeps until
//! the next timer, and moves messages between the transport, the layer and the TU. Every RFC
//! rule is in `sip-transaction`; this is plumbing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sip_core::{Flow, HeaderName, Message, Method, Target, Transport};
use sip_transaction::{
    CancelMatch, Destination, Event, Kind, TerminationReason, TransactionKey, TransactionLayer,
    Transmit,
};
use sip_transport::{TransportEvent, TransportHandle};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, debug_span, trace, warn, Span};

use super::{Command, Counters, EndpointError, ServerEvent, ServerTransaction, StatelessResponder};

struct Client {
    responses: Option<mpsc::UnboundedSender<Message>>,
    ended: Option<oneshot::Sender<TerminationReason>>,
    target: Target,
    span: Span,
}

pub(crate) struct Driver {
    layer: TransactionLayer,
    transport: TransportHandle,
    transport_events: mpsc::Receiver<TransportEvent>,
    /// For spawned sends to report failures back; weak so that dropping every Endpoint
    /// handle ends the driver.
    cmd_back: mpsc::WeakSender<Command>,
    cmd: mpsc::Receiver<Command>,
    events: mpsc::Sender<ServerEvent>,
    counters: watch::Sender<Counters>,
    clients: HashMap<TransactionKey, Client>,
    /// INVITE server transactions without a final response: the request, to answer a CANCEL
    /// with 487.
    pending_invites: HashMap<TransactionKey, Message>,
    server_spans: HashMap<TransactionKey, Span>,
    shutdown: Option<(Instant, oneshot::Sender<()>)>,
    messages_in: u64,
    messages_out: u64,
    kinds_counted_at: Instant,
    stateless: Option<std::sync::Arc<dyn StatelessResponder>>,
    stateless_responses: u64,
    stateless_methods: Vec<Method<'static>>,
}

fn now() -> Instant {
    // tokio's clock, so that tests with paused time drive the timers.
    tokio::time::Instant::now().into_std()
}

impl Driver {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        layer: TransactionLayer,
        transport: TransportHandle,
        transport_events: mpsc::Receiver<TransportEvent>,
        cmd_back: mpsc::Sender<Command>,
        cmd: mpsc::Receiver<Command>,
        events: mpsc::Sender<ServerEvent>,
        counters: watch::Sender<Counters>,
        stateless: Option<std::sync::Arc<dyn StatelessResponder>>,
        stateless_methods: Vec<Method<'static>>,
    ) -> Driver {
        Driver {
            layer,
            transport,
            transport_events,
            cmd_back: cmd_back.downgrade(),
            cmd,
            events,
            counters,
            clients: HashMap::new(),
            pending_invites: HashMap::new(),
            server_spans: HashMap::new(),
            shutdown: None,
            messages_in: 0,
            messages_out: 0,
            kinds_counted_at: now(),
            stateless,
            stateless_responses: 0,
            stateless_methods,
        }
    }

    pub(crate) async fn run(mut self) {
        loop {
            let deadline = self.layer.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
                    None => std::future::pending().await,
                }
            };
            let shutdown_at = self.shutdown.as_ref().map(|(d, _)| *d);
            let shutdown_sleep = async {
                match shutdown_at {
                    Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                cmd = self.cmd.recv() => match cmd {
                    Some(c) => self.command(c),
                    None => break,
                },
                ev = self.transport_events.recv() => match ev {
                    Some(e) => self.transport_event(e),
                    None => break,
                },
                _ = sleep => self.layer.handle_timeout(now()),
                _ = shutdown_sleep => {
                    let keys: Vec<TransactionKey> = self.clients.keys().chain(self.server_spans.keys()).copied().collect();
                    warn!(live = self.layer.len(), "shutdown deadline: aborting live transactions");
                    for k in keys {
                        self.layer.abort(k);
                    }
                }
            }
            self.flush().await;
            if self.shutdown.is_some() && self.layer.is_empty() {
                break;
            }
        }
        // Everyone waiting hears that it is over.
        if let Some((_, done)) = self.shutdown.take() {
            let _ = done.send(());
        }
        self.transport.shutdown();
    }

    fn command(&mut self, cmd: Command) {
        let t = now();
        match cmd {
            Command::Request {
                request,
                target,
                responses,
                reply,
            } => {
                if self.shutdown.is_some() {
                    let _ = reply.send(Err(EndpointError::Shutdown));
                    return;
                }
                let span = txn_span(&request, &target);
                match self.layer.send_request(t, request, target.clone()) {
                    Ok(key) => {
                        let (ended_tx, ended_rx) = oneshot::channel();
                        span.in_scope(|| debug!(%key, "client transaction started"));
                        self.clients.insert(
                            key,
                            Client {
                                responses: Some(responses),
                                ended: Some(ended_tx),
                                target,
                                span,
                            },
                        );
                        let _ = reply.send(Ok((key, ended_rx)));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            Command::Respond {
                key,
                response,
                reply,
            } => {
                let status = response.status().unwrap_or(0);
                let r = self.layer.respond(t, key, response);
                if r.is_ok() && status >= 200 {
                    self.pending_invites.remove(&key);
                    if let Some(span) = self.server_spans.get(&key) {
                        span.record("status", status);
                    }
                }
                let _ = reply.send(r.map_err(Into::into));
            }
            Command::Stateless {
                message,
                destination,
            } => self.layer.send_stateless(&message, destination),
            Command::Cancel { key, reply } => {
                let r = match (self.layer.build_cancel(key), self.clients.get(&key)) {
                    (Ok(cancel), Some(c)) => {
                        let target = c.target.clone();
                        match self.layer.send_request(t, cancel, target.clone()) {
                            Ok(ck) => {
                                self.clients.insert(
                                    ck,
                                    Client {
                                        responses: None,
                                        ended: None,
                                        target,
                                        span: Span::none(),
                                    },
                                );
                                Ok(())
                            }
                            Err(e) => Err(e.into()),
                        }
                    }
                    (Err(e), _) => Err(e.into()),
                    (Ok(_), None) => Err(EndpointError::Transaction(
                        sip_transaction::Error::UnknownTransaction,
                    )),
                };
                let _ = reply.send(r);
            }
            Command::TransportError { key } => {
                self.layer.handle_transport_error(t, key);
            }
            Command::Shutdown { deadline, done } => {
                tracing::info!(live = self.layer.len(), ?deadline, "endpoint shutting down");
                self.shutdown = Some((t + deadline, done));
            }
        }
    }

    fn transport_event(&mut self, ev: TransportEvent) {
        match ev {
            TransportEvent::Message { msg, flow } => {
                self.messages_in += 1;
                trace!(%flow, "message in");
                if let (Some(responder), true) = (&self.stateless, msg.is_request()) {
                    if msg.method() != Some(Method::Ack) {
                        if let Some(resp) = responder.respond(&msg, flow) {
                            self.stateless_responses += 1;
                            self.layer.send_stateless(&resp, Destination::Flow(flow));
                            return;
                        }
                    }
                }
                if !self.stateless_methods.is_empty()
                    && msg
                        .method()
                        .is_some_and(|m| self.stateless_methods.contains(&m))
                    && msg.via().is_ok()
                {
                    if self.shutdown.is_some() {
                        return;
                    }
                    if let Some(cmd) = self.cmd_back.upgrade() {
                        self.deliver(ServerEvent::Request(ServerTransaction {
                            key: None,
                            request: msg,
                            flow,
                            merged_with: None,
                            cmd,
                        }));
                    }
                    return;
                }
                if let Err(e) = self.layer.handle_message(now(), msg, flow) {
                    debug!(%flow, error = %e, "message not usable by the transaction layer");
                }
            }
            TransportEvent::FlowOpened { flow, .. } => self.deliver(ServerEvent::FlowOpened(flow)),
            TransportEvent::FlowClosed { flow, reason } => {
                self.deliver(ServerEvent::FlowClosed { flow, reason })
            }
        }
    }

    /// Hands an event to the TU without ever blocking the driver: a TU that does not keep up
    /// loses events (counted in the log), and new requests are answered 503 instead.
    fn deliver(&mut self, ev: ServerEvent) {
        if let Err(e) = self.events.try_send(ev) {
            match e {
                mpsc::error::TrySendError::Full(ServerEvent::Request(txn)) => {
                    warn!(key = ?txn.key, "TU not keeping up: 503");
                    self.reject(txn.key, &txn.request, txn.flow, 503);
                }
                mpsc::error::TrySendError::Full(other) => {
                    warn!(event = ?std::mem::discriminant(&other), "TU not keeping up: event dropped")
                }
                mpsc::error::TrySendError::Closed(ServerEvent::Request(txn)) => {
                    self.reject(txn.key, &txn.request, txn.flow, 503);
                }
                mpsc::error::TrySendError::Closed(_) => {}
            }
        }
    }

    fn reject(&mut self, key: Option<TransactionKey>, request: &Message, flow: Flow, status: u16) {
        let mut b = request.response(status);
        if status == 503 {
            b = b.header("Retry-After", "5");
        }
        if let Ok(resp) = b.build() {
            match key {
                Some(key) => {
                    let _ = self.layer.respond(now(), key, resp);
                    self.pending_invites.remove(&key);
                }
                None => self.layer.send_stateless(&resp, Destination::Flow(flow)),
            }
        }
    }

    fn event(&mut self, ev: Event) {
        match ev {
            Event::Request(ir) => {
                let span = txn_span(&ir.request, &ir.flow);
                if self.shutdown.is_some() {
                    self.reject(Some(ir.key), &ir.request, ir.flow, 503);
                    return;
                }
                if ir.request.method() == Some(Method::Invite) {
                    self.pending_invites.insert(ir.key, ir.request.clone());
                }
                self.server_spans.insert(ir.key, span);
                let txn = ServerTransaction {
                    key: Some(ir.key),
                    request: ir.request,
                    flow: ir.flow,
                    merged_with: ir.merged_with,
                    cmd: match self.cmd_back.upgrade() {
                        Some(c) => c,
                        None => return,
                    },
                };
                self.deliver(ServerEvent::Request(txn));
            }
            Event::Cancel { cancel, invite } => {
                let status = if matches!(invite, CancelMatch::NotFound) {
                    481
                } else {
                    200
                };
                if let Ok(resp) = cancel.request.response(status).build() {
                    let _ = self.layer.respond(now(), cancel.key, resp);
                }
                if let CancelMatch::Pending(k) = invite {
                    if let Some(inv) = self.pending_invites.remove(&k) {
                        if let Ok(resp) = inv.response(487).build() {
                            let _ = self.layer.respond(now(), k, resp);
                        }
                    }
                    self.deliver(ServerEvent::Cancelled {
                        invite: k,
                        cancel: cancel.request,
                    });
                }
            }
            Event::Response {
                key,
                response,
                flow,
            } => {
                let status = response.status().unwrap_or(0);
                if let Some(c) = self.clients.get(&key) {
                    if status >= 200 {
                        c.span.record("status", status);
                    }
                    if let Some(tx) = &c.responses {
                        let _ = tx.send(response);
                    }
                } else {
                    trace!(%key, %flow, status, "response for a transaction the TU forgot");
                }
            }
            Event::Ack { request, flow, .. } => self.deliver(ServerEvent::Ack { request, flow }),
            Event::StrayResponse { response, flow } => {
                self.deliver(ServerEvent::StrayResponse { response, flow })
            }
            Event::Terminated { key, reason } => {
                if let Some(mut c) = self.clients.remove(&key) {
                    c.span
                        .in_scope(|| debug!(%key, ?reason, "client transaction ended"));
                    if let Some(e) = c.ended.take() {
                        let _ = e.send(reason);
                    }
                }
                if let Some(span) = self.server_spans.remove(&key) {
                    span.in_scope(|| debug!(%key, ?reason, "server transaction ended"));
                }
                self.pending_invites.remove(&key);
            }
        }
    }

    async fn flush(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(t) = self.layer.poll_transmit() {
                progressed = true;
                self.transmit(t).await;
            }
            while let Some(ev) = self.layer.poll_event() {
                progressed = true;
                self.event(ev);
            }
            if !progressed {
                break;
            }
        }
        self.update_counters();
    }

    async fn transmit(&mut self, t: Transmit) {
        self.messages_out += 1;
        let dest: sip_transport::Destination = match t.destination {
            Destination::Flow(f) => f.into(),
            Destination::Target(target) => target.into(),
        };
        // Datagrams and writes on open connections go out at once; anything that may have to
        // open a connection is sent from its own task so that one slow peer stalls no one.
        let inline = match &dest {
            sip_transport::Destination::Flow(_) => true,
            sip_transport::Destination::Target(target) => target.transport == Transport::Udp,
        };
        if inline {
            if let Err(e) = self.transport.send(dest, t.payload).await {
                debug!(error = %e, "send failed");
                if let Some(key) = t.key {
                    self.layer.handle_transport_error(now(), key);
                }
            }
        } else {
            let transport = self.transport.clone();
            let back = self.cmd_back.clone();
            tokio::spawn(async move {
                if let Err(e) = transport.send(dest, t.payload).await {
                    debug!(error = %e, "send failed");
                    if let (Some(key), Some(back)) = (t.key, back.upgrade()) {
                        let _ = back.send(Command::TransportError { key }).await;
                    }
                }
            });
        }
    }

    fn update_counters(&mut self) {
        let stats = self.layer.stats();
        let mut c = Counters {
            live: self.layer.len(),
            live_by_kind: self.counters.borrow().live_by_kind,
            ..Counters::default()
        };
        let t = now();
        if c.live == 0 || t.duration_since(self.kinds_counted_at) >= Duration::from_millis(250) {
            self.kinds_counted_at = t;
            let states = self.layer.state_counts();
            for (i, kind) in [
                Kind::InviteClient,
                Kind::NonInviteClient,
                Kind::InviteServer,
                Kind::NonInviteServer,
            ]
            .into_iter()
            .enumerate()
            {
                c.live_by_kind[i] = states.of_kind(kind);
            }
        }
        c.created = stats.created;
        c.retransmissions_sent = stats.retransmissions_sent;
        c.retransmissions_absorbed = stats.retransmissions_absorbed;
        c.timeouts = stats.timeouts;
        c.transport_errors = stats.transport_errors;
        c.overload_503 = stats.overload_rejections;
        c.messages_in = self.messages_in;
        c.messages_out = self.messages_out;
        c.stateless_responses = self.stateless_responses;
        self.counters.send_if_modified(|old| {
            let changed = *old != c;
            *old = c;
            changed
        });
    }
}

/// The `tracing` span of one transaction: call_id, branch, method, peer and (later) status.
/// Built only when debug tracing is on (it costs a Via parse and some formatting).
fn txn_span(msg: &Message, peer: &dyn std::fmt::Display) -> Span {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return Span::none();
    }
    let branch = msg
        .via()
        .ok()
        .and_then(|v| v.branch().map(str::to_owned))
        .unwrap_or_default();
    debug_span!(
        "txn",
        call_id = msg.header(HeaderName::CallId).unwrap_or_default(),
        branch = %branch,
        method = msg.method().map(|m| m.as_str()).unwrap_or_default(),
        peer = %peer,
        status = tracing::field::Empty,
    )
}
