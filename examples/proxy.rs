//! The domain's SIP server: a registrar and a stateful proxy (RFC 3261 §16) on one socket set.
//!
//! ```text
//! cargo run --release --example proxy -- --udp 127.0.0.1:5060 --tcp 127.0.0.1:5060 \
//!     --realm example.com (--open | --users FILE) [--tls ADDR --cert PEM --key PEM] [--no-record-route]
//! ```
//!
//! - REGISTER goes to the registrar (digest with `--users`, Path, outbound, expiry policy).
//! - A request for a registered user of the realm, or addressed to the proxy's own address, is
//!   forked in parallel to every contact of the user; an unknown user gets 404. Other domains
//!   are forwarded by Request-URI (`--refuse-foreign`: 403).
//! - In-dialog requests follow Record-Route; the ACK of a 2xx passes statelessly.
//! - CANCEL is propagated to every branch; the best final response wins.
//! - With `--users`, new INVITE, MESSAGE and SUBSCRIBE requests from the realm's users are
//!   challenged with 407.
//!
//! Flags: `--udp ADDR`, `--tcp ADDR` (repeatable; default both on 127.0.0.1:5060), `--tls ADDR
//! --cert PEM --key PEM`, `--ws ADDR` (SIP over WebSocket, RFC 7118; repeatable), `--wss ADDR`
//! (with `--cert`/`--key`), `--dns ADDR:PORT` (RFC 3263 lookups with only that nameserver),
//! `--realm REALM` (default `localhost`), `--users FILE` (lines
//! `user:realm:password`) or `--open`, `--algorithms md5|sha256,...` (default `md5,sha256`),
//! `--no-record-route`, `--refuse-foreign`, `--threads N` (runtime threads, default 1: one
//! thread spends less CPU per call than two, since no message then crosses threads; 5000
//! calls/s fit in one on a 2-core machine), `--stats SECS` (default 10; 0: never),
//! `--max-transactions N` (default 1 000 000), `--metrics ADDR` (Prometheus text format over
//! HTTP at `http://ADDR/metrics`: every counter of the Endpoint, the registrar and the proxy,
//! and the latency histograms `sip_proxy_request_seconds{method}` and
//! `sip_proxy_call_setup_seconds` as p50/p95/p99 summaries).
//!
//! Events: `--presence` makes it the presence server and IM broker too (SUBSCRIBE and PUBLISH
//! for `presence`, with a registered user shown `open` until its last binding goes; `im`
//! topics; MESSAGE store-and-forward). `--notify-min-interval MS` (default 0: no limit) is
//! the least time between two NOTIFYs of one subscription (RFC 6665 §4.2.2.3); changes in
//! between are coalesced to the latest state.
//!
//! Cluster: `--location redis://HOST:PORT/DB --node NAME` keeps the bindings in Redis, shared
//! with the other nodes (a user registered through any node is reached from every node; one
//! whose TCP/TLS flow this node does not hold is reached through the node that does); without
//! `--location` they stay in memory. OPTIONS to the node's own address are answered at once
//! with its live transaction count in `X-Load`, for the `dispatcher` example's health checks.

#[path = "common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sip_auth::{MemoryStore, ThrottleConfig};
use sip_core::auth::Algorithm;
use sip_core::random::RandomSource as _;
use sip_stack::cluster::ClusterRouter;
use sip_stack::dispatcher::LoadReporter;
use sip_stack::endpoint::{CancelMode, Endpoint};
use sip_stack::proxy::{
    identity_of, ForeignPolicy, LocationRouter, Proxy, ProxyAuth, ProxyBuilder, ProxyConfig, Router,
};
use sip_stack::registrar::{AuthMode, LocationStore, Registrar, RegistrarConfig};
use sip_transport::TransportConfig;

struct Args {
    udp: Vec<SocketAddr>,
    tcp: Vec<SocketAddr>,
    tls: Option<SocketAddr>,
    ws: Vec<SocketAddr>,
    wss: Option<SocketAddr>,
    dns: Option<SocketAddr>,
    cert: Option<String>,
    key: Option<String>,
    realm: String,
    users: Option<String>,
    open: bool,
    algorithms: Vec<Algorithm>,
    record_route: bool,
    refuse_foreign: bool,
    stats: u64,
    max_transactions: usize,
    metrics: Option<SocketAddr>,
    location: Option<String>,
    node: Option<String>,
    presence: bool,
    notify_min_interval: Duration,
    threads: usize,
}

