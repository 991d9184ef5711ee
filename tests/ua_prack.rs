//! RFC 3262 (PRACK / 100rel) through the UserAgent on loopback.
//!
//! - Two UserAgents: the caller requires 100rel; the callee's 183 with SDP goes reliably, the
//!   caller PRACKs it, and the callee's 200 waits for that PRACK.
//! - A raw UDP socket plays the caller, on paused time (tokio's clock moves only when every
//!   task waits, so the instants are exact): the reliable 183 is retransmitted at T1, 3·T1…
//!   until the PRACK; a PRACK with the wrong RAck gets 481, the right one 200, and the 200 to the
//!   INVITE follows it; without any PRACK the INVITE is rejected 500 after 64·T1; an INVITE
//!   requiring an unknown extension gets 420 with Unsupported.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use sip_stack::core::{HeaderName, Message, Transport};
use sip_stack::endpoint::Endpoint;
use sip_stack::ua::{CallEvent, UserAgent};
use sip_transaction::Config;
use tokio::net::UdpSocket;
use tokio::time::Instant;

const T1: Duration = Duration::from_millis(100);
const LIMIT: Duration = Duration::from_secs(10);

async fn ua(user: &str, prack: bool) -> UserAgent {
    let ep = Endpoint::builder()
        .udp("127.0.0.1:0".parse().unwrap())
        .transaction_config(Config::default().with_t1(T1))
        .build()
        .await
        .unwrap();
    UserAgent::builder(ep)
        .aor(format!("sip:{user}@example.com"))
        .timers(T1, T1 * 8)
        .prack(prack)
        .build()
        .unwrap()
}

fn addr(ua: &UserAgent) -> SocketAddr {
    ua.endpoint().local_addr(Transport::Udp).unwrap()
}

/// Bob answers each call with a 183 carrying `sdp` (reliable when the INVITE asks), then 200;
/// the result of each accept goes to the channel.
fn answer_with_progress(
    bob: &UserAgent,
) -> tokio::sync::mpsc::UnboundedReceiver<Result<sip_stack::ua::Call, String>> {
    let mut incoming = bob.incoming();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(call) = incoming.next().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                call.progress(Bytes::from_static(b"v=0 bob")).await.unwrap();
                let r = call.accept(Bytes::from_static(b"v=0 bob")).await;
                let _ = tx.send(r.map_err(|e| e.to_string()));
            });
        }
    });
    rx
}

