//! SIP over WebSocket and secure WebSocket (RFC 7118) on tokio-tungstenite: listeners that
//! accept the HTTP upgrade with `Sec-WebSocket-Protocol: sip` within the handshake timeout and
//! the connection limits, connections opened to `;transport=ws`/`wss` targets, and the reader
//! and writer tasks of one WebSocket connection.
//!
//! A WebSocket connection is a flow like a TCP one: registered in the same table (reused for
//! responses and later requests), written by its own task from its own byte-bounded queue,
//! reported opened and closed, closed when idle. Each text or binary frame carries exactly one
//! SIP message (RFC 7118 §5); frames and messages are bounded by the message size limit.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use sip_core::{Flow, Framing, Limits, Message, Target, Transport};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as Frame, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;
use tracing::{debug, info, trace, warn};

use crate::conn::{deliver, deliver_wait, fail_items, Conn};
use crate::error::SendError;
use crate::event::{CloseReason, TransportEvent};
use crate::inbound::{process_message, Inbound};
use crate::layer::Shared;
use crate::queue::{Item, Notice, WriteQueue};
use crate::registry::PendingKey;
use crate::stats::Counters;
use crate::stream::Plan;

/// The WebSocket subprotocol of RFC 7118 §4.
pub const SUBPROTOCOL: &str = "sip";

/// RFC 7118 §5: the SIP message one text or binary frame carries. A frame of only white
/// space (a keep-alive some clients send) is `Ok(None)`. The message is parsed as a
/// datagram is: `Content-Length` may be absent, and the frame's end ends the body.
pub fn message_from_frame(payload: Bytes, limits: &Limits) -> sip_core::Result<Option<Message>> {
    if payload
        .iter()
        .all(|b| matches!(b, b'\r' | b'\n' | b' ' | b'\t'))
    {
        return Ok(None);
    }
    Message::parse_with(payload, limits, Framing::Datagram).map(Some)
}

fn ws_config(shared: &Shared) -> WebSocketConfig {
    let max = shared.cfg.limits.max_message_size;
    WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}

/// The handshake's check (RFC 7118 §4): the client must offer the `sip` subprotocol; the
/// answer names it.
#[allow(clippy::result_large_err)]
fn negotiate(req: &Request, mut resp: Response) -> Result<Response, ErrorResponse> {
    let offered = req
        .headers()
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case(SUBPROTOCOL));
    if !offered {
        let mut err = ErrorResponse::new(Some("Sec-WebSocket-Protocol: sip required".into()));
        *err.status_mut() = http::StatusCode::BAD_REQUEST;
        return Err(err);
    }
    resp.headers_mut().insert(
        http::header::SEC_WEBSOCKET_PROTOCOL,
        http::HeaderValue::from_static(SUBPROTOCOL),
    );
    Ok(resp)
}

/// Accepts WebSocket connections until shutdown; `tls` makes it a WSS listener.
pub(crate) async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
) {
    let mut shutdown = shared.shutdown.subscribe();
    let transport = if tls.is_some() {
        Transport::Wss
    } else {
        Transport::Ws
    };
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let reserved = shared
            .registry
            .lock()
            .map_err(|_| None)
            .and_then(|mut r| r.reserve(Some(peer.ip()), &shared.cfg).map_err(Some));
        if let Err(why) = reserved {
            Counters::bump(&shared.stats.refused_connections);
            warn!(%transport, %peer, "connection refused: {}", why.map(|w| w.to_string()).unwrap_or_default());
            continue;
        }
        let _ = stream.set_nodelay(true);
        let Ok(local) = stream.local_addr() else {
            release(&shared, Some(peer));
            continue;
        };
        let flow = Flow {
            transport,
            local,
            remote: peer,
        };
        tokio::spawn(handshake_in(shared.clone(), stream, flow, tls.clone()));
    }
}

