//! The error type of the transaction layer.

use crate::txn::State;

/// Why the layer refused an input or a TU action.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The message lacks what transaction matching needs (a top Via, a CSeq); the driver may
    /// answer a request with [`sip_core::Error::response_status`].
    #[error("message unusable for a transaction: {0}")]
    Malformed(#[from] sip_core::Error),
    /// A request was expected.
    #[error("not a request")]
    NotARequest,
    /// A response was expected.
    #[error("not a response")]
    NotAResponse,
    /// ACK is not sent through a client transaction: the ACK of a non-2xx is built by the
    /// INVITE client transaction, the ACK of a 2xx is sent with
    /// [`TransactionLayer::send_stateless`](crate::TransactionLayer::send_stateless).
    #[error("ACK is not sent in a client transaction")]
    AckIsNotATransaction,
    /// The request's top Via has no branch with the RFC 3261 magic cookie (§8.1.1.7).
    #[error("the top Via has no z9hG4bK branch")]
    MissingBranch,
    /// The CSeq method differs from the request method (§8.1.1.5).
    #[error("the CSeq method differs from the request method")]
    CSeqMethodMismatch,
    /// A client transaction with this branch and method already exists.
    #[error("a client transaction with this branch and method exists")]
    DuplicateTransaction,
    /// No live transaction has this key (it terminated, or never existed).
    #[error("no such transaction")]
    UnknownTransaction,
    /// The action does not fit the transaction's kind or state (a second final response, a
    /// response on a client transaction, a non-2xx after a 2xx…).
    #[error("{status} cannot be sent in state {state:?}")]
    InvalidState {
        /// The state the transaction is in.
        state: State,
        /// The status of the refused response (0 when not a response action).
        status: u16,
    },
    /// The table is full ([`Config::with_max_transactions`](crate::Config::with_max_transactions)).
    #[error("too many transactions")]
    Overloaded,
}
