//! Two Endpoints on loopback: OPTIONS, and INVITE answered 200 (with the ACK), 486, and
//! cancelled; over UDP and TCP. Every transaction ends and both tables are empty afterwards.
//! Events are awaited with bounded timeouts; nothing sleeps to wait.

use std::time::Duration;

use sip_stack::core::builder::RequestBuilder;
use sip_stack::core::{HeaderName, Message, Method, Target, Transport};
use sip_stack::endpoint::{Destination, Endpoint, ServerEvent};
use sip_transaction::Config;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

async fn pair(transport: Transport) -> (Endpoint, Endpoint) {
    // Short timers so that Timer D/K/I end transactions quickly over UDP.
    let timers = Config::default()
        .with_t1(Duration::from_millis(50))
        .with_t4(Duration::from_millis(100))
        .with_timer_d(Duration::from_millis(200));
    let mut a = Endpoint::builder().transaction_config(timers.clone());
    let mut b = Endpoint::builder().transaction_config(timers);
    let any = "127.0.0.1:0".parse().unwrap();
    match transport {
        Transport::Udp => {
            a = a.udp(any);
            b = b.udp(any);
        }
        _ => {
            a = a.tcp(any).udp(any);
            b = b.tcp(any).udp(any);
        }
    }
    (a.build().await.unwrap(), b.build().await.unwrap())
}

fn request(client: &Endpoint, server: &Endpoint, method: Method, transport: Transport) -> Message {
    let to = server.local_addr(transport).unwrap();
    RequestBuilder::new(method, &format!("sip:bob@{to}"))
        .header("Via", client.via(transport))
        .header(
            "From",
            format!("<sip:alice@example.com>;tag={}", client.new_tag()),
        )
        .header("To", format!("<sip:bob@{to}>"))
        .header("Call-ID", client.new_call_id())
        .header("CSeq", format!("1 {method}"))
        .header(
            "Contact",
            format!("<sip:alice@{}>", client.local_addr(transport).unwrap()),
        )
        .build()
        .unwrap()
}

/// A UAS: OPTIONS → 200; INVITE to "bob" → 180 then 200; "busy" → 486; "slow" → 180 only.
/// Every ACK of a 2xx that reaches the TU is passed to `acks`, for the test to check.
async fn serve(server: Endpoint, acks: tokio::sync::mpsc::UnboundedSender<Message>) {
    while let Some(ev) = server.next_event().await {
        match ev {
            ServerEvent::Request(txn) => {
                let req = txn.request();
                let user = req
                    .request_uri()
                    .and_then(|u| u.ok())
                    .and_then(|u| u.user().map(str::to_owned));
                match (req.method(), user.as_deref()) {
                    (Some(Method::Invite), Some("busy")) => {
                        txn.respond(req.response(486).to_tag("t486").build().unwrap())
                            .await
                            .unwrap();
                    }
                    (Some(Method::Invite), Some("slow")) => {
                        txn.respond(req.response(180).to_tag("tslow").build().unwrap())
                            .await
                            .unwrap();
                        // No final response: the caller cancels; the endpoint answers 487.
                        std::mem::forget(txn);
                    }
                    (Some(Method::Invite), _) => {
                        txn.respond(req.response(180).to_tag("t200").build().unwrap())
                            .await
                            .unwrap();
                        let ok = req
                            .response(200)
                            .to_tag("t200")
                            .header("Contact", format!("<sip:bob@{}>", txn.flow().local))
                            .build()
                            .unwrap();
                        txn.respond(ok).await.unwrap();
                    }
                    _ => {
                        txn.respond(req.response(200).build().unwrap())
                            .await
                            .unwrap();
                    }
                }
            }
            ServerEvent::Ack { request, .. } => {
                let _ = acks.send(request);
            }
            _ => {}
        }
    }
}

fn ack_for(invite: &Message, ok: &Message, client: &Endpoint, transport: Transport) -> Message {
    // RFC 3261 §13.2.2.4: the ACK of a 2xx is a new transaction-less request of the dialog.
    let to = ok.header(HeaderName::To).unwrap();
    let cseq = invite.cseq().unwrap().seq;
    RequestBuilder::new(Method::Ack, invite.uri_str().unwrap())
        .header("Via", client.via(transport))
        .header("From", invite.header(HeaderName::From).unwrap())
        .header("To", to)
        .header("Call-ID", invite.call_id().unwrap())
        .header("CSeq", format!("{cseq} ACK"))
        .build()
        .unwrap()
}

