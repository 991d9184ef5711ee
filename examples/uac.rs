//! A minimal Endpoint-based UAC for interop tests (SIPp's UAS scenario in `tests/sipp/`).
//!
//! ```text
//! cargo run --example uac -- --target 127.0.0.1:5080 --calls 20 [--concurrent 4] [--hold-ms 500]
//! ```
//!
//! Sends an OPTIONS (unless `--no-options`), then `--calls` times: INVITE → final response; for
//! a 2xx the ACK (RFC 3261 §13.2.2.4: a new transaction-less request with its own branch,
//! Request-URI from the 2xx's Contact, sent to `--target` as the next hop) and, after
//! `--hold-ms`, a BYE in its own client transaction (To-tag of the 2xx, CSeq + 1) → 200.
//! Every retransmission of the 2xx (the UAS re-sends it until the ACK gets through) is
//! ACKed again with the same ACK.
//!
//! Prints counts; exits 0 when every transaction completed, 1 otherwise.

#[path = "common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sip_stack::core::builder::RequestBuilder;
use sip_stack::core::{HeaderName, Message, Method, Target, Transport};
use sip_stack::endpoint::{ClientTransaction, Destination, Endpoint, ServerEvent};

const USAGE: &str = "usage: uac --target ADDR [--calls N] [--concurrent N] [--hold-ms MS] \
[--local ADDR] [--no-options] [--max-seconds S]";

