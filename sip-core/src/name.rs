//! Header names: case-insensitive, with every compact form resolved (RFC 3261 §7.3.3, §20; the
//! IANA registry of compact forms).

use std::fmt;

macro_rules! header_names {
    ($( $(#[$doc:meta])* $variant:ident => $canon:literal, $lower:literal, $compact:literal; )*) => {
        /// A header name. Well-known headers are variants (so matching is a byte compare, not a
        /// string compare); any other name is [`HeaderName::Other`] and keeps its text in the
        /// message. Compact forms (`v`, `f`, `i`, …) resolve to the same variant as the long form.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        #[non_exhaustive]
        pub enum HeaderName {
            $( $(#[$doc])* $variant, )*
            /// A header this crate has no variant for; its name is kept verbatim.
            Other,
        }

        impl HeaderName {
            /// The canonical spelling, e.g. `"Call-ID"`; `None` for [`HeaderName::Other`].
            pub const fn canonical(self) -> Option<&'static str> {
                match self {
                    $( HeaderName::$variant => Some($canon), )*
                    HeaderName::Other => None,
                }
            }

            /// The compact form, if the header has one (`Via` → `'v'`).
            pub const fn compact(self) -> Option<char> {
                match self {
                    $( HeaderName::$variant => {
                        let c: char = $compact;
                        if c == ' ' { None } else { Some(c) }
                    } )*
                    HeaderName::Other => None,
                }
            }

        }

        /// Every known long name (lower case) with its variant, for the lookup table.
        const NAMES: &[(&[u8], HeaderName)] = &[ $( ($lower, HeaderName::$variant), )* ];
    };
}

header_names! {
    /// Accept (RFC 3261 §20.1)
    Accept => "Accept", b"accept", ' ';
    /// Accept-Contact (RFC 3841), compact `a`
    AcceptContact => "Accept-Contact", b"accept-contact", 'a';
    /// Accept-Encoding (RFC 3261 §20.2)
    AcceptEncoding => "Accept-Encoding", b"accept-encoding", ' ';
    /// Accept-Language (RFC 3261 §20.3)
    AcceptLanguage => "Accept-Language", b"accept-language", ' ';
    /// Alert-Info (RFC 3261 §20.4)
    AlertInfo => "Alert-Info", b"alert-info", ' ';
    /// Allow (RFC 3261 §20.5)
    Allow => "Allow", b"allow", ' ';
    /// Allow-Events (RFC 6665), compact `u`
    AllowEvents => "Allow-Events", b"allow-events", 'u';
    /// Authentication-Info (RFC 3261 §20.6)
    AuthenticationInfo => "Authentication-Info", b"authentication-info", ' ';
    /// Authorization (RFC 3261 §20.7)
    Authorization => "Authorization", b"authorization", ' ';
    /// Call-ID (RFC 3261 §20.8), compact `i`
    CallId => "Call-ID", b"call-id", 'i';
    /// Call-Info (RFC 3261 §20.9)
    CallInfo => "Call-Info", b"call-info", ' ';
    /// Contact (RFC 3261 §20.10), compact `m`
    Contact => "Contact", b"contact", 'm';
    /// Content-Disposition (RFC 3261 §20.11)
    ContentDisposition => "Content-Disposition", b"content-disposition", ' ';
    /// Content-Encoding (RFC 3261 §20.12), compact `e`
    ContentEncoding => "Content-Encoding", b"content-encoding", 'e';
    /// Content-Language (RFC 3261 §20.13)
    ContentLanguage => "Content-Language", b"content-language", ' ';
    /// Content-Length (RFC 3261 §20.14), compact `l`
    ContentLength => "Content-Length", b"content-length", 'l';
    /// Content-Type (RFC 3261 §20.15), compact `c`
    ContentType => "Content-Type", b"content-type", 'c';
    /// CSeq (RFC 3261 §20.16)
    CSeq => "CSeq", b"cseq", ' ';
    /// Date (RFC 3261 §20.17)
    Date => "Date", b"date", ' ';
    /// Error-Info (RFC 3261 §20.18)
    ErrorInfo => "Error-Info", b"error-info", ' ';
    /// Event (RFC 6665), compact `o`
    Event => "Event", b"event", 'o';
    /// Expires (RFC 3261 §20.19)
    Expires => "Expires", b"expires", ' ';
    /// From (RFC 3261 §20.20), compact `f`
    From => "From", b"from", 'f';
    /// Identity (RFC 8224), compact `y`
    Identity => "Identity", b"identity", 'y';
    /// In-Reply-To (RFC 3261 §20.21)
    InReplyTo => "In-Reply-To", b"in-reply-to", ' ';
    /// Max-Forwards (RFC 3261 §20.22)
    MaxForwards => "Max-Forwards", b"max-forwards", ' ';
    /// MIME-Version (RFC 3261 §20.24)
    MimeVersion => "MIME-Version", b"mime-version", ' ';
    /// Min-Expires (RFC 3261 §20.23)
    MinExpires => "Min-Expires", b"min-expires", ' ';
    /// Min-SE (RFC 4028)
    MinSe => "Min-SE", b"min-se", ' ';
    /// Organization (RFC 3261 §20.25)
    Organization => "Organization", b"organization", ' ';
    /// P-Asserted-Identity (RFC 3325)
    PAssertedIdentity => "P-Asserted-Identity", b"p-asserted-identity", ' ';
    /// P-Preferred-Identity (RFC 3325)
    PPreferredIdentity => "P-Preferred-Identity", b"p-preferred-identity", ' ';
    /// Path (RFC 3327)
    Path => "Path", b"path", ' ';
    /// Priority (RFC 3261 §20.26)
    Priority => "Priority", b"priority", ' ';
    /// Privacy (RFC 3323)
    Privacy => "Privacy", b"privacy", ' ';
    /// Proxy-Authenticate (RFC 3261 §20.27)
    ProxyAuthenticate => "Proxy-Authenticate", b"proxy-authenticate", ' ';
    /// Proxy-Authorization (RFC 3261 §20.28)
    ProxyAuthorization => "Proxy-Authorization", b"proxy-authorization", ' ';
    /// Proxy-Require (RFC 3261 §20.29)
    ProxyRequire => "Proxy-Require", b"proxy-require", ' ';
    /// RAck (RFC 3262)
    RAck => "RAck", b"rack", ' ';
    /// Reason (RFC 3326)
    Reason => "Reason", b"reason", ' ';
    /// Record-Route (RFC 3261 §20.30)
    RecordRoute => "Record-Route", b"record-route", ' ';
    /// Refer-To (RFC 3515), compact `r`
    ReferTo => "Refer-To", b"refer-to", 'r';
    /// Referred-By (RFC 3892), compact `b`
    ReferredBy => "Referred-By", b"referred-by", 'b';
    /// Reject-Contact (RFC 3841), compact `j`
    RejectContact => "Reject-Contact", b"reject-contact", 'j';
    /// Replaces (RFC 3891)
    Replaces => "Replaces", b"replaces", ' ';
    /// Reply-To (RFC 3261 §20.31)
    ReplyTo => "Reply-To", b"reply-to", ' ';
    /// Request-Disposition (RFC 3841), compact `d`
    RequestDisposition => "Request-Disposition", b"request-disposition", 'd';
    /// Require (RFC 3261 §20.32)
    Require => "Require", b"require", ' ';
    /// Retry-After (RFC 3261 §20.33)
    RetryAfter => "Retry-After", b"retry-after", ' ';
    /// Route (RFC 3261 §20.34)
    Route => "Route", b"route", ' ';
    /// RSeq (RFC 3262)
    RSeq => "RSeq", b"rseq", ' ';
    /// Server (RFC 3261 §20.35)
    Server => "Server", b"server", ' ';
    /// Session-Expires (RFC 4028), compact `x`
    SessionExpires => "Session-Expires", b"session-expires", 'x';
    /// SIP-ETag (RFC 3903)
    SipETag => "SIP-ETag", b"sip-etag", ' ';
    /// SIP-If-Match (RFC 3903)
    SipIfMatch => "SIP-If-Match", b"sip-if-match", ' ';
    /// Subject (RFC 3261 §20.36), compact `s`
    Subject => "Subject", b"subject", 's';
    /// Subscription-State (RFC 6665)
    SubscriptionState => "Subscription-State", b"subscription-state", ' ';
    /// Supported (RFC 3261 §20.37), compact `k`
    Supported => "Supported", b"supported", 'k';
    /// Timestamp (RFC 3261 §20.38)
    Timestamp => "Timestamp", b"timestamp", ' ';
    /// To (RFC 3261 §20.39), compact `t`
    To => "To", b"to", 't';
    /// Unsupported (RFC 3261 §20.40)
    Unsupported => "Unsupported", b"unsupported", ' ';
    /// User-Agent (RFC 3261 §20.41)
    UserAgent => "User-Agent", b"user-agent", ' ';
    /// Via (RFC 3261 §20.42), compact `v`
    Via => "Via", b"via", 'v';
    /// Warning (RFC 3261 §20.43)
    Warning => "Warning", b"warning", ' ';
    /// WWW-Authenticate (RFC 3261 §20.44)
    WwwAuthenticate => "WWW-Authenticate", b"www-authenticate", ' ';
}

impl HeaderName {
    /// Resolves a header name as written on the wire (any case, long or compact form).
    ///
    /// ```
    /// use sip_core::HeaderName;
    /// assert_eq!(HeaderName::from_bytes(b"v"), HeaderName::Via);
    /// assert_eq!(HeaderName::from_bytes(b"cALL-iD"), HeaderName::CallId);
    /// assert_eq!(HeaderName::from_bytes(b"X-Custom"), HeaderName::Other);
    /// ```
    #[inline]
    pub fn from_bytes(name: &[u8]) -> HeaderName {
        if name.len() == 1 {
            return Self::from_compact(name[0]);
        }
        // The spellings nearly every stack sends, by length and first byte: a jump and one
        // compare of a few words.
        let exact = match (name.len(), name[0]) {
            (3, b'V') => (name == b"Via").then_some(HeaderName::Via),
            (4, b'F') => (name == b"From").then_some(HeaderName::From),
            (2, b'T') => (name == b"To").then_some(HeaderName::To),
            (7, b'C') => {
                if name == b"Call-ID" {
                    Some(HeaderName::CallId)
                } else if name == b"Contact" {
                    Some(HeaderName::Contact)
                } else {
                    None
                }
            }
            (4, b'C') => (name == b"CSeq").then_some(HeaderName::CSeq),
            (12, b'M') => (name == b"Max-Forwards").then_some(HeaderName::MaxForwards),
            (12, b'C') => (name == b"Content-Type").then_some(HeaderName::ContentType),
            (14, b'C') => (name == b"Content-Length").then_some(HeaderName::ContentLength),
            (12, b'R') => (name == b"Record-Route").then_some(HeaderName::RecordRoute),
            (5, b'R') => (name == b"Route").then_some(HeaderName::Route),
            (10, b'U') => (name == b"User-Agent").then_some(HeaderName::UserAgent),
            (7, b'E') => (name == b"Expires").then_some(HeaderName::Expires),
            (5, b'A') => (name == b"Allow").then_some(HeaderName::Allow),
            (9, b'S') => (name == b"Supported").then_some(HeaderName::Supported),
            _ => None,
        };
        if let Some(h) = exact {
            return h;
        }
        // Open-addressing lookup in a table built at compile time: one hash over the name,
        // usually one case-insensitive compare.
        let mut slot = name_hash(name);
        loop {
            let idx = NAME_TABLE[slot];
            if idx == 0 {
                return HeaderName::Other;
            }
            let (known, variant) = NAMES[idx as usize - 1];
            if known.len() == name.len() && eq_folded(name, known) {
                return variant;
            }
            slot = (slot + 1) & (NAME_TABLE_SIZE - 1);
        }
    }

    fn from_compact(c: u8) -> HeaderName {
        match c.to_ascii_lowercase() {
            b'a' => HeaderName::AcceptContact,
            b'b' => HeaderName::ReferredBy,
            b'c' => HeaderName::ContentType,
            b'd' => HeaderName::RequestDisposition,
            b'e' => HeaderName::ContentEncoding,
            b'f' => HeaderName::From,
            b'i' => HeaderName::CallId,
            b'j' => HeaderName::RejectContact,
            b'k' => HeaderName::Supported,
            b'l' => HeaderName::ContentLength,
            b'm' => HeaderName::Contact,
            b'o' => HeaderName::Event,
            b'r' => HeaderName::ReferTo,
            b's' => HeaderName::Subject,
            b't' => HeaderName::To,
            b'u' => HeaderName::AllowEvents,
            b'v' => HeaderName::Via,
            b'x' => HeaderName::SessionExpires,
            b'y' => HeaderName::Identity,
            _ => HeaderName::Other,
        }
    }

    /// Whether RFC 3261 allows this header to appear at most once with a single value
    /// (§7.3.1): repeating it makes the request invalid (RFC 4475 multi01).
    pub fn is_single_valued(self) -> bool {
        matches!(
            self,
            HeaderName::CallId
                | HeaderName::CSeq
                | HeaderName::From
                | HeaderName::To
                | HeaderName::MaxForwards
                | HeaderName::ContentLength
                | HeaderName::ContentType
                | HeaderName::Expires
                | HeaderName::MinExpires
                | HeaderName::RSeq
                | HeaderName::RAck
        )
    }

    /// Whether the header's values are a comma-separated list that may be split
    /// (Via, Contact, Route, …). Headers such as WWW-Authenticate or Date contain commas
    /// that are not list separators, so they are never split.
    pub fn is_list(self) -> bool {
        !matches!(
            self,
            HeaderName::Authorization
                | HeaderName::ProxyAuthorization
                | HeaderName::WwwAuthenticate
                | HeaderName::ProxyAuthenticate
                | HeaderName::AuthenticationInfo
                | HeaderName::Date
                | HeaderName::Subject
                | HeaderName::UserAgent
                | HeaderName::Server
                | HeaderName::Organization
                | HeaderName::Timestamp
                | HeaderName::CallId
                | HeaderName::CSeq
                | HeaderName::RetryAfter
                | HeaderName::Identity
                | HeaderName::Other
        )
    }
}

const NAME_TABLE_SIZE: usize = 256;

/// A hash over the length and four folded bytes of a name (at least two bytes long). The
/// constants were chosen so that the known names do not collide; the table still probes.
#[inline]
const fn name_hash(n: &[u8]) -> usize {
    let len = n.len();
    let f = (n[0] | 0x20) as u32;
    let s = (n[1] | 0x20) as u32;
    let l = (n[len - 1] | 0x20) as u32;
    let m = (n[len / 2] | 0x20) as u32;
    let x = f
        .wrapping_mul(4)
        .wrapping_add(l.wrapping_mul(23))
        .wrapping_add((len as u32).wrapping_mul(61))
        .wrapping_add(m.wrapping_mul(3))
        .wrapping_add(s.wrapping_mul(7));
    (x ^ (x >> 8)) as usize & (NAME_TABLE_SIZE - 1)
}

/// Case-insensitive equality of a wire name with a known lower-case name of the same length.
/// Known names hold only letters and `-`, all of which have bit 0x20 set, and no token
/// character differs from a letter or `-` by that bit alone, so OR-ing 0x20 into the wire bytes
/// is an exact case-insensitive compare.
#[inline]
fn eq_folded(mut wire: &[u8], mut known: &[u8]) -> bool {
    const FOLD: u64 = 0x2020_2020_2020_2020;
    while let (Some((a, ra)), Some((b, rb))) = (
        wire.split_first_chunk::<8>(),
        known.split_first_chunk::<8>(),
    ) {
        if u64::from_ne_bytes(*a) | FOLD != u64::from_ne_bytes(*b) {
            return false;
        }
        wire = ra;
        known = rb;
    }
    wire.len() == known.len() && wire.iter().zip(known).all(|(a, b)| a | 0x20 == *b)
}

/// Slot → 1 + index into `NAMES` (0: empty), linear probing.
static NAME_TABLE: [u8; NAME_TABLE_SIZE] = {
    let mut t = [0u8; NAME_TABLE_SIZE];
    let mut i = 0;
    while i < NAMES.len() {
        let mut slot = name_hash(NAMES[i].0);
        while t[slot] != 0 {
            slot = (slot + 1) & (NAME_TABLE_SIZE - 1);
        }
        t[slot] = (i + 1) as u8;
        i += 1;
    }
    t
};

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.canonical().unwrap_or("(other)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_compact_form_resolves() {
        let pairs = [
            ('i', HeaderName::CallId),
            ('m', HeaderName::Contact),
            ('e', HeaderName::ContentEncoding),
            ('l', HeaderName::ContentLength),
            ('c', HeaderName::ContentType),
            ('f', HeaderName::From),
            ('s', HeaderName::Subject),
            ('k', HeaderName::Supported),
            ('t', HeaderName::To),
            ('v', HeaderName::Via),
            ('o', HeaderName::Event),
            ('u', HeaderName::AllowEvents),
            ('r', HeaderName::ReferTo),
            ('b', HeaderName::ReferredBy),
            ('x', HeaderName::SessionExpires),
            ('y', HeaderName::Identity),
            ('a', HeaderName::AcceptContact),
            ('j', HeaderName::RejectContact),
            ('d', HeaderName::RequestDisposition),
        ];
        for (c, name) in pairs {
            assert_eq!(HeaderName::from_bytes(&[c as u8]), name, "{c}");
            assert_eq!(
                HeaderName::from_bytes(&[c.to_ascii_uppercase() as u8]),
                name
            );
            assert_eq!(name.compact(), Some(c));
        }
        assert_eq!(HeaderName::from_bytes(b"q"), HeaderName::Other);
    }

    #[test]
    fn long_forms_any_case() {
        assert_eq!(
            HeaderName::from_bytes(b"MaX-fOrWaRdS"),
            HeaderName::MaxForwards
        );
        assert_eq!(
            HeaderName::from_bytes(b"www-authenticate"),
            HeaderName::WwwAuthenticate
        );
        assert_eq!(HeaderName::from_bytes(b"C%6Fntact"), HeaderName::Other);
        assert_eq!(HeaderName::from_bytes(&[b'x'; 100]), HeaderName::Other);
        assert_eq!(HeaderName::CallId.canonical(), Some("Call-ID"));
        assert_eq!(HeaderName::Via.compact(), Some('v'));
        assert_eq!(HeaderName::CSeq.compact(), None);
    }

    #[test]
    fn known_names_do_not_collide() {
        for (name, _) in NAMES {
            assert_eq!(
                NAME_TABLE[name_hash(name)] as usize,
                NAMES.iter().position(|(n, _)| n == name).unwrap() + 1
            );
        }
        // Near misses stay unknown.
        for miss in [
            &b"vib"[..],
            b"contacts",
            b"content-lengtH2",
            b"to-",
            b"x-via",
            b"call_id",
        ] {
            assert_eq!(HeaderName::from_bytes(miss), HeaderName::Other, "{miss:?}");
        }
    }

    #[test]
    fn canonical_round_trips() {
        for n in [
            HeaderName::Accept,
            HeaderName::PAssertedIdentity,
            HeaderName::SipIfMatch,
            HeaderName::MinSe,
            HeaderName::WwwAuthenticate,
        ] {
            let c = n.canonical().unwrap_or_default();
            assert_eq!(HeaderName::from_bytes(c.as_bytes()), n);
        }
    }
}
