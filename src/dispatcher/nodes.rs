//! The dispatcher's view of its nodes, without I/O: health from OPTIONS probes, load from
//! their answers, and the choice of a node for a request.

use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use sip_core::Target;

/// What a node does: which requests it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// REGISTER.
    Registrar,
    /// Every other method.
    Proxy,
}

/// A node to dispatch to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// Registrar or proxy.
    pub role: Role,
    /// Where it listens.
    pub target: Target,
    /// Most live transactions it may report and still get new requests (`None`: no cap).
    pub max_load: Option<u64>,
}

/// When a node is taken out and put back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthPolicy {
    /// Consecutive unanswered (or 5xx-answered) probes that take a node out (default 3).
    pub down_after: u32,
    /// Consecutive answered probes that put it back (default 2).
    pub up_after: u32,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        HealthPolicy {
            down_after: 3,
            up_after: 2,
        }
    }
}

/// Index of a node in its [`NodeSet`] (stable: nodes are added, never removed).
pub type NodeId = usize;

/// What the dispatcher knows of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStats {
    /// Its configuration.
    pub config: NodeConfig,
    /// In service.
    pub up: bool,
    /// Its load as last reported (live transactions).
    pub load: u64,
    /// Requests sent to it.
    pub forwarded: u64,
    /// Consecutive probes missed.
    pub misses: u32,
}

#[derive(Debug)]
struct Node {
    config: NodeConfig,
    up: bool,
    misses: u32,
    answers: u32,
    load: u64,
    forwarded: u64,
    /// The probe in flight (its sequence number).
    outstanding: Option<u64>,
}

/// How long a Call-ID stays pinned to the node its first request went to: 64·T1, the life of
/// its transactions (a CANCEL or a non-2xx ACK follows its INVITE within it).
pub const AFFINITY_TTL: Duration = Duration::from_secs(32);

/// Slots of the affinity table (direct-mapped by Call-ID hash: bounded, no allocation).
const AFFINITY_SLOTS: usize = 1 << 16;

#[derive(Debug, Clone, Copy)]
struct Slot {
    hash: u64,
    node: NodeId,
    until: Instant,
}

/// The nodes, their health and load, and the choice of a node per request.
///
/// The node for a Call-ID is chosen by weighted rendezvous hashing over the nodes of the
/// request's role that are up and under their maximum load, each weighted by its headroom
/// (`1 - load/max`, or `1000/(1000 + load)` without a maximum): the same Call-ID picks the
/// same node while the set and loads stay put, and a node that dies moves only its own
/// Call-IDs. So that a change of load does not move a dialog's later requests (CANCEL, ACK,
/// retransmissions) elsewhere, the first choice is pinned for [`AFFINITY_TTL`] in a bounded
/// table.
#[derive(Debug)]
pub struct NodeSet {
    nodes: Vec<Node>,
    policy: HealthPolicy,
    affinity: Vec<Option<Slot>>,
    seq: u64,
}

