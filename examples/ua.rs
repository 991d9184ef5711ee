//! A command-line softphone without audio, on [`sip_stack::ua::UserAgent`].
//!
//! ```text
//! cargo run --release --example ua -- --bind 127.0.0.1:5070 --aor sip:alice@example.com \
//!     [--password PW] [--registrar HOST:PORT] [--proxy HOST:PORT] [--transport udp|tcp] \
//!     [--answer] [--call URI [--duration SECS] [--calls N --rate CPS]] \
//!     [--message URI --text TEXT] [--prack] [--session-timer SECS] [--dns ADDR:PORT] \
//!     [--watch URI] [--presence open|closed] [--json]
//! ```
//!
//! - `--bind`: UDP and TCP listen there. `--registrar`: registers on start (digest with the
//!   AOR's user and `--password` for the AOR's domain as realm), refreshes, unregisters on exit.
//!   `--proxy`: every request goes there.
//! - `--answer`: answers every call with 200 and an SDP answer, echoes RTP that arrives on the
//!   advertised media port back to its sender, and stays up logging events until SIGINT/SIGTERM.
//! - `--call URI`: places a call, hangs up after `--duration` seconds (default 2; a BYE from
//!   the peer also ends it cleanly); exit 0 only if it was answered and ended cleanly. SIGINT or
//!   SIGTERM cancels a ringing call (CANCEL) and hangs up an answered one. With `--calls N --rate CPS`: N calls at CPS calls per
//!   second, then a summary (succeeded, failed, setup time p50/p99); exit 0 only if all
//!   succeeded.
//! - `--message URI --text TEXT`: sends a MESSAGE; exit 0 on a 2xx.
//! - `--dns ADDR:PORT`: targets (registrar, callee, MESSAGE recipient) are found by RFC 3263
//!   (NAPTR, SRV, A/AAAA) asking only this nameserver, instead of an address lookup.
//! - `--json`: one JSON object per event line on stdout.
//! - `--prack` (RFC 3262): our INVITEs require `100rel`; with `--answer`, a call whose INVITE
//!   supports it gets a reliable 183 with the SDP answer (early media), and the 200 follows its
//!   PRACK. Reliable provisionals are acknowledged with PRACK with or without the flag.
//! - `--session-timer SECS` (RFC 4028): calls ask for (and incoming ones are granted at most)
//!   a session interval of SECS (at least 90); the refresher sends an UPDATE (or re-INVITE) at
//!   half of it, and a session not refreshed in time is ended with BYE. Logged as
//!   `session_timer` events.
//! - `--watch URI` (RFC 6665, RFC 3856): subscribes to the presence of URI (through `--proxy`
//!   when given, e.g. `proxy --presence`) and logs each NOTIFY as a `notify` event with its
//!   Subscription-State (`state`, `reason`) and the PIDF basic status (`basic`: `open`,
//!   `closed`) and contacts; stays up until SIGINT/SIGTERM, then unsubscribes and logs the
//!   terminating NOTIFY. Exit 0 only if the subscription was accepted and ended by our
//!   unsubscribe.
//! - `--presence open|closed`: answers presence SUBSCRIBEs itself (peer to peer, without a
//!   presence server) with a PIDF of that basic status and our Contact, and stays up like
//!   `--answer`; other event packages get 489.
//!
//! SDP offers and answers are written and read with the `sdp-types` crate.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sip_stack::core::{Target, Transport};
use sip_stack::endpoint::Endpoint;
use sip_stack::events::pidf::{Basic, Pidf, Tuple, PIDF_TYPE};
use sip_stack::ua::{Call, CallEnd, CallEvent, Content, SubState, SubscriptionEvent, UserAgent};

const USAGE: &str = "usage: ua --bind ADDR --aor URI [--password PW] [--registrar HOST:PORT] \
[--proxy HOST:PORT] [--transport udp|tcp] [--answer] [--call URI [--duration SECS] \
[--calls N --rate CPS]] [--message URI --text TEXT] [--prack] [--session-timer SECS] \
[--dns ADDR:PORT] [--watch URI] [--presence open|closed] [--json]";

