//! The §16.7 response-context rules, one test per rule.

use super::*;

const TC: Duration = Duration::from_secs(180);

fn invite() -> Message {
    Message::parse(
        &b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKa\r\n\
           Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\n\
           Call-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"[..],
    )
    .unwrap()
}

/// A response from branch `b` as it arrives: with our Via on top.
fn resp(status: u16, b: usize, extra: &[(&str, &str)]) -> Message {
    let mut req = invite();
    req.push_via(&format!("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKsp.{b}"))
        .unwrap();
    let mut builder = req.response(status).to_tag(&format!("t{b}"));
    for (n, v) in extra {
        builder = builder.header(n, v);
    }
    builder.build().unwrap()
}

fn ctx(n: usize, t0: Instant) -> ResponseContext {
    let mut c = ResponseContext::new(&invite(), Some(TC));
    for _ in 0..n {
        c.add_branch(t0).unwrap();
    }
    c
}

fn upstream(actions: &[Action]) -> Vec<u16> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Upstream(m) => m.status(),
            _ => None,
        })
        .collect()
}

fn cancels(actions: &[Action]) -> Vec<BranchId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Cancel(b) => Some(*b),
            _ => None,
        })
        .collect()
}

#[test]
fn provisionals_forwarded_without_our_via_100_absorbed() {
    let t0 = Instant::now();
    let mut c = ctx(1, t0);
    assert!(upstream(&c.on_response(&invite(), 0, resp(100, 0, &[]), t0)).is_empty());
    let a = c.on_response(&invite(), 0, resp(180, 0, &[]), t0);
    assert_eq!(upstream(&a), [180]);
    let Action::Upstream(m) = &a[0] else { panic!() };
    assert_eq!(m.via().unwrap().branch(), Some("z9hG4bKa"));
    assert_eq!(m.values(HeaderName::Via).count(), 1);
}

#[test]
fn best_response_table() {
    // (statuses of the branches in arrival order, status forwarded)
    let table: &[(&[u16], u16)] = &[
        (&[486, 404], 486),
        (&[404, 486], 404),
        (&[486, 407], 407),
        (&[503, 486], 486),
        (&[503], 500),
        (&[503, 504], 500),
        (&[302, 486], 302),
        (&[486, 302], 302),
        (&[500, 603], 603),
        (&[484, 480], 484),
        (&[415, 404, 420], 415),
    ];
    for (statuses, want) in table {
        let t0 = Instant::now();
        let mut c = ctx(statuses.len(), t0);
        let mut got = Vec::new();
        for (i, s) in statuses.iter().enumerate() {
            got.extend(upstream(&c.on_response(&invite(), i, resp(*s, i, &[]), t0)));
            // 6xx cancels nothing here: every branch answers anyway.
        }
        assert_eq!(got, [*want], "branches {statuses:?}");
        assert!(c.is_done());
    }
}

#[test]
fn ok_forwarded_at_once_others_cancelled_later_oks_forwarded() {
    let t0 = Instant::now();
    let mut c = ctx(3, t0);
    c.on_response(&invite(), 0, resp(180, 0, &[]), t0);
    c.on_response(&invite(), 1, resp(180, 1, &[]), t0);
    let a = c.on_response(&invite(), 1, resp(200, 1, &[]), t0);
    assert_eq!(upstream(&a), [200]);
    assert_eq!(cancels(&a), [0]); // branch 2 has had no provisional yet
                                  // Branch 2 rings now: cancelled at once, its ringing not forwarded.
    let a = c.on_response(&invite(), 2, resp(180, 2, &[]), t0);
    assert_eq!(cancels(&a), [2]);
    assert!(upstream(&a).is_empty());
    // Branch 0 answers 200 anyway (a race with the CANCEL): forwarded too.
    assert_eq!(
        upstream(&c.on_response(&invite(), 0, resp(200, 0, &[]), t0)),
        [200]
    );
    assert!(upstream(&c.on_response(&invite(), 2, resp(487, 2, &[]), t0)).is_empty());
    assert!(c.is_done());
}

#[test]
fn six_hundred_cancels_others_and_wins() {
    let t0 = Instant::now();
    let mut c = ctx(2, t0);
    c.on_response(&invite(), 0, resp(180, 0, &[]), t0);
    let a = c.on_response(&invite(), 1, resp(603, 1, &[]), t0);
    assert_eq!(cancels(&a), [0]);
    assert!(upstream(&a).is_empty());
    assert!(c.add_branch(t0).is_none());
    assert_eq!(
        upstream(&c.on_response(&invite(), 0, resp(487, 0, &[]), t0)),
        [603]
    );
}

#[test]
fn challenges_merged() {
    let t0 = Instant::now();
    let mut c = ctx(3, t0);
    c.on_response(
        &invite(),
        0,
        resp(
            401,
            0,
            &[("WWW-Authenticate", "Digest realm=\"a\", nonce=\"1\"")],
        ),
        t0,
    );
    c.on_response(
        &invite(),
        1,
        resp(
            407,
            1,
            &[("Proxy-Authenticate", "Digest realm=\"b\", nonce=\"2\"")],
        ),
        t0,
    );
    let a = c.on_response(&invite(), 2, resp(486, 2, &[]), t0);
    let Some(Action::Upstream(m)) = a.into_iter().next() else {
        panic!()
    };
    let m = Message::parse(m.to_bytes()).unwrap();
    assert_eq!(m.status(), Some(401));
    assert_eq!(
        m.header(HeaderName::WwwAuthenticate),
        Some("Digest realm=\"a\", nonce=\"1\"")
    );
    assert_eq!(
        m.header(HeaderName::ProxyAuthenticate),
        Some("Digest realm=\"b\", nonce=\"2\"")
    );
}

