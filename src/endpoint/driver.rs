//! The driver task: the only owner of the transaction layer. It reads the clock, sleeps until
//! the next timer, and moves messages between the transport, the layer and the TU. Every RFC
//! rule is in `sip-transaction` and `sip-transport`; this is plumbing.
//!
//! It never awaits a peer or the TU: sends are queued on the transport (one writer task per
//! connection), events go to the TU through [`TuSender`], and the only awaits are in the one
//! `select!` of [`Driver::run`].

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Instant;

use sip_core::{Flow, HeaderName, Message, Method, Target};
use sip_transaction::{
    CancelMatch, Destination, Event, KeyMap, Kind, State, TerminationReason, TransactionKey,
    TransactionLayer, Transmit,
};
use sip_transport::{TransportEvent, TransportHandle};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, debug_span, trace, warn, Span};

use super::handles::{choose_to_tag, ToTag};
use super::identity::{set_to_tag, Identity};
use super::tu::{Delivery, TuSender};
use super::{
    CancelMode, Command, Counters, EndpointError, ServerEvent, ServerTransaction,
    StatelessResponder,
};

/// Where a message's top Via line is (address and length): what tells the request a reply
/// destination was computed for from any other.
fn via_at(msg: &Message) -> Option<(usize, usize)> {
    msg.header_bytes(HeaderName::Via)
        .map(|v| (v.as_ptr() as usize, v.len()))
}

/// Most responses waiting in one client transaction's queue for the TU.
pub(crate) const RESPONSE_QUEUE: usize = 32;

/// Whether the TU asked to cancel an INVITE client transaction (RFC 3261 §9.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CancelState {
    None,
    /// Asked before any provisional: sent when the first one arrives.
    Wanted,
    Sent,
}

struct Client {
    responses: Option<super::queue::ResponseSender>,
    ended: Option<oneshot::Sender<TerminationReason>>,
    target: Target,
    span: Span,
    final_delivered: bool,
    cancel: CancelState,
}

/// A server transaction the TU holds.
struct Server {
    /// Where its responses go over UDP, as the transport computed it when it stamped the
    /// request's Via (`None`: read from each response's Via).
    reply: Option<Target>,
    /// The INVITE, kept until its final response to answer a CANCEL with 487 (in
    /// [`CancelMode::Ua`] only; boxed, as most entries never hold one).
    invite: Option<Box<Message>>,
    to_tag: ToTag,
    span: Span,
}

/// What the driver is started with.
pub(crate) struct Parts {
    pub(crate) layer: TransactionLayer,
    pub(crate) transport: TransportHandle,
    pub(crate) transport_events: mpsc::Receiver<TransportEvent>,
    pub(crate) cmd_back: mpsc::Sender<Command>,
    pub(crate) cmd: mpsc::Receiver<Command>,
    pub(crate) events: mpsc::Sender<ServerEvent>,
    pub(crate) strays: Arc<AtomicUsize>,
    pub(crate) counters: watch::Sender<Counters>,
    pub(crate) stateless: Option<Arc<dyn StatelessResponder>>,
    pub(crate) stateless_methods: Vec<Method<'static>>,
    pub(crate) cancel_mode: CancelMode,
    pub(crate) identity: Identity,
}

pub(crate) struct Driver {
    layer: TransactionLayer,
    transport: TransportHandle,
    transport_events: mpsc::Receiver<TransportEvent>,
    /// Handed to [`ServerTransaction`]s; weak so that dropping every Endpoint handle ends the
    /// driver.
    cmd_back: mpsc::WeakSender<Command>,
    cmd: mpsc::Receiver<Command>,
    tu: TuSender,
    counters: watch::Sender<Counters>,
    clients: KeyMap<Client>,
    servers: KeyMap<Server>,
    /// The reply destination the transport gave with the request being handled, and where
    /// that request's top Via line is (see [`via_at`]); until the end of its flush.
    reply: Option<((usize, usize), Target)>,
    shutdown: Option<(Instant, oneshot::Sender<()>)>,
    stateless: Option<Arc<dyn StatelessResponder>>,
    stateless_methods: Vec<Method<'static>>,
    cancel_mode: CancelMode,
    identity: Identity,
    /// Counters kept here (the rest come from the layer).
    c: Counters,
}

