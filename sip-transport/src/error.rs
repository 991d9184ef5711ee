//! Typed errors: what can go wrong sending a message, and building TLS configurations.

use std::io;
use std::net::SocketAddr;

use sip_core::{Flow, Transport};

/// Why a message could not be sent. The transaction layer maps these to its "transport error"
/// input (RFC 3261 §17.1.4, §17.2.4).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// No socket of this transport (and address family) to send from.
    #[error("no {transport} socket for {addr}")]
    NoTransport {
        /// The transport asked for.
        transport: Transport,
        /// The destination.
        addr: SocketAddr,
    },
    /// The connection of this flow is gone (closed by the peer, timed out, refused).
    #[error("flow {0} is closed")]
    FlowClosed(Flow),
    /// Opening a connection failed.
    #[error("connecting to {addr} failed: {source}")]
    Connect {
        /// The peer.
        addr: SocketAddr,
        /// The socket error.
        source: io::Error,
    },
    /// Opening a connection (TCP and TLS handshake) took longer than the configured timeout.
    #[error("connecting to {0} timed out")]
    ConnectTimeout(SocketAddr),
    /// The TLS handshake failed (certificate not trusted, name mismatch, protocol error).
    #[error("TLS handshake with {addr} failed: {source}")]
    TlsHandshake {
        /// The peer.
        addr: SocketAddr,
        /// The error reported by rustls.
        source: io::Error,
    },
    /// A TLS target but no [`crate::TlsClientConfig`] was given to the builder.
    #[error("no TLS client configuration")]
    TlsNotConfigured,
    /// The target's server name is not a valid DNS name or IP address.
    #[error("invalid TLS server name {0:?}")]
    InvalidServerName(String),
    /// Writing to the socket failed.
    #[error("sending to {addr} failed: {source}")]
    Io {
        /// The peer.
        addr: SocketAddr,
        /// The socket error.
        source: io::Error,
    },
    /// Writing to a connection took longer than the configured write timeout; the connection
    /// is closed.
    #[error("writing to {0} timed out")]
    WriteTimeout(SocketAddr),
    /// The connection's write queue is full (its peer is not reading): the connection is
    /// being closed.
    #[error("write queue of flow {0} is full: peer not reading")]
    QueueFull(Flow),
    /// More bytes wait for a connection being opened to this address than one write queue
    /// holds.
    #[error("write queue for the connection being opened to {0} is full")]
    ConnectQueueFull(SocketAddr),
    /// The message does not fit in a datagram.
    #[error("message of {size} bytes does not fit in a datagram (limit {limit})")]
    TooLarge {
        /// The message size.
        size: usize,
        /// The largest datagram.
        limit: usize,
    },
    /// The connection limit is reached: no new connection is opened.
    #[error("connection limit of {0} reached")]
    ConnectionLimit(usize),
    /// A `sips:` Request-URI must be sent over TLS (RFC 3261 §26.2.2).
    #[error("a sips: request must be sent over TLS, not {0}")]
    SipsRequiresTls(Transport),
    /// The destination of a response could not be computed from its top Via (RFC 3261
    /// §18.2.2), e.g. the sent-by is a domain name that needs RFC 3263 resolution.
    #[error("no route for the response: {0}")]
    NoRoute(&'static str),
    /// The message could not be read (no or malformed top Via).
    #[error("invalid message: {0}")]
    Message(#[from] sip_core::Error),
    /// The transport layer was shut down.
    #[error("transport layer shut down")]
    Shutdown,
}

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// The PEM text could not be read.
    #[error("invalid PEM: {0}")]
    Pem(String),
    /// The PEM text holds no certificate.
    #[error("no certificate in PEM")]
    NoCertificate,
    /// The PEM text holds no private key.
    #[error("no private key in PEM")]
    NoPrivateKey,
    /// rustls refused the configuration (key does not match, bad certificate…).
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client certificate verifier could not be built.
    #[error("client verifier: {0}")]
    Verifier(String),
}

impl SendError {
    /// The same error again, for each of several messages that one failure lost (a socket
    /// error is rebuilt from its kind and text).
    pub(crate) fn duplicate(&self) -> SendError {
        let io = |e: &io::Error| io::Error::new(e.kind(), e.to_string());
        match self {
            SendError::NoTransport { transport, addr } => SendError::NoTransport {
                transport: *transport,
                addr: *addr,
            },
            SendError::FlowClosed(f) => SendError::FlowClosed(*f),
            SendError::Connect { addr, source } => SendError::Connect {
                addr: *addr,
                source: io(source),
            },
            SendError::ConnectTimeout(a) => SendError::ConnectTimeout(*a),
            SendError::TlsHandshake { addr, source } => SendError::TlsHandshake {
                addr: *addr,
                source: io(source),
            },
            SendError::TlsNotConfigured => SendError::TlsNotConfigured,
            SendError::InvalidServerName(n) => SendError::InvalidServerName(n.clone()),
            SendError::Io { addr, source } => SendError::Io {
                addr: *addr,
                source: io(source),
            },
            SendError::WriteTimeout(a) => SendError::WriteTimeout(*a),
            SendError::QueueFull(f) => SendError::QueueFull(*f),
            SendError::ConnectQueueFull(a) => SendError::ConnectQueueFull(*a),
            SendError::TooLarge { size, limit } => SendError::TooLarge {
                size: *size,
                limit: *limit,
            },
            SendError::ConnectionLimit(n) => SendError::ConnectionLimit(*n),
            SendError::SipsRequiresTls(t) => SendError::SipsRequiresTls(*t),
            SendError::NoRoute(r) => SendError::NoRoute(r),
            SendError::Message(e) => SendError::Message(e.clone()),
            SendError::Shutdown => SendError::Shutdown,
        }
    }
}
