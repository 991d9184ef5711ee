//! RFC 4028 session timers through the UserAgent on loopback, on paused time (tokio's clock
//! moves only when every task waits, so the instants are exact):
//!
//! - two UserAgents: the caller asks for 90 s and refreshes with UPDATE every 45 s; the call
//!   stays up over several intervals;
//! - a raw UDP socket as a caller that names itself refresher and never refreshes: the
//!   UserAgent ends the call with BYE at 90 − 30 = 60 s;
//! - a raw caller asking for 60 s gets 422 with Min-SE: 90;
//! - a raw callee answering 422 with Min-SE: 120: the UserAgent's INVITE comes again with
//!   Session-Expires: 120 and Min-SE: 120, CSeq + 1.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use sip_stack::core::{HeaderName, Message, Transport};
use sip_stack::endpoint::Endpoint;
use sip_stack::ua::{CallEnd, CallEvent, UserAgent};
use sip_transaction::Config;
use tokio::net::UdpSocket;
use tokio::time::Instant;

const T1: Duration = Duration::from_millis(100);
const LIMIT: Duration = Duration::from_secs(600);

async fn ua(user: &str, session_timer: Option<u32>) -> UserAgent {
    let ep = Endpoint::builder()
        .udp("127.0.0.1:0".parse().unwrap())
        .transaction_config(Config::default().with_t1(T1))
        .build()
        .await
        .unwrap();
    let mut b = UserAgent::builder(ep)
        .aor(format!("sip:{user}@example.com"))
        .timers(T1, T1 * 8);
    if let Some(s) = session_timer {
        b = b.session_timer(s);
    }
    b.build().unwrap()
}

fn addr(ua: &UserAgent) -> SocketAddr {
    ua.endpoint().local_addr(Transport::Udp).unwrap()
}

async fn next(call: &mut sip_stack::ua::Call) -> CallEvent {
    tokio::time::timeout(LIMIT, call.next_event())
        .await
        .expect("in time")
        .expect("an event")
}

/// Bob answers every call; the established calls go to the channel.
fn answer(bob: &UserAgent) -> tokio::sync::mpsc::UnboundedReceiver<sip_stack::ua::Call> {
    let mut incoming = bob.incoming();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(call) = incoming.next().await {
            if let Ok(c) = call.accept(Bytes::from_static(b"v=0 bob")).await {
                let _ = tx.send(c);
            }
        }
    });
    rx
}

#[tokio::test(start_paused = true)]
async fn caller_refreshes_every_half_interval() {
    let (alice, bob) = (ua("alice", Some(90)).await, ua("bob", None).await);
    let mut answered = answer(&bob);
    let mut call = alice
        .call(
            &format!("sip:bob@{}", addr(&bob)),
            Bytes::from_static(b"v=0 alice"),
        )
        .await
        .unwrap();
    loop {
        if let CallEvent::Answered { .. } = next(&mut call).await {
            break;
        }
    }
    let t0 = Instant::now();
    assert_eq!(
        next(&mut call).await,
        CallEvent::SessionTimer {
            interval: 90,
            we_refresh: true
        }
    );
    let mut bobs = answered.recv().await.unwrap();
    assert_eq!(
        next(&mut bobs).await,
        CallEvent::SessionTimer {
            interval: 90,
            we_refresh: false
        }
    );
    // Three refreshes, each 45 s after the one before (UPDATE, answered by bob at once).
    for n in 1..=3u32 {
        assert_eq!(
            next(&mut call).await,
            CallEvent::SessionTimer {
                interval: 90,
                we_refresh: true
            }
        );
        let at = (Instant::now() - t0).as_secs_f64();
        assert!(
            (at - 45.0 * f64::from(n)).abs() < 1.0,
            "refresh {n} at {at} s"
        );
        assert_eq!(
            next(&mut bobs).await,
            CallEvent::SessionTimer {
                interval: 90,
                we_refresh: false
            }
        );
    }
    call.bye().await.unwrap();
    assert_eq!(
        next(&mut bobs).await,
        CallEvent::Ended {
            cause: CallEnd::RemoteBye
        }
    );
}