fn hash_of(parts: impl Hash) -> u64 {
    // SipHash with fixed keys: the same in every process and after a restart.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

impl NodeSet {
    /// No nodes yet.
    pub fn new(policy: HealthPolicy) -> NodeSet {
        NodeSet {
            nodes: Vec::new(),
            policy,
            affinity: vec![None; AFFINITY_SLOTS],
            seq: 0,
        }
    }

    /// Adds a node (in service at once; a dead one is taken out after
    /// [`HealthPolicy::down_after`] probes). A node already there (same role and target) is
    /// not added again; its maximum load is updated. Returns its id.
    pub fn add(&mut self, config: NodeConfig) -> NodeId {
        if let Some(i) = self
            .nodes
            .iter()
            .position(|n| n.config.role == config.role && n.config.target == config.target)
        {
            self.nodes[i].config.max_load = config.max_load;
            return i;
        }
        self.nodes.push(Node {
            config,
            up: true,
            misses: 0,
            answers: 0,
            load: 0,
            forwarded: 0,
            outstanding: None,
        });
        self.nodes.len() - 1
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Where a node listens.
    pub fn target(&self, id: NodeId) -> Option<&Target> {
        self.nodes.get(id).map(|n| &n.config.target)
    }

    /// Whether `addr` is one of the nodes (requests from a node are not dispatched again).
    pub fn is_node(&self, addr: std::net::SocketAddr) -> bool {
        self.nodes.iter().any(|n| n.config.target.addr == addr)
    }

    fn eligible(&self, id: NodeId, role: Role) -> bool {
        let n = &self.nodes[id];
        n.config.role == role && n.up && n.config.max_load.is_none_or(|m| n.load < m)
    }

    fn weight(n: &Node) -> f64 {
        match n.config.max_load {
            Some(m) if m > 0 => (m.saturating_sub(n.load)) as f64 / m as f64,
            _ => 1000.0 / (1000.0 + n.load as f64),
        }
    }

    /// The node for a request of `role` with this Call-ID, counted as forwarded to; `None`
    /// when no node of the role is up and under its maximum load.
    pub fn pick(&mut self, role: Role, call_id: &str, now: Instant) -> Option<NodeId> {
        let h = hash_of((call_id, role));
        let slot = (h as usize) % AFFINITY_SLOTS;
        if let Some(s) = self.affinity[slot] {
            if s.hash == h && s.until > now && self.eligible(s.node, role) {
                self.nodes[s.node].forwarded += 1;
                return Some(s.node);
            }
        }
        let mut best: Option<(f64, NodeId)> = None;
        for id in 0..self.nodes.len() {
            if !self.eligible(id, role) {
                continue;
            }
            let n = &self.nodes[id];
            let r = hash_of((h, &n.config.target));
            // A uniform draw in (0, 1) from the hash; score = w / -ln(u) (weighted rendezvous).
            let u = ((r >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            let score = Self::weight(n).max(1e-9) / -u.ln();
            if best.is_none_or(|(b, _)| score > b) {
                best = Some((score, id));
            }
        }
        let (_, id) = best?;
        self.affinity[slot] = Some(Slot {
            hash: h,
            node: id,
            until: now + AFFINITY_TTL,
        });
        self.nodes[id].forwarded += 1;
        Some(id)
    }

    /// Starts a probe round: a probe still unanswered from the last round is a miss. Returns
    /// the nodes to probe now, each with the sequence number its OPTIONS carries.
    pub fn probe_round(&mut self) -> Vec<(NodeId, u64)> {
        let mut out = Vec::with_capacity(self.nodes.len());
        for id in 0..self.nodes.len() {
            if self.nodes[id].outstanding.take().is_some() {
                self.miss(id);
            }
            self.seq += 1;
            self.nodes[id].outstanding = Some(self.seq);
            out.push((id, self.seq));
        }
        out
    }

    /// A probe was answered with `status`, reporting `load` (when it says). A 5xx is a miss
    /// (the node is there but refuses work); a stale or unknown probe is ignored.
    pub fn probe_answered(&mut self, id: NodeId, seq: u64, status: u16, load: Option<u64>) {
        let Some(n) = self.nodes.get_mut(id) else {
            return;
        };
        if n.outstanding != Some(seq) {
            return;
        }
        n.outstanding = None;
        if let Some(l) = load {
            n.load = l;
        }
        if (500..600).contains(&status) {
            self.miss(id);
            return;
        }
        let policy = self.policy;
        let n = &mut self.nodes[id];
        n.misses = 0;
        n.answers = n.answers.saturating_add(1);
        if !n.up && n.answers >= policy.up_after {
            n.up = true;
            tracing::info!(node = %n.config.target.addr, role = ?n.config.role, "node back in service");
        }
    }

    fn miss(&mut self, id: NodeId) {
        let policy = self.policy;
        let n = &mut self.nodes[id];
        n.answers = 0;
        n.misses = n.misses.saturating_add(1);
        if n.up && n.misses >= policy.down_after {
            n.up = false;
            tracing::warn!(node = %n.config.target.addr, role = ?n.config.role, misses = n.misses, "node taken out of service");
        }
    }

    /// Every node's state.
    pub fn stats(&self) -> Vec<NodeStats> {
        self.nodes
            .iter()
            .map(|n| NodeStats {
                config: n.config.clone(),
                up: n.up,
                load: n.load,
                forwarded: n.forwarded,
                misses: n.misses,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sip_core::Transport;

    fn node(role: Role, port: u16, max: Option<u64>) -> NodeConfig {
        NodeConfig {
            role,
            target: Target::new(Transport::Udp, format!("192.0.2.1:{port}").parse().unwrap()),
            max_load: max,
        }
    }

    fn set(n: u16) -> NodeSet {
        let mut s = NodeSet::new(HealthPolicy::default());
        for p in 0..n {
            s.add(node(Role::Proxy, 5060 + p, Some(1000)));
        }
        s.add(node(Role::Registrar, 6000, None));
        s
    }

    #[test]
    fn role_and_call_id_affinity() {
        let mut s = set(3);
        let now = Instant::now();
        assert_eq!(s.pick(Role::Registrar, "r1", now), Some(3));
        let first = s.pick(Role::Proxy, "call-1", now).unwrap();
        assert!(first < 3);
        for _ in 0..10 {
            assert_eq!(s.pick(Role::Proxy, "call-1", now), Some(first));
        }
        // The same node again after the pin expired: the hash alone decides.
        let later = now + AFFINITY_TTL + Duration::from_secs(1);
        assert_eq!(s.pick(Role::Proxy, "call-1", later), Some(first));
        // Call-IDs spread over the three.
        let mut seen = [0u32; 3];
        for i in 0..3000 {
            seen[s.pick(Role::Proxy, &format!("c{i}"), now).unwrap()] += 1;
        }
        assert!(seen.iter().all(|&n| n > 700), "{seen:?}");
    }

    #[test]
    fn health_out_after_n_misses_back_after_m_answers() {
        let mut s = set(2);
        let now = Instant::now();
        let victim = s.pick(Role::Proxy, "x", now).unwrap();
        let other = 1 - victim;
        for round in 0..4 {
            for (id, seq) in s.probe_round() {
                if id != victim {
                    s.probe_answered(id, seq, 200, Some(0));
                }
            }
            // Misses are counted when the next round starts: out at the start of round 3.
            assert_eq!(s.stats()[victim].up, round < 3, "round {round}");
        }
        assert_eq!(s.pick(Role::Proxy, "x", now), Some(other));
        for i in 0..100 {
            assert_eq!(s.pick(Role::Proxy, &format!("n{i}"), now), Some(other));
        }
        // Back after two answers.
        for answered in 1..=2 {
            for (id, seq) in s.probe_round() {
                s.probe_answered(id, seq, 200, Some(0));
            }
            assert_eq!(s.stats()[victim].up, answered == 2);
        }
        // A 5xx answer is a miss; a stale sequence number is ignored.
        let round = s.probe_round();
        s.probe_answered(round[0].0, round[0].1 + 100, 200, None);
        s.probe_answered(round[0].0, round[0].1, 503, None);
        assert_eq!(s.stats()[round[0].0].misses, 1);
    }

    #[test]
    fn never_beyond_max_load_and_weighted_by_headroom() {
        let mut s = NodeSet::new(HealthPolicy::default());
        let a = s.add(node(Role::Proxy, 1, Some(100)));
        let b = s.add(node(Role::Proxy, 2, Some(100)));
        for (id, seq) in s.probe_round() {
            s.probe_answered(id, seq, 200, Some(if id == a { 90 } else { 10 }));
        }
        let now = Instant::now();
        let mut to_a = 0;
        for i in 0..2000 {
            if s.pick(Role::Proxy, &format!("w{i}"), now) == Some(a) {
                to_a += 1;
            }
        }
        // Headroom 0.1 against 0.9: about 10 % to a.
        assert!((100..=320).contains(&to_a), "{to_a}");
        for (id, seq) in s.probe_round() {
            s.probe_answered(id, seq, 200, Some(100));
        }
        assert_eq!(s.pick(Role::Proxy, "fresh", now), None);
        assert_eq!(s.add(node(Role::Proxy, 2, Some(200))), b);
        assert_eq!(s.pick(Role::Proxy, "fresh", now), Some(b));
    }
}
