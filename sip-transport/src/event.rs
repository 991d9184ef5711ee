//! What the transport layer tells the layer above: messages and flow life cycle.

use std::io;

use sip_core::{Flow, Message, Target};

/// An event from the transport layer, read from the bounded channel returned by
/// [`crate::TransportBuilder::build`].
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // moved once through the channel; boxing costs an allocation
pub enum TransportEvent {
    /// A well-formed message, with the flow it arrived on. A request's top Via already carries
    /// `received` and `rport` (RFC 3261 §18.2.1, RFC 3581 §4).
    Message {
        /// The message.
        msg: Message,
        /// Where it came from.
        flow: Flow,
        /// For a request received over UDP, where its responses go (RFC 3261 §18.2.2, RFC
        /// 3581), computed when its top Via was stamped: a server answering it need not parse
        /// that Via again ([`TransportHandle::enqueue_response_at`](crate::TransportHandle::enqueue_response_at)).
        /// `None` otherwise: the responses go on the flow, or where their Via says.
        reply: Option<Target>,
    },
    /// A TCP or TLS connection was opened (accepted, or connected by us).
    FlowOpened {
        /// The new flow.
        flow: Flow,
        /// `true` when we opened it (a client flow: it sends keep-alive pings when configured).
        outbound: bool,
    },
    /// A message queued with a tag ([`crate::TransportHandle::enqueue`] and friends) could not
    /// be sent after all: its connection failed to open, closed, or timed out writing. The
    /// transaction that sent it treats this as a transport error (RFC 3261 §17.1.4).
    SendFailed {
        /// The tag given when it was queued.
        tag: u64,
        /// What went wrong.
        error: crate::SendError,
    },
    /// A TCP or TLS connection closed; messages can no longer be sent on this flow. A registrar
    /// drops or marks offline the bindings that lived on it (RFC 5626 §5.3).
    FlowClosed {
        /// The flow that closed.
        flow: Flow,
        /// Why.
        reason: CloseReason,
    },
}

/// Why a flow was closed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer closed the connection.
    PeerClosed,
    /// Nothing was received or sent for the configured idle timeout.
    IdleTimeout,
    /// A message was not completed within the configured time (a slow sender).
    MessageTimeout,
    /// RFC 5626 §4.4.1: no pong came back in time after a keep-alive ping.
    KeepAliveTimeout,
    /// The peer sent more unframed bytes than a connection may buffer.
    BufferLimit,
    /// The stream could not be framed or parsed (it cannot be resynchronised).
    Protocol(sip_core::Error),
    /// A socket error (reading or writing).
    Io(io::ErrorKind),
    /// Writing timed out.
    WriteTimeout,
    /// The peer did not read: more bytes waited to be written to it than the write queue's
    /// budget ([`crate::TransportConfig::write_queue_bytes`]).
    QueueFull,
    /// Closed on request ([`crate::TransportHandle::close_flow`]).
    Local,
    /// The transport layer shut down.
    Shutdown,
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::PeerClosed => f.write_str("peer closed"),
            CloseReason::IdleTimeout => f.write_str("idle timeout"),
            CloseReason::MessageTimeout => f.write_str("message not completed in time"),
            CloseReason::KeepAliveTimeout => f.write_str("keep-alive pong missing"),
            CloseReason::BufferLimit => f.write_str("buffer limit"),
            CloseReason::Protocol(e) => write!(f, "protocol error: {e}"),
            CloseReason::Io(k) => write!(f, "I/O error: {k}"),
            CloseReason::WriteTimeout => f.write_str("write timeout"),
            CloseReason::QueueFull => f.write_str("write queue full (peer not reading)"),
            CloseReason::Local => f.write_str("closed locally"),
            CloseReason::Shutdown => f.write_str("shutdown"),
        }
    }
}
