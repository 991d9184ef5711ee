//! Configuration: every limit is explicit, with defaults safe for a server on the open internet.

use std::time::Duration;

use sip_core::Limits;

/// Settings and limits of a transport layer.
///
/// ```
/// use std::time::Duration;
/// use sip_transport::TransportConfig;
/// let cfg = TransportConfig {
///     max_connections_per_ip: 8,
///     keepalive_interval: Some(Duration::from_secs(90)),
///     ..TransportConfig::default()
/// };
/// assert_eq!(cfg.udp_mtu_threshold, Some(1300));
/// ```
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Parser limits (message size, header count, line length). A request larger than
    /// `limits.max_message_size` is answered 513 (RFC 3261 §21.5.14) when it arrives in a
    /// datagram; on a stream the connection is closed (it cannot be resynchronised).
    pub limits: Limits,
    /// Check every message with [`sip_core::Message::validate`] (mandatory headers, CSeq
    /// method, well-formed Via/From/To…) before delivering it. Default `true`.
    pub validate: bool,
    /// Capacity of the event channel; a full channel stops reading (back-pressure). Default 1024.
    pub event_capacity: usize,
    /// Most inbound TCP and TLS connections (accepted) open at once. Default 10 000.
    pub max_connections: usize,
    /// Most outbound TCP and TLS connections (opened by us) open at once, counted apart from
    /// inbound ones so that a flood of inbound connections cannot stop our own connects.
    /// Default 1 024.
    pub max_outbound_connections: usize,
    /// Most inbound connections from one source IP address. Default 64.
    pub max_connections_per_ip: usize,
    /// A connection with no traffic in either direction for this long is closed
    /// ([`crate::CloseReason::IdleTimeout`]). `None`: never. Default 600 s.
    pub idle_timeout: Option<Duration>,
    /// Time a peer has to complete a message once its first byte arrived; a slower sender is
    /// cut off ([`crate::CloseReason::MessageTimeout`]). Default 10 s.
    pub message_timeout: Duration,
    /// Most bytes buffered for one connection while a message is incomplete. Default 131 072
    /// (the framer also bounds it to twice `limits.max_message_size`).
    pub max_buffered_bytes: usize,
    /// Time to open a connection, TLS handshake included. Default 10 s.
    pub connect_timeout: Duration,
    /// Time an accepted TLS connection has to complete its handshake. Default 10 s.
    pub handshake_timeout: Duration,
    /// Time one write to a connection may take before the connection is closed. Default 10 s.
    pub write_timeout: Duration,
    /// Bytes that may wait to be written to one connection. A peer that does not read fills
    /// it, and its connection is closed ([`crate::CloseReason::QueueFull`]); senders never
    /// wait. Default 1 MiB.
    pub write_queue_bytes: usize,
    /// RFC 5626 §3.5.1: send a `CRLFCRLF` ping on the flows we opened at this interval.
    /// `None` (the default): no pings.
    pub keepalive_interval: Option<Duration>,
    /// RFC 5626 §4.4.1: a flow whose pong has not arrived this long after a ping is closed
    /// ([`crate::CloseReason::KeepAliveTimeout`]). Default 10 s.
    pub keepalive_timeout: Duration,
    /// RFC 3261 §18.1.1: a request larger than this many bytes sent to a UDP target goes over
    /// TCP instead, its top Via rewritten. `None`: never switch. Default 1300.
    pub udp_mtu_threshold: Option<usize>,
    /// Sockets bound to each UDP address with `SO_REUSEPORT`, each with its own receive task,
    /// so that one port is served by several cores. Default 1.
    pub udp_sockets_per_addr: usize,
    /// Bind UDP sockets with `SO_REUSEPORT` even when there is one per address, so that
    /// several transport layers (one per worker thread, each with its own run-to-completion
    /// loop) share a port and the kernel spreads datagrams over them by source address (a
    /// peer's retransmissions reach the same worker). Default `false`.
    pub udp_reuse_port: bool,
    /// `SO_RCVBUF` for UDP sockets, if set.
    pub udp_recv_buffer: Option<usize>,
    /// Bytes of the shared buffer received UDP datagrams are copied into (0, the default: one
    /// allocation per datagram, exactly its size). With a slab, datagrams are packed one after
    /// the other into buffers of this size, so most cost no allocation; a buffer is freed when
    /// the last message in it is, so this suits servers whose messages are short-lived (a
    /// registrar), not ones that keep a few of them for long (a proxy's transactions).
    pub udp_receive_slab: usize,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            limits: Limits::default(),
            validate: true,
            event_capacity: 1024,
            max_connections: 10_000,
            max_outbound_connections: 1024,
            max_connections_per_ip: 64,
            idle_timeout: Some(Duration::from_secs(600)),
            message_timeout: Duration::from_secs(10),
            max_buffered_bytes: 131_072,
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            write_queue_bytes: 1 << 20,
            keepalive_interval: None,
            keepalive_timeout: Duration::from_secs(10),
            udp_mtu_threshold: Some(1300),
            udp_sockets_per_addr: 1,
            udp_reuse_port: false,
            udp_recv_buffer: None,
            udp_receive_slab: 0,
        }
    }
}
