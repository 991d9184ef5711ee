//! The table of open connections: by flow, by peer address (for reuse), connections being
//! opened (with the queue their first messages wait in), and the counts that enforce the
//! connection limits, inbound and outbound apart.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use sip_core::{Flow, Target, Transport};

use crate::config::TransportConfig;
use crate::conn::Conn;
use crate::queue::WriteQueue;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Total(usize),
    PerIp(usize),
    Outbound(usize),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Total(n) => write!(f, "inbound connection limit {n} reached"),
            Refusal::PerIp(n) => write!(f, "per-source-IP connection limit {n} reached"),
            Refusal::Outbound(n) => write!(f, "outbound connection limit {n} reached"),
        }
    }
}

/// A connection being opened to a target: messages for it wait in one queue, so that two
/// first sends to a new peer share one connection.
pub(crate) type PendingKey = (Transport, SocketAddr, Option<String>);

#[derive(Default)]
pub(crate) struct Registry {
    flows: HashMap<Flow, Arc<Conn>>,
    by_peer: HashMap<(Transport, SocketAddr), Vec<Arc<Conn>>>,
    pending: HashMap<PendingKey, Arc<WriteQueue>>,
    per_ip: HashMap<IpAddr, usize>,
    /// Inbound connections registered or being set up (accepted, handshaking).
    inbound: usize,
    /// Outbound connections registered or being opened.
    outbound: usize,
}

impl Registry {
    /// Takes a slot for a new connection; `inbound` carries the source IP of an accepted one.
    pub(crate) fn reserve(
        &mut self,
        inbound: Option<IpAddr>,
        cfg: &TransportConfig,
    ) -> Result<(), Refusal> {
        let Some(ip) = inbound else {
            if self.outbound >= cfg.max_outbound_connections {
                return Err(Refusal::Outbound(cfg.max_outbound_connections));
            }
            self.outbound += 1;
            return Ok(());
        };
        if self.inbound >= cfg.max_connections {
            return Err(Refusal::Total(cfg.max_connections));
        }
        let n = self.per_ip.entry(ip).or_insert(0);
        if *n >= cfg.max_connections_per_ip {
            return Err(Refusal::PerIp(cfg.max_connections_per_ip));
        }
        *n += 1;
        self.inbound += 1;
        Ok(())
    }

    /// Gives back a slot taken by [`Registry::reserve`].
    pub(crate) fn release(&mut self, inbound: Option<IpAddr>) {
        let Some(ip) = inbound else {
            self.outbound = self.outbound.saturating_sub(1);
            return;
        };
        self.inbound = self.inbound.saturating_sub(1);
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }

    /// Registers a connection whose slot was reserved.
    pub(crate) fn insert(&mut self, conn: Arc<Conn>) {
        let f = conn.flow;
        self.by_peer
            .entry((f.transport, f.remote))
            .or_default()
            .push(conn.clone());
        self.flows.insert(f, conn);
    }

    /// Unregisters a connection and frees its slot.
    pub(crate) fn remove(&mut self, conn: &Conn) {
        let f = conn.flow;
        if self.flows.remove(&f).is_none() {
            return;
        }
        let key = (f.transport, f.remote);
        if let Some(list) = self.by_peer.get_mut(&key) {
            list.retain(|c| c.flow != f);
            if list.is_empty() {
                self.by_peer.remove(&key);
            }
        }
        self.release((!conn.outbound).then_some(f.remote.ip()));
    }

    pub(crate) fn get(&self, flow: &Flow) -> Option<Arc<Conn>> {
        self.flows.get(flow).cloned()
    }

