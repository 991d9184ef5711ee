//! Server transactions (RFC 3261 §17.2, RFC 6026 §7.1): every state, every timer, exact instants.

mod common;

use std::time::Instant;

use common::*;
use sip_core::{HeaderName, Method, Transport};
use sip_transaction::{
    Config, Destination, Error, Event, Kind, State, TerminationReason, Timer, TransactionLayer,
};

#[test]
fn invite_server_sends_100_trying_after_200_ms_and_repeats_it() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    let inv = request(Method::Invite, "z9hG4bKs1", Transport::Udp);
    l.handle_message(t0, inv.clone(), flow(Transport::Udp))
        .unwrap();
    let key = new_request_key(&drain_ev(&mut l));
    assert_eq!(l.state(key), Some((Kind::InviteServer, State::Proceeding)));
    assert!(drain_tx(&mut l).is_empty());
    let (tx, _) = run_until(&mut l, t0 + ms(1000));
    assert_eq!(offsets(t0, &tx), [200]);
    let trying = parse(&tx[0].1);
    assert_eq!(trying.status(), Some(100));
    assert_eq!(tx[0].1.destination, Destination::Flow(flow(Transport::Udp)));
    // A 100 carries no To tag (§8.2.6.2).
    assert_eq!(header(&trying, HeaderName::To), "<sip:bob@example.com>");
    assert_eq!(trying.via().unwrap().branch(), Some("z9hG4bKs1"));

    // The retransmitted INVITE is absorbed and answered with the last provisional.
    l.handle_message(t0 + ms(500), inv, flow(Transport::Udp))
        .unwrap();
    assert!(drain_ev(&mut l).is_empty());
    let again = drain_tx(&mut l);
    assert_eq!(again.len(), 1);
    assert!(again[0].retransmission);
    assert_eq!(again[0].payload, tx[0].1.payload);
}

#[test]
fn invite_server_no_100_when_the_tu_answers_in_time() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    let inv = request(Method::Invite, "z9hG4bKs2", Transport::Udp);
    l.handle_message(t0, inv.clone(), flow(Transport::Udp))
        .unwrap();
    let key = new_request_key(&drain_ev(&mut l));
    let ringing = response(&inv, 180);
    l.respond(t0 + ms(150), key, ringing.clone()).unwrap();
    assert_eq!(
        drain_tx(&mut l).iter().map(status_of).collect::<Vec<_>>(),
        [Some(180)]
    );
    let (tx, _) = run_until(&mut l, t0 + ms(5000));
    assert!(tx.is_empty());
    // Before any provisional, a retransmission is absorbed silently; after, 180 again.
    l.handle_message(t0 + ms(5000), inv, flow(Transport::Udp))
        .unwrap();
    assert_eq!(
        drain_tx(&mut l).iter().map(status_of).collect::<Vec<_>>(),
        [Some(180)]
    );
}

#[test]
fn invite_server_non_2xx_timer_g_caps_at_t2_and_timer_h_times_out() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    let inv = request(Method::Invite, "z9hG4bKs3", Transport::Udp);
    l.handle_message(t0, inv.clone(), flow(Transport::Udp))
        .unwrap();
    let key = new_request_key(&drain_ev(&mut l));
    l.respond(t0 + ms(100), key, response(&inv, 486)).unwrap();
    assert_eq!(l.state(key), Some((Kind::InviteServer, State::Completed)));
    let first = drain_tx(&mut l);
    assert_eq!(first.len(), 1);
    let (tx, ev) = run_until(&mut l, t0 + ms(40_000));
    // Timer G from 100 ms: T1, 2·T1, 4·T1, then T2.
    assert_eq!(
        offsets(t0, &tx),
        [600, 1600, 3600, 7600, 11600, 15600, 19600, 23600, 27600, 31600]
    );
    assert!(tx
        .iter()
        .all(|(_, t)| t.payload == first[0].payload && t.retransmission));
    // Timer H: 64·T1; the TU learns that the ACK never came.
    assert_eq!(
        terminated(&ev, key),
        Some((t0 + ms(32_100), TerminationReason::Timeout(Timer::H)))
    );
}

