//! Role-independent validation (RFC 3261 §8.2, §16.3): what every element checks before it acts
//! on a message, separate from parsing so that a server can parse tolerantly and then decide.
//!
//! Not checked here, because the answer depends on the receiving element's role: the
//! Request-URI scheme (a UAS answers 416, a proxy may forward), Require/Proxy-Require (420),
//! Max-Forwards reaching zero (483 at a proxy), Accept and Content-Type (406/415 at a UAS).

use crate::addr::{ContactValue, NameAddr};
use crate::error::{Error, Result};
use crate::headers::{self, CSeq, MediaType};
use crate::message::Message;
use crate::name::HeaderName;
use crate::uri::Uri;
use crate::via::Via;

/// Headers every request and response must carry (RFC 3261 §8.1.1).
const MANDATORY: [HeaderName; 5] = [
    HeaderName::To,
    HeaderName::From,
    HeaderName::CallId,
    HeaderName::CSeq,
    HeaderName::Via,
];

/// Headers whose value is one name-addr (RFC 3261 §25.1).
const SINGLE_ADDR: [HeaderName; 2] = [HeaderName::From, HeaderName::To];

fn bad(name: HeaderName, e: Error) -> Error {
    let name = name.canonical().unwrap_or("(other)");
    match e {
        Error::Syntax { what, offset } => Error::InvalidHeader {
            name,
            offset,
            reason: what,
        },
        Error::UnsupportedUriScheme { offset } => Error::InvalidHeader {
            name,
            offset,
            reason: "unsupported URI scheme",
        },
        other => other,
    }
}

/// `scheme ":"` with scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) (RFC 3261 §25.1
/// absoluteURI), the minimum an unknown-scheme Request-URI must satisfy.
fn is_absolute_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let mut b = scheme.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic())
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
        && !rest.is_empty()
}

impl Message {
    /// Checks the rules of RFC 3261 §8.2 and §16.3 that do not depend on the receiver's role:
    /// mandatory headers present, single-valued headers not repeated, every Via, From, To,
    /// Contact, Route, Record-Route, CSeq, Call-ID, Max-Forwards, Expires and Content-Type
    /// well-formed, the CSeq method equal to the request's method, and a Request-URI without
    /// headers. A request without Max-Forwards is accepted (RFC 2543 peers; RFC 4475 inv2543).
    ///
    /// The error says what is wrong and [`Error::response_status`] what to answer.
    ///
    /// ```
    /// use sip_core::Message;
    /// let m = Message::parse(&b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
    ///     To: <sip:a@b>\r\nFrom: <sip:c@d>;tag=1\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n"[..])?;
    /// assert_eq!(m.validate().unwrap_err().response_status().0, 400);
    /// # Ok::<(), sip_core::Error>(())
    /// ```
    pub fn validate(&self) -> Result<()> {
        self.validate_top_via().map(|_| ())
    }

    /// [`validate`](Self::validate), returning the top Via it parsed on the way, so that a
    /// transport stamping `received`/`rport` (RFC 3261 §18.2.1) does not parse it again
    /// (`None` when the Via lines hold no value, which `validate` lets pass).
    ///
    /// ```
    /// use sip_core::Message;
    /// let m = Message::parse(&b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
    ///     To: <sip:a@b>\r\nFrom: <sip:c@d>;tag=1\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n"[..])?;
    /// assert_eq!(m.validate_top_via()?.and_then(|v| v.branch()), Some("z9hG4bK1"));
    /// # Ok::<(), sip_core::Error>(())
    /// ```
    pub fn validate_top_via(&self) -> Result<Option<Via<'_>>> {
        // One pass over the header lines finds where each header starts and the first repeated
        // single-valued one; the checks below then run in their documented order without
        // scanning the lines again for each name.
        let index = HeaderIndex::of(self);
        for name in MANDATORY {
            if index.first(name).is_none() {
                return Err(Error::MissingHeader {
                    name: name.canonical().unwrap_or("(other)"),
                });
            }
        }
        if let Some(name) = index.duplicate {
            return Err(Error::DuplicateHeader {
                name: name.canonical().unwrap_or("(other)"),
            });
        }

        let cseq = CSeq::parse(self.indexed_text(&index, HeaderName::CSeq)?)
            .map_err(|e| bad(HeaderName::CSeq, e))?;
        if let Some(method) = self.method() {
            if cseq.method != method {
                return Err(Error::CSeqMethodMismatch);
            }
            self.check_request_uri()?;
        }

