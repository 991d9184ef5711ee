//! Transactions per second through two Endpoints on loopback: a client sends OPTIONS
//! (non-INVITE, UDP) with a fixed number in flight, a server answers 200.
//!
//! ```text
//! cargo run --release --example bench_transactions -- [TOTAL] [IN_FLIGHT]
//! ```
//!
//! Prints completed transactions per second and the process CPU time per transaction
//! (both endpoints, both sides of every transaction, in one process).

use std::sync::Arc;
use std::time::{Duration, Instant};

use sip_stack::core::builder::RequestBuilder;
use sip_stack::core::{Method, Target, Transport};
use sip_stack::endpoint::{Endpoint, ServerEvent};
use tokio::sync::Semaphore;

fn cpu_time() -> Duration {
    // utime + stime of this process, in clock ticks (100 Hz on Linux).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let total: usize = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(50_000);
    let in_flight: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(256);

    let server = Endpoint::builder()
        .udp("127.0.0.1:0".parse()?)
        .build()
        .await?;
    let client = Endpoint::builder()
        .udp("127.0.0.1:0".parse()?)
        .build()
        .await?;
    let to = server.local_addr(Transport::Udp).ok_or("no UDP listener")?;
    for _ in 0..2 {
        let server = server.clone();
        tokio::spawn(async move {
            while let Some(ev) = server.next_event().await {
                if let ServerEvent::Request(txn) = ev {
                    if let Ok(ok) = txn.request().response(200).build() {
                        let _ = txn.respond(ok).await;
                    }
                }
            }
        });
    }

    let permits = Arc::new(Semaphore::new(in_flight));
    let target = Target::new(Transport::Udp, to);
    let from = format!(
        "<sip:bench@{}>;tag=b1",
        client.local_addr(Transport::Udp).ok_or("no UDP")?
    );
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut ok = 0usize;
    for i in 0..total {
        let permit = permits.clone().acquire_owned().await?;
        let req = RequestBuilder::new(Method::Options, &format!("sip:{to}"))
            .header("Via", client.via(Transport::Udp))
            .header("From", &from)
            .header("To", format!("<sip:{to}>"))
            .header("Call-ID", format!("bench-{i}"))
            .header("CSeq", "1 OPTIONS")
            .build()?;
        let client = client.clone();
        let target = target.clone();
        tasks.spawn(async move {
            let ok = match client.request(req, target).await {
                Ok(mut t) => match t.final_response().await {
                    Ok(r) if r.status() == Some(200) => true,
                    Ok(r) => {
                        eprintln!("status {:?}", r.status());
                        false
                    }
                    Err(e) => {
                        eprintln!("error {e}");
                        false
                    }
                },
                Err(e) => {
                    eprintln!("request error {e}");
                    false
                }
            };
            drop(permit);
            ok
        });
        while let Some(r) = tasks.try_join_next() {
            ok += usize::from(r.unwrap_or(false));
        }
    }
    while let Some(r) = tasks.join_next().await {
        ok += usize::from(r.unwrap_or(false));
    }
    let elapsed = t0.elapsed();
    let cpu = cpu_time().saturating_sub(cpu0);
    let c = client.counters();
    println!(
        "{ok}/{total} OPTIONS transactions in {:.2} s: {:.0} transactions/s, {:.1} µs CPU per transaction (client+server), \
         {} retransmissions",
        elapsed.as_secs_f64(),
        ok as f64 / elapsed.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / ok.max(1) as f64,
        c.retransmissions_sent
    );
    client.shutdown(Duration::from_secs(1)).await;
    server.shutdown(Duration::from_secs(1)).await;
    Ok(())
}