/// The TLS (for WSS) and HTTP upgrade of an accepted connection, within the handshake
/// timeout; then the connection starts.
async fn handshake_in(shared: Arc<Shared>, tcp: TcpStream, flow: Flow, tls: Option<TlsAcceptor>) {
    let config = Some(ws_config(&shared));
    let handshake = async {
        match tls {
            None => {
                let ws = tokio_tungstenite::accept_hdr_async_with_config(tcp, negotiate, config)
                    .await
                    .map_err(|e| e.to_string())?;
                start(shared.clone(), inbound_conn(&shared, flow), ws);
            }
            Some(acceptor) => {
                let tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
                let ws = tokio_tungstenite::accept_hdr_async_with_config(tls, negotiate, config)
                    .await
                    .map_err(|e| e.to_string())?;
                start(shared.clone(), inbound_conn(&shared, flow), ws);
            }
        }
        Ok::<(), String>(())
    };
    let why = match tokio::time::timeout(shared.cfg.handshake_timeout, handshake).await {
        Ok(Ok(())) => return,
        Ok(Err(e)) => e,
        Err(_) => "timed out".to_owned(),
    };
    release(&shared, Some(flow.remote));
    Counters::bump(&shared.stats.refused_connections);
    debug!(%flow, "WebSocket handshake failed: {why}");
}

fn inbound_conn(shared: &Shared, flow: Flow) -> Arc<Conn> {
    Arc::new(Conn::new(flow, false, None, new_queue(shared)))
}

fn new_queue(shared: &Shared) -> Arc<WriteQueue> {
    Arc::new(WriteQueue::new(shared.cfg.write_queue_bytes))
}

fn release(shared: &Shared, inbound_peer: Option<SocketAddr>) {
    if let Ok(mut r) = shared.registry.lock() {
        r.release(inbound_peer.map(|p| p.ip()));
    }
}

/// Opens a WebSocket connection to a `ws`/`wss` target (TCP, TLS for WSS, then the HTTP
/// upgrade asking for `sip`), within the connect timeout; then registers it, or reports every
/// message queued meanwhile failed.
pub(crate) async fn open(
    shared: Arc<Shared>,
    target: Target,
    key: PendingKey,
    plan: Plan,
    queue: Arc<WriteQueue>,
) {
    let addr = target.addr;
    let host = target
        .server_name
        .clone()
        .unwrap_or_else(|| addr.to_string());
    let scheme = if target.transport == Transport::Wss {
        "wss"
    } else {
        "ws"
    };
    let config = Some(ws_config(&shared));
    let connecting = async {
        let request = http::Request::builder()
            .uri(format!("{scheme}://{host}/"))
            .header(http::header::HOST, host.as_str())
            .header(http::header::CONNECTION, "Upgrade")
            .header(http::header::UPGRADE, "websocket")
            .header(http::header::SEC_WEBSOCKET_VERSION, "13")
            .header(http::header::SEC_WEBSOCKET_KEY, generate_key())
            .header(http::header::SEC_WEBSOCKET_PROTOCOL, SUBPROTOCOL)
            .body(())
            .map_err(|_| SendError::InvalidServerName(host.clone()))?;
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| SendError::Connect { addr, source })?;
        let _ = tcp.set_nodelay(true);
        let local = tcp
            .local_addr()
            .map_err(|source| SendError::Connect { addr, source })?;
        let flow = Flow {
            transport: target.transport,
            local,
            remote: addr,
        };
        let conn = Arc::new(Conn::new(
            flow,
            true,
            target.server_name.clone(),
            queue.clone(),
        ));
        let refused = |e: WsError| SendError::Connect {
            addr,
            source: std::io::Error::new(std::io::ErrorKind::ConnectionRefused, e.to_string()),
        };
        match plan.connector {
            None => {
                let (ws, _) = tokio_tungstenite::client_async_with_config(request, tcp, config)
                    .await
                    .map_err(refused)?;
                start(shared.clone(), conn, ws);
            }
            Some(c) => {
                let tls = c
                    .connect(plan.server_name, tcp)
                    .await
                    .map_err(|source| SendError::TlsHandshake { addr, source })?;
                let (ws, _) = tokio_tungstenite::client_async_with_config(request, tls, config)
                    .await
                    .map_err(refused)?;
                start(shared.clone(), conn, ws);
            }
        }
        Ok::<(), SendError>(())
    };
    let mut shutdown = shared.shutdown.subscribe();
    let opened = tokio::select! {
        r = tokio::time::timeout(shared.cfg.connect_timeout, connecting) => {
            r.unwrap_or(Err(SendError::ConnectTimeout(addr)))
        }
        _ = shutdown.wait_for(|down| *down) => Err(SendError::Shutdown),
    };
    if let Ok(mut r) = shared.registry.lock() {
        r.remove_pending(&key);
        if opened.is_err() {
            r.release(None);
        }
    }
    if let Err(e) = opened {
        debug!(%target, error = %e, "WebSocket connection failed");
        let lost = queue.close();
        Counters::add(&shared.stats.send_errors, lost.len() as u64);
        fail_items(&shared.events, lost, || e.duplicate()).await;
    }
}

