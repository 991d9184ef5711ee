//! A stateless dispatcher in front of a cluster of registrar and proxy nodes.
//!
//! ```text
//! cargo run --release --example dispatcher -- --udp 127.0.0.1:5060 \
//!     --registrar-node 127.0.0.1:5071 --proxy-node 127.0.0.1:5071 --proxy-node 127.0.0.1:5072
//! ```
//!
//! REGISTER goes to the registrar nodes, every other request to the proxy nodes, by a hash of
//! the Call-ID weighted by each node's load (the `X-Load` of its OPTIONS answers). Nodes are
//! probed with OPTIONS; one that misses `--down-after` probes is taken out until it answers
//! `--up-after`. Responses go back by their Via. No transaction is kept.
//!
//! | flag | meaning |
//! | --- | --- |
//! | `--udp ADDR` / `--tcp ADDR` | listen there (repeatable; default UDP 127.0.0.1:5060) |
//! | `--registrar-node ADDR` | a registrar node (`ADDR` for UDP, `tcp:ADDR` for TCP; repeatable) |
//! | `--proxy-node ADDR` | a proxy node (same forms; repeatable) |
//! | `--max-load N` | a node reporting N live transactions or more gets no new request (default: no cap) |
//! | `--probe-ms N` | OPTIONS probe interval (default 2000) |
//! | `--down-after N`, `--up-after M` | misses that take a node out (3), answers that put it back (2) |
//! | `--nodes-file FILE` | more nodes, read at start and again every probe interval (lines `registrar ADDR` or `proxy ADDR`; `#` comments): nodes are added while running |
//! | `--stats SECS` | log every node's state, load and requests forwarded (default 10; 0: never) |
//! | `--flow-key HEX` | key of the flow tokens in the Path it adds to REGISTERs (devices behind NAT are reached through it; default: random per run, so a restart breaks the tokens given out) |
//! | `--no-path` | add no Path to REGISTERs (nodes then reach devices at their Contact) |

#[path = "common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use sip_stack::core::{Target, Transport};
use sip_stack::dispatcher::{Dispatcher, DispatcherConfig, NodeConfig, Role};

struct Args {
    config: DispatcherConfig,
    nodes: Vec<NodeConfig>,
    max_load: Option<u64>,
    nodes_file: Option<String>,
    stats: u64,
}

const USAGE: &str = "usage: dispatcher [--udp ADDR]... [--tcp ADDR]... --registrar-node ADDR... \
--proxy-node ADDR... [--max-load N] [--probe-ms N] [--down-after N] [--up-after M] \
[--nodes-file FILE] [--stats SECS] [--flow-key HEX] [--no-path]";

fn hex_key(v: &str) -> Result<Vec<u8>, String> {
    let b = v.as_bytes();
    if b.is_empty() || !b.len().is_multiple_of(2) {
        return Err(format!("--flow-key {v}: an even number of hex digits"));
    }
    b.chunks(2)
        .map(|p| {
            std::str::from_utf8(p)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 16).ok())
                .ok_or(format!("--flow-key {v}: not hex"))
        })
        .collect()
}

