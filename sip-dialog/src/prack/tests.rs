use std::time::{Duration, Instant};

use sip_core::{HeaderName, Message, Method};

use super::*;
use crate::dialog::Dialog;

const T1: Duration = Duration::from_millis(500);

fn invite() -> Message {
    Message::parse(
        &b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n\
        From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
        To: Bob <sip:bob@biloxi.example.com>\r\nCall-ID: a84b4c76e66710\r\n\
        CSeq: 314159 INVITE\r\nContact: <sip:alice@pc33.atlanta.example.com>\r\n\
        Supported: 100rel\r\nContent-Length: 0\r\n\r\n"[..],
    )
    .unwrap()
}

fn prack(rack: &str) -> Message {
    Message::parse(
        format!(
            "PRACK sip:bob@192.0.2.4 SIP/2.0\r\n\
            Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKpr1\r\n\
            From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
            To: Bob <sip:bob@biloxi.example.com>;tag=b1\r\nCall-ID: a84b4c76e66710\r\n\
            CSeq: 314160 PRACK\r\nRAck: {rack}\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes(),
    )
    .unwrap()
}

fn provisional(status: u16, sdp: bool) -> sip_core::builder::ResponseBuilder {
    let b = invite()
        .response(status)
        .to_tag("b1")
        .header("Contact", "<sip:bob@192.0.2.4>");
    if sdp {
        b.body("application/sdp", &b"v=0\r\n"[..])
    } else {
        b
    }
}

#[test]
fn rack_parses_and_prints() {
    let r = RAck::parse(" 776656 1 INVITE").unwrap();
    assert_eq!(
        r,
        RAck {
            rseq: 776656,
            cseq: 1
        }
    );
    assert_eq!(r.to_string(), "776656 1 INVITE");
    assert_eq!(RAck::parse("1 2 BYE"), None);
    assert_eq!(RAck::parse("1 2"), None);
    assert_eq!(RAck::parse("x 2 INVITE"), None);
    assert_eq!(RAck::parse("1 2 INVITE extra"), None);
}

#[test]
fn uas_numbers_retransmits_and_matches_prack() {
    let t0 = Instant::now();
    let mut rel = ReliableProvisionals::new(T1, 314159, 41);
    let first = rel.send(t0, provisional(180, false)).unwrap().unwrap();
    assert!(first.has_token(HeaderName::Require, "100rel"));
    assert_eq!(reliable_rseq(&first), Some(41));
    // §3: one at a time; the second waits for the first's PRACK.
    assert_eq!(rel.send(t0, provisional(183, true)).unwrap(), None);
    assert!(rel.pending());

    // Retransmissions at T1, then 2·T1 and 4·T1 later.
    assert_eq!(rel.poll_timeout(), Some(t0 + T1));
    assert_eq!(rel.handle_timeout(t0 + T1 / 2), None);
    let mut at = t0;
    for step in [1u32, 2, 4] {
        at += T1 * step;
        match rel.handle_timeout(at) {
            Some(ProvisionalAction::Retransmit(m)) => assert_eq!(reliable_rseq(&m), Some(41)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(rel.poll_timeout(), Some(at + T1 * 8));

    // A PRACK naming another RSeq or another INVITE: 481.
    assert_eq!(
        rel.on_prack(at, &prack("40 314159 INVITE")),
        PrackVerdict::NoMatch
    );
    assert_eq!(
        rel.on_prack(at, &prack("41 314158 INVITE")),
        PrackVerdict::NoMatch
    );
    assert_eq!(rel.on_prack(at, &prack("garbage")), PrackVerdict::NoMatch);
    // The right one releases the queued 183 with RSeq + 1.
    let PrackVerdict::Acknowledged { next: Some(next) } =
        rel.on_prack(at, &prack("41 314159 INVITE"))
    else {
        panic!("not acknowledged")
    };
    assert_eq!(next.status(), Some(183));
    assert_eq!(reliable_rseq(&next), Some(42));
    // The same PRACK again matches nothing unacknowledged.
    assert_eq!(
        rel.on_prack(at, &prack("41 314159 INVITE")),
        PrackVerdict::NoMatch
    );
    assert_eq!(rel.poll_timeout(), Some(at + T1));
    assert_eq!(
        rel.on_prack(at, &prack("42 314159 INVITE")),
        PrackVerdict::Acknowledged { next: None }
    );
    assert!(!rel.pending());
    assert_eq!(rel.poll_timeout(), None);
}

#[test]
fn uas_gives_up_after_64_t1() {
    let t0 = Instant::now();
    let mut rel = ReliableProvisionals::new(T1, 1, 7);
    rel.send(t0, provisional(180, false)).unwrap();
    let mut now;
    let mut retransmits = 0;
    loop {
        now = rel.poll_timeout().expect("a deadline while outstanding");
        match rel.handle_timeout(now) {
            Some(ProvisionalAction::Retransmit(_)) => retransmits += 1,
            Some(ProvisionalAction::TimedOut) => break,
            None => panic!("deadline without action"),
        }
    }
    assert_eq!(now, t0 + T1 * 64);
    // At 1, 3, 7, 15, 31 and 63 T1, then the 64·T1 limit.
    assert_eq!(retransmits, 6);
    assert!(!rel.pending());
    assert!(rel.send(now, provisional(180, false)).is_err());
}

#[test]
fn uas_holds_2xx_behind_unacknowledged_sdp() {
    let t0 = Instant::now();
    let mut rel = ReliableProvisionals::new(T1, 314159, 1);
    rel.send(t0, provisional(180, false)).unwrap();
    // A provisional without SDP does not hold the 2xx (§3); any non-2xx may always go.
    assert!(rel.may_send_final(200));
    rel.send(t0, provisional(183, true)).unwrap();
    assert!(!rel.may_send_final(200));
    assert!(rel.may_send_final(486));
    rel.on_prack(t0, &prack("1 314159 INVITE"));
    assert!(!rel.may_send_final(200));
    assert!(!rel.sdp_acknowledged());
    rel.on_prack(t0, &prack("2 314159 INVITE"));
    assert!(rel.may_send_final(200));
    assert!(rel.sdp_acknowledged());
    rel.final_sent();
    assert_eq!(rel.poll_timeout(), None);
}

#[test]
fn uas_queue_is_bounded() {
    let t0 = Instant::now();
    let mut rel = ReliableProvisionals::new(T1, 1, 1);
    rel.send(t0, provisional(180, false)).unwrap();
    for _ in 0..MAX_QUEUED {
        assert_eq!(rel.send(t0, provisional(180, false)).unwrap(), None);
    }
    assert!(matches!(
        rel.send(t0, provisional(180, false)),
        Err(ProvisionalError::Refused(_))
    ));
}

fn reliable(tag: &str, rseq: &str) -> Message {
    invite()
        .response(183)
        .to_tag(tag)
        .header("Contact", "<sip:bob@192.0.2.4>")
        .header("Require", "100rel")
        .header("RSeq", rseq)
        .build()
        .unwrap()
}

#[test]
fn uac_pracks_in_order_and_ignores_the_rest() {
    let mut c = PrackClient::new();
    let unreliable = invite().response(180).to_tag("b1").build().unwrap();
    assert_eq!(
        c.on_provisional(&unreliable, 314159),
        ReliableVerdict::Unreliable
    );
    let rack = |rseq| ReliableVerdict::Prack(RAck { rseq, cseq: 314159 });
    assert_eq!(c.on_provisional(&reliable("b1", "10"), 314159), rack(10));
    assert_eq!(
        c.on_provisional(&reliable("b1", "10"), 314159),
        ReliableVerdict::Retransmission
    );
    assert_eq!(
        c.on_provisional(&reliable("b1", "12"), 314159),
        ReliableVerdict::OutOfOrder
    );
    assert_eq!(c.on_provisional(&reliable("b1", "11"), 314159), rack(11));
    // Another fork numbers its own provisionals.
    assert_eq!(c.on_provisional(&reliable("b2", "500"), 314159), rack(500));
    // RSeq 0 and a missing To-tag are not reliable provisionals.
    assert_eq!(
        c.on_provisional(&reliable("b3", "0"), 314159),
        ReliableVerdict::Unreliable
    );
}

#[test]
fn uac_prack_goes_in_the_early_dialog() {
    let inv = invite();
    let r = reliable("b1", "10");
    let mut early = Dialog::uac(&inv, &r, "sip:alice@pc33.atlanta.example.com").unwrap();
    let rack = RAck {
        rseq: 10,
        cseq: 314159,
    };
    let p = prack_request(
        &mut early,
        rack,
        "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKp",
    )
    .unwrap()
    .build()
    .unwrap();
    assert_eq!(p.method(), Some(Method::Prack));
    assert_eq!(p.uri_str(), Some("sip:bob@192.0.2.4"));
    assert_eq!(p.header(HeaderName::RAck), Some("10 314159 INVITE"));
    assert_eq!(p.cseq().unwrap().seq, 314160);
    assert_eq!(
        p.header(HeaderName::To),
        Some("Bob <sip:bob@biloxi.example.com>;tag=b1")
    );
    // The UAS side takes it.
    let t0 = Instant::now();
    let mut rel = ReliableProvisionals::new(T1, 314159, 10);
    rel.send(t0, provisional(183, false)).unwrap();
    assert!(matches!(
        rel.on_prack(t0, &p),
        PrackVerdict::Acknowledged { next: None }
    ));
}
