//! A minimal Endpoint-based UAS for interop tests (SIPp's UAC scenarios in `tests/sipp/`).
//!
//! ```text
//! cargo run --example uas -- --udp 127.0.0.1:5070 [--ring-ms 300] [--exit-after N]
//! ```
//!
//! - OPTIONS → 200;
//! - INVITE → (100 Trying from the transaction layer after 200 ms) 180 after `--ring-ms`
//!   (default 300), then 200 with a Contact and a minimal SDP, retransmitted until the ACK
//!   (RFC 3261 §13.3.1.4, [`sip_stack::ua::TwoXxRetransmitter`]);
//! - ACK of the 2xx: absorbed; BYE → 200 (481 for an unknown dialog); CANCEL: answered by the
//!   Endpoint (200, and 487 for the INVITE);
//! - any other known method → 405, an unknown one → 501.
//!
//! A call is counted when its BYE is answered. Stops after `--exit-after N` calls, letting
//! live transactions run `--linger-secs` more (default 16: a BYE whose 200 was lost comes
//! again), or on Ctrl-C / SIGTERM (2 s at most), then prints a summary. Logs through `tracing` (`RUST_LOG=debug` for more).

#[path = "common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sip_stack::core::{Message, Method, Transport};
use sip_stack::endpoint::{Endpoint, ServerEvent, ServerTransaction};
use sip_stack::ua::{AckOutcome, TwoXxRetransmitter};
use tokio::sync::Notify;

const USAGE: &str = "usage: uas [--udp ADDR] [--ring-ms MS] [--exit-after N] [--linger-secs S]";

