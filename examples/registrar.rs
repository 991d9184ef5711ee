//! A SIP registrar for phones, softphones, SIPp and GB28181 cameras.
//!
//! ```text
//! cargo run --release --example registrar                      # UDP+TCP 127.0.0.1:5060, open
//! cargo run --release --example registrar -- --users users.txt --realm example.com \
//!     --udp 0.0.0.0:5060 --tcp 0.0.0.0:5060 --tls 0.0.0.0:5061 --cert cert.pem --key key.pem
//! ```
//!
//! Flags (`--udp`, `--tcp` repeatable):
//!
//! | flag | meaning |
//! | --- | --- |
//! | `--udp ADDR` / `--tcp ADDR` | listen there (default: both on 127.0.0.1:5060) |
//! | `--tls ADDR --cert PEM --key PEM` | listen for TLS |
//! | `--ws ADDR` | listen for SIP over WebSocket (RFC 7118: browsers, JsSIP, SIP.js); repeatable |
//! | `--wss ADDR --cert PEM --key PEM` | listen for SIP over secure WebSocket |
//! | `--dns ADDR:PORT` | resolve names (RFC 3263) with only this nameserver (default: the system's) |
//! | `--realm REALM` | the digest realm and default domain (default `localhost`) |
//! | `--domain DOMAIN` | accept REGISTERs only for this domain (repeatable; default any) |
//! | `--users FILE` | require digest auth; lines `user:realm:password` or `user:realm:HA1` |
//! | `--open` | no authentication (the default without `--users`; lab use only) |
//! | `--algorithms LIST` | digest algorithms challenged with, e.g. `md5` or `sha256,md5` (default `md5,sha256`: SIPp and many devices read only the first challenge, clients that pick the strongest still use SHA-256; baresip 1.0 needs `md5` alone) |
//! | `--probe SECS` | probe each binding with OPTIONS over its flow every SECS seconds, spread over the interval with jitter |
//! | `--probe-failures N` | consecutive probe timeouts before a binding is marked offline (default 2) |
//! | `--probe-in-flight N` | most probes in flight at once (default 64) |
//! | `--stats SECS` | print counters every SECS seconds (default 10; 0: never) |
//! | `--min-expires N`, `--max-expires N`, `--default-expires N` | expiry policy |
//! | `--uri-check relaxed\|strict` | how the digest `uri` is compared with the Request-URI (default `relaxed`: a mismatch, as SIPp's `[authentication]` and Request-URI-rewriting proxies produce, is logged at debug level and accepted; `strict` refuses what is not an equivalent URI) |
//! | `--max-failures N` | authentication failures of one username from one source within 5 minutes that block that pair (default 10) |
//! | `--max-failures-per-source N` | failures from one source over any usernames that block the source (default 100) |
//! | `--response-cache N` | answers kept 64·T1 for retransmissions (default 32 768; 0: none) |
//! | `--stateful` | answer REGISTER in server transactions (RFC 3261 §17.2) instead of statelessly (the default, as high-rate registrars do; a retransmitted REGISTER is answered again from the location store) |
//! | `--no-inline` | without `--stateful`, UDP REGISTERs are answered on the socket's receive task (read, parse, handle, answer, write: no hand-off to the endpoint's driver or a worker task); this flag sends them the long way, through the driver and a worker, as TCP and TLS requests go |
//! | `--workers N` | worker threads (default: the number of cores). Each is a single-threaded run-to-completion loop with its own Endpoint on the same UDP port (`SO_REUSEPORT`: the kernel keeps a peer on one worker) and one shared location store; TCP and TLS are served by the first worker |
//! | `--max-transactions N` | transaction table cap (default 1 000 000). A UDP REGISTER's server transaction lives 32 s (Timer J) after its answer, so the sustained rate is at most N / 32 per second (half that with digest: 401 + 200); beyond it the endpoint answers 503. About 1.5 KB each |
//!
//! | `--location redis://HOST:PORT/DB` | keep the bindings in Redis, shared by every node of a cluster (needs `--node`) |
//! | `--node NAME` | this node's name in the cluster (recorded in the bindings whose TCP/TLS flow it holds) |
//!
//! OPTIONS to the registrar's own address are answered at once with its live transaction
//! count in `X-Load` (the `dispatcher` example's health check).
//!
//! Logs go through `tracing` (`RUST_LOG=debug` for more).