async fn scenario(transport: Transport) {
    let (client, server) = pair(transport).await;
    let target = Target::new(transport, server.local_addr(transport).unwrap());
    let (acks_tx, mut acks) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(serve(server.clone(), acks_tx));

    // OPTIONS → 200.
    let mut t = client
        .request(
            request(&client, &server, Method::Options, transport),
            target.clone(),
        )
        .await
        .unwrap();
    let r = timeout(WAIT, t.final_response()).await.unwrap().unwrap();
    assert_eq!(r.status(), Some(200));

    // INVITE → 180, 200; the ACK reaches the server's TU.
    let invite = request(&client, &server, Method::Invite, transport);
    let mut t = client
        .request(invite.clone(), target.clone())
        .await
        .unwrap();
    let first = timeout(WAIT, t.next_response()).await.unwrap().unwrap();
    assert_eq!(first.status(), Some(180));
    let ok = timeout(WAIT, t.final_response()).await.unwrap().unwrap();
    assert_eq!(ok.status(), Some(200));
    let ack = ack_for(&invite, &ok, &client, transport);
    client
        .send_stateless(ack, Destination::Target(target.clone()))
        .await
        .unwrap();
    // Checked here, in the test itself: the ACK reached the server's TU.
    let got = timeout(WAIT, acks.recv()).await.unwrap().unwrap();
    assert_eq!(got.method(), Some(Method::Ack));
    assert_eq!(got.call_id(), invite.call_id());
    assert_eq!(got.cseq().unwrap().seq, invite.cseq().unwrap().seq);

    // INVITE → 486: the client transaction ACKs it itself.
    let mut busy = request(&client, &server, Method::Invite, transport);
    busy.set_request_uri(&format!("sip:busy@{}", target.addr))
        .unwrap();
    let mut t = client.request(busy, target.clone()).await.unwrap();
    let r = timeout(WAIT, t.final_response()).await.unwrap().unwrap();
    assert_eq!(r.status(), Some(486));

    // INVITE → 180, CANCEL → 487 (and 200 for the CANCEL).
    let mut slow = request(&client, &server, Method::Invite, transport);
    slow.set_request_uri(&format!("sip:slow@{}", target.addr))
        .unwrap();
    let mut t = client.request(slow, target.clone()).await.unwrap();
    let r = timeout(WAIT, t.next_response()).await.unwrap().unwrap();
    assert_eq!(r.status(), Some(180));
    t.cancel().await.unwrap();
    let r = timeout(WAIT, t.final_response()).await.unwrap().unwrap();
    assert_eq!(r.status(), Some(487));

    // Every transaction ends; both tables are empty.
    timeout(WAIT, client.wait_idle()).await.unwrap();
    timeout(WAIT, server.wait_idle()).await.unwrap();
    let c = client.counters();
    assert_eq!(c.live, 0);
    assert_eq!(c.created[0], 3, "three INVITE client transactions");
    assert_eq!(c.created[1], 2, "OPTIONS and CANCEL");
    let s = server.counters();
    assert_eq!(s.created[2], 3);
    assert_eq!(s.created[3], 2);
    client.shutdown(Duration::from_secs(1)).await;
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn loopback_udp() {
    scenario(Transport::Udp).await;
}

#[tokio::test]
async fn loopback_tcp() {
    scenario(Transport::Tcp).await;
}

#[tokio::test]
async fn request_timeout_is_reported() {
    let timers = Config::default().with_t1(Duration::from_millis(5));
    let client = Endpoint::builder()
        .transaction_config(timers)
        .udp("127.0.0.1:0".parse().unwrap())
        .build()
        .await
        .unwrap();
    // A socket nobody answers on.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = silent.local_addr().unwrap();
    let req = RequestBuilder::new(Method::Options, &format!("sip:x@{to}"))
        .header("Via", client.via(Transport::Udp))
        .header("From", "<sip:a@example.com>;tag=1")
        .header("To", format!("<sip:x@{to}>"))
        .header("Call-ID", client.new_call_id())
        .header("CSeq", "1 OPTIONS")
        .build()
        .unwrap();
    let mut t = client
        .request(req, Target::new(Transport::Udp, to))
        .await
        .unwrap();
    let err = timeout(WAIT, t.final_response())
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(
        err,
        sip_stack::endpoint::EndpointError::NoFinalResponse(r) if r.equivalent_status() == Some(408)
    ));
    assert!(client.counters().retransmissions_sent >= 5);
    assert_eq!(client.counters().timeouts, 1);
    client.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn stateless_methods_reach_the_tu_without_a_transaction() {
    let any = "127.0.0.1:0".parse().unwrap();
    let server = Endpoint::builder()
        .udp(any)
        .stateless_methods(&[Method::Register, Method::Invite])
        .build()
        .await
        .unwrap();
    let client = Endpoint::builder().udp(any).build().await.unwrap();
    let answering = server.clone();
    tokio::spawn(async move {
        while let Some(ServerEvent::Request(txn)) = answering.next_event().await {
            // INVITE is never stateless: it has a transaction; REGISTER has none.
            let expect_key = txn.request().method() == Some(Method::Invite);
            assert_eq!(txn.key().is_some(), expect_key);
            let ok = txn.request().response(200).to_tag("s").build().unwrap();
            txn.respond(ok).await.unwrap();
        }
    });
    let target = Target::new(Transport::Udp, server.local_addr(Transport::Udp).unwrap());
    let mut t = client
        .request(
            request(&client, &server, Method::Register, Transport::Udp),
            target.clone(),
        )
        .await
        .unwrap();
    let r = timeout(WAIT, t.final_response()).await.unwrap().unwrap();
    assert_eq!(r.status(), Some(200));
    let c = server.counters();
    assert_eq!(c.created[3], 0, "no non-INVITE server transaction");
    assert_eq!(c.live, 0);
    let mut t = client
        .request(
            request(&client, &server, Method::Invite, Transport::Udp),
            target,
        )
        .await
        .unwrap();
    let r = timeout(WAIT, t.final_response()).await.unwrap().unwrap();
    assert_eq!(r.status(), Some(200));
    assert_eq!(
        server.counters().created[2],
        1,
        "INVITE keeps its transaction"
    );
    client.shutdown(Duration::from_millis(100)).await;
    server.shutdown(Duration::from_millis(100)).await;
}