#[derive(Debug, Clone)]
struct Args {
    bind: SocketAddr,
    aor: String,
    password: Option<String>,
    registrar: Option<String>,
    proxy: Option<SocketAddr>,
    transport: Transport,
    answer: bool,
    call: Option<String>,
    duration: f64,
    calls: u64,
    rate: f64,
    message: Option<String>,
    text: Option<String>,
    prack: bool,
    session_timer: Option<u32>,
    dns: Option<SocketAddr>,
    watch: Option<String>,
    presence: Option<Basic>,
    json: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        bind: "127.0.0.1:5070".parse().map_err(|e| format!("{e}"))?,
        aor: String::new(),
        password: None,
        registrar: None,
        proxy: None,
        transport: Transport::Udp,
        answer: false,
        call: None,
        duration: 2.0,
        calls: 1,
        rate: 10.0,
        message: None,
        text: None,
        prack: false,
        session_timer: None,
        dns: None,
        watch: None,
        presence: None,
        json: false,
    };
    let mut bind = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match flag.as_str() {
            "--bind" => {
                bind = Some(
                    value("--bind")?
                        .parse()
                        .map_err(|e| format!("--bind: {e}"))?,
                )
            }
            "--aor" => a.aor = value("--aor")?,
            "--password" => a.password = Some(value("--password")?),
            "--registrar" => a.registrar = Some(value("--registrar")?),
            "--dns" => a.dns = Some(value("--dns")?.parse().map_err(|e| format!("--dns: {e}"))?),
            "--proxy" => {
                a.proxy = Some(
                    value("--proxy")?
                        .parse()
                        .map_err(|e| format!("--proxy: {e}"))?,
                )
            }
            "--transport" => {
                a.transport = match value("--transport")?.as_str() {
                    "udp" => Transport::Udp,
                    "tcp" => Transport::Tcp,
                    other => return Err(format!("--transport: {other}: udp or tcp")),
                }
            }
            "--answer" => a.answer = true,
            "--call" => a.call = Some(value("--call")?),
            "--duration" => {
                a.duration = value("--duration")?
                    .parse()
                    .map_err(|e| format!("--duration: {e}"))?
            }
            "--calls" => {
                a.calls = value("--calls")?
                    .parse()
                    .map_err(|e| format!("--calls: {e}"))?
            }
            "--rate" => {
                a.rate = value("--rate")?
                    .parse()
                    .map_err(|e| format!("--rate: {e}"))?
            }
            "--message" => a.message = Some(value("--message")?),
            "--text" => a.text = Some(value("--text")?),
            "--prack" => a.prack = true,
            "--session-timer" => {
                a.session_timer = Some(
                    value("--session-timer")?
                        .parse()
                        .map_err(|e| format!("--session-timer: {e}"))?,
                )
            }
            "--watch" => a.watch = Some(value("--watch")?),
            "--presence" => {
                a.presence = Some(match value("--presence")?.as_str() {
                    "open" => Basic::Open,
                    "closed" => Basic::Closed,
                    other => return Err(format!("--presence: {other}: open or closed")),
                })
            }
            "--json" => a.json = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    a.bind = bind.ok_or(format!("--bind is required\n{USAGE}"))?;
    if a.aor.is_empty() {
        return Err(format!("--aor is required\n{USAGE}"));
    }
    if a.rate <= 0.0 || a.calls == 0 {
        return Err("--rate and --calls must be positive".into());
    }
    if a.message.is_some() != a.text.is_some() {
        return Err("--message and --text go together".into());
    }
    Ok(a)
}

/// Prints events: a JSON object per line with `--json`, else a tracing line.
#[derive(Clone, Copy)]
struct Log {
    json: bool,
}

impl Log {
    fn event(&self, call: u64, name: &str, fields: serde_json::Value) {
        if self.json {
            let mut obj = serde_json::json!({ "event": name, "call": call });
            if let (Some(o), serde_json::Value::Object(f)) = (obj.as_object_mut(), fields) {
                o.extend(f);
            }
            println!("{obj}");
        } else {
            tracing::info!(call, event = name, %fields);
        }
    }
}

/// An SDP (RFC 8866) for one PCMU/telephone-event audio stream at `ip:port`.
fn sdp(ip: IpAddr, port: u16, version: u64) -> Bytes {
    use sdp_types::{Attribute, Connection, Media, Origin, Session, Time};
    let mut session = Session::new(
        {
            let mut o = Origin::with_ip_addr(rand_u32(), version, ip);
            o.set_username("-");
            o
        },
        "sip-stack ua",
    );
    session.connection = Some(Connection::from_ip_addr(ip));
    session.times.push(Time::new(0, 0));
    let mut audio = Media::new(
        sdp_types::MediaType::Audio,
        port,
        sdp_types::TransportProto::RtpAvp,
        "0 101",
    );
    audio
        .attributes
        .push(Attribute::with_value("rtpmap", "0 PCMU/8000"));
    audio
        .attributes
        .push(Attribute::with_value("rtpmap", "101 telephone-event/8000"));
    audio.attributes.push(Attribute::new("sendrecv"));
    session.medias.push(audio);
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = session.write(&mut out);
    Bytes::from(out)
}

