//! Offers in dialogs through two UserAgents on loopback: with `manual_answers`, the callee's
//! application answers a re-INVITE and an UPDATE itself (200 with its SDP, or 488), and the
//! dialog goes on after a rejection; the caller sends an UPDATE in the early dialog (RFC 3311
//! §5.1) that the callee answers before the call is accepted.

use std::time::Duration;

use bytes::Bytes;
use sip_stack::core::Transport;
use sip_stack::endpoint::Endpoint;
use sip_stack::ua::{CallEvent, OfferAnswer, UaError, UserAgent};
use sip_transaction::Config;

const T1: Duration = Duration::from_millis(50);
const LIMIT: Duration = Duration::from_secs(10);

async fn ua(user: &str, manual: bool) -> UserAgent {
    ua_with(user, manual, false).await
}

async fn ua_with(user: &str, manual: bool, prack: bool) -> UserAgent {
    let ep = Endpoint::builder()
        .udp("127.0.0.1:0".parse().unwrap())
        .transaction_config(Config::default().with_t1(T1))
        .build()
        .await
        .unwrap();
    UserAgent::builder(ep)
        .aor(format!("sip:{user}@example.com"))
        .timers(T1, T1 * 8)
        .manual_answers(manual)
        .prack(prack)
        .build()
        .unwrap()
}

fn uri(ua: &UserAgent) -> String {
    format!(
        "sip:bob@{}",
        ua.endpoint().local_addr(Transport::Udp).unwrap()
    )
}

async fn next(call: &mut sip_stack::ua::Call) -> CallEvent {
    tokio::time::timeout(LIMIT, call.next_event())
        .await
        .expect("in time")
        .expect("an event")
}

async fn answered(call: &mut sip_stack::ua::Call) -> Bytes {
    loop {
        match next(call).await {
            CallEvent::Answered { sdp } => return sdp,
            CallEvent::Trying | CallEvent::Ringing { .. } => {}
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn application_answers_reinvite_and_update() {
    let (alice, bob) = (ua("alice", false).await, ua("bob", true).await);
    let mut incoming = bob.incoming();
    let mut call = alice
        .call(&uri(&bob), Bytes::from_static(b"v=0 a1"))
        .await
        .unwrap();
    let bobs_call = incoming.next().await.unwrap();
    let mut bobs = bobs_call
        .accept(Bytes::from_static(b"v=0 b1"))
        .await
        .unwrap();
    assert_eq!(&answered(&mut call).await[..], b"v=0 b1");

    // Bob's application answers each offer as it pleases.
    let bob_side = tokio::spawn(async move {
        let mut seen = Vec::new();
        for answer in [
            OfferAnswer::Accept(Bytes::from_static(b"v=0 b2")),
            OfferAnswer::Reject(488),
            OfferAnswer::Accept(Bytes::from_static(b"v=0 b3")),
        ] {
            let CallEvent::OfferRequest { id, method, sdp } = next(&mut bobs).await else {
                panic!("not an offer")
            };
            seen.push((method, sdp));
            bobs.answer_offer(id, answer).await.unwrap();
        }
        (seen, bobs)
    });
    assert_eq!(
        &call.reinvite(Bytes::from_static(b"v=0 a2")).await.unwrap()[..],
        b"v=0 b2"
    );
    assert_eq!(
        call.update(Bytes::from_static(b"v=0 a3")).await,
        Err(UaError::Rejected(488))
    );
    // The rejected offer left the session as it was; the next one goes through.
    assert_eq!(
        &call.reinvite(Bytes::from_static(b"v=0 a4")).await.unwrap()[..],
        b"v=0 b3"
    );
    let (seen, bobs) = bob_side.await.unwrap();
    let seen: Vec<(&str, &[u8])> = seen.iter().map(|(m, s)| (m.as_str(), &s[..])).collect();
    assert_eq!(
        seen,
        [
            ("INVITE", &b"v=0 a2"[..]),
            ("UPDATE", &b"v=0 a3"[..]),
            ("INVITE", &b"v=0 a4"[..])
        ]
    );
    // An unknown offer id is refused.
    assert!(bobs
        .answer_offer(7, OfferAnswer::Reject(488))
        .await
        .is_err());
    call.bye().await.unwrap();
}

#[tokio::test]
async fn update_in_the_early_dialog() {
    // The caller requires 100rel: the 183's SDP answers the INVITE's offer once PRACKed, and
    // only then may an UPDATE carry a new offer (RFC 3311 §5.1, §5.2).
    let (alice, bob) = (ua_with("alice", false, true).await, ua("bob", true).await);
    let mut incoming = bob.incoming();
    let mut call = alice
        .call(&uri(&bob), Bytes::from_static(b"v=0 a1"))
        .await
        .unwrap();
    let mut ringing = incoming.next().await.unwrap();
    ringing
        .progress(Bytes::from_static(b"v=0 b-early"))
        .await
        .unwrap();
    loop {
        match next(&mut call).await {
            CallEvent::Ringing { status: 183, .. } => break,
            CallEvent::Trying => {}
            other => panic!("{other:?}"),
        }
    }
    let bob_side = tokio::spawn(async move {
        let Some(CallEvent::OfferRequest { id, method, sdp }) = ringing.next_event().await else {
            panic!("no offer")
        };
        assert_eq!((method.as_str(), &sdp[..]), ("UPDATE", &b"v=0 a2"[..]));
        ringing
            .answer_offer(id, OfferAnswer::Accept(Bytes::from_static(b"v=0 b2")))
            .await
            .unwrap();
        ringing.accept(Bytes::from_static(b"v=0 b2")).await.unwrap()
    });
    // Not answered yet: the UPDATE goes in the early dialog. Its PRACK may still be on its
    // way: a 500 (offer not answered yet, §5.2) is retried.
    assert!(call.dialog_id().is_none());
    let mut answer = None;
    for _ in 0..50 {
        match call.update(Bytes::from_static(b"v=0 a2")).await {
            Ok(a) => {
                answer = Some(a);
                break;
            }
            Err(UaError::Rejected(500)) => tokio::task::yield_now().await,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(&answer.expect("UPDATE answered")[..], b"v=0 b2");
    assert_eq!(&answered(&mut call).await[..], b"v=0 b2");
    let _bobs = bob_side.await.unwrap();
    call.bye().await.unwrap();
}

#[tokio::test]
async fn early_update_before_the_offer_is_answered_gets_500() {
    // No 100rel: the 183's SDP is no answer, so an UPDATE offer cannot be taken yet.
    let (alice, bob) = (ua("alice", false).await, ua("bob", false).await);
    let mut incoming = bob.incoming();
    let mut call = alice
        .call(&uri(&bob), Bytes::from_static(b"v=0 a1"))
        .await
        .unwrap();
    let ringing = incoming.next().await.unwrap();
    ringing
        .progress(Bytes::from_static(b"v=0 b-early"))
        .await
        .unwrap();
    loop {
        match next(&mut call).await {
            CallEvent::Ringing { status: 183, .. } => break,
            CallEvent::Trying => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        call.update(Bytes::from_static(b"v=0 a2")).await,
        Err(UaError::Rejected(500))
    );
    ringing.reject(486).await.unwrap();
}
