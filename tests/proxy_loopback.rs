//! The proxy on loopback with real Endpoints: two callees register one AOR through it, a caller
//! calls that AOR. Forking with 486 + 200 (one 200 reaches the caller, the ACK reaches the
//! answering callee along Record-Route), CANCEL while both ring (both cancelled, 487 to the
//! caller), an unknown user (404), and the counters. Awaits are bounded; nothing sleeps.

use std::sync::Arc;
use std::time::Duration;

use sip_stack::core::builder::RequestBuilder;
use sip_stack::core::{HeaderName, Message, Method, Target, Transport};
use sip_stack::endpoint::{CancelMode, Destination, Endpoint, ServerEvent};
use sip_stack::proxy::{Identity, Interface, LocationRouter, Proxy, ProxyBuilder, ProxyConfig};
use sip_stack::registrar::{LocationStore, Registrar, RegistrarConfig};
use tokio::sync::mpsc;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

type TheProxy = Proxy<LocationRouter<sip_stack::registrar::MemoryLocationStore>>;

async fn endpoint(mode: CancelMode) -> Endpoint {
    Endpoint::builder()
        .udp("127.0.0.1:0".parse().unwrap())
        .cancel_mode(mode)
        .build()
        .await
        .unwrap()
}

async fn start_proxy() -> (Endpoint, Arc<TheProxy>, Arc<Registrar>) {
    let ep = endpoint(CancelMode::Proxy).await;
    let registrar = Arc::new(Registrar::open(RegistrarConfig::new("example.com")));
    let interfaces = vec![Interface::new(
        Transport::Udp,
        ep.local_addr(Transport::Udp).unwrap(),
    )];
    let identity = Identity::new(interfaces, vec!["example.com".into()]);
    let router = LocationRouter::new(registrar.clone(), identity.clone());
    let proxy = ProxyBuilder::new(ProxyConfig::new(identity), router).build(ep.clone());
    tokio::spawn(sip_stack::proxy::serve(
        proxy.clone(),
        Some(registrar.clone()),
        2,
    ));
    (ep, proxy, registrar)
}

fn proxy_target(proxy: &Endpoint) -> Target {
    Target::new(Transport::Udp, proxy.local_addr(Transport::Udp).unwrap())
}

fn request(from: &Endpoint, method: Method, ruri: &str, user: &str, cseq: u32) -> Message {
    RequestBuilder::new(method, ruri)
        .header("Via", from.via(Transport::Udp))
        .header("Max-Forwards", "70")
        .header(
            "From",
            format!("<sip:{user}@example.com>;tag={}", from.new_tag()),
        )
        .header("To", "<sip:bob@example.com>")
        .header("Call-ID", from.new_call_id())
        .header("CSeq", format!("{cseq} {method}"))
        .header(
            "Contact",
            format!("<sip:{user}@{}>", from.local_addr(Transport::Udp).unwrap()),
        )
        .build()
        .unwrap()
}

async fn register(callee: &Endpoint, proxy: &Endpoint) {
    let mut r = request(callee, Method::Register, "sip:example.com", "bob", 1);
    r.set_header(HeaderName::To, "<sip:bob@example.com>")
        .unwrap();
    let mut t = callee.request(r, proxy_target(proxy)).await.unwrap();
    let resp = timeout(WAIT, t.final_response()).await.unwrap().unwrap();
    assert_eq!(resp.status(), Some(200));
}

/// What a callee does with an INVITE after its 180.
#[derive(Clone, Copy)]
enum Role {
    Busy,
    Answer,
    Ring,
}