const USAGE: &str =
    "usage: proxy [--udp ADDR]... [--tcp ADDR]... [--tls ADDR --cert PEM --key PEM] \
[--ws ADDR]... [--wss ADDR --cert PEM --key PEM] [--dns ADDR:PORT] \
[--realm REALM] (--open | --users FILE) [--algorithms LIST] [--no-record-route] [--refuse-foreign] \
[--stats SECS] [--max-transactions N] [--metrics ADDR] [--location redis://HOST:PORT/DB --node NAME] \
[--presence [--notify-min-interval MS]] [--threads N]";

fn parse_algorithms(list: &str) -> Result<Vec<Algorithm>, String> {
    let mut algs = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let alg = match name.to_ascii_lowercase().as_str() {
            "md5" => Some(Algorithm::Md5),
            "sha256" | "sha-256" => Some(Algorithm::Sha256),
            _ => Algorithm::from_name(name),
        };
        algs.push(alg.ok_or(format!("--algorithms: unknown algorithm {name}"))?);
    }
    if algs.is_empty() {
        return Err("--algorithms needs at least one algorithm".into());
    }
    Ok(algs)
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        udp: vec![],
        tcp: vec![],
        tls: None,
        ws: vec![],
        wss: None,
        dns: None,
        cert: None,
        key: None,
        realm: "localhost".into(),
        users: None,
        open: false,
        algorithms: vec![Algorithm::Md5, Algorithm::Sha256],
        record_route: true,
        refuse_foreign: false,
        stats: 10,
        max_transactions: 1_000_000,
        metrics: None,
        location: None,
        node: None,
        presence: false,
        notify_min_interval: Duration::ZERO,
        threads: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        let addr = |v: String| v.parse::<SocketAddr>().map_err(|e| format!("{v}: {e}"));
        let num = |v: String| v.parse::<u64>().map_err(|e| format!("{v}: {e}"));
        match flag.as_str() {
            "--udp" => a.udp.push(addr(value("--udp")?)?),
            "--tcp" => a.tcp.push(addr(value("--tcp")?)?),
            "--tls" => a.tls = Some(addr(value("--tls")?)?),
            "--ws" => a.ws.push(addr(value("--ws")?)?),
            "--wss" => a.wss = Some(addr(value("--wss")?)?),
            "--dns" => a.dns = Some(addr(value("--dns")?)?),
            "--cert" => a.cert = Some(value("--cert")?),
            "--key" => a.key = Some(value("--key")?),
            "--realm" => a.realm = value("--realm")?,
            "--users" => a.users = Some(value("--users")?),
            "--open" => a.open = true,
            "--algorithms" => a.algorithms = parse_algorithms(&value("--algorithms")?)?,
            "--no-record-route" => a.record_route = false,
            "--refuse-foreign" => a.refuse_foreign = true,
            "--stats" => a.stats = num(value("--stats")?)?,
            "--max-transactions" => {
                a.max_transactions = num(value("--max-transactions")?)? as usize
            }
            "--metrics" => a.metrics = Some(addr(value("--metrics")?)?),
            "--location" => a.location = Some(value("--location")?),
            "--node" => a.node = Some(value("--node")?),
            "--presence" => a.presence = true,
            // RFC 6665 §4.2.2.3 rate limiting: the least time between two NOTIFYs of one
            // subscription (state changes in between are coalesced to the latest).
            "--notify-min-interval" => {
                a.notify_min_interval = Duration::from_millis(num(value("--notify-min-interval")?)?)
            }
            "--threads" => a.threads = (num(value("--threads")?)? as usize).max(1),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    if a.udp.is_empty() && a.tcp.is_empty() && a.tls.is_none() && a.ws.is_empty() && a.wss.is_none()
    {
        let default: SocketAddr = "127.0.0.1:5060".parse().map_err(|e| format!("{e}"))?;
        a.udp.push(default);
        a.tcp.push(default);
    }
    if (a.tls.is_some() || a.wss.is_some()) && (a.cert.is_none() || a.key.is_none()) {
        return Err("--tls and --wss need --cert and --key".into());
    }
    if !a.notify_min_interval.is_zero() && !a.presence {
        return Err("--notify-min-interval needs --presence".into());
    }
    if a.open == a.users.is_some() {
        return Err(format!(
            "give exactly one of --open and --users FILE\n{USAGE}"
        ));
    }
    Ok(a)
}

/// The event server's settings: the NOTIFY rate limit of `--notify-min-interval` on every
/// package's subscriptions.
fn event_config(min_interval: Duration) -> sip_stack::events::EventConfig {
    let mut config = sip_stack::events::EventConfig::default();
    config.state_notifier.min_interval = min_interval;
    config.message_notifier.min_interval = min_interval;
    config
}