#[test]
fn invite_server_ack_confirms_and_timer_i_ends_over_udp() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    let inv = request(Method::Invite, "z9hG4bKs4", Transport::Udp);
    l.handle_message(t0, inv.clone(), flow(Transport::Udp))
        .unwrap();
    let key = new_request_key(&drain_ev(&mut l));
    let busy = response(&inv, 486);
    l.respond(t0 + ms(100), key, busy.clone()).unwrap();
    drain_tx(&mut l);
    // A retransmitted INVITE in Completed gets the final response again.
    l.handle_message(t0 + ms(300), inv.clone(), flow(Transport::Udp))
        .unwrap();
    assert_eq!(
        drain_tx(&mut l).iter().map(status_of).collect::<Vec<_>>(),
        [Some(486)]
    );
    // The ACK (same branch, §17.1.1.3) confirms; retransmitted ACKs are absorbed.
    let mut ack = request(Method::Ack, "z9hG4bKs4", Transport::Udp);
    ack.set_header(HeaderName::To, "<sip:bob@example.com>;tag=b9")
        .unwrap();
    l.handle_message(t0 + ms(700), ack.clone(), flow(Transport::Udp))
        .unwrap();
    assert_eq!(l.state(key), Some((Kind::InviteServer, State::Confirmed)));
    l.handle_message(t0 + ms(900), ack, flow(Transport::Udp))
        .unwrap();
    assert!(drain_ev(&mut l).is_empty());
    // Nor does G fire any more.
    let (tx, ev) = run_until(&mut l, t0 + ms(40_000));
    assert!(tx.is_empty());
    // Timer I: T4 after the first ACK.
    assert_eq!(
        terminated(&ev, key),
        Some((t0 + ms(5700), TerminationReason::Completed))
    );
}

#[test]
fn invite_server_over_tcp_no_g_and_timer_i_zero() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    let inv = request(Method::Invite, "z9hG4bKs5", Transport::Tcp);
    l.handle_message(t0, inv.clone(), flow(Transport::Tcp))
        .unwrap();
    let key = new_request_key(&drain_ev(&mut l));
    l.respond(t0 + ms(10), key, response(&inv, 404)).unwrap();
    drain_tx(&mut l);
    let (tx, _) = run_until(&mut l, t0 + ms(20_000));
    assert!(tx.is_empty());
    let ack = request(Method::Ack, "z9hG4bKs5", Transport::Tcp);
    l.handle_message(t0 + ms(20_000), ack, flow(Transport::Tcp))
        .unwrap();
    assert!(matches!(
        drain_ev(&mut l).as_slice(),
        [Event::Terminated {
            reason: TerminationReason::Completed,
            ..
        }]
    ));
    assert!(l.is_empty());

    // H over TCP: 64·T1, nothing retransmitted.
    let inv = request(Method::Invite, "z9hG4bKs6", Transport::Tcp);
    l.handle_message(t0, inv.clone(), flow(Transport::Tcp))
        .unwrap();
    let key = new_request_key(&drain_ev(&mut l));
    l.respond(t0, key, response(&inv, 500)).unwrap();
    drain_tx(&mut l);
    let (tx, ev) = run_until(&mut l, t0 + ms(40_000));
    assert!(tx.is_empty());
    assert_eq!(
        terminated(&ev, key),
        Some((t0 + ms(32_000), TerminationReason::Timeout(Timer::H)))
    );
}

