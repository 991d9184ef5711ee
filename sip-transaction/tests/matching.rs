//! Matching (RFC 3261 §17.1.3, §17.2.3, §9.2, §8.2.2.2), the RFC 2543 fallback, the bounded
//! table and its 503, and tables that empty.

mod common;

use std::time::Instant;

use common::*;
use sip_core::builder::RequestBuilder;
use sip_core::{HeaderName, Message, Method, Transport};
use sip_transaction::{
    CancelMatch, Config, Error, Event, Kind, State, TerminationReason, TransactionLayer,
};

#[test]
fn responses_match_on_branch_and_cseq_method() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    let inv = request(Method::Invite, "z9hG4bKm1", Transport::Udp);
    let key = l
        .send_request(t0, inv.clone(), target(Transport::Udp))
        .unwrap();
    // Same branch, CSeq method CANCEL: not this transaction.
    let cancel = l.build_cancel(key).unwrap();
    l.handle_message(t0, response(&cancel, 200), flow(Transport::Udp))
        .unwrap();
    assert!(matches!(
        drain_ev(&mut l).as_slice(),
        [Event::StrayResponse { .. }]
    ));
    // Another branch: not this transaction.
    let other = request(Method::Invite, "z9hG4bKm1x", Transport::Udp);
    l.handle_message(t0, response(&other, 180), flow(Transport::Udp))
        .unwrap();
    assert!(matches!(
        drain_ev(&mut l).as_slice(),
        [Event::StrayResponse { .. }]
    ));
    assert_eq!(l.state(key), Some((Kind::InviteClient, State::Calling)));
    // The right one.
    l.handle_message(t0, response(&inv, 180), flow(Transport::Udp))
        .unwrap();
    assert!(matches!(drain_ev(&mut l).as_slice(), [Event::Response { key: k, .. }] if *k == key));
    assert_eq!(l.stats().stray_responses, 2);
}

#[test]
fn requests_match_on_branch_sent_by_and_method() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    let a = request_from(
        Method::Options,
        "z9hG4bKm2",
        "UA.example.com",
        Transport::Udp,
    );
    l.handle_message(t0, a, flow(Transport::Udp)).unwrap();
    let key = new_request_key(&drain_ev(&mut l));
    // Host case and the default port do not make a new transaction.
    let same = request_from(
        Method::Options,
        "z9hG4bKm2",
        "ua.EXAMPLE.com:5060",
        Transport::Udp,
    );
    l.handle_message(t0, same, flow(Transport::Udp)).unwrap();
    assert!(drain_ev(&mut l).is_empty());
    assert_eq!(l.stats().retransmissions_absorbed, 1);
    // Another sent-by with the same branch is another transaction.
    let other = request_from(
        Method::Options,
        "z9hG4bKm2",
        "ua.example.com:5070",
        Transport::Udp,
    );
    l.handle_message(t0, other, flow(Transport::Udp)).unwrap();
    assert_ne!(new_request_key(&drain_ev(&mut l)), key);
    // Another method with the same branch and sent-by is another transaction.
    let info = request_from(Method::Info, "z9hG4bKm2", "UA.example.com", Transport::Udp);
    l.handle_message(t0, info, flow(Transport::Udp)).unwrap();
    assert_ne!(new_request_key(&drain_ev(&mut l)), key);
    assert_eq!(l.len(), 3);
}

