//! The Endpoint under the conditions of issue 10: peers that stop reading, a TU that falls
//! behind, CANCEL races, one To-tag per request, shutdown deadlines, responses whose connection
//! has closed, and a stream of separators. Each test waits only for events, with bounded
//! timeouts, or runs on paused time.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use sip_stack::core::framer::{Frame, Framer};
use sip_stack::core::{HeaderName, Message, Method, Target, Transport};
use sip_stack::endpoint::{CancelMode, Endpoint, ServerEvent};
use sip_stack::transport::{CloseReason, TransportConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn request(method: &str, via: &str, call_id: &str, to_tag: &str, extra: &str) -> String {
    let to_tag = if to_tag.is_empty() {
        String::new()
    } else {
        format!(";tag={to_tag}")
    };
    format!(
        "{method} sip:bob@127.0.0.1 SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n\
         To: <sip:bob@127.0.0.1>{to_tag}\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 {method}\r\n{extra}Content-Length: 0\r\n\r\n"
    )
}

async fn recv_msg(sock: &UdpSocket) -> Message {
    let mut buf = vec![0u8; 65_536];
    let n = timeout(WAIT, sock.recv(&mut buf)).await.unwrap().unwrap();
    Message::parse(Bytes::copy_from_slice(&buf[..n])).unwrap()
}

fn to_tag(m: &Message) -> String {
    m.to().unwrap().tag().unwrap_or_default().to_owned()
}

/// Answers every request 200 with a body of `body` bytes, as fast as events come; passes on
/// why each flow closed.
fn answer_everything(
    ep: Endpoint,
    body: usize,
) -> tokio::sync::mpsc::UnboundedReceiver<CloseReason> {
    let (closed_tx, closed) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(ev) = ep.next_event().await {
            if let ServerEvent::FlowClosed { reason, .. } = &ev {
                let _ = closed_tx.send(reason.clone());
            }
            if let ServerEvent::Request(txn) = ev {
                let ok = txn
                    .response(200)
                    .body("text/plain", vec![b'x'; body])
                    .build()
                    .unwrap();
                let _ = txn.respond(ok).await;
            }
        }
    });
    closed
}

