//! UDP REGISTERs answered on the socket's receive task (issue 17, run to completion): the
//! [`InlineRegistrar`] answers them without the endpoint's driver or a worker, a retransmission
//! gets the same answer again, a store that has to wait moves the work to a task of its own,
//! and other requests still reach the endpoint. Loopback address 127.0.0.17 only.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sip_stack::core::{Flow, HeaderName, Message, Method, Transport};
use sip_stack::endpoint::{Endpoint, ServerEvent};
use sip_stack::registrar::location::{
    Binding, BindingChanges, Bindings, Lost, RegisterChange, RegisterError,
};
use sip_stack::registrar::{
    InlineRegistrar, LocationStore, MemoryLocationStore, Registrar, RegistrarConfig,
};
use tokio::net::UdpSocket;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);

fn register(to: SocketAddr, from: SocketAddr, call_id: &str, cseq: u32) -> Vec<u8> {
    format!(
        "REGISTER sip:{to} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from};branch=z9hG4bK{call_id}{cseq};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@example.com>;tag=a1\r\n\
         To: <sip:alice@example.com>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <sip:alice@{from}>;expires=600\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

async fn exchange(sock: &UdpSocket, to: SocketAddr, bytes: &[u8]) -> Message {
    sock.send_to(bytes, to).await.unwrap();
    let mut buf = vec![0u8; 65_536];
    let (n, _) = timeout(WAIT, sock.recv_from(&mut buf))
        .await
        .expect("no answer")
        .unwrap();
    Message::parse(buf[..n].to_vec()).unwrap()
}

async fn server<S: LocationStore>(
    registrar: Arc<Registrar<S>>,
) -> (Endpoint, Arc<InlineRegistrar<S>>) {
    let inline = Arc::new(InlineRegistrar::new(registrar));
    // Received datagrams packed into small shared slabs (several per slab, a new slab when
    // one is full), as the registrar example receives them.
    let endpoint = Endpoint::builder()
        .udp("127.0.0.17:0".parse().unwrap())
        .transport_config(sip_stack::transport::TransportConfig {
            udp_receive_slab: 1024,
            ..Default::default()
        })
        .stateless_methods(&[Method::Register])
        .inline(inline.clone())
        .build()
        .await
        .unwrap();
    (endpoint, inline)
}

#[tokio::test]
async fn register_is_answered_on_the_receive_task_and_again_for_a_retransmission() {
    let registrar = Arc::new(Registrar::open(RegistrarConfig::new("example.com")));
    let (endpoint, inline) = server(registrar.clone()).await;
    let to = endpoint.local_addr(Transport::Udp).unwrap();
    let sock = UdpSocket::bind("127.0.0.17:0").await.unwrap();
    let from = sock.local_addr().unwrap();

    let req = register(to, from, "inline-1", 1);
    let first = exchange(&sock, to, &req).await;
    assert_eq!(first.status(), Some(200));
    assert!(first
        .header(HeaderName::Contact)
        .unwrap()
        .contains(&format!("sip:alice@{from}")));
    assert!(first
        .header(HeaderName::Server)
        .unwrap()
        .starts_with("sip-stack/"));
    let via = first.header(HeaderName::Via).unwrap();
    assert!(via.contains(&format!("rport={}", from.port())), "{via}");
    assert_eq!(inline.answered(), 1);
    assert_eq!(inline.deferred(), 0);
    assert_eq!(endpoint.transport().stats().inline_taken, 1);
    assert_eq!(
        endpoint.counters().messages_in,
        0,
        "the driver never saw it"
    );

    // The same bytes again: without authentication no response cache is kept; the
    // retransmission is applied again (same Call-ID and CSeq: nothing changes) and answered
    // with the same bindings and the same To-tag (RFC 3261 §8.2.7).
    let again = exchange(&sock, to, &req).await;
    assert_eq!(again.status(), Some(200));
    assert_eq!(
        again.to().unwrap().tag(),
        first.to().unwrap().tag(),
        "a retransmission is answered as the original was"
    );
    let uri = |m: &Message| {
        m.contacts()
            .map(|c| c.unwrap().addr().unwrap().uri_str().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(uri(&again), uri(&first));
    assert_eq!(registrar.cached_responses(), 0);
    assert_eq!(inline.answered(), 2);
    let bindings = registrar
        .store()
        .lookup("sip:alice@example.com", Instant::now())
        .await;
    assert_eq!(bindings.len(), 1);
    endpoint.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn other_requests_still_reach_the_endpoint() {
    let registrar = Arc::new(Registrar::open(RegistrarConfig::new("example.com")));
    let (endpoint, inline) = server(registrar).await;
    let to = endpoint.local_addr(Transport::Udp).unwrap();
    let sock = UdpSocket::bind("127.0.0.17:0").await.unwrap();
    let from = sock.local_addr().unwrap();
    let options = format!(
        "OPTIONS sip:{to} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKopt1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=o\r\nTo: <sip:{to}>\r\n\
         Call-ID: opt-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    let answering = endpoint.clone();
    tokio::spawn(async move {
        if let Some(ServerEvent::Request(txn)) = answering.next_event().await {
            let r = txn.request().response(200).build().unwrap();
            txn.respond(r).await.unwrap();
        }
    });
    let r = exchange(&sock, to, options.as_bytes()).await;
    assert_eq!(r.status(), Some(200));
    assert_eq!(inline.answered(), 0);
    assert_eq!(endpoint.counters().messages_in, 1);
    endpoint.shutdown(Duration::from_millis(100)).await;
}

/// A store that has to wait once per REGISTER, as a networked one does.
struct Waiting(MemoryLocationStore);

impl LocationStore for Waiting {
    async fn lookup(&self, aor: &str, now: Instant) -> Vec<Binding> {
        self.0.lookup(aor, now).await
    }
    async fn register(
        &self,
        aor: &str,
        change: RegisterChange,
        now: Instant,
    ) -> Result<(Bindings, BindingChanges), RegisterError> {
        tokio::task::yield_now().await;
        self.0.register(aor, change, now).await
    }
    async fn sweep(&self, now: Instant) -> Vec<Lost> {
        self.0.sweep(now).await
    }
    async fn flow_closed(&self, flow: Flow) -> Vec<Lost> {
        self.0.flow_closed(flow).await
    }
    async fn set_offline(&self, aor: &str, flow: Flow, offline: bool) -> usize {
        self.0.set_offline(aor, flow, offline).await
    }
    async fn all(&self, now: Instant) -> Vec<(String, Binding)> {
        self.0.all(now).await
    }
    async fn counts(&self) -> (usize, usize) {
        self.0.counts().await
    }
}

#[tokio::test]
async fn a_store_that_waits_moves_the_work_to_a_task() {
    let config = RegistrarConfig::new("example.com");
    let store = Waiting(MemoryLocationStore::new(config.limits));
    let registrar = Arc::new(Registrar::with_store(config, store));
    let (endpoint, inline) = server(registrar.clone()).await;
    let to = endpoint.local_addr(Transport::Udp).unwrap();
    let sock = UdpSocket::bind("127.0.0.17:0").await.unwrap();
    let from = sock.local_addr().unwrap();
    for cseq in 1..=3 {
        let r = exchange(&sock, to, &register(to, from, "inline-wait", cseq)).await;
        assert_eq!(r.status(), Some(200));
        assert!(r.header(HeaderName::Server).is_some());
    }
    assert_eq!(inline.deferred(), 3);
    assert_eq!(registrar.counters().accepted, 3);
    endpoint.shutdown(Duration::from_millis(100)).await;
}
