//! TLS with a CA generated at run time: round trips on IPv4 and IPv6, wrong CA and wrong name
//! rejected, SNI, mutual TLS.

mod common;

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use common::*;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
use sip_core::{Message, Target, Transport};
use sip_transport::{
    SendError, TlsClientConfig, TlsServerConfig, TransportConfig, TransportEvent, TransportLayer,
};

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new() -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "test CA");
        let key = KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// A leaf for these DNS names and loopback addresses: (cert PEM, key PEM).
    fn leaf(&self, names: &[&str]) -> (String, String) {
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        for ip in ["127.0.0.1", "::1"] {
            p.subject_alt_names
                .push(SanType::IpAddress(ip.parse::<IpAddr>().unwrap()));
        }
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }
}

async fn tls_server(
    host: &str,
    cfg: TlsServerConfig,
) -> (
    sip_transport::TransportHandle,
    tokio::sync::mpsc::Receiver<TransportEvent>,
) {
    TransportLayer::builder()
        .tls(addr(&format!("{host}:0")), cfg)
        .build()
        .await
        .unwrap()
}

async fn tls_client(
    client: TlsClientConfig,
) -> (
    sip_transport::TransportHandle,
    tokio::sync::mpsc::Receiver<TransportEvent>,
) {
    TransportLayer::builder()
        .tls_client(client)
        .config(TransportConfig::default())
        .build()
        .await
        .unwrap()
}

fn invite() -> Message {
    Message::parse(
        request(
            "INVITE",
            "SIP/2.0/TLS client.invalid;branch=z9hG4bK1",
            "tls1",
            "",
        )
        .replace("sip:bob@example.com SIP", "sips:bob@example.com SIP")
        .into_bytes(),
    )
    .unwrap()
}

async fn round_trip(host: &str) {
    let ca = Ca::new();
    let (cert, key) = ca.leaf(&["sip.example.com"]);
    let server_cfg = TlsServerConfig::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
    let (b, mut b_rx) = tls_server(host, server_cfg).await;
    let b_addr = b.local_addr(Transport::Tls).unwrap();
    let (a, mut a_rx) =
        tls_client(TlsClientConfig::from_pem_roots(ca.pem().as_bytes()).unwrap()).await;

    let target = Target {
        transport: Transport::Tls,
        addr: b_addr,
        server_name: Some("sip.example.com".into()),
    };
    let a_flow = a.send_request(&target, &invite()).await.unwrap();
    assert_eq!(a_flow.transport, Transport::Tls);
    let (m, b_flow) = next_message(&mut b_rx).await;
    assert_eq!(b_flow.transport, Transport::Tls);
    assert_eq!(b_flow.remote, a_flow.local);
    let resp = m.response(200).build().unwrap();
    b.send_response(&resp, Some(b_flow)).await.unwrap();
    let (r, f) = next_message(&mut a_rx).await;
    assert_eq!((r.status(), f), (Some(200), a_flow));
    // Reused, and a target by IP address (no server name) verifies against the IP SAN.
    assert_eq!(a.send_request(&target, &invite()).await.unwrap(), a_flow);
    next_message(&mut b_rx).await;
    let (c, _c_rx) =
        tls_client(TlsClientConfig::from_pem_roots(ca.pem().as_bytes()).unwrap()).await;
    c.send(Target::new(Transport::Tls, b_addr), invite().to_bytes())
        .await
        .unwrap();
    next_message(&mut b_rx).await;
    assert_eq!(b.stats().tls.messages_in, 3);
}

#[tokio::test]
async fn tls_round_trip_ipv4() {
    round_trip("127.0.0.1").await;
}

#[tokio::test]
async fn tls_round_trip_ipv6() {
    if ipv6_available() {
        round_trip("[::1]").await;
    }
}