#[tokio::test]
async fn caller_pracks_the_reliable_183_and_the_call_is_answered() {
    let (alice, bob) = (ua("alice", true).await, ua("bob", false).await);
    let mut accepted = answer_with_progress(&bob);
    let mut call = alice
        .call(
            &format!("sip:bob@{}", addr(&bob)),
            Bytes::from_static(b"v=0 alice"),
        )
        .await
        .unwrap();
    let mut early = None;
    let sdp = loop {
        match tokio::time::timeout(LIMIT, call.next_event())
            .await
            .unwrap()
        {
            Some(CallEvent::Ringing {
                status: 183,
                early_media,
            }) => early = early_media,
            Some(CallEvent::Trying) => {}
            Some(CallEvent::Answered { sdp }) => break sdp,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(early.as_deref(), Some(&b"v=0 bob"[..]));
    assert_eq!(&sdp[..], b"v=0 bob");
    // Bob's accept went through: the PRACK arrived (without it the 200 is never sent).
    let bobs = accepted
        .recv()
        .await
        .unwrap()
        .expect("accepted after the PRACK");
    call.bye().await.unwrap();
    drop(bobs);
}

struct RawUac {
    sock: UdpSocket,
    me: SocketAddr,
    uas: SocketAddr,
    call_id: String,
}

impl RawUac {
    async fn new(uas: SocketAddr, call_id: &str) -> RawUac {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let me = sock.local_addr().unwrap();
        RawUac {
            sock,
            me,
            uas,
            call_id: call_id.into(),
        }
    }

    async fn send(&self, text: String) {
        self.sock.send_to(text.as_bytes(), self.uas).await.unwrap();
    }

    async fn invite(&self, require: &str) {
        let (me, uas, id) = (self.me, self.uas, &self.call_id);
        self.send(format!(
            "INVITE sip:bob@{uas} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{id}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:uac@{me}>;tag=f1\r\nTo: <sip:bob@{uas}>\r\n\
             Call-ID: {id}\r\nCSeq: 7 INVITE\r\nContact: <sip:uac@{me}>\r\n\
             Supported: 100rel\r\nRequire: {require}\r\nContent-Length: 0\r\n\r\n"
        ))
        .await
    }

    /// A request in the dialog with To-tag `tag`.
    async fn in_dialog(&self, method: &str, seq: u32, tag: &str, extra: &str) {
        let (me, uas, id) = (self.me, self.uas, &self.call_id);
        self.send(format!(
            "{method} sip:bob@{uas} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{id}-{method}{seq}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:uac@{me}>;tag=f1\r\nTo: <sip:bob@{uas}>;tag={tag}\r\n\
             Call-ID: {id}\r\nCSeq: {seq} {method}\r\n{extra}Content-Length: 0\r\n\r\n"
        ))
        .await
    }

    /// The next message, or `None` at `until` (virtual time).
    async fn recv_until(&self, until: Instant) -> Option<Message> {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout_at(until, self.sock.recv(&mut buf))
            .await
            .ok()?
            .ok()?;
        Some(Message::parse(Bytes::copy_from_slice(&buf[..n])).unwrap())
    }

    /// The next response other than 100 Trying.
    async fn response(&self) -> Message {
        loop {
            let m = self
                .recv_until(Instant::now() + LIMIT)
                .await
                .expect("a response");
            if m.status() != Some(100) {
                return m;
            }
        }
    }
}

fn tag(m: &Message) -> String {
    m.to().unwrap().tag().unwrap().to_owned()
}

#[tokio::test(start_paused = true)]
async fn reliable_183_is_retransmitted_until_prack_then_200_follows() {
    let bob = ua("bob", false).await;
    let mut accepted = answer_with_progress(&bob);
    let uac = RawUac::new(addr(&bob), "prack-1").await;
    uac.invite("100rel").await;
    let first = uac.response().await;
    let t0 = Instant::now();
    assert_eq!(first.status(), Some(183));
    assert!(first.has_token(HeaderName::Require, "100rel"));
    let rseq: u32 = first.header(HeaderName::RSeq).unwrap().parse().unwrap();
    assert_eq!(first.body(), b"v=0 bob");
    // Retransmitted at T1 and 3·T1 (doubling), the same RSeq; no 200 meanwhile (§3).
    for at in [T1, T1 * 3] {
        let again = uac.response().await;
        assert_eq!(again.status(), Some(183));
        assert_eq!(Instant::now() - t0, at);
        assert_eq!(
            again.header(HeaderName::RSeq),
            first.header(HeaderName::RSeq)
        );
    }
    let to = tag(&first);
    // A PRACK naming another RSeq: 481, and the 183 keeps coming.
    uac.in_dialog("PRACK", 8, &to, &format!("RAck: {} 7 INVITE\r\n", rseq + 5))
        .await;
    let r = uac.response().await;
    assert_eq!((r.status(), r.cseq().unwrap().seq), (Some(481), 8));
    // The right one: 200 to it, then the 200 to the INVITE.
    uac.in_dialog("PRACK", 9, &to, &format!("RAck: {rseq} 7 INVITE\r\n"))
        .await;
    let mut statuses = Vec::new();
    loop {
        let r = uac.response().await;
        if r.status() == Some(183) {
            continue; // a retransmission that crossed the PRACK
        }
        statuses.push((
            r.status().unwrap(),
            r.cseq().unwrap().method.as_str().to_owned(),
        ));
        if r.cseq().unwrap().method.as_str() == "INVITE" {
            break;
        }
    }
    assert_eq!(
        statuses,
        [(200, "PRACK".to_owned()), (200, "INVITE".to_owned())]
    );
    uac.in_dialog("ACK", 7, &to, "").await;
    let call = accepted.recv().await.unwrap().expect("accepted");
    // No more 183 once answered and ACKed.
    assert!(uac.recv_until(Instant::now() + T1 * 64).await.is_none());
    uac.in_dialog("BYE", 10, &to, "").await;
    assert_eq!(uac.response().await.status(), Some(200));
    drop(call);
    assert_eq!(bob.dialog_stats().early + bob.dialog_stats().confirmed, 0);
}

#[tokio::test(start_paused = true)]
async fn without_prack_the_invite_is_rejected_after_64_t1() {
    let bob = ua("bob", false).await;
    let mut accepted = answer_with_progress(&bob);
    let uac = RawUac::new(addr(&bob), "prack-2").await;
    uac.invite("100rel").await;
    let first = uac.response().await;
    let t0 = Instant::now();
    assert_eq!(first.status(), Some(183));
    let mut retransmits = Vec::new();
    let last = loop {
        let r = uac.response().await;
        if r.status() != Some(183) {
            break r;
        }
        retransmits.push((Instant::now() - t0).as_millis() / T1.as_millis());
    };
    assert_eq!(retransmits, [1, 3, 7, 15, 31, 63]);
    assert_eq!(last.status(), Some(500));
    assert_eq!(Instant::now() - t0, T1 * 64);
    assert!(accepted.recv().await.unwrap().is_err());
    assert_eq!(bob.dialog_stats().early + bob.dialog_stats().confirmed, 0);
}

#[tokio::test(start_paused = true)]
async fn unknown_required_extension_gets_420() {
    let bob = ua("bob", false).await;
    let _accepted = answer_with_progress(&bob);
    let uac = RawUac::new(addr(&bob), "prack-3").await;
    uac.invite("100rel, foo").await;
    let r = uac.response().await;
    assert_eq!(r.status(), Some(420));
    assert_eq!(r.header(HeaderName::Unsupported), Some("foo"));
}
