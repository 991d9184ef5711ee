//! Two UserAgents on loopback endpoints: calls answered and hung up from either side,
//! rejected, cancelled while ringing, re-INVITE, glare, INFO, MESSAGE, and a registration with
//! digest against the crate's Registrar. Each test ends with both dialog tables empty.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sip_stack::core::Transport;
use sip_stack::endpoint::Endpoint;
use sip_stack::registrar::{
    serve, AuthMode, LocationStore, Registrar, RegistrarConfig, ServiceOptions,
};
use sip_stack::ua::{CallEnd, CallEvent, RegistrationState, UserAgent};
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
        .display_name(user)
        .credentials("example.com", user, "secret")
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

async fn next(call: &mut sip_stack::ua::Call) -> CallEvent {
    tokio::time::timeout(LIMIT, call.next_event())
        .await
        .expect("in time")
        .expect("an event")
}

/// Skips Trying/Ringing until something else.
async fn until_final(call: &mut sip_stack::ua::Call) -> CallEvent {
    loop {
        match next(call).await {
            CallEvent::Trying | CallEvent::Ringing { .. } => continue,
            other => return other,
        }
    }
}

async fn settle(a: &UserAgent, b: &UserAgent) {
    for _ in 0..100 {
        if a.dialog_stats().early + a.dialog_stats().confirmed == 0
            && b.dialog_stats().early + b.dialog_stats().confirmed == 0
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "dialogs left: {:?} {:?}",
        a.dialog_stats(),
        b.dialog_stats()
    );
}

/// Bob answers every call after ringing with `answer`, and returns the established calls.
fn answer_calls(
    bob: &UserAgent,
    answer: &'static str,
) -> tokio::sync::mpsc::UnboundedReceiver<sip_stack::ua::Call> {
    let mut incoming = bob.incoming();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(call) = incoming.next().await {
            call.ring().await.unwrap();
            let call = call
                .accept(Bytes::from_static(answer.as_bytes()))
                .await
                .unwrap();
            let _ = tx.send(call);
        }
    });
    rx
}

#[tokio::test]
async fn call_answered_then_caller_hangs_up() {
    let (alice, bob) = (ua("alice").await, ua("bob").await);
    let mut answered = answer_calls(&bob, "v=0 bob");
    let mut call = alice
        .call(&uri(&bob, "bob"), Bytes::from_static(b"v=0 alice"))
        .await
        .unwrap();
    let mut saw_ringing = false;
    let sdp = loop {
        match next(&mut call).await {
            CallEvent::Ringing { status: 180, .. } => saw_ringing = true,
            CallEvent::Trying => {}
            CallEvent::Answered { sdp } => break sdp,
            other => panic!("{other:?}"),
        }
    };
    assert!(saw_ringing);
    assert_eq!(&sdp[..], b"v=0 bob");
    let mut bobs = answered.recv().await.unwrap();
    let id = call.dialog_id().unwrap();
    let bid = bobs.dialog_id().unwrap();
    // The IDs mirror each other (local tag of one is the remote tag of the other).
    assert_eq!(id.call_id, bid.call_id);
    assert_eq!(id.local_tag, bid.remote_tag);
    assert_eq!(id.remote_tag, bid.local_tag);
    assert_eq!(alice.dialog_stats().confirmed, 1);
    call.bye().await.unwrap();
    assert_eq!(
        next(&mut call).await,
        CallEvent::Ended {
            cause: CallEnd::LocalBye
        }
    );
    assert_eq!(
        next(&mut bobs).await,
        CallEvent::Ended {
            cause: CallEnd::RemoteBye
        }
    );
    settle(&alice, &bob).await;
    assert_eq!(
        alice
            .dialog_stats()
            .ended_by(sip_stack::dialog::EndCause::LocalBye),
        1
    );
    assert_eq!(
        bob.dialog_stats()
            .ended_by(sip_stack::dialog::EndCause::RemoteBye),
        1
    );
}