#[path = "common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sip_auth::{MemoryStore, UriCheck};
use sip_core::auth::Algorithm;
use sip_stack::dispatcher::LoadReporter;
use sip_stack::endpoint::Endpoint;
use sip_stack::registrar::{
    serve, AuthMode, InlineRegistrar, LocationStore, ProbeOptions, Registrar, RegistrarConfig,
    ServiceOptions,
};

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
    domains: Vec<String>,
    users: Option<String>,
    algorithms: Option<Vec<Algorithm>>,
    open: bool,
    probe: Option<u64>,
    stats: u64,
    min_expires: Option<u32>,
    max_expires: Option<u32>,
    default_expires: Option<u32>,
    max_transactions: Option<usize>,
    stateful: bool,
    no_inline: bool,
    uri_check: UriCheck,
    max_failures: Option<u32>,
    max_failures_per_source: Option<u32>,
    response_cache: Option<usize>,
    probe_failures: Option<u32>,
    probe_in_flight: Option<usize>,
    workers: usize,
    location: Option<String>,
    node: Option<String>,
}

const USAGE: &str =
    "usage: registrar [--udp ADDR]... [--tcp ADDR]... [--tls ADDR --cert PEM --key PEM] \
[--ws ADDR]... [--wss ADDR --cert PEM --key PEM] [--dns ADDR:PORT] \
[--realm REALM] [--domain DOMAIN]... [--users FILE [--algorithms LIST] | --open] [--probe SECS] \
[--probe-failures N] [--probe-in-flight N] [--stats SECS] \
[--min-expires N] [--max-expires N] [--default-expires N] [--max-transactions N] [--stateful] [--no-inline] \
[--uri-check relaxed|strict] [--max-failures N] [--max-failures-per-source N] [--response-cache N] \
[--workers N]";

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
        domains: vec![],
        users: None,
        algorithms: None,
        open: false,
        probe: None,
        stats: 10,
        min_expires: None,
        max_expires: None,
        default_expires: None,
        max_transactions: None,
        stateful: false,
        no_inline: false,
        uri_check: UriCheck::Relaxed,
        max_failures: None,
        max_failures_per_source: None,
        response_cache: None,
        probe_failures: None,
        probe_in_flight: None,
        workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
        location: None,
        node: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        let addr = |v: String| v.parse::<SocketAddr>().map_err(|e| format!("{v}: {e}"));
        let num = |v: String| v.parse::<u64>().map_err(|e| format!("{v}: {e}"));
        match flag.as_str() {
            "--udp" => a.udp.push(addr(value("--udp")?)?),
            "--location" => a.location = Some(value("--location")?),
            "--node" => a.node = Some(value("--node")?),
            "--tcp" => a.tcp.push(addr(value("--tcp")?)?),
            "--tls" => a.tls = Some(addr(value("--tls")?)?),
            "--ws" => a.ws.push(addr(value("--ws")?)?),
            "--wss" => a.wss = Some(addr(value("--wss")?)?),
            "--dns" => a.dns = Some(addr(value("--dns")?)?),
            "--cert" => a.cert = Some(value("--cert")?),
            "--key" => a.key = Some(value("--key")?),
            "--realm" => a.realm = value("--realm")?,
            "--domain" => a.domains.push(value("--domain")?),
            "--users" => a.users = Some(value("--users")?),
            "--open" => a.open = true,
            "--algorithms" => {
                let list = value("--algorithms")?;
                let mut algs = Vec::new();
                for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    let alg = match name.to_ascii_lowercase().as_str() {
                        "md5" => Some(Algorithm::Md5),
                        "sha256" | "sha-256" => Some(Algorithm::Sha256),
                        "sha512-256" | "sha-512-256" => Some(Algorithm::Sha512_256),
                        _ => Algorithm::from_name(name),
                    };
                    algs.push(alg.ok_or(format!("--algorithms: unknown algorithm {name}"))?);
                }
                if algs.is_empty() {
                    return Err("--algorithms needs at least one algorithm".into());
                }
                a.algorithms = Some(algs);
            }
            "--probe" => a.probe = Some(num(value("--probe")?)?),
            "--probe-failures" => a.probe_failures = Some(num(value("--probe-failures")?)? as u32),
            "--probe-in-flight" => {
                a.probe_in_flight = Some(num(value("--probe-in-flight")?)? as usize)
            }
            "--stats" => a.stats = num(value("--stats")?)?,
            "--min-expires" => a.min_expires = Some(num(value("--min-expires")?)? as u32),
            "--max-expires" => a.max_expires = Some(num(value("--max-expires")?)? as u32),
            "--default-expires" => {
                a.default_expires = Some(num(value("--default-expires")?)? as u32)
            }
            "--stateful" => a.stateful = true,
            "--no-inline" => a.no_inline = true,
            "--uri-check" => {
                a.uri_check = match value("--uri-check")?.as_str() {
                    "relaxed" => UriCheck::Relaxed,
                    "strict" => UriCheck::Strict,
                    other => return Err(format!("--uri-check: {other}: relaxed or strict")),
                }
            }
            "--max-failures" => a.max_failures = Some(num(value("--max-failures")?)? as u32),
            "--max-failures-per-source" => {
                a.max_failures_per_source = Some(num(value("--max-failures-per-source")?)? as u32)
            }
            "--response-cache" => {
                a.response_cache = Some(num(value("--response-cache")?)? as usize)
            }
            "--max-transactions" => {
                a.max_transactions = Some(num(value("--max-transactions")?)? as usize)
            }
            "--workers" => a.workers = (num(value("--workers")?)? as usize).max(1),
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
    if a.open && a.users.is_some() {
        return Err("--open and --users exclude each other".into());
    }
    Ok(a)
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
    // Each worker is one thread running to completion: receive, parse, register, answer and
    // send without handing anything to another thread (issue 17: the wake-ups between threads
    // of a multi-threaded runtime cost about a third of the CPU per REGISTER).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("registrar: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("registrar: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut config = RegistrarConfig::new(args.realm.clone());
    // The endpoint's Server value, written into each 200 as it is built.
    config.server = Some(sip_stack::endpoint::DEFAULT_USER_AGENT.to_owned());
    config.domains = args.domains.clone();
    if let Some(v) = args.min_expires {
        config.min_expires = v;
    }
    if let Some(v) = args.max_expires {
        config.max_expires = v;
    }
    if let Some(v) = args.default_expires {
        config.default_expires = v;
    }
    config.uri_check = args.uri_check;
    if let Some(t) = config.throttle.as_mut() {
        if let Some(v) = args.max_failures {
            t.max_failures = v;
        }
        if let Some(v) = args.max_failures_per_source {
            t.max_failures_per_source = v;
        }
    }
    if let Some(v) = args.response_cache {
        config.response_cache = v;
    }
    // Challenge with MD5 first, then SHA-256: SIPp, baresip and most cameras and phones read
    // only the first challenge and know only MD5, while clients that choose the strongest
    // algorithm offered still use SHA-256 (`--algorithms sha256,md5` prefers SHA-256).
    config.algorithms = args
        .algorithms
        .clone()
        .unwrap_or_else(|| vec![Algorithm::Md5, Algorithm::Sha256]);
    match &args.users {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
            let users = MemoryStore::from_users_file(&text).map_err(|e| format!("{path}: {e}"))?;
            tracing::info!(users = users.len(), file = %path, realm = %args.realm, "digest authentication on");
            config.auth = AuthMode::Digest(Arc::new(users));
        }
        None => {
            tracing::warn!(
                "running OPEN: anyone can register any address. Require passwords with \
                 --users FILE (lines user:realm:password) and --realm REALM"
            );
        }
    }

    // A UDP REGISTER's server transaction lives 32 s (Timer J) after its answer: the table
    // must hold rate × 32 s (× 2 with digest) transactions, about 1.5 KB each.
    let Some(url) = args.location.clone() else {
        return serve_with(args, Arc::new(Registrar::open(config))).await;
    };
    let node = args.node.clone().ok_or("--location needs --node NAME")?;
    let store = common::cluster_store(&url, &node, &args.udp, &args.tcp, config.limits)?;
    let registrar = Arc::new(Registrar::with_store(config, store));
    let heartbeat = registrar.store().spawn_heartbeat();
    tokio::spawn(common::log_cluster_events(registrar.store().events()));
    let r = serve_with(args, registrar).await;
    heartbeat.abort();
    r
}