/// Four TCP peers pipeline OPTIONS and never read the answers. Their write queues fill and
/// they are closed (QueueFull); a UDP client and a TCP client that reads are answered
/// throughout, none of them waiting for the stalled sockets (whose write timeout is long).
#[tokio::test]
async fn non_reading_peers_delay_no_one_and_are_closed_when_their_queue_fills() {
    let cfg = TransportConfig {
        write_queue_bytes: 128 * 1024,
        write_timeout: Duration::from_secs(3600),
        ..TransportConfig::default()
    };
    let server = Endpoint::builder()
        .udp(any())
        .tcp(any())
        .transport_config(cfg)
        .build()
        .await
        .unwrap();
    let tcp_addr = server.local_addr(Transport::Tcp).unwrap();
    let udp_addr = server.local_addr(Transport::Udp).unwrap();
    let mut closes = answer_everything(server.clone(), 32 * 1024);

    let mut stalled = Vec::new();
    for i in 0..4 {
        let s = TcpStream::connect(tcp_addr).await.unwrap();
        let (_r, w) = s.into_split();
        let here = w.local_addr().unwrap();
        stalled.push(tokio::spawn(async move {
            let mut w = w;
            // 1000 requests: their 32 KiB answers (32 MiB) are more than the socket buffers
            // and the write queue hold, so the queue fills.
            for n in 0..1000 {
                let via = format!("SIP/2.0/TCP {here};branch=z9hG4bKs{i}x{n}");
                let m = request("OPTIONS", &via, &format!("s{i}-{n}"), "", "");
                if w.write_all(m.as_bytes()).await.is_err() {
                    return (n, w);
                }
            }
            // Kept open (a FIN would close the flow as PeerClosed): returned to the test.
            (1000, w)
        }));
        // The read half is kept (dropped with the task's end) and never read.
        std::mem::forget(_r);
    }

    let udp = UdpSocket::bind(any()).await.unwrap();
    let me = udp.local_addr().unwrap();
    let mut answered = 0;
    let mut reader = TcpStream::connect(tcp_addr).await.unwrap();
    let reader_here = reader.local_addr().unwrap();
    let mut framer = Framer::default();
    let mut buf = vec![0u8; 65_536];
    for n in 0..40 {
        let via = format!("SIP/2.0/UDP {me};rport;branch=z9hG4bKu{n}");
        udp.send_to(
            request("OPTIONS", &via, &format!("u{n}"), "", "").as_bytes(),
            udp_addr,
        )
        .await
        .unwrap();
        let r = recv_msg(&udp).await;
        assert_eq!(r.status(), Some(200));
        let via = format!("SIP/2.0/TCP {reader_here};branch=z9hG4bKt{n}");
        reader
            .write_all(request("OPTIONS", &via, &format!("t{n}"), "", "").as_bytes())
            .await
            .unwrap();
        let got = loop {
            if let Some(Frame::Message(m)) = framer.next_frame().unwrap() {
                break m;
            }
            let k = timeout(WAIT, reader.read(&mut buf)).await.unwrap().unwrap();
            assert!(k > 0);
            framer.push(&buf[..k]).unwrap();
        };
        assert_eq!(got.status(), Some(200));
        answered += 1;
        tokio::task::yield_now().await;
    }
    assert_eq!(answered, 40);
    // Every stalled peer is closed by the server when its queue fills.
    for _ in 0..4 {
        let reason = timeout(WAIT, closes.recv()).await.unwrap().unwrap();
        assert_eq!(reason, CloseReason::QueueFull);
    }
    for s in stalled {
        timeout(WAIT, s).await.unwrap().unwrap();
    }
    assert!(server.transport().stats().queue_full_closes >= 4);
    server.shutdown(Duration::from_secs(1)).await;
}

/// A TU that reads nothing while a burst arrives: every ACK (of a 2xx: no transaction) and
/// every flow open/close event reaches it afterwards, none lost.
#[tokio::test]
async fn a_slow_tu_loses_no_ack_and_no_flow_event() {
    let server = Endpoint::builder()
        .udp(any())
        .tcp(any())
        .event_capacity(4)
        .build()
        .await
        .unwrap();
    let tcp_addr = server.local_addr(Transport::Tcp).unwrap();
    // Over TCP, so that the kernel drops nothing on the way (a UDP burst can overflow the
    // socket's receive buffer before the transport reads it).
    let mut burst = TcpStream::connect(tcp_addr).await.unwrap();
    let me = burst.local_addr().unwrap();
    const ACKS: usize = 200;
    let mut all = String::new();
    for n in 0..ACKS {
        let via = format!("SIP/2.0/TCP {me};branch=z9hG4bKack{n}");
        all.push_str(&request("ACK", &via, &format!("ack{n}"), "t", ""));
    }
    burst.write_all(all.as_bytes()).await.unwrap();
    const FLOWS: usize = 20;
    for _ in 0..FLOWS {
        let s = TcpStream::connect(tcp_addr).await.unwrap();
        drop(s);
    }
    let (mut acks, mut opened, mut closed) = (0, 0, 0);
    while acks < ACKS || opened < FLOWS + 1 || closed < FLOWS {
        let ev = timeout(WAIT, server.next_event()).await;
        let ev = ev.unwrap_or_else(|_| {
            panic!(
                "stuck at acks {acks} opened {opened} closed {closed}: {:?} {:?}",
                server.counters(),
                server.transport().stats()
            )
        });
        match ev {
            Some(ServerEvent::Ack { .. }) => acks += 1,
            Some(ServerEvent::FlowOpened(_)) => opened += 1,
            Some(ServerEvent::FlowClosed { .. }) => closed += 1,
            Some(other) => panic!("{other:?}"),
            None => panic!("endpoint ended"),
        }
    }
    // The burst's own connection opened too (and stays open).
    assert_eq!((acks, opened, closed), (ACKS, FLOWS + 1, FLOWS));
    let c = server.counters();
    assert!(
        c.tu_backlog_peak > 0,
        "the burst should have used the backlog"
    );
    assert_eq!(c.tu_backlog, 0);
    server.shutdown(Duration::from_secs(1)).await;
}