#[tokio::test]
async fn callee_hangs_up_and_reinvite_and_info_work() {
    let (alice, bob) = (ua("alice").await, ua("bob").await);
    let mut answered = answer_calls(&bob, "v=0 bob");
    let mut call = alice
        .call(&uri(&bob, "bob"), Bytes::from_static(b"v=0 a1"))
        .await
        .unwrap();
    assert!(matches!(
        until_final(&mut call).await,
        CallEvent::Answered { .. }
    ));
    let mut bobs = answered.recv().await.unwrap();
    // Caller's re-INVITE: bob sees the offer and answers with his current SDP.
    let answer = call.reinvite(Bytes::from_static(b"v=0 a2")).await.unwrap();
    assert_eq!(&answer[..], b"v=0 bob");
    assert_eq!(
        next(&mut bobs).await,
        CallEvent::Offer {
            method: "INVITE".into(),
            sdp: Bytes::from_static(b"v=0 a2")
        }
    );
    // Callee's re-INVITE the other way (a UAS dialog's first request: CSeq 1).
    assert_eq!(
        &bobs.reinvite(Bytes::from_static(b"v=0 b2")).await.unwrap()[..],
        b"v=0 a2"
    );
    assert!(matches!(next(&mut call).await, CallEvent::Offer { .. }));
    assert_eq!(
        call.info("application/dtmf-relay", Bytes::from_static(b"Signal=5"))
            .await
            .unwrap(),
        200
    );
    assert!(matches!(next(&mut bobs).await, CallEvent::Info { .. }));
    assert_eq!(
        &bobs.update(Bytes::from_static(b"v=0 b3")).await.unwrap()[..],
        b"v=0 a2"
    );
    bobs.bye().await.unwrap();
    assert_eq!(
        next(&mut call).await,
        CallEvent::Offer {
            method: "UPDATE".into(),
            sdp: Bytes::from_static(b"v=0 b3")
        }
    );
    assert_eq!(
        next(&mut call).await,
        CallEvent::Ended {
            cause: CallEnd::RemoteBye
        }
    );
    settle(&alice, &bob).await;
}

#[tokio::test]
async fn rejected_call_fails_with_the_status() {
    let (alice, bob) = (ua("alice").await, ua("bob").await);
    let mut incoming = bob.incoming();
    tokio::spawn(async move {
        while let Some(c) = incoming.next().await {
            c.reject(486).await.unwrap();
        }
    });
    let mut call = alice.call(&uri(&bob, "bob"), Bytes::new()).await.unwrap();
    assert_eq!(
        until_final(&mut call).await,
        CallEvent::Failed { status: 486 }
    );
    settle(&alice, &bob).await;
}

#[tokio::test]
async fn nobody_listening_is_480() {
    let (alice, bob) = (ua("alice").await, ua("bob").await);
    let mut call = alice.call(&uri(&bob, "bob"), Bytes::new()).await.unwrap();
    assert_eq!(
        until_final(&mut call).await,
        CallEvent::Failed { status: 480 }
    );
}

#[tokio::test]
async fn caller_cancels_a_ringing_call() {
    let (alice, bob) = (ua("alice").await, ua("bob").await);
    let mut incoming = bob.incoming();
    let (tx, mut rang) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(mut c) = incoming.next().await {
            c.ring().await.unwrap();
            let ev = c.next_event().await;
            let _ = tx.send(ev);
        }
    });
    let mut call = alice.call(&uri(&bob, "bob"), Bytes::new()).await.unwrap();
    loop {
        if let CallEvent::Ringing { .. } = next(&mut call).await {
            break;
        }
    }
    call.cancel();
    assert_eq!(
        until_final(&mut call).await,
        CallEvent::Failed { status: 487 }
    );
    assert_eq!(
        rang.recv().await.unwrap(),
        Some(CallEvent::Ended {
            cause: CallEnd::Cancelled
        })
    );
    settle(&alice, &bob).await;
}

#[tokio::test]
async fn reinvite_glare_resolves() {
    let (alice, bob) = (ua("alice").await, ua("bob").await);
    let mut answered = answer_calls(&bob, "v=0 bob");
    let mut call = alice
        .call(&uri(&bob, "bob"), Bytes::from_static(b"v=0 a"))
        .await
        .unwrap();
    assert!(matches!(
        until_final(&mut call).await,
        CallEvent::Answered { .. }
    ));
    let bobs = answered.recv().await.unwrap();
    // Both re-INVITE at once: whoever gets 491 waits the §14.1 time and retries.
    let (a, b) = tokio::join!(
        call.reinvite(Bytes::from_static(b"v=0 a2")),
        bobs.reinvite(Bytes::from_static(b"v=0 b2"))
    );
    assert!(a.is_ok(), "{a:?}");
    assert!(b.is_ok(), "{b:?}");
    call.bye().await.unwrap();
    settle(&alice, &bob).await;
}

