//! One transaction: its kind, state, stored messages and armed timers, and the effects sink the
//! state machines of [`client`](crate::client) and [`server`](crate::server) write into.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sip_core::{Flow, Target};

use crate::event::{Destination, Event, TerminationReason, TransactionKey, Transmit};
use crate::stats::Stats;
use crate::timer::{Armed, Slot, Timer, TimerQueue, SLOTS};

/// The four transaction machines of RFC 3261 §17.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// INVITE client transaction (§17.1.1, RFC 6026 §7.2).
    InviteClient,
    /// Non-INVITE client transaction (§17.1.2).
    NonInviteClient,
    /// INVITE server transaction (§17.2.1, RFC 6026 §7.1).
    InviteServer,
    /// Non-INVITE server transaction (§17.2.2).
    NonInviteServer,
}

impl Kind {
    /// Every kind, in [`Kind::index`] order.
    pub const ALL: [Kind; 4] = [
        Kind::InviteClient,
        Kind::NonInviteClient,
        Kind::InviteServer,
        Kind::NonInviteServer,
    ];

    /// A dense index 0..4 (for counter arrays).
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether this is a client transaction.
    pub fn is_client(self) -> bool {
        matches!(self, Kind::InviteClient | Kind::NonInviteClient)
    }

    /// Whether this is an INVITE transaction.
    pub fn is_invite(self) -> bool {
        matches!(self, Kind::InviteClient | Kind::InviteServer)
    }
}

/// A transaction state (RFC 3261 §17 figures 5–8, RFC 6026 figures 5 and 7). Terminated is
/// not a state a live transaction can be observed in: it is removed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// INVITE client: request sent, nothing received.
    Calling,
    /// Non-INVITE client: request sent, nothing received. Non-INVITE server: request received,
    /// nothing sent.
    Trying,
    /// A provisional response was received (client) or sent (server); an INVITE server
    /// transaction starts here.
    Proceeding,
    /// A final response (non-2xx for INVITE) was received (client) or sent (server).
    Completed,
    /// INVITE server: the ACK of the non-2xx final response arrived.
    Confirmed,
    /// RFC 6026: a 2xx final response to INVITE was received (client) or sent (server).
    Accepted,
}

impl State {
    /// Number of states.
    pub const COUNT: usize = 6;

    /// A dense index 0..[`State::COUNT`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The peer of a transaction: where its messages go.
#[derive(Debug, Clone)]
pub(crate) enum Peer {
    /// A client transaction sends its request (and ACK) to a target.
    Target(Target),
    /// A server transaction answers on the flow the request came on.
    Flow(Flow),
}

/// One live transaction.
///
/// Size: about 300 bytes on 64-bit targets (see the `memory` test), plus the stored messages
/// (the request's bytes, and the last response or the ACK) which share their buffers with the
/// messages the TU handled, plus the index keys (about 60 bytes each).
#[derive(Debug)]
pub(crate) struct Transaction {
    pub(crate) key: TransactionKey,
    pub(crate) kind: Kind,
    pub(crate) state: State,
    /// Over a reliable transport nothing is retransmitted and D, I, J, K are zero.
    pub(crate) reliable: bool,
    /// INVITE client: a CANCEL was sent for it (RFC 3261 §9.1, Timer CancelWait).
    pub(crate) cancelled: bool,
    pub(crate) peer: Peer,
    /// The request as sent (client) or received (server).
    pub(crate) request: Bytes,
    /// Server: the last response sent (the 2xx only for RFC 2543 matching). INVITE client in
    /// Completed: the ACK.
    pub(crate) stored: Option<Bytes>,
    /// The current retransmission interval of A, E or G.
    pub(crate) interval: Duration,
    pub(crate) timers: Armed,
    /// The key this transaction is indexed under (empty when not indexed).
    pub(crate) index_key: Box<[u8]>,
    /// The RFC 3261 §8.2.2.2 merge key (server transactions of requests without a To tag).
    pub(crate) merge_key: Option<Box<[u8]>>,
}

/// What a step of a state machine leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Continue,
    Terminate(TerminationReason),
}