/// The first audio stream's address in a remote SDP, for the log.
fn remote_media(body: &[u8]) -> serde_json::Value {
    match sdp_types::Session::parse(body) {
        Ok(s) => {
            let addr = s.connection.as_ref().map(|c| c.connection_address.clone());
            let port = s.medias.iter().find(|m| m.media == "audio").map(|m| m.port);
            serde_json::json!({ "media_addr": addr, "media_port": port })
        }
        Err(_) => serde_json::json!({ "media": null }),
    }
}

fn rand_u32() -> u32 {
    use sip_stack::core::random::RandomSource;
    sip_stack::core::random::OsRandom.next_u64() as u32
}

/// Echoes every datagram back to its sender (the RTP "answering machine").
async fn rtp_echo(socket: tokio::net::UdpSocket) {
    let mut buf = vec![0u8; 2048];
    while let Ok((n, from)) = socket.recv_from(&mut buf).await {
        if let Some(packet) = buf.get(..n) {
            let _ = socket.send_to(packet, from).await;
        }
    }
}

async fn answer_mode(ua: UserAgent, log: Log, media: SocketAddr, prack: bool) {
    let mut incoming = ua.incoming();
    let mut n = 0u64;
    while let Some(call) = incoming.next().await {
        n += 1;
        let id = n;
        log.event(id, "incoming", serde_json::json!({ "from": call.from() }));
        tokio::spawn(async move {
            let answer = sdp(media.ip(), media.port(), 1);
            let rung = if prack {
                call.progress(answer.clone()).await
            } else {
                call.ring().await
            };
            if let Err(e) = rung {
                log.event(id, "error", serde_json::json!({ "error": e.to_string() }));
                return;
            }
            let remote = remote_media(&call.offer());
            let mut call = match call.accept(answer).await {
                Ok(c) => c,
                Err(e) => {
                    return log.event(id, "error", serde_json::json!({ "error": e.to_string() }))
                }
            };
            log.event(id, "answered", remote);
            while let Some(ev) = call.next_event().await {
                report(log, id, &ev);
            }
        });
    }
}

fn report(log: Log, id: u64, ev: &CallEvent) {
    match ev {
        CallEvent::Trying => log.event(id, "trying", serde_json::json!({})),
        CallEvent::Ringing {
            status,
            early_media,
        } => log.event(
            id,
            "ringing",
            serde_json::json!({ "status": status, "early_media": early_media.is_some() }),
        ),
        CallEvent::Answered { sdp } => log.event(id, "answered", remote_media(sdp)),
        CallEvent::Failed { status } => {
            log.event(id, "failed", serde_json::json!({ "status": status }))
        }
        CallEvent::Ended { cause } => log.event(
            id,
            "ended",
            serde_json::json!({ "cause": format!("{cause:?}") }),
        ),
        CallEvent::Offer { method, sdp } => {
            let mut v = remote_media(sdp);
            if let Some(o) = v.as_object_mut() {
                o.insert("method".into(), method.clone().into());
            }
            log.event(id, "offer", v)
        }
        CallEvent::SessionTimer {
            interval,
            we_refresh,
        } => log.event(
            id,
            "session_timer",
            serde_json::json!({ "interval": interval, "we_refresh": we_refresh }),
        ),
        CallEvent::Info { content_type, .. } => log.event(
            id,
            "info",
            serde_json::json!({ "content_type": content_type }),
        ),
        _ => log.event(
            id,
            "other",
            serde_json::json!({ "debug": format!("{ev:?}") }),
        ),
    }
}

