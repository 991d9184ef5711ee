//! Client transactions (RFC 3261 §17.1, RFC 6026 §7.2): every state, every timer, exact instants.

mod common;

use std::time::Instant;

use common::*;
use sip_core::{HeaderName, Method, Transport};
use sip_transaction::{
    Config, Destination, Event, Kind, State, TerminationReason, Timer, TransactionLayer,
};

#[test]
fn invite_timer_a_doubles_and_timer_b_times_out_over_udp() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    let key = l
        .send_request(
            t0,
            request(Method::Invite, "z9hG4bKa1", Transport::Udp),
            target(Transport::Udp),
        )
        .unwrap();
    let first = drain_tx(&mut l);
    assert_eq!(first.len(), 1);
    assert!(!first[0].retransmission);
    assert_eq!(
        first[0].destination,
        Destination::Target(target(Transport::Udp))
    );
    assert_eq!(l.state(key), Some((Kind::InviteClient, State::Calling)));

    let (tx, ev) = run_until(&mut l, t0 + ms(40_000));
    // Timer A: 500 ms, then 1 s, 2 s, 4 s, 8 s, 16 s apart.
    assert_eq!(offsets(t0, &tx), [500, 1500, 3500, 7500, 15500, 31500]);
    assert!(tx
        .iter()
        .all(|(_, t)| t.retransmission && t.payload == first[0].payload));
    // Timer B: 64·T1.
    assert_eq!(
        terminated(&ev, key),
        Some((t0 + ms(32_000), TerminationReason::Timeout(Timer::B)))
    );
    assert!(l.is_empty());
    assert_eq!(l.poll_timeout(), None);
    assert_eq!(l.stats().retransmissions_sent, 6);
    assert_eq!(l.stats().timeouts, 1);
}

#[test]
fn invite_over_tcp_is_not_retransmitted_and_times_out_with_b() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    let key = l
        .send_request(
            t0,
            request(Method::Invite, "z9hG4bKa2", Transport::Tcp),
            target(Transport::Tcp),
        )
        .unwrap();
    assert_eq!(drain_tx(&mut l).len(), 1);
    let (tx, ev) = run_until(&mut l, t0 + ms(40_000));
    assert!(tx.is_empty());
    assert_eq!(
        terminated(&ev, key),
        Some((t0 + ms(32_000), TerminationReason::Timeout(Timer::B)))
    );
}

#[test]
fn invite_timers_follow_a_configured_t1() {
    let mut l = TransactionLayer::new(Config::default().with_t1(ms(100)));
    let t0 = Instant::now();
    let key = l
        .send_request(
            t0,
            request(Method::Invite, "z9hG4bKa3", Transport::Udp),
            target(Transport::Udp),
        )
        .unwrap();
    drain_tx(&mut l);
    let (tx, ev) = run_until(&mut l, t0 + ms(10_000));
    assert_eq!(offsets(t0, &tx), [100, 300, 700, 1500, 3100, 6300]);
    assert_eq!(terminated(&ev, key).map(|(at, _)| at), Some(t0 + ms(6400)));
}

#[test]
fn invite_provisional_stops_retransmissions_and_timer_c_guards_proceeding() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    let req = request(Method::Invite, "z9hG4bKa4", Transport::Udp);
    let key = l
        .send_request(t0, req.clone(), target(Transport::Udp))
        .unwrap();
    drain_tx(&mut l);
    let (tx, _) = run_until(&mut l, t0 + ms(600));
    assert_eq!(offsets(t0, &tx), [500]);

    l.handle_message(t0 + ms(700), response(&req, 100), flow(Transport::Udp))
        .unwrap();
    l.handle_message(t0 + ms(900), response(&req, 180), flow(Transport::Udp))
        .unwrap();
    assert_eq!(response_statuses(&drain_ev(&mut l)), [100, 180]);
    assert_eq!(l.state(key), Some((Kind::InviteClient, State::Proceeding)));

    // No more A, no B; Timer C (3 min) restarted by the 180 at 900 ms.
    let (tx, ev) = run_until(&mut l, t0 + ms(400_000));
    assert!(tx.is_empty());
    assert_eq!(
        terminated(&ev, key),
        Some((t0 + ms(180_900), TerminationReason::Timeout(Timer::C)))
    );
    assert_eq!(
        TerminationReason::Timeout(Timer::C).equivalent_status(),
        Some(408)
    );
}

