//! Helpers shared by the integration tests: loopback layers, requests, bounded waits.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use sip_core::framer::{Frame, Framer};
use sip_transport::{TransportConfig, TransportEvent, TransportHandle, TransportLayer};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc::Receiver;

/// Every wait for an event is bounded by this.
pub const WAIT: Duration = Duration::from_secs(5);

/// Whether `::1` can be bound here; prints a note when it cannot.
pub fn ipv6_available() -> bool {
    let ok = std::net::UdpSocket::bind("[::1]:0").is_ok();
    if !ok {
        println!("note: ::1 is not available in this sandbox, IPv6 case skipped");
    }
    ok
}

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub fn request(method: &str, via: &str, call_id: &str, extra: &str) -> String {
    format!(
        "{method} sip:bob@example.com SIP/2.0\r\nVia: {via}\r\nTo: <sip:bob@example.com>\r\n\
         From: <sip:alice@example.com>;tag=1\r\nCall-ID: {call_id}\r\nCSeq: 1 {method}\r\n\
         Max-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
    )
}

pub async fn layer(
    udp: &[&str],
    tcp: &[&str],
    cfg: TransportConfig,
) -> (TransportHandle, Receiver<TransportEvent>) {
    let mut b = TransportLayer::builder().config(cfg);
    for a in udp {
        b = b.udp(addr(a));
    }
    for a in tcp {
        b = b.tcp(addr(a));
    }
    b.build().await.unwrap()
}

pub async fn next_event(rx: &mut Receiver<TransportEvent>) -> TransportEvent {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("no event in time")
        .expect("channel closed")
}

/// The next message, skipping flow-opened events.
pub async fn next_message(
    rx: &mut Receiver<TransportEvent>,
) -> (sip_core::Message, sip_core::Flow) {
    loop {
        match next_event(rx).await {
            TransportEvent::Message { msg, flow, .. } => return (msg, flow),
            TransportEvent::FlowOpened { .. } => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// The next close event, skipping others.
pub async fn next_close(
    rx: &mut Receiver<TransportEvent>,
) -> (sip_core::Flow, sip_transport::CloseReason) {
    loop {
        if let TransportEvent::FlowClosed { flow, reason } = next_event(rx).await {
            return (flow, reason);
        }
    }
}

/// Reads the next frame from a raw client connection.
pub async fn read_frame(s: &mut TcpStream, f: &mut Framer) -> Option<Frame> {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(fr) = f.next_frame().unwrap() {
                return Some(fr);
            }
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                return None;
            }
            f.push(&buf[..n]).unwrap();
        }
    })
    .await
    .expect("no frame in time")
}
