//! The async shell: the proxy core on an [`Endpoint`]. One task per request holds its
//! [`ResponseContext`]; one task per branch pumps its client transaction's responses into it.
//! Every protocol decision is the core's; this file moves messages and sleeps until Timer C.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use sip_auth::MemoryStore;
use sip_core::{Flow, Message, Method, Target, Transport};
use sip_transaction::{Destination, TerminationReason, TransactionKey};
use tokio::sync::mpsc;
use tracing::{debug, info};

use super::context::{Action, BranchEnd, BranchId, ResponseContext};
use super::forward::{Forwarded, NextHop};
use super::stateless::{self, ResponseHop};
use super::stats::{inc, ProxyCounters, ProxyStats};
use super::target::{ProxyTarget, Router};
use super::{AuthCheck, ProxyAuth, ProxyConfig, ProxyCore, Routed, Step};
use crate::endpoint::{ClientTransaction, Endpoint, EndpointError, ServerEvent, ServerTransaction};
use crate::registrar::{LocationStore, Registrar};

/// What reaches a request's task (mostly responses: not boxed).
#[allow(clippy::large_enum_variant)]
enum Input {
    Response(BranchId, Message),
    Ended(BranchId, BranchEnd),
    Cancel,
}

/// A stateful proxy running on an endpoint.
pub struct Proxy<R: Router> {
    endpoint: Endpoint,
    core: ProxyCore,
    router: R,
    auth: Option<ProxyAuth<MemoryStore>>,
    stats: ProxyStats,
    /// INVITE server transactions with a live context, for CANCEL.
    pending: Mutex<HashMap<TransactionKey, mpsc::UnboundedSender<Input>>>,
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

async fn resolve(transport: Transport, host: &str, port: u16) -> Option<Target> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(Target::new(transport, SocketAddr::new(ip, port)));
    }
    let addr = tokio::net::lookup_host((host, port)).await.ok()?.next()?;
    let mut t = Target::new(transport, addr);
    t.server_name = Some(host.to_owned());
    Some(t)
}

async fn hop_target(hop: &NextHop) -> Option<Target> {
    match hop {
        NextHop::Flow(f) => Some(Target::new(f.transport, f.remote)),
        NextHop::Address {
            transport,
            host,
            port,
        } => resolve(*transport, host, *port).await,
    }
}

