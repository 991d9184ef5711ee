//! A phone behind NAT, through the dispatcher, with a real proxy node (registrar with the
//! in-memory store, proxy core): the phone registers through the dispatcher with a Contact on a
//! private address nobody can reach; a caller elsewhere calls it at the node; the INVITE, the
//! ACK and the phone's BYE all pass the dispatcher on the phone's flow (RFC 3327 Path with an
//! RFC 5626 flow token). Loopback 127.0.0.15 only; awaits are bounded; nothing sleeps.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sip_stack::core::{Flow, HeaderName, Message, Method, Target, Transport};
use sip_stack::dispatcher::{Dispatcher, DispatcherConfig, NodeConfig, Role};
use sip_stack::endpoint::{CancelMode, Endpoint};
use sip_stack::proxy::{Identity, Interface, LocationRouter, ProxyBuilder, ProxyConfig};
use sip_stack::registrar::{LocationStore, Registrar, RegistrarConfig};
use sip_stack::transport::{TransportEvent, TransportHandle, TransportLayer};
use tokio::sync::mpsc;
use tokio::time::timeout;

const IP: &str = "127.0.0.15";
const WAIT: Duration = Duration::from_secs(10);
const PRIVATE: &str = "10.0.0.9:5060";

fn any_port() -> SocketAddr {
    format!("{IP}:0").parse().unwrap()
}

async fn node() -> (Endpoint, Arc<Registrar>) {
    let ep = Endpoint::builder()
        .udp(any_port())
        .cancel_mode(CancelMode::Proxy)
        .build()
        .await
        .unwrap();
    let registrar = Arc::new(Registrar::open(RegistrarConfig::new("example.com")));
    let identity = Identity::new(
        vec![Interface::new(
            Transport::Udp,
            ep.local_addr(Transport::Udp).unwrap(),
        )],
        vec!["example.com".into()],
    );
    let router = LocationRouter::new(registrar.clone(), identity.clone());
    let proxy = ProxyBuilder::new(ProxyConfig::new(identity), router).build(ep.clone());
    tokio::spawn(sip_stack::proxy::serve(proxy, Some(registrar.clone()), 2));
    (ep, registrar)
}

/// A plain transport layer: the phone, or the caller, writing its messages by hand.
async fn peer() -> (TransportHandle, mpsc::Receiver<TransportEvent>, SocketAddr) {
    let (h, rx) = TransportLayer::builder()
        .udp(any_port())
        .build()
        .await
        .unwrap();
    let a = h.local_addr(Transport::Udp).unwrap();
    (h, rx, a)
}

/// The next message that is not a 100 Trying.
async fn next(rx: &mut mpsc::Receiver<TransportEvent>) -> (Message, Flow) {
    loop {
        let ev = timeout(WAIT, rx.recv())
            .await
            .expect("a message")
            .expect("open");
        if let TransportEvent::Message { msg, flow, .. } = ev {
            if msg.status() != Some(100) {
                return (msg, flow);
            }
        }
    }
}