/// RFC 3261 §9.1: a CANCEL asked for before any provisional is held until one arrives; after
/// a final response, no CANCEL is sent at all.
#[tokio::test]
async fn cancel_waits_for_a_provisional_and_never_follows_a_final() {
    let client = Endpoint::builder().udp(any()).build().await.unwrap();
    let uas = UdpSocket::bind(any()).await.unwrap();
    let uas_addr = uas.local_addr().unwrap();
    let via = client.via(Transport::Udp);
    let invite = Message::parse(request("INVITE", &via, "c-cancel", "", "").into_bytes()).unwrap();
    let t = client
        .request(invite, Target::new(Transport::Udp, uas_addr))
        .await
        .unwrap();
    let got = recv_msg(&uas).await;
    assert_eq!(got.method(), Some(Method::Invite));
    t.cancel().await.unwrap();
    // The command has been handled: had a CANCEL been sent, it would be in our buffer now.
    let mut buf = vec![0u8; 65_536];
    while let Ok((n, _)) = uas.try_recv_from(&mut buf) {
        let m = Message::parse(Bytes::copy_from_slice(&buf[..n])).unwrap();
        assert_eq!(
            m.method(),
            Some(Method::Invite),
            "only INVITE retransmissions"
        );
    }
    let ringing = got.response(180).to_tag("r1").build().unwrap();
    uas.send_to(
        &ringing.to_bytes(),
        client.local_addr(Transport::Udp).unwrap(),
    )
    .await
    .unwrap();
    let cancel = loop {
        let m = recv_msg(&uas).await;
        if m.method() == Some(Method::Cancel) {
            break m;
        }
    };
    assert_eq!(cancel.call_id(), Some("c-cancel"));
    assert_eq!(cancel.cseq().unwrap().seq, 1);

    // A final response first: cancel() does nothing.
    let via = client.via(Transport::Udp);
    let invite = Message::parse(request("INVITE", &via, "c-final", "", "").into_bytes()).unwrap();
    let mut t = client
        .request(invite, Target::new(Transport::Udp, uas_addr))
        .await
        .unwrap();
    let got = loop {
        let m = recv_msg(&uas).await;
        if m.call_id() == Some("c-final") {
            break m;
        }
    };
    let busy = got.response(486).to_tag("b1").build().unwrap();
    uas.send_to(&busy.to_bytes(), client.local_addr(Transport::Udp).unwrap())
        .await
        .unwrap();
    assert_eq!(
        timeout(WAIT, t.final_response())
            .await
            .unwrap()
            .unwrap()
            .status(),
        Some(486)
    );
    t.cancel().await.unwrap();
    // The ACK of the 486 arrives; no CANCEL for this call, now or in the buffer.
    let ack = loop {
        let m = recv_msg(&uas).await;
        if m.call_id() == Some("c-final") {
            break m;
        }
    };
    assert_eq!(ack.method(), Some(Method::Ack));
    while let Ok((n, _)) = uas.try_recv_from(&mut buf) {
        let m = Message::parse(Bytes::copy_from_slice(&buf[..n])).unwrap();
        assert!(
            !(m.method() == Some(Method::Cancel) && m.call_id() == Some("c-final")),
            "CANCEL after a final response"
        );
    }
    client.shutdown(Duration::from_secs(1)).await;
}