async fn response_destination(hop: ResponseHop) -> Option<Destination> {
    match hop {
        ResponseHop::Address(t, a) => Some(Destination::Target(Target::new(t, a))),
        ResponseHop::Name(t, h, p) => resolve(t, &h, p).await.map(Destination::Target),
    }
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

    async fn answer(&self, txn: &ServerTransaction, resp: Message) {
        inc(&self.stats.answered_locally);
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
        let flow = txn.flow();
        let (req, groups) = match self.core.receive(txn.request().clone(), &flow) {
            Step::Respond(r) => return self.answer(&txn, r).await,
            Step::Drop => return,
            Step::Forward(req, target) => (req, vec![vec![target]]),
            Step::Route(req) => {
                if let Some(auth) = &self.auth {
                    if let AuthCheck::Refuse(r) =
                        auth.check(&req, flow.remote.ip(), SystemTime::now())
                    {
                        if let Some(resp) = r.response(&req) {
                            self.answer(&txn, resp).await;
                        }
                        return;
                    }
                }
                let decision = self.router.route(&req, Instant::now()).await;
                match self.core.decide(&req, decision) {
                    Routed::Fork(groups) => (req, groups),
                    Routed::Respond(resp) => return self.answer(&txn, resp).await,
                }
            }
        };
        self.run_context(txn, req, groups).await;
    }

    /// The response context of one request, until its final went upstream and every branch
    /// has its final.
    async fn run_context(
        self: &Arc<Self>,
        txn: ServerTransaction,
        req: Message,
        groups: Vec<Vec<ProxyTarget>>,
    ) {
        let flow = txn.flow();
        let is_invite = req.method() == Some(Method::Invite);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let key = txn.key().filter(|_| is_invite);
        if let Some(k) = key {
            lock(&self.pending).insert(k, tx.clone());
        }
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
                    Action::Upstream(m) => self.upstream(&txn, m, is_invite).await,
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
                _ = sleep_until(deadline) => {
                    let (a, fired) = ctx.handle_timeout(now());
                    self.stats.timer_c.fetch_add(fired as u64, Ordering::Relaxed);
                    actions = a;
                    continue;
                }
            };
            actions = match input {
                Some(Input::Response(b, m)) => ctx.on_response(b, m, now()),
                Some(Input::Ended(b, why)) => ctx.on_branch_ended(b, why),
                Some(Input::Cancel) => ctx.on_cancel(),
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
        let target = hop_target(&f.hop).await?;
        let ct = match self.endpoint.request(f.request, target).await {
            Ok(ct) => ct,
            Err(e) => {
                debug!(error = %e, "branch not started");
                return None;
            }
        };
        inc(&self.stats.forwarded);
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
                        if let Err(mpsc::error::SendError(Input::Response(_, m))) = tx.send(Input::Response(id, m)) {
                            self.forward_late(m).await;
                        }
                    }
                    None => {
                        let why = match ct.final_response().await {
                            Err(EndpointError::NoFinalResponse(TerminationReason::TransportError)) => BranchEnd::TransportError,
                            _ => BranchEnd::Timeout,
                        };
                        let _ = tx.send(Input::Ended(id, why));
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
    async fn upstream(&self, txn: &ServerTransaction, m: Message, is_invite: bool) {
        let status = m.status().unwrap_or(0);
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
        if let Some(tx) = lock(&self.pending).get(&invite) {
            let _ = tx.send(Input::Cancel);
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

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
        None => std::future::pending().await,
    }
}

/// Serves `proxy` on its endpoint until the endpoint shuts down: REGISTER goes to the
/// registrar (when given), flows that close drop their bindings, everything else to the
/// proxy. `workers` tasks take events.
pub async fn serve<R: Router, S: LocationStore>(
    proxy: Arc<Proxy<R>>,
    registrar: Option<Arc<Registrar<S>>>,
    workers: usize,
) {
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(reg) = registrar.clone() {
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                reg.sweep(Instant::now()).await;
            }
        });
    }
    for _ in 0..workers.max(1) {
        let proxy = proxy.clone();
        let registrar = registrar.clone();
        tasks.spawn(async move {
            let endpoint = proxy.endpoint().clone();
            while let Some(ev) = endpoint.next_event().await {
                match (ev, &registrar) {
                    (ServerEvent::Request(txn), Some(reg))
                        if txn.request().method() == Some(Method::Register) =>
                    {
                        register(&endpoint, reg, txn).await
                    }
                    (ServerEvent::FlowClosed { flow, reason }, Some(reg)) => {
                        let n = reg.flow_closed(flow).await;
                        if n > 0 {
                            info!(%flow, %reason, bindings = n, "flow closed");
                        }
                    }
                    (ev, _) => proxy.handle_event(ev).await,
                }
            }
        });
    }
    // The workers end when the endpoint does; then the sweeper is stopped too.
    while let Some(r) = tasks.join_next().await {
        if r.is_ok() {
            tasks.abort_all();
        }
    }
}

async fn register<S: LocationStore>(
    endpoint: &Endpoint,
    registrar: &Registrar<S>,
    txn: ServerTransaction,
) {
    let response = registrar
        .handle(txn.request(), txn.flow(), Instant::now(), SystemTime::now())
        .await;
    if let Some(mut r) = response {
        if let Some(ua) = endpoint.user_agent() {
            let at = r.header_count().saturating_sub(1);
            let _ = r.insert_header(at, "Server", ua);
        }
        if let Err(e) = txn.respond(r).await {
            debug!(error = %e, "response not sent");
        }
    }
}