fn udp(addr: SocketAddr) -> Target {
    Target::new(Transport::Udp, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phone_behind_nat_called_through_the_dispatcher() {
    let (node_ep, registrar) = node().await;
    let node_addr = node_ep.local_addr(Transport::Udp).unwrap();
    let d = Dispatcher::start(
        DispatcherConfig {
            udp: vec![any_port()],
            ..DispatcherConfig::default()
        },
        [Role::Registrar, Role::Proxy]
            .into_iter()
            .map(|role| NodeConfig {
                role,
                target: udp(node_addr),
                max_load: None,
            })
            .collect(),
    )
    .await
    .unwrap();
    let d_addr = d.transport().local_addr(Transport::Udp).unwrap();
    let (phone, mut phone_rx, _) = peer().await;
    let (caller, mut caller_rx, caller_addr) = peer().await;

    // The phone registers through the dispatcher; its Contact is private.
    let register = format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP {PRIVATE};rport;branch=z9hG4bKnatreg\r\n\
         Max-Forwards: 70\r\nFrom: <sip:bob@example.com>;tag=b1\r\nTo: <sip:bob@example.com>\r\n\
         Call-ID: nat-reg@{IP}\r\nCSeq: 1 REGISTER\r\nSupported: path\r\n\
         Contact: <sip:bob@{PRIVATE}>\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n"
    );
    phone
        .send(udp(d_addr), Bytes::from(register))
        .await
        .unwrap();
    let (ok, _) = next(&mut phone_rx).await;
    assert_eq!(ok.status(), Some(200), "{ok}");
    let path = ok.header(HeaderName::Path).expect("Path echoed").to_owned();
    assert!(path.ends_with(&format!("@{d_addr};lr;ob>")), "{path}");
    let bindings = registrar
        .store()
        .lookup("sip:bob@example.com", Instant::now())
        .await;
    assert_eq!(bindings.len(), 1);
    assert_eq!(&*bindings[0].path()[0], path.as_str());

    // A caller elsewhere calls bob at the node.
    let invite = format!(
        "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP {caller_addr};rport;branch=z9hG4bKnatinv\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\n\
         Call-ID: nat-call@{IP}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{caller_addr}>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    caller
        .send(udp(node_addr), Bytes::from(invite))
        .await
        .unwrap();
    let (inv, inv_flow) = next(&mut phone_rx).await;
    assert_eq!(inv.method(), Some(Method::Invite));
    assert_eq!(inv.uri_str(), Some(format!("sip:bob@{PRIVATE}").as_str()));
    assert_eq!(inv_flow.remote, d_addr, "not from the dispatcher");
    let rr: Vec<String> = inv
        .values(HeaderName::RecordRoute)
        .map(str::to_owned)
        .collect();
    assert_eq!(rr.len(), 2, "{rr:?}");
    assert_eq!(rr[0], path, "the dispatcher's token on top");
    let ok = inv
        .response(200)
        .header("Record-Route", rr.join(", "))
        .header("Contact", format!("<sip:bob@{PRIVATE}>"))
        .build()
        .unwrap();
    let ok = {
        // The phone's To tag.
        let mut m = ok;
        m.set_header(HeaderName::To, "<sip:bob@example.com>;tag=b2")
            .unwrap();
        m
    };
    phone.send_response(&ok, Some(inv_flow)).await.unwrap();
    let (answer, _) = next(&mut caller_rx).await;
    assert_eq!(answer.status(), Some(200));
    assert_eq!(answer.count(HeaderName::Via), 1);

    // The caller's ACK along its route set (the node, then the dispatcher's token) reaches the
    // phone on its flow.
    let ack = format!(
        "ACK sip:bob@{PRIVATE} SIP/2.0\r\nVia: SIP/2.0/UDP {caller_addr};rport;branch=z9hG4bKnatack\r\n\
         Route: {}\r\nRoute: {}\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\n\
         To: <sip:bob@example.com>;tag=b2\r\nCall-ID: nat-call@{IP}\r\nCSeq: 1 ACK\r\n\
         Content-Length: 0\r\n\r\n",
        rr[1], rr[0]
    );
    caller.send(udp(node_addr), Bytes::from(ack)).await.unwrap();
    let (got, flow) = next(&mut phone_rx).await;
    assert_eq!(got.method(), Some(Method::Ack));
    assert_eq!(flow.remote, d_addr);

    // The phone hangs up along its route set: the dispatcher (its own flow: only popped), the
    // node, the caller; the 200 comes back the same way.
    let bye = format!(
        "BYE sip:alice@{caller_addr} SIP/2.0\r\nVia: SIP/2.0/UDP {PRIVATE};rport;branch=z9hG4bKnatbye\r\n\
         Route: {}\r\nRoute: {}\r\nMax-Forwards: 70\r\nFrom: <sip:bob@example.com>;tag=b2\r\n\
         To: <sip:alice@example.com>;tag=a1\r\nCall-ID: nat-call@{IP}\r\nCSeq: 1 BYE\r\n\
         Content-Length: 0\r\n\r\n",
        rr[0], rr[1]
    );
    phone.send(udp(d_addr), Bytes::from(bye)).await.unwrap();
    let (bye, bye_flow) = next(&mut caller_rx).await;
    assert_eq!(bye.method(), Some(Method::Bye));
    assert_eq!(bye_flow.remote, node_addr);
    let ok = bye.response(200).build().unwrap();
    caller.send_response(&ok, Some(bye_flow)).await.unwrap();
    let (done, _) = next(&mut phone_rx).await;
    assert_eq!(done.status(), Some(200));
    assert_eq!(done.cseq().unwrap().method, Method::Bye);

    let c = d.counters();
    assert_eq!(c.to_flows, 2, "INVITE and ACK on the phone's flow: {c:?}");
    d.shutdown();
}