fn main() -> ExitCode {
    common::init_tracing();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    // One thread by default: every message then crosses tasks, never threads (no futex
    // wake-up per hop), which costs less CPU per call than two threads on a small machine.
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("proxy: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("proxy: {e}");
            ExitCode::FAILURE
        }
    }
}

fn random_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    for chunk in key.chunks_mut(8) {
        chunk.copy_from_slice(&sip_core::random::OsRandom.next_u64().to_le_bytes());
    }
    key
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut config = RegistrarConfig::new(args.realm.clone());
    config.algorithms = args.algorithms.clone();
    let users = match &args.users {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
            let users = MemoryStore::from_users_file(&text).map_err(|e| format!("{path}: {e}"))?;
            tracing::info!(users = users.len(), file = %path, realm = %args.realm, "digest authentication on");
            let users = Arc::new(users);
            config.auth = AuthMode::Digest(users.clone());
            Some(users)
        }
        None => {
            tracing::warn!("running OPEN: anyone can register and call (lab use only)");
            None
        }
    };
    let foreign = if args.refuse_foreign {
        ForeignPolicy::Refuse
    } else {
        ForeignPolicy::Forward
    };
    let Some(url) = args.location.clone() else {
        let registrar = Arc::new(Registrar::open(config));
        return run_node(args, registrar, users, move |reg, id| {
            LocationRouter::new(reg, id).foreign(foreign)
        })
        .await;
    };
    let node = args.node.clone().ok_or("--location needs --node NAME")?;
    let store = common::cluster_store(&url, &node, &args.udp, &args.tcp, config.limits)?;
    let registrar = Arc::new(Registrar::with_store(config, store));
    let heartbeat = registrar.store().spawn_heartbeat();
    tokio::spawn(common::log_cluster_events(registrar.store().events()));
    let r = run_node(args, registrar, users, move |reg, id| {
        ClusterRouter::new(reg, id).foreign(foreign)
    })
    .await;
    heartbeat.abort();
    r
}

async fn run_node<S: LocationStore, R: Router>(
    args: Args,
    registrar: Arc<Registrar<S>>,
    users: Option<Arc<MemoryStore>>,
    router: impl FnOnce(Arc<Registrar<S>>, sip_stack::proxy::Identity) -> R,
) -> Result<(), Box<dyn std::error::Error>> {
    let load = Arc::new(LoadReporter::new(Some(registrar.clone())));

    // The proxy runs Timer C itself (it CANCELs a branch that rang and went silent); the
    // transaction layer's own Timer C is off so that it does not end the branch first.
    // Merged-request detection (RFC 3261 §8.2.2.2) is a UAS's: a proxy forwards every copy
    // of a forked request, and nothing here asks about merges.
    let txn_config = sip_stack::transaction::Config::default()
        .with_max_transactions(args.max_transactions)
        .with_timer_c(None)
        .with_merge_detection(false);
    // CANCEL: the endpoint answers it 200 and leaves the INVITE to the proxy, which cancels
    // its branches and forwards their best answer (487) itself (RFC 3261 §16.10).
    // A large UDP receive buffer absorbs bursts (the kernel's default ~200 KB overflows at a
    // few thousand calls/s, and every lost datagram costs a retransmission 500 ms later).
    let transport = TransportConfig {
        udp_recv_buffer: Some(8 << 20),
        ..TransportConfig::default()
    };
    let mut builder = Endpoint::builder()
        .transport_config(transport)
        .cancel_mode(CancelMode::Proxy)
        .transaction_config(txn_config)
        .stateless(load.clone())
        .stateless_methods(&[sip_stack::core::Method::Register]);
    let listeners = common::Listeners {
        udp: &args.udp,
        tcp: &args.tcp,
        tls: args.tls,
        ws: &args.ws,
        wss: args.wss,
        dns: args.dns,
        cert: args.cert.as_deref(),
        key: args.key.as_deref(),
    };
    builder = listeners.apply(builder)?;
    let endpoint = builder.build().await?;
    let _load = load.track(endpoint.clone(), Duration::from_millis(500));
    for (t, a) in endpoint.transport().local_addrs() {
        tracing::info!(transport = %t, addr = %a, "listening");
    }
    let identity = identity_of(&endpoint, vec![args.realm.clone()]);
    let mut proxy_config = ProxyConfig::new(identity.clone());
    proxy_config.forward.record_route = args.record_route;
    // The transport validated every message already (TransportConfig::validate).
    proxy_config.validation.check_syntax = false;
    let router = router(registrar.clone(), identity);
    let mut proxy = ProxyBuilder::new(proxy_config, router);
    if let Some(users) = users {
        proxy = proxy.auth(ProxyAuth::new(
            args.realm.clone(),
            users,
            &args.algorithms,
            random_key(),
            ThrottleConfig::default(),
        )?);
    }
    let proxy = proxy.build(endpoint.clone());

    if let Some(addr) = args.metrics {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .set_quantiles(&[0.5, 0.95, 0.99])?
            .install()?;
        tracing::info!(%addr, "Prometheus metrics at /metrics");
        tokio::spawn(export_counters(proxy.clone(), registrar.clone()));
    }
    if args.stats > 0 {
        tokio::spawn(print_stats(
            proxy.clone(),
            registrar.clone(),
            Duration::from_secs(args.stats),
        ));
    }
    let service = if args.presence {
        // The domain server is also the presence server and IM broker (issue 14).
        let events = sip_stack::events::EventServer::new(
            endpoint.clone(),
            identity_of(&endpoint, vec![args.realm.clone()]),
            &args.realm,
            vec![
                Arc::new(sip_stack::events::PresencePackage::default()),
                Arc::new(sip_stack::events::ImPackage::default()),
            ],
            event_config(args.notify_min_interval),
        );
        tracing::info!("presence server and IM broker on (SUBSCRIBE/PUBLISH presence, im topics, MESSAGE store)");
        if args.stats > 0 {
            tokio::spawn(print_event_stats(
                events.clone(),
                Duration::from_secs(args.stats),
            ));
        }
        tokio::spawn(sip_stack::events::serve(
            proxy.clone(),
            registrar,
            events,
            2,
        ))
    } else {
        tokio::spawn(sip_stack::proxy::serve(proxy.clone(), Some(registrar), 2))
    };
    tokio::signal::ctrl_c().await?;
    tracing::info!("stopping");
    endpoint.shutdown(Duration::from_secs(2)).await;
    service.abort();
    Ok(())
}

