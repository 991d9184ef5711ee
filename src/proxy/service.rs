//! The async shell: the proxy core on an [`Endpoint`]. One task per request holds its
//! [`ResponseContext`]; one task per branch pumps its client transaction's responses into it.
//! Every protocol decision is the core's; this file moves messages and sleeps until Timer C.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use sip_auth::MemoryStore;
use sip_core::{Flow, Message, Method};
use sip_transaction::{Destination, TransactionKey};
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use super::context::{Action, BranchEnd, BranchId, ResponseContext};
use super::forward::{Forwarded, NextHop};
use super::shell::{
    end_reason, hop_target, next_response, now, record_latency, response_destination, sleep_until,
    wait_cancel,
};
use super::stateless;
use super::stats::{inc, ProxyCounters, ProxyStats};
use super::target::{ProxyTarget, Router};
use super::{AuthCheck, ProxyAuth, ProxyConfig, ProxyCore, Routed, Step};
use crate::endpoint::{ClientTransaction, Endpoint, ServerEvent, ServerTransaction};

/// What a branch's pump tells its request's task. The message is boxed: tokio's unbounded
/// channel allocates its first block of 32 slots at once, and 32 unboxed messages are 20 KB.
enum Input {
    Response(BranchId, Box<Message>),
    Ended(BranchId, BranchEnd),
}

/// One request in the proxy, boxed when it arrives: its server transaction, response
/// context and CANCEL watch.
struct Call {
    txn: ServerTransaction,
    ctx: ResponseContext,
    flow: Flow,
    is_invite: bool,
    started: Instant,
    /// Arrival, until the first final response went upstream (for the latency metric).
    unanswered: Option<Instant>,
    /// The INVITE's key in `pending` (§16.10).
    key: Option<TransactionKey>,
    cancelled: Option<oneshot::Receiver<()>>,
}

/// Where [`Proxy::prepare`] left a request.
enum Prepared {
    /// Answered or dropped.
    Done,
    /// One branch, started (`None`: it could not be, and the context has its answer).
    Single(Option<ClientTransaction>),
    /// Several targets: a context with a pump per branch.
    Fork(Box<Message>, Vec<Vec<ProxyTarget>>),
}

/// A stateful proxy running on an endpoint.
pub struct Proxy<R: Router> {
    endpoint: Endpoint,
    core: ProxyCore,
    router: R,
    auth: Option<ProxyAuth<MemoryStore>>,
    stats: ProxyStats,
    /// INVITE server transactions with a live context, for CANCEL (§16.10).
    pending: Mutex<HashMap<TransactionKey, oneshot::Sender<()>, foldhash::fast::RandomState>>,
}

/// Configuration of a [`Proxy`].
pub struct ProxyBuilder<R: Router> {
    config: ProxyConfig,
    router: R,
    auth: Option<ProxyAuth<MemoryStore>>,
}

impl<R: Router> ProxyBuilder<R> {
    /// A proxy with this core configuration and router.
    pub fn new(config: ProxyConfig, router: R) -> ProxyBuilder<R> {
        ProxyBuilder {
            config,
            router,
            auth: None,
        }
    }

    /// Challenge the domain's own users (§22.3).
    pub fn auth(mut self, auth: ProxyAuth<MemoryStore>) -> Self {
        self.auth = Some(auth);
        self
    }