/// A callee: every INVITE gets 180, then per `role`. It reports ACKs and CANCELs.
async fn callee(ep: Endpoint, role: Role, seen: mpsc::UnboundedSender<&'static str>) {
    let mut held = Vec::new();
    while let Some(ev) = ep.next_event().await {
        match ev {
            ServerEvent::Request(txn) if txn.request().method() == Some(Method::Invite) => {
                let req = txn.request().clone();
                let tag = ep.new_tag();
                txn.respond(req.response(180).to_tag(&tag).build().unwrap())
                    .await
                    .unwrap();
                match role {
                    Role::Busy => {
                        let r = req.response(486).to_tag(&tag).build().unwrap();
                        txn.respond(r).await.unwrap();
                    }
                    Role::Answer => {
                        let mut b = req.response(200).to_tag(&tag);
                        for rr in req.values(HeaderName::RecordRoute) {
                            b = b.header("Record-Route", rr);
                        }
                        let contact = format!("<sip:b@{}>", ep.local_addr(Transport::Udp).unwrap());
                        txn.respond(b.header("Contact", contact).build().unwrap())
                            .await
                            .unwrap();
                    }
                    // The endpoint answers 487 itself when the CANCEL comes (UA mode).
                    Role::Ring => held.push(txn),
                }
            }
            ServerEvent::Ack { .. } => {
                let _ = seen.send("ack");
            }
            ServerEvent::Cancelled { .. } => {
                let _ = seen.send("cancel");
            }
            _ => {}
        }
    }
}

async fn callees(
    proxy: &Endpoint,
    roles: [Role; 2],
) -> (Vec<Endpoint>, mpsc::UnboundedReceiver<&'static str>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut eps = Vec::new();
    for role in roles {
        let ep = endpoint(CancelMode::Ua).await;
        register(&ep, proxy).await;
        tokio::spawn(callee(ep.clone(), role, tx.clone()));
        eps.push(ep);
    }
    (eps, rx)
}