struct Raw {
    sock: UdpSocket,
    me: SocketAddr,
}

impl Raw {
    async fn new() -> Raw {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let me = sock.local_addr().unwrap();
        Raw { sock, me }
    }

    async fn send(&self, to: SocketAddr, text: String) {
        self.sock.send_to(text.as_bytes(), to).await.unwrap();
    }

    async fn recv(&self) -> (Message, SocketAddr) {
        let mut buf = [0u8; 4096];
        let (n, from) = tokio::time::timeout(LIMIT, self.sock.recv_from(&mut buf))
            .await
            .expect("in time")
            .unwrap();
        (
            Message::parse(Bytes::copy_from_slice(&buf[..n])).unwrap(),
            from,
        )
    }

    /// The next message other than a 100 Trying.
    async fn next(&self) -> (Message, SocketAddr) {
        loop {
            let (m, from) = self.recv().await;
            if m.status() != Some(100) {
                return (m, from);
            }
        }
    }

    fn invite(&self, uas: SocketAddr, call_id: &str, session: &str) -> String {
        let me = self.me;
        format!(
            "INVITE sip:bob@{uas} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{call_id}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:uac@{me}>;tag=f1\r\nTo: <sip:bob@{uas}>\r\n\
             Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:uac@{me}>\r\n\
             Supported: timer\r\n{session}Content-Length: 0\r\n\r\n"
        )
    }
}

