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

/// A stateful proxy running on an endpoint.
pub struct Proxy<R: Router> {
    endpoint: Endpoint,
    core: ProxyCore,
    router: R,
    auth: Option<ProxyAuth<MemoryStore>>,
    stats: ProxyStats,
    /// INVITE server transactions with a live context, for CANCEL (§16.10).
    pending: Mutex<HashMap<TransactionKey, oneshot::Sender<()>>>,
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

    /// The proxy on `endpoint`.
    pub fn build(self, endpoint: Endpoint) -> Arc<Proxy<R>> {
        Arc::new(Proxy {
            endpoint,
            core: ProxyCore::new(self.config),
            router: self.router,
            auth: self.auth,
            stats: ProxyStats::default(),
            pending: Mutex::new(HashMap::new()),
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
                let me = self.clone();
                tokio::spawn(async move { me.handle_request(txn).await });
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
        inc(&self.stats.requests);
        let started = now();
        let flow = txn.flow();
        let (req, groups) = match self.core.receive(txn.request().clone(), &flow) {
            Step::Respond(r) => return self.answer(&txn, r, started).await,
            Step::Drop => return,
            Step::Forward(req, target) => (req, vec![vec![target]]),
            Step::Route(req) => {
                if let Some(auth) = &self.auth {
                    if let AuthCheck::Refuse(r) =
                        auth.check(&req, flow.remote.ip(), SystemTime::now())
                    {
                        if let Some(resp) = r.response(&req) {
                            self.answer(&txn, resp, started).await;
                        }
                        return;
                    }
                }
                let decision = self.router.route(&req, Instant::now()).await;
                match self.core.decide(&req, decision) {
                    Routed::Fork(groups) => (req, groups),
                    Routed::Respond(resp) => return self.answer(&txn, resp, started).await,
                }
            }
        };
        // One target (in-dialog requests, single-contact users): no pump task.
        if groups.len() == 1 && groups.first().is_some_and(|g| g.len() == 1) {
            if let Some(target) = groups.into_iter().flatten().next() {
                self.run_single(txn, req, target, started).await;
            }
            return;
        }
        self.run_context(txn, req, groups, started).await;
    }

    /// The response context of a request with one target, driven in this task: the branch's
    /// responses are read here, then (an INVITE's client transaction lives on for 2xx
    /// retransmissions) forwarded statelessly until it ends.
    async fn run_single(
        self: &Arc<Self>,
        txn: ServerTransaction,
        req: Message,
        target: ProxyTarget,
        started: Instant,
    ) {
        let mut unanswered = Some(started);
        let flow = txn.flow();
        let is_invite = req.method() == Some(Method::Invite);
        let (key, mut cancelled) = self.watch_cancel(&txn, is_invite);
        self.stats.contexts_live.fetch_add(1, Ordering::Relaxed);
        let mut ctx = ResponseContext::new(req.clone(), self.core.config().timer_c);
        let mut ct: Option<ClientTransaction> = None;
        let mut actions = Vec::new();
        if let Some(id) = ctx.add_branch(now()) {
            ct = match self.core.forward(&req, Some(&flow), &target, id) {
                Ok(f) => self.send_branch(f).await,
                Err(e) => {
                    debug!(error = %e, target = %target.uri, "cannot forward");
                    None
                }
            };
            if ct.is_none() {
                actions = ctx.on_branch_ended(id, BranchEnd::TransportError);
            } else {
                self.stats.branches_live.fetch_add(1, Ordering::Relaxed);
            }
        }
        let had_branch = ct.is_some();
        loop {
            for a in std::mem::take(&mut actions) {
                match a {
                    Action::Upstream(m) => self.upstream(&txn, m, is_invite, &mut unanswered).await,
                    Action::Cancel(_) => {
                        if let Some(c) = &ct {
                            inc(&self.stats.cancels_sent);
                            if let Err(e) = c.cancel().await {
                                debug!(error = %e, "CANCEL not sent");
                            }
                        }
                    }
                    Action::Abandon(_) => ct = None,
                    Action::Fork(_) => {}
                }
            }
            if ctx.is_done() {
                break;
            }
            let deadline = ctx.poll_timeout();
            tokio::select! {
                r = next_response(&mut ct) => {
                    actions = match r {
                        Some(m) => ctx.on_response(0, m, now()),
                        None => {
                            let why = end_reason(ct.take()).await;
                            ctx.on_branch_ended(0, why)
                        }
                    };
                }
                _ = wait_cancel(&mut cancelled) => {
                    cancelled = None;
                    actions = ctx.on_cancel();
                }
                _ = sleep_until(deadline) => {
                    let (a, fired) = ctx.handle_timeout(now());
                    self.stats.timer_c.fetch_add(fired as u64, Ordering::Relaxed);
                    actions = a;
                }
            }
        }
        if let Some(k) = key {
            lock(&self.pending).remove(&k);
        }
        self.stats.contexts_live.fetch_sub(1, Ordering::Relaxed);
        drop(txn);
        if let Some(mut c) = ct {
            while let Some(m) = c.next_response().await {
                self.forward_late(m).await;
            }
        }
        if had_branch {
            self.stats.branches_live.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// For an INVITE, registers the server transaction for CANCEL; returns its key and the
    /// receiver that fires when a CANCEL matches it.
    fn watch_cancel(
        &self,
        txn: &ServerTransaction,
        is_invite: bool,
    ) -> (Option<TransactionKey>, Option<oneshot::Receiver<()>>) {
        match txn.key().filter(|_| is_invite) {
            Some(k) => {
                let (tx, rx) = oneshot::channel();
                lock(&self.pending).insert(k, tx);
                (Some(k), Some(rx))
            }
            None => (None, None),
        }
    }

    /// Sends a branch's request in a client transaction.
    async fn send_branch(&self, f: Forwarded) -> Option<ClientTransaction> {
        let target = hop_target(&f.hop).await?;
        match self.endpoint.request(f.request, target).await {
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
        txn: ServerTransaction,
        req: Message,
        groups: Vec<Vec<ProxyTarget>>,
        started: Instant,
    ) {
        let mut unanswered = Some(started);
        let flow = txn.flow();
        let is_invite = req.method() == Some(Method::Invite);
        let (key, mut cancelled) = self.watch_cancel(&txn, is_invite);
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.stats.contexts_live.fetch_add(1, Ordering::Relaxed);
        let mut ctx = ResponseContext::new(req.clone(), self.core.config().timer_c);
        let mut groups = groups.into_iter();
        let first = groups.next().unwrap_or_default();
        ctx.queue_groups(groups);
        let mut cancels: Vec<Option<mpsc::UnboundedSender<()>>> = Vec::new();
        let mut actions = self
            .fork(&mut ctx, &req, &flow, first, &tx, &mut cancels)
            .await;
        loop {
            for a in std::mem::take(&mut actions) {
                match a {
                    Action::Upstream(m) => self.upstream(&txn, m, is_invite, &mut unanswered).await,
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
                        let more = self
                            .fork(&mut ctx, &req, &flow, targets, &tx, &mut cancels)
                            .await;
                        actions.extend(more);
                    }
                }
            }
            if !actions.is_empty() {
                continue;
            }
            if ctx.is_done() {
                break;
            }
            let deadline = ctx.poll_timeout();
            let input = tokio::select! {
                i = rx.recv() => i,
                _ = wait_cancel(&mut cancelled) => {
                    cancelled = None;
                    actions = ctx.on_cancel();
                    continue;
                }
                _ = sleep_until(deadline) => {
                    let (a, fired) = ctx.handle_timeout(now());
                    self.stats.timer_c.fetch_add(fired as u64, Ordering::Relaxed);
                    actions = a;
                    continue;
                }
            };
            actions = match input {
                Some(Input::Response(b, m)) => ctx.on_response(b, *m, now()),
                Some(Input::Ended(b, why)) => ctx.on_branch_ended(b, why),
                None => break,
            };
        }
        if let Some(k) = key {
            lock(&self.pending).remove(&k);
        }
        self.stats.contexts_live.fetch_sub(1, Ordering::Relaxed);
    }

    /// Starts one branch per target (§16.6); a target that cannot be reached counts as a
    /// branch that ended with 503 (§16.9).
    async fn fork(
        self: &Arc<Self>,
        ctx: &mut ResponseContext,
        req: &Message,
        flow: &Flow,
        targets: Vec<ProxyTarget>,
        tx: &mpsc::UnboundedSender<Input>,
        cancels: &mut Vec<Option<mpsc::UnboundedSender<()>>>,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        for target in targets {
            let Some(id) = ctx.add_branch(now()) else {
                break;
            };
            let started = match self.core.forward(req, Some(flow), &target, id) {
                Ok(f) => self.start_branch(id, f, tx.clone()).await,
                Err(e) => {
                    debug!(error = %e, target = %target.uri, "cannot forward");
                    None
                }
            };
            if started.is_none() {
                actions.extend(ctx.on_branch_ended(id, BranchEnd::TransportError));
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
                r = ct.next_response() => match r {
                    Some(m) => {
                        if let Err(mpsc::error::SendError(Input::Response(_, m))) =
                            tx.send(Input::Response(id, Box::new(m)))
                        {
                            self.forward_late(*m).await;
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
    async fn upstream(
        &self,
        txn: &ServerTransaction,
        m: Message,
        is_invite: bool,
        unanswered: &mut Option<Instant>,
    ) {
        let status = m.status().unwrap_or(0);
        if status >= 200 {
            if let Some(t0) = unanswered.take() {
                record_latency(txn.request(), now().saturating_duration_since(t0));
            }
        }
        let is_2xx = (200..300).contains(&status);
        let retry = if is_2xx { Some(m.clone()) } else { None };
        match txn.respond(m).await {
            Ok(()) => {
                if status >= 200 {
                    self.stats.best(status);
                    if is_invite {
                        inc(&self.stats.invites_completed);
                    }
                }
            }
            Err(e) => {
                debug!(error = %e, status, "response not taken by the server transaction");
                if let Some(m) = retry {
                    if let Ok(hop) = stateless::upstream_hop(&m) {
                        if let Some(d) = response_destination(hop).await {
                            let _ = self.endpoint.send_stateless(m, d).await;
                        }
                    }
                }
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