/// One call: answered, held for `duration`, hung up (a BYE from the peer also ends it
/// cleanly). A signal (`stop`) cancels it while it rings and hangs it up once answered.
/// `Ok(setup time)` when it was answered and ended cleanly.
async fn one_call(
    ua: UserAgent,
    log: Log,
    id: u64,
    target: String,
    media: SocketAddr,
    duration: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Duration, String> {
    let started = Instant::now();
    let mut call: Call = ua
        .call(&target, sdp(media.ip(), media.port(), 1))
        .await
        .map_err(|e| e.to_string())?;
    let mut cancelled = false;
    let setup = loop {
        let ev = tokio::select! {
            ev = tokio::time::timeout(Duration::from_secs(64), call.next_event()) => ev
                .map_err(|_| "no answer within 64 s".to_string())?
                .ok_or("call ended without an answer")?,
            _ = stop.wait_for(|s| *s), if !cancelled => {
                cancelled = true;
                log.event(id, "cancel", serde_json::json!({}));
                call.cancel();
                continue;
            }
        };
        report(log, id, &ev);
        match ev {
            CallEvent::Answered { .. } if cancelled => break None,
            CallEvent::Answered { .. } => break Some(started.elapsed()),
            CallEvent::Failed { status } => return Err(format!("failed with {status}")),
            CallEvent::Ended { cause } => return Err(format!("ended: {cause:?}")),
            _ => {}
        }
    };
    let hold = tokio::time::sleep(duration);
    tokio::pin!(hold);
    while setup.is_some() {
        tokio::select! {
            _ = &mut hold => break,
            _ = stop.wait_for(|s| *s) => break,
            ev = call.next_event() => match ev {
                Some(CallEvent::Ended { cause: CallEnd::RemoteBye }) => {
                    report(log, id, &CallEvent::Ended { cause: CallEnd::RemoteBye });
                    return setup.ok_or_else(|| "cancelled".to_string());
                }
                Some(ev) => {
                    report(log, id, &ev);
                    if matches!(ev, CallEvent::Ended { .. }) {
                        return Err(format!("ended early: {ev:?}"));
                    }
                }
                None => return Err("call handle closed".into()),
            },
        }
    }
    call.bye().await.map_err(|e| format!("BYE: {e}"))?;
    while let Some(ev) = call.next_event().await {
        report(log, id, &ev);
    }
    setup.ok_or_else(|| "cancelled".to_string())
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

async fn call_mode(
    ua: UserAgent,
    args: &Args,
    log: Log,
    media: SocketAddr,
    target: String,
) -> bool {
    let duration = Duration::from_secs_f64(args.duration.max(0.0));
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
        // Keep the sender alive so that the calls keep seeing the flag.
        std::future::pending::<()>().await;
    });
    let mut tasks = Vec::new();
    let mut tick = tokio::time::interval(interval);
    for id in 1..=args.calls {
        tick.tick().await;
        if *stop.borrow() {
            break;
        }
        let call = one_call(
            ua.clone(),
            log,
            id,
            target.clone(),
            media,
            duration,
            stop.clone(),
        );
        tasks.push(tokio::spawn(call));
    }
    let (mut setups, mut failed) = (Vec::new(), 0u64);
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await {
            Ok(Ok(setup)) => setups.push(setup),
            Ok(Err(e)) => {
                failed += 1;
                log.event(
                    i as u64 + 1,
                    "call_failed",
                    serde_json::json!({ "error": e }),
                );
            }
            Err(e) => {
                failed += 1;
                log.event(
                    i as u64 + 1,
                    "call_failed",
                    serde_json::json!({ "error": e.to_string() }),
                );
            }
        }
    }
    setups.sort();
    if args.calls > 1 || args.json {
        let summary = serde_json::json!({
            "event": "summary",
            "calls": args.calls,
            "succeeded": setups.len(),
            "failed": failed,
            "setup_p50_ms": percentile(&setups, 0.5),
            "setup_p99_ms": percentile(&setups, 0.99),
        });
        if args.json {
            println!("{summary}");
        } else {
            println!(
                "ua summary: calls={} succeeded={} failed={failed} setup_p50={:.1}ms setup_p99={:.1}ms",
                args.calls,
                setups.len(),
                percentile(&setups, 0.5),
                percentile(&setups, 0.99)
            );
        }
    }
    failed == 0 && setups.len() as u64 == args.calls
}