#[test]
fn invite_without_timer_c_waits_in_proceeding() {
    let mut l = TransactionLayer::new(Config::default().with_timer_c(None));
    let t0 = Instant::now();
    let req = request(Method::Invite, "z9hG4bKa5", Transport::Udp);
    let key = l
        .send_request(t0, req.clone(), target(Transport::Udp))
        .unwrap();
    l.handle_message(t0 + ms(100), response(&req, 180), flow(Transport::Udp))
        .unwrap();
    run_until(&mut l, t0 + ms(3_600_000));
    assert_eq!(l.state(key), Some((Kind::InviteClient, State::Proceeding)));
    assert_eq!(l.poll_timeout(), None);
    // The final response still completes it.
    l.handle_message(
        t0 + ms(3_600_000),
        response(&req, 486),
        flow(Transport::Udp),
    )
    .unwrap();
    assert_eq!(l.state(key), Some((Kind::InviteClient, State::Completed)));
}

#[test]
fn invite_non_2xx_is_acked_by_the_transaction_and_timer_d_runs_over_udp() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    let req = request(Method::Invite, "z9hG4bKa6", Transport::Udp);
    let key = l
        .send_request(t0, req.clone(), target(Transport::Udp))
        .unwrap();
    drain_tx(&mut l);
    l.handle_message(t0 + ms(200), response(&req, 180), flow(Transport::Udp))
        .unwrap();
    let busy = response(&req, 486);
    l.handle_message(t0 + ms(1000), busy.clone(), flow(Transport::Udp))
        .unwrap();
    assert_eq!(response_statuses(&drain_ev(&mut l)), [180, 486]);
    assert_eq!(l.state(key), Some((Kind::InviteClient, State::Completed)));

    // §17.1.1.3: the ACK.
    let tx = drain_tx(&mut l);
    assert_eq!(tx.len(), 1);
    assert_eq!(
        tx[0].destination,
        Destination::Target(target(Transport::Udp))
    );
    let ack = parse(&tx[0]);
    assert_eq!(ack.method(), Some(Method::Ack));
    assert_eq!(ack.uri_str(), req.uri_str());
    assert_eq!(
        ack.values(HeaderName::Via).collect::<Vec<_>>(),
        [req.via().unwrap().as_str()]
    );
    assert_eq!(
        header(&ack, HeaderName::From),
        header(&req, HeaderName::From)
    );
    assert_eq!(header(&ack, HeaderName::To), "<sip:bob@example.com>;tag=b9");
    assert_eq!(ack.call_id(), req.call_id());
    assert_eq!(header(&ack, HeaderName::CSeq), "7 ACK");
    assert_eq!(
        ack.values(HeaderName::Route).collect::<Vec<_>>(),
        ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    );
    assert!(!ack.has(HeaderName::Contact));

    // A retransmitted 486 is absorbed and re-ACKed.
    l.handle_message(t0 + ms(2000), busy, flow(Transport::Udp))
        .unwrap();
    assert!(drain_ev(&mut l).is_empty());
    let again = drain_tx(&mut l);
    assert_eq!(again.len(), 1);
    assert!(again[0].retransmission);
    assert_eq!(again[0].payload, tx[0].payload);
    assert_eq!(l.stats().retransmissions_absorbed, 1);

    // Timer D: 32 s after the 486.
    let (tx, ev) = run_until(&mut l, t0 + ms(60_000));
    assert!(tx.is_empty());
    assert_eq!(
        terminated(&ev, key),
        Some((t0 + ms(33_000), TerminationReason::Completed))
    );
    assert!(l.is_empty());
}

#[test]
fn invite_non_2xx_over_tcp_ends_at_once_timer_d_zero() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    let req = request(Method::Invite, "z9hG4bKa7", Transport::Tcp);
    let key = l
        .send_request(t0, req.clone(), target(Transport::Tcp))
        .unwrap();
    drain_tx(&mut l);
    l.handle_message(t0 + ms(50), response(&req, 603), flow(Transport::Tcp))
        .unwrap();
    let tx = drain_tx(&mut l);
    assert_eq!(tx.iter().map(method_of).collect::<Vec<_>>(), ["ACK"]);
    let ev = drain_ev(&mut l);
    assert_eq!(response_statuses(&ev), [603]);
    assert!(matches!(
        ev.last(),
        Some(Event::Terminated { key: k, reason: TerminationReason::Completed }) if *k == key
    ));
    assert!(l.is_empty());
}