fn node_target(v: &str) -> Result<Target, String> {
    let (transport, addr) = match v.split_once(':') {
        Some((t, rest)) if t.eq_ignore_ascii_case("tcp") => (Transport::Tcp, rest),
        Some((t, rest)) if t.eq_ignore_ascii_case("udp") => (Transport::Udp, rest),
        _ => (Transport::Udp, v),
    };
    let addr: SocketAddr = addr.parse().map_err(|e| format!("{v}: {e}"))?;
    Ok(Target::new(transport, addr))
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        config: DispatcherConfig::default(),
        nodes: Vec::new(),
        max_load: None,
        nodes_file: None,
        stats: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        let addr = |v: String| v.parse::<SocketAddr>().map_err(|e| format!("{v}: {e}"));
        let num = |v: String| v.parse::<u64>().map_err(|e| format!("{v}: {e}"));
        match flag.as_str() {
            "--udp" => a.config.udp.push(addr(value("--udp")?)?),
            "--tcp" => a.config.tcp.push(addr(value("--tcp")?)?),
            "--registrar-node" => a.nodes.push(NodeConfig {
                role: Role::Registrar,
                target: node_target(&value("--registrar-node")?)?,
                max_load: None,
            }),
            "--proxy-node" => a.nodes.push(NodeConfig {
                role: Role::Proxy,
                target: node_target(&value("--proxy-node")?)?,
                max_load: None,
            }),
            "--max-load" => a.max_load = Some(num(value("--max-load")?)?),
            "--probe-ms" => {
                a.config.probe_interval = Duration::from_millis(num(value("--probe-ms")?)?.max(10))
            }
            "--down-after" => a.config.health.down_after = num(value("--down-after")?)? as u32,
            "--up-after" => a.config.health.up_after = num(value("--up-after")?)? as u32,
            "--nodes-file" => a.nodes_file = Some(value("--nodes-file")?),
            "--stats" => a.stats = num(value("--stats")?)?,
            "--flow-key" => a.config.flow_key = Some(hex_key(&value("--flow-key")?)?),
            "--no-path" => a.config.path = false,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    if a.config.udp.is_empty() && a.config.tcp.is_empty() {
        a.config
            .udp
            .push("127.0.0.1:5060".parse().map_err(|e| format!("{e}"))?);
    }
    for n in &mut a.nodes {
        n.max_load = a.max_load;
    }
    if a.nodes.is_empty() && a.nodes_file.is_none() {
        return Err(format!("no nodes\n{USAGE}"));
    }
    Ok(a)
}

fn read_nodes_file(path: &str, max_load: Option<u64>) -> Result<Vec<NodeConfig>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (role, addr) = line
            .split_once(char::is_whitespace)
            .ok_or(format!("{path}: {line}: expected ROLE ADDR"))?;
        let role = match role {
            "registrar" => Role::Registrar,
            "proxy" => Role::Proxy,
            r => return Err(format!("{path}: unknown role {r}")),
        };
        out.push(NodeConfig {
            role,
            target: node_target(addr.trim())?,
            max_load,
        });
    }
    Ok(out)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    common::init_tracing();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dispatcher: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut nodes = args.nodes.clone();
    if let Some(f) = &args.nodes_file {
        nodes.extend(read_nodes_file(f, args.max_load)?);
    }
    let probe = args.config.probe_interval;
    let d = Dispatcher::start(args.config, nodes).await?;
    for (t, a) in d.transport().local_addrs() {
        tracing::info!(transport = %t, addr = %a, "listening");
    }
    if let Some(f) = args.nodes_file.clone() {
        let d = d.clone();
        let max_load = args.max_load;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(probe);
            loop {
                tick.tick().await;
                match read_nodes_file(&f, max_load) {
                    Ok(nodes) => {
                        let known = d.stats().len();
                        for n in nodes {
                            d.add_node(n);
                        }
                        let now = d.stats().len();
                        if now > known {
                            tracing::info!(added = now - known, "nodes file: nodes added");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "nodes file not read"),
                }
            }
        });
    }
    if args.stats > 0 {
        tokio::spawn(print_stats(d.clone(), Duration::from_secs(args.stats)));
    }
    tokio::signal::ctrl_c().await?;
    tracing::info!("stopping");
    d.shutdown();
    Ok(())
}

async fn print_stats(d: Arc<Dispatcher>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let c = d.counters();
        tracing::info!(
            dispatched = c.dispatched,
            relayed = c.relayed,
            responses = c.responses,
            refused = c.refused,
            dropped = c.dropped,
            to_flows = c.to_flows,
            "stats"
        );
        for n in d.stats() {
            tracing::info!(
                node = %n.config.target.addr,
                transport = %n.config.target.transport,
                role = ?n.config.role,
                up = n.up,
                load = n.load,
                forwarded = n.forwarded,
                misses = n.misses,
                "node"
            );
        }
    }
}
