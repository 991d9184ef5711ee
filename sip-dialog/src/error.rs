//! The one error type of the dialog layer.

/// What went wrong creating a dialog or building or checking a request in one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A header a dialog needs (Call-ID, From, To, CSeq) is missing or malformed.
    #[error("missing or malformed {0} header")]
    Header(&'static str),
    /// RFC 3261 §12.1: a dialog is created by a response with a To-tag (or a request with a
    /// From-tag); this one has none.
    #[error("no tag to form a dialog")]
    NoTag,
    /// RFC 3261 §12.1.1, §12.1.2: a dialog-forming request or response must carry a Contact
    /// (the remote target); a 2xx to INVITE without one is an error.
    #[error("dialog-forming message without a Contact")]
    NoContact,
    /// Only 101–299 responses create dialogs.
    #[error("status {0} does not create a dialog")]
    NotDialogForming(u16),
    /// The dialog has terminated: no more requests can be built in it.
    #[error("the dialog has terminated")]
    Terminated,
    /// The local CSeq would pass 2³¹ − 1 (RFC 3261 §8.1.1.5).
    #[error("CSeq space exhausted")]
    CSeqExhausted,
    /// The dialog table is full (count or memory cap).
    #[error("dialog table full")]
    TableFull,
    /// A dialog with this ID exists already.
    #[error("dialog exists already")]
    Duplicate,
    /// Building the message failed.
    #[error(transparent)]
    Build(#[from] sip_core::Error),
}