fn now() -> Instant {
    // tokio's clock, so that tests with paused time drive the timers.
    tokio::time::Instant::now().into_std()
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
        None => std::future::pending().await,
    }
}

impl Driver {
    pub(crate) fn new(p: Parts) -> Driver {
        Driver {
            layer: p.layer,
            transport: p.transport,
            transport_events: p.transport_events,
            cmd_back: p.cmd_back.downgrade(),
            cmd: p.cmd,
            tu: TuSender::new(p.events, p.strays),
            counters: p.counters,
            clients: KeyMap::default(),
            servers: KeyMap::default(),
            reply: None,
            shutdown: None,
            stateless: p.stateless,
            stateless_methods: p.stateless_methods,
            cancel_mode: p.cancel_mode,
            identity: p.identity,
            c: Counters::default(),
        }
    }

    pub(crate) async fn run(mut self) {
        loop {
            let timer = self.layer.poll_timeout();
            let deadline = self.shutdown.as_ref().map(|(d, _)| *d);
            let reading = self.tu.accepting();
            tokio::select! {
                biased;
                _ = self.tu.drain() => {}
                cmd = self.cmd.recv() => match cmd {
                    Some(c) => self.command(c),
                    None => break,
                },
                ev = self.transport_events.recv(), if reading => match ev {
                    Some(e) => self.transport_event(e),
                    None => break,
                },
                _ = sleep_until(timer) => self.layer.handle_timeout(now()),
                _ = sleep_until(deadline) => {
                    let n = self.layer.abort_all();
                    warn!(aborted = n, "shutdown deadline: live transactions aborted");
                }
            }
            self.flush();
            if self.shutdown.is_some() && self.layer.is_empty() {
                break;
            }
        }
        if self.tu.backlog() > 0 {
            warn!(
                events = self.tu.backlog(),
                "endpoint stopped with events the TU never read"
            );
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
                let r = self.start_client(t, request, target, responses);
                let _ = reply.send(r);
            }
            Command::Respond {
                key,
                response,
                to_tag,
                reply,
            } => {
                let r = self.respond(t, key, response, &to_tag);
                let _ = reply.send(r);
            }
            Command::Stateless {
                mut message,
                destination,
            } => {
                if let (Destination::Target(target), true) = (&destination, message.is_request()) {
                    // RFC 3261 §18.1.1 for a request sent outside a transaction (an ACK).
                    match self.transport.prepare_request(target, &mut message) {
                        Ok(t) => self.layer.send_stateless(&message, Destination::Target(t)),
                        Err(e) => debug!(error = %e, "stateless request not sent"),
                    }
                } else {
                    self.layer.send_stateless(&message, destination);
                }
            }
            Command::Cancel { key, reply } => {
                let r = self.cancel(t, key);
                let _ = reply.send(r);
            }
            Command::Abandoned {
                key,
                request,
                flow,
                to_tag,
            } => self.abandoned(key, &request, flow, &to_tag),
            Command::Shutdown { deadline, done } => {
                tracing::info!(live = self.layer.len(), ?deadline, "endpoint shutting down");
                self.shutdown = Some((t + deadline, done));
            }
        }
    }

    fn start_client(
        &mut self,
        t: Instant,
        mut request: Message,
        target: Target,
        responses: super::queue::ResponseSender,
    ) -> Result<(TransactionKey, oneshot::Receiver<TerminationReason>), EndpointError> {
        if self.shutdown.is_some() {
            return Err(EndpointError::Shutdown);
        }
        // RFC 3261 §18.1.1 before the transaction exists, so that it knows its transport.
        let target = self.transport.prepare_request(&target, &mut request)?;
        let span = txn_span(&request, &target);
        let key = self.layer.send_request(t, request, target.clone())?;
        let (ended_tx, ended_rx) = oneshot::channel();
        span.in_scope(|| debug!(%key, "client transaction started"));
        self.clients.insert(
            key,
            Client {
                responses: Some(responses),
                ended: Some(ended_tx),
                target,
                span,
                final_delivered: false,
                cancel: CancelState::None,
            },
        );
        Ok((key, ended_rx))
    }

    fn respond(
        &mut self,
        t: Instant,
        key: TransactionKey,
        mut response: Message,
        to_tag: &ToTag,
    ) -> Result<(), EndpointError> {
        let status = response.status().unwrap_or(0);
        if status > 100 {
            // One To-tag for every response to a request (RFC 3261 §8.2.6.2): the first one
            // sent or chosen wins, later ones are made to agree.
            if let Some(sent) = response
                .to()
                .ok()
                .and_then(|to| to.tag().map(Box::<str>::from))
            {
                let chosen = to_tag.get_or_init(|| sent.clone());
                if *chosen != sent {
                    debug!(%key, sent = %sent, chosen = %chosen, "response To-tag replaced by the transaction's");
                    let chosen = chosen.clone();
                    set_to_tag(&mut response, &chosen);
                }
            }
        }
        self.layer.respond(t, key, response)?;
        if status >= 200 {
            if let Some(s) = self.servers.get_mut(key) {
                s.invite = None;
                s.span.record("status", status);
            }
        }
        Ok(())
    }

    /// RFC 3261 §9.1: the CANCEL goes once a provisional has arrived, never before, and not
    /// at all after a final response.
    fn cancel(&mut self, t: Instant, key: TransactionKey) -> Result<(), EndpointError> {
        let Some(c) = self.clients.get_mut(key) else {
            // Ended already: nothing to cancel.
            return Ok(());
        };
        if c.cancel != CancelState::None {
            return Ok(());
        }
        match self.layer.state(key) {
            Some((Kind::InviteClient, State::Calling)) => {
                c.cancel = CancelState::Wanted;
                c.span
                    .in_scope(|| debug!(%key, "CANCEL held until a provisional arrives"));
                Ok(())
            }
            Some((Kind::InviteClient, State::Proceeding)) => self.send_cancel(t, key),
            Some((Kind::InviteClient, _)) => Ok(()),
            Some(_) => Err(EndpointError::Transaction(
                sip_transaction::Error::InvalidState {
                    state: State::Trying,
                    status: 0,
                },
            )),
            None => Ok(()),
        }
    }

    fn send_cancel(&mut self, t: Instant, key: TransactionKey) -> Result<(), EndpointError> {
        let cancel = self.layer.build_cancel(key)?;
        let Some(c) = self.clients.get_mut(key) else {
            return Ok(());
        };
        c.cancel = CancelState::Sent;
        let target = c.target.clone();
        let ck = self.layer.send_request(t, cancel, target.clone())?;
        self.clients.insert(
            ck,
            Client {
                responses: None,
                ended: None,
                target,
                span: Span::none(),
                final_delivered: false,
                cancel: CancelState::None,
            },
        );
        Ok(())
    }

    /// A [`ServerTransaction`] was dropped without a final response: answer 500 so that the
    /// client is not left waiting.
    fn abandoned(
        &mut self,
        key: Option<TransactionKey>,
        request: &Message,
        flow: Flow,
        to_tag: &ToTag,
    ) {
        if request.method() == Some(Method::Ack) {
            return;
        }
        if let Some(k) = key {
            let open = matches!(
                self.layer.state(k),
                Some((_, State::Trying | State::Proceeding))
            );
            if !open {
                return;
            }
        }
        warn!(
            ?key,
            call_id = request.call_id().unwrap_or_default(),
            "request dropped by the TU without a final response: 500"
        );
        self.c.abandoned_500 += 1;
        self.reject(key, request, flow, 500, to_tag);
    }

    fn transport_event(&mut self, ev: TransportEvent) {
        match ev {
            TransportEvent::Message { msg, flow, reply } => {
                // Kept for the server transaction the request may open (request_to_tu, in
                // this message's flush, which forgets it).
                self.reply = reply.and_then(|t| Some((via_at(&msg)?, t)));
                self.message(msg, flow);
            }
            TransportEvent::FlowOpened { flow, .. } => self.deliver(ServerEvent::FlowOpened(flow)),
            TransportEvent::FlowClosed { flow, reason } => {
                self.deliver(ServerEvent::FlowClosed { flow, reason })
            }
            TransportEvent::SendFailed { tag, error } => {
                self.c.send_failures += 1;
                debug!(error = %error, "send failed");
                if tag != 0 {
                    self.layer
                        .handle_transport_error(now(), TransactionKey::from_u64(tag));
                }
            }
        }
    }

    fn message(&mut self, msg: Message, flow: Flow) {
        self.c.messages_in += 1;
        trace!(%flow, "message in");
        if !msg.is_request() {
            // RFC 3261 §18.1.2: a response whose top Via is not ours is dropped.
            if !self.identity.owns_top_via(&msg) {
                self.c.foreign_responses_dropped += 1;
                debug!(%flow, via = msg.header(HeaderName::Via).unwrap_or_default(), "response for another sent-by dropped (RFC 3261 §18.1.2)");
                return;
            }
        } else if msg.method() != Some(Method::Ack) {
            if let Some(resp) = self.stateless.as_ref().and_then(|r| r.respond(&msg, flow)) {
                self.c.stateless_responses += 1;
                self.layer.send_stateless(&resp, Destination::Flow(flow));
                return;
            }
        }
        if !self.stateless_methods.is_empty()
            && msg
                .method()
                .is_some_and(|m| self.stateless_methods.contains(&m))
            && msg.via().is_ok()
        {
            self.request_to_tu(None, msg, flow, None);
            return;
        }
        if let Err(e) = self.layer.handle_message(now(), msg, flow) {
            debug!(%flow, error = %e, "message not usable by the transaction layer");
        }
    }

    /// Hands a new request to the TU, or answers it 503 when the TU is behind or we are
    /// shutting down.
    fn request_to_tu(
        &mut self,
        key: Option<TransactionKey>,
        request: Message,
        flow: Flow,
        merged_with: Option<TransactionKey>,
    ) {
        let to_tag = ToTag::default();
        let Some(cmd) = self.cmd_back.upgrade() else {
            return;
        };
        if self.shutdown.is_some() {
            self.reject(key, &request, flow, 503, &to_tag);
            return;
        }
        let span = match key {
            Some(_) => txn_span(&request, &flow),
            None => Span::none(),
        };
        let invite = (self.cancel_mode == CancelMode::Ua
            && request.method() == Some(Method::Invite))
        .then(|| Box::new(request.clone()));
        // The reply destination the transport gave with this very request (same Via line).
        let reply = match self.reply.take() {
            Some((at, t)) if via_at(&request) == Some(at) => Some(t),
            _ => None,
        };
        let txn = ServerTransaction {
            key,
            request,
            flow,
            merged_with,
            cmd,
            to_tag: to_tag.clone(),
            final_sent: Default::default(),
        };
        match self.tu.try_request(txn) {
            None => {
                if let Some(k) = key {
                    self.servers.insert(
                        k,
                        Server {
                            reply,
                            invite,
                            to_tag,
                            span,
                        },
                    );
                }
            }
            Some(txn) => {
                self.c.tu_overload_503 += 1;
                warn!(key = ?txn.key, backlog = self.tu.backlog(), "TU not keeping up: 503");
                // Answered here: the handle must not answer 500 as it drops.
                txn.final_sent
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                self.reject(txn.key, &txn.request, txn.flow, 503, &txn.to_tag);
            }
        }
    }

    /// Hands the TU an event it needs to keep state right; never lost (see [`TuSender`]).
    fn deliver(&mut self, ev: ServerEvent) {
        match self.tu.deliver(ev) {
            Delivery::Accepted | Delivery::Closed => {}
            Delivery::StrayDropped => {
                self.c.stray_responses_dropped += 1;
                debug!("stray response dropped: too many waiting for the TU");
            }
        }
    }

    fn reject(
        &mut self,
        key: Option<TransactionKey>,
        request: &Message,
        flow: Flow,
        status: u16,
        to_tag: &ToTag,
    ) {
        let tag = choose_to_tag(to_tag, request);
        let mut b = request.response(status).to_tag(&tag);
        if status == 503 {
            b = b.header("Retry-After", "5");
        }
        if let Ok(resp) = b.build() {
            match key {
                Some(key) => {
                    let _ = self.layer.respond(now(), key, resp);
                    if let Some(s) = self.servers.get_mut(key) {
                        s.invite = None;
                    }
                }
                None => self.layer.send_stateless(&resp, Destination::Flow(flow)),
            }
        }
    }

    fn event(&mut self, ev: Event) {
        match ev {
            Event::Request(ir) => {
                self.request_to_tu(Some(ir.key), ir.request, ir.flow, ir.merged_with)
            }
            Event::Cancel { cancel, invite } => {
                self.cancel_received(cancel.key, cancel.request, invite)
            }
            Event::Response {
                key,
                response,
                flow,
            } => self.response(key, response, flow),
            Event::Ack { request, flow, .. } => self.deliver(ServerEvent::Ack { request, flow }),
            Event::StrayResponse { response, flow } => {
                self.deliver(ServerEvent::StrayResponse { response, flow })
            }
            Event::Terminated { key, reason } => {
                if let Some(mut c) = self.clients.remove(key) {
                    c.span
                        .in_scope(|| debug!(%key, ?reason, "client transaction ended"));
                    if let Some(e) = c.ended.take() {
                        let _ = e.send(reason);
                    }
                }
                if let Some(s) = self.servers.remove(key) {
                    s.span
                        .in_scope(|| debug!(%key, ?reason, "server transaction ended"));
                }
            }
        }
    }

    /// RFC 3261 §9.2: a CANCEL is answered 200 (481 when it matches nothing). In
    /// [`CancelMode::Ua`] the INVITE is answered 487 here; in [`CancelMode::Proxy`] that is
    /// the TU's (§16.10: the proxy cancels its branches and forwards their answer).
    fn cancel_received(
        &mut self,
        cancel_key: TransactionKey,
        cancel: Message,
        invite: CancelMatch,
    ) {
        let status = if matches!(invite, CancelMatch::NotFound) {
            481
        } else {
            200
        };
        if let Ok(resp) = cancel.response(status).build() {
            let _ = self.layer.respond(now(), cancel_key, resp);
        }
        let CancelMatch::Pending(k) = invite else {
            return;
        };
        self.c.cancels_received += 1;
        if self.cancel_mode == CancelMode::Ua {
            if let Some(s) = self.servers.get_mut(k) {
                if let Some(inv) = s.invite.take() {
                    let tag = choose_to_tag(&s.to_tag, &inv);
                    if let Ok(resp) = inv.response(487).to_tag(&tag).build() {
                        let _ = self.layer.respond(now(), k, resp);
                    }
                }
            }
        }
        self.deliver(ServerEvent::Cancelled { invite: k, cancel });
    }

    fn response(&mut self, key: TransactionKey, response: Message, flow: Flow) {
        let status = response.status().unwrap_or(0);
        let Some(c) = self.clients.get_mut(key) else {
            trace!(%key, status, "response for a transaction the TU forgot");
            return;
        };
        let first_final = status >= 200 && !c.final_delivered;
        if status >= 200 {
            c.span.record("status", status);
            c.final_delivered = true;
            if c.cancel == CancelState::Wanted {
                c.cancel = CancelState::None;
            }
        }
        let cancel_now = status < 200 && c.cancel == CancelState::Wanted;
        // A 2xx the TU no longer listens for (it closed the transaction's queue) goes to it
        // as a stray response, which it must still ACK or forward (RFC 3261 §13.2.2.4,
        // RFC 6026 §7.2).
        let mut unheard = None;
        // (A CANCEL's transaction has no queue: its answer is nobody's.)
        if let Some(tx) = &c.responses {
            // Room is kept for the first final response; provisionals and repeated 2xx
            // beyond that are dropped (counted) when the TU does not read.
            let room = tx.capacity();
            if first_final || room > 1 {
                match tx.try_send(Box::new(response)) {
                    Ok(()) => {}
                    Err((super::queue::SendError::Full, _)) => self.c.responses_dropped += 1,
                    Err((super::queue::SendError::Closed, m)) => unheard = Some(*m),
                }
            } else {
                self.c.responses_dropped += 1;
            }
        }
        if cancel_now {
            if let Err(e) = self.send_cancel(now(), key) {
                debug!(%key, error = %e, "held CANCEL not sent");
            }
        }
        if let Some(response) = unheard.filter(|_| (200..300).contains(&status)) {
            self.deliver(ServerEvent::StrayResponse { response, flow });
        }
    }

    fn flush(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(t) = self.layer.poll_transmit() {
                progressed = true;
                self.transmit(t);
            }
            while let Some(ev) = self.layer.poll_event() {
                progressed = true;
                self.event(ev);
            }
            if !progressed {
                break;
            }
        }
        self.reply = None;
        self.update_counters();
    }

    /// RFC 3261 §18 in one place: the transport routes a response per §18.2.2 and queues
    /// everything; nothing here waits.
    fn transmit(&mut self, t: Transmit) {
        self.c.messages_out += 1;
        let tag = t.key.map(|k| k.as_u64());
        let r = match t.destination {
            Destination::Flow(f) if is_response(&t.payload) => {
                let known = t
                    .key
                    .and_then(|k| self.servers.get(k))
                    .and_then(|s| s.reply.clone());
                match known {
                    Some(target) => {
                        self.transport
                            .enqueue_response_at(t.payload, target, Some(f), tag)
                    }
                    None => self.transport.enqueue_response(t.payload, Some(f), tag),
                }
            }
            Destination::Flow(f) => self.transport.enqueue(f, t.payload, tag),
            Destination::Target(target) => self.transport.enqueue(target, t.payload, tag),
        };
        if let Err(e) = r {
            self.c.send_failures += 1;
            debug!(error = %e, "send failed");
            if let Some(key) = t.key {
                self.layer.handle_transport_error(now(), key);
            }
        }
    }

    fn update_counters(&mut self) {
        let stats = self.layer.stats();
        let mut c = Counters {
            live: self.layer.len(),
            ..self.c
        };
        for (i, kind) in [
            Kind::InviteClient,
            Kind::NonInviteClient,
            Kind::InviteServer,
            Kind::NonInviteServer,
        ]
        .into_iter()
        .enumerate()
        {
            c.live_by_kind[i] = self.layer.live_of_kind(kind);
        }
        c.created = stats.created;
        c.retransmissions_sent = stats.retransmissions_sent;
        c.retransmissions_absorbed = stats.retransmissions_absorbed;
        c.timeouts = stats.timeouts;
        c.transport_errors = stats.transport_errors;
        c.overload_503 = stats.overload_rejections;
        c.tu_backlog = self.tu.backlog();
        c.tu_backlog_peak = self.tu.backlog_peak;
        c.reading_paused = !self.tu.accepting();
        // Published for readers of Endpoint::counters; watchers are woken only when the
        // endpoint becomes idle (Endpoint::wait_idle waits for that), not on every change:
        // the notification cost as much as the rest of this.
        self.counters.send_if_modified(|old| {
            let idle_now = c.live == 0 && old.live != 0;
            *old = c;
            idle_now
        });
    }
}

fn is_response(payload: &[u8]) -> bool {
    payload.starts_with(b"SIP/")
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