#[tokio::test(start_paused = true)]
async fn callee_ends_an_unrefreshed_session_with_bye() {
    let bob = ua("bob", None).await;
    let mut answered = answer(&bob);
    let raw = Raw::new().await;
    let to = addr(&bob);
    raw.send(
        to,
        raw.invite(to, "st-1", "Session-Expires: 90;refresher=uac\r\n"),
    )
    .await;
    let (ok, _) = raw.next().await;
    let t0 = Instant::now();
    assert_eq!(ok.status(), Some(200));
    assert_eq!(
        ok.header(HeaderName::SessionExpires),
        Some("90;refresher=uac")
    );
    assert!(ok.has_token(HeaderName::Require, "timer"));
    let tag = ok.to().unwrap().tag().unwrap().to_owned();
    let me = raw.me;
    raw.send(
        to,
        format!(
            "ACK sip:bob@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-ack\r\n\
             Max-Forwards: 70\r\nFrom: <sip:uac@{me}>;tag=f1\r\nTo: <sip:bob@{to}>;tag={tag}\r\n\
             Call-ID: st-1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
        ),
    )
    .await;
    let mut bobs = answered.recv().await.unwrap();
    // We never refresh: bob hangs up at 90 − min(32, 90/3) = 60 s.
    let (bye, from) = raw.next().await;
    assert_eq!(
        bye.method().map(|m| m.as_str().to_owned()).as_deref(),
        Some("BYE")
    );
    assert_eq!(Instant::now() - t0, Duration::from_secs(60));
    let ok = bye.response(200).build().unwrap();
    raw.sock.send_to(&ok.to_bytes(), from).await.unwrap();
    loop {
        match next(&mut bobs).await {
            CallEvent::Ended { cause } => {
                assert_eq!(cause, CallEnd::SessionExpired);
                break;
            }
            CallEvent::SessionTimer { .. } => {}
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn too_small_interval_gets_422_with_min_se() {
    let bob = ua("bob", Some(1800)).await;
    let _answered = answer(&bob);
    let raw = Raw::new().await;
    let to = addr(&bob);
    raw.send(to, raw.invite(to, "st-2", "Session-Expires: 60\r\n"))
        .await;
    let (r, _) = raw.next().await;
    assert_eq!(r.status(), Some(422));
    assert_eq!(r.header(HeaderName::MinSe), Some("90"));
}

#[tokio::test(start_paused = true)]
async fn caller_retries_with_the_min_se_of_a_422() {
    let alice = ua("alice", Some(90)).await;
    let raw = Raw::new().await;
    let mut call = alice
        .call(
            &format!("sip:bob@{}", raw.me),
            Bytes::from_static(b"v=0 alice"),
        )
        .await
        .unwrap();
    let (first, from) = raw.next().await;
    assert_eq!(first.header(HeaderName::SessionExpires), Some("90"));
    assert!(first.has_token(HeaderName::Supported, "timer"));
    let r422 = first
        .response(422)
        .to_tag("b1")
        .header("Min-SE", "120")
        .build()
        .unwrap();
    raw.sock.send_to(&r422.to_bytes(), from).await.unwrap();
    // The ACK of the 422 (transaction layer), then the new INVITE.
    let second = loop {
        let (m, _) = raw.next().await;
        if m.method().is_some_and(|m| m.as_str() == "INVITE") {
            break m;
        }
    };
    assert_eq!(second.header(HeaderName::SessionExpires), Some("120"));
    assert_eq!(second.header(HeaderName::MinSe), Some("120"));
    assert_eq!(second.cseq().unwrap().seq, first.cseq().unwrap().seq + 1);
    assert_eq!(second.call_id(), first.call_id());
    let busy = second.response(486).to_tag("b2").build().unwrap();
    raw.sock.send_to(&busy.to_bytes(), from).await.unwrap();
    loop {
        match next(&mut call).await {
            CallEvent::Failed { status } => {
                assert_eq!(status, 486);
                break;
            }
            CallEvent::Trying | CallEvent::Ringing { .. } => {}
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn callee_refreshes_for_a_caller_without_timers() {
    let bob = ua("bob", Some(90)).await;
    let mut answered = answer(&bob);
    let raw = Raw::new().await;
    let to = addr(&bob);
    // No Supported: timer, no Allow: UPDATE: bob refreshes, with re-INVITEs.
    let me = raw.me;
    raw.send(
        to,
        format!(
            "INVITE sip:bob@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-st3\r\n\
             Max-Forwards: 70\r\nFrom: <sip:uac@{me}>;tag=f1\r\nTo: <sip:bob@{to}>\r\n\
             Call-ID: st-3\r\nCSeq: 1 INVITE\r\nContact: <sip:uac@{me}>\r\n\
             Content-Length: 0\r\n\r\n"
        ),
    )
    .await;
    let (ok, _) = raw.next().await;
    let t0 = Instant::now();
    assert_eq!(
        ok.header(HeaderName::SessionExpires),
        Some("90;refresher=uas")
    );
    assert!(!ok.has_token(HeaderName::Require, "timer"));
    let tag = ok.to().unwrap().tag().unwrap().to_owned();
    raw.send(
        to,
        format!(
            "ACK sip:bob@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-ack3\r\n\
             Max-Forwards: 70\r\nFrom: <sip:uac@{me}>;tag=f1\r\nTo: <sip:bob@{to}>;tag={tag}\r\n\
             Call-ID: st-3\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
        ),
    )
    .await;
    let _bobs = answered.recv().await.unwrap();
    // Two refreshes 45 s apart; our 2xx carries no Session-Expires, and the timer goes on.
    for n in 1..=2u64 {
        let reinvite = loop {
            let (m, from) = raw.next().await;
            if m.method().is_some_and(|m| m.as_str() == "INVITE") {
                break (m, from);
            }
        };
        let (m, from) = reinvite;
        let at = (Instant::now() - t0).as_secs_f64();
        assert!((at - 45.0 * n as f64).abs() < 1.0, "refresh {n} at {at} s");
        assert_eq!(
            m.header(HeaderName::SessionExpires),
            Some("90;refresher=uac")
        );
        let ok = m
            .response(200)
            .header("Contact", format!("<sip:uac@{me}>"))
            .build()
            .unwrap();
        raw.sock.send_to(&ok.to_bytes(), from).await.unwrap();
    }
}