        let call_id = self.indexed_text(&index, HeaderName::CallId)?;
        if !headers::is_valid_call_id(call_id) {
            return Err(Error::InvalidHeader {
                name: "Call-ID",
                offset: 0,
                reason: "not a word [@ word]",
            });
        }
        for name in SINGLE_ADDR {
            NameAddr::parse(self.indexed_text(&index, name)?).map_err(|e| bad(name, e))?;
        }
        let mut top = None;
        for v in index.values(self, HeaderName::Via) {
            let via = Via::parse(v).map_err(|e| bad(HeaderName::Via, e))?;
            top.get_or_insert(via);
        }
        for v in index.values(self, HeaderName::Contact) {
            ContactValue::parse(v).map_err(|e| bad(HeaderName::Contact, e))?;
        }
        for name in [HeaderName::Route, HeaderName::RecordRoute] {
            for v in index.values(self, name) {
                NameAddr::parse(v).map_err(|e| bad(name, e))?;
            }
        }
        if let Some(v) = self.indexed_opt(&index, HeaderName::MaxForwards)? {
            headers::parse_max_forwards(v).map_err(|e| bad(HeaderName::MaxForwards, e))?;
        }
        for name in [HeaderName::Expires, HeaderName::MinExpires] {
            if let Some(v) = self.indexed_opt(&index, name)? {
                headers::parse_expires(v).map_err(|e| bad(name, e))?;
            }
        }
        if let Some(v) = self.indexed_opt(&index, HeaderName::ContentType)? {
            MediaType::parse(v).map_err(|e| bad(HeaderName::ContentType, e))?;
        }
        Ok(top)
    }

    fn check_request_uri(&self) -> Result<()> {
        let Some(uri) = self.uri_str() else {
            return Ok(());
        };
        match Uri::parse(uri) {
            // RFC 3261 §19.1.1: headers are not allowed in a Request-URI (RFC 4475 escruri).
            Ok(u) if u.headers().is_some() => Err(Error::Syntax {
                what: "Request-URI (headers are not allowed)",
                offset: 0,
            }),
            Ok(_) => Ok(()),
            // The scheme is the role's business (416 at a UAS), as long as the URI is a URI.
            Err(Error::UnsupportedUriScheme { .. }) if is_absolute_uri(uri) => Ok(()),
            Err(Error::UnsupportedUriScheme { offset }) => Err(Error::Syntax {
                what: "Request-URI",
                offset,
            }),
            Err(e) => Err(e),
        }
    }

    fn indexed_text(&self, index: &HeaderIndex, name: HeaderName) -> Result<&str> {
        self.indexed_opt(index, name)?.ok_or(Error::MissingHeader {
            name: name.canonical().unwrap_or("(other)"),
        })
    }

    fn indexed_opt(&self, index: &HeaderIndex, name: HeaderName) -> Result<Option<&str>> {
        let Some(e) = index.first(name).and_then(|i| self.headers.get(i)) else {
            return Ok(None);
        };
        crate::text::to_str(self.entry_value(e))
            .map(Some)
            .map_err(|e| Error::InvalidHeader {
                name: name.canonical().unwrap_or("(other)"),
                offset: e.valid_up_to(),
                reason: "not UTF-8",
            })
    }
}

/// Where each header's first line is, and the first single-valued header that is repeated:
/// what validation would otherwise find by scanning the lines once per header name.
struct HeaderIndex {
    /// Per [`HeaderName`] (its `u8` value), the index of its first line plus one (0: none).
    /// Sized for the names there are (cleared for every message validated).
    first: [u32; NAMES],
    duplicate: Option<HeaderName>,
}

/// How many [`HeaderName`]s there are (`Other` is the last).
const NAMES: usize = HeaderName::Other as usize + 1;

impl HeaderIndex {
    fn of(msg: &Message) -> HeaderIndex {
        let mut index = HeaderIndex {
            first: [0; NAMES],
            duplicate: None,
        };
        for (i, h) in msg.headers.iter().enumerate() {
            let Some(slot) = index.first.get_mut(h.name as u8 as usize) else {
                continue;
            };
            if *slot == 0 {
                // Entries hold u32 offsets, so a message has fewer than u32::MAX lines.
                *slot = u32::try_from(i + 1).unwrap_or(u32::MAX);
            } else if h.name.is_single_valued() && index.duplicate.is_none() {
                index.duplicate = Some(h.name);
            }
        }
        index
    }

    fn first(&self, name: HeaderName) -> Option<usize> {
        match self.first.get(name as u8 as usize) {
            None | Some(0) => None,
            Some(&n) => Some(n as usize - 1),
        }
    }

    /// Every value of `name`, as [`Message::values`], starting at its first line.
    fn values<'m>(&self, msg: &'m Message, name: HeaderName) -> crate::message::Values<'m> {
        match self.first(name) {
            Some(i) => msg.values_from(name, i),
            None => msg.values_from(name, msg.headers.len()),
        }
    }
}