struct Args {
    udp: SocketAddr,
    ring: Duration,
    exit_after: Option<u64>,
    linger: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        udp: "127.0.0.1:5070".parse().map_err(|e| format!("{e}"))?,
        ring: Duration::from_millis(300),
        exit_after: None,
        linger: Duration::from_secs(16),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        let num = |v: String| v.parse::<u64>().map_err(|e| format!("{v}: {e}"));
        match flag.as_str() {
            "--udp" => {
                let v = value("--udp")?;
                a.udp = v.parse().map_err(|e| format!("{v}: {e}"))?;
            }
            "--ring-ms" => a.ring = Duration::from_millis(num(value("--ring-ms")?)?),
            "--exit-after" => a.exit_after = Some(num(value("--exit-after")?)?),
            "--linger-secs" => a.linger = Duration::from_secs(num(value("--linger-secs")?)?),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    Ok(a)
}

#[derive(Default)]
struct Stats {
    options: AtomicU64,
    invites: AtomicU64,
    answered: AtomicU64,
    acked: AtomicU64,
    ack_retransmissions: AtomicU64,
    no_ack: AtomicU64,
    two_xx_retransmissions: AtomicU64,
    cancelled: AtomicU64,
    calls: AtomicU64,
    unknown_bye: AtomicU64,
    rejected: AtomicU64,
}

struct Uas {
    endpoint: Endpoint,
    answers: TwoXxRetransmitter,
    /// Call-IDs answered 2xx and not yet ended by a BYE.
    dialogs: Mutex<HashSet<String>>,
    stats: Stats,
    ring: Duration,
    exit_after: Option<u64>,
    done: Notify,
}

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

impl Uas {
    async fn request(self: &Arc<Self>, txn: ServerTransaction) {
        let req = txn.request();
        let method = req.method();
        let response = match method {
            Some(Method::Options) => {
                self.stats.options.fetch_add(1, Relaxed);
                req.response(200)
                    .header("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS")
                    .header("Accept", "application/sdp")
            }
            Some(Method::Invite) => {
                self.stats.invites.fetch_add(1, Relaxed);
                if txn.merged_with().is_some() {
                    // RFC 3261 §8.2.2.2: a merged request.
                    req.response(482)
                } else {
                    let this = self.clone();
                    tokio::spawn(async move { this.invite(txn).await });
                    return;
                }
            }
            Some(Method::Bye) => {
                let call_id = req.call_id().unwrap_or_default().to_owned();
                // A BYE before the ACK (lost on the way) ends the retransmissions too.
                self.answers.stop_call(&call_id);
                let known = self
                    .dialogs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&call_id);
                if known {
                    let calls = self.stats.calls.fetch_add(1, Relaxed) + 1;
                    tracing::info!(%call_id, calls, "call ended by BYE");
                    if self.exit_after.is_some_and(|n| calls >= n) {
                        self.done.notify_one();
                    }
                    req.response(200)
                } else {
                    self.stats.unknown_bye.fetch_add(1, Relaxed);
                    req.response(481)
                }
            }
            Some(Method::Extension(_)) | None => {
                self.stats.rejected.fetch_add(1, Relaxed);
                req.response(501)
            }
            Some(_) => {
                self.stats.rejected.fetch_add(1, Relaxed);
                req.response(405)
                    .header("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS")
            }
        };
        match response.build() {
            Ok(r) => {
                if let Err(e) = txn.respond(r).await {
                    tracing::warn!(error = %e, "respond failed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "building a response failed"),
        }
    }

    async fn invite(self: Arc<Self>, txn: ServerTransaction) {
        let req = txn.request().clone();
        let call_id = req.call_id().unwrap_or_default().to_owned();
        let tag = self.endpoint.new_tag();
        let contact = format!("<sip:uas@{}>", txn.flow().local);
        // The transaction layer sends 100 Trying itself if nothing is sent within 200 ms.
        tokio::time::sleep(self.ring).await;
        let ringing = match req
            .response(180)
            .to_tag(&tag)
            .header("Contact", &contact)
            .build()
        {
            Ok(r) => r,
            Err(e) => return tracing::warn!(error = %e, "building 180 failed"),
        };
        if let Err(e) = txn.respond(ringing).await {
            // Cancelled meanwhile: the Endpoint answered 487.
            return tracing::debug!(%call_id, error = %e, "180 not sent");
        }
        let ok = match req
            .response(200)
            .to_tag(&tag)
            .header("Contact", &contact)
            .body("application/sdp", SDP)
            .build()
        {
            Ok(r) => r,
            Err(e) => return tracing::warn!(error = %e, "building 200 failed"),
        };
        self.dialogs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(call_id.clone());
        match self.answers.send(txn, ok).await {
            Ok(pending) => {
                self.stats.answered.fetch_add(1, Relaxed);
                tracing::info!(%call_id, "answered 200");
                let report = pending.outcome().await;
                self.stats
                    .two_xx_retransmissions
                    .fetch_add(report.retransmissions.into(), Relaxed);
                if report.outcome == AckOutcome::TimedOut {
                    self.stats.no_ack.fetch_add(1, Relaxed);
                    tracing::warn!(%call_id, "no ACK for the 2xx within 64*T1");
                }
            }
            Err(e) => {
                self.dialogs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&call_id);
                tracing::debug!(%call_id, error = %e, "200 not sent");
            }
        }
    }

    fn ack(&self, request: &Message) {
        if self.answers.ack(request) {
            self.stats.acked.fetch_add(1, Relaxed);
            tracing::debug!(call_id = request.call_id().unwrap_or_default(), "ACK");
        } else {
            self.stats.ack_retransmissions.fetch_add(1, Relaxed);
        }
    }

    fn summary(&self) -> String {
        let s = &self.stats;
        let c = self.endpoint.counters();
        format!(
            "uas summary: calls={} invites={} answered={} acked={} no_ack={} \
             2xx_retransmissions={} ack_retransmissions={} options={} cancelled={} \
             unknown_bye={} rejected={} | txn retransmissions_sent={} absorbed={} timeouts={} \
             messages_in={} messages_out={}",
            s.calls.load(Relaxed),
            s.invites.load(Relaxed),
            s.answered.load(Relaxed),
            s.acked.load(Relaxed),
            s.no_ack.load(Relaxed),
            s.two_xx_retransmissions.load(Relaxed),
            s.ack_retransmissions.load(Relaxed),
            s.options.load(Relaxed),
            s.cancelled.load(Relaxed),
            s.unknown_bye.load(Relaxed),
            s.rejected.load(Relaxed),
            c.retransmissions_sent,
            c.retransmissions_absorbed,
            c.timeouts,
            c.messages_in,
            c.messages_out,
        )
    }
}

async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[tokio::main]
async fn main() -> ExitCode {
    common::init_tracing();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let endpoint = match Endpoint::builder().udp(args.udp).build().await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("uas: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = endpoint.local_addr(Transport::Udp);
    tracing::info!(addr = ?addr, "uas listening (UDP)");
    let timers = sip_transaction::Config::default();
    let uas = Arc::new(Uas {
        endpoint: endpoint.clone(),
        answers: TwoXxRetransmitter::new(timers.t1(), timers.t2()),
        dialogs: Mutex::new(HashSet::new()),
        stats: Stats::default(),
        ring: args.ring,
        exit_after: args.exit_after,
        done: Notify::new(),
    });
    let serving = {
        let uas = uas.clone();
        tokio::spawn(async move {
            while let Some(ev) = uas.endpoint.next_event().await {
                match ev {
                    ServerEvent::Request(txn) => uas.request(txn).await,
                    ServerEvent::Ack { request, .. } => uas.ack(&request),
                    ServerEvent::Cancelled { cancel, .. } => {
                        uas.stats.cancelled.fetch_add(1, Relaxed);
                        tracing::info!(call_id = cancel.call_id().unwrap_or_default(), "cancelled");
                    }
                    ServerEvent::StrayResponse { response, .. } => {
                        tracing::debug!(status = response.status(), "stray response")
                    }
                    _ => {}
                }
            }
        })
    };
    let linger = tokio::select! {
        _ = terminated() => {
            tracing::info!("signal: stopping");
            args.linger.min(Duration::from_secs(2))
        }
        _ = uas.done.notified() => {
            tracing::info!("--exit-after reached: stopping");
            // The last BYE's 200 may be lost (several times in a row) and the BYE
            // retransmitted at 0.5, 1.5, 3.5, 7.5, 11.5 and 15.5 s.
            args.linger
        }
    };
    endpoint.shutdown(linger).await;
    serving.abort();
    println!("{}", uas.summary());
    ExitCode::SUCCESS
}