/// The event server's figures every `every`: topics, subscriptions, messages and NOTIFYs per
/// second, queue depth.
async fn print_event_stats(events: Arc<sip_stack::events::EventServer>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    let mut last = (Instant::now(), events.stats());
    loop {
        tick.tick().await;
        let s = events.stats();
        let now = Instant::now();
        let secs = now.duration_since(last.0).as_secs_f64().max(1e-9);
        let rate = |a: u64, b: u64| (a - b) as f64 / secs;
        let per_sub = events.subscription_bytes() / s.subscriptions.max(1);
        tracing::info!(
            topics = s.topics,
            subscriptions = s.subscriptions,
            publications = s.publications,
            messages_per_s = format_args!("{:.1}", rate(s.messages, last.1.messages)),
            notifies_per_s = format_args!("{:.1}", rate(s.notifies, last.1.notifies)),
            queue_depth = s.queue_depth,
            queued_bytes = s.queued_bytes,
            notifies_failed = s.notifies_failed,
            refused_503 = s.refused,
            stored = s.stored,
            delivered = s.delivered,
            heap_bytes_per_subscription = per_sub,
            "event stats"
        );
        last = (now, s);
    }
}

async fn print_stats<R: Router, S: LocationStore>(
    proxy: Arc<Proxy<R>>,
    registrar: Arc<Registrar<S>>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    let mut last = (Instant::now(), 0u64);
    loop {
        tick.tick().await;
        let p = proxy.counters();
        let e = proxy.endpoint().counters();
        let r = registrar.counters();
        let (aors, bindings) = sip_stack::registrar::LocationStore::counts(registrar.store()).await;
        let now = Instant::now();
        let secs = now.duration_since(last.0).as_secs_f64().max(1e-9);
        let calls = (p.invites_completed - last.1) as f64 / secs;
        last = (now, p.invites_completed);
        let b = p.best_by_class;
        let a = proxy.auth().map(|a| a.counters()).unwrap_or_default();
        tracing::info!(
            calls_per_s = format_args!("{calls:.1}"),
            live_transactions = e.live,
            contexts = p.contexts_live,
            branches = p.branches_live,
            requests = p.requests,
            forwarded = p.forwarded,
            acks_stateless = p.forwarded_stateless,
            responses_stateless = p.responses_stateless,
            best = format_args!(
                "1xx:{} 2xx:{} 3xx:{} 4xx:{} 5xx:{} 6xx:{}",
                b[1], b[2], b[3], b[4], b[5], b[6]
            ),
            local = p.answered_locally,
            cancels = p.cancels,
            loops = p.loops,
            timer_c = p.timer_c,
            auth_challenges = a.challenges,
            authenticated = a.authenticated,
            auth_failures = a.failures,
            registers = r.registers,
            aors,
            bindings,
            "stats"
        );
    }
}

