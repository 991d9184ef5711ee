//! The dispatcher on loopback sockets: two plain transport layers play the nodes.

use super::*;

async fn layer() -> (TransportHandle, mpsc::Receiver<TransportEvent>, SocketAddr) {
    let (h, rx) = TransportLayer::builder()
        .udp("127.0.0.1:0".parse().unwrap())
        .build()
        .await
        .unwrap();
    let a = h.local_addr(Transport::Udp).unwrap();
    (h, rx, a)
}

async fn next_message(rx: &mut mpsc::Receiver<TransportEvent>) -> (Message, Flow) {
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("a message within 5 s")
            .expect("layer open");
        if let TransportEvent::Message { msg, flow } = ev {
            return (msg, flow);
        }
    }
}

/// The next request that is not a probe (probes are answered with the load given).
async fn next_request(
    h: &TransportHandle,
    rx: &mut mpsc::Receiver<TransportEvent>,
    load: u64,
) -> (Message, Flow) {
    loop {
        let (m, f) = next_message(rx).await;
        if m.call_id().is_some_and(|c| c.starts_with("dsp.")) {
            let ok = m
                .response(200)
                .header(LOAD_HEADER, load.to_string())
                .build()
                .unwrap();
            h.send_response(&ok, Some(f)).await.unwrap();
            continue;
        }
        return (m, f);
    }
}

fn request(method: &str, call_id: &str, me: SocketAddr) -> Bytes {
    Bytes::from(format!(
        "{method} sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP {me};rport;branch=z9hG4bK{call_id}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a\r\nTo: <sip:bob@example.com>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 {method}\r\nContact: <sip:alice@{me}>\r\nContent-Length: 0\r\n\r\n"
    ))
}

#[tokio::test]
async fn dispatches_by_method_and_returns_responses_by_via() {
    let (reg, mut reg_rx, reg_addr) = layer().await;
    let (proxy, mut proxy_rx, proxy_addr) = layer().await;
    let (client, mut client_rx, client_addr) = layer().await;
    let config = DispatcherConfig {
        udp: vec!["127.0.0.1:0".parse().unwrap()],
        probe_interval: Duration::from_millis(100),
        ..DispatcherConfig::default()
    };
    let d = Dispatcher::start(
        config,
        vec![NodeConfig {
            role: Role::Registrar,
            target: Target::new(Transport::Udp, reg_addr),
            max_load: None,
        }],
    )
    .await
    .unwrap();
    let d_addr = d.transport().local_addr(Transport::Udp).unwrap();
    let to_dispatcher = Target::new(Transport::Udp, d_addr);

    // No proxy node yet: an INVITE is refused with 503 and Retry-After.
    client
        .send(&to_dispatcher, request("INVITE", "c1", client_addr))
        .await
        .unwrap();
    let (resp, _) = next_message(&mut client_rx).await;
    assert_eq!(resp.status(), Some(503));
    assert!(resp.header(sip_core::HeaderName::RetryAfter).is_some());

    // Added at run time.
    d.add_node(NodeConfig {
        role: Role::Proxy,
        target: Target::new(Transport::Udp, proxy_addr),
        max_load: Some(100),
    });
    client
        .send(&to_dispatcher, request("REGISTER", "r1", client_addr))
        .await
        .unwrap();
    let (reg_req, reg_flow) = next_request(&reg, &mut reg_rx, 0).await;
    assert_eq!(reg_req.method(), Some(Method::Register));
    assert_eq!(reg_req.count(sip_core::HeaderName::Via), 2);
    assert_eq!(
        reg_req.header(sip_core::HeaderName::MaxForwards),
        Some("69")
    );
    let ok = reg_req.response(200).build().unwrap();
    reg.send_response(&ok, Some(reg_flow)).await.unwrap();
    let (resp, _) = next_message(&mut client_rx).await;
    assert_eq!(resp.status(), Some(200));
    assert_eq!(resp.count(sip_core::HeaderName::Via), 1);

    client
        .send(&to_dispatcher, request("INVITE", "c2", client_addr))
        .await
        .unwrap();
    let (inv, inv_flow) = next_request(&proxy, &mut proxy_rx, 7).await;
    assert_eq!(inv.method(), Some(Method::Invite));
    // Stateless: no Record-Route, the request otherwise as sent.
    assert_eq!(inv.count(sip_core::HeaderName::RecordRoute), 0);
    let ringing = inv.response(180).build().unwrap();
    proxy.send_response(&ringing, Some(inv_flow)).await.unwrap();
    let (resp, _) = next_message(&mut client_rx).await;
    assert_eq!(resp.status(), Some(180));

    // Probes answered: loads as reported, both up, forwarded counted.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        tokio::select! {
            _ = next_request(&proxy, &mut proxy_rx, 7) => {}
            _ = next_request(&reg, &mut reg_rx, 3) => {}
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        let s = d.stats();
        if s[1].load == 7 && s[0].load == 3 {
            assert!(s.iter().all(|n| n.up && n.forwarded == 1), "{s:?}");
            break;
        }
        assert!(Instant::now() < deadline, "loads not reported: {s:?}");
    }
    let c = d.counters();
    assert_eq!((c.dispatched, c.responses, c.refused), (2, 2, 1));
    d.shutdown();
}

#[tokio::test]
async fn in_dialog_requests_follow_their_route() {
    let (node, mut node_rx, node_addr) = layer().await;
    let (other, _other_rx, other_addr) = layer().await;
    let (client, _client_rx, client_addr) = layer().await;
    let d = Dispatcher::start(
        DispatcherConfig {
            udp: vec!["127.0.0.1:0".parse().unwrap()],
            ..DispatcherConfig::default()
        },
        vec![NodeConfig {
            role: Role::Proxy,
            target: Target::new(Transport::Udp, other_addr),
            max_load: None,
        }],
    )
    .await
    .unwrap();
    let d_addr = d.transport().local_addr(Transport::Udp).unwrap();
    // A BYE whose route set names `node` (which record-routed the INVITE) goes there, not to
    // the node the hash would pick.
    let bye = format!(
        "BYE sip:bob@{client_addr} SIP/2.0\r\nVia: SIP/2.0/UDP {client_addr};rport;branch=z9hG4bKbye\r\n\
         Route: <sip:{node_addr};lr>\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a\r\n\
         To: <sip:bob@example.com>;tag=b\r\nCall-ID: dlg\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    );
    client
        .send(Target::new(Transport::Udp, d_addr), Bytes::from(bye))
        .await
        .unwrap();
    let (got, _) = next_request(&node, &mut node_rx, 0).await;
    assert_eq!(got.method(), Some(Method::Bye));
    assert_eq!(got.count(sip_core::HeaderName::Route), 1);
    assert_eq!(d.counters().relayed, 1);
    assert_eq!(d.stats()[0].forwarded, 0);
    drop(other);
    d.shutdown();
}
