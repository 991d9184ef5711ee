//! The dialog ID (RFC 3261 §12): Call-ID, local tag, remote tag.

use std::fmt;

use sip_core::Message;

use crate::Error;

/// Which side of the dialog-forming transaction we were (RFC 3261 §12.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// We sent the dialog-forming request: the local tag is the From-tag.
    Uac,
    /// We received it: the local tag is the To-tag we put in the response.
    Uas,
}

/// A dialog's identifier (RFC 3261 §12): the Call-ID, the local tag and the remote tag. For the
/// UAC the local tag is the From-tag and the remote tag the To-tag; for the UAS the reverse.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DialogId {
    /// The Call-ID.
    pub call_id: String,
    /// Our tag.
    pub local_tag: String,
    /// The peer's tag.
    pub remote_tag: String,
}

impl DialogId {
    /// The ID a request received in a dialog belongs to (§12.2.2): its To-tag is our tag, its
    /// From-tag the peer's. `None` without a Call-ID, a From-tag or a To-tag.
    pub fn of_incoming_request(request: &Message) -> Option<DialogId> {
        let (call_id, local, remote) = Self::request_parts(request)?;
        Some(DialogId {
            call_id: call_id.to_owned(),
            local_tag: local.to_owned(),
            remote_tag: remote.to_owned(),
        })
    }

    /// The ID a response to one of our requests belongs to (§12.1.2): its From-tag is our tag,
    /// its To-tag the peer's.
    pub fn of_incoming_response(response: &Message) -> Option<DialogId> {
        let call_id = response.call_id()?;
        let from = response.from().ok()?;
        let to = response.to().ok()?;
        Some(DialogId {
            call_id: call_id.to_owned(),
            local_tag: from.tag()?.to_owned(),
            remote_tag: to.tag()?.to_owned(),
        })
    }

    /// (Call-ID, To-tag, From-tag) of a request, borrowed.
    pub(crate) fn request_parts(request: &Message) -> Option<(&str, &str, &str)> {
        let call_id = request.call_id()?;
        let to = request.to().ok()?.tag()?;
        let from = request.from().ok()?.tag()?;
        Some((call_id, to, from))
    }

    /// Whether this ID equals (call_id, local_tag, remote_tag). Tags compare exactly (RFC 3261
    /// §19.3 makes them tokens compared case-sensitively), as does the Call-ID (§20.8).
    pub fn is(&self, call_id: &str, local_tag: &str, remote_tag: &str) -> bool {
        self.call_id == call_id && self.local_tag == local_tag && self.remote_tag == remote_tag
    }

    /// Heap bytes held.
    pub fn heap_size(&self) -> usize {
        self.call_id.capacity() + self.local_tag.capacity() + self.remote_tag.capacity()
    }
}

impl fmt::Display for DialogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{};local={};remote={}",
            self.call_id, self.local_tag, self.remote_tag
        )
    }
}

/// The tag of a From or To header, required.
pub(crate) fn tag_of(
    value: Result<sip_core::addr::NameAddr<'_>, sip_core::Error>,
) -> Result<String, Error> {
    value
        .ok()
        .and_then(|a| a.tag().map(str::to_owned))
        .ok_or(Error::NoTag)
}
