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
        if let TransportEvent::Message { msg, flow, .. } = ev {
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

/// The next response (probes that arrive meanwhile are answered).
async fn next_response(h: &TransportHandle, rx: &mut mpsc::Receiver<TransportEvent>) -> Message {
    loop {
        let (m, f) = next_message(rx).await;
        if m.is_response() {
            return m;
        }
        let ok = m.response(200).build().unwrap();
        h.send_response(&ok, Some(f)).await.unwrap();
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

/// A device behind NAT (a private Contact) registers through the dispatcher; a node reaches
/// it with the Path as a preloaded Route; the dialog's later requests pass the dispatcher both
/// ways; a forged token is refused.
#[tokio::test]
async fn nat_device_reached_over_its_flow_by_path_token() {
    let (node, mut node_rx, node_addr) = layer().await;
    let (device, mut device_rx, device_addr) = layer().await;
    let d = Dispatcher::start(
        DispatcherConfig {
            udp: vec!["127.0.0.1:0".parse().unwrap()],
            flow_key: Some(b"test key".to_vec()),
            ..DispatcherConfig::default()
        },
        vec![NodeConfig {
            role: Role::Registrar,
            target: Target::new(Transport::Udp, node_addr),
            max_load: None,
        }],
    )
    .await
    .unwrap();
    let d_addr = d.transport().local_addr(Transport::Udp).unwrap();
    let to_dispatcher = Target::new(Transport::Udp, d_addr);
    let private = "10.0.0.9:5060";
    let register = format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP {private};rport;branch=z9hG4bKreg\r\n\
         Max-Forwards: 70\r\nFrom: <sip:bob@example.com>;tag=b\r\nTo: <sip:bob@example.com>\r\n\
         Call-ID: nat-reg\r\nCSeq: 1 REGISTER\r\nSupported: path\r\nContact: <sip:bob@{private}>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    device
        .send(&to_dispatcher, Bytes::from(register))
        .await
        .unwrap();
    let (reg, reg_flow) = next_request(&node, &mut node_rx, 0).await;
    assert!(reg.has_token(HeaderName::Require, "path"));
    let path = reg.values(HeaderName::Path).next().unwrap().to_owned();
    let device_flow = Flow {
        transport: Transport::Udp,
        local: d_addr,
        remote: device_addr,
    };
    let token = FlowTokens::with_key(b"test key").encode(&device_flow);
    assert_eq!(path, format!("<sip:{token}@{d_addr};lr;ob>"));
    // The registrar's 200 goes back to the device by its Via (received/rport).
    let ok = reg.response(200).header("Path", &path).build().unwrap();
    node.send_response(&ok, Some(reg_flow)).await.unwrap();
    let (resp, _) = next_message(&mut device_rx).await;
    assert_eq!(resp.status(), Some(200));

    // A call from a node: the Path is its preloaded Route, the Request-URI the private
    // Contact; it reaches the device on the flow of its REGISTER.
    let invite = |route: &str, branch: &str| {
        format!(
            "INVITE sip:bob@{private} SIP/2.0\r\nVia: SIP/2.0/UDP {node_addr};branch=z9hG4bK{branch}\r\n\
             Route: {route}\r\nRecord-Route: <sip:{node_addr};lr>\r\nMax-Forwards: 69\r\n\
             From: <sip:alice@example.com>;tag=a\r\nTo: <sip:bob@example.com>\r\n\
             Call-ID: nat-call\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@192.0.2.5>\r\n\
             Content-Length: 0\r\n\r\n"
        )
    };
    node.send(&to_dispatcher, Bytes::from(invite(&path, "inv")))
        .await
        .unwrap();
    let (inv, _) = next_message(&mut device_rx).await;
    assert_eq!(inv.method(), Some(Method::Invite));
    assert_eq!(inv.uri_str(), Some(format!("sip:bob@{private}").as_str()));
    assert_eq!(inv.count(HeaderName::Route), 0);
    assert_eq!(inv.count(HeaderName::Via), 2);
    assert_eq!(inv.header(HeaderName::MaxForwards), Some("68"));
    let rr: Vec<&str> = inv.values(HeaderName::RecordRoute).collect();
    assert_eq!(
        rr,
        vec![path.as_str(), format!("<sip:{node_addr};lr>").as_str()]
    );
    assert_eq!(d.counters().to_flows, 1);

    // Its answer goes back by the Vias to the node.
    let ok = inv
        .response(200)
        .header("Contact", format!("<sip:bob@{private}>"))
        .build()
        .unwrap();
    device.send_response(&ok, None).await.unwrap();
    let resp = next_response(&node, &mut node_rx).await;
    assert_eq!(resp.status(), Some(200));
    assert_eq!(resp.count(HeaderName::Via), 1);

    // The device's BYE along its route set (our Record-Route, then the node's): on its own
    // flow the token is only popped, and the request goes on to the node.
    let bye = format!(
        "BYE sip:alice@192.0.2.5 SIP/2.0\r\nVia: SIP/2.0/UDP {private};rport;branch=z9hG4bKbye\r\n\
         Route: {path}\r\nRoute: <sip:{node_addr};lr>\r\nMax-Forwards: 70\r\n\
         From: <sip:bob@example.com>;tag=b2\r\nTo: <sip:alice@example.com>;tag=a\r\n\
         Call-ID: nat-call\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n"
    );
    device.send(&to_dispatcher, Bytes::from(bye)).await.unwrap();
    let (bye, _) = next_request(&node, &mut node_rx, 0).await;
    assert_eq!(bye.method(), Some(Method::Bye));
    let routes: Vec<&str> = bye.values(HeaderName::Route).collect();
    assert_eq!(routes, vec![format!("<sip:{node_addr};lr>").as_str()]);
    assert!(bye.has(HeaderName::Via));
    assert_eq!(d.counters().relayed, 1);

    // A token altered by one digit, or made with another key: 403, nothing sent.
    let mut forged = token.clone().into_bytes();
    forged[10] = if forged[10] == b'0' { b'1' } else { b'0' };
    let forged = String::from_utf8(forged).unwrap();
    for bad in [forged, FlowTokens::with_key(b"other").encode(&device_flow)] {
        let route = format!("<sip:{bad}@{d_addr};lr;ob>");
        node.send(&to_dispatcher, Bytes::from(invite(&route, "forged")))
            .await
            .unwrap();
        let resp = next_response(&node, &mut node_rx).await;
        assert_eq!(resp.status(), Some(403));
    }
    assert_eq!(d.counters().to_flows, 1);
    d.shutdown();
}

/// Over TCP the token names the device's connection: a request for it after the connection
/// closed is answered 430 Flow Failed (RFC 5626 §5.3), not sent on a new connection.
#[tokio::test]
async fn closed_tcp_flow_is_430() {
    let (node, mut node_rx, node_addr) = layer().await;
    let d = Dispatcher::start(
        DispatcherConfig {
            udp: vec!["127.0.0.1:0".parse().unwrap()],
            tcp: vec!["127.0.0.1:0".parse().unwrap()],
            ..DispatcherConfig::default()
        },
        vec![NodeConfig {
            role: Role::Registrar,
            target: Target::new(Transport::Udp, node_addr),
            max_load: None,
        }],
    )
    .await
    .unwrap();
    let d_udp = d.transport().local_addr(Transport::Udp).unwrap();
    let d_tcp = d.transport().local_addr(Transport::Tcp).unwrap();
    let mut tcp = tokio::net::TcpStream::connect(d_tcp).await.unwrap();
    let register = "REGISTER sip:example.com SIP/2.0\r\n\
        Via: SIP/2.0/TCP 10.0.0.9:5060;branch=z9hG4bKtcpreg\r\nMax-Forwards: 70\r\n\
        From: <sip:bob@example.com>;tag=b\r\nTo: <sip:bob@example.com>\r\n\
        Call-ID: tcp-reg\r\nCSeq: 1 REGISTER\r\nContact: <sip:bob@10.0.0.9:5060;transport=tcp>\r\n\
        Content-Length: 0\r\n\r\n";
    tokio::io::AsyncWriteExt::write_all(&mut tcp, register.as_bytes())
        .await
        .unwrap();
    let (reg, _) = next_request(&node, &mut node_rx, 0).await;
    let path = reg.values(HeaderName::Path).next().unwrap().to_owned();
    // The Path leads back over UDP (the node's transport) and names the TCP connection.
    assert!(path.ends_with(&format!("@{d_udp};lr;ob>")), "{path}");
    drop(tcp);
    // Closed on our side too before the call: wait for the transport's event count.
    let deadline = Instant::now() + Duration::from_secs(5);
    while d.transport().stats().open_connections > 0 {
        assert!(Instant::now() < deadline, "connection not closed");
        tokio::task::yield_now().await;
    }
    let invite = format!(
        "INVITE sip:bob@10.0.0.9:5060;transport=tcp SIP/2.0\r\n\
         Via: SIP/2.0/UDP {node_addr};branch=z9hG4bKtcpinv\r\nRoute: {path}\r\nMax-Forwards: 69\r\n\
         From: <sip:alice@example.com>;tag=a\r\nTo: <sip:bob@example.com>\r\n\
         Call-ID: tcp-call\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    node.send(Target::new(Transport::Udp, d_udp), Bytes::from(invite))
        .await
        .unwrap();
    let resp = next_response(&node, &mut node_rx).await;
    assert_eq!(resp.status(), Some(430));
    d.shutdown();
}
