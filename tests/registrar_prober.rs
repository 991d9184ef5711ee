//! The registrar's keep-alive prober on loopback UDP (issue 11): a silent device goes offline
//! only after two consecutive failed probes, answering devices never do, not even when the
//! endpoint's transaction table is too small for all the probes of a round.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use sip_stack::core::{Flow, Message, Transport};
use sip_stack::endpoint::Endpoint;
use sip_stack::registrar::{
    serve, LocationStore, ProbeOptions, Registrar, RegistrarConfig, RegistrarEvent, ServiceOptions,
};
use sip_stack::transaction::Config;
use tokio::net::UdpSocket;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::timeout;

type Probes = Arc<Mutex<HashSet<String>>>;

/// A device that answers every OPTIONS with 200 (when `answer`); it notes the Call-ID of each
/// probe (a probe's retransmissions share it).
async fn device(answer: bool) -> (SocketAddr, Probes) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let probes: Probes = Arc::default();
    let seen = probes.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let Ok(req) = Message::parse(buf[..n].to_vec()) else {
                continue;
            };
            if let Some(c) = req.call_id() {
                seen.lock().unwrap().insert(c.to_owned());
            }
            if answer {
                if let Ok(resp) = req.response(200).build() {
                    let _ = sock.send_to(&resp.to_bytes(), from).await;
                }
            }
        }
    });
    (addr, probes)
}

async fn register(registrar: &Registrar, user: &str, device: SocketAddr, local: SocketAddr) {
    let req = Message::parse(
        format!(
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP {device};branch=z9hG4bK{user}\r\n\
             To: <sip:{user}@example.com>\r\nFrom: <sip:{user}@example.com>;tag=1\r\n\
             Call-ID: {user}\r\nCSeq: 1 REGISTER\r\nContact: <sip:{user}@{device}>\r\n\
             Content-Length: 0\r\n\r\n"
        )
        .into_bytes(),
    )
    .unwrap();
    let flow = Flow {
        transport: Transport::Udp,
        local,
        remote: device,
    };
    let resp = registrar
        .handle(&req, flow, Instant::now(), SystemTime::now())
        .await
        .unwrap();
    assert_eq!(resp.status(), Some(200));
}

async fn start(
    max_transactions: usize,
    interval: Duration,
) -> (Endpoint, Arc<Registrar>, SocketAddr) {
    // T1 = 10 ms: an unanswered probe ends in Timer F after 640 ms.
    let endpoint = Endpoint::builder()
        .transaction_config(
            Config::default()
                .with_t1(Duration::from_millis(10))
                .with_max_transactions(max_transactions),
        )
        .udp("127.0.0.1:0".parse().unwrap())
        .build()
        .await
        .unwrap();
    let local = endpoint.transport().local_addrs()[0].1;
    let registrar = Arc::new(Registrar::open(RegistrarConfig::new("example.com")));
    let options = ServiceOptions {
        probe: Some(ProbeOptions::every(interval)),
        ..ServiceOptions::default()
    };
    tokio::spawn(serve(endpoint.clone(), registrar.clone(), options));
    (endpoint, registrar, local)
}

#[tokio::test]
async fn silent_device_goes_offline_after_two_failures_answering_ones_never() {
    let (endpoint, registrar, local) = start(10_000, Duration::from_millis(400)).await;
    let mut events = registrar.events();
    let (alive, alive_probes) = device(true).await;
    let (silent, silent_probes) = device(false).await;
    register(&registrar, "alive", alive, local).await;
    register(&registrar, "silent", silent, local).await;
    let _ = events.recv().await;
    let _ = events.recv().await;
    let offline = timeout(Duration::from_secs(10), async {
        loop {
            match events.recv().await {
                Ok(RegistrarEvent::Offline { aor, .. }) => break aor,
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => panic!("closed"),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(offline, "sip:silent@example.com");
    // Two probes failed before that, not one.
    let probes = silent_probes.lock().unwrap().len();
    assert!(probes >= 2, "{probes}");
    assert!(alive_probes.lock().unwrap().len() >= 2);
    let bindings = registrar.store().all(Instant::now()).await;
    for (aor, b) in bindings {
        assert_eq!(b.offline, aor == "sip:silent@example.com", "{aor}");
    }
    endpoint.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn a_full_transaction_table_never_fails_healthy_bindings() {
    // Room for 2 transactions, 12 devices probed per round: most probes cannot be sent.
    let (endpoint, registrar, local) = start(2, Duration::from_millis(200)).await;
    let mut events = registrar.events();
    let mut devices = Vec::new();
    for i in 0..12 {
        let (addr, probes) = device(true).await;
        register(&registrar, &format!("cam{i}"), addr, local).await;
        devices.push(probes);
    }
    // Several rounds: refused probes say nothing, answered ones keep them online.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < deadline {
        match timeout(Duration::from_millis(100), events.recv()).await {
            Ok(Ok(RegistrarEvent::Offline { aor, .. })) => panic!("{aor} marked offline"),
            Ok(Err(RecvError::Closed)) => panic!("closed"),
            _ => {}
        }
    }
    let probed: usize = devices.iter().map(|p| p.lock().unwrap().len()).sum();
    assert!(probed > 0);
    // Most probes were refused by the endpoint (answered transactions stay for Timer K).
    let created = endpoint.counters().created[1];
    assert!(created < 12, "{created} probe transactions");
    assert!(registrar
        .store()
        .all(Instant::now())
        .await
        .iter()
        .all(|(_, b)| !b.offline));
    endpoint.shutdown(Duration::from_millis(100)).await;
}
