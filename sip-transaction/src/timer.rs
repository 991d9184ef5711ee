//! The RFC 3261 §17 timers and the one queue that holds every armed timer of the layer.
//!
//! The queue is a binary heap of `(deadline, transaction, slot)` with lazy cancellation: a
//! transaction keeps the deadline armed in each of its few slots, and an entry popped from the
//! heap fires only if it still equals what its slot holds. Cancelling is clearing a slot, O(1);
//! a stale entry costs one pop later. The heap is compacted when stale entries dominate.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::time::Instant;

/// A transaction timer (RFC 3261 §17, Table 4 of §A; RFC 6026 §7 for L and M).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// INVITE request retransmission (T1, doubling), unreliable transports only.
    A,
    /// INVITE transaction timeout in Calling (64·T1).
    B,
    /// INVITE client transaction in Proceeding too long (RFC 3261 §16.6; see
    /// [`Config::with_timer_c`](crate::Config::with_timer_c)).
    C,
    /// Wait time for response retransmissions in Completed (≥ 32 s unreliable, 0 reliable).
    D,
    /// Non-INVITE request retransmission (T1, doubling up to T2), unreliable only.
    E,
    /// Non-INVITE transaction timeout (64·T1).
    F,
    /// INVITE final response retransmission (T1, doubling up to T2), unreliable only.
    G,
    /// Wait time for ACK receipt (64·T1).
    H,
    /// Wait time for ACK retransmissions in Confirmed (T4 unreliable, 0 reliable).
    I,
    /// Wait time for non-INVITE request retransmissions (64·T1 unreliable, 0 reliable).
    J,
    /// Wait time for response retransmissions of a non-INVITE client (T4 unreliable, 0 reliable).
    K,
    /// RFC 6026: wait time for INVITE retransmissions and ACKs in the server's Accepted (64·T1).
    L,
    /// RFC 6026: wait time for 2xx retransmissions in the client's Accepted (64·T1).
    M,
    /// RFC 3261 §17.2.1: send 100 Trying when the TU has not answered an INVITE in 200 ms.
    Trying100,
    /// RFC 3261 §9.1: 64·T1 after a CANCEL without a final response to the INVITE, the INVITE
    /// client transaction is given up.
    CancelWait,
    /// The TU did not send a final response in time (see
    /// [`Config::with_server_guard`](crate::Config::with_server_guard)).
    ServerGuard,
}

impl fmt::Display for Timer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The slots a transaction arms timers in; at most one timer per slot at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Slot {
    /// A, E, G, and the 100 Trying timer of an INVITE server.
    Retransmit = 0,
    /// B, F, H, CancelWait.
    Timeout = 1,
    /// D, I, J, K, L, M: how long a transaction lingers in its last state.
    Linger = 2,
    /// C and the server guard.
    Guard = 3,
}

/// Number of [`Slot`]s.
pub(crate) const SLOTS: usize = 4;

impl Slot {
    pub(crate) fn from_index(i: u8) -> Option<Slot> {
        match i {
            0 => Some(Slot::Retransmit),
            1 => Some(Slot::Timeout),
            2 => Some(Slot::Linger),
            3 => Some(Slot::Guard),
            _ => None,
        }
    }
}

/// The armed timers of one transaction, one per slot.
pub(crate) type Armed = [Option<(Instant, Timer)>; SLOTS];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    at: Instant,
    id: u64,
    slot: u8,
}

/// Every armed timer of a layer, earliest first.
#[derive(Debug, Default)]
pub(crate) struct TimerQueue {
    heap: BinaryHeap<Reverse<Entry>>,
}

impl TimerQueue {
    pub(crate) fn push(&mut self, at: Instant, id: u64, slot: Slot) {
        self.heap.push(Reverse(Entry {
            at,
            id,
            slot: slot as u8,
        }));
    }

    /// The earliest entry, stale or not.
    pub(crate) fn peek(&self) -> Option<(Instant, u64, u8)> {
        self.heap.peek().map(|Reverse(e)| (e.at, e.id, e.slot))
    }

    /// Removes the earliest entry.
    pub(crate) fn pop(&mut self) -> Option<(Instant, u64, u8)> {
        self.heap.pop().map(|Reverse(e)| (e.at, e.id, e.slot))
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Drops the entries `live` says are stale.
    pub(crate) fn retain(&mut self, mut live: impl FnMut(Instant, u64, u8) -> bool) {
        self.heap.retain(|Reverse(e)| live(e.at, e.id, e.slot));
    }
}
