//! Two browser-like clients on WebSocket (RFC 7118) register through the proxy with `.invalid`
//! contacts, as JsSIP and SIP.js do; a MESSAGE from one to the other's AOR is routed over the
//! flow the callee registered on, and the callee's 200 comes back to the sender on its own
//! socket.
#![cfg(feature = "ws")]

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sip_stack::core::{Message, Method, Transport};
use sip_stack::endpoint::{CancelMode, Endpoint};
use sip_stack::proxy::{Identity, Interface, LocationRouter, ProxyBuilder, ProxyConfig};
use sip_stack::registrar::{Registrar, RegistrarConfig};
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

async fn recv(ws: &mut Ws) -> Message {
    loop {
        let f = timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
        if let Frame::Text(t) = f {
            return Message::parse(t.as_str().as_bytes().to_vec()).unwrap();
        }
    }
}

fn register(user: &str, host: &str) -> String {
    format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
         Via: SIP/2.0/WS {host}.invalid;branch=z9hG4bKreg-{user}\r\n\
         Max-Forwards: 69\r\nTo: <sip:{user}@example.com>\r\n\
         From: <sip:{user}@example.com>;tag=r-{user}\r\nCall-ID: reg-{user}\r\n\
         CSeq: 1 REGISTER\r\nContact: <sip:{user}@{host}.invalid;transport=ws>\r\n\
         Expires: 600\r\nContent-Length: 0\r\n\r\n"
    )
}

#[tokio::test]
async fn message_between_two_websocket_clients_through_the_proxy() {
    let ep = Endpoint::builder()
        .ws("127.0.0.1:0".parse().unwrap())
        .cancel_mode(CancelMode::Proxy)
        .build()
        .await
        .unwrap();
    let ws_addr = ep.local_addr(Transport::Ws).unwrap();
    let registrar = Arc::new(Registrar::open(RegistrarConfig::new("example.com")));
    let identity = Identity::new(
        vec![Interface::new(Transport::Ws, ws_addr)],
        vec!["example.com".into()],
    );
    let router = LocationRouter::new(registrar.clone(), identity.clone());
    let proxy = ProxyBuilder::new(ProxyConfig::new(identity), router).build(ep.clone());
    tokio::spawn(sip_stack::proxy::serve(proxy, Some(registrar.clone()), 2));

    let mut alice = connect(ws_addr).await;
    let mut bob = connect(ws_addr).await;
    for (ws, user, host) in [(&mut alice, "alice", "a1b2"), (&mut bob, "bob", "c3d4")] {
        ws.send(Frame::text(register(user, host))).await.unwrap();
        let ok = recv(ws).await;
        assert_eq!(ok.status(), Some(200), "{ok}");
    }

    let message = "MESSAGE sip:bob@example.com SIP/2.0\r\n\
        Via: SIP/2.0/WS a1b2.invalid;branch=z9hG4bKmsg1\r\n\
        Max-Forwards: 70\r\nTo: <sip:bob@example.com>\r\n\
        From: <sip:alice@example.com>;tag=m1\r\nCall-ID: msg-1\r\nCSeq: 1 MESSAGE\r\n\
        Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";
    alice.send(Frame::text(message)).await.unwrap();

    // Bob gets it on his own socket, with the proxy's Via on top.
    let got = recv(&mut bob).await;
    assert_eq!(got.method(), Some(Method::Message));
    assert_eq!(got.body(), b"hello");
    assert_eq!(got.vias().count(), 2);
    let ok = got.response(200).to_tag("b1").build().unwrap();
    bob.send(Frame::text(
        String::from_utf8(ok.to_bytes().to_vec()).unwrap(),
    ))
    .await
    .unwrap();

    // Alice gets the 200 on hers.
    let back = loop {
        let m = recv(&mut alice).await;
        if m.status().is_some_and(|s| s >= 200) {
            break m;
        }
    };
    assert_eq!(back.status(), Some(200));
    assert_eq!(back.call_id(), Some("msg-1"));
    assert_eq!(back.vias().count(), 1);
    ep.shutdown(Duration::from_secs(1)).await;
}
