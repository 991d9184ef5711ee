//! Load on an IM broker (`proxy --presence`): SUBSCRIBERS watchers spread over TOPICS im
//! topics, then MESSAGEs published round-robin to the topics at a fixed rate for a fixed time.
//! Prints NOTIFYs received per second, the delivery latency (MESSAGE sent to its NOTIFY
//! received: p50, p99, max), messages refused (503), and, given the server's pid, its resident
//! memory per subscription (VmRSS after subscribing minus before, over the subscriptions).
//!
//!   presence_load --server 127.0.0.5:5290 [--pid PID] [--subscribers 1000] [--topics 10]
//!                 [--rate 20] [--secs 10] [--local 127.0.0.6]
//!
//! Bounded: it stops after `secs` plus a 5 s drain, and exits 1 when a subscription fails or
//! fewer than 99.9 % of the NOTIFYs expected arrive.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sip_stack::core::builder::RequestBuilder;
use sip_stack::core::{Method, Target, Transport};
use sip_stack::endpoint::Endpoint;
use sip_stack::events::{Subscription, Watcher, WatcherConfig};
use tokio::sync::mpsc;

/// Subscriptions per watcher endpoint (one UDP socket each).
const PER_ENDPOINT: usize = 100;

struct Args {
    server: SocketAddr,
    pid: Option<u32>,
    subscribers: usize,
    topics: usize,
    rate: u64,
    secs: u64,
    local: IpAddr,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        server: "127.0.0.5:5290".parse().map_err(|e| format!("{e}"))?,
        pid: None,
        subscribers: 1000,
        topics: 10,
        rate: 20,
        secs: 10,
        local: "127.0.0.6".parse().map_err(|e| format!("{e}"))?,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {v}: {e}");
        match flag.as_str() {
            "--server" => a.server = v.parse().map_err(|e| bad(&e))?,
            "--pid" => a.pid = Some(v.parse().map_err(|e| bad(&e))?),
            "--subscribers" => a.subscribers = v.parse().map_err(|e| bad(&e))?,
            "--topics" => a.topics = v.parse::<usize>().map_err(|e| bad(&e))?.max(1),
            "--rate" => a.rate = v.parse::<u64>().map_err(|e| bad(&e))?.max(1),
            "--secs" => a.secs = v.parse().map_err(|e| bad(&e))?,
            "--local" => a.local = v.parse().map_err(|e| bad(&e))?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(a)
}

fn rss_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("presence_load: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(a: Args) -> Result<bool, Box<dyn std::error::Error>> {
    let server = Target::new(Transport::Udp, a.server);
    let rss_before = a.pid.and_then(rss_kb);

    // Subscribe: watchers of PER_ENDPOINT subscriptions each, topics round-robin.
    let mut subs: Vec<(usize, Subscription)> = Vec::with_capacity(a.subscribers);
    let mut watchers = Vec::new();
    for i in 0..a.subscribers {
        if i % PER_ENDPOINT == 0 {
            let ep = Endpoint::builder()
                .udp(SocketAddr::new(a.local, 0))
                .build()
                .await?;
            let contact = format!(
                "sip:w{i}@{}",
                ep.local_addr(Transport::Udp).ok_or("no UDP")?
            );
            let mut config =
                WatcherConfig::new(&format!("sip:w{i}@localhost"), &contact, server.clone());
            config.buffer = 256;
            watchers.push(Watcher::start(ep, config));
        }
        let topic = i % a.topics;
        let w = watchers.last().ok_or("no watcher")?;
        let mut sub = w
            .subscribe(&format!("sip:topic{topic}@localhost"), "im")
            .await?;
        let first = tokio::time::timeout(Duration::from_secs(10), sub.next()).await;
        if !matches!(first, Ok(Some(_))) {
            eprintln!("subscription {i} got no initial NOTIFY");
            return Ok(false);
        }
        subs.push((topic, sub));
    }
    let rss_after = a.pid.and_then(rss_kb);

    // Receivers: every notification's latency goes to the collector.
    let sent: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let (lat_tx, mut lat_rx) = mpsc::unbounded_channel::<Duration>();
    for (_, mut sub) in subs {
        let sent = sent.clone();
        let lat_tx = lat_tx.clone();
        tokio::spawn(async move {
            while let Some(n) = sub.next().await {
                let Some(c) = n.content else { continue };
                let Some(seq) = std::str::from_utf8(&c.body)
                    .ok()
                    .and_then(|s| s.split(':').nth(1))
                    .and_then(|s| s.parse::<u64>().ok())
                else {
                    continue;
                };
                let at = sent
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&seq)
                    .copied();
                if let Some(t) = at {
                    let _ = lat_tx.send(t.elapsed());
                }
            }
        });
    }
    drop(lat_tx);

    // Publish at the fixed rate.
    let publisher = Endpoint::builder()
        .udp(SocketAddr::new(a.local, 0))
        .build()
        .await?;
    let total = a.rate * a.secs;
    let per_topic = a.subscribers / a.topics;
    let refused = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let accepted = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / a.rate as f64));
    let started = Instant::now();
    let call_id = publisher.new_call_id();
    let tag = publisher.new_tag();
    for seq in 0..total {
        tick.tick().await;
        let topic = (seq as usize) % a.topics;
        let to = format!("sip:topic{topic}@localhost");
        let msg = RequestBuilder::new(Method::Message, &to)
            .header("Via", publisher.via(Transport::Udp))
            .from_addr(None, "sip:publisher@localhost", &tag)
            .to_addr(None, &to, None)
            .call_id(&call_id)
            .cseq(seq as u32 + 1)
            .max_forwards(70)
            .body("text/plain", format!("{topic}:{seq}"))
            .build()?;
        sent.lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(seq, Instant::now());
        let mut ct = publisher.request(msg, server.clone()).await?;
        let (refused, accepted) = (refused.clone(), accepted.clone());
        tokio::spawn(async move {
            if let Ok(r) = ct.final_response().await {
                let c = if r.status() == Some(200) {
                    &accepted
                } else {
                    &refused
                };
                c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
    }
    let expected = total * per_topic as u64;
    let mut lat = Vec::with_capacity(expected as usize);
    let drain = tokio::time::sleep(Duration::from_secs(5));
    tokio::pin!(drain);
    loop {
        tokio::select! {
            l = lat_rx.recv() => match l {
                Some(l) => {
                    lat.push(l);
                    if lat.len() as u64 >= expected { break; }
                }
                None => break,
            },
            _ = &mut drain => break,
        }
    }
    let elapsed = started.elapsed();
    lat.sort();
    let got = lat.len() as u64;
    println!(
        "subscribers={} topics={} rate={}/s secs={} messages={} accepted={} refused_503={}",
        a.subscribers,
        a.topics,
        a.rate,
        a.secs,
        total,
        accepted.load(std::sync::atomic::Ordering::Relaxed),
        refused.load(std::sync::atomic::Ordering::Relaxed)
    );
    println!(
        "notifies received={got} expected={expected} ({:.2} %) notifies_per_s={:.0}",
        100.0 * got as f64 / expected.max(1) as f64,
        got as f64 / elapsed.as_secs_f64()
    );
    println!(
        "latency p50={:.2} ms p99={:.2} ms max={:.2} ms",
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    if let (Some(b), Some(af)) = (rss_before, rss_after) {
        println!(
            "server RSS before={b} kB after subscribing={af} kB -> {:.0} bytes per subscription",
            (af.saturating_sub(b) * 1024) as f64 / a.subscribers.max(1) as f64
        );
    }
    Ok(got * 1000 >= expected * 999)
}