/// One To-tag across 180 and 200 even when the TU builds each with a fresh random tag, and the
/// endpoint's own 487 uses the tag of the 180 that preceded it.
#[tokio::test]
async fn one_to_tag_across_180_200_and_487() {
    let server = Endpoint::builder().udp(any()).build().await.unwrap();
    let to = server.local_addr(Transport::Udp).unwrap();
    let uac = UdpSocket::bind(any()).await.unwrap();
    let me = uac.local_addr().unwrap();
    let srv = server.clone();
    tokio::spawn(async move {
        while let Some(ev) = srv.next_event().await {
            if let ServerEvent::Request(txn) = ev {
                let req = txn.request().clone();
                // Built with request().response(): each gets a random tag of its own.
                txn.respond(req.response(180).build().unwrap())
                    .await
                    .unwrap();
                if req.call_id() == Some("answered") {
                    let ok = req
                        .response(200)
                        .header("Contact", "<sip:bob@127.0.0.1>")
                        .build()
                        .unwrap();
                    txn.respond(ok).await.unwrap();
                } else {
                    // Left ringing for the CANCEL; the endpoint answers 487.
                    std::mem::forget(txn);
                }
            }
        }
    });
    let via = format!("SIP/2.0/UDP {me};branch=z9hG4bKtag1");
    uac.send_to(request("INVITE", &via, "answered", "", "").as_bytes(), to)
        .await
        .unwrap();
    let r180 = recv_msg(&uac).await;
    let r200 = recv_msg(&uac).await;
    assert_eq!((r180.status(), r200.status()), (Some(180), Some(200)));
    assert!(!to_tag(&r180).is_empty());
    assert_eq!(to_tag(&r180), to_tag(&r200));

    let via = format!("SIP/2.0/UDP {me};branch=z9hG4bKtag2");
    uac.send_to(request("INVITE", &via, "cancelled", "", "").as_bytes(), to)
        .await
        .unwrap();
    let r180 = recv_msg(&uac).await;
    assert_eq!(r180.status(), Some(180));
    uac.send_to(request("CANCEL", &via, "cancelled", "", "").as_bytes(), to)
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        let m = recv_msg(&uac).await;
        got.push((
            m.status(),
            m.cseq().unwrap().method.as_str().to_owned(),
            to_tag(&m),
        ));
    }
    let r487 = got.iter().find(|(s, ..)| *s == Some(487)).unwrap();
    assert_eq!(r487.1, "INVITE");
    assert_eq!(r487.2, to_tag(&r180));
    assert!(got.iter().any(|(s, m, _)| *s == Some(200) && m == "CANCEL"));
    server.shutdown(Duration::from_secs(1)).await;
}

/// In proxy mode the CANCEL is answered 200 but the INVITE is left to the TU.
#[tokio::test]
async fn proxy_cancel_mode_leaves_the_invite_to_the_tu() {
    let server = Endpoint::builder()
        .udp(any())
        .cancel_mode(CancelMode::Proxy)
        .build()
        .await
        .unwrap();
    let to = server.local_addr(Transport::Udp).unwrap();
    let uac = UdpSocket::bind(any()).await.unwrap();
    let me = uac.local_addr().unwrap();
    let via = format!("SIP/2.0/UDP {me};branch=z9hG4bKpx");
    uac.send_to(request("INVITE", &via, "px", "", "").as_bytes(), to)
        .await
        .unwrap();
    let txn = match timeout(WAIT, server.next_event()).await.unwrap() {
        Some(ServerEvent::Request(t)) => t,
        other => panic!("{other:?}"),
    };
    txn.respond(txn.response(180).build().unwrap())
        .await
        .unwrap();
    assert_eq!(recv_msg(&uac).await.status(), Some(180));
    uac.send_to(request("CANCEL", &via, "px", "", "").as_bytes(), to)
        .await
        .unwrap();
    let r = recv_msg(&uac).await;
    assert_eq!(
        (r.status(), r.cseq().unwrap().method),
        (Some(200), Method::Cancel)
    );
    match timeout(WAIT, server.next_event()).await.unwrap() {
        Some(ServerEvent::Cancelled { invite, .. }) => assert_eq!(Some(invite), txn.key()),
        other => panic!("{other:?}"),
    }
    // The TU (a proxy) forwards the branches' 487 itself, with the transaction's tag.
    txn.respond(txn.response(487).build().unwrap())
        .await
        .unwrap();
    let r = recv_msg(&uac).await;
    assert_eq!(r.status(), Some(487));
    server.shutdown(Duration::from_secs(1)).await;
}