struct Args {
    target: SocketAddr,
    local: SocketAddr,
    calls: u64,
    concurrent: u64,
    hold: Duration,
    options: bool,
    max_seconds: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut target = None;
    let mut a = Args {
        target: "127.0.0.1:5080".parse().map_err(|e| format!("{e}"))?,
        local: "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?,
        calls: 1,
        concurrent: 1,
        hold: Duration::from_millis(500),
        options: true,
        max_seconds: 120,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        let num = |v: String| v.parse::<u64>().map_err(|e| format!("{v}: {e}"));
        let addr = |v: String| v.parse::<SocketAddr>().map_err(|e| format!("{v}: {e}"));
        match flag.as_str() {
            "--target" => target = Some(addr(value("--target")?)?),
            "--local" => a.local = addr(value("--local")?)?,
            "--calls" => a.calls = num(value("--calls")?)?,
            "--concurrent" => a.concurrent = num(value("--concurrent")?)?.max(1),
            "--hold-ms" => a.hold = Duration::from_millis(num(value("--hold-ms")?)?),
            "--no-options" => a.options = false,
            "--max-seconds" => a.max_seconds = num(value("--max-seconds")?)?,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    a.target = target.ok_or(format!("--target is required\n{USAGE}"))?;
    Ok(a)
}

#[derive(Default)]
struct Stats {
    options_ok: AtomicU64,
    options_failed: AtomicU64,
    calls_ok: AtomicU64,
    calls_failed: AtomicU64,
    reacks: AtomicU64,
}

struct Uac {
    endpoint: Endpoint,
    target: Target,
    hold: Duration,
    /// The ACK sent for each accepted INVITE, by (Call-ID, CSeq), to answer 2xx
    /// retransmissions that arrive after the INVITE transaction ended (stray responses).
    acks: Mutex<HashMap<(String, u32), Message>>,
    stats: Stats,
}

const SDP: &str = "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 40002 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

fn key_of(msg: &Message) -> Option<(String, u32)> {
    Some((msg.call_id()?.to_owned(), msg.cseq().ok()?.seq))
}

impl Uac {
    fn local(&self) -> SocketAddr {
        self.endpoint
            .local_addr(Transport::Udp)
            .expect("a UDP listener")
    }

    fn request(&self, method: Method, call_id: &str, from_tag: &str) -> RequestBuilder {
        let uri = format!("sip:service@{}", self.target.addr);
        RequestBuilder::new(method, &uri)
            .header("Via", self.endpoint.via(Transport::Udp))
            .header("From", format!("<sip:uac@{}>;tag={from_tag}", self.local()))
            .header("To", format!("<{uri}>"))
            .header("Call-ID", call_id)
    }

    async fn options(&self) -> bool {
        let req = self
            .request(
                Method::Options,
                &self.endpoint.new_call_id(),
                &self.endpoint.new_tag(),
            )
            .header("CSeq", "1 OPTIONS")
            .build();
        let ok = match req {
            Ok(r) => match self.endpoint.request(r, self.target.clone()).await {
                Ok(mut t) => match t.final_response().await {
                    Ok(resp) => {
                        tracing::info!(status = resp.status(), "OPTIONS answered");
                        resp.status() == Some(200)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "OPTIONS failed");
                        false
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "OPTIONS not sent");
                    false
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "building OPTIONS failed");
                false
            }
        };
        let counter = if ok {
            &self.stats.options_ok
        } else {
            &self.stats.options_failed
        };
        counter.fetch_add(1, Relaxed);
        ok
    }

    /// RFC 3261 §13.2.2.4: the ACK of a 2xx, a request of the dialog with its own branch and
    /// the INVITE's CSeq number; Request-URI: the remote target (the 2xx's Contact).
    fn ack_for(&self, invite: &Message, ok: &Message) -> Result<Message, String> {
        let remote_target = remote_target(invite, ok);
        let cseq = invite.cseq().map_err(|e| e.to_string())?.seq;
        let mut b = RequestBuilder::new(Method::Ack, &remote_target)
            .header("Via", self.endpoint.via(Transport::Udp))
            .header("From", invite.header(HeaderName::From).unwrap_or_default())
            .header("To", ok.header(HeaderName::To).unwrap_or_default())
            .header("Call-ID", invite.call_id().unwrap_or_default())
            .header("CSeq", format!("{cseq} ACK"));
        for route in route_set(ok) {
            b = b.header("Route", route);
        }
        b.build().map_err(|e| e.to_string())
    }

    async fn call(self: &Arc<Self>, n: u64) -> Result<(), String> {
        let call_id = self.endpoint.new_call_id();
        let from_tag = self.endpoint.new_tag();
        let invite = self
            .request(Method::Invite, &call_id, &from_tag)
            .header("CSeq", "1 INVITE")
            .header("Contact", format!("<sip:uac@{}>", self.local()))
            .body("application/sdp", SDP)
            .build()
            .map_err(|e| e.to_string())?;
        let mut txn = self
            .endpoint
            .request(invite.clone(), self.target.clone())
            .await
            .map_err(|e| format!("INVITE not sent: {e}"))?;
        let ok = txn
            .final_response()
            .await
            .map_err(|e| format!("INVITE: {e}"))?;
        let status = ok.status().unwrap_or(0);
        if !(200..300).contains(&status) {
            return Err(format!("INVITE answered {status}"));
        }
        let ack = self.ack_for(&invite, &ok)?;
        if let Some(k) = key_of(&invite) {
            self.acks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(k, ack.clone());
        }
        self.send_ack(&ack).await;
        // Retransmissions of the 2xx (our ACK was lost) come on the transaction until Timer M.
        let reacking = tokio::spawn(self.clone().reack(txn, ack));
        tracing::debug!(call = n, %call_id, "ACK sent");

        tokio::time::sleep(self.hold).await;

        let bye = {
            let remote_target = remote_target(&invite, &ok);
            let mut b = RequestBuilder::new(Method::Bye, &remote_target)
                .header("Via", self.endpoint.via(Transport::Udp))
                .header("From", invite.header(HeaderName::From).unwrap_or_default())
                .header("To", ok.header(HeaderName::To).unwrap_or_default())
                .header("Call-ID", &call_id)
                .header("CSeq", "2 BYE");
            for route in route_set(&ok) {
                b = b.header("Route", route);
            }
            b.build().map_err(|e| e.to_string())?
        };
        let result = match self.endpoint.request(bye, self.target.clone()).await {
            Ok(mut t) => match t.final_response().await {
                Ok(r) if r.status() == Some(200) => Ok(()),
                Ok(r) => Err(format!("BYE answered {}", r.status().unwrap_or(0))),
                Err(e) => Err(format!("BYE: {e}")),
            },
            Err(e) => Err(format!("BYE not sent: {e}")),
        };
        reacking.abort();
        result
    }

    async fn send_ack(&self, ack: &Message) {
        if let Err(e) = self
            .endpoint
            .send_stateless(ack.clone(), Destination::Target(self.target.clone()))
            .await
        {
            tracing::warn!(error = %e, "ACK not sent");
        }
    }

    async fn reack(self: Arc<Self>, mut txn: ClientTransaction, ack: Message) {
        while let Some(r) = txn.next_response().await {
            if r.status().is_some_and(|s| (200..300).contains(&s)) {
                self.stats.reacks.fetch_add(1, Relaxed);
                tracing::debug!(
                    call_id = ack.call_id().unwrap_or_default(),
                    "2xx again: re-ACK"
                );
                self.send_ack(&ack).await;
            }
        }
    }

    /// Events: 2xx retransmissions after the INVITE transaction ended are ACKed again;
    /// requests (none expected) are answered.
    async fn events(self: Arc<Self>) {
        while let Some(ev) = self.endpoint.next_event().await {
            match ev {
                ServerEvent::StrayResponse { response, .. } => {
                    let is_2xx_invite = response.status().is_some_and(|s| (200..300).contains(&s))
                        && response.cseq().is_ok_and(|c| c.method == Method::Invite);
                    if !is_2xx_invite {
                        continue;
                    }
                    let ack = key_of(&response).and_then(|k| {
                        self.acks
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get(&k)
                            .cloned()
                    });
                    if let Some(ack) = ack {
                        self.stats.reacks.fetch_add(1, Relaxed);
                        self.send_ack(&ack).await;
                    }
                }
                ServerEvent::Request(txn) => {
                    let status = match txn.request().method() {
                        Some(Method::Options) => 200,
                        Some(Method::Bye) => 481,
                        _ => 501,
                    };
                    if let Ok(r) = txn.request().response(status).build() {
                        let _ = txn.respond(r).await;
                    }
                }
                _ => {}
            }
        }
    }
}

/// The remote target: the 2xx's Contact URI, else the INVITE's Request-URI.
fn remote_target(invite: &Message, ok: &Message) -> String {
    ok.contacts()
        .next()
        .and_then(|c| c.ok())
        .and_then(|c| c.addr().map(|a| a.uri_str().to_owned()))
        .unwrap_or_else(|| invite.uri_str().unwrap_or_default().to_owned())
}

/// The route set of a UAC: the 2xx's Record-Route in reverse order (§12.1.2).
fn route_set(ok: &Message) -> Vec<String> {
    let mut routes: Vec<String> = ok
        .values(HeaderName::RecordRoute)
        .map(str::to_owned)
        .collect();
    routes.reverse();
    routes
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
    let endpoint = match Endpoint::builder().udp(args.local).build().await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("uac: {e}");
            return ExitCode::FAILURE;
        }
    };
    let uac = Arc::new(Uac {
        endpoint: endpoint.clone(),
        target: Target::new(Transport::Udp, args.target),
        hold: args.hold,
        acks: Mutex::new(HashMap::new()),
        stats: Stats::default(),
    });
    tracing::info!(local = ?endpoint.local_addr(Transport::Udp), target = %args.target, calls = args.calls, "uac starting");
    let events = tokio::spawn(uac.clone().events());
    let started = Instant::now();

    let work = {
        let uac = uac.clone();
        async move {
            if args.options {
                uac.options().await;
            }
            let next = Arc::new(AtomicU64::new(0));
            let mut workers = Vec::new();
            for _ in 0..args.concurrent.min(args.calls.max(1)) {
                let (uac, next) = (uac.clone(), next.clone());
                let calls = args.calls;
                workers.push(tokio::spawn(async move {
                    loop {
                        let n = next.fetch_add(1, Relaxed);
                        if n >= calls {
                            break;
                        }
                        match uac.call(n).await {
                            Ok(()) => {
                                uac.stats.calls_ok.fetch_add(1, Relaxed);
                                tracing::info!(call = n, "call completed");
                            }
                            Err(e) => {
                                uac.stats.calls_failed.fetch_add(1, Relaxed);
                                tracing::warn!(call = n, error = %e, "call failed");
                            }
                        }
                    }
                }));
            }
            for w in workers {
                let _ = w.await;
            }
        }
    };
    let finished = tokio::time::timeout(Duration::from_secs(args.max_seconds), work)
        .await
        .is_ok();
    if !finished {
        tracing::error!(max_seconds = args.max_seconds, "time limit reached");
    }
    endpoint.shutdown(Duration::from_millis(500)).await;
    events.abort();

    let s = &uac.stats;
    let c = endpoint.counters();
    let (ok, failed) = (s.calls_ok.load(Relaxed), s.calls_failed.load(Relaxed));
    let (opt_ok, opt_failed) = (s.options_ok.load(Relaxed), s.options_failed.load(Relaxed));
    println!(
        "uac summary: calls={} ok={ok} failed={failed} options_ok={opt_ok} options_failed={opt_failed} \
         reacks={} elapsed={:.1}s | txn retransmissions_sent={} absorbed={} timeouts={}",
        args.calls,
        s.reacks.load(Relaxed),
        started.elapsed().as_secs_f64(),
        c.retransmissions_sent,
        c.retransmissions_absorbed,
        c.timeouts,
    );
    let all = finished
        && ok == args.calls
        && failed == 0
        && opt_failed == 0
        && (opt_ok == 1 || !args.options);
    if all {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