/// Registers a WebSocket connection and spawns its writer and reader tasks; the reader reports
/// the flow opened, reads until it closes, unregisters it and reports it closed.
fn start<S>(shared: Arc<Shared>, conn: Arc<Conn>, ws: WebSocketStream<S>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if let Ok(mut reg) = shared.registry.lock() {
        reg.insert(conn.clone());
    }
    Counters::bump(&shared.stats.connections_opened);
    let (sink, stream) = ws.split();
    let writing = tokio::spawn(write_loop(shared.clone(), conn.clone(), sink));
    tokio::spawn(async move {
        let flow = conn.flow;
        info!(%flow, outbound = conn.outbound, "flow opened");
        let opened = TransportEvent::FlowOpened {
            flow,
            outbound: conn.outbound,
        };
        deliver_wait(&shared.events, opened).await;
        let reason = read_loop(&shared, &conn, stream).await;
        if let Ok(mut reg) = shared.registry.lock() {
            reg.remove(&conn);
        }
        conn.queue.shut();
        let _ = writing.await;
        Counters::bump(&shared.stats.connections_closed);
        info!(%flow, %reason, "flow closed");
        deliver_wait(&shared.events, TransportEvent::FlowClosed { flow, reason }).await;
    });
}

type Sink<S> = futures_util::stream::SplitSink<WebSocketStream<S>, Frame>;
type Source<S> = futures_util::stream::SplitStream<WebSocketStream<S>>;

/// One frame per message: text when it is UTF-8 (as SIP almost always is), binary otherwise.
fn frame_of(data: Bytes) -> Frame {
    match Utf8Bytes::try_from(data.clone()) {
        Ok(text) => Frame::Text(text),
        Err(_) => Frame::Binary(data),
    }
}

/// The writer task: drains the queue, one frame per message, each batch flushed within the
/// write timeout; on failure or close, what is left is reported failed and a close frame sent.
async fn write_loop<S>(shared: Arc<Shared>, conn: Arc<Conn>, mut sink: Sink<S>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let flow = conn.flow;
    let mut batch = Vec::new();
    while conn.queue.next_batch(&mut batch, 65_536).await {
        let send = async {
            for item in &batch {
                sink.feed(frame_of(item.data.clone())).await?;
            }
            sink.flush().await
        };
        let written = tokio::select! {
            r = tokio::time::timeout(shared.cfg.write_timeout, send) => Some(r),
            _ = conn.queue.closed() => None,
        };
        match written {
            Some(Ok(Ok(()))) => {
                conn.touch();
                for item in batch.drain(..) {
                    shared.stats.sent(flow.transport, item.data.len());
                    trace!(%flow, size = item.data.len(), "sent");
                    if let Notice::Done(tx) = item.notice {
                        let _ = tx.send(Ok(flow));
                    }
                }
            }
            Some(Ok(Err(e))) => {
                conn.request_close(close_reason(&e));
                break;
            }
            Some(Err(_)) => {
                Counters::bump(&shared.stats.write_timeouts);
                conn.request_close(CloseReason::WriteTimeout);
                break;
            }
            None => break,
        }
    }
    batch.extend(conn.queue.close());
    if !batch.is_empty() {
        Counters::add(&shared.stats.send_errors, batch.len() as u64);
    }
    fail_items(&shared.events, batch, || SendError::FlowClosed(flow)).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
}

fn close_reason(e: &WsError) -> CloseReason {
    match e {
        WsError::ConnectionClosed
        | WsError::AlreadyClosed
        | WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => CloseReason::PeerClosed,
        WsError::Io(io) => CloseReason::Io(io.kind()),
        WsError::Capacity(_) => CloseReason::BufferLimit,
        _ => CloseReason::Io(std::io::ErrorKind::InvalidData),
    }
}

