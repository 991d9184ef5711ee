//! RFC 3263 through the Endpoint, against an in-process DNS server on loopback serving a zone
//! written here: a UA configured with only `sip:alice@example.com` finds its registrar by
//! NAPTR → SRV → A; failover after a dead first target (TCP refused, then a UDP target that
//! never answers: Timer F) with the failed target marked down; a Route decides over the
//! Request-URI (RFC 3261 §8.1.2); a name with no records is an error, not a hang.
#![cfg(feature = "dns")]

#[path = "../sip-transport/tests/common/dns.rs"]
mod dns;

use std::net::SocketAddr;
use std::time::Duration;

use dns::{TestDns, Zone};
use sip_stack::core::builder::RequestBuilder;
use sip_stack::core::{Message, Method, Transport};
use sip_stack::endpoint::{Endpoint, EndpointError, ServerEvent};
use sip_transaction::Config;
use tokio::sync::mpsc;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A server answering every request 200 and reporting its Request-URI and transport.
async fn server(tcp: bool) -> (Endpoint, mpsc::UnboundedReceiver<(String, Transport)>) {
    let mut b = Endpoint::builder().udp(any());
    if tcp {
        b = b.tcp(any());
    }
    let ep = b.build().await.unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let e = ep.clone();
    tokio::spawn(async move {
        while let Some(ev) = e.next_event().await {
            if let ServerEvent::Request(txn) = ev {
                let uri = txn.request().uri_str().unwrap_or_default().to_owned();
                let _ = tx.send((uri, txn.flow().transport));
                let ok = txn.request().response(200).build().unwrap();
                let _ = txn.respond(ok).await;
            }
        }
    });
    (ep, rx)
}

async fn client(dns: &TestDns) -> Endpoint {
    let timers = Config::default().with_t1(Duration::from_millis(10));
    Endpoint::builder()
        .udp(any())
        .transaction_config(timers)
        .dns(dns.addr)
        .build()
        .await
        .unwrap()
}

fn request(ep: &Endpoint, method: Method, uri: &str, route: Option<&str>) -> Message {
    let mut b = RequestBuilder::new(method, uri)
        .header("Via", ep.via(Transport::Udp))
        .header(
            "From",
            format!("<sip:alice@example.com>;tag={}", ep.new_tag()),
        )
        .header("To", "<sip:alice@example.com>")
        .header("Call-ID", ep.new_call_id())
        .header("CSeq", format!("1 {method}"));
    if let Some(r) = route {
        b = b.header("Route", r);
    }
    b.build().unwrap()
}

#[tokio::test]
async fn ua_with_only_an_aor_finds_its_registrar_by_dns() {
    let (registrar, mut seen) = server(false).await;
    let port = registrar.local_addr(Transport::Udp).unwrap().port();
    let mut z = Zone::new();
    z.naptr("example.com.", 10, 10, "SIP+D2U", "_sip._udp.example.com.")
        .srv(
            "_sip._udp.example.com.",
            0,
            0,
            port,
            "registrar.example.com.",
        )
        .addr("registrar.example.com.", "127.0.0.1");
    let dns = TestDns::start(z).await;
    let ua = client(&dns).await;
    let register = request(&ua, Method::Register, "sip:example.com", None);
    let mut txn = ua.request_to_uri(register).await.unwrap();
    let ok = timeout(WAIT, txn.final_response()).await.unwrap().unwrap();
    assert_eq!(ok.status(), Some(200));
    let (uri, transport) = seen.recv().await.unwrap();
    assert_eq!(
        (uri.as_str(), transport),
        ("sip:example.com", Transport::Udp)
    );
    assert_eq!(
        txn.target().map(|t| t.addr),
        Some(SocketAddr::from(([127, 0, 0, 1], port)))
    );
}

#[tokio::test]
async fn dead_first_target_fails_over_and_is_marked_down() {
    let (live, mut seen) = server(true).await;
    let live_port = live.local_addr(Transport::Tcp).unwrap().port();
    // A port nobody listens on: connecting is refused at once (a transport error).
    let dead_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut z = Zone::new();
    z.srv("_sip._tcp.fo.test.", 10, 0, dead_port, "dead.fo.test.")
        .srv("_sip._tcp.fo.test.", 20, 0, live_port, "live.fo.test.")
        .addr("dead.fo.test.", "127.0.0.1")
        .addr("live.fo.test.", "127.0.0.1");
    let dns = TestDns::start(z).await;
    let ua = client(&dns).await;
    let options = request(&ua, Method::Options, "sip:fo.test;transport=tcp", None);
    let mut txn = ua.request_to_uri(options).await.unwrap();
    let ok = timeout(WAIT, txn.final_response()).await.unwrap().unwrap();
    assert_eq!(ok.status(), Some(200));
    // The response's Via is the one of the second attempt: a TCP Via with a new branch.
    let via = ok.via().unwrap();
    assert_eq!(via.transport(), "TCP");
    assert_eq!(seen.recv().await.unwrap().1, Transport::Tcp);
    let live_addr = SocketAddr::from(([127, 0, 0, 1], live_port));
    assert_eq!(txn.target().map(|t| t.addr), Some(live_addr));
    // The dead target is down: the next resolution puts the live one first.
    let resolver = ua.resolver().unwrap();
    let order = resolver
        .resolve_str("sip:fo.test;transport=tcp")
        .await
        .unwrap();
    assert_eq!(order[0].addr, live_addr);
    assert!(resolver.is_down(&order[1]));
}

