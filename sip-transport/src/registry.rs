//! The table of open connections: by flow, by peer address (for reuse), and the counts that
//! enforce the connection limits.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use sip_core::{Flow, Transport};

use crate::config::TransportConfig;
use crate::conn::Conn;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Total(usize),
    PerIp(usize),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Total(n) => write!(f, "total connection limit {n} reached"),
            Refusal::PerIp(n) => write!(f, "per-source-IP connection limit {n} reached"),
        }
    }
}

#[derive(Default)]
pub(crate) struct Registry {
    flows: HashMap<Flow, Arc<Conn>>,
    by_peer: HashMap<(Transport, SocketAddr), Arc<Conn>>,
    per_ip: HashMap<IpAddr, usize>,
    /// Connections registered or being set up (accepted, handshaking, connecting).
    total: usize,
}

impl Registry {
    /// Takes a slot for a new connection; `inbound` carries the source IP of an accepted one.
    pub(crate) fn reserve(
        &mut self,
        inbound: Option<IpAddr>,
        cfg: &TransportConfig,
    ) -> Result<(), Refusal> {
        if self.total >= cfg.max_connections {
            return Err(Refusal::Total(cfg.max_connections));
        }
        if let Some(ip) = inbound {
            let n = self.per_ip.entry(ip).or_insert(0);
            if *n >= cfg.max_connections_per_ip {
                return Err(Refusal::PerIp(cfg.max_connections_per_ip));
            }
            *n += 1;
        }
        self.total += 1;
        Ok(())
    }

    /// Gives back a slot taken by [`Registry::reserve`].
    pub(crate) fn release(&mut self, inbound: Option<IpAddr>) {
        self.total = self.total.saturating_sub(1);
        if let Some(ip) = inbound {
            if let Some(n) = self.per_ip.get_mut(&ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_ip.remove(&ip);
                }
            }
        }
    }

    /// Registers a connection whose slot was reserved.
    pub(crate) fn insert(&mut self, conn: Arc<Conn>) {
        let f = conn.flow;
        self.by_peer.insert((f.transport, f.remote), conn.clone());
        self.flows.insert(f, conn);
    }

    /// Unregisters a connection and frees its slot.
    pub(crate) fn remove(&mut self, conn: &Conn) {
        let f = conn.flow;
        if self.flows.remove(&f).is_none() {
            return;
        }
        let key = (f.transport, f.remote);
        if self.by_peer.get(&key).is_some_and(|c| c.flow == f) {
            // A second connection to the same peer (two concurrent connects) is not promoted:
            // the next send opens a new one.
            self.by_peer.remove(&key);
        }
        self.release((!conn.outbound).then_some(f.remote.ip()));
    }

    pub(crate) fn get(&self, flow: &Flow) -> Option<Arc<Conn>> {
        self.flows.get(flow).cloned()
    }

    /// An open connection to `addr` over `transport`, whoever opened it.
    pub(crate) fn find(&self, transport: Transport, addr: SocketAddr) -> Option<Arc<Conn>> {
        self.by_peer.get(&(transport, addr)).cloned()
    }

    pub(crate) fn flows(&self) -> Vec<Flow> {
        self.flows.keys().copied().collect()
    }
}