#[tokio::test]
async fn message_both_ways() {
    let (alice, bob) = (ua("alice").await, ua("bob").await);
    let mut inbox = bob.messages();
    let status = alice
        .message(
            &uri(&bob, "bob"),
            "text/plain",
            Bytes::from_static(b"hello"),
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    let m = inbox.next().await.unwrap();
    assert_eq!(&m.body[..], b"hello");
    assert_eq!(m.content_type, "text/plain");
    assert_eq!(m.from, "sip:alice@example.com");
    // Nobody reading alice's messages: 480.
    assert_eq!(
        bob.message(&uri(&alice, "alice"), "text/plain", Bytes::new())
            .await
            .unwrap(),
        480
    );
}

#[tokio::test]
async fn registration_with_digest_refresh_and_close() {
    let reg_ep = Endpoint::builder()
        .udp("127.0.0.1:0".parse().unwrap())
        .build()
        .await
        .unwrap();
    let mut store = sip_stack::auth::MemoryStore::new();
    store.insert_password("alice", "example.com", "secret");
    let mut cfg = RegistrarConfig::new("example.com");
    cfg.auth = AuthMode::Digest(Arc::new(store));
    cfg.min_expires = 1;
    let registrar = Arc::new(Registrar::open(cfg));
    tokio::spawn(serve(
        reg_ep.clone(),
        registrar.clone(),
        ServiceOptions::default(),
    ));
    let alice = ua("alice").await;
    let addr = reg_ep.local_addr(Transport::Udp).unwrap();
    let mut reg = alice.register(&format!("sip:{addr}"), 2).await.unwrap();
    let state = tokio::time::timeout(LIMIT, reg.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state, RegistrationState::Registered { expires: 2 });
    let now = std::time::Instant::now();
    assert_eq!(
        registrar
            .store()
            .lookup("sip:alice@example.com", now)
            .await
            .len(),
        1
    );
    // Refreshed before the 2 s expiry.
    let state = tokio::time::timeout(Duration::from_secs(3), reg.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state, RegistrationState::Registered { expires: 2 });
    reg.close().await;
    assert!(registrar
        .store()
        .lookup("sip:alice@example.com", std::time::Instant::now())
        .await
        .is_empty());
}

/// A raw endpoint playing a proxy that challenges the INVITE with 407 once: the UA answers
/// with Proxy-Authorization for the realm and CSeq + 1; its ACK and BYE follow that CSeq.
#[tokio::test]
async fn invite_digest_retry_with_cseq_plus_one() {
    use sip_stack::core::{HeaderName, Method};
    use sip_stack::endpoint::ServerEvent;
    let server = Endpoint::builder()
        .udp("127.0.0.1:0".parse().unwrap())
        .build()
        .await
        .unwrap();
    let addr = server.local_addr(Transport::Udp).unwrap();
    let alice = ua("alice").await;
    let mut call = alice
        .call(&format!("sip:bob@{addr}"), Bytes::from_static(b"v=0"))
        .await
        .unwrap();
    // The caller hangs up as soon as it is answered.
    let caller = tokio::spawn(async move {
        let answered = until_final(&mut call).await;
        call.bye().await.unwrap();
        answered
    });
    let mut seen = Vec::new();
    while let Ok(Some(ev)) = tokio::time::timeout(LIMIT, server.next_event()).await {
        match ev {
            ServerEvent::Request(txn) => {
                let req = txn.request().clone();
                let auth = req
                    .header(HeaderName::ProxyAuthorization)
                    .map(str::to_owned);
                seen.push((
                    req.method().unwrap().as_str().to_owned(),
                    req.cseq().unwrap().seq,
                    auth.is_some(),
                ));
                let resp = match (req.method(), auth) {
                    (Some(Method::Invite), None) => txn
                        .response(407)
                        .header(
                            "Proxy-Authenticate",
                            "Digest realm=\"example.com\", nonce=\"n1\", qop=\"auth\"",
                        )
                        .build(),
                    (Some(Method::Invite), Some(a)) => {
                        assert!(a.contains("username=\"alice\""), "{a}");
                        assert!(a.contains("realm=\"example.com\""), "{a}");
                        txn.response(200)
                            .header("Contact", format!("<sip:bob@{addr}>"))
                            .build()
                    }
                    _ => txn.response(200).build(),
                };
                txn.respond(resp.unwrap()).await.unwrap();
                if req.method() == Some(Method::Bye) {
                    break;
                }
            }
            ServerEvent::Ack { request, .. } => {
                seen.push(("ACK".into(), request.cseq().unwrap().seq, false))
            }
            _ => {}
        }
    }
    assert!(matches!(caller.await.unwrap(), CallEvent::Answered { .. }));
    assert_eq!(
        seen,
        [
            ("INVITE".to_string(), 1, false),
            ("INVITE".to_string(), 2, true),
            ("ACK".to_string(), 2, false),
            ("BYE".to_string(), 3, false),
        ]
    );
}

/// Registered over TCP; the registrar closes the connection: the UA registers again at once
/// (RFC 5626 §4.4.1 behaviour for a lost flow), long before its refresh time.
#[tokio::test]
async fn registration_over_tcp_comes_back_after_the_flow_closes() {
    let reg_ep = Endpoint::builder()
        .tcp("127.0.0.1:0".parse().unwrap())
        .build()
        .await
        .unwrap();
    let registrar = Arc::new(Registrar::open(RegistrarConfig::new("example.com")));
    tokio::spawn(serve(
        reg_ep.clone(),
        registrar.clone(),
        ServiceOptions::default(),
    ));
    let ep = Endpoint::builder()
        .udp("127.0.0.1:0".parse().unwrap())
        .tcp("127.0.0.1:0".parse().unwrap())
        .build()
        .await
        .unwrap();
    let alice = UserAgent::builder(ep)
        .aor("sip:alice@example.com")
        .transport(Transport::Tcp)
        .build()
        .unwrap();
    let addr = reg_ep.local_addr(Transport::Tcp).unwrap();
    let mut reg = alice
        .register(&format!("sip:{addr};transport=tcp"), 3600)
        .await
        .unwrap();
    let first = tokio::time::timeout(LIMIT, reg.changed())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(first, RegistrationState::Registered { .. }),
        "{first:?}"
    );
    let flows = reg_ep.transport().flows();
    assert!(!flows.is_empty());
    for f in &flows {
        reg_ep.transport().close_flow(f);
    }
    let again = tokio::time::timeout(LIMIT, reg.changed())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(again, RegistrationState::Registered { .. }),
        "{again:?}"
    );
    // A new connection carries the new binding.
    assert!(reg_ep
        .transport()
        .flows()
        .iter()
        .all(|f| !flows.contains(f)));
    reg.close().await;
}