    /// An open connection that may carry a request to `target` (RFC 5923's concern): for a
    /// target with a server name, only a connection we opened for that same name (so verified
    /// against it, for TLS); an accepted connection, whose peer proved no name, never. A
    /// target without a name (a bare address) may use any connection to that address.
    pub(crate) fn find(&self, target: &Target) -> Option<Arc<Conn>> {
        let list = self.by_peer.get(&(target.transport, target.addr))?;
        let usable = |c: &&Arc<Conn>| match &target.server_name {
            None => !c.queue.is_closed(),
            Some(name) => {
                c.outbound
                    && !c.queue.is_closed()
                    && c.server_name
                        .as_deref()
                        .is_some_and(|n| n.eq_ignore_ascii_case(name))
            }
        };
        // Prefer a connection we opened (its peer listens there), then the newest.
        list.iter()
            .rev()
            .filter(usable)
            .find(|c| c.outbound)
            .or_else(|| list.iter().rev().find(usable))
            .cloned()
    }

    /// The queue of a connection being opened for `key`.
    pub(crate) fn pending(&self, key: &PendingKey) -> Option<Arc<WriteQueue>> {
        self.pending.get(key).cloned()
    }

    pub(crate) fn insert_pending(&mut self, key: PendingKey, queue: Arc<WriteQueue>) {
        self.pending.insert(key, queue);
    }

    pub(crate) fn remove_pending(&mut self, key: &PendingKey) {
        self.pending.remove(key);
    }

    pub(crate) fn flows(&self) -> Vec<Flow> {
        self.flows.keys().copied().collect()
    }
}

/// The key of a connection being opened to `target`.
pub(crate) fn pending_key(target: &Target) -> PendingKey {
    (
        target.transport,
        target.addr,
        target.server_name.as_ref().map(|n| n.to_ascii_lowercase()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(remote: &str, local_port: u16, outbound: bool, name: Option<&str>) -> Arc<Conn> {
        let flow = Flow {
            transport: Transport::Tls,
            local: SocketAddr::from(([127, 0, 0, 1], local_port)),
            remote: remote.parse().unwrap(),
        };
        Arc::new(Conn::new(
            flow,
            outbound,
            name.map(str::to_owned),
            Arc::new(WriteQueue::new(1024)),
        ))
    }

    fn target(addr: &str, name: Option<&str>) -> Target {
        Target {
            transport: Transport::Tls,
            addr: addr.parse().unwrap(),
            server_name: name.map(str::to_owned),
        }
    }

    /// RFC 5923's concern: a TLS connection carries requests for a named server only when it
    /// was verified for that name; an accepted connection never does.
    #[test]
    fn tls_reuse_requires_the_verified_name() {
        let mut r = Registry::default();
        let inbound = conn("192.0.2.9:5061", 5061, false, None);
        r.insert(inbound.clone());
        assert!(r
            .find(&target("192.0.2.9:5061", Some("sip.example.com")))
            .is_none());
        // A bare-address target asks for no identity: any connection to the address does.
        assert_eq!(
            r.find(&target("192.0.2.9:5061", None)).map(|c| c.flow),
            Some(inbound.flow)
        );
        let other = conn("192.0.2.9:5061", 40000, true, Some("other.example.com"));
        r.insert(other);
        assert!(r
            .find(&target("192.0.2.9:5061", Some("sip.example.com")))
            .is_none());
        let right = conn("192.0.2.9:5061", 40001, true, Some("SIP.example.com"));
        r.insert(right.clone());
        assert_eq!(
            r.find(&target("192.0.2.9:5061", Some("sip.example.com")))
                .map(|c| c.flow),
            Some(right.flow)
        );
        r.remove(&right);
        assert!(r
            .find(&target("192.0.2.9:5061", Some("sip.example.com")))
            .is_none());
    }

    #[test]
    fn inbound_and_outbound_slots_are_counted_apart() {
        let cfg = TransportConfig {
            max_connections: 1,
            max_outbound_connections: 1,
            ..TransportConfig::default()
        };
        let mut r = Registry::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        r.reserve(Some(ip), &cfg).unwrap();
        assert_eq!(r.reserve(Some(ip), &cfg), Err(Refusal::Total(1)));
        r.reserve(None, &cfg).unwrap();
        assert_eq!(r.reserve(None, &cfg), Err(Refusal::Outbound(1)));
        r.release(None);
        r.reserve(None, &cfg).unwrap();
    }
}