/// Watches the presence of `target` until a signal, then unsubscribes; true when it was
/// accepted and ended by our unsubscribe.
async fn watch_mode(ua: UserAgent, log: Log, target: String) -> bool {
    let mut sub = match ua.subscribe(&target, "presence", 3600, &[PIDF_TYPE]).await {
        Ok(s) => s,
        Err(e) => {
            log.event(
                0,
                "watch_failed",
                serde_json::json!({ "error": e.to_string() }),
            );
            return false;
        }
    };
    log.event(0, "watching", serde_json::json!({ "target": target }));
    let stop = shutdown_signal();
    tokio::pin!(stop);
    let mut unsubscribed = false;
    loop {
        tokio::select! {
            ev = sub.next() => match ev {
                Some(ev) => report_notify(log, &ev),
                None => return unsubscribed,
            },
            _ = &mut stop, if !unsubscribed => {
                unsubscribed = true;
                sub.unsubscribe().await;
            }
        }
    }
}

/// Logs a NOTIFY of `--watch`: its state and the PIDF's basic status and contacts.
fn report_notify(log: Log, ev: &SubscriptionEvent) {
    match ev {
        SubscriptionEvent::Notify(n) => {
            let (state, reason) = match &n.state {
                SubState::Active => ("active", None),
                SubState::Pending => ("pending", None),
                SubState::Terminated { reason, .. } => ("terminated", reason.clone()),
            };
            let doc = n.content.as_ref().and_then(|c| Pidf::parse(&c.body).ok());
            let basic = doc.as_ref().map(|d| d.basic().as_str());
            let contacts: Vec<&str> = doc
                .iter()
                .flat_map(|d| d.tuples.iter().filter_map(|t| t.contact.as_deref()))
                .collect();
            log.event(
                0,
                "notify",
                serde_json::json!({ "state": state, "reason": reason, "basic": basic, "contacts": contacts }),
            );
        }
        SubscriptionEvent::Removed { status, .. } => log.event(
            0,
            "subscription_removed",
            serde_json::json!({ "status": status }),
        ),
        other => log.event(
            0,
            "other",
            serde_json::json!({ "debug": format!("{other:?}") }),
        ),
    }
}

