//! TCP: round trips, connection reuse, framing at every split, keep-alives, flow events,
//! timeouts, limits, malformed input.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use sip_core::framer::{Frame, Framer};
use sip_core::{Message, Target, Transport};
use sip_transport::{CloseReason, SendError, TransportConfig, TransportEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn round_trip_and_reuse(host: &str) {
    let bind = format!("{host}:0");
    let (a, mut a_rx) = layer(&[], &[&bind], TransportConfig::default()).await;
    let (b, mut b_rx) = layer(&[], &[&bind], TransportConfig::default()).await;
    let b_addr = b.local_addr(Transport::Tcp).unwrap();
    let req = request("INVITE", "SIP/2.0/TCP a.invalid;branch=z9hG4bK1", "t1", "");
    let msg = Message::parse(req.into_bytes()).unwrap();
    let target = Target::new(Transport::Tcp, b_addr);
    let a_flow = a.send_request(&target, &msg).await.unwrap();
    assert_eq!(a_flow.remote, b_addr);
    match next_event(&mut a_rx).await {
        TransportEvent::FlowOpened { flow, outbound } => assert!(outbound && flow == a_flow),
        other => panic!("{other:?}"),
    }

    let (got, b_flow) = next_message(&mut b_rx).await;
    assert_eq!((b_flow.local, b_flow.remote), (a_flow.remote, a_flow.local));
    assert_eq!(got.via().unwrap().received_addr(), Some(a_flow.local.ip()));

    // The response goes back on the connection the request came on.
    let resp = got.response(180).build().unwrap();
    assert_eq!(b.send_response(&resp, Some(b_flow)).await.unwrap(), b_flow);
    let (r, f) = next_message(&mut a_rx).await;
    assert_eq!((r.status(), f), (Some(180), a_flow));

    // A new request from B to A's address reuses the connection A opened.
    let bye = Message::parse(
        request("BYE", "SIP/2.0/TCP b.invalid;branch=z9hG4bK2", "t1", "").into_bytes(),
    )
    .unwrap();
    let sent = b
        .send_request(&Target::new(Transport::Tcp, a_flow.local), &bye)
        .await
        .unwrap();
    assert_eq!(sent, b_flow);
    let (m, f) = next_message(&mut a_rx).await;
    assert_eq!((m.method(), f), (Some(sip_core::Method::Bye), a_flow));

    // And a second request from A to B's target reuses it too.
    assert_eq!(a.send_request(&target, &msg).await.unwrap(), a_flow);
    next_message(&mut b_rx).await;
    assert_eq!(a.stats().connections_opened, 1);
    assert_eq!(b.stats().connections_opened, 1);
    assert_eq!(b.flows(), vec![b_flow]);

    // A closes: B hears the peer closed.
    assert!(a.close_flow(&a_flow));
    assert_eq!(next_close(&mut a_rx).await, (a_flow, CloseReason::Local));
    assert_eq!(
        next_close(&mut b_rx).await,
        (b_flow, CloseReason::PeerClosed)
    );
    assert!(matches!(
        b.send(b_flow, Bytes::from_static(b"x")).await,
        Err(SendError::FlowClosed(_))
    ));
    assert!(!b.is_open(&b_flow));
}

#[tokio::test]
async fn tcp_round_trip_and_reuse_ipv4() {
    round_trip_and_reuse("127.0.0.1").await;
}

#[tokio::test]
async fn tcp_round_trip_and_reuse_ipv6() {
    if ipv6_available() {
        round_trip_and_reuse("[::1]").await;
    }
}

async fn raw_client(
    cfg: TransportConfig,
) -> (
    sip_transport::TransportHandle,
    tokio::sync::mpsc::Receiver<TransportEvent>,
    TcpStream,
) {
    let (b, mut rx) = layer(&[], &["127.0.0.1:0"], cfg).await;
    let s = TcpStream::connect(b.local_addr(Transport::Tcp).unwrap())
        .await
        .unwrap();
    s.set_nodelay(true).unwrap();
    assert!(matches!(
        next_event(&mut rx).await,
        TransportEvent::FlowOpened {
            outbound: false,
            ..
        }
    ));
    (b, rx, s)
}

#[tokio::test]
async fn split_at_every_byte_and_coalesced() {
    let (_b, mut rx, mut s) = raw_client(TransportConfig::default()).await;
    let msg = request(
        "MESSAGE",
        "SIP/2.0/TCP 127.0.0.1;branch=z9hG4bK1",
        "split",
        "",
    );
    let bytes = msg.as_bytes();
    for cut in 0..=bytes.len() {
        s.write_all(&bytes[..cut]).await.unwrap();
        s.flush().await.unwrap();
        tokio::task::yield_now().await;
        s.write_all(&bytes[cut..]).await.unwrap();
        let (m, _) = next_message(&mut rx).await;
        assert_eq!(m.call_id(), Some("split"), "cut at {cut}");
    }
    // Three messages and a ping in one write: three messages and a pong.
    let mut all = Vec::new();
    for i in 0..3 {
        all.extend_from_slice(
            request(
                "MESSAGE",
                "SIP/2.0/TCP 127.0.0.1;branch=z9hG4bK2",
                &format!("c{i}"),
                "",
            )
            .as_bytes(),
        );
    }
    all.extend_from_slice(b"\r\n\r\n");
    s.write_all(&all).await.unwrap();
    for i in 0..3 {
        let (m, _) = next_message(&mut rx).await;
        assert_eq!(m.call_id(), Some(format!("c{i}").as_str()));
    }
    let mut f = Framer::default().with_pongs();
    assert_eq!(read_frame(&mut s, &mut f).await, Some(Frame::Pong));
}

#[tokio::test]
async fn ping_gets_pong() {
    let (b, _rx, mut s) = raw_client(TransportConfig::default()).await;
    s.write_all(b"\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 8];
    let n = tokio::time::timeout(WAIT, s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"\r\n");
    let st = b.stats();
    assert_eq!((st.pings_received, st.pongs_sent), (1, 1));
}

#[tokio::test]
async fn malformed_request_on_stream_gets_400_and_connection_stays() {
    let (_b, mut rx, mut s) = raw_client(TransportConfig::default()).await;
    let bad = request(
        "OPTIONS",
        "SIP/2.0/TCP 127.0.0.1;branch=z9hG4bK1",
        "bad",
        "",
    )
    .replace("CSeq: 1 OPTIONS", "CSeq: 1 BYE");
    s.write_all(bad.as_bytes()).await.unwrap();
    let mut f = Framer::default().with_pongs();
    match read_frame(&mut s, &mut f).await {
        Some(Frame::Message(m)) => assert_eq!(m.status(), Some(400)),
        other => panic!("{other:?}"),
    }
    s.write_all(
        request(
            "OPTIONS",
            "SIP/2.0/TCP 127.0.0.1;branch=z9hG4bK2",
            "good",
            "",
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(next_message(&mut rx).await.0.call_id(), Some("good"));
}

#[tokio::test]
async fn peer_close_is_reported() {
    let (_b, mut rx, s) = raw_client(TransportConfig::default()).await;
    let local = s.local_addr().unwrap();
    drop(s);
    let (flow, reason) = next_close(&mut rx).await;
    assert_eq!((flow.remote, reason), (local, CloseReason::PeerClosed));
}

#[tokio::test]
async fn idle_timeout_closes() {
    let cfg = TransportConfig {
        idle_timeout: Some(Duration::from_millis(150)),
        ..TransportConfig::default()
    };
    let (b, mut rx, mut s) = raw_client(cfg).await;
    assert_eq!(next_close(&mut rx).await.1, CloseReason::IdleTimeout);
    let mut buf = [0u8; 8];
    assert_eq!(
        tokio::time::timeout(WAIT, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap(),
        0
    );
    assert_eq!(b.stats().open_connections, 0);
}

#[tokio::test]
async fn slow_sender_is_cut_off() {
    let cfg = TransportConfig {
        message_timeout: Duration::from_millis(150),
        ..TransportConfig::default()
    };
    let (_b, mut rx, mut s) = raw_client(cfg).await;
    let msg = request(
        "OPTIONS",
        "SIP/2.0/TCP 127.0.0.1;branch=z9hG4bK1",
        "slow",
        "",
    );
    s.write_all(&msg.as_bytes()[..40]).await.unwrap();
    assert_eq!(next_close(&mut rx).await.1, CloseReason::MessageTimeout);
}

#[tokio::test]
async fn oversized_stream_message_closes_the_connection() {
    let cfg = TransportConfig {
        limits: sip_core::Limits {
            max_message_size: 2000,
            ..sip_core::Limits::default()
        },
        ..TransportConfig::default()
    };
    let (b, mut rx, mut s) = raw_client(cfg).await;
    let msg = request(
        "MESSAGE",
        "SIP/2.0/TCP 127.0.0.1;branch=z9hG4bK1",
        "big",
        "",
    )
    .replace("Content-Length: 0", "Content-Length: 100000");
    s.write_all(msg.as_bytes()).await.unwrap();
    let (_, reason) = next_close(&mut rx).await;
    assert!(
        matches!(
            reason,
            CloseReason::Protocol(sip_core::Error::MessageTooLarge { .. })
        ),
        "{reason:?}"
    );
    assert_eq!(b.stats().oversized, 1);
}

#[tokio::test]
async fn buffer_limit_closes_the_connection() {
    let cfg = TransportConfig {
        max_buffered_bytes: 1024,
        ..TransportConfig::default()
    };
    let (_b, mut rx, mut s) = raw_client(cfg).await;
    // A header section that never ends.
    let _ = s
        .write_all(format!("OPTIONS sip:a@b SIP/2.0\r\nX: {}", "a".repeat(4000)).as_bytes())
        .await;
    assert_eq!(next_close(&mut rx).await.1, CloseReason::BufferLimit);
}

#[tokio::test]
async fn connection_caps_refuse_the_excess_and_serve_the_rest() {
    for (total, per_ip) in [(100, 2), (2, 100)] {
        let cfg = TransportConfig {
            max_connections: total,
            max_connections_per_ip: per_ip,
            ..TransportConfig::default()
        };
        let (b, mut rx) = layer(&[], &["127.0.0.1:0"], cfg).await;
        let to = b.local_addr(Transport::Tcp).unwrap();
        let mut ok = Vec::new();
        for _ in 0..2 {
            ok.push(TcpStream::connect(to).await.unwrap());
            assert!(matches!(
                next_event(&mut rx).await,
                TransportEvent::FlowOpened { .. }
            ));
        }
        // The third is accepted by the kernel and closed at once by us.
        let mut third = TcpStream::connect(to).await.unwrap();
        let mut buf = [0u8; 8];
        let n = tokio::time::timeout(WAIT, third.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(n, 0);
        assert_eq!(b.stats().refused_connections, 1);
        for (i, s) in ok.iter_mut().enumerate() {
            let m = request(
                "OPTIONS",
                "SIP/2.0/TCP 127.0.0.1;branch=z9hG4bK1",
                &format!("k{i}"),
                "",
            );
            s.write_all(m.as_bytes()).await.unwrap();
            assert_eq!(
                next_message(&mut rx).await.0.call_id(),
                Some(format!("k{i}").as_str())
            );
        }
        // Once one closes, a new connection is accepted again.
        drop(ok.pop());
        next_close(&mut rx).await;
        let _again = TcpStream::connect(to).await.unwrap();
        assert!(matches!(
            next_event(&mut rx).await,
            TransportEvent::FlowOpened { .. }
        ));
    }
}

#[tokio::test]
async fn outbound_connection_limit_is_a_send_error() {
    let cfg = TransportConfig {
        max_outbound_connections: 0,
        ..TransportConfig::default()
    };
    let (a, _rx) = layer(&[], &[], cfg).await;
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let t = Target::new(Transport::Tcp, l.local_addr().unwrap());
    assert!(matches!(
        a.send(t, Bytes::from_static(b"x")).await,
        Err(SendError::ConnectionLimit(0))
    ));
    let closed = Target::new(Transport::Tcp, {
        let a = l.local_addr().unwrap();
        drop(l);
        a
    });
    let (a, _rx) = layer(&[], &[], TransportConfig::default()).await;
    assert!(matches!(
        a.send(closed, Bytes::from_static(b"x")).await,
        Err(SendError::Connect { .. })
    ));
}

/// Inbound and outbound connections are capped apart: with no room left for inbound ones
/// (an inbound flood), our own connects still go out.
#[tokio::test]
async fn a_full_inbound_table_does_not_block_outbound_connects() {
    let cfg = TransportConfig {
        max_connections: 0,
        ..TransportConfig::default()
    };
    let (a, _rx) = layer(&[], &[], cfg).await;
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let t = Target::new(Transport::Tcp, l.local_addr().unwrap());
    let flow = a.send(t, Bytes::from_static(b"\r\n\r\n")).await.unwrap();
    assert_eq!(flow.remote, l.local_addr().unwrap());
}

#[tokio::test]
async fn client_keepalive_pings_and_closes_when_pongs_stop() {
    let cfg = TransportConfig {
        keepalive_interval: Some(Duration::from_millis(50)),
        keepalive_timeout: Duration::from_millis(100),
        ..TransportConfig::default()
    };
    let (a, mut a_rx) = layer(&[], &[], cfg).await;
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = Target::new(Transport::Tcp, server.local_addr().unwrap());
    let flow = a
        .send(target, Bytes::from_static(b"\r\n\r\n"))
        .await
        .unwrap();
    let (mut s, _) = server.accept().await.unwrap();
    let mut f = Framer::default();
    // Our own first ping (sent as data above), then the layer's pings; answer two.
    for _ in 0..3 {
        assert_eq!(read_frame(&mut s, &mut f).await, Some(Frame::Ping));
        s.write_all(b"\r\n").await.unwrap();
    }
    // Stop answering: the flow is closed for keep-alive failure.
    let (cf, reason) = next_close(&mut a_rx).await;
    assert_eq!((cf, reason), (flow, CloseReason::KeepAliveTimeout));
    let st = a.stats();
    assert!(st.pings_sent >= 2 && st.pongs_received >= 2, "{st:?}");
    assert_eq!(st.keepalive_failures, 1);
}

#[tokio::test]
async fn shutdown_closes_flows() {
    let (b, mut rx, _s) = raw_client(TransportConfig::default()).await;
    b.shutdown();
    assert_eq!(next_close(&mut rx).await.1, CloseReason::Shutdown);
}
