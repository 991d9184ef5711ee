//! Messages the transaction layer writes itself: the ACK of a non-2xx final response
//! (RFC 3261 §17.1.1.3), CANCEL (§9.1), 100 Trying (§17.2.1) and the overload 503 (§21.5.4).

use std::collections::hash_map::DefaultHasher;
use std::fmt::Write;
use std::hash::{Hash, Hasher};

use bytes::Bytes;
use sip_core::builder::RequestBuilder;
use sip_core::{HeaderName, Message, Method};

/// Folded header values (`CRLF WSP`) are equivalent to a space (RFC 3261 §7.3.1); builders
/// refuse line breaks, so unfold before copying a value.
fn unfold(v: &str) -> std::borrow::Cow<'_, str> {
    if v.bytes().any(|c| c == b'\r' || c == b'\n') {
        std::borrow::Cow::Owned(v.replace(['\r', '\n'], " "))
    } else {
        std::borrow::Cow::Borrowed(v)
    }
}

/// A request built from the original: same Request-URI, top Via only, From, Call-ID, CSeq
/// number with `method`, Route headers; `to` as given.
fn derived_request(original: &Message, method: Method<'_>, to: &str) -> Option<Message> {
    let uri = original.uri_str()?;
    let via = original.values(HeaderName::Via).next()?;
    let from = original.header(HeaderName::From)?;
    let call_id = original.call_id()?;
    let seq = original.cseq().ok()?.seq;
    let mut b = RequestBuilder::new(method, uri)
        .header("Via", unfold(via))
        .header("From", unfold(from))
        .header("To", unfold(to))
        .header("Call-ID", unfold(call_id))
        .header("CSeq", format!("{seq} {}", method.as_str()));
    for route in original.values(HeaderName::Route) {
        b = b.header("Route", unfold(route));
    }
    b.build().ok()
}

/// RFC 3261 §17.1.1.3: the ACK of a non-2xx final response, with the response's To (its tag).
pub(crate) fn ack_for(original: &Bytes, response: &Message) -> Option<Bytes> {
    let original = Message::parse(original.clone()).ok()?;
    let to = response
        .header(HeaderName::To)
        .or_else(|| original.header(HeaderName::To))?;
    derived_request(&original, Method::Ack, to).map(|m| m.to_bytes())
}

/// RFC 3261 §9.1: a CANCEL for an INVITE: same Request-URI, Call-ID, To, From, CSeq number
/// and top Via (so the same branch), the INVITE's Route headers.
pub(crate) fn cancel_for(original: &Bytes) -> Option<Message> {
    let original = Message::parse(original.clone()).ok()?;
    let to = original.header(HeaderName::To)?;
    derived_request(&original, Method::Cancel, to)
}

/// RFC 3261 §17.2.1: the 100 Trying an INVITE server transaction sends for a slow TU.
pub(crate) fn trying_for(request: &Bytes) -> Option<Bytes> {
    let request = Message::parse(request.clone()).ok()?;
    request.response(100).build().ok().map(|m| m.to_bytes())
}

/// A To tag for a stateless response: the same for every retransmission of a request
/// (RFC 3261 §8.2.7 asks a stateless UAS for that), derived from its identifiers.
pub(crate) fn stateless_tag(request: &Message) -> String {
    let mut h = DefaultHasher::new();
    request.call_id().hash(&mut h);
    request.header(HeaderName::From).hash(&mut h);
    request.header(HeaderName::CSeq).hash(&mut h);
    request.values(HeaderName::Via).next().hash(&mut h);
    let mut tag = String::with_capacity(16);
    let _ = write!(tag, "{:016x}", h.finish());
    tag
}

/// The 503 (Service Unavailable) with Retry-After the layer answers when its table is full.
pub(crate) fn overload_response(request: &Message, retry_after: u32) -> Option<Bytes> {
    request
        .response(503)
        .to_tag(&stateless_tag(request))
        .header("Retry-After", retry_after.to_string())
        .build()
        .ok()
        .map(|m| m.to_bytes())
}

/// The To tag of a stored message, if it parses (RFC 2543 matching only).
pub(crate) fn to_tag_of(bytes: &Bytes) -> Option<String> {
    let m = Message::parse(bytes.clone()).ok()?;
    let to = m.to().ok()?;
    to.tag().map(str::to_owned)
}
