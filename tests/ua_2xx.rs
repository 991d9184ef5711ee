//! The UAS core's 2xx retransmission (RFC 3261 §13.3.1.4) through a real Endpoint on loopback:
//! a raw UDP socket plays a UAC that does not ACK at first; the 2xx comes again at T1, 2·T1…
//! and stops once the ACK is sent; a BYE-style stop and the 64·T1 give-up are reported.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use sip_stack::core::Message;
use sip_stack::endpoint::{Endpoint, ServerEvent};
use sip_stack::ua::{AckOutcome, TwoXxRetransmitter};
use sip_transaction::Config;

/// Short for the 64·T1 give-up test; the timing test uses a longer one (slack for loaded
/// CI machines).
const T1: Duration = Duration::from_millis(40);
const T1_TIMING: Duration = Duration::from_millis(100);

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

/// Receives datagrams until `until`, returning the status codes and their arrival times.
fn collect(sock: &UdpSocket, until: Instant) -> Vec<(u16, Instant)> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let now = Instant::now();
        if now >= until {
            return out;
        }
        sock.set_read_timeout(Some(until - now)).unwrap();
        match sock.recv(&mut buf) {
            Ok(n) => {
                let msg = Message::parse(bytes::Bytes::copy_from_slice(&buf[..n])).unwrap();
                out.push((msg.status().unwrap_or(0), Instant::now()));
            }
            Err(_) => return out,
        }
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_xx_is_retransmitted_until_the_ack() {
    let (ep, retx) = server(T1_TIMING).await;
    const T1: Duration = T1_TIMING;
    let to = ep.local_addr(sip_stack::core::Transport::Udp).unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let from = sock.local_addr().unwrap();

    let serving = {
        let (ep, retx) = (ep.clone(), retx.clone());
        tokio::spawn(async move {
            // The request, then the ACK, both through next_event.
            let mut report = None;
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
                        report = Some(task.take().unwrap().await.unwrap());
                        break;
                    }
                    _ => {}
                }
            }
            report.unwrap()
        })
    };

    let start = Instant::now();
    sock.send_to(invite("c1", to, from).as_bytes(), to).unwrap();
    // No ACK for a while: 200 at 0, then T1, 3·T1, 7·T1 (intervals T1, 2·T1, 4·T1 = T2).
    let got = collect(&sock, start + T1 * 9);
    let oks: Vec<Duration> = got
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, t)| *t - start)
        .collect();
    assert!(
        oks.len() >= 4,
        "expected the 2xx and at least 3 retransmissions, got {oks:?}"
    );
    // The gaps grow: T1, 2·T1, 4·T1 (with scheduling slack).
    let gaps: Vec<Duration> = oks.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps[0] >= T1 / 2 && gaps[0] < T1 * 2, "{gaps:?}");
    assert!(gaps[1] >= T1 * 3 / 2 && gaps[1] < T1 * 3, "{gaps:?}");

    sock.send_to(ack("c1", to, from).as_bytes(), to).unwrap();
    let report = tokio::time::timeout(Duration::from_secs(5), serving)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.outcome, AckOutcome::Acked);
    assert!(report.retransmissions >= 3);
    assert_eq!(retx.pending(), 0);
    // No more 2xx after the ACK (one may have crossed it).
    let after = collect(&sock, Instant::now() + T1 * 10);
    assert!(
        after.iter().filter(|(s, _)| *s == 200).count() <= 1,
        "{after:?}"
    );
    ep.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_xx_gives_up_after_64_t1_or_when_stopped() {
    let (ep, retx) = server(T1).await;
    let to = ep.local_addr(sip_stack::core::Transport::Udp).unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let from = sock.local_addr().unwrap();

    // Stopped by the TU (a BYE came first).
    let serving = tokio::spawn(uas(ep.clone(), retx.clone(), true));
    sock.send_to(invite("c2", to, from).as_bytes(), to).unwrap();
    let report = tokio::time::timeout(Duration::from_secs(5), serving)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.outcome, AckOutcome::Stopped);

    // Never ACKed: gives up after 64·T1.
    let start = Instant::now();
    let serving = tokio::spawn(uas(ep.clone(), retx.clone(), false));
    sock.send_to(invite("c3", to, from).as_bytes(), to).unwrap();
    let report = tokio::time::timeout(Duration::from_secs(10), serving)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.outcome, AckOutcome::TimedOut);
    assert!(start.elapsed() >= T1 * 63, "{:?}", start.elapsed());
    // T1, 2T1, 4T1 then every 4T1 until 64T1: 1+2+4 = 7, then (64-7)/4 → 14 more, ~17.
    assert!(
        (14..=18).contains(&report.retransmissions),
        "{}",
        report.retransmissions
    );
    assert_eq!(retx.pending(), 0);
    ep.shutdown(Duration::from_millis(100)).await;
}