#[test]
fn branch_end_without_final_counts_as_408_or_503() {
    let t0 = Instant::now();
    let mut c = ctx(2, t0);
    assert!(c
        .on_branch_ended(&invite(), 0, BranchEnd::TransportError)
        .is_empty());
    assert_eq!(
        upstream(&c.on_branch_ended(&invite(), 1, BranchEnd::Timeout)),
        [408]
    );
    let mut c = ctx(1, t0);
    assert_eq!(
        upstream(&c.on_branch_ended(&invite(), 0, BranchEnd::TransportError)),
        [500]
    );
}

#[test]
fn cancel_before_and_after_provisional() {
    let t0 = Instant::now();
    let mut c = ctx(2, t0);
    c.on_response(&invite(), 0, resp(180, 0, &[]), t0);
    // Branch 0 has rung: CANCEL now; branch 1 has not: only once it does.
    assert_eq!(cancels(&c.on_cancel(&invite())), [0]);
    assert!(c.add_branch(t0).is_none());
    assert_eq!(
        cancels(&c.on_response(&invite(), 1, resp(100, 1, &[]), t0)),
        [1]
    );
    // A second provisional does not cancel again.
    assert!(cancels(&c.on_response(&invite(), 1, resp(180, 1, &[]), t0)).is_empty());
    assert!(upstream(&c.on_response(&invite(), 0, resp(487, 0, &[]), t0)).is_empty());
    assert_eq!(
        upstream(&c.on_response(&invite(), 1, resp(487, 1, &[]), t0)),
        [487]
    );
    // Cancelled before any branch started: 487 at once.
    let mut empty = ResponseContext::new(&invite(), Some(TC));
    assert_eq!(upstream(&empty.on_cancel(&invite())), [487]);
}

#[test]
fn timer_c() {
    let t0 = Instant::now();
    let mut c = ctx(2, t0);
    assert_eq!(c.poll_timeout(), Some(t0 + TC));
    // A provisional on branch 0 restarts its timer.
    let t1 = t0 + Duration::from_secs(60);
    c.on_response(&invite(), 0, resp(180, 0, &[]), t1);
    assert_eq!(c.poll_timeout(), Some(t0 + TC));
    let (a, fired) = c.handle_timeout(&invite(), t0 + TC);
    assert_eq!(fired, 1);
    // Branch 1 never answered: abandoned as 408.
    assert!(matches!(a[0], Action::Abandon(1)));
    assert!(upstream(&a).is_empty());
    assert_eq!(c.poll_timeout(), Some(t1 + TC));
    // Branch 0 rang then went silent: cancelled.
    let (a, fired) = c.handle_timeout(&invite(), t1 + TC);
    assert_eq!((cancels(&a), fired), (vec![0], 1));
    assert_eq!(c.poll_timeout(), None);
    // Both 4xx, neither preferred: the first kept (the abandoned branch's 408).
    assert_eq!(
        upstream(&c.on_response(&invite(), 0, resp(487, 0, &[]), t1 + TC)),
        [408]
    );
}

#[test]
fn sequential_groups_tried_in_turn() {
    let t0 = Instant::now();
    let mut c = ctx(1, t0);
    c.queue_groups([vec![ProxyTarget::uri("sip:b@x")]]);
    let a = c.on_response(&invite(), 0, resp(486, 0, &[]), t0);
    assert!(matches!(&a[..], [Action::Fork(g)] if g.len() == 1));
    let b = c.add_branch(t0).unwrap();
    assert_eq!(
        upstream(&c.on_response(&invite(), b, resp(404, b, &[]), t0)),
        [486]
    );
}

#[test]
fn non_invite_has_no_timer_c_and_final_without_vias_counts() {
    let req = Message::parse(
        &b"MESSAGE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKa\r\n\
           From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\n\
           Call-ID: c1\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n"[..],
    )
    .unwrap();
    let mut c = ResponseContext::new(&req, Some(TC));
    c.add_branch(Instant::now());
    assert_eq!(c.poll_timeout(), None);
    // A final with only our Via (the downstream element dropped the others): still this
    // branch's final, rebuilt on the request.
    let mut ours = req.clone();
    ours.remove_header(HeaderName::Via);
    ours.push_via("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKsp.0")
        .unwrap();
    let r = Message::parse(ours.response(404).build().unwrap().to_bytes()).unwrap();
    let a = c.on_response(&req, 0, r, Instant::now());
    let [Action::Upstream(m)] = &a[..] else {
        panic!("{a:?}")
    };
    assert_eq!(m.status(), Some(404));
    assert_eq!(m.via().unwrap().branch(), Some("z9hG4bKa"));
}