/// A TU that drops a request without answering it: the client gets 500, not silence.
#[tokio::test]
async fn a_dropped_server_transaction_answers_500() {
    let server = Endpoint::builder().udp(any()).build().await.unwrap();
    let to = server.local_addr(Transport::Udp).unwrap();
    let uac = UdpSocket::bind(any()).await.unwrap();
    let me = uac.local_addr().unwrap();
    let via = format!("SIP/2.0/UDP {me};branch=z9hG4bKdrop");
    uac.send_to(request("OPTIONS", &via, "dropped", "", "").as_bytes(), to)
        .await
        .unwrap();
    match timeout(WAIT, server.next_event()).await.unwrap() {
        Some(ServerEvent::Request(txn)) => drop(txn),
        other => panic!("{other:?}"),
    }
    let r = recv_msg(&uac).await;
    assert_eq!(r.status(), Some(500));
    assert_eq!(server.counters().abandoned_500, 1);
    server.shutdown(Duration::from_secs(1)).await;
}

/// Shutdown with a live CANCEL server transaction, its 487'd INVITE and a request rejected
/// 503 while shutting down (each would linger 32 s in Timer J/H over UDP): all aborted at the
/// deadline, and `shutdown` returns then.
#[tokio::test(start_paused = true)]
async fn shutdown_returns_by_its_deadline() {
    let server = Endpoint::builder().udp(any()).build().await.unwrap();
    let to = server.local_addr(Transport::Udp).unwrap();
    let uac = UdpSocket::bind(any()).await.unwrap();
    let me = uac.local_addr().unwrap();
    let via = format!("SIP/2.0/UDP {me};branch=z9hG4bKsd");
    uac.send_to(request("INVITE", &via, "sd", "", "").as_bytes(), to)
        .await
        .unwrap();
    let txn = match timeout(WAIT, server.next_event()).await.unwrap() {
        Some(ServerEvent::Request(t)) => t,
        other => panic!("{other:?}"),
    };
    txn.respond(txn.response(180).build().unwrap())
        .await
        .unwrap();
    uac.send_to(request("CANCEL", &via, "sd", "", "").as_bytes(), to)
        .await
        .unwrap();
    assert!(matches!(
        timeout(WAIT, server.next_event()).await.unwrap(),
        Some(ServerEvent::Cancelled { .. })
    ));
    std::mem::forget(txn);
    let start = tokio::time::Instant::now();
    let stopping = {
        let s = server.clone();
        tokio::spawn(async move { s.shutdown(Duration::from_secs(1)).await })
    };
    tokio::task::yield_now().await;
    let via2 = format!("SIP/2.0/UDP {me};branch=z9hG4bKsd2");
    uac.send_to(request("OPTIONS", &via2, "late", "", "").as_bytes(), to)
        .await
        .unwrap();
    timeout(WAIT, stopping).await.unwrap().unwrap();
    let took = start.elapsed();
    assert!(
        took <= Duration::from_millis(1001),
        "shutdown took {took:?}"
    );
    // The late request was answered 503.
    let mut saw_503 = false;
    let mut buf = vec![0u8; 65_536];
    while let Ok((n, _)) = uac.try_recv_from(&mut buf) {
        let m = Message::parse(Bytes::copy_from_slice(&buf[..n])).unwrap();
        saw_503 |= m.status() == Some(503) && m.call_id() == Some("late");
    }
    assert!(saw_503);
    assert_eq!(server.counters().live, 0);
}