async fn serve_with<S: LocationStore>(
    args: Args,
    registrar: Arc<Registrar<S>>,
) -> Result<(), Box<dyn std::error::Error>> {
    let max_transactions = args.max_transactions.unwrap_or(1_000_000);
    let workers = args.workers;
    let (mut builder, load) = worker_endpoint(&registrar, &args, max_transactions, workers);
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
    // The other workers: UDP only, on the ports the first one bound.
    let udp: Vec<SocketAddr> = endpoint
        .transport()
        .local_addrs()
        .into_iter()
        .filter(|(t, _)| *t == sip_stack::core::Transport::Udp)
        .map(|(_, a)| a)
        .collect();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut threads = Vec::new();
    for n in 1..workers {
        let (mut builder, load) = worker_endpoint(&registrar, &args, max_transactions, workers);
        for a in &udp {
            builder = builder.udp(*a);
        }
        let registrar = registrar.clone();
        let mut stop = stop_rx.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("worker-{n}"))
                .spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    rt.block_on(async move {
                        let endpoint = match builder.build().await {
                            Ok(e) => e,
                            Err(e) => {
                                tracing::error!(worker = n, error = %e, "worker not started");
                                return Err(std::io::Error::other(e.to_string()));
                            }
                        };
                        let _load = load.track(endpoint.clone(), Duration::from_millis(500));
                        // Sweeping is shared; probing is the first worker's.
                        let options = ServiceOptions::default();
                        tokio::select! {
                            _ = serve(endpoint.clone(), registrar, options) => {}
                            _ = stop.wait_for(|s| *s) => {}
                        }
                        endpoint.shutdown(Duration::from_secs(2)).await;
                        Ok::<(), std::io::Error>(())
                    })
                    .map_err(|e| std::io::Error::other(e.to_string()))
                })?,
        );
    }
    if workers > 1 {
        tracing::info!(workers, "worker threads share the UDP port (SO_REUSEPORT)");
    }

    let options = ServiceOptions {
        probe: args.probe.map(|secs| {
            let mut p = ProbeOptions::every(Duration::from_secs(secs));
            if let Some(n) = args.probe_failures {
                p.failures_before_offline = n;
            }
            if let Some(n) = args.probe_in_flight {
                p.max_in_flight = n;
            }
            p
        }),
        ..ServiceOptions::default()
    };
    if args.stats > 0 {
        tokio::spawn(print_stats(
            endpoint.clone(),
            registrar.clone(),
            Duration::from_secs(args.stats),
        ));
    }
    let service = tokio::spawn(serve(endpoint.clone(), registrar, options));
    tokio::signal::ctrl_c().await?;
    tracing::info!("stopping");
    let _ = stop_tx.send(true);
    endpoint.shutdown(Duration::from_secs(2)).await;
    service.abort();
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// The Endpoint of one worker: 401 challenges answered statelessly (no transaction kept for
/// them) and, unless `--stateful`, REGISTER without server transactions, as Kamailio's
/// registrar answers it (a retransmission is answered again from the location store). With
/// several workers their UDP sockets share the port.
#[allow(clippy::type_complexity)]
fn worker_endpoint<S: LocationStore>(
    registrar: &Arc<Registrar<S>>,
    args: &Args,
    max_transactions: usize,
    workers: usize,
) -> (
    sip_stack::endpoint::EndpointBuilder,
    Arc<LoadReporter<Registrar<S>>>,
) {
    let load = Arc::new(LoadReporter::new(Some(registrar.clone())));
    let mut builder = Endpoint::builder()
        .transaction_config(
            sip_stack::transaction::Config::default().with_max_transactions(max_transactions),
        )
        .stateless(load.clone());
    // A large UDP receive buffer absorbs bursts and the moments a worker is off its core (the
    // kernel's default ~200 KB holds a few milliseconds at 20 000 REGISTER/s; every datagram
    // lost costs the device a retransmission 500 ms later). The kernel caps it at rmem_max.
    builder = builder.transport_config(sip_transport::TransportConfig {
        udp_reuse_port: workers > 1,
        udp_recv_buffer: Some(8 << 20),
        // A registrar's messages are short-lived: datagrams share 64 KB buffers instead of
        // costing an allocation each.
        udp_receive_slab: 64 << 10,
        ..sip_transport::TransportConfig::default()
    });
    if !args.stateful {
        builder = builder.stateless_methods(&[sip_stack::core::Method::Register]);
        if !args.no_inline {
            // Run to completion: UDP REGISTERs answered on the socket's receive task.
            builder = builder.inline(Arc::new(
                InlineRegistrar::new(registrar.clone()).responder(load.clone()),
            ));
        }
    }
    (builder, load)
}

async fn print_stats<S: LocationStore>(
    endpoint: Endpoint,
    registrar: Arc<Registrar<S>>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    let mut last = (Instant::now(), 0u64);
    loop {
        tick.tick().await;
        let c = registrar.counters();
        let e = endpoint.counters();
        let t = endpoint.transport().stats();
        let mem = registrar.memory().await;
        let now = Instant::now();
        let rate = (c.registers - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
        last = (now, c.registers);
        tracing::info!(
            register_per_s = format_args!("{rate:.1}"),
            registers = c.registers,
            accepted = c.accepted,
            aors = mem.aors,
            bindings = mem.bindings,
            store_bytes = mem.bytes.unwrap_or(0),
            bytes_per_binding = mem.bytes_per_binding.unwrap_or(0),
            auth_failures = c.auth_failures,
            throttled = c.throttled,
            retransmissions_answered = c.retransmissions,
            keepalives = c.keepalives,
            retransmissions_absorbed = e.retransmissions_absorbed,
            live_transactions = e.live,
            udp_in = t.udp.messages_in,
            tcp_in = t.tcp.messages_in,
            "stats"
        );
    }
}