/// A caller that never ACKs: the answering UA retransmits its 2xx (T1, 2·T1… capped at T2)
/// and after 64·T1 ends the call with a BYE (RFC 3261 §13.3.1.4).
#[tokio::test]
async fn no_ack_means_retransmitted_2xx_then_bye() {
    use sip_stack::core::builder::RequestBuilder;
    use sip_stack::core::{Method, Target};
    use sip_stack::endpoint::ServerEvent;
    let bob = ua("bob").await;
    let mut answered = answer_calls(&bob, "v=0 bob");
    let caller = Endpoint::builder()
        .udp("127.0.0.1:0".parse().unwrap())
        .transaction_config(Config::default().with_t1(T1))
        .build()
        .await
        .unwrap();
    let me = caller.local_addr(Transport::Udp).unwrap();
    let bob_addr = bob.endpoint().local_addr(Transport::Udp).unwrap();
    let invite = RequestBuilder::new(Method::Invite, &format!("sip:bob@{bob_addr}"))
        .header("Via", caller.via(Transport::Udp))
        .from_addr(None, "sip:mute@example.com", "m1")
        .to_addr(None, &format!("sip:bob@{bob_addr}"), None)
        .call_id(&caller.new_call_id())
        .cseq(1)
        .contact(&format!("sip:mute@{me}"))
        .build()
        .unwrap();
    let mut txn = caller
        .request(invite, Target::new(Transport::Udp, bob_addr))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut oks = 0;
    // 2xx copies come on the transaction (Accepted) and then as stray responses.
    let on_txn = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counting = tokio::spawn({
        let on_txn = on_txn.clone();
        async move {
            while let Some(r) = txn.next_response().await {
                if r.status() == Some(200) {
                    on_txn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    });
    let mut bobs = answered.recv().await.unwrap();
    let bye = loop {
        match tokio::time::timeout(LIMIT, caller.next_event())
            .await
            .unwrap()
            .unwrap()
        {
            ServerEvent::Request(t) if t.request().method() == Some(Method::Bye) => {
                t.respond(t.response(200).build().unwrap()).await.unwrap();
                break started.elapsed();
            }
            ServerEvent::StrayResponse { response, .. } if response.status() == Some(200) => {
                oks += 1
            }
            _ => {}
        }
    };
    assert!(bye >= T1 * 60, "BYE after {bye:?}");
    assert_eq!(
        next(&mut bobs).await,
        CallEvent::Ended {
            cause: CallEnd::AckTimeout
        }
    );
    counting.abort();
    let retransmitted = bob.dialog_stats();
    assert_eq!(retransmitted.early + retransmitted.confirmed, 0);
    assert_eq!(
        retransmitted.ended_by(sip_stack::dialog::EndCause::Timeout),
        1
    );
    // The 2xx came again and again before the BYE (T1 = 50 ms: at 50, 150, 350… ms).
    let on_txn = on_txn.load(std::sync::atomic::Ordering::Relaxed);
    assert!(on_txn + oks >= 5, "2xx seen {on_txn} + {oks} times");
}
