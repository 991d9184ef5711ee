//! Per-connection write queues: senders never wait for a peer, a peer that does not read is
//! closed when its queue fills, messages to one peer keep their order, and first sends to a new
//! peer share one connection.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use sip_core::framer::{Frame, Framer};
use sip_core::{Target, Transport};
use sip_transport::{CloseReason, SendError, TransportConfig, TransportEvent};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, UdpSocket};

fn options(call_id: &str) -> Bytes {
    Bytes::from(request(
        "OPTIONS",
        "SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bKq",
        call_id,
        "",
    ))
}

/// A peer accepts our connection and never reads. Enqueueing never waits: the queue fills,
/// the flow is closed with `QueueFull`, and meanwhile UDP traffic through the same layer is
/// not held up at all.
#[tokio::test]
async fn a_peer_that_does_not_read_is_closed_when_its_queue_fills() {
    let cfg = TransportConfig {
        write_queue_bytes: 64 * 1024,
        ..TransportConfig::default()
    };
    let (a, mut rx) = layer(&["127.0.0.1:0"], &[], cfg).await;
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = Target::new(Transport::Tcp, silent.local_addr().unwrap());
    let echo = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();

    let chunk = Bytes::from(vec![b'x'; 16 * 1024]);
    let mut refused = None;
    let mut buf = [0u8; 64];
    for i in 0..20_000 {
        match a.enqueue(target.clone(), chunk.clone(), Some(i)) {
            Ok(_) => {}
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
        if i % 64 == 0 {
            // Other peers are served at once while this one stalls.
            a.enqueue(
                Target::new(Transport::Udp, echo_addr),
                Bytes::from_static(b"ping"),
                None,
            )
            .unwrap();
            let n = tokio::time::timeout(WAIT, echo.recv(&mut buf))
                .await
                .expect("UDP held up behind a stalled TCP peer")
                .unwrap();
            assert_eq!(&buf[..n], b"ping");
        }
        tokio::task::yield_now().await;
    }
    let (_held, _) = silent.accept().await.unwrap();
    assert!(
        matches!(
            refused,
            Some(SendError::QueueFull(_)) | Some(SendError::FlowClosed(_))
        ),
        "{refused:?}"
    );
    // The flow is reported closed for that reason; messages still queued are reported lost
    // by their tags.
    let mut failed = 0;
    loop {
        match next_event(&mut rx).await {
            TransportEvent::FlowClosed { reason, .. } => {
                assert_eq!(reason, CloseReason::QueueFull);
                break;
            }
            TransportEvent::SendFailed { .. } => failed += 1,
            _ => {}
        }
    }
    assert!(failed > 0);
    assert_eq!(a.stats().queue_full_closes, 1);
}

/// Two messages sent to a peer we have no connection to yet, back to back: one connection
/// carries both, in order.
#[tokio::test]
async fn first_sends_to_a_new_peer_share_one_connection_in_order() {
    let (a, _rx) = layer(&[], &[], TransportConfig::default()).await;
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = Target::new(Transport::Tcp, server.local_addr().unwrap());
    for id in ["first", "second", "third"] {
        assert_eq!(a.enqueue(target.clone(), options(id), None).unwrap(), None);
    }
    let (mut s, _) = server.accept().await.unwrap();
    let mut f = Framer::default();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 8192];
    while got.len() < 3 {
        let n = tokio::time::timeout(WAIT, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        f.push(&buf[..n]).unwrap();
        while let Some(Frame::Message(m)) = f.next_frame().unwrap() {
            got.push(m.call_id().unwrap().to_owned());
        }
    }
    assert_eq!(got, ["first", "second", "third"]);
    // No second connection was opened.
    let second = tokio::time::timeout(Duration::from_millis(100), server.accept()).await;
    assert!(second.is_err(), "a second connection was opened");
    assert_eq!(a.flows().len(), 1);
}

/// A connection that cannot be opened reports every message queued for it, by tag.
#[tokio::test]
async fn messages_queued_for_a_failed_connect_are_reported_by_tag() {
    let (a, mut rx) = layer(&[], &[], TransportConfig::default()).await;
    let gone = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let target = Target::new(Transport::Tcp, gone);
    a.enqueue(target.clone(), options("a"), Some(7)).unwrap();
    a.enqueue(target, options("b"), Some(8)).unwrap();
    let mut tags = Vec::new();
    while tags.len() < 2 {
        if let TransportEvent::SendFailed { tag, error } = next_event(&mut rx).await {
            assert!(matches!(error, SendError::Connect { .. }), "{error:?}");
            tags.push(tag);
        }
    }
    assert_eq!(tags, [7, 8]);
}