/// Copies every counter of the Endpoint, the transport, the registrar and the proxy into the
/// `metrics` recorder once a second (the exporter renders them).
async fn export_counters<R: Router, S: LocationStore>(
    proxy: Arc<Proxy<R>>,
    registrar: Arc<Registrar<S>>,
) {
    use metrics::{counter, gauge};
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let e = proxy.endpoint().counters();
        gauge!("sip_transactions_live").set(e.live as f64);
        for (i, kind) in [
            "invite_client",
            "non_invite_client",
            "invite_server",
            "non_invite_server",
        ]
        .into_iter()
        .enumerate()
        {
            gauge!("sip_transactions_live_by_kind", "kind" => kind)
                .set(e.live_by_kind.get(i).copied().unwrap_or(0) as f64);
            counter!("sip_transactions_created_total", "kind" => kind)
                .absolute(e.created.get(i).copied().unwrap_or(0));
        }
        counter!("sip_retransmissions_sent_total").absolute(e.retransmissions_sent);
        counter!("sip_retransmissions_absorbed_total").absolute(e.retransmissions_absorbed);
        counter!("sip_transaction_timeouts_total").absolute(e.timeouts);
        counter!("sip_transport_errors_total").absolute(e.transport_errors);
        counter!("sip_overload_503_total").absolute(e.overload_503);
        counter!("sip_messages_in_total").absolute(e.messages_in);
        counter!("sip_messages_out_total").absolute(e.messages_out);
        counter!("sip_stateless_responses_total").absolute(e.stateless_responses);
        let t = proxy.endpoint().transport().stats();
        counter!("sip_transport_messages_in_total", "transport" => "udp")
            .absolute(t.udp.messages_in);
        counter!("sip_transport_messages_in_total", "transport" => "tcp")
            .absolute(t.tcp.messages_in);

        let r = registrar.counters();
        counter!("sip_registrar_registers_total").absolute(r.registers);
        counter!("sip_registrar_accepted_total").absolute(r.accepted);
        counter!("sip_registrar_challenges_total").absolute(r.challenges);
        counter!("sip_registrar_auth_failures_total").absolute(r.auth_failures);
        counter!("sip_registrar_throttled_total").absolute(r.throttled);
        let (aors, bindings) = sip_stack::registrar::LocationStore::counts(registrar.store()).await;
        gauge!("sip_registrar_aors").set(aors as f64);
        gauge!("sip_registrar_bindings").set(bindings as f64);

        let p = proxy.counters();
        counter!("sip_proxy_requests_total").absolute(p.requests);
        counter!("sip_proxy_forwarded_total").absolute(p.forwarded);
        counter!("sip_proxy_forwarded_stateless_total").absolute(p.forwarded_stateless);
        counter!("sip_proxy_responses_stateless_total").absolute(p.responses_stateless);
        for class in 1..=6usize {
            let label = ["", "1xx", "2xx", "3xx", "4xx", "5xx", "6xx"][class];
            counter!("sip_proxy_best_responses_total", "class" => label)
                .absolute(p.best_by_class[class]);
        }
        counter!("sip_proxy_answered_locally_total").absolute(p.answered_locally);
        counter!("sip_proxy_cancels_total").absolute(p.cancels);
        counter!("sip_proxy_cancels_sent_total").absolute(p.cancels_sent);
        counter!("sip_proxy_loops_total").absolute(p.loops);
        counter!("sip_proxy_timer_c_total").absolute(p.timer_c);
        counter!("sip_proxy_calls_completed_total").absolute(p.invites_completed);
        gauge!("sip_proxy_contexts_live").set(p.contexts_live as f64);
        gauge!("sip_proxy_branches_live").set(p.branches_live as f64);
        if let Some(a) = proxy.auth() {
            let a = a.counters();
            counter!("sip_proxy_auth_challenges_total").absolute(a.challenges);
            counter!("sip_proxy_auth_authenticated_total").absolute(a.authenticated);
            counter!("sip_proxy_auth_failures_total").absolute(a.failures);
            counter!("sip_proxy_auth_throttled_total").absolute(a.throttled);
        }
    }
}