#[test]
fn invite_server_2xx_accepted_per_rfc_6026() {
    for transport in [Transport::Udp, Transport::Tcp] {
        let mut l = TransactionLayer::default();
        let t0 = Instant::now();
        let inv = request(Method::Invite, "z9hG4bKs7", transport);
        l.handle_message(t0, inv.clone(), flow(transport)).unwrap();
        let key = new_request_key(&drain_ev(&mut l));
        let ok = response(&inv, 200);
        l.respond(t0 + ms(1000), key, ok.clone()).unwrap();
        assert_eq!(l.state(key), Some((Kind::InviteServer, State::Accepted)));
        let sent = drain_tx(&mut l);
        assert_eq!(sent.len(), 1);
        // The transaction never retransmits the 2xx itself…
        let (tx, _) = run_until(&mut l, t0 + ms(20_000));
        assert!(tx.is_empty());
        // …absorbs INVITE retransmissions without answering…
        l.handle_message(t0 + ms(20_000), inv.clone(), flow(transport))
            .unwrap();
        assert!(drain_tx(&mut l).is_empty());
        assert!(drain_ev(&mut l).is_empty());
        // …passes the TU's own 2xx retransmissions to the transport…
        l.respond(t0 + ms(20_000), key, ok.clone()).unwrap();
        assert_eq!(drain_tx(&mut l).len(), 1);
        // …refuses a non-2xx final now…
        assert!(matches!(
            l.respond(t0 + ms(20_000), key, response(&inv, 486)),
            Err(Error::InvalidState {
                state: State::Accepted,
                status: 486
            })
        ));
        // …and passes a matching ACK up to the TU.
        let ack = request(Method::Ack, "z9hG4bKs7", transport);
        l.handle_message(t0 + ms(20_100), ack, flow(transport))
            .unwrap();
        assert!(matches!(
            drain_ev(&mut l).as_slice(),
            [Event::Ack { key: Some(k), .. }] if *k == key
        ));
        // The ACK of a 2xx normally has its own branch: delivered as a stray ACK.
        let ack2 = request(Method::Ack, "z9hG4bKother", transport);
        l.handle_message(t0 + ms(20_200), ack2, flow(transport))
            .unwrap();
        assert!(matches!(
            drain_ev(&mut l).as_slice(),
            [Event::Ack { key: None, .. }]
        ));
        // Timer L: 64·T1 after the 2xx, on every transport.
        let (_, ev) = run_until(&mut l, t0 + ms(60_000));
        assert_eq!(
            terminated(&ev, key),
            Some((t0 + ms(33_000), TerminationReason::Completed))
        );
        assert!(l.is_empty());
    }
}

#[test]
fn invite_server_guard_ends_a_transaction_the_tu_forgot() {
    let mut l = TransactionLayer::new(Config::default().with_server_guard(Some(ms(60_000))));
    let t0 = Instant::now();
    let inv = request(Method::Invite, "z9hG4bKs8", Transport::Udp);
    l.handle_message(t0, inv.clone(), flow(Transport::Udp))
        .unwrap();
    let key = new_request_key(&drain_ev(&mut l));
    // A provisional restarts the guard.
    l.respond(t0 + ms(30_000), key, response(&inv, 183))
        .unwrap();
    let (_, ev) = run_until(&mut l, t0 + ms(200_000));
    assert_eq!(
        terminated(&ev, key),
        Some((
            t0 + ms(90_000),
            TerminationReason::Timeout(Timer::ServerGuard)
        ))
    );
    assert_eq!(
        l.respond(t0 + ms(90_001), key, response(&inv, 200)),
        Err(Error::UnknownTransaction)
    );
}

#[test]
fn non_invite_server_states_and_timer_j_over_udp() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    let req = request(Method::Register, "z9hG4bKs9", Transport::Udp);
    l.handle_message(t0, req.clone(), flow(Transport::Udp))
        .unwrap();
    let key = new_request_key(&drain_ev(&mut l));
    assert_eq!(l.state(key), Some((Kind::NonInviteServer, State::Trying)));
    // Trying: a retransmission is absorbed with nothing to send; no automatic 100.
    l.handle_message(t0 + ms(500), req.clone(), flow(Transport::Udp))
        .unwrap();
    assert!(drain_tx(&mut l).is_empty());
    assert!(drain_ev(&mut l).is_empty());
    // Proceeding: the provisional is repeated for retransmissions.
    l.respond(t0 + ms(600), key, response(&req, 100)).unwrap();
    assert_eq!(
        l.state(key),
        Some((Kind::NonInviteServer, State::Proceeding))
    );
    l.handle_message(t0 + ms(1500), req.clone(), flow(Transport::Udp))
        .unwrap();
    let tx: Vec<_> = drain_tx(&mut l).iter().map(status_of).collect();
    assert_eq!(tx, [Some(100), Some(100)]);
    // Completed: the final is repeated, a second final refused.
    l.respond(t0 + ms(2000), key, response(&req, 200)).unwrap();
    assert_eq!(
        l.state(key),
        Some((Kind::NonInviteServer, State::Completed))
    );
    l.handle_message(t0 + ms(3500), req.clone(), flow(Transport::Udp))
        .unwrap();
    let tx: Vec<_> = drain_tx(&mut l).iter().map(status_of).collect();
    assert_eq!(tx, [Some(200), Some(200)]);
    assert!(matches!(
        l.respond(t0 + ms(3600), key, response(&req, 500)),
        Err(Error::InvalidState {
            state: State::Completed,
            status: 500
        })
    ));
    // No retransmissions on timers; Timer J = 64·T1 after the final.
    let (tx, ev) = run_until(&mut l, t0 + ms(60_000));
    assert!(tx.is_empty());
    assert_eq!(
        terminated(&ev, key),
        Some((t0 + ms(34_000), TerminationReason::Completed))
    );
    assert_eq!(l.stats().retransmissions_absorbed, 3);
    assert_eq!(l.stats().retransmissions_sent, 2);
}