#[test]
fn invite_2xx_enters_accepted_passes_every_2xx_and_timer_m_ends_it() {
    for transport in [Transport::Udp, Transport::Tcp] {
        let mut l = TransactionLayer::default();
        let t0 = Instant::now();
        let req = request(Method::Invite, "z9hG4bKa8", transport);
        let key = l.send_request(t0, req.clone(), target(transport)).unwrap();
        drain_tx(&mut l);
        let ok = response(&req, 200);
        l.handle_message(t0 + ms(300), ok.clone(), flow(transport))
            .unwrap();
        assert_eq!(l.state(key), Some((Kind::InviteClient, State::Accepted)));
        // The transaction sends no ACK for a 2xx: that is the TU's.
        assert!(drain_tx(&mut l).is_empty());
        // RFC 6026 §7.2: retransmissions and other forks' 2xx go to the TU too.
        l.handle_message(t0 + ms(800), ok.clone(), flow(transport))
            .unwrap();
        let fork = req.response(200).to_tag("fork2").build().unwrap();
        l.handle_message(t0 + ms(900), fork, flow(transport))
            .unwrap();
        // A non-2xx in Accepted is absorbed.
        l.handle_message(t0 + ms(950), response(&req, 500), flow(transport))
            .unwrap();
        assert_eq!(response_statuses(&drain_ev(&mut l)), [200, 200, 200]);
        // No retransmission of the INVITE after the 2xx.
        let (tx, ev) = run_until(&mut l, t0 + ms(60_000));
        assert!(tx.is_empty(), "{transport}");
        // Timer M: 64·T1 after the first 2xx, on every transport.
        assert_eq!(
            terminated(&ev, key),
            Some((t0 + ms(32_300), TerminationReason::Completed))
        );
        // Later 2xx retransmissions are stray, for the dialog layer.
        l.handle_message(t0 + ms(61_000), ok, flow(transport))
            .unwrap();
        assert!(matches!(
            drain_ev(&mut l).as_slice(),
            [Event::StrayResponse { response, .. }] if response.status() == Some(200)
        ));
        assert_eq!(l.stats().stray_responses, 1);
    }
}

#[test]
fn cancel_wait_gives_up_an_invite_with_no_final_response() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    let req = request(Method::Invite, "z9hG4bKa9", Transport::Udp);
    let invite = l
        .send_request(t0, req.clone(), target(Transport::Udp))
        .unwrap();
    l.handle_message(t0 + ms(100), response(&req, 180), flow(Transport::Udp))
        .unwrap();
    let cancel = l.build_cancel(invite).unwrap();
    assert_eq!(cancel.method(), Some(Method::Cancel));
    assert_eq!(cancel.via().unwrap().branch(), Some("z9hG4bKa9"));
    assert_eq!(header(&cancel, HeaderName::CSeq), "7 CANCEL");
    assert_eq!(
        header(&cancel, HeaderName::To),
        header(&req, HeaderName::To)
    );
    assert_eq!(cancel.values(HeaderName::Route).count(), 2);
    let ck = l
        .send_request(t0 + ms(1000), cancel.clone(), target(Transport::Udp))
        .unwrap();
    assert_ne!(ck, invite);
    assert_eq!(l.state(ck), Some((Kind::NonInviteClient, State::Trying)));
    // The CANCEL's 200 matches the CANCEL transaction (same branch, CSeq method CANCEL).
    l.handle_message(t0 + ms(1100), response(&cancel, 200), flow(Transport::Udp))
        .unwrap();
    let ev = drain_ev(&mut l);
    assert!(ev
        .iter()
        .any(|e| matches!(e, Event::Response { key, .. } if *key == ck)));
    assert_eq!(
        l.state(invite),
        Some((Kind::InviteClient, State::Proceeding))
    );
    // No 487 ever comes: 64·T1 after the CANCEL the INVITE is given up.
    let (_, ev) = run_until(&mut l, t0 + ms(100_000));
    assert_eq!(
        terminated(&ev, invite),
        Some((
            t0 + ms(33_000),
            TerminationReason::Timeout(Timer::CancelWait)
        ))
    );
}

#[test]
fn cancel_in_calling_arms_cancel_wait_once_proceeding() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    let req = request(Method::Invite, "z9hG4bKa10", Transport::Tcp);
    let invite = l
        .send_request(t0, req.clone(), target(Transport::Tcp))
        .unwrap();
    let cancel = l.build_cancel(invite).unwrap();
    l.send_request(t0 + ms(10), cancel, target(Transport::Tcp))
        .unwrap();
    l.handle_message(t0 + ms(2000), response(&req, 180), flow(Transport::Tcp))
        .unwrap();
    let (_, ev) = run_until(&mut l, t0 + ms(100_000));
    assert_eq!(
        terminated(&ev, invite),
        Some((
            t0 + ms(34_000),
            TerminationReason::Timeout(Timer::CancelWait)
        ))
    );
}

