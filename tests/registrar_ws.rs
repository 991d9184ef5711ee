//! A browser-like client registers over WebSocket (RFC 7118) with the registrar service: the
//! REGISTER with a `.invalid` Contact is answered 200 on the WebSocket, an OPTIONS is answered
//! on the same connection, and closing the socket drops the binding (a flow event, as for TCP).
//! Then the Endpoint reaches the registered `.invalid` contact over the flow it registered on.
#![cfg(feature = "ws")]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use sip_stack::core::builder::RequestBuilder;
use sip_stack::core::{Message, Method, Target, Transport};
use sip_stack::endpoint::Endpoint;
use sip_stack::registrar::{serve, Registrar, RegistrarConfig, RegistrarEvent, ServiceOptions};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::{client_async, WebSocketStream};

const WAIT: Duration = Duration::from_secs(10);

type Ws = WebSocketStream<TcpStream>;

async fn connect(addr: std::net::SocketAddr) -> Ws {
    let mut req = format!("ws://{addr}/").into_client_request().unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("sip"));
    let tcp = TcpStream::connect(addr).await.unwrap();
    client_async(req, tcp).await.unwrap().0
}

/// The next SIP message the server sends on the socket.
async fn recv_text(ws: &mut Ws) -> String {
    loop {
        let f = timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
        if let Frame::Text(t) = f {
            return t.as_str().to_owned();
        }
    }
}

fn register(cseq: u32) -> String {
    // What JsSIP sends: a random .invalid Via host and Contact host, transport=ws.
    format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
         Via: SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bKreg{cseq}\r\n\
         Max-Forwards: 69\r\nTo: <sip:alice@example.com>\r\n\
         From: <sip:alice@example.com>;tag=8g8c4h\r\nCall-ID: wsreg1\r\nCSeq: {cseq} REGISTER\r\n\
         Contact: <sip:x7bq2@df7jal23ls0d.invalid;transport=ws>;expires=600\r\n\
         Expires: 600\r\nContent-Length: 0\r\n\r\n"
    )
}

#[tokio::test]
async fn browser_registers_over_ws_is_reached_and_dropped_on_close() {
    let endpoint = Endpoint::builder()
        .ws("127.0.0.1:0".parse().unwrap())
        .build()
        .await
        .unwrap();
    let mut config = RegistrarConfig::new("example.com");
    config.domains = vec!["example.com".into()];
    let registrar = Arc::new(Registrar::open(config));
    let mut events = registrar.events();
    tokio::spawn(serve(
        endpoint.clone(),
        registrar.clone(),
        ServiceOptions::default(),
    ));
    let ws_addr = endpoint.local_addr(Transport::Ws).unwrap();
    let mut ws = connect(ws_addr).await;

    ws.send(Frame::text(register(1))).await.unwrap();
    let ok = recv_text(&mut ws).await;
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert!(ok.contains("df7jal23ls0d.invalid"), "{ok}");
    let binding = match timeout(WAIT, events.recv()).await.unwrap().unwrap() {
        RegistrarEvent::Registered { aor, binding } => {
            assert_eq!(aor, "sip:alice@example.com");
            binding
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(binding.flow.transport, Transport::Ws);

    let options = "OPTIONS sip:example.com SIP/2.0\r\n\
         Via: SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bKopt\r\n\
         Max-Forwards: 70\r\nTo: <sip:example.com>\r\nFrom: <sip:alice@example.com>;tag=o1\r\n\
         Call-ID: wsopt1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    ws.send(Frame::text(options)).await.unwrap();
    let answer = recv_text(&mut ws).await;
    assert!(answer.starts_with("SIP/2.0 200"), "{answer}");
    assert!(answer.contains("Call-ID: wsopt1"), "{answer}");

    // The .invalid contact is reached over the flow it registered on (RFC 7118 §5).
    let message = RequestBuilder::new(Method::Message, &binding.contact)
        .header("Via", endpoint.via(Transport::Ws))
        .header("From", "<sip:server@example.com>;tag=s1")
        .header("To", "<sip:alice@example.com>")
        .header("Call-ID", endpoint.new_call_id())
        .header("CSeq", "1 MESSAGE")
        .body("text/plain", "hello browser")
        .build()
        .unwrap();
    let target = Target::new(binding.flow.transport, binding.flow.remote);
    let mut txn = endpoint.request(message, target).await.unwrap();
    let got = recv_text(&mut ws).await;
    assert!(
        got.starts_with("MESSAGE sip:x7bq2@df7jal23ls0d.invalid"),
        "{got}"
    );
    assert!(got.ends_with("hello browser"), "{got}");
    // The browser answers 200 on the socket; the client transaction gets it.
    let req = Message::parse(Bytes::from(got)).unwrap();
    let ok = req.response(200).build().unwrap();
    ws.send(Frame::text(
        String::from_utf8(ok.to_bytes().to_vec()).unwrap(),
    ))
    .await
    .unwrap();
    let fin = timeout(WAIT, txn.final_response()).await.unwrap().unwrap();
    assert_eq!(fin.status(), Some(200));

    // Closing the socket closes the flow; the registrar drops the binding.
    ws.close(None).await.unwrap();
    match timeout(WAIT, events.recv()).await.unwrap().unwrap() {
        RegistrarEvent::Offline { aor, binding } => {
            assert_eq!(aor, "sip:alice@example.com");
            assert_eq!(binding.flow.transport, Transport::Ws);
        }
        other => panic!("{other:?}"),
    }
    let (aors, bindings) = sip_stack::registrar::LocationStore::counts(registrar.store()).await;
    assert_eq!((aors, bindings), (0, 0));
}

#[cfg(feature = "dns")]
#[tokio::test]
async fn request_to_a_transport_ws_uri_opens_a_websocket() {
    let server = Endpoint::builder()
        .ws("127.0.0.1:0".parse().unwrap())
        .build()
        .await
        .unwrap();
    let ws_addr = server.local_addr(Transport::Ws).unwrap();
    let answering = server.clone();
    tokio::spawn(async move {
        while let Some(ev) = answering.next_event().await {
            if let sip_stack::endpoint::ServerEvent::Request(txn) = ev {
                assert_eq!(txn.flow().transport, Transport::Ws);
                let ok = txn.request().response(200).build().unwrap();
                txn.respond(ok).await.unwrap();
            }
        }
    });
    let client = Endpoint::builder()
        .udp("127.0.0.1:0".parse().unwrap())
        .build()
        .await
        .unwrap();
    let uri = format!("sip:{ws_addr};transport=ws");
    let options = RequestBuilder::new(Method::Options, &uri)
        .header("Via", client.via(Transport::Udp))
        .header("From", "<sip:client@example.com>;tag=c1")
        .header("To", format!("<{uri}>"))
        .header("Call-ID", client.new_call_id())
        .header("CSeq", "1 OPTIONS")
        .build()
        .unwrap();
    let mut txn = client.request_to_uri(options).await.unwrap();
    let ok = timeout(WAIT, txn.final_response()).await.unwrap().unwrap();
    assert_eq!(ok.status(), Some(200));
    assert_eq!(ok.via().unwrap().transport(), "WS");
    assert_eq!(client.transport().flows().len(), 1);
}
