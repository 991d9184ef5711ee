//! Transport-level types shared by every layer: the transport kind, the flow a message came on,
//! and the target a request is sent to (RFC 3261 §18, RFC 5626 §3).

use std::fmt;
use std::net::SocketAddr;

/// A SIP transport (the `transport` of a Via sent-protocol and of a URI parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    /// UDP: unreliable, datagrams (RFC 3261 §18.1.1).
    Udp,
    /// TCP: reliable stream.
    Tcp,
    /// TLS over TCP: reliable stream, for `sips:` (RFC 3261 §26.2).
    Tls,
    /// WebSocket (RFC 7118): reliable, one message per frame.
    Ws,
    /// Secure WebSocket (WebSocket over TLS, RFC 7118): reliable, one message per frame.
    Wss,
}

impl Transport {
    /// Whether the transport is reliable (no retransmissions by the transaction layer,
    /// RFC 3261 §17.1.1.2).
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// Whether the transport is a byte stream (messages framed by Content-Length); WebSocket
    /// frames each message itself (RFC 7118 §5).
    pub fn is_stream(self) -> bool {
        matches!(self, Transport::Tcp | Transport::Tls)
    }

    /// Whether the transport is a WebSocket one (RFC 7118).
    pub fn is_websocket(self) -> bool {
        matches!(self, Transport::Ws | Transport::Wss)
    }

    /// The name used in a Via sent-protocol (`UDP`, `TCP`, `TLS`, `WS`, `WSS`).
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
        }
    }

    /// Parses a Via transport or a `transport=` URI parameter (case-insensitive).
    ///
    /// ```
    /// use sip_core::Transport;
    /// assert_eq!(Transport::from_name("tcp"), Some(Transport::Tcp));
    /// assert_eq!(Transport::from_name("SCTP"), None);
    /// ```
    pub fn from_name(name: &str) -> Option<Transport> {
        if name.eq_ignore_ascii_case("UDP") {
            Some(Transport::Udp)
        } else if name.eq_ignore_ascii_case("TCP") {
            Some(Transport::Tcp)
        } else if name.eq_ignore_ascii_case("TLS") {
            Some(Transport::Tls)
        } else if name.eq_ignore_ascii_case("WS") {
            Some(Transport::Ws)
        } else if name.eq_ignore_ascii_case("WSS") {
            Some(Transport::Wss)
        } else {
            None
        }
    }

    /// The default port: 5060, or 5061 for TLS (RFC 3261 §19.1.2); WS 80 and WSS 443
    /// (RFC 7118 §5, the HTTP ports).
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Tls => 5061,
            Transport::Ws => 80,
            Transport::Wss => 443,
            _ => 5060,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a message came from and how to reach the peer again over the same socket or
/// connection (RFC 5626 §3: a flow is the transport, the local and the remote address).
///
/// A response goes back on the flow its request arrived on (RFC 3261 §18.2.2); a registrar keeps
/// the flow with a binding so that it can reach a device behind NAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Flow {
    /// The transport.
    pub transport: Transport,
    /// Our address (the listening socket, or the local end of the connection).
    pub local: SocketAddr,
    /// The peer's address as seen on the wire (after any NAT).
    pub remote: SocketAddr,
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} -> {}", self.transport, self.local, self.remote)
    }
}

/// Where to send a request: a resolved address and a transport, with the host name for TLS
/// server-name verification (SNI).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The transport to use.
    pub transport: Transport,
    /// The resolved address.
    pub addr: SocketAddr,
    /// The host name the TLS certificate must match (`None`: the address is used).
    pub server_name: Option<String>,
}

impl Target {
    /// A target without a TLS server name.
    pub fn new(transport: Transport, addr: SocketAddr) -> Target {
        Target {
            transport,
            addr,
            server_name: None,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.transport, self.addr)
    }
}