/// The request's connection closes before the TU answers: the response goes per §18.2.2, to
/// `received` and the sent-by port of the Via over a new connection.
#[tokio::test]
async fn a_response_whose_connection_closed_is_sent_per_its_via() {
    let server = Endpoint::builder().tcp(any()).build().await.unwrap();
    let to = server.local_addr(Transport::Tcp).unwrap();
    let back = TcpListener::bind(any()).await.unwrap();
    let back_port = back.local_addr().unwrap().port();
    let mut c = TcpStream::connect(to).await.unwrap();
    let via = format!("SIP/2.0/TCP 127.0.0.1:{back_port};branch=z9hG4bKgone");
    c.write_all(request("OPTIONS", &via, "gone", "", "").as_bytes())
        .await
        .unwrap();
    let txn = loop {
        match timeout(WAIT, server.next_event()).await.unwrap() {
            Some(ServerEvent::Request(t)) => break t,
            Some(_) => {}
            None => panic!("endpoint ended"),
        }
    };
    drop(c);
    loop {
        if let Some(ServerEvent::FlowClosed { .. }) =
            timeout(WAIT, server.next_event()).await.unwrap()
        {
            break;
        }
    }
    txn.respond(txn.response(200).build().unwrap())
        .await
        .unwrap();
    let (mut s, _) = timeout(WAIT, back.accept()).await.unwrap().unwrap();
    let mut f = Framer::default();
    let mut buf = vec![0u8; 8192];
    let m = loop {
        if let Some(Frame::Message(m)) = f.next_frame().unwrap() {
            break m;
        }
        let n = timeout(WAIT, s.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0);
        f.push(&buf[..n]).unwrap();
    };
    assert_eq!((m.status(), m.call_id()), (Some(200), Some("gone")));
    server.shutdown(Duration::from_secs(1)).await;
}

/// A mebibyte of LF before a request on a TCP connection (a debug build): consumed, and the
/// request is answered.
#[tokio::test]
async fn a_mebibyte_of_lf_on_a_connection_is_survived() {
    let server = Endpoint::builder().tcp(any()).build().await.unwrap();
    let to = server.local_addr(Transport::Tcp).unwrap();
    answer_everything(server.clone(), 0);
    let mut c = TcpStream::connect(to).await.unwrap();
    let here = c.local_addr().unwrap();
    let lf = vec![b'\n'; 1 << 20];
    c.write_all(&lf).await.unwrap();
    let via = format!("SIP/2.0/TCP {here};branch=z9hG4bKlf");
    c.write_all(request("OPTIONS", &via, "lf", "", "").as_bytes())
        .await
        .unwrap();
    let mut f = Framer::default();
    let mut buf = vec![0u8; 8192];
    let m = loop {
        if let Some(Frame::Message(m)) = f.next_frame().unwrap() {
            break m;
        }
        let n = timeout(WAIT, c.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "connection closed");
        f.push(&buf[..n]).unwrap();
    };
    assert_eq!(m.status(), Some(200));
    server.shutdown(Duration::from_secs(1)).await;
}