#[test]
fn non_invite_timer_e_caps_at_t2_and_timer_f_times_out() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    let key = l
        .send_request(
            t0,
            request(Method::Options, "z9hG4bKn1", Transport::Udp),
            target(Transport::Udp),
        )
        .unwrap();
    assert_eq!(l.state(key), Some((Kind::NonInviteClient, State::Trying)));
    drain_tx(&mut l);
    let (tx, ev) = run_until(&mut l, t0 + ms(40_000));
    assert_eq!(
        offsets(t0, &tx),
        [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    assert_eq!(
        terminated(&ev, key),
        Some((t0 + ms(32_000), TerminationReason::Timeout(Timer::F)))
    );
    assert_eq!(
        TerminationReason::Timeout(Timer::F).equivalent_status(),
        Some(408)
    );
}

#[test]
fn non_invite_proceeding_retransmits_every_t2() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    let req = request(Method::Register, "z9hG4bKn2", Transport::Udp);
    let key = l
        .send_request(t0, req.clone(), target(Transport::Udp))
        .unwrap();
    drain_tx(&mut l);
    let (tx, _) = run_until(&mut l, t0 + ms(2000));
    assert_eq!(offsets(t0, &tx), [500, 1500]);
    l.handle_message(t0 + ms(2000), response(&req, 100), flow(Transport::Udp))
        .unwrap();
    assert_eq!(
        l.state(key),
        Some((Kind::NonInviteClient, State::Proceeding))
    );
    assert_eq!(response_statuses(&drain_ev(&mut l)), [100]);
    let (tx, ev) = run_until(&mut l, t0 + ms(40_000));
    // The E armed in Trying fires at 3.5 s; from then on every T2.
    assert_eq!(
        offsets(t0, &tx),
        [3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    assert_eq!(
        terminated(&ev, key),
        Some((t0 + ms(32_000), TerminationReason::Timeout(Timer::F)))
    );
}

#[test]
fn non_invite_final_response_completes_and_timer_k_absorbs() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    let req = request(Method::Bye, "z9hG4bKn3", Transport::Udp);
    let key = l
        .send_request(t0, req.clone(), target(Transport::Udp))
        .unwrap();
    drain_tx(&mut l);
    let (tx, _) = run_until(&mut l, t0 + ms(700));
    assert_eq!(offsets(t0, &tx), [500]);
    let ok = response(&req, 200);
    l.handle_message(t0 + ms(700), ok.clone(), flow(Transport::Udp))
        .unwrap();
    assert_eq!(
        l.state(key),
        Some((Kind::NonInviteClient, State::Completed))
    );
    // Retransmissions of the response and late provisionals are absorbed.
    l.handle_message(t0 + ms(800), ok, flow(Transport::Udp))
        .unwrap();
    l.handle_message(t0 + ms(900), response(&req, 100), flow(Transport::Udp))
        .unwrap();
    assert_eq!(response_statuses(&drain_ev(&mut l)), [200]);
    let (tx, ev) = run_until(&mut l, t0 + ms(40_000));
    // The E retransmission due at 1.5 s was cancelled by the response.
    assert!(tx.is_empty());
    // Timer K: T4 after the final response.
    assert_eq!(
        terminated(&ev, key),
        Some((t0 + ms(5700), TerminationReason::Completed))
    );
    assert_eq!(l.stats().retransmissions_absorbed, 2);
}

#[test]
fn non_invite_over_tcp_no_retransmission_timer_k_zero() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    let req = request(Method::Message, "z9hG4bKn4", Transport::Tls);
    let key = l
        .send_request(t0, req.clone(), target(Transport::Tls))
        .unwrap();
    drain_tx(&mut l);
    let (tx, _) = run_until(&mut l, t0 + ms(10_000));
    assert!(tx.is_empty());
    l.handle_message(t0 + ms(10_000), response(&req, 202), flow(Transport::Tls))
        .unwrap();
    let ev = drain_ev(&mut l);
    assert_eq!(response_statuses(&ev), [202]);
    assert!(
        matches!(ev.last(), Some(Event::Terminated { key: k, reason: TerminationReason::Completed }) if *k == key)
    );
    assert!(l.is_empty());

    // And F over TCP: 64·T1 with nothing sent in between.
    let key = l
        .send_request(
            t0,
            request(Method::Message, "z9hG4bKn5", Transport::Tcp),
            target(Transport::Tcp),
        )
        .unwrap();
    drain_tx(&mut l);
    let (tx, ev) = run_until(&mut l, t0 + ms(40_000));
    assert!(tx.is_empty());
    assert_eq!(
        terminated(&ev, key),
        Some((t0 + ms(32_000), TerminationReason::Timeout(Timer::F)))
    );
}