/// Where the state machines put their effects.
#[derive(Debug, Default)]
pub(crate) struct Out {
    pub(crate) transmits: VecDeque<Transmit>,
    pub(crate) events: VecDeque<Event>,
    pub(crate) stats: Stats,
    pub(crate) timers: TimerQueue,
}

impl Transaction {
    pub(crate) fn new(
        key: TransactionKey,
        kind: Kind,
        peer: Peer,
        reliable: bool,
        request: Bytes,
    ) -> Transaction {
        let state = match kind {
            Kind::InviteClient => State::Calling,
            Kind::NonInviteClient | Kind::NonInviteServer => State::Trying,
            Kind::InviteServer => State::Proceeding,
        };
        Transaction {
            key,
            kind,
            state,
            reliable,
            cancelled: false,
            peer,
            request,
            stored: None,
            interval: Duration::ZERO,
            timers: [None; SLOTS],
            index_key: Box::default(),
            merge_key: None,
        }
    }

    /// Arms `timer` in `slot` to fire `after` from `now`, replacing what the slot held. A
    /// deadline beyond what `Instant` can hold is never reached: the slot is left empty.
    pub(crate) fn arm(
        &mut self,
        out: &mut Out,
        slot: Slot,
        timer: Timer,
        now: Instant,
        after: Duration,
    ) {
        let Some(at) = now.checked_add(after) else {
            self.disarm(slot);
            return;
        };
        if let Some(s) = self.timers.get_mut(slot as usize) {
            *s = Some((at, timer));
            out.timers.push(at, after, self.key.0, slot);
        }
    }

    /// Clears a slot (the heap entry goes stale).
    pub(crate) fn disarm(&mut self, slot: Slot) {
        if let Some(s) = self.timers.get_mut(slot as usize) {
            *s = None;
        }
    }

    pub(crate) fn disarm_all(&mut self) {
        self.timers = [None; SLOTS];
    }

    /// Whether a slot holds `timer`.
    pub(crate) fn armed(&self, slot: Slot) -> Option<Timer> {
        self.timers
            .get(slot as usize)
            .copied()
            .flatten()
            .map(|(_, t)| t)
    }

    /// Queues `payload` to the transaction's peer.
    pub(crate) fn send(&self, out: &mut Out, payload: Bytes, retransmission: bool) {
        let destination = match &self.peer {
            Peer::Target(t) => Destination::Target(t.clone()),
            Peer::Flow(f) => Destination::Flow(*f),
        };
        if retransmission {
            out.stats.retransmissions_sent += 1;
        }
        out.transmits.push_back(Transmit {
            key: Some(self.key),
            destination,
            payload,
            retransmission,
        });
    }

    /// Enters a lingering state for `wait` (Timer D, I, J, K, L or M): terminates at once
    /// when the wait is zero (reliable transports).
    /// Drops the request once the final response is in: nothing retransmits it any more and
    /// the ACK of a non-2xx is already built, while a UDP transaction lingers for up to 32 s
    /// (Timers J, L, M) to absorb retransmissions, so thousands of them would otherwise keep a
    /// message each. An RFC 2543 server transaction keeps it: its To-tag matching reads it.
    pub(crate) fn release_request(&mut self) {
        let rfc2543_server = !self.kind.is_client() && self.index_key.first() == Some(&1);
        if !rfc2543_server {
            self.request = Bytes::new();
        }
    }

    pub(crate) fn linger(
        &mut self,
        now: Instant,
        out: &mut Out,
        timer: Timer,
        wait: Duration,
    ) -> Step {
        self.disarm_all();
        if wait.is_zero() {
            return Step::Terminate(TerminationReason::Completed);
        }
        self.arm(out, Slot::Linger, timer, now, wait);
        Step::Continue
    }

    /// `wait` over unreliable transports, zero over reliable ones.
    pub(crate) fn unreliable_only(&self, wait: Duration) -> Duration {
        if self.reliable {
            Duration::ZERO
        } else {
            wait
        }
    }
}
