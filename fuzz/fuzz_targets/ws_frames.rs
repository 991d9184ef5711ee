//! Bytes a WebSocket client sends (RFC 6455 frames, masked or not, fragmented or not) through
//! the frame decoder and RFC 7118's one-message-per-frame path, as the WS reader task runs
//! them: decode frames within the message limit, parse each data frame as one SIP message,
//! validate it and stamp its top Via. Must never panic.
#![no_main]
use std::io::{Cursor, Read, Write};
use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use sip_core::Limits;
use tungstenite::protocol::{Role, WebSocket, WebSocketConfig};
use tungstenite::Message as Frame;

/// The client's bytes to read; what the server writes (pongs, close) is discarded.
struct Wire(Cursor<Vec<u8>>);

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_message_size: 16 * 1024,
        ..Limits::default()
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(limits.max_message_size))
        .max_frame_size(Some(limits.max_message_size));
    let mut ws = WebSocket::from_raw_socket(Wire(Cursor::new(data.to_vec())), Role::Server, Some(config));
    let source: SocketAddr = "192.0.2.1:50000".parse().unwrap();
    // At most as many frames as there are bytes: every frame takes at least two.
    for _ in 0..data.len() {
        let payload = match ws.read() {
            Ok(Frame::Text(t)) => bytes::Bytes::from(t),
            Ok(Frame::Binary(b)) => b,
            Ok(_) => continue,
            Err(_) => break,
        };
        assert!(payload.len() <= limits.max_message_size);
        if let Ok(Some(mut msg)) = sip_transport::message_from_frame(payload, &limits) {
            if msg.validate().is_ok() && msg.is_request() {
                let _ = sip_transport::stamp_via(&mut msg, source);
                let _ = msg.via().map(|v| (v.received(), v.rport()));
            }
            let _ = msg.to_bytes();
        }
    }
});