#[test]
fn transport_errors_terminate_client_transactions() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    let key = l
        .send_request(
            t0,
            request(Method::Invite, "z9hG4bKe1", Transport::Udp),
            target(Transport::Udp),
        )
        .unwrap();
    let tx = drain_tx(&mut l);
    assert_eq!(tx[0].key, Some(key));
    assert!(l.handle_transport_error(t0 + ms(1), key));
    assert!(!l.handle_transport_error(t0 + ms(2), key));
    assert!(matches!(
        drain_ev(&mut l).as_slice(),
        [Event::Terminated {
            reason: TerminationReason::TransportError,
            ..
        }]
    ));
    assert_eq!(
        TerminationReason::TransportError.equivalent_status(),
        Some(503)
    );
    assert_eq!(l.stats().transport_errors, 1);
    assert!(l.is_empty());
    assert_eq!(l.poll_timeout(), None);
}

#[test]
fn send_request_refuses_what_is_not_a_client_transaction() {
    use sip_transaction::Error;
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    let ack = request(Method::Ack, "z9hG4bKr1", Transport::Udp);
    assert_eq!(
        l.send_request(t0, ack, target(Transport::Udp)),
        Err(Error::AckIsNotATransaction)
    );
    let old = request(Method::Options, "1234", Transport::Udp);
    assert_eq!(
        l.send_request(t0, old, target(Transport::Udp)),
        Err(Error::MissingBranch)
    );
    let req = request(Method::Options, "z9hG4bKr2", Transport::Udp);
    let resp = response(&req, 200);
    assert_eq!(
        l.send_request(t0, resp, target(Transport::Udp)),
        Err(Error::NotARequest)
    );
    l.send_request(t0, req.clone(), target(Transport::Udp))
        .unwrap();
    assert_eq!(
        l.send_request(t0, req, target(Transport::Udp)),
        Err(Error::DuplicateTransaction)
    );
    let mut bad = request(Method::Options, "z9hG4bKr3", Transport::Udp);
    bad.set_header(HeaderName::CSeq, "7 INFO").unwrap();
    assert_eq!(
        l.send_request(t0, bad, target(Transport::Udp)),
        Err(Error::CSeqMethodMismatch)
    );
    assert_eq!(l.len(), 1);
}

/// RFC 3261 §13.2.2.4 with a forking proxy: one fork answers 486 (the transaction ACKs it and
/// completes), then another answers 200. That 2xx is no retransmission: it reaches the TU,
/// which must ACK it and end the dialog with BYE.
#[test]
fn a_2xx_from_another_fork_after_a_non_2xx_final_reaches_the_tu() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    let invite = request(Method::Invite, "z9hG4bKfork", Transport::Udp);
    let key = l
        .send_request(t0, invite.clone(), target(Transport::Udp))
        .unwrap();
    drain_tx(&mut l);
    let busy = invite.response(486).to_tag("fork-a").build().unwrap();
    l.handle_message(t0 + ms(10), busy.clone(), flow(Transport::Udp))
        .unwrap();
    assert_eq!(response_statuses(&drain_ev(&mut l)), [486]);
    assert_eq!(l.state(key), Some((Kind::InviteClient, State::Completed)));
    let ack = drain_tx(&mut l);
    assert_eq!(method_of(&ack[0]), "ACK");

    // A retransmitted 486 is absorbed (the ACK is sent again), as before.
    l.handle_message(t0 + ms(20), busy, flow(Transport::Udp))
        .unwrap();
    assert!(drain_ev(&mut l).is_empty());
    assert_eq!(method_of(&drain_tx(&mut l)[0]), "ACK");

    let ok = invite.response(200).to_tag("fork-b").build().unwrap();
    l.handle_message(t0 + ms(30), ok, flow(Transport::Udp))
        .unwrap();
    match drain_ev(&mut l).as_slice() {
        [Event::StrayResponse { response, .. }] => {
            assert_eq!(response.status(), Some(200));
            assert!(header(response, HeaderName::To).contains("fork-b"));
        }
        other => panic!("{other:?}"),
    }
    // The transaction itself does not ACK a 2xx (that is the TU's, §13.2.2.4).
    assert!(drain_tx(&mut l).is_empty());
}
