//! RFC 3263 against an in-process DNS server on loopback serving zones written here: NAPTR to
//! SRV to A, the SRV fallback, explicit ports and numeric hosts, SRV priorities and weights,
//! negative caching, targets marked down, and a nameserver that never answers.
#![cfg(feature = "dns")]

mod common;
#[path = "common/dns.rs"]
mod dns;

use std::net::SocketAddr;
use std::time::Duration;

use dns::{TestDns, Zone};
use hickory_proto::rr::RecordType;
use sip_core::{Target, Transport};
use sip_transport::{ResolveError, Resolver, ResolverConfig};

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn resolver(dns: &TestDns) -> Resolver {
    let mut cfg = ResolverConfig::with_nameserver(dns.addr);
    cfg.seed = Some(1);
    Resolver::new(cfg).unwrap()
}

fn example_zone() -> Zone {
    let mut z = Zone::new();
    z.naptr("example.com.", 10, 10, "SIP+D2T", "_sip._tcp.example.com.")
        .naptr("example.com.", 20, 10, "SIP+D2U", "_sip._udp.example.com.")
        .naptr("example.com.", 30, 10, "SIP+D2X", "_sip._x.example.com.")
        .srv("_sip._tcp.example.com.", 10, 1, 5070, "sip1.example.com.")
        .srv("_sip._udp.example.com.", 10, 1, 5080, "sip2.example.com.")
        .addr("sip1.example.com.", "127.0.0.10")
        .addr("sip2.example.com.", "127.0.0.11")
        .addr("sip2.example.com.", "::1")
        .addr("plain.example.com.", "127.0.0.12")
        .srv(
            "_sip._udp.srvonly.example.com.",
            5,
            1,
            5090,
            "sip1.example.com.",
        );
    z
}

#[tokio::test]
async fn naptr_then_srv_then_a_and_aaaa() {
    let dns = TestDns::start(example_zone()).await;
    let r = resolver(&dns);
    let got = r.resolve_str("sip:alice@example.com").await.unwrap();
    assert_eq!(
        got,
        vec![
            Target::new(Transport::Tcp, sa("127.0.0.10:5070")),
            Target::new(Transport::Udp, sa("127.0.0.11:5080")),
            Target::new(Transport::Udp, sa("[::1]:5080")),
        ]
    );
    // No NAPTR usable for sips: the SRV fallback (_sips._tcp) and then A/AAAA, none there.
    let e = r.resolve_str("sips:alice@example.com").await.unwrap_err();
    assert!(matches!(e, ResolveError::NotFound(_)), "{e:?}");
    assert_eq!(e.response_status(), 503);
}

#[tokio::test]
async fn srv_without_naptr_and_plain_a() {
    let dns = TestDns::start(example_zone()).await;
    let r = resolver(&dns);
    let got = r.resolve_str("sip:srvonly.example.com").await.unwrap();
    assert_eq!(
        got,
        vec![Target::new(Transport::Udp, sa("127.0.0.10:5090"))]
    );
    // Neither NAPTR nor SRV: A with UDP and 5060 (RFC 3263 §4.1, §4.2).
    let got = r.resolve_str("sip:plain.example.com").await.unwrap();
    assert_eq!(
        got,
        vec![Target::new(Transport::Udp, sa("127.0.0.12:5060"))]
    );
    assert_eq!(
        dns.queries("_sip._udp.plain.example.com.", RecordType::SRV),
        1
    );
}

#[tokio::test]
async fn transport_param_port_and_numeric_hosts_skip_steps() {
    let dns = TestDns::start(example_zone()).await;
    let r = resolver(&dns);
    // transport=tcp: no NAPTR, SRV for _sip._tcp.
    let got = r
        .resolve_str("sip:example.com;transport=tcp")
        .await
        .unwrap();
    assert_eq!(
        got,
        vec![Target::new(Transport::Tcp, sa("127.0.0.10:5070"))]
    );
    assert_eq!(dns.queries("example.com.", RecordType::NAPTR), 0);
    // An explicit port: A/AAAA only.
    let got = r.resolve_str("sip:plain.example.com:5099").await.unwrap();
    assert_eq!(
        got,
        vec![Target::new(Transport::Udp, sa("127.0.0.12:5099"))]
    );
    assert_eq!(
        dns.queries("_sip._udp.plain.example.com.", RecordType::SRV),
        0
    );
    // sips with a port: TLS, with the domain as the certificate name.
    let got = r.resolve_str("sips:plain.example.com:5061").await.unwrap();
    assert_eq!(got[0].transport, Transport::Tls);
    assert_eq!(got[0].server_name.as_deref(), Some("plain.example.com"));
    // Numeric: no DNS at all.
    let got = r.resolve_str("sip:127.0.0.99;transport=tcp").await.unwrap();
    assert_eq!(
        got,
        vec![Target::new(Transport::Tcp, sa("127.0.0.99:5060"))]
    );
    let got = r.resolve_str("sip:[::1]:5062").await.unwrap();
    assert_eq!(got, vec![Target::new(Transport::Udp, sa("[::1]:5062"))]);
    assert!(matches!(
        r.resolve_str("tel:+15551234").await,
        Err(ResolveError::NotSip(_))
    ));
}

