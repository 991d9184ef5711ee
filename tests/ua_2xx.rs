//! The UAS core's 2xx retransmission (RFC 3261 §13.3.1.4) through a real Endpoint on loopback:
//! a raw UDP socket plays a UAC that does not ACK at first; the 2xx comes again at T1, 2·T1…
//! and stops once the ACK is sent; a BYE-style stop and the 64·T1 give-up are reported.
//!
//! Time is paused: tokio's clock only moves when every task waits, so the instants below are
//! exact, whatever the machine's load.

use std::time::Duration;

use sip_stack::core::Message;
use sip_stack::endpoint::{Endpoint, ServerEvent};
use sip_stack::ua::{AckOutcome, TwoXxRetransmitter};
use sip_transaction::Config;
use tokio::net::UdpSocket;
use tokio::time::Instant;

const T1: Duration = Duration::from_millis(100);

async fn server(t1: Duration) -> (Endpoint, TwoXxRetransmitter) {
    let ep = Endpoint::builder()
        .transaction_config(Config::default().with_t1(t1))
        .udp("127.0.0.1:0".parse().unwrap())
        .build()
        .await
        .unwrap();
    (ep, TwoXxRetransmitter::new(t1, t1 * 4))
}

fn invite(call_id: &str, to: std::net::SocketAddr, from: std::net::SocketAddr) -> String {
    format!(
        "INVITE sip:uas@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK-{call_id}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:uac@{from}>;tag=f1\r\nTo: <sip:uas@{to}>\r\n\
         Call-ID: {call_id}\r\nCSeq: 7 INVITE\r\nContact: <sip:uac@{from}>\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn ack(call_id: &str, to: std::net::SocketAddr, from: std::net::SocketAddr) -> String {
    format!(
        "ACK sip:uas@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK-ack-{call_id}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:uac@{from}>;tag=f1\r\nTo: <sip:uas@{to}>;tag=t1\r\n\
         Call-ID: {call_id}\r\nCSeq: 7 ACK\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Receives datagrams until `until` (virtual time), returning the status codes and their
/// arrival offsets from `start`.
async fn collect(sock: &UdpSocket, start: Instant, until: Instant) -> Vec<(u16, Duration)> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout_at(until, sock.recv(&mut buf)).await {
        let msg = Message::parse(bytes::Bytes::copy_from_slice(&buf[..n])).unwrap();
        out.push((msg.status().unwrap_or(0), Instant::now() - start));
    }
    out
}

/// Answers every INVITE 200 through the retransmitter and feeds it the ACKs; returns the
/// first report.
async fn uas(
    ep: Endpoint,
    retx: TwoXxRetransmitter,
    stop_on_first: bool,
) -> sip_stack::ua::AckReport {
    while let Some(ev) = ep.next_event().await {
        match ev {
            ServerEvent::Request(txn) => {
                let ok = txn
                    .request()
                    .response(200)
                    .to_tag("t1")
                    .header("Contact", "<sip:uas@127.0.0.1>")
                    .build()
                    .unwrap();
                let call_id = txn.request().call_id().unwrap().to_owned();
                let p = retx.send(txn, ok).await.unwrap();
                if stop_on_first {
                    tokio::time::sleep(T1 * 4).await;
                    assert_eq!(retx.stop_call(&call_id), 1);
                }
                return p.outcome().await;
            }
            ServerEvent::Ack { request, .. } => {
                retx.ack(&request);
            }
            _ => {}
        }
    }
    panic!("endpoint ended");
}

#[tokio::test(start_paused = true)]
async fn two_xx_is_retransmitted_until_the_ack() {
    let (ep, retx) = server(T1).await;
    let to = ep.local_addr(sip_stack::core::Transport::Udp).unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let from = sock.local_addr().unwrap();

    let serving = {
        let (ep, retx) = (ep.clone(), retx.clone());
        tokio::spawn(async move {
            // The request, then the ACK, both through next_event.
            let mut task = None;
            while let Some(ev) = ep.next_event().await {
                match ev {
                    ServerEvent::Request(txn) => {
                        let ok = txn
                            .request()
                            .response(200)
                            .to_tag("t1")
                            .header("Contact", "<sip:uas@127.0.0.1>")
                            .build()
                            .unwrap();
                        let p = retx.send(txn, ok).await.unwrap();
                        task = Some(tokio::spawn(p.outcome()));
                    }
                    ServerEvent::Ack { request, .. } => {
                        assert!(retx.ack(&request), "the first ACK stops a pending 2xx");
                        return task.take().unwrap().await.unwrap();
                    }
                    _ => {}
                }
            }
            panic!("endpoint ended");
        })
    };

    let start = Instant::now();
    sock.send_to(invite("c1", to, from).as_bytes(), to)
        .await
        .unwrap();
    // No ACK for a while: 200 at 0, then T1, 3·T1, 7·T1, 11·T1 (intervals T1, 2·T1, then T2 =
    // 4·T1).
    let got = collect(&sock, start, start + T1 * 12).await;
    let oks: Vec<Duration> = got
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, t)| *t)
        .collect();
    assert_eq!(oks, [Duration::ZERO, T1, T1 * 3, T1 * 7, T1 * 11]);

    sock.send_to(ack("c1", to, from).as_bytes(), to)
        .await
        .unwrap();
    let report = tokio::time::timeout(Duration::from_secs(5), serving)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.outcome, AckOutcome::Acked);
    assert_eq!(report.retransmissions, 4);
    assert_eq!(retx.pending(), 0);
    // No more 2xx after the ACK.
    let after = collect(&sock, start, Instant::now() + T1 * 10).await;
    assert!(after.iter().all(|(s, _)| *s != 200), "{after:?}");
    ep.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test(start_paused = true)]
async fn two_xx_gives_up_after_64_t1_or_when_stopped() {
    let (ep, retx) = server(T1).await;
    let to = ep.local_addr(sip_stack::core::Transport::Udp).unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let from = sock.local_addr().unwrap();

    // Stopped by the TU (a BYE came first).
    let serving = tokio::spawn(uas(ep.clone(), retx.clone(), true));
    sock.send_to(invite("c2", to, from).as_bytes(), to)
        .await
        .unwrap();
    let report = tokio::time::timeout(Duration::from_secs(5), serving)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.outcome, AckOutcome::Stopped);

    // Never ACKed: gives up after 64·T1.
    let start = Instant::now();
    let serving = tokio::spawn(uas(ep.clone(), retx.clone(), false));
    sock.send_to(invite("c3", to, from).as_bytes(), to)
        .await
        .unwrap();
    let report = tokio::time::timeout(Duration::from_secs(10), serving)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.outcome, AckOutcome::TimedOut);
    assert_eq!(start.elapsed(), T1 * 64);
    // At T1, 3·T1, 7·T1, then every 4·T1 up to 63·T1: 3 + 14 = 17.
    assert_eq!(report.retransmissions, 17);
    assert_eq!(retx.pending(), 0);
    ep.shutdown(Duration::from_millis(100)).await;
}
