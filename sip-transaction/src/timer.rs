//! The RFC 3261 §17 timers and the one queue that holds every armed timer of the layer.
//!
//! The queue holds `(deadline, transaction, slot)` entries with lazy cancellation: a
//! transaction keeps the deadline armed in each of its few slots, and an entry taken from the
//! queue fires only if it still equals what its slot holds. Cancelling is clearing a slot, O(1);
//! a stale entry costs one pop later. The queue is compacted when stale entries dominate.
//!
//! Transaction timers come in a handful of durations (T1 doublings, 64·T1, T4, Timer C), and
//! timers of one duration armed as time goes on fall due in the order they were armed. So the
//! queue keeps one FIFO lane per duration, O(1) to push and pop, and finds the earliest among
//! the lanes' fronts; a binary heap takes what fits no lane (more distinct durations than
//! lanes, or a deadline earlier than its lane's last one, when a caller's clock went back).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

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
    /// One FIFO per duration, deadlines non-decreasing from front to back.
    lanes: Vec<(Duration, VecDeque<Entry>)>,
    /// What no lane takes.
    heap: BinaryHeap<Reverse<Entry>>,
    len: usize,
}

/// Where the earliest entry is.
#[derive(Clone, Copy)]
enum Source {
    Lane(usize),
    Heap,
}

/// Distinct durations given a lane of their own.
const LANES: usize = 32;

impl TimerQueue {
    /// Queues a timer armed at `at - after` to fire at `at`.
    pub(crate) fn push(&mut self, at: Instant, after: Duration, id: u64, slot: Slot) {
        let e = Entry {
            at,
            id,
            slot: slot as u8,
        };
        self.len += 1;
        let lane = match self.lanes.iter().position(|(d, _)| *d == after) {
            Some(i) => self.lanes.get_mut(i),
            None if self.lanes.len() < LANES => {
                self.lanes.push((after, VecDeque::new()));
                self.lanes.last_mut()
            }
            None => None,
        };
        match lane {
            Some((_, q)) if q.back().is_none_or(|b| b.at <= at) => q.push_back(e),
            _ => self.heap.push(Reverse(e)),
        }
    }

    fn earliest(&self) -> Option<(Entry, Source)> {
        let mut best = self.heap.peek().map(|Reverse(e)| (*e, Source::Heap));
        for (i, (_, q)) in self.lanes.iter().enumerate() {
            if let Some(e) = q.front() {
                if best.is_none_or(|(b, _)| e.at < b.at) {
                    best = Some((*e, Source::Lane(i)));
                }
            }
        }
        best
    }

    /// The earliest entry, stale or not.
    pub(crate) fn peek(&self) -> Option<(Instant, u64, u8)> {
        self.earliest().map(|(e, _)| (e.at, e.id, e.slot))
    }

    /// Removes the earliest entry.
    pub(crate) fn pop(&mut self) -> Option<(Instant, u64, u8)> {
        let (e, src) = self.earliest()?;
        match src {
            Source::Heap => {
                self.heap.pop();
            }
            Source::Lane(i) => {
                if let Some((_, q)) = self.lanes.get_mut(i) {
                    q.pop_front();
                }
            }
        }
        self.len -= 1;
        Some((e.at, e.id, e.slot))
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Drops the entries `live` says are stale.
    pub(crate) fn retain(&mut self, mut live: impl FnMut(Instant, u64, u8) -> bool) {
        self.heap.retain(|Reverse(e)| live(e.at, e.id, e.slot));
        for (_, q) in &mut self.lanes {
            q.retain(|e| live(e.at, e.id, e.slot));
            q.shrink_to(q.len().max(64));
        }
        self.len = self.heap.len() + self.lanes.iter().map(|(_, q)| q.len()).sum::<usize>();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the durations and however the clock moves (forwards, or back as a caller's
        /// injected time may), entries come out earliest first, each once, interleaved with
        /// pushes and compaction.
        #[test]
        fn entries_come_out_earliest_first(
            ops in proptest::collection::vec((0u64..3000, 0u64..50, 0u8..5, any::<bool>()), 1..400),
        ) {
            let base = Instant::now();
            let mut q = TimerQueue::default();
            let mut model: Vec<(Instant, u64)> = Vec::new();
            let mut clock = 0u64;
            for (n, (step, after_ms, kind, pop)) in ops.into_iter().enumerate() {
                // Mostly forwards; now and then back.
                clock = if kind == 0 { clock.saturating_sub(step) } else { clock + step / 10 };
                // Few distinct durations, and more than there are lanes.
                let after = Duration::from_millis(if kind == 4 { after_ms * 997 } else { after_ms % 7 * 500 });
                let at = base + Duration::from_millis(clock) + after;
                let id = n as u64;
                q.push(at, after, id, Slot::Retransmit);
                model.push((at, id));
                if pop {
                    let (at, id, _) = q.pop().unwrap();
                    let min = model.iter().map(|(a, _)| *a).min().unwrap();
                    prop_assert_eq!(at, min);
                    let i = model.iter().position(|e| *e == (at, id)).unwrap();
                    model.swap_remove(i);
                }
                if n % 97 == 0 {
                    q.retain(|_, id, _| id % 3 != 0);
                    model.retain(|(_, id)| id % 3 != 0);
                }
                prop_assert_eq!(q.len(), model.len());
            }
            while let Some((at, id, _)) = q.pop() {
                let min = model.iter().map(|(a, _)| *a).min().unwrap();
                prop_assert_eq!(at, min);
                let i = model.iter().position(|e| *e == (at, id)).unwrap();
                model.swap_remove(i);
            }
            prop_assert!(model.is_empty());
        }
    }
}
