//! RFC 5626 outbound registration against the crate's Registrar over TCP: the binding carries
//! the instance and reg-id, the transport's CRLF keep-alive pings the flow and gets pongs, and
//! when the registrar's side closes the flow the UA registers again on a new connection with
//! the same instance and reg-id.

use std::sync::Arc;
use std::time::Duration;

use sip_stack::core::Transport;
use sip_stack::endpoint::Endpoint;
use sip_stack::registrar::{serve, LocationStore, Registrar, RegistrarConfig, ServiceOptions};
use sip_stack::transport::TransportConfig;
use sip_stack::ua::{RegistrationState, UserAgent};

const LIMIT: Duration = Duration::from_secs(10);
const INSTANCE: &str = "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6";

#[tokio::test]
async fn outbound_registration_keeps_its_flow_alive_and_recovers() {
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
    let transport = TransportConfig {
        keepalive_interval: Some(Duration::from_millis(100)),
        ..TransportConfig::default()
    };
    let ep = Endpoint::builder()
        .udp("127.0.0.1:0".parse().unwrap())
        .tcp("127.0.0.1:0".parse().unwrap())
        .transport_config(transport)
        .build()
        .await
        .unwrap();
    let alice = UserAgent::builder(ep.clone())
        .aor("sip:alice@example.com")
        .transport(Transport::Tcp)
        .outbound(INSTANCE)
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
    let check_binding = || async {
        let bindings = registrar
            .store()
            .lookup("sip:alice@example.com", std::time::Instant::now())
            .await;
        assert_eq!(bindings.len(), 1);
        // The registrar keeps the value as sent, angle brackets included.
        assert_eq!(
            bindings[0].instance(),
            Some(format!("<{INSTANCE}>").as_str())
        );
        assert_eq!(bindings[0].reg_id(), Some(1));
    };
    check_binding().await;

    // The flow is kept alive: pings go, pongs come back (bounded wait on a counter).
    let mut pongs = 0;
    for _ in 0..100 {
        pongs = ep.transport().stats().pongs_received;
        if pongs >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(pongs >= 2, "pongs received: {pongs}");

    // The flow fails: registered again, on a new connection, same instance and reg-id.
    let flows = reg_ep.transport().flows();
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
    assert!(reg_ep
        .transport()
        .flows()
        .iter()
        .all(|f| !flows.contains(f)));
    check_binding().await;
    reg.close().await;
}
