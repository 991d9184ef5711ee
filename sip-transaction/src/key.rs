//! Matching keys (RFC 3261 §17.1.3, §17.2.3, §8.2.2.2), written as bytes into a reusable
//! buffer so that a lookup allocates nothing; the layer's hash maps are keyed by them.

use sip_core::uri::Host;
use sip_core::via::Via;
use sip_core::{Message, Method, Transport};

/// The method a request is matched under: ACK matches its INVITE (§17.2.3).
pub(crate) fn method_class<'a>(method: Method<'a>) -> &'a str {
    match method {
        Method::Ack => "INVITE",
        m => m.as_str(),
    }
}

/// §17.1.3: a response matches a client transaction by the branch of its top Via and the
/// method of its CSeq.
pub(crate) fn client(buf: &mut Vec<u8>, branch: &str, cseq_method: &str) {
    buf.clear();
    buf.extend_from_slice(branch.as_bytes());
    buf.push(0);
    buf.extend_from_slice(cseq_method.as_bytes());
}

/// Writes sent-by normalised: host names lower-cased, addresses in canonical text, the
/// default port of the Via transport when none is written.
fn sent_by(buf: &mut Vec<u8>, via: &Via<'_>) {
    // Keys are compared, never shown: addresses go in binary, tagged so that a host name
    // can never collide with an address.
    match via.sent_by_host() {
        Host::Domain(d) => {
            buf.push(b'd');
            buf.extend(d.bytes().map(|c| c.to_ascii_lowercase()));
        }
        Host::Ipv4(a) => {
            buf.push(b'4');
            buf.extend_from_slice(&a.octets());
        }
        Host::Ipv6(a) => {
            buf.push(b'6');
            buf.extend_from_slice(&a.octets());
        }
    }
    let port = via.sent_by_port().unwrap_or_else(|| {
        Transport::from_name(via.transport()).map_or(5060, Transport::default_port)
    });
    buf.extend_from_slice(&port.to_le_bytes());
}

/// §17.2.3 with the magic cookie: branch, sent-by and method (ACK as INVITE).
pub(crate) fn server(buf: &mut Vec<u8>, via: &Via<'_>, method: &str) {
    buf.clear();
    buf.extend_from_slice(via.branch().unwrap_or_default().as_bytes());
    buf.push(0);
    sent_by(buf, via);
    buf.push(0);
    buf.extend_from_slice(method.as_bytes());
}

/// §17.2.3 without the magic cookie (RFC 2543 peers): Request-URI, From tag, Call-ID, CSeq
/// number, top Via and method class. The To tag is compared after the lookup (for an ACK it
/// must equal the tag of the response we sent, which the key cannot know in advance).
pub(crate) fn rfc2543(buf: &mut Vec<u8>, msg: &Message, via: &Via<'_>, seq: u32, method: &str) {
    buf.clear();
    // A first byte no branch starts with keeps these keys apart from the §17.2.3 ones.
    buf.push(1);
    buf.extend_from_slice(msg.uri_str().unwrap_or_default().as_bytes());
    buf.push(0);
    let from_tag = msg.from().ok().and_then(|f| f.tag().map(str::to_owned));
    buf.extend_from_slice(from_tag.unwrap_or_default().as_bytes());
    buf.push(0);
    buf.extend_from_slice(msg.call_id().unwrap_or_default().as_bytes());
    buf.push(0);
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.push(0);
    buf.extend_from_slice(via.as_str().as_bytes());
    buf.push(0);
    buf.extend_from_slice(method.as_bytes());
}

/// §8.2.2.2: From tag, Call-ID and CSeq of a request without a To tag. `false` (and nothing
/// written) when the request has a To tag or lacks a From tag.
pub(crate) fn merge(buf: &mut Vec<u8>, msg: &Message) -> bool {
    buf.clear();
    if msg.to().ok().and_then(|t| t.tag()).is_some() {
        return false;
    }
    let Some(from_tag) = msg.from().ok().and_then(|f| f.tag()) else {
        return false;
    };
    let Ok(cseq) = msg.cseq() else {
        return false;
    };
    buf.extend_from_slice(from_tag.as_bytes());
    buf.push(0);
    buf.extend_from_slice(msg.call_id().unwrap_or_default().as_bytes());
    buf.push(0);
    buf.extend_from_slice(&cseq.seq.to_le_bytes());
    buf.push(0);
    buf.extend_from_slice(cseq.method.as_str().as_bytes());
    true
}

/// The To tag of a request, owned.
pub(crate) fn to_tag(msg: &Message) -> Option<String> {
    msg.to().ok().and_then(|t| t.tag().map(str::to_owned))
}