#[tokio::test]
async fn timer_f_on_a_silent_target_fails_over() {
    let (live, _seen) = server(false).await;
    let live_port = live.local_addr(Transport::Udp).unwrap().port();
    let silent = tokio::net::UdpSocket::bind(any()).await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let mut z = Zone::new();
    z.srv(
        "_sip._udp.slow.test.",
        10,
        0,
        silent_port,
        "silent.slow.test.",
    )
    .srv("_sip._udp.slow.test.", 20, 0, live_port, "live.slow.test.")
    .addr("silent.slow.test.", "127.0.0.1")
    .addr("live.slow.test.", "127.0.0.1");
    let dns = TestDns::start(z).await;
    let ua = client(&dns).await;
    let options = request(&ua, Method::Options, "sip:slow.test", None);
    let first_branch = options.via().unwrap().branch().unwrap().to_owned();
    let mut txn = ua.request_to_uri(options).await.unwrap();
    let first_key = txn.key();
    // Timer F is 64·T1 = 640 ms here, then the live target answers.
    let ok = timeout(WAIT, txn.final_response()).await.unwrap().unwrap();
    assert_eq!(ok.status(), Some(200));
    assert_ne!(
        txn.key(),
        first_key,
        "a new transaction for the next target"
    );
    assert_ne!(ok.via().unwrap().branch(), Some(first_branch.as_str()));
    assert_eq!(txn.target().map(|t| t.addr.port()), Some(live_port));
}

#[tokio::test]
async fn a_loose_route_decides_over_the_request_uri() {
    let (edge, mut seen) = server(false).await;
    let port = edge.local_addr(Transport::Udp).unwrap().port();
    let mut z = Zone::new();
    z.addr("edge.test.", "127.0.0.1");
    let dns = TestDns::start(z).await;
    let ua = client(&dns).await;
    let route = format!("<sip:edge.test:{port};lr>");
    let msg = request(&ua, Method::Message, "sip:bob@far.invalid", Some(&route));
    let mut txn = ua.request_to_uri(msg).await.unwrap();
    let ok = timeout(WAIT, txn.final_response()).await.unwrap().unwrap();
    assert_eq!(ok.status(), Some(200));
    assert_eq!(seen.recv().await.unwrap().0, "sip:bob@far.invalid");
}

#[tokio::test]
async fn a_name_without_records_is_an_error() {
    let dns = TestDns::start(Zone::new()).await;
    let ua = client(&dns).await;
    let msg = request(&ua, Method::Options, "sip:nothing.test", None);
    match ua.request_to_uri(msg).await {
        Err(EndpointError::Resolve(e)) => assert_eq!(e.response_status(), 503),
        other => panic!("{other:?}"),
    }
}

/// The UserAgent with `rfc3263(true)`: a MESSAGE to `sip:bob@example.net` reaches the server
/// that SRV names for the domain (on a port an address lookup of the host would not find).
#[tokio::test]
async fn user_agent_finds_its_peer_by_srv() {
    let (server_ep, mut seen) = server(false).await;
    let port = server_ep.local_addr(Transport::Udp).unwrap().port();
    let mut z = Zone::new();
    z.srv("_sip._udp.example.net.", 0, 0, port, "sip1.example.net.")
        .addr("sip1.example.net.", "127.0.0.1");
    let dns = TestDns::start(z).await;
    let ep = client(&dns).await;
    let ua = sip_stack::ua::UserAgent::builder(ep)
        .aor("sip:alice@example.net")
        .rfc3263(true)
        .build()
        .unwrap();
    let status = timeout(
        WAIT,
        ua.message(
            "sip:bob@example.net",
            "text/plain",
            bytes::Bytes::from_static(b"hi"),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(status, 200);
    let (uri, transport) = seen.recv().await.unwrap();
    assert_eq!(
        (uri.as_str(), transport),
        ("sip:bob@example.net", Transport::Udp)
    );
    assert!(dns.queries("_sip._udp.example.net.", hickory_proto::rr::RecordType::SRV) >= 1);
}
