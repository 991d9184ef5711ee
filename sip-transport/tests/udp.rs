//! UDP: round trips on IPv4 and IPv6, Via stamping on the wire, oversized datagrams,
//! SO_REUSEPORT groups, the UDP→TCP switch.

mod common;

use bytes::Bytes;
use common::*;
use sip_core::{Message, Target, Transport};
use sip_transport::{SendError, TransportConfig};

async fn round_trip(host: &str) {
    let bind = format!("{host}:0");
    let (a, mut a_rx) = layer(&[&bind], &[], TransportConfig::default()).await;
    let (b, mut b_rx) = layer(&[&bind], &[], TransportConfig::default()).await;
    let a_addr = a.local_addr(Transport::Udp).unwrap();
    let b_addr = b.local_addr(Transport::Udp).unwrap();
    // Sent-by names a host we are not: received= is stamped, rport filled.
    let req = request(
        "OPTIONS",
        "SIP/2.0/UDP client.invalid:5999;rport;branch=z9hG4bK1",
        "u1",
        "",
    );
    let msg = Message::parse(req.into_bytes()).unwrap();
    let sent = a
        .send_request(&Target::new(Transport::Udp, b_addr), &msg)
        .await
        .unwrap();
    assert_eq!((sent.local, sent.remote), (a_addr, b_addr));

    let (got, flow) = next_message(&mut b_rx).await;
    assert_eq!(flow.transport, Transport::Udp);
    assert_eq!((flow.local, flow.remote), (b_addr, a_addr));
    let via = got.via().unwrap();
    assert_eq!(via.received_addr(), Some(a_addr.ip()));
    assert_eq!(via.rport(), Some(Some(a_addr.port())));

    // The response goes to received:rport (not to client.invalid:5999).
    let resp = got.response(200).build().unwrap();
    assert_eq!(
        sip_transport::response_destination(&resp).unwrap().addr,
        a_addr
    );
    let back = b.send_response(&resp, Some(flow)).await.unwrap();
    assert_eq!(back, flow);
    let (r, rflow) = next_message(&mut a_rx).await;
    assert_eq!(r.status(), Some(200));
    assert_eq!(rflow.remote, b_addr);
    // Responses are not stamped.
    assert_eq!(r.via().unwrap().as_str(), via.as_str());
    let s = b.stats();
    assert_eq!((s.udp.messages_in, s.udp.messages_out), (1, 1));
}

#[tokio::test]
async fn udp_round_trip_ipv4() {
    round_trip("127.0.0.1").await;
}

#[tokio::test]
async fn udp_round_trip_ipv6() {
    if ipv6_available() {
        round_trip("[::1]").await;
    }
}

#[tokio::test]
async fn same_source_and_no_rport_is_not_stamped() {
    let (b, mut b_rx) = layer(&["127.0.0.1:0"], &[], TransportConfig::default()).await;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = sock.local_addr().unwrap();
    let via = format!("SIP/2.0/UDP {me};branch=z9hG4bK2");
    let req = request("MESSAGE", &via, "u2", "");
    sock.send_to(req.as_bytes(), b.local_addr(Transport::Udp).unwrap())
        .await
        .unwrap();
    let (got, _) = next_message(&mut b_rx).await;
    assert_eq!(got.via().unwrap().as_str(), via);
    assert!(!got.is_edited());
}