/// The reader task: one SIP message per data frame, delivered up (or answered here when
/// malformed, as over TCP); closes on the peer's close, an error, the idle timeout, a local
/// close or shutdown.
async fn read_loop<S>(shared: &Shared, conn: &Conn, mut source: Source<S>) -> CloseReason
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let cfg = &shared.cfg;
    let stats = &shared.stats;
    let flow = conn.flow;
    let mut shutdown = shared.shutdown.subscribe();
    if *shutdown.borrow() {
        return CloseReason::Shutdown;
    }
    loop {
        let idle_at = cfg.idle_timeout.map(|t| conn.last_activity() + t);
        let frame = tokio::select! {
            f = source.next() => f,
            _ = sleep_or_never(idle_at) => {
                if cfg.idle_timeout.is_some_and(|t| conn.last_activity() + t <= Instant::now()) {
                    return CloseReason::IdleTimeout;
                }
                continue;
            }
            _ = conn.close.notified() => return conn.take_close_reason(),
            _ = shutdown.changed() => return CloseReason::Shutdown,
        };
        let payload = match frame {
            None => return CloseReason::PeerClosed,
            Some(Err(e)) => {
                if matches!(e, WsError::Capacity(_)) {
                    Counters::bump(&stats.oversized);
                }
                debug!(%flow, error = %e, "WebSocket read failed");
                return close_reason(&e);
            }
            Some(Ok(Frame::Close(_))) => return CloseReason::PeerClosed,
            Some(Ok(Frame::Text(t))) => Bytes::from(t),
            Some(Ok(Frame::Binary(b))) => b,
            Some(Ok(_)) => {
                // Ping (tungstenite queues the pong), pong, raw frame.
                conn.touch();
                continue;
            }
        };
        conn.touch();
        stats.bytes_in(flow.transport, payload.len());
        let msg = match message_from_frame(payload, &cfg.limits) {
            Ok(Some(m)) => m,
            Ok(None) => {
                Counters::bump(&stats.pings_received);
                continue;
            }
            Err(e) => {
                // One frame, one message: a bad one is dropped and the connection lives on
                // (the frame boundary resynchronises, unlike a byte stream).
                Counters::bump(&stats.parse_failures);
                debug!(%flow, error = %e, "unparsable WebSocket frame");
                continue;
            }
        };
        stats.message_in(flow.transport);
        match process_message(msg, &flow, cfg, stats) {
            Inbound::Deliver(msg, _) => {
                debug!(%flow, size = msg.source().len(), "message received");
                match deliver(
                    &shared.events,
                    TransportEvent::Message {
                        msg,
                        flow,
                        reply: None,
                    },
                ) {
                    Ok(None) => {}
                    Ok(Some(wait)) => {
                        if !wait.await {
                            return CloseReason::Shutdown;
                        }
                    }
                    Err(()) => return CloseReason::Shutdown,
                }
            }
            Inbound::Answer(resp) => {
                let item = Item {
                    data: resp,
                    notice: Notice::None,
                };
                if conn.enqueue(stats, item).is_err() {
                    return conn.take_close_reason();
                }
            }
            Inbound::Drop => {}
        }
    }
}

async fn sleep_or_never(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_frame_one_message_without_content_length() {
        let frame = Bytes::from_static(
            b"OPTIONS sip:a@b.invalid SIP/2.0\r\nVia: SIP/2.0/WS x.invalid;branch=z9hG4bK1\r\n\
              To: <sip:a@b>\r\nFrom: <sip:c@d>;tag=1\r\nCall-ID: 1\r\nCSeq: 1 OPTIONS\r\n\
              Max-Forwards: 70\r\n\r\n",
        );
        let m = message_from_frame(frame, &Limits::default())
            .unwrap()
            .unwrap();
        assert_eq!(m.via().unwrap().transport(), "WS");
        assert_eq!(
            message_from_frame(Bytes::from_static(b"\r\n\r\n"), &Limits::default()).unwrap(),
            None
        );
        assert!(message_from_frame(Bytes::from_static(b"garbage"), &Limits::default()).is_err());
    }

    #[test]
    fn text_frames_for_utf8_binary_otherwise() {
        assert!(matches!(
            frame_of(Bytes::from_static(b"SIP/2.0 200 OK")),
            Frame::Text(_)
        ));
        assert!(matches!(
            frame_of(Bytes::from_static(&[0xff, 0xfe])),
            Frame::Binary(_)
        ));
    }
}