#[test]
fn cancel_gets_its_own_transaction_and_names_the_invite() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    let inv = request(Method::Invite, "z9hG4bKm3", Transport::Udp);
    l.handle_message(t0, inv.clone(), flow(Transport::Udp))
        .unwrap();
    let ikey = new_request_key(&drain_ev(&mut l));
    let cancel = request(Method::Cancel, "z9hG4bKm3", Transport::Udp);
    l.handle_message(t0 + ms(50), cancel.clone(), flow(Transport::Udp))
        .unwrap();
    let ckey = match drain_ev(&mut l).as_slice() {
        [Event::Cancel {
            cancel,
            invite: CancelMatch::Pending(k),
        }] if *k == ikey => cancel.key,
        other => panic!("{other:?}"),
    };
    assert_ne!(ckey, ikey);
    assert_eq!(l.state(ckey), Some((Kind::NonInviteServer, State::Trying)));
    // The TU answers the CANCEL 200 and the INVITE 487; the ACK of the 487 confirms.
    l.respond(t0 + ms(60), ckey, response(&cancel, 200))
        .unwrap();
    l.respond(t0 + ms(60), ikey, response(&inv, 487)).unwrap();
    let ack = request(Method::Ack, "z9hG4bKm3", Transport::Udp);
    l.handle_message(t0 + ms(70), ack, flow(Transport::Udp))
        .unwrap();
    assert_eq!(l.state(ikey), Some((Kind::InviteServer, State::Confirmed)));
    // A retransmitted CANCEL is absorbed by its own transaction (200 re-sent).
    drain_tx(&mut l);
    l.handle_message(t0 + ms(80), cancel.clone(), flow(Transport::Udp))
        .unwrap();
    assert_eq!(
        drain_tx(&mut l).iter().map(status_of).collect::<Vec<_>>(),
        [Some(200)]
    );
    assert!(drain_ev(&mut l).is_empty());

    // A CANCEL after the final response: Answered.
    let inv2 = request(Method::Invite, "z9hG4bKm4", Transport::Udp);
    l.handle_message(t0, inv2.clone(), flow(Transport::Udp))
        .unwrap();
    let k2 = new_request_key(&drain_ev(&mut l));
    l.respond(t0, k2, response(&inv2, 200)).unwrap();
    l.handle_message(
        t0,
        request(Method::Cancel, "z9hG4bKm4", Transport::Udp),
        flow(Transport::Udp),
    )
    .unwrap();
    assert!(matches!(
        drain_ev(&mut l).as_slice(),
        [Event::Cancel { invite: CancelMatch::Answered(k), .. }] if *k == k2
    ));
    // A CANCEL for nothing: NotFound (the TU answers 481).
    l.handle_message(
        t0,
        request(Method::Cancel, "z9hG4bKm5", Transport::Udp),
        flow(Transport::Udp),
    )
    .unwrap();
    assert!(matches!(
        drain_ev(&mut l).as_slice(),
        [Event::Cancel {
            invite: CancelMatch::NotFound,
            ..
        }]
    ));
}

/// An RFC 2543 request: no magic cookie (or no branch at all).
fn old(method: Method<'_>, via: &str, to: &str) -> Message {
    RequestBuilder::new(method, "sip:bob@example.com")
        .header("Via", via)
        .header("From", "<sip:alice@example.com>;tag=old1")
        .header("To", to)
        .header("Call-ID", "old-call@192.0.2.1")
        .header("CSeq", format!("3 {}", method.as_str()))
        .build()
        .unwrap()
}

#[test]
fn rfc_2543_fallback_matches_retransmissions_acks_and_cancels() {
    for via in [
        "SIP/2.0/UDP 192.0.2.1:5060",
        "SIP/2.0/UDP 192.0.2.1:5060;branch=1234",
    ] {
        let mut l = TransactionLayer::default();
        let t0 = Instant::now();
        let inv = old(Method::Invite, via, "<sip:bob@example.com>");
        l.handle_message(t0, inv.clone(), flow(Transport::Udp))
            .unwrap();
        let key = new_request_key(&drain_ev(&mut l));
        // Retransmission: absorbed.
        l.handle_message(t0 + ms(500), inv.clone(), flow(Transport::Udp))
            .unwrap();
        assert!(drain_ev(&mut l).is_empty(), "{via}");
        // CANCEL: same tuple but the method.
        l.handle_message(
            t0 + ms(600),
            old(Method::Cancel, via, "<sip:bob@example.com>"),
            flow(Transport::Udp),
        )
        .unwrap();
        assert!(matches!(
            drain_ev(&mut l).as_slice(),
            [Event::Cancel { invite: CancelMatch::Pending(k), .. }] if *k == key
        ));
        l.respond(
            t0 + ms(700),
            key,
            inv.response(487).to_tag("srv9").build().unwrap(),
        )
        .unwrap();
        // An ACK whose To tag is not the one we sent does not match: stray.
        let wrong = old(Method::Ack, via, "<sip:bob@example.com>;tag=nope");
        l.handle_message(t0 + ms(800), wrong, flow(Transport::Udp))
            .unwrap();
        assert!(matches!(
            drain_ev(&mut l).as_slice(),
            [Event::Ack { key: None, .. }]
        ));
        assert_eq!(l.state(key), Some((Kind::InviteServer, State::Completed)));
        // The ACK with our tag matches (CSeq method differs, number equal).
        let ack = old(Method::Ack, via, "<sip:bob@example.com>;tag=srv9");
        l.handle_message(t0 + ms(900), ack, flow(Transport::Udp))
            .unwrap();
        assert_eq!(l.state(key), Some((Kind::InviteServer, State::Confirmed)));
        // A request differing in the top Via is another transaction.
        let moved = old(
            Method::Invite,
            "SIP/2.0/UDP 192.0.2.9:5060",
            "<sip:bob@example.com>",
        );
        l.handle_message(t0 + ms(900), moved, flow(Transport::Udp))
            .unwrap();
        assert_ne!(new_request_key(&drain_ev(&mut l)), key);
    }
}

