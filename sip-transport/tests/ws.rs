//! SIP over WebSocket (RFC 7118) on loopback: a tungstenite client registers a flow, sends one
//! message per frame and gets its response on the same flow; the upgrade without the `sip`
//! subprotocol is refused; a client closing its socket closes the flow; oversized frames close
//! the connection; the layer opens WS and WSS connections itself and reuses them.
#![cfg(feature = "ws")]

mod common;

use std::net::IpAddr;

use bytes::Bytes;
use common::{addr, next_close, next_event, next_message, WAIT};
use futures_util::{SinkExt, StreamExt};
use rcgen::{CertificateParams, KeyPair, SanType};
use sip_core::{Target, Transport};
use sip_transport::{
    CloseReason, TlsClientConfig, TlsServerConfig, TransportConfig, TransportEvent, TransportLayer,
};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::{client_async, WebSocketStream};

fn register(via_host: &str) -> String {
    format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/WS {via_host};branch=z9hG4bKws1\r\n\
         To: <sip:alice@example.com>\r\nFrom: <sip:alice@example.com>;tag=1\r\n\
         Call-ID: ws1\r\nCSeq: 1 REGISTER\r\nMax-Forwards: 70\r\n\
         Contact: <sip:x7@{via_host};transport=ws>\r\n\r\n"
    )
}

async fn ws_client(
    server: std::net::SocketAddr,
    protocol: Option<&str>,
) -> Result<WebSocketStream<TcpStream>, tokio_tungstenite::tungstenite::Error> {
    let mut req = format!("ws://{server}/").into_client_request().unwrap();
    if let Some(p) = protocol {
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_str(p).unwrap());
    }
    let tcp = TcpStream::connect(server).await.unwrap();
    client_async(req, tcp).await.map(|(ws, resp)| {
        assert_eq!(
            resp.headers()
                .get("Sec-WebSocket-Protocol")
                .map(|v| v.to_str().unwrap()),
            Some("sip")
        );
        ws
    })
}

