//! REFER (RFC 3515) between UserAgents on loopback: Alice, in a call with Bob, refers him to
//! Carol; Bob's application accepts (202), calls Carol and reports the progress, which Alice
//! sees as NOTIFYs (100, 180, 200). A declined REFER gets the status Bob's application chose.

use std::time::Duration;

use bytes::Bytes;
use sip_stack::core::Transport;
use sip_stack::endpoint::Endpoint;
use sip_stack::ua::{Call, CallEvent, UaError, UserAgent};
use sip_transaction::Config;

const T1: Duration = Duration::from_millis(50);
const LIMIT: Duration = Duration::from_secs(10);

async fn ua(user: &str) -> UserAgent {
    let ep = Endpoint::builder()
        .udp("127.0.0.1:0".parse().unwrap())
        .transaction_config(Config::default().with_t1(T1))
        .build()
        .await
        .unwrap();
    UserAgent::builder(ep)
        .aor(format!("sip:{user}@example.com"))
        .timers(T1, T1 * 8)
        .build()
        .unwrap()
}

fn uri(ua: &UserAgent, user: &str) -> String {
    format!(
        "sip:{user}@{}",
        ua.endpoint().local_addr(Transport::Udp).unwrap()
    )
}

async fn next(call: &mut Call) -> CallEvent {
    tokio::time::timeout(LIMIT, call.next_event())
        .await
        .expect("in time")
        .expect("an event")
}

/// Alice calls Bob; both calls once established.
async fn established(alice: &UserAgent, bob: &UserAgent) -> (Call, Call) {
    let mut incoming = bob.incoming();
    let mut call = alice
        .call(&uri(bob, "bob"), Bytes::from_static(b"v=0 a"))
        .await
        .unwrap();
    let bobs = incoming
        .next()
        .await
        .unwrap()
        .accept(Bytes::from_static(b"v=0 b"))
        .await
        .unwrap();
    loop {
        if let CallEvent::Answered { .. } = next(&mut call).await {
            return (call, bobs);
        }
    }
}

#[tokio::test]
async fn accepted_refer_reports_the_new_call() {
    let (alice, bob, carol) = (ua("alice").await, ua("bob").await, ua("carol").await);
    let (mut call, mut bobs) = established(&alice, &bob).await;
    let mut carols_incoming = carol.incoming();
    tokio::spawn(async move {
        let c = carols_incoming.next().await.unwrap();
        c.ring().await.unwrap();
        let _call = c.accept(Bytes::from_static(b"v=0 c")).await.unwrap();
        std::future::pending::<()>().await;
    });
    let carol_uri = uri(&carol, "carol");
    let bob_ua = bob.clone();
    let transfer = tokio::spawn(async move {
        let CallEvent::Refer { id, refer_to, .. } = next(&mut bobs).await else {
            panic!("no REFER")
        };
        let notifier = bobs.accept_refer(id).await.unwrap();
        let mut new_call = bob_ua
            .call(&refer_to, Bytes::from_static(b"v=0 b2"))
            .await
            .unwrap();
        while let Some(ev) = new_call.next_event().await {
            if notifier.report(&ev).await.unwrap() {
                break;
            }
        }
        (refer_to, new_call, bobs)
    });
    assert_eq!(call.refer(&carol_uri).await.unwrap(), 202);
    let mut statuses = Vec::new();
    while statuses.last() != Some(&200) {
        match next(&mut call).await {
            CallEvent::ReferNotify { status } => statuses.push(status),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(statuses, [100, 180, 200]);
    let (refer_to, new_call, _bobs) = transfer.await.unwrap();
    assert_eq!(refer_to, carol_uri);
    new_call.bye().await.unwrap();
    call.bye().await.unwrap();
}

#[tokio::test]
async fn declined_refer() {
    let (alice, bob) = (ua("alice").await, ua("bob").await);
    let (call, mut bobs) = established(&alice, &bob).await;
    let decline = tokio::spawn(async move {
        let CallEvent::Refer { id, .. } = next(&mut bobs).await else {
            panic!("no REFER")
        };
        bobs.reject_refer(id, 603).await.unwrap();
        // Answered once only.
        assert!(bobs.reject_refer(id, 603).await.is_err());
        bobs
    });
    assert_eq!(
        call.refer("sip:nobody@127.0.0.1:9").await,
        Err(UaError::Rejected(603))
    );
    let _bobs = decline.await.unwrap();
    call.bye().await.unwrap();
}
