//! Counters an operator reads (transactions by kind and state, retransmissions, failures).

use crate::txn::{Kind, State};

/// Counters since the layer was created.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Transactions created, by kind, indexed by [`Kind::index`].
    pub created: [u64; 4],
    /// Transactions terminated (any reason).
    pub terminated: u64,
    /// Messages re-sent: timer retransmissions (A, E, G), responses re-sent on a retransmitted
    /// request, ACKs re-sent on a retransmitted final response.
    pub retransmissions_sent: u64,
    /// Retransmissions received and absorbed (not passed to the TU).
    pub retransmissions_absorbed: u64,
    /// Transactions ended by a timeout (B, F, H, C, CancelWait, ServerGuard).
    pub timeouts: u64,
    /// Transport errors reported for live transactions.
    pub transport_errors: u64,
    /// Requests answered 503 because the table was full.
    pub overload_rejections: u64,
    /// Responses that matched no client transaction.
    pub stray_responses: u64,
    /// ACKs that matched no server transaction.
    pub stray_acks: u64,
    /// Requests flagged as merged (RFC 3261 §8.2.2.2).
    pub merged_requests: u64,
    /// Messages dropped because transaction matching could not use them.
    pub malformed: u64,
}

impl Stats {
    /// Transactions created of one kind.
    pub fn created_of(&self, kind: Kind) -> u64 {
        self.created[kind.index()]
    }
}

/// How many live transactions are in each state, per kind (a snapshot).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateCounts {
    pub(crate) counts: [[usize; State::COUNT]; 4],
}

impl StateCounts {
    /// Live transactions of this kind in this state.
    pub fn get(&self, kind: Kind, state: State) -> usize {
        self.counts
            .get(kind.index())
            .and_then(|row| row.get(state.index()))
            .copied()
            .unwrap_or(0)
    }

    /// Live transactions of this kind.
    pub fn of_kind(&self, kind: Kind) -> usize {
        self.counts.get(kind.index()).map_or(0, |r| r.iter().sum())
    }

    /// Every live transaction.
    pub fn total(&self) -> usize {
        self.counts.iter().flatten().sum()
    }
}