#[test]
fn non_invite_server_over_tcp_timer_j_zero() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    let req = request(Method::Options, "z9hG4bKs10", Transport::Tcp);
    l.handle_message(t0, req.clone(), flow(Transport::Tcp))
        .unwrap();
    let key = new_request_key(&drain_ev(&mut l));
    l.respond(t0, key, response(&req, 200)).unwrap();
    assert_eq!(drain_tx(&mut l).len(), 1);
    assert!(matches!(
        drain_ev(&mut l).as_slice(),
        [Event::Terminated {
            reason: TerminationReason::Completed,
            ..
        }]
    ));
    assert!(l.is_empty());
}

#[test]
fn non_invite_server_guard_after_64_t1_without_answer() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    let req = request(Method::Subscribe, "z9hG4bKs11", Transport::Udp);
    l.handle_message(t0, req.clone(), flow(Transport::Udp))
        .unwrap();
    let key = new_request_key(&drain_ev(&mut l));
    let (_, ev) = run_until(&mut l, t0 + ms(100_000));
    assert_eq!(
        terminated(&ev, key),
        Some((
            t0 + ms(32_000),
            TerminationReason::Timeout(Timer::ServerGuard)
        ))
    );
}

#[test]
fn server_transport_error_and_abort() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    let req = request(Method::Invite, "z9hG4bKs12", Transport::Tcp);
    l.handle_message(t0, req.clone(), flow(Transport::Tcp))
        .unwrap();
    let key = new_request_key(&drain_ev(&mut l));
    l.respond(t0, key, response(&req, 180)).unwrap();
    let tx = drain_tx(&mut l);
    assert_eq!(tx[0].key, Some(key));
    assert!(l.handle_transport_error(t0 + ms(1), key));
    assert!(matches!(
        drain_ev(&mut l).as_slice(),
        [Event::Terminated {
            reason: TerminationReason::TransportError,
            ..
        }]
    ));
    let req = request(Method::Options, "z9hG4bKs13", Transport::Tcp);
    l.handle_message(t0, req, flow(Transport::Tcp)).unwrap();
    let key = new_request_key(&drain_ev(&mut l));
    assert!(l.abort(key));
    assert!(!l.abort(key));
    assert!(l.is_empty());
    assert_eq!(l.poll_timeout(), None);
}

#[test]
fn responding_on_a_client_transaction_is_refused() {
    let mut l = TransactionLayer::default();
    let t0 = Instant::now();
    let req = request(Method::Options, "z9hG4bKs14", Transport::Udp);
    let key = l
        .send_request(t0, req.clone(), target(Transport::Udp))
        .unwrap();
    assert!(matches!(
        l.respond(t0, key, response(&req, 200)),
        Err(Error::InvalidState { .. })
    ));
    l.handle_message(t0, req.clone(), flow(Transport::Udp))
        .unwrap();
    let skey = new_request_key(&drain_ev(&mut l));
    assert_eq!(l.respond(t0, skey, req), Err(Error::NotAResponse));
}