#[tokio::test]
async fn wrong_ca_and_wrong_name_are_rejected() {
    let ca = Ca::new();
    let (cert, key) = ca.leaf(&["sip.example.com"]);
    let (b, _b_rx) = tls_server(
        "127.0.0.1",
        TlsServerConfig::from_pem(cert.as_bytes(), key.as_bytes()).unwrap(),
    )
    .await;
    let b_addr = b.local_addr(Transport::Tls).unwrap();

    let other = Ca::new();
    let (a, _a_rx) =
        tls_client(TlsClientConfig::from_pem_roots(other.pem().as_bytes()).unwrap()).await;
    let t = Target {
        transport: Transport::Tls,
        addr: b_addr,
        server_name: Some("sip.example.com".into()),
    };
    assert!(matches!(
        a.send(&t, Bytes::from_static(b"\r\n\r\n")).await,
        Err(SendError::TlsHandshake { .. })
    ));

    let (a, _a_rx) =
        tls_client(TlsClientConfig::from_pem_roots(ca.pem().as_bytes()).unwrap()).await;
    let wrong = Target {
        server_name: Some("other.example.com".into()),
        ..t.clone()
    };
    assert!(matches!(
        a.send(&wrong, Bytes::from_static(b"\r\n\r\n")).await,
        Err(SendError::TlsHandshake { .. })
    ));
    let bad = Target {
        server_name: Some("not a name!".into()),
        ..t
    };
    assert!(matches!(
        a.send(&bad, Bytes::from_static(b"x")).await,
        Err(SendError::InvalidServerName(_))
    ));
    assert_eq!(a.stats().open_connections, 0);
}

#[tokio::test]
async fn sni_selects_the_certificate() {
    let ca = Ca::new();
    let provider = rustls::crypto::ring::default_provider();
    let mut resolver = rustls::server::ResolvesServerCertUsingSni::new();
    for name in ["a.example.com", "b.example.com"] {
        let (cert, key) = ca.leaf(&[name]);
        use rustls_pki_types::pem::PemObject;
        let certs = rustls_pki_types::CertificateDer::pem_slice_iter(cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
        let signing = provider.key_provider.load_private_key(key).unwrap();
        resolver
            .add(name, rustls::sign::CertifiedKey::new(certs, signing))
            .unwrap();
    }
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    let (b, mut b_rx) = tls_server("127.0.0.1", TlsServerConfig::from_rustls(Arc::new(cfg))).await;
    let b_addr = b.local_addr(Transport::Tls).unwrap();
    // Each name verifies only if the server picked that name's certificate from the SNI.
    let mut clients = Vec::new();
    for name in ["a.example.com", "b.example.com"] {
        let (a, _a_rx) =
            tls_client(TlsClientConfig::from_pem_roots(ca.pem().as_bytes()).unwrap()).await;
        let t = Target {
            transport: Transport::Tls,
            addr: b_addr,
            server_name: Some(name.into()),
        };
        a.send_request(&t, &invite()).await.unwrap();
        next_message(&mut b_rx).await;
        clients.push(a);
    }
}

#[tokio::test]
async fn mutual_tls() {
    let ca = Ca::new();
    let (cert, key) = ca.leaf(&["sip.example.com"]);
    let server = TlsServerConfig::from_pem_with_client_auth(
        cert.as_bytes(),
        key.as_bytes(),
        ca.pem().as_bytes(),
    )
    .unwrap();
    let (b, mut b_rx) = tls_server("127.0.0.1", server).await;
    let t = Target {
        transport: Transport::Tls,
        addr: b.local_addr(Transport::Tls).unwrap(),
        server_name: Some("sip.example.com".into()),
    };
    let (ccert, ckey) = ca.leaf(&["client.example.com"]);
    let with_cert = TlsClientConfig::from_pem_with_client_cert(
        ca.pem().as_bytes(),
        ccert.as_bytes(),
        ckey.as_bytes(),
    )
    .unwrap();
    let (a, _a_rx) = tls_client(with_cert).await;
    a.send_request(&t, &invite()).await.unwrap();
    assert_eq!(next_message(&mut b_rx).await.0.call_id(), Some("tls1"));

    // Without a client certificate the server refuses: the client's flow (if the TLS 1.3
    // handshake completed on its side) is closed by the server's alert.
    let (c, mut c_rx) =
        tls_client(TlsClientConfig::from_pem_roots(ca.pem().as_bytes()).unwrap()).await;
    match c.send_request(&t, &invite()).await {
        Err(_) => {}
        Ok(flow) => assert_eq!(next_close(&mut c_rx).await.0, flow),
    }
    // The server counts the failed handshake (polled, bounded).
    tokio::time::timeout(WAIT, async {
        while b.stats().refused_connections == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(b.stats().connections_opened, 1);
}

#[test]
fn bad_pem_is_a_typed_error() {
    assert!(matches!(
        TlsServerConfig::from_pem(b"", b""),
        Err(sip_transport::TlsConfigError::NoCertificate)
    ));
    let ca = Ca::new();
    let (cert, _) = ca.leaf(&["x.example"]);
    assert!(matches!(
        TlsServerConfig::from_pem(cert.as_bytes(), b"no key"),
        Err(sip_transport::TlsConfigError::NoPrivateKey)
    ));
}
