//! Counters an operator wants, updated with relaxed atomics and read as a [`Stats`] snapshot.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use sip_core::Transport;

/// Messages and bytes through one transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Messages received (parsed, whether delivered or answered here).
    pub messages_in: u64,
    /// Bytes received (datagrams, or stream reads including keep-alives).
    pub bytes_in: u64,
    /// Messages (and keep-alives) sent.
    pub messages_out: u64,
    /// Bytes sent.
    pub bytes_out: u64,
}

/// A snapshot of the transport layer's counters ([`crate::TransportHandle::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// UDP traffic.
    pub udp: TransportStats,
    /// TCP traffic.
    pub tcp: TransportStats,
    /// TLS traffic.
    pub tls: TransportStats,
    /// WebSocket traffic (RFC 7118).
    pub ws: TransportStats,
    /// Secure WebSocket traffic (RFC 7118).
    pub wss: TransportStats,
    /// Inputs that failed to parse, frame or validate.
    pub parse_failures: u64,
    /// Malformed requests answered here (400, 505, 513…).
    pub malformed_answered: u64,
    /// Datagrams or stream messages over the size limit.
    pub oversized: u64,
    /// Inbound connections refused by the total or per-IP limit, or failed TLS handshakes.
    pub refused_connections: u64,
    /// Connections opened (in and out).
    pub connections_opened: u64,
    /// Connections closed.
    pub connections_closed: u64,
    /// Connections open now.
    pub open_connections: u64,
    /// Keep-alive pings received (RFC 5626 `CRLFCRLF`).
    pub pings_received: u64,
    /// Pongs sent in answer.
    pub pongs_sent: u64,
    /// Pings sent on our client flows.
    pub pings_sent: u64,
    /// Pongs received on our client flows.
    pub pongs_received: u64,
    /// Flows closed because their pong did not come back.
    pub keepalive_failures: u64,
    /// Requests moved from UDP to TCP because of their size (RFC 3261 §18.1.1).
    pub udp_to_tcp_switches: u64,
    /// Sends that failed.
    pub send_errors: u64,
    /// Connections closed because their write queue filled (the peer did not read).
    pub queue_full_closes: u64,
    /// Connections closed because one write took longer than the write timeout.
    pub write_timeouts: u64,
    /// Outbound connections refused by [`crate::TransportConfig::max_outbound_connections`].
    pub outbound_refused: u64,
    /// UDP sends that found the socket's buffer full and were finished by a task of their own.
    pub udp_sends_deferred: u64,
    /// UDP requests an [`InlineHandler`](crate::InlineHandler) took on their receive task
    /// (they never reached the endpoint's queue).
    pub inline_taken: u64,
}

#[derive(Debug, Default)]
pub(crate) struct PerTransport {
    messages_in: AtomicU64,
    bytes_in: AtomicU64,
    messages_out: AtomicU64,
    bytes_out: AtomicU64,
}

impl PerTransport {
    fn snapshot(&self) -> TransportStats {
        TransportStats {
            messages_in: self.messages_in.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            messages_out: self.messages_out.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
        }
    }
}

/// The live counters behind [`Stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    per: [PerTransport; 5],
    pub(crate) parse_failures: AtomicU64,
    pub(crate) malformed_answered: AtomicU64,
    pub(crate) oversized: AtomicU64,
    pub(crate) refused_connections: AtomicU64,
    pub(crate) connections_opened: AtomicU64,
    pub(crate) connections_closed: AtomicU64,
    pub(crate) pings_received: AtomicU64,
    pub(crate) pongs_sent: AtomicU64,
    pub(crate) pings_sent: AtomicU64,
    pub(crate) pongs_received: AtomicU64,
    pub(crate) keepalive_failures: AtomicU64,
    pub(crate) udp_to_tcp_switches: AtomicU64,
    pub(crate) send_errors: AtomicU64,
    pub(crate) queue_full_closes: AtomicU64,
    pub(crate) write_timeouts: AtomicU64,
    pub(crate) outbound_refused: AtomicU64,
    pub(crate) udp_sends_deferred: AtomicU64,
    pub(crate) inline_taken: AtomicU64,
}

fn index(t: Transport) -> usize {
    match t {
        Transport::Udp => 0,
        Transport::Tcp => 1,
        Transport::Tls => 2,
        Transport::Ws => 3,
        Transport::Wss => 4,
    }
}

impl Counters {
    pub(crate) fn bump(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }

    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    pub(crate) fn bytes_in(&self, t: Transport, n: usize) {
        self.per[index(t)].bytes_in.fetch_add(n as u64, Relaxed);
    }

    pub(crate) fn message_in(&self, t: Transport) {
        self.per[index(t)].messages_in.fetch_add(1, Relaxed);
    }

    pub(crate) fn sent(&self, t: Transport, n: usize) {
        let p = &self.per[index(t)];
        p.messages_out.fetch_add(1, Relaxed);
        p.bytes_out.fetch_add(n as u64, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let opened = self.connections_opened.load(Relaxed);
        let closed = self.connections_closed.load(Relaxed);
        Stats {
            udp: self.per[0].snapshot(),
            tcp: self.per[1].snapshot(),
            tls: self.per[2].snapshot(),
            ws: self.per[3].snapshot(),
            wss: self.per[4].snapshot(),
            parse_failures: self.parse_failures.load(Relaxed),
            malformed_answered: self.malformed_answered.load(Relaxed),
            oversized: self.oversized.load(Relaxed),
            refused_connections: self.refused_connections.load(Relaxed),
            connections_opened: opened,
            connections_closed: closed,
            open_connections: opened.saturating_sub(closed),
            pings_received: self.pings_received.load(Relaxed),
            pongs_sent: self.pongs_sent.load(Relaxed),
            pings_sent: self.pings_sent.load(Relaxed),
            pongs_received: self.pongs_received.load(Relaxed),
            keepalive_failures: self.keepalive_failures.load(Relaxed),
            udp_to_tcp_switches: self.udp_to_tcp_switches.load(Relaxed),
            send_errors: self.send_errors.load(Relaxed),
            queue_full_closes: self.queue_full_closes.load(Relaxed),
            write_timeouts: self.write_timeouts.load(Relaxed),
            outbound_refused: self.outbound_refused.load(Relaxed),
            udp_sends_deferred: self.udp_sends_deferred.load(Relaxed),
            inline_taken: self.inline_taken.load(Relaxed),
        }
    }
}