    /// The proxy on `endpoint`. When the endpoint's transport validates what it delivers
    /// (its default), the core's step 1 does not run the full syntax check a second time
    /// ([`ValidationConfig::check_syntax`](super::ValidationConfig::check_syntax)).
    pub fn build(self, endpoint: Endpoint) -> Arc<Proxy<R>> {
        let mut config = self.config;
        if endpoint.validates_inbound() {
            config.validation.check_syntax = false;
        }
        Arc::new(Proxy {
            endpoint,
            core: ProxyCore::new(config),
            router: self.router,
            auth: self.auth,
            stats: ProxyStats::default(),
            pending: Mutex::new(HashMap::default()),
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<R: Router> Proxy<R> {
    /// The counters.
    pub fn counters(&self) -> ProxyCounters {
        self.stats.snapshot()
    }

    /// The live statistics.
    pub fn stats(&self) -> &ProxyStats {
        &self.stats
    }

    /// The core.
    pub fn core(&self) -> &ProxyCore {
        &self.core
    }

    /// The authenticator, if any.
    pub fn auth(&self) -> Option<&ProxyAuth<MemoryStore>> {
        self.auth.as_ref()
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Handles one event of the endpoint meant for the proxy (requests are spawned).
    pub async fn handle_event(self: &Arc<Self>, ev: ServerEvent) {
        match ev {
            ServerEvent::Request(txn) => {
                let call = self.call(txn);
                tokio::spawn(self.clone().handle_call(call));
            }
            ServerEvent::Cancelled { invite, .. } => self.handle_cancel(invite),
            ServerEvent::Ack { request, flow } => self.handle_ack(request, flow).await,
            ServerEvent::StrayResponse { response, flow } => {
                self.handle_stray(response, flow).await
            }
            ServerEvent::FlowOpened(_) | ServerEvent::FlowClosed { .. } => {}
        }
    }

    async fn answer(&self, txn: &ServerTransaction, resp: Message, started: Instant) {
        inc(&self.stats.answered_locally);
        record_latency(txn.request(), now().saturating_duration_since(started));
        if resp.status() == Some(482) {
            inc(&self.stats.loops);
        }
        if let Err(e) = txn.respond(resp).await {
            debug!(error = %e, "response not sent");
        }
    }

    /// A request in its server transaction: §16.3–16.5, then the branches.
    pub async fn handle_request(self: Arc<Self>, txn: ServerTransaction) {
        let call = self.call(txn);
        self.handle_call(call).await
    }

    fn call(&self, txn: ServerTransaction) -> Box<Call> {
        let ctx = ResponseContext::new(txn.request(), self.core.config().timer_c);
        Box::new(Call {
            flow: txn.flow(),
            is_invite: txn.request().method() == Some(Method::Invite),
            txn,
            ctx,
            started: now(),
            unanswered: None,
            key: None,
            cancelled: None,
        })
    }

    /// [`handle_request`](Self::handle_request) on the boxed state. The steps that do not
    /// wait for the network's answers (routing, sending, answering) run in boxed futures of
    /// their own, so that the task of a live request holds little more than a pointer to
    /// its [`Call`] while it waits for responses.
    async fn handle_call(self: Arc<Self>, mut call: Box<Call>) {
        match Box::pin(self.prepare(&mut call)).await {
            Prepared::Done => {}
            Prepared::Single(ct) => Box::pin(self.run_single(call, ct)).await,
            Prepared::Fork(req, groups) => Box::pin(self.run_context(call, *req, groups)).await,
        }
    }

    /// §16.3–16.5 and, for a single target, its branch started.
    async fn prepare(&self, call: &mut Call) -> Prepared {
        inc(&self.stats.requests);
        let started = call.started;
        let (req, groups) = match self.core.receive(call.txn.request().clone(), &call.flow) {
            Step::Respond(r) => {
                Box::pin(self.answer(&call.txn, r, started)).await;
                return Prepared::Done;
            }
            Step::Drop => return Prepared::Done,
            Step::Forward(req, target) => (req, vec![vec![target]]),
            Step::Route(mut req) => {
                if let Some(auth) = &self.auth {
                    match auth.check(&req, call.flow.remote.ip(), SystemTime::now()) {
                        AuthCheck::Refuse(r) => {
                            if let Some(resp) = r.response(&req) {
                                Box::pin(self.answer(&call.txn, resp, started)).await;
                            }
                            return Prepared::Done;
                        }
                        AuthCheck::Proceed(Some(_)) => {
                            auth.consume_credentials(&mut req);
                        }
                        AuthCheck::Proceed(None) => {}
                    }
                }
                let decision = Box::pin(self.router.route(&req, Instant::now())).await;
                match self.core.decide(&req, decision) {
                    Routed::Fork(groups) => (req, groups),
                    Routed::Respond(resp) => {
                        Box::pin(self.answer(&call.txn, resp, started)).await;
                        return Prepared::Done;
                    }
                }
            }
        };
        call.unanswered = Some(started);
        self.watch_cancel(call);
        self.stats.contexts_live.fetch_add(1, Ordering::Relaxed);
        // One target (in-dialog requests, single-contact users): no pump task.
        let mut groups = groups;
        if let [group] = groups.as_mut_slice() {
            if group.len() == 1 {
                if let Some(target) = group.pop() {
                    let ct = Box::pin(self.start_single(call, &req, target)).await;
                    return Prepared::Single(ct);
                }
            }
        }
        Prepared::Fork(Box::new(req), groups)
    }

    /// Starts the one branch of a single-target request; `None` when it could not be sent
    /// (the context then has its 503).
    async fn start_single(
        &self,
        call: &mut Call,
        req: &Message,
        target: ProxyTarget,
    ) -> Option<ClientTransaction> {
        let id = call.ctx.add_branch(now())?;
        let ct = match self.core.forward(req, Some(&call.flow), &target, id) {
            Ok(f) => self.send_branch(f).await,
            Err(e) => {
                debug!(error = %e, target = %target.uri, "cannot forward");
                None
            }
        };
        if ct.is_some() {
            self.stats.branches_live.fetch_add(1, Ordering::Relaxed);
        } else {
            let actions =
                call.ctx
                    .on_branch_ended(call.txn.request(), id, BranchEnd::TransportError);
            Box::pin(self.apply_single(call, actions, &mut None)).await;
        }
        ct
    }

    /// Carries out the core's actions for a single-target request.
    async fn apply_single(
        &self,
        call: &mut Call,
        actions: Vec<Action>,
        ct: &mut Option<ClientTransaction>,
    ) {
        for a in actions {
            match a {
                Action::Upstream(m) => self.upstream(call, m).await,
                Action::Cancel(_) => {
                    if let Some(c) = ct {
                        inc(&self.stats.cancels_sent);
                        if let Err(e) = c.cancel().await {
                            debug!(error = %e, "CANCEL not sent");
                        }
                    }
                }
                Action::Abandon(_) => *ct = None,
                Action::Fork(_) => {}
            }
        }
    }

    /// The response context of a request with one target, driven in this task: the branch's
    /// responses are read here, then (an INVITE's client transaction lives on for 2xx
    /// retransmissions) forwarded statelessly until it ends.
    async fn run_single(self: &Arc<Self>, mut call: Box<Call>, mut ct: Option<ClientTransaction>) {
        let had_branch = ct.is_some();
        while !call.ctx.is_done() {
            let deadline = call.ctx.poll_timeout();
            let actions = tokio::select! {
                r = next_response(&mut ct) => match r {
                    Some(m) => call.ctx.on_response(call.txn.request(), 0, *m, now()),
                    None => {
                        let why = Box::pin(end_reason(ct.take())).await;
                        call.ctx.on_branch_ended(call.txn.request(), 0, why)
                    }
                },
                _ = wait_cancel(&mut call.cancelled) => {
                    call.cancelled = None;
                    call.ctx.on_cancel(call.txn.request())
                }
                _ = sleep_until(deadline) => {
                    let (a, fired) = call.ctx.handle_timeout(call.txn.request(), now());
                    self.stats.timer_c.fetch_add(fired as u64, Ordering::Relaxed);
                    a
                }
            };
            if !actions.is_empty() {
                Box::pin(self.apply_single(&mut call, actions, &mut ct)).await;
            }
        }
        self.end_call(&call);
        drop(call);
        // The answered request keeps no task: what the branch still has queued is forwarded
        // now, and a later 2xx retransmission (RFC 6026 §7.2) comes as a stray response,
        // forwarded statelessly the same way (handle_stray).
        if let Some(c) = ct {
            for m in c.close() {
                Box::pin(self.forward_late(*m)).await;
            }
        }
        if had_branch {
            self.stats.branches_live.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The request's context is over: no more CANCEL for it.
    fn end_call(&self, call: &Call) {
        if let Some(k) = call.key {
            lock(&self.pending).remove(&k);
        }
        self.stats.contexts_live.fetch_sub(1, Ordering::Relaxed);
    }

    /// For an INVITE, registers the server transaction for CANCEL: the call's receiver
    /// fires when a CANCEL matches it.
    fn watch_cancel(&self, call: &mut Call) {
        if let Some(k) = call.txn.key().filter(|_| call.is_invite) {
            let (tx, rx) = oneshot::channel();
            lock(&self.pending).insert(k, tx);
            call.key = Some(k);
            call.cancelled = Some(rx);
        }
    }

    /// Sends a branch's request in a client transaction.
    async fn send_branch(&self, f: Forwarded) -> Option<ClientTransaction> {
        let Forwarded { request, hop } = f;
        let target = hop_target(&hop).await?;
        drop(hop);
        match self.endpoint.request(request, target).await {
            Ok(ct) => {
                inc(&self.stats.forwarded);
                Some(ct)
            }
            Err(e) => {
                debug!(error = %e, "branch not started");
                None
            }
        }
    }

    /// The response context of one request, until its final went upstream and every branch
    /// has its final.
    async fn run_context(
        self: &Arc<Self>,
        mut call: Box<Call>,
        req: Message,
        groups: Vec<Vec<ProxyTarget>>,
    ) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut groups = groups.into_iter();
        let first = groups.next().unwrap_or_default();
        call.ctx.queue_groups(groups);
        let mut cancels: Vec<Option<mpsc::UnboundedSender<()>>> = Vec::new();
        let mut actions = self.fork(&mut call, &req, first, &tx, &mut cancels).await;
        loop {
            for a in std::mem::take(&mut actions) {
                match a {
                    Action::Upstream(m) => Box::pin(self.upstream(&mut call, m)).await,
                    Action::Cancel(b) => {
                        if let Some(Some(c)) = cancels.get(b) {
                            inc(&self.stats.cancels_sent);
                            let _ = c.send(());
                        }
                    }
                    Action::Abandon(b) => {
                        if let Some(c) = cancels.get_mut(b) {
                            *c = None;
                        }
                    }
                    Action::Fork(targets) => {
                        let more = self.fork(&mut call, &req, targets, &tx, &mut cancels).await;
                        actions.extend(more);
                    }
                }
            }
            if !actions.is_empty() {
                continue;
            }
            if call.ctx.is_done() {
                break;
            }
            let deadline = call.ctx.poll_timeout();
            let input = tokio::select! {
                i = rx.recv() => i,
                _ = wait_cancel(&mut call.cancelled) => {
                    call.cancelled = None;
                    actions = call.ctx.on_cancel(call.txn.request());
                    continue;
                }
                _ = sleep_until(deadline) => {
                    let (a, fired) = call.ctx.handle_timeout(call.txn.request(), now());
                    self.stats.timer_c.fetch_add(fired as u64, Ordering::Relaxed);
                    actions = a;
                    continue;
                }
            };
            actions = match input {
                Some(Input::Response(b, m)) => {
                    call.ctx.on_response(call.txn.request(), b, *m, now())
                }
                Some(Input::Ended(b, why)) => call.ctx.on_branch_ended(call.txn.request(), b, why),
                None => break,
            };
        }
        self.end_call(&call);
    }

    /// Starts one branch per target (§16.6); a target that cannot be reached counts as a
    /// branch that ended with 503 (§16.9).
    async fn fork(
        self: &Arc<Self>,
        call: &mut Call,
        req: &Message,
        targets: Vec<ProxyTarget>,
        tx: &mpsc::UnboundedSender<Input>,
        cancels: &mut Vec<Option<mpsc::UnboundedSender<()>>>,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        for target in targets {
            let Some(id) = call.ctx.add_branch(now()) else {
                break;
            };
            let started = match self.core.forward(req, Some(&call.flow), &target, id) {
                Ok(f) => Box::pin(self.start_branch(id, f, tx.clone())).await,
                Err(e) => {
                    debug!(error = %e, target = %target.uri, "cannot forward");
                    None
                }
            };
            if started.is_none() {
                actions.extend(call.ctx.on_branch_ended(
                    call.txn.request(),
                    id,
                    BranchEnd::TransportError,
                ));
            }
            cancels.push(started);
        }
        actions
    }

    async fn start_branch(
        self: &Arc<Self>,
        id: BranchId,
        f: Forwarded,
        tx: mpsc::UnboundedSender<Input>,
    ) -> Option<mpsc::UnboundedSender<()>> {
        let ct = self.send_branch(f).await?;
        let (cancel_tx, cancel_rx) = mpsc::unbounded_channel();
        let me = self.clone();
        tokio::spawn(async move { me.pump(id, ct, tx, cancel_rx).await });
        Some(cancel_tx)
    }

    /// Moves a branch's responses into its context, CANCELs it when asked, and forwards
    /// statelessly what comes after the context is gone (2xx retransmissions).
    async fn pump(
        self: Arc<Self>,
        id: BranchId,
        mut ct: ClientTransaction,
        tx: mpsc::UnboundedSender<Input>,
        mut cancel: mpsc::UnboundedReceiver<()>,
    ) {
        self.stats.branches_live.fetch_add(1, Ordering::Relaxed);
        let mut cancel_open = true;
        loop {
            tokio::select! {
                r = ct.next_response_boxed() => match r {
                    Some(m) => {
                        if let Err(mpsc::error::SendError(Input::Response(_, m))) =
                            tx.send(Input::Response(id, m))
                        {
                            Box::pin(self.forward_late(*m)).await;
                        }
                    }
                    None => {
                        let _ = tx.send(Input::Ended(id, end_reason(Some(ct)).await));
                        break;
                    }
                },
                c = cancel.recv(), if cancel_open => match c {
                    Some(()) => {
                        if let Err(e) = ct.cancel().await {
                            debug!(error = %e, "CANCEL not sent");
                        }
                    }
                    None => cancel_open = false,
                },
            }
        }
        self.stats.branches_live.fetch_sub(1, Ordering::Relaxed);
    }

    /// A response for a context that has finished (a 2xx retransmission): §16.11.
    async fn forward_late(&self, resp: Message) {
        if let Some((m, hop)) = self.core.forward_response(resp) {
            if let Some(d) = response_destination(hop).await {
                inc(&self.stats.responses_stateless);
                let _ = self.endpoint.send_stateless(m, d).await;
            }
        }
    }

    /// Sends a response upstream on the server transaction; a 2xx the transaction no longer
    /// takes goes statelessly to the upstream Via.
    async fn upstream(&self, call: &mut Call, m: Message) {
        let status = m.status().unwrap_or(0);
        // The first final is counted as it is handed to the server transaction (before its
        // send completes): whoever sees it upstream then also sees it counted.
        if status >= 200 {
            if let Some(t0) = call.unanswered.take() {
                record_latency(call.txn.request(), now().saturating_duration_since(t0));
                self.stats.best(status);
                if call.is_invite {
                    inc(&self.stats.invites_completed);
                }
            }
        }
        let is_2xx = (200..300).contains(&status);
        let retry = if is_2xx { Some(m.clone()) } else { None };
        match call.txn.respond(m).await {
            Ok(()) => {}
            Err(e) => {
                debug!(error = %e, status, "response not taken by the server transaction");
                if let Some(m) = retry {
                    Box::pin(self.upstream_stateless(m)).await;
                }
            }
        }
    }

    /// A 2xx that the server transaction no longer takes, to the upstream Via.
    async fn upstream_stateless(&self, m: Message) {
        if let Ok(hop) = stateless::upstream_hop(&m) {
            if let Some(d) = response_destination(hop).await {
                let _ = self.endpoint.send_stateless(m, d).await;
            }
        }
    }

    /// A CANCEL matched a pending INVITE (§16.10): its context cancels the branches.
    pub fn handle_cancel(&self, invite: TransactionKey) {
        inc(&self.stats.cancels);
        if let Some(tx) = lock(&self.pending).remove(&invite) {
            let _ = tx.send(());
        }
    }

    /// The ACK of a 2xx: loose-routed statelessly (§16.11).
    pub async fn handle_ack(&self, ack: Message, flow: Flow) {
        let Some(f) = self.core.forward_stateless(ack, &flow) else {
            return;
        };
        let dest = match &f.hop {
            NextHop::Flow(fl) => Some(Destination::Flow(*fl)),
            hop => hop_target(hop).await.map(Destination::Target),
        };
        if let Some(d) = dest {
            inc(&self.stats.forwarded_stateless);
            let _ = self.endpoint.send_stateless(f.request, d).await;
        }
    }

    /// A response matching no client transaction: forwarded statelessly when its top Via is
    /// ours (§16.11), dropped otherwise.
    pub async fn handle_stray(&self, resp: Message, _flow: Flow) {
        self.forward_late(resp).await;
    }
}