/// Answers presence SUBSCRIBEs with our PIDF (`basic`, our Contact) until a signal, then
/// terminates every subscription (`reason=deactivated`) and waits for their last NOTIFYs to be
/// answered (at most 5 s).
async fn presence_mode(ua: UserAgent, log: Log, aor: String, basic: Basic) {
    let mut requests = ua.subscriptions();
    let mut doc = Pidf::new(aor);
    let mut tuple = Tuple::new("ua", basic);
    tuple.contact = Some(ua.contact().to_owned());
    doc.tuples.push(tuple);
    let state = Content {
        content_type: PIDF_TYPE.to_owned(),
        body: Bytes::from(doc.to_xml()),
    };
    let mut notifiers: Vec<sip_stack::ua::Notifier> = Vec::new();
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        let inc = tokio::select! {
            inc = requests.next() => match inc {
                Some(inc) => inc,
                None => return,
            },
            _ = &mut stop => break,
        };
        if inc.event().package != "presence" {
            inc.reject(489).await;
            continue;
        }
        let from = inc.from();
        match inc.accept(Some(state.clone())).await {
            Ok(n) => {
                log.event(0, "watcher", serde_json::json!({ "from": from }));
                notifiers.retain(|n| n.is_active());
                notifiers.push(n);
            }
            Err(e) => log.event(0, "error", serde_json::json!({ "error": e.to_string() })),
        }
    }
    let ending = async {
        for mut n in notifiers {
            if n.terminate("deactivated").is_err() {
                continue;
            }
            while let Some(ev) = n.next_event().await {
                if let sip_stack::ua::NotifierEvent::Ended(end) = ev {
                    let why = format!("{end:?}");
                    log.event(0, "watcher_ended", serde_json::json!({ "end": why }));
                    break;
                }
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), ending).await;
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

async fn run(args: Args) -> Result<bool, String> {
    let mut eb = Endpoint::builder().udp(args.bind).tcp(args.bind);
    #[cfg(feature = "dns")]
    if let Some(ns) = args.dns {
        eb = eb.dns(ns);
    }
    #[cfg(not(feature = "dns"))]
    if args.dns.is_some() {
        return Err("--dns: built without the dns feature".into());
    }
    let endpoint = eb
        .build()
        .await
        .map_err(|e| format!("binding {}: {e}", args.bind))?;
    let aor = sip_stack::core::uri::Uri::parse(&args.aor).map_err(|e| format!("--aor: {e}"))?;
    let (user, domain) = (
        aor.user().unwrap_or("ua").to_owned(),
        aor.host_str().to_owned(),
    );
    let mut b = UserAgent::builder(endpoint.clone())
        .aor(&args.aor)
        .transport(args.transport)
        .prack(args.prack);
    if let Some(secs) = args.session_timer {
        b = b.session_timer(secs);
    }
    if let Some(pw) = &args.password {
        b = b.credentials(&domain, &user, pw);
    }
    if let Some(p) = args.proxy {
        b = b.outbound_proxy(Target::new(args.transport, p));
    }
    #[cfg(feature = "dns")]
    if args.dns.is_some() {
        b = b.rfc3263(true);
    }
    let ua = b.build().map_err(|e| e.to_string())?;
    let log = Log { json: args.json };
    let rtp = tokio::net::UdpSocket::bind((args.bind.ip(), 0))
        .await
        .map_err(|e| format!("RTP socket: {e}"))?;
    let media = rtp.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(rtp_echo(rtp));
    log.event(0, "started", serde_json::json!({ "bind": args.bind.to_string(), "contact": ua.contact(), "media_port": media.port() }));

    let registration = match &args.registrar {
        Some(r) => {
            let uri = if r.starts_with("sip:") || r.starts_with("sips:") {
                r.clone()
            } else {
                format!("sip:{r}")
            };
            let mut reg = ua.register(&uri, 3600).await.map_err(|e| e.to_string())?;
            let state = tokio::time::timeout(Duration::from_secs(40), reg.changed())
                .await
                .ok()
                .flatten();
            log.event(
                0,
                "registration",
                serde_json::json!({ "state": format!("{state:?}") }),
            );
            if !matches!(
                state,
                Some(sip_stack::ua::RegistrationState::Registered { .. })
            ) {
                return Err(format!("registration failed: {state:?}"));
            }
            Some(reg)
        }
        None => None,
    };

    let mut ok = true;
    if let (Some(target), Some(text)) = (&args.message, &args.text) {
        let status = ua
            .message(target, "text/plain", Bytes::from(text.clone()))
            .await
            .map_err(|e| e.to_string())?;
        log.event(0, "message", serde_json::json!({ "status": status }));
        ok &= (200..300).contains(&status);
    }
    if let Some(target) = &args.call {
        ok &= call_mode(ua.clone(), &args, log, media, target.clone()).await;
    }
    if args.answer || args.presence.is_some() || args.watch.is_some() {
        ok &= stay_up(&ua, &args, log, media).await;
    }
    if let Some(reg) = registration {
        reg.close().await;
        log.event(0, "unregistered", serde_json::json!({}));
    }
    let stats = ua.dialog_stats();
    log.event(0, "stopped", serde_json::json!({ "dialogs_created": stats.created, "dialogs_live": stats.early + stats.confirmed }));
    ua.close();
    endpoint.shutdown(Duration::from_secs(1)).await;
    Ok(ok)
}

/// `--answer`, `--presence` and `--watch`: up until a signal (`--watch` then unsubscribes
/// and waits for the terminating NOTIFY). False when the watch failed.
async fn stay_up(ua: &UserAgent, args: &Args, log: Log, media: SocketAddr) -> bool {
    if args.answer {
        let mut inbox = ua.messages();
        tokio::spawn(async move {
            while let Some(m) = inbox.next().await {
                let text = String::from_utf8_lossy(&m.body).into_owned();
                log.event(
                    0,
                    "message",
                    serde_json::json!({ "from": m.from, "text": text }),
                );
            }
        });
    }
    let answering = async {
        if args.answer {
            answer_mode(ua.clone(), log, media, args.prack).await
        } else {
            std::future::pending().await
        }
    };
    // Ends at a signal (after the terminating NOTIFYs of `--presence`); with `--watch`, the
    // watch takes the signal (and unsubscribes).
    let serving = async {
        match args.presence {
            Some(basic) => presence_mode(ua.clone(), log, args.aor.clone(), basic).await,
            None if args.watch.is_some() => std::future::pending().await,
            None => shutdown_signal().await,
        }
    };
    match &args.watch {
        Some(target) => tokio::select! {
            ok = watch_mode(ua.clone(), log, target.clone()) => ok,
            _ = answering => true,
            _ = serving => true,
        },
        None => {
            tokio::select! {
                _ = answering => {}
                _ = serving => {}
            }
            true
        }
    }
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
    // Logs on stderr (stdout carries the summary and the --json events).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(if args.json { "warn" } else { "info" })
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("ua: {e}");
            ExitCode::FAILURE
        }
    }
}