#[test]
fn rfc_2543_accepted_passes_the_ack_with_our_tag() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    let via = "SIP/2.0/UDP 192.0.2.1:5060";
    let inv = old(Method::Invite, via, "<sip:bob@example.com>");
    l.handle_message(t0, inv.clone(), flow(Transport::Udp))
        .unwrap();
    let key = new_request_key(&drain_ev(&mut l));
    l.respond(t0, key, inv.response(200).to_tag("ok7").build().unwrap())
        .unwrap();
    l.handle_message(
        t0,
        old(Method::Ack, via, "<sip:bob@example.com>;tag=ok7"),
        flow(Transport::Udp),
    )
    .unwrap();
    assert!(matches!(drain_ev(&mut l).as_slice(), [Event::Ack { key: Some(k), .. }] if *k == key));
}

#[test]
fn merged_requests_are_flagged() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    let a = request(Method::Invite, "z9hG4bKm6a", Transport::Udp);
    l.handle_message(t0, a, flow(Transport::Udp)).unwrap();
    let first = match drain_ev(&mut l).as_slice() {
        [Event::Request(r)] => {
            assert_eq!(r.merged_with, None);
            r.key
        }
        other => panic!("{other:?}"),
    };
    // Same From tag, Call-ID and CSeq over another path (another branch): merged.
    let mut b = request(Method::Invite, "z9hG4bKm6b", Transport::Udp);
    b.set_header(HeaderName::CallId, "call-z9hG4bKm6a").unwrap();
    l.handle_message(t0, b.clone(), flow(Transport::Udp))
        .unwrap();
    let second = match drain_ev(&mut l).as_slice() {
        [Event::Request(r)] => {
            assert_eq!(r.merged_with, Some(first));
            r.key
        }
        other => panic!("{other:?}"),
    };
    assert_ne!(first, second);
    assert_eq!(l.stats().merged_requests, 1);
    // The merged one's own retransmission is just a retransmission.
    l.handle_message(t0, b, flow(Transport::Udp)).unwrap();
    assert!(drain_ev(&mut l).is_empty());
    // A request inside a dialog (with a To tag) is never "merged".
    let mut c = request(Method::Invite, "z9hG4bKm6c", Transport::Udp);
    c.set_header(HeaderName::CallId, "call-z9hG4bKm6a").unwrap();
    c.set_header(HeaderName::To, "<sip:bob@example.com>;tag=x")
        .unwrap();
    l.handle_message(t0, c, flow(Transport::Udp)).unwrap();
    assert!(matches!(drain_ev(&mut l).as_slice(), [Event::Request(r)] if r.merged_with.is_none()));
}

