//! What the layer hands out: datagrams to send and events for the transaction user (TU).

use std::fmt;

use bytes::Bytes;
use sip_core::{Flow, Message, Target};

use crate::timer::Timer;

/// Identifies one transaction of a [`TransactionLayer`](crate::TransactionLayer): the slot
/// it is stored in and that slot's generation. A slot comes back into use with the next
/// generation, so a stale key misses rather than hitting another transaction (until the slot
/// has been reused 2^40 times). [`KeyMap`](crate::KeyMap) keeps a TU's state by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransactionKey(pub(crate) u64);

impl TransactionKey {
    /// The key as a number (for logs and maps, or a tag passed through a transport).
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// The key that [`TransactionKey::as_u64`] gave (a driver gets its transport's send
    /// failures back by that number). A number that names no live transaction only misses.
    pub fn from_u64(n: u64) -> TransactionKey {
        TransactionKey(n)
    }
}

impl fmt::Display for TransactionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "txn#{}", self.0)
    }
}

/// Where a [`Transmit`] goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Back on the flow a request arrived on (responses, RFC 3261 §18.2.2).
    Flow(Flow),
    /// To a resolved target (requests and the ACK of a non-2xx response, §18.1.1).
    Target(Target),
}

/// Bytes the driver must send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The transaction it belongs to (`None` for stateless sends); a send failure is reported
    /// back with [`TransactionLayer::handle_transport_error`](crate::TransactionLayer::handle_transport_error).
    pub key: Option<TransactionKey>,
    /// Where to send.
    pub destination: Destination,
    /// The whole message.
    pub payload: Bytes,
    /// Whether this is a retransmission by a timer or of a stored message (for statistics
    /// and tracing only).
    pub retransmission: bool,
}

/// A request that created a server transaction.
#[derive(Debug, Clone)]
pub struct IncomingRequest {
    /// The new server transaction; answer with
    /// [`TransactionLayer::respond`](crate::TransactionLayer::respond).
    pub key: TransactionKey,
    /// The request.
    pub request: Message,
    /// The flow it came on.
    pub flow: Flow,
    /// RFC 3261 §8.2.2.2: the request has no To tag and its From tag, Call-ID and CSeq equal
    /// those of this other live server transaction, which it does not match (it reached us
    /// twice over different paths). A UAS answers 482 (Loop Detected); a proxy may ignore it.
    pub merged_with: Option<TransactionKey>,
}

/// What a received CANCEL cancels (RFC 3261 §9.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelMatch {
    /// The INVITE server transaction it matches, which has no final response yet: answer the
    /// CANCEL 200 and the INVITE 487 (Request Terminated).
    Pending(TransactionKey),
    /// The INVITE server transaction it matches already sent a final response: answer the
    /// CANCEL 200; it has no other effect.
    Answered(TransactionKey),
    /// No INVITE server transaction matches: answer 481 (Call/Transaction Does Not Exist).
    NotFound,
}

/// Why a transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TerminationReason {
    /// The transaction ran its course: Timer D, I, J, K, L or M fired (at once over reliable
    /// transports, where they are zero).
    Completed,
    /// A timer fired before the awaited message came: B or F (no final response; the TU treats
    /// it as 408, RFC 3261 §8.1.3.1), H (no ACK), C, CancelWait or ServerGuard.
    Timeout(Timer),
    /// The transport reported an error sending for this transaction (RFC 3261 §17.1.4,
    /// §17.2.4; a client TU treats it as 503).
    TransportError,
    /// The TU removed it ([`TransactionLayer::abort`](crate::TransactionLayer::abort)).
    Aborted,
}

impl TerminationReason {
    /// The status a UAC core reports for a client transaction that ended without a final
    /// response (RFC 3261 §8.1.3.1): 408 for a timeout, 503 for a transport error.
    pub fn equivalent_status(self) -> Option<u16> {
        match self {
            TerminationReason::Timeout(_) => Some(408),
            TerminationReason::TransportError => Some(503),
            TerminationReason::Completed | TerminationReason::Aborted => None,
        }
    }
}

/// Something the TU must know.
#[derive(Debug, Clone)]
pub enum Event {
    /// A new request (not ACK, not CANCEL) created a server transaction.
    Request(IncomingRequest),
    /// A CANCEL created its own non-INVITE server transaction (`cancel.key`), and this is the
    /// INVITE it targets.
    Cancel {
        /// The CANCEL's own server transaction and request.
        cancel: IncomingRequest,
        /// The INVITE server transaction it cancels.
        invite: CancelMatch,
    },
    /// A response for a client transaction: every provisional, the final, and in the INVITE
    /// client's Accepted state every further 2xx (retransmissions and other forks, RFC 6026
    /// §7.2) so that the UAC core can ACK each.
    Response {
        /// The client transaction.
        key: TransactionKey,
        /// The response.
        response: Message,
        /// The flow it came on.
        flow: Flow,
    },
    /// An ACK the transaction layer does not absorb: the ACK of a 2xx (its own branch, so it
    /// matches no transaction: `key` is `None`), or one matching an INVITE server transaction in
    /// Accepted (RFC 6026 §7.1). Delivered for the dialog layer.
    Ack {
        /// The INVITE server transaction it matched, if any.
        key: Option<TransactionKey>,
        /// The ACK.
        request: Message,
        /// The flow it came on.
        flow: Flow,
    },
    /// A response that matches no client transaction, typically a 2xx retransmission after
    /// Timer M (the UAC core re-sends its ACK) or a 2xx from another fork. RFC 6026 §7.2 asks
    /// a proxy to drop stray responses; a UA's dialog layer ACKs stray 2xx to INVITE.
    StrayResponse {
        /// The response.
        response: Message,
        /// The flow it came on.
        flow: Flow,
    },
    /// The transaction is gone; its key will not appear again.
    Terminated {
        /// The transaction.
        key: TransactionKey,
        /// Why.
        reason: TerminationReason,
    },
}