/// RFC 3261 §18.1.2: a response whose top Via is not ours is dropped and counted.
#[tokio::test]
async fn a_response_for_another_sent_by_is_dropped() {
    let ep = Endpoint::builder().udp(any()).build().await.unwrap();
    let to = ep.local_addr(Transport::Udp).unwrap();
    let s = UdpSocket::bind(any()).await.unwrap();
    let foreign = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.77:5060;branch=z9hG4bKx\r\n\
        To: <sip:a@b>;tag=1\r\nFrom: <sip:a@b>;tag=2\r\nCall-ID: f\r\nCSeq: 1 OPTIONS\r\n\
        Content-Length: 0\r\n\r\n";
    s.send_to(foreign.as_bytes(), to).await.unwrap();
    let ours = foreign.replace("192.0.2.77:5060", &to.to_string());
    s.send_to(ours.as_bytes(), to).await.unwrap();
    // Ours is a stray response (no transaction) and reaches the TU; the foreign one does not.
    match timeout(WAIT, ep.next_event()).await.unwrap() {
        Some(ServerEvent::StrayResponse { response, .. }) => {
            assert!(response
                .header(HeaderName::Via)
                .unwrap()
                .contains(&to.to_string()));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(ep.counters().foreign_responses_dropped, 1);
    ep.shutdown(Duration::from_secs(1)).await;
}

/// The ACK of a 2xx and a BYE sent right after it to a new TCP peer travel one connection,
/// ACK first.
#[tokio::test]
async fn ack_then_bye_to_one_peer_keep_their_order_on_one_connection() {
    let ep = Endpoint::builder()
        .udp(any())
        .tcp(any())
        .build()
        .await
        .unwrap();
    let peer = TcpListener::bind(any()).await.unwrap();
    let target = Target::new(Transport::Tcp, peer.local_addr().unwrap());
    let via = ep.via(Transport::Tcp);
    let ack = Message::parse(request("ACK", &via, "order", "t", "").into_bytes()).unwrap();
    ep.send_stateless(
        ack,
        sip_stack::endpoint::Destination::Target(target.clone()),
    )
    .await
    .unwrap();
    let via = ep.via(Transport::Tcp);
    let bye = Message::parse(request("BYE", &via, "order", "t", "").into_bytes()).unwrap();
    let _t = ep.request(bye, target).await.unwrap();
    let (mut s, _) = timeout(WAIT, peer.accept()).await.unwrap().unwrap();
    let mut f = Framer::default();
    let mut buf = vec![0u8; 8192];
    let mut methods = Vec::new();
    while methods.len() < 2 {
        while let Some(Frame::Message(m)) = f.next_frame().unwrap() {
            methods.push(m.method().unwrap().as_str().to_owned());
        }
        if methods.len() >= 2 {
            break;
        }
        let n = timeout(WAIT, s.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0);
        f.push(&buf[..n]).unwrap();
    }
    assert_eq!(methods, ["ACK", "BYE"]);
    let second = timeout(Duration::from_millis(100), peer.accept()).await;
    assert!(second.is_err(), "a second connection was opened");
    ep.shutdown(Duration::from_millis(100)).await;
}

/// A server transaction's responses (100 Trying from the layer, then the TU's answers, then
/// their retransmissions) go where the request's stamped Via says (RFC 3261 §18.2.2, RFC
/// 3581): with rport to the source, whatever sent-by names; without it to the source address
/// at the sent-by port.
#[tokio::test]
async fn server_transaction_responses_go_where_the_stamped_via_says() {
    let server = Endpoint::builder().udp(any()).build().await.unwrap();
    let to = server.local_addr(Transport::Udp).unwrap();
    let nat = UdpSocket::bind(any()).await.unwrap();
    let other = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let other_port = other.local_addr().unwrap().port();
    let ep = server.clone();
    tokio::spawn(async move {
        while let Some(ev) = ep.next_event().await {
            if let ServerEvent::Request(txn) = ev {
                let r = txn.request().response(486).build().unwrap();
                let _ = txn.respond(r).await;
            }
        }
    });
    let via = "SIP/2.0/UDP 10.9.9.9:5999;rport;branch=z9hG4bKst1";
    nat.send_to(request("INVITE", via, "st1", "", "").as_bytes(), to)
        .await
        .unwrap();
    let via = format!("SIP/2.0/UDP 10.9.9.9:{other_port};branch=z9hG4bKst2");
    other
        .send_to(request("INVITE", &via, "st2", "", "").as_bytes(), to)
        .await
        .unwrap();
    for (sock, call_id) in [(&nat, "st1"), (&other, "st2")] {
        // 486 (perhaps after a 100), then its retransmission (no ACK is sent): all here.
        let mut finals = 0;
        while finals < 2 {
            let m = recv_msg(sock).await;
            assert_eq!(m.call_id(), Some(call_id));
            if m.status() == Some(486) {
                finals += 1;
            }
        }
    }
    server.shutdown(Duration::from_millis(100)).await;
}