/// A proxy's layer (merge detection off) gives both copies of a forked request their own
/// transaction, neither flagged.
#[test]
fn without_merge_detection_copies_are_not_flagged() {
    let mut l = TransactionLayer::new(Config::default().with_merge_detection(false));
    let t0 = Instant::now();
    let a = request(Method::Invite, "z9hG4bKm7a", Transport::Udp);
    l.handle_message(t0, a, flow(Transport::Udp)).unwrap();
    let mut b = request(Method::Invite, "z9hG4bKm7b", Transport::Udp);
    b.set_header(HeaderName::CallId, "call-z9hG4bKm7a").unwrap();
    l.handle_message(t0, b, flow(Transport::Udp)).unwrap();
    let events = drain_ev(&mut l);
    let keys: Vec<_> = events
        .iter()
        .map(|e| match e {
            Event::Request(r) => {
                assert_eq!(r.merged_with, None);
                r.key
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(keys.len(), 2);
    assert_ne!(keys[0], keys[1]);
    assert_eq!(l.stats().merged_requests, 0);
}

#[test]
fn a_full_table_answers_503_with_retry_after() {
    let mut l = TransactionLayer::new(
        Config::default()
            .with_max_transactions(2)
            .with_retry_after(17),
    );
    let t0 = Instant::now();
    l.handle_message(
        t0,
        request(Method::Options, "z9hG4bKo1", Transport::Udp),
        flow(Transport::Udp),
    )
    .unwrap();
    l.send_request(
        t0,
        request(Method::Options, "z9hG4bKo2", Transport::Udp),
        target(Transport::Udp),
    )
    .unwrap();
    drain_tx(&mut l);
    drain_ev(&mut l);
    let third = request(Method::Invite, "z9hG4bKo3", Transport::Udp);
    l.handle_message(t0, third.clone(), flow(Transport::Udp))
        .unwrap();
    assert!(drain_ev(&mut l).is_empty());
    let tx = drain_tx(&mut l);
    assert_eq!(tx.len(), 1);
    assert_eq!(tx[0].key, None);
    let resp = parse(&tx[0]);
    assert_eq!(resp.status(), Some(503));
    assert_eq!(header(&resp, HeaderName::RetryAfter), "17");
    assert!(resp.to().unwrap().tag().is_some());
    assert_eq!(resp.via().unwrap().branch(), Some("z9hG4bKo3"));
    // The same request retransmitted gets the same To tag (stateless, §8.2.7).
    l.handle_message(t0, third, flow(Transport::Udp)).unwrap();
    let again = parse(&drain_tx(&mut l)[0]);
    assert_eq!(
        header(&again, HeaderName::To),
        header(&resp, HeaderName::To)
    );
    // ACKs never take a slot, and the client side refuses too.
    l.handle_message(
        t0,
        request(Method::Ack, "z9hG4bKo3", Transport::Udp),
        flow(Transport::Udp),
    )
    .unwrap();
    assert!(drain_tx(&mut l).is_empty());
    assert_eq!(
        l.send_request(
            t0,
            request(Method::Options, "z9hG4bKo4", Transport::Udp),
            target(Transport::Udp)
        ),
        Err(Error::Overloaded)
    );
    assert_eq!(l.stats().overload_rejections, 3);
    assert_eq!(l.len(), 2);
}

#[test]
fn malformed_messages_are_refused_and_counted() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    let no_via = Message::parse(
        &b"OPTIONS sip:a@b SIP/2.0\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\n\
CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"[..],
    )
    .unwrap();
    assert!(matches!(
        l.handle_message(t0, no_via, flow(Transport::Udp)),
        Err(Error::Malformed(_))
    ));
    let no_cseq = Message::parse(
        &b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\n\
To: <sip:a@b>\r\nCall-ID: c\r\nContent-Length: 0\r\n\r\n"[..],
    )
    .unwrap();
    assert!(l.handle_message(t0, no_cseq, flow(Transport::Udp)).is_err());
    assert_eq!(l.stats().malformed, 2);
    assert!(l.is_empty());
}

#[test]
fn tables_are_empty_after_a_mixed_load_terminates() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    for i in 0..50u64 {
        let t = if i % 3 == 0 {
            Transport::Tcp
        } else {
            Transport::Udp
        };
        let now = t0 + ms(i * 10);
        let m = [Method::Invite, Method::Options, Method::Register][(i % 3) as usize];
        let out = request(m, &format!("z9hG4bKc{i}"), t);
        let ck = l.send_request(now, out.clone(), target(t)).unwrap();
        if i % 2 == 0 {
            l.handle_message(now, response(&out, 100 + (i as u16 % 5) * 100), flow(t))
                .unwrap();
        }
        let inc = request(m, &format!("z9hG4bKs{i}"), t);
        l.handle_message(now, inc.clone(), flow(t)).unwrap();
        let sk = drain_ev(&mut l)
            .iter()
            .find_map(|e| match e {
                Event::Request(r) => Some(r.key),
                _ => None,
            })
            .unwrap();
        if i % 4 != 3 {
            l.respond(
                now,
                sk,
                response(&inc, [180, 200, 404, 603][(i % 4) as usize]),
            )
            .unwrap();
        }
        if i % 7 == 0 {
            l.handle_transport_error(now, ck);
        }
    }
    assert!(l.len() > 50);
    let counts = l.state_counts();
    assert_eq!(counts.total(), l.len());
    assert!(counts.of_kind(Kind::InviteServer) > 0);
    let (_, ev) = run_until(&mut l, t0 + ms(3_600_000));
    assert!(l.is_empty());
    assert_eq!(l.poll_timeout(), None);
    let created: u64 = l.stats().created.iter().sum();
    assert_eq!(created, 100);
    assert_eq!(l.stats().terminated, 100);
    assert!(ev.iter().all(|(_, e)| !matches!(
        e,
        Event::Terminated {
            reason: TerminationReason::Aborted,
            ..
        }
    )));
}