#[tokio::test]
async fn malformed_and_oversized_datagrams_are_answered() {
    let cfg = TransportConfig {
        limits: sip_core::Limits {
            max_message_size: 1000,
            ..sip_core::Limits::default()
        },
        ..TransportConfig::default()
    };
    let (b, mut b_rx) = layer(&["127.0.0.1:0"], &[], cfg).await;
    let to = b.local_addr(Transport::Udp).unwrap();
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = sock.local_addr().unwrap();
    let via = format!("SIP/2.0/UDP {me};branch=z9hG4bK3");
    let mut buf = vec![0u8; 65536];
    let cases = [
        (
            request(
                "OPTIONS",
                &via,
                "big",
                &format!("X-Pad: {}\r\n", "p".repeat(2000)),
            ),
            513,
        ),
        (
            request("OPTIONS", &via, "v", "").replace("SIP/2.0\r\n", "SIP/3.0\r\n"),
            505,
        ),
        (
            request("OPTIONS", &via, "cseq", "").replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE"),
            400,
        ),
    ];
    for (raw, status) in cases {
        sock.send_to(raw.as_bytes(), to).await.unwrap();
        let (n, _) = tokio::time::timeout(WAIT, sock.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let resp = Message::parse(Bytes::copy_from_slice(&buf[..n])).unwrap();
        assert_eq!(resp.status(), Some(status), "{raw}");
    }
    // Nothing was delivered; the next good request is.
    sock.send_to(request("OPTIONS", &via, "ok", "").as_bytes(), to)
        .await
        .unwrap();
    let (got, _) = next_message(&mut b_rx).await;
    assert_eq!(got.call_id(), Some("ok"));
    let s = b.stats();
    assert_eq!(
        (s.parse_failures, s.malformed_answered, s.oversized),
        (3, 3, 1)
    );
}

#[tokio::test]
async fn reuseport_sockets_all_deliver() {
    let cfg = TransportConfig {
        udp_sockets_per_addr: 4,
        ..TransportConfig::default()
    };
    let (b, mut b_rx) = layer(&["127.0.0.1:0"], &[], cfg).await;
    let to = b.local_addr(Transport::Udp).unwrap();
    let mut clients = Vec::new();
    for i in 0..64 {
        let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let via = format!("SIP/2.0/UDP {};branch=z9hG4bK{i}", s.local_addr().unwrap());
        s.send_to(
            request("OPTIONS", &via, &format!("c{i}"), "").as_bytes(),
            to,
        )
        .await
        .unwrap();
        clients.push(s);
    }
    let mut seen = std::collections::HashSet::new();
    for _ in 0..64 {
        let (m, flow) = next_message(&mut b_rx).await;
        assert_eq!(flow.local, to);
        seen.insert(m.call_id().unwrap().to_owned());
    }
    assert_eq!(seen.len(), 64);
    // Replies to each flow reach their client (whichever socket of the group sends).
    let (m, flow) = {
        let s = &clients[7];
        let via = format!("SIP/2.0/UDP {};branch=z9hG4bKx", s.local_addr().unwrap());
        s.send_to(request("OPTIONS", &via, "x", "").as_bytes(), to)
            .await
            .unwrap();
        next_message(&mut b_rx).await
    };
    b.send_response(&m.response(200).build().unwrap(), Some(flow))
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, from) = tokio::time::timeout(WAIT, clients[7].recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(from, to);
    assert!(buf[..n].starts_with(b"SIP/2.0 200"));
}

#[tokio::test]
async fn large_udp_request_switches_to_tcp() {
    // The peer listens on UDP and TCP on the same port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bind = format!("127.0.0.1:{port}");
    let (b, mut b_rx) = layer(&[&bind], &[&bind], TransportConfig::default()).await;
    let (a, _a_rx) = layer(&["127.0.0.1:0"], &[], TransportConfig::default()).await;
    let big = request(
        "MESSAGE",
        "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKbig",
        "big",
        &format!("X-Pad: {}\r\n", "p".repeat(1400)),
    );
    let msg = Message::parse(big.into_bytes()).unwrap();
    let target = Target::new(Transport::Udp, addr(&bind));
    let flow = a.send_request(&target, &msg).await.unwrap();
    assert_eq!(flow.transport, Transport::Tcp);
    let (got, bflow) = next_message(&mut b_rx).await;
    assert_eq!(bflow.transport, Transport::Tcp);
    assert_eq!(got.via().unwrap().transport(), "TCP");
    assert_eq!(got.via().unwrap().branch(), Some("z9hG4bKbig"));
    assert_eq!(a.stats().udp_to_tcp_switches, 1);
    // A small one stays on UDP.
    let small = Message::parse(
        request("OPTIONS", "SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKs", "s", "").into_bytes(),
    )
    .unwrap();
    assert_eq!(
        a.send_request(&target, &small).await.unwrap().transport,
        Transport::Udp
    );
    drop(b);
}

#[tokio::test]
async fn send_errors_are_typed() {
    let (a, _rx) = layer(&["127.0.0.1:0"], &[], TransportConfig::default()).await;
    let sips = Message::parse(
        request("OPTIONS", "SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1", "e", "")
            .replace("sip:bob@example.com SIP", "sips:bob@example.com SIP")
            .into_bytes(),
    )
    .unwrap();
    let t = Target::new(Transport::Udp, addr("127.0.0.1:9"));
    assert!(matches!(
        a.send_request(&t, &sips).await,
        Err(SendError::SipsRequiresTls(Transport::Udp))
    ));
    let t6 = Target::new(Transport::Udp, addr("[::1]:9"));
    assert!(matches!(
        a.send(t6, Bytes::from_static(b"x")).await,
        Err(SendError::NoTransport { .. })
    ));
    let tls = Target::new(Transport::Tls, addr("127.0.0.1:9"));
    assert!(matches!(
        a.send(tls, Bytes::from_static(b"x")).await,
        Err(SendError::TlsNotConfigured)
    ));
    let big = Bytes::from(vec![b'a'; 70_000]);
    assert!(matches!(
        a.send(&t, big).await,
        Err(SendError::TooLarge { .. })
    ));
    a.shutdown();
    assert!(matches!(
        a.send(t, Bytes::from_static(b"x")).await,
        Err(SendError::Shutdown)
    ));
}

/// Two layers (two workers) share one port with `udp_reuse_port`; each receives what the
/// kernel hands it, and a peer's datagrams always reach the same one.
#[tokio::test]
async fn workers_share_a_port_with_reuse_port() {
    let cfg = TransportConfig {
        udp_reuse_port: true,
        ..TransportConfig::default()
    };
    let (a, mut a_rx) = layer(&["127.0.0.1:0"], &[], cfg.clone()).await;
    let port = a.local_addr(Transport::Udp).unwrap();
    let (b, mut b_rx) = layer(&[&port.to_string()], &[], cfg).await;
    assert_eq!(b.local_addr(Transport::Udp), Some(port));
    let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let here = peer.local_addr().unwrap();
    for n in 0..3 {
        let m = request(
            "OPTIONS",
            &format!("SIP/2.0/UDP {here};branch=z9hG4bKrp{n}"),
            &format!("rp{n}"),
            "",
        );
        peer.send_to(m.as_bytes(), port).await.unwrap();
    }
    // All three reach one of the two layers (the kernel hashes by source address).
    let (mut to_a, mut to_b) = (0, 0);
    while to_a + to_b < 3 {
        tokio::select! {
            Some(_) = a_rx.recv() => to_a += 1,
            Some(_) = b_rx.recv() => to_b += 1,
            _ = tokio::time::sleep(WAIT) => panic!("datagrams lost"),
        }
    }
    assert!(
        to_a == 3 || to_b == 3,
        "split between workers: {to_a} and {to_b}"
    );
    drop((a, b));
}

/// Bursts sent before the layer reads: every datagram is read (several per `recvmmsg`), whole,
/// in order, whatever its size (up to 4 KB here, larger than an Ethernet MTU), into small
/// shared slabs. Bursts of 20 stay well within a default receive buffer.
#[tokio::test]
async fn bursts_are_read_whole_in_batches() {
    let cfg = TransportConfig {
        udp_receive_slab: 4096,
        ..TransportConfig::default()
    };
    let (b, mut b_rx) = layer(&["127.0.0.1:0"], &[], cfg).await;
    let to = b.local_addr(Transport::Udp).unwrap();
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = client.local_addr().unwrap();
    let pad_len = |i: usize| (i * 411) % 4000;
    const N: usize = 200;
    for burst in 0..N / 20 {
        for i in burst * 20..(burst + 1) * 20 {
            let req = request(
                "OPTIONS",
                &format!("SIP/2.0/UDP {me};branch=z9hG4bKburst{i}"),
                &format!("burst-{i}"),
                &format!("X-Pad: {}\r\n", "x".repeat(pad_len(i))),
            );
            client.send_to(req.as_bytes(), to).unwrap();
        }
        for i in burst * 20..(burst + 1) * 20 {
            let (msg, flow) = next_message(&mut b_rx).await;
            assert_eq!(msg.call_id(), Some(format!("burst-{i}").as_str()));
            let pad = msg.headers_named("X-Pad").next().map_or(0, |v| v.len());
            assert_eq!(pad, pad_len(i));
            assert_eq!(flow.remote, me);
        }
    }
    assert_eq!(b.stats().udp.messages_in, N as u64);
}

/// An inline handler that answers every request 200 through the transport (its sends go out
/// in `sendmmsg` batches) and lets responses pass. `Answer(true)` answers through
/// `enqueue_response_to` (the destination computed when the request's Via was stamped),
/// `Answer(false)` through `enqueue_response` (read from the response's Via).
struct Answer(bool);

impl sip_transport::InlineHandler for Answer {
    fn request(
        &self,
        request: Message,
        flow: sip_core::Flow,
        transport: &sip_transport::TransportHandle,
    ) -> Option<Message> {
        let data = request.response(200).build().ok()?.to_bytes();
        let sent = if self.0 {
            transport.enqueue_response_to(data, &request, Some(flow), None)
        } else {
            transport.enqueue_response(data, Some(flow), None)
        };
        sent.ok()?;
        None
    }
}

/// A burst read with one `recvmmsg` is answered by an inline handler: every answer reaches
/// its peer (two peers, interleaved), in the order of the requests, and is counted sent.
#[tokio::test]
async fn an_inline_handlers_answers_to_a_burst_all_arrive_in_order() {
    let (t, _rx) = sip_transport::TransportLayer::builder()
        .udp(addr("127.0.0.1:0"))
        .inline(std::sync::Arc::new(Answer(false)))
        .build()
        .await
        .unwrap();
    let server = t.local_addr(Transport::Udp).unwrap();
    let peers = [
        tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap(),
        tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap(),
    ];
    const N: usize = 90;
    // Sent before the receive loop runs again: it finds them ready, many per recvmmsg.
    for i in 0..N {
        let p = &peers[i % 2];
        let via = format!("SIP/2.0/UDP {};branch=z9hG4bKb{i}", p.local_addr().unwrap());
        let req = request("OPTIONS", &via, &format!("burst{i}"), "");
        p.send_to(req.as_bytes(), server).await.unwrap();
    }
    let mut buf = vec![0u8; 4096];
    for (k, p) in peers.iter().enumerate() {
        for i in (k..N).step_by(2) {
            let (n, from) =
                tokio::time::timeout(std::time::Duration::from_secs(5), p.recv_from(&mut buf))
                    .await
                    .expect("an answer for every request")
                    .unwrap();
            assert_eq!(from, server);
            let m = Message::parse(Bytes::copy_from_slice(&buf[..n])).unwrap();
            assert_eq!(m.status(), Some(200));
            assert_eq!(m.call_id().unwrap(), format!("burst{i}"), "in order");
        }
    }
    let s = t.stats();
    assert_eq!(s.udp.messages_in, N as u64);
    assert_eq!(s.udp.messages_out, N as u64);
}

/// Answers to requests whose Via names another address (as behind a NAT) reach the source
/// when the Via asks for rport (RFC 3581), and the Via's port at the source address without
/// it (RFC 3261 §18.2.2), as the stamped Via says.
#[tokio::test]
async fn an_inline_answer_to_a_request_goes_where_its_stamped_via_says() {
    let (t, _rx) = sip_transport::TransportLayer::builder()
        .udp(addr("127.0.0.1:0"))
        .inline(std::sync::Arc::new(Answer(true)))
        .build()
        .await
        .unwrap();
    let server = t.local_addr(Transport::Udp).unwrap();
    let nat = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let other = tokio::net::UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let other_port = other.local_addr().unwrap().port();
    // rport: back to the source, whatever the Via says.
    let via = "SIP/2.0/UDP 10.9.9.9:5999;rport;branch=z9hG4bKnat1";
    nat.send_to(request("OPTIONS", via, "nat1", "").as_bytes(), server)
        .await
        .unwrap();
    // No rport: to the source address (received), at the Via's port.
    let via = format!("SIP/2.0/UDP 10.9.9.9:{other_port};branch=z9hG4bKnat2");
    other
        .send_to(request("OPTIONS", &via, "nat2", "").as_bytes(), server)
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    for (sock, call_id) in [(&nat, "nat1"), (&other, "nat2")] {
        let (n, from) =
            tokio::time::timeout(std::time::Duration::from_secs(5), sock.recv_from(&mut buf))
                .await
                .expect("the answer arrives")
                .unwrap();
        assert_eq!(from, server);
        let m = Message::parse(Bytes::copy_from_slice(&buf[..n])).unwrap();
        assert_eq!((m.status(), m.call_id()), (Some(200), Some(call_id)));
        assert_eq!(
            m.via().unwrap().received(),
            Some(sock.local_addr().unwrap().ip().to_string().as_str())
        );
    }
}