#[tokio::test]
async fn register_over_ws_answered_on_the_flow_then_close_reported() {
    let (server, mut rx) = TransportLayer::builder()
        .ws(addr("127.0.0.1:0"))
        .build()
        .await
        .unwrap();
    let ws_addr = server.local_addr(Transport::Ws).unwrap();
    let mut client = ws_client(ws_addr, Some("foo, sip")).await.unwrap();
    client
        .send(Frame::text(register("df7jal23ls0d.invalid")))
        .await
        .unwrap();
    let (msg, flow) = next_message(&mut rx).await;
    assert_eq!(flow.transport, Transport::Ws);
    assert_eq!(msg.via().unwrap().transport(), "WS");
    // §18.2.1: received stamped with the source (the sent-by is a .invalid name).
    assert!(msg.via().unwrap().received().is_some());
    let ok = msg.response(200).build().unwrap();
    assert_eq!(server.send_response(&ok, Some(flow)).await.unwrap(), flow);
    let reply = tokio::time::timeout(WAIT, client.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match reply {
        Frame::Text(t) => assert!(t.as_str().starts_with("SIP/2.0 200")),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.stats().ws.messages_in, 1);
    client.close(None).await.unwrap();
    let (closed, reason) = next_close(&mut rx).await;
    assert_eq!(closed, flow);
    assert_eq!(reason, CloseReason::PeerClosed);
    assert!(!server.is_open(&flow));
}

#[tokio::test]
async fn upgrade_without_the_sip_subprotocol_is_refused() {
    let (server, _rx) = TransportLayer::builder()
        .ws(addr("127.0.0.1:0"))
        .build()
        .await
        .unwrap();
    let ws_addr = server.local_addr(Transport::Ws).unwrap();
    let err = ws_client(ws_addr, None).await.unwrap_err();
    assert!(err.to_string().contains("400"), "{err}");
    assert!(server.flows().is_empty());
}

#[tokio::test]
async fn a_bad_frame_is_dropped_an_oversized_one_closes() {
    let mut cfg = TransportConfig::default();
    cfg.limits.max_message_size = 2000;
    let (server, mut rx) = TransportLayer::builder()
        .ws(addr("127.0.0.1:0"))
        .config(cfg)
        .build()
        .await
        .unwrap();
    let ws_addr = server.local_addr(Transport::Ws).unwrap();
    let mut client = ws_client(ws_addr, Some("sip")).await.unwrap();
    client.send(Frame::text("not sip at all")).await.unwrap();
    client.send(Frame::text("\r\n\r\n")).await.unwrap();
    client
        .send(Frame::text(register("a.invalid")))
        .await
        .unwrap();
    let (msg, _) = next_message(&mut rx).await;
    assert_eq!(msg.call_id(), Some("ws1"));
    client
        .send(Frame::binary(Bytes::from(vec![b'x'; 5000])))
        .await
        .unwrap();
    let (_, reason) = next_close(&mut rx).await;
    assert_eq!(reason, CloseReason::BufferLimit);
    assert_eq!(server.stats().oversized, 1);
}

#[tokio::test]
async fn outbound_ws_is_opened_once_and_reused() {
    let (b, mut b_rx) = TransportLayer::builder()
        .ws(addr("127.0.0.1:0"))
        .build()
        .await
        .unwrap();
    let (a, mut a_rx) = TransportLayer::builder().build().await.unwrap();
    let target = Target::new(Transport::Ws, b.local_addr(Transport::Ws).unwrap());
    for i in 0..3 {
        let m = register("a.invalid").replace("Call-ID: ws1", &format!("Call-ID: out{i}"));
        a.send(target.clone(), Bytes::from(m)).await.unwrap();
    }
    let mut flows = Vec::new();
    for _ in 0..3 {
        let (_, flow) = next_message(&mut b_rx).await;
        flows.push(flow);
    }
    assert!(flows.iter().all(|f| *f == flows[0]));
    assert_eq!(a.flows().len(), 1);
    assert!(matches!(
        next_event(&mut a_rx).await,
        TransportEvent::FlowOpened { outbound: true, .. }
    ));
}

#[tokio::test]
async fn outbound_wss_with_a_verified_certificate() {
    let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    p.subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse::<IpAddr>().unwrap()));
    let key = KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    let server_cfg =
        TlsServerConfig::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap();
    let (b, mut b_rx) = TransportLayer::builder()
        .wss(addr("127.0.0.1:0"), server_cfg)
        .build()
        .await
        .unwrap();
    let client_cfg = TlsClientConfig::from_pem_roots(cert.pem().as_bytes()).unwrap();
    let (a, _a_rx) = TransportLayer::builder()
        .tls_client(client_cfg)
        .build()
        .await
        .unwrap();
    let wss = b.local_addr(Transport::Wss).unwrap();
    let target = Target {
        transport: Transport::Wss,
        addr: wss,
        server_name: Some("localhost".into()),
    };
    a.send(target, Bytes::from(register("a.invalid")))
        .await
        .unwrap();
    let (msg, flow) = next_message(&mut b_rx).await;
    assert_eq!(flow.transport, Transport::Wss);
    assert_eq!(msg.call_id(), Some("ws1"));
}

#[tokio::test]
async fn per_ip_cap_and_handshake_timeout() {
    let cfg = TransportConfig {
        max_connections_per_ip: 1,
        handshake_timeout: std::time::Duration::from_millis(200),
        ..TransportConfig::default()
    };
    let (server, mut rx) = TransportLayer::builder()
        .ws(addr("127.0.0.1:0"))
        .config(cfg)
        .build()
        .await
        .unwrap();
    let ws_addr = server.local_addr(Transport::Ws).unwrap();
    let _first = ws_client(ws_addr, Some("sip")).await.unwrap();
    assert!(matches!(
        next_event(&mut rx).await,
        TransportEvent::FlowOpened { .. }
    ));
    // The same IP again: refused before the upgrade.
    assert!(ws_client(ws_addr, Some("sip")).await.is_err());
    assert_eq!(server.stats().refused_connections, 1);
    drop(_first);
    next_close(&mut rx).await;
    // A connection that never sends its upgrade is closed after the handshake timeout.
    let mut silent = TcpStream::connect(ws_addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read(&mut silent, &mut buf))
        .await
        .expect("closed by the handshake timeout")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert_eq!(server.stats().refused_connections, 2);
}