/// Collects the responses of a client transaction until its final one (and a little after
/// for 2xx: any second 200 would show up too).
async fn responses(t: &mut sip_stack::endpoint::ClientTransaction) -> Vec<Message> {
    let mut out = Vec::new();
    while let Ok(Some(r)) = timeout(WAIT, t.next_response()).await {
        let done = r.status().is_some_and(|s| s >= 200);
        out.push(r);
        if done {
            break;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_486_and_200_one_200_and_ack_along_record_route() {
    let (pep, proxy, registrar) = start_proxy().await;
    let (_callees, mut seen) = callees(&pep, [Role::Busy, Role::Answer]).await;
    assert_eq!(
        registrar
            .store()
            .lookup("sip:bob@example.com", std::time::Instant::now())
            .await
            .len(),
        2
    );
    let caller = endpoint(CancelMode::Ua).await;
    let invite = request(&caller, Method::Invite, "sip:bob@example.com", "alice", 1);
    let mut t = caller
        .request(invite.clone(), proxy_target(&pep))
        .await
        .unwrap();
    let got = responses(&mut t).await;
    let ok = got.last().unwrap();
    assert_eq!(ok.status(), Some(200), "{got:?}");
    // Our Via is gone, the Record-Route is there.
    assert_eq!(ok.values(HeaderName::Via).count(), 1);
    let rr: Vec<String> = ok
        .values(HeaderName::RecordRoute)
        .map(str::to_owned)
        .collect();
    assert_eq!(rr.len(), 1);
    // The ACK along the route set, to the remote target.
    let contact = ok.contacts().next().unwrap().unwrap();
    let target_uri = contact.addr().unwrap().uri_str().to_owned();
    let mut ack = RequestBuilder::new(Method::Ack, &target_uri)
        .header("Via", caller.via(Transport::Udp))
        .header("Route", &rr[0])
        .header("Max-Forwards", "70")
        .header("From", invite.header(HeaderName::From).unwrap())
        .header("To", ok.header(HeaderName::To).unwrap())
        .header("Call-ID", invite.call_id().unwrap())
        .header("CSeq", "1 ACK")
        .build()
        .unwrap();
    ack.set_header(HeaderName::ContentLength, "0").unwrap();
    caller
        .send_stateless(ack, Destination::Target(proxy_target(&pep)))
        .await
        .unwrap();
    assert_eq!(timeout(WAIT, seen.recv()).await.unwrap(), Some("ack"));
    let c = proxy.counters();
    assert_eq!(c.best_by_class[2], 1);
    assert!(c.forwarded >= 2);
    assert_eq!(c.forwarded_stateless, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_while_both_ring() {
    let (pep, proxy, _registrar) = start_proxy().await;
    let (_callees, mut seen) = callees(&pep, [Role::Ring, Role::Ring]).await;
    let caller = endpoint(CancelMode::Ua).await;
    let invite = request(&caller, Method::Invite, "sip:bob@example.com", "alice", 1);
    let mut t = caller.request(invite, proxy_target(&pep)).await.unwrap();
    // Wait until a 180 came back, then cancel.
    loop {
        let r = timeout(WAIT, t.next_response()).await.unwrap().unwrap();
        if r.status() == Some(180) {
            break;
        }
    }
    t.cancel().await.unwrap();
    let got = responses(&mut t).await;
    assert_eq!(got.last().and_then(Message::status), Some(487), "{got:?}");
    for _ in 0..2 {
        assert_eq!(timeout(WAIT, seen.recv()).await.unwrap(), Some("cancel"));
    }
    let c = proxy.counters();
    assert_eq!(c.cancels, 1);
    assert_eq!(c.cancels_sent, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_user_404_and_options_max_forwards_zero() {
    let (pep, proxy, _registrar) = start_proxy().await;
    let caller = endpoint(CancelMode::Ua).await;
    let msg = request(
        &caller,
        Method::Message,
        "sip:nobody@example.com",
        "alice",
        1,
    );
    let mut t = caller.request(msg, proxy_target(&pep)).await.unwrap();
    let r = timeout(WAIT, t.final_response()).await.unwrap().unwrap();
    assert_eq!(r.status(), Some(404));
    let mut options = request(&caller, Method::Options, "sip:bob@example.com", "alice", 1);
    options.set_header(HeaderName::MaxForwards, "0").unwrap();
    let mut t = caller.request(options, proxy_target(&pep)).await.unwrap();
    let r = timeout(WAIT, t.final_response()).await.unwrap().unwrap();
    assert_eq!(r.status(), Some(200));
    assert!(r.header(HeaderName::Allow).is_some());
    assert_eq!(proxy.counters().answered_locally, 2);
}

/// RFC 6026 §7.2: once the proxy has forwarded the 200 its request is over (no task waits on
/// the branch), yet a retransmission of that 200 by the callee's UAS core still reaches the
/// caller, forwarded statelessly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retransmitted_200_after_the_answer_is_forwarded() {
    let (pep, proxy, _registrar) = start_proxy().await;
    let callee = endpoint(CancelMode::Ua).await;
    register(&callee, &pep).await;
    let (go_tx, mut go_rx) = mpsc::unbounded_channel::<()>();
    let ep = callee.clone();
    tokio::spawn(async move {
        while let Some(ev) = ep.next_event().await {
            let ServerEvent::Request(txn) = ev else {
                continue;
            };
            if txn.request().method() != Some(Method::Invite) {
                continue;
            }
            let req = txn.request().clone();
            let contact = format!("<sip:b@{}>", ep.local_addr(Transport::Udp).unwrap());
            let ok = req
                .response(200)
                .to_tag(&ep.new_tag())
                .header("Contact", contact)
                .build()
                .unwrap();
            txn.respond(ok.clone()).await.unwrap();
            // The caller has the first 200; now the UAS core retransmits it (no ACK came).
            go_rx.recv().await;
            txn.respond(ok).await.unwrap();
        }
    });
    let caller = endpoint(CancelMode::Ua).await;
    let invite = request(&caller, Method::Invite, "sip:bob@example.com", "alice", 1);
    let mut t = caller.request(invite, proxy_target(&pep)).await.unwrap();
    let first = responses(&mut t).await;
    assert_eq!(
        first.last().and_then(Message::status),
        Some(200),
        "{first:?}"
    );
    go_tx.send(()).unwrap();
    let again = timeout(WAIT, t.next_response()).await.unwrap().unwrap();
    assert_eq!(again.status(), Some(200));
    assert_eq!(
        again.header(HeaderName::To),
        first.last().unwrap().header(HeaderName::To)
    );
    assert_eq!(again.values(HeaderName::Via).count(), 1);
    assert_eq!(proxy.counters().responses_stateless, 1);
}