#[tokio::test]
async fn srv_priority_then_weight() {
    let mut z = Zone::new();
    z.srv("_sip._udp.w.test.", 10, 90, 5060, "heavy.w.test.")
        .srv("_sip._udp.w.test.", 10, 10, 5060, "light.w.test.")
        .srv("_sip._udp.w.test.", 20, 100, 5060, "backup.w.test.")
        .addr("heavy.w.test.", "127.0.0.21")
        .addr("light.w.test.", "127.0.0.22")
        .addr("backup.w.test.", "127.0.0.23");
    let dns = TestDns::start(z).await;
    let r = resolver(&dns);
    let mut heavy_first = 0;
    for _ in 0..500 {
        let got = r.resolve_str("sip:w.test;transport=udp").await.unwrap();
        assert_eq!(got.len(), 3);
        // Priority 20 only after every priority 10 target.
        assert_eq!(got[2].addr, sa("127.0.0.23:5060"));
        if got[0].addr == sa("127.0.0.21:5060") {
            heavy_first += 1;
        }
    }
    // 90 of 101 selections expected (≈ 446 of 500); seeded, so exact each run.
    assert!((400..490).contains(&heavy_first), "{heavy_first}");
    // Answers came from the cache after the first resolution.
    assert_eq!(dns.queries("_sip._udp.w.test.", RecordType::SRV), 1);
}

#[tokio::test]
async fn negative_answers_are_cached() {
    let dns = TestDns::start(example_zone()).await;
    let r = resolver(&dns);
    for _ in 0..3 {
        let e = r.resolve_str("sip:nobody.example.com").await.unwrap_err();
        assert!(matches!(e, ResolveError::NotFound(_)), "{e:?}");
    }
    assert_eq!(dns.queries("nobody.example.com.", RecordType::NAPTR), 1);
    assert_eq!(
        dns.queries("_sip._udp.nobody.example.com.", RecordType::SRV),
        1
    );
    assert_eq!(dns.queries("nobody.example.com.", RecordType::A), 1);
}

#[tokio::test]
async fn a_target_marked_down_goes_last() {
    let dns = TestDns::start(example_zone()).await;
    let r = resolver(&dns);
    let first = r.resolve_str("sip:alice@example.com").await.unwrap();
    r.mark_down(&first[0]);
    assert!(r.is_down(&first[0]));
    let again = r.resolve_str("sip:alice@example.com").await.unwrap();
    assert_eq!(again.last(), Some(&first[0]));
    assert_eq!(again[0], first[1]);
}

#[tokio::test]
async fn sent_by_names_resolve_for_responses() {
    let dns = TestDns::start(example_zone()).await;
    let r = resolver(&dns);
    let got = r
        .resolve_sent_by(Transport::Udp, "plain.example.com", Some(5066))
        .await
        .unwrap();
    assert_eq!(
        got,
        vec![Target::new(Transport::Udp, sa("127.0.0.12:5066"))]
    );
    // No port: SRV for the Via's transport (RFC 3263 §5).
    let got = r
        .resolve_sent_by(Transport::Tcp, "example.com", None)
        .await
        .unwrap();
    assert_eq!(
        got,
        vec![Target::new(Transport::Tcp, sa("127.0.0.10:5070"))]
    );
}

#[tokio::test]
async fn a_silent_nameserver_is_a_timeout_error() {
    // A socket that never answers.
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut cfg = ResolverConfig::with_nameserver(silent.local_addr().unwrap());
    cfg.timeout = Duration::from_millis(200);
    cfg.attempts = 1;
    let r = Resolver::new(cfg).unwrap();
    let e = r.resolve_str("sip:example.com").await.unwrap_err();
    assert!(matches!(e, ResolveError::Timeout(_)), "{e:?}");
    assert_eq!(e.response_status(), 503);
    println!("silent nameserver: {e}");
}

#[tokio::test]
async fn a_response_to_a_sent_by_name_is_sent_to_its_address() {
    // RFC 3263 §5 / RFC 3261 §18.2.2: no `received`, a sent-by name: resolve it.
    let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = peer.local_addr().unwrap().port();
    let mut z = Zone::new();
    z.addr("client.example.com.", "127.0.0.1");
    let dns = TestDns::start(z).await;
    let (layer, _rx) = sip_transport::TransportLayer::builder()
        .udp(sa("127.0.0.1:0"))
        .resolver(resolver(&dns))
        .build()
        .await
        .unwrap();
    let raw = format!(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP client.example.com:{port};branch=z9hG4bK5\r\n\
         To: <sip:a@b>;tag=2\r\nFrom: <sip:a@b>;tag=1\r\nCall-ID: sb1\r\nCSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let resp = sip_core::Message::parse(raw.into_bytes()).unwrap();
    let flow = layer.send_response(&resp, None).await.unwrap();
    assert_eq!(flow.remote, sa(&format!("127.0.0.1:{port}")));
    let mut buf = [0u8; 2048];
    let (n, _) = tokio::time::timeout(common::WAIT, peer.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(buf[..n].starts_with(b"SIP/2.0 200 OK"));
    // A name that does not resolve is an error, not silence.
    let raw = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP nowhere.example.com;branch=z9hG4bK6\r\n\
               To: <sip:a@b>;tag=2\r\nFrom: <sip:a@b>;tag=1\r\nCall-ID: sb2\r\nCSeq: 1 OPTIONS\r\n\
               Content-Length: 0\r\n\r\n";
    let resp = sip_core::Message::parse(raw.as_bytes().to_vec()).unwrap();
    assert!(layer.send_response(&resp, None).await.is_err());
}
