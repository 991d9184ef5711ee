//! Small typed headers (RFC 3261 §20, RFC 6665, RFC 3265): CSeq, Max-Forwards,
//! Content-Length, Expires / Min-Expires, Content-Type / Accept media types, option-tag and
//! method lists, Event, Subscription-State, Retry-After, and Call-ID validation.
//!
//! Each parser takes one value without the header name; surrounding LWS and folding are allowed.

use std::fmt;

use crate::addr::trim_with_offset;
use crate::error::{Error, Result};
use crate::method::Method;
use crate::params::{walk_header_params, Params};
use crate::text::{
    is_lws_byte, is_token_byte, is_word, parse_u32_digits, parse_u32_saturating, scan_token,
    skip_lws, split_values,
};

fn invalid(name: &'static str, offset: usize, reason: &'static str) -> Error {
    Error::InvalidHeader {
        name,
        offset,
        reason,
    }
}

/// Splits `1*DIGIT` off the front of `t`; returns (digits, rest).
fn leading_digits(t: &str) -> (&str, &str) {
    let n = t.bytes().take_while(u8::is_ascii_digit).count();
    t.split_at(n)
}

/// The CSeq header (RFC 3261 §20.16): a sequence number in the full `u32` range (real PBXs
/// send values above 2^31; leading zeros allowed) and a method, possibly on a folded line.
///
/// ```
/// use sip_core::{headers::CSeq, Method};
/// let c = CSeq::parse("0009\r\n  INVITE").unwrap();
/// assert_eq!(c, CSeq { seq: 9, method: Method::Invite });
/// assert_eq!(CSeq::parse("4294967295 BYE").unwrap().seq, u32::MAX);
/// assert!(CSeq::parse("4294967296 BYE").is_err());
/// assert_eq!(c.to_string(), "9 INVITE");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CSeq<'a> {
    /// The sequence number.
    pub seq: u32,
    /// The method (compared case-sensitively with the request's, RFC 3261 §8.1.1.5).
    pub method: Method<'a>,
}

impl<'a> CSeq<'a> {
    /// Parses `1*DIGIT LWS Method`.
    pub fn parse(s: &'a str) -> Result<CSeq<'a>> {
        let (base, t) = trim_with_offset(s);
        let (digits, _) = leading_digits(t);
        let seq =
            parse_u32_digits(digits).ok_or_else(|| invalid("CSeq", base, "bad sequence number"))?;
        let b = t.as_bytes();
        let m = skip_lws(b, digits.len());
        if m == digits.len() {
            return Err(invalid("CSeq", base + m, "missing method"));
        }
        let e = scan_token(b, m);
        if e == m || e != b.len() {
            return Err(invalid("CSeq", base + e, "bad method"));
        }
        Ok(CSeq {
            seq,
            method: Method::from_token(&t[m..]),
        })
    }
}

impl fmt::Display for CSeq<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

/// Max-Forwards (RFC 3261 §20.22): `1*DIGIT` in 0..=255, leading zeros allowed (`0068`).
///
/// ```
/// assert_eq!(sip_core::headers::parse_max_forwards(" 0068 ").unwrap(), 68);
/// assert!(sip_core::headers::parse_max_forwards("256").is_err());
/// ```
pub fn parse_max_forwards(s: &str) -> Result<u8> {
    let (base, t) = trim_with_offset(s);
    parse_u32_digits(t)
        .and_then(|v| u8::try_from(v).ok())
        .ok_or_else(|| invalid("Max-Forwards", base, "not a number in 0..=255"))
}

/// Content-Length (RFC 3261 §20.14): `1*DIGIT`, at most `u32::MAX`.
///
/// ```
/// assert_eq!(sip_core::headers::parse_content_length("150").unwrap(), 150);
/// assert!(sip_core::headers::parse_content_length("-1").is_err());
/// ```
pub fn parse_content_length(s: &str) -> Result<usize> {
    let (base, t) = trim_with_offset(s);
    parse_u32_digits(t)
        .map(|v| v as usize)
        .ok_or(Error::InvalidContentLength { offset: base })
}

/// Expires and Min-Expires (RFC 3261 §20.19, §20.23): delta-seconds. The RFC bounds the value
/// by 2^32-1; a longer run of digits is taken as `u32::MAX` (saturating) rather than rejected,
/// as for the Contact `expires` parameter.
///
/// ```
/// assert_eq!(sip_core::headers::parse_expires("3600").unwrap(), 3600);
/// assert_eq!(sip_core::headers::parse_expires("99999999999").unwrap(), u32::MAX);
/// assert!(sip_core::headers::parse_expires("1h").is_err());
/// ```
pub fn parse_expires(s: &str) -> Result<u32> {
    let (base, t) = trim_with_offset(s);
    parse_u32_saturating(t).ok_or_else(|| invalid("Expires", base, "not delta-seconds"))
}

/// Call-ID syntax (RFC 3261 §20.8, §25.1): `word [ "@" word ]`.
///
/// ```
/// use sip_core::headers::is_valid_call_id;
/// assert!(is_valid_call_id("f81d4fae-7dec-11d0-a765-00a0c91e6bf6@foo.bar.com"));
/// assert!(!is_valid_call_id("a b"));
/// assert!(!is_valid_call_id("a@b@c"));
/// ```
pub fn is_valid_call_id(s: &str) -> bool {
    match s.split_once('@') {
        Some((l, r)) => is_word(l) && is_word(r),
        None => is_word(s),
    }
}

/// A media type (RFC 3261 §20.15 Content-Type, §20.1 Accept): `type "/" subtype *(";" param)`.
///
/// ```
/// use sip_core::headers::MediaType;
/// let m = MediaType::parse("Application/MANSCDP+xml; charset=utf-8").unwrap();
/// assert!(m.essence_eq("application/manscdp+xml"));
/// assert_eq!(m.subtype(), "MANSCDP+xml");
/// assert_eq!(m.params().get("charset"), Some(Some("utf-8")));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MediaType<'a> {
    raw: &'a str,
    main: &'a str,
    sub: &'a str,
    params: &'a str,
}

impl<'a> MediaType<'a> {
    /// Parses one media type (tolerating LWS around `/`, `;` and `=`).
    pub fn parse(s: &'a str) -> Result<MediaType<'a>> {
        let (base, t) = trim_with_offset(s);
        let b = t.as_bytes();
        let e = scan_token(b, 0);
        let slash = skip_lws(b, e);
        if e == 0 || b.get(slash) != Some(&b'/') {
            return Err(invalid("Content-Type", base + slash, "bad media type"));
        }
        let ss = skip_lws(b, slash + 1);
        let se = scan_token(b, ss);
        if se == ss {
            return Err(invalid("Content-Type", base + ss, "bad media subtype"));
        }
        walk_header_params(&t[se..], base + se, |_, _| {})?;
        Ok(MediaType {
            raw: t,
            main: &t[..e],
            sub: &t[ss..se],
            params: &t[se..],
        })
    }

    /// The type as written (`application`).
    pub fn main_type(&self) -> &'a str {
        self.main
    }

    /// The subtype as written (`sdp`).
    pub fn subtype(&self) -> &'a str {
        self.sub
    }

    /// The parameters.
    pub fn params(&self) -> Params<'a> {
        Params::from_validated(self.params)
    }

    /// True if `type/subtype` equals `essence` ignoring ASCII case (media types are
    /// case-insensitive, RFC 2045 §5.1), e.g. `essence_eq("application/sdp")`.
    pub fn essence_eq(&self, essence: &str) -> bool {
        match essence.split_once('/') {
            Some((m, s)) => self.main.eq_ignore_ascii_case(m) && self.sub.eq_ignore_ascii_case(s),
            None => false,
        }
    }

    /// The value as written.
    pub fn as_str(&self) -> &'a str {
        self.raw
    }
}

impl fmt::Display for MediaType<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.raw)
    }
}

/// A comma-separated list of tokens: Allow (methods), Supported, Require, Proxy-Require,
/// Unsupported (option-tags), RFC 3261 §20.5, §20.32, §20.29, §20.37, §20.40. May be empty.
///
/// ```
/// use sip_core::headers::TokenList;
/// let l = TokenList::parse("INVITE, ACK ,\r\n BYE").unwrap();
/// assert!(l.contains_exact("ACK"));
/// assert!(!l.contains_exact("ack"));
/// let s = TokenList::parse("100rel, Timer").unwrap();
/// assert!(s.contains("timer"));
/// assert_eq!(s.iter().collect::<Vec<_>>(), ["100rel", "Timer"]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenList<'a> {
    raw: &'a str,
}

impl<'a> TokenList<'a> {
    /// Parses a whole header line's value (or one element of it).
    pub fn parse(s: &'a str) -> Result<TokenList<'a>> {
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if is_token_byte(b[i]) {
                i = scan_token(b, i);
                let j = skip_lws(b, i);
                if j < b.len() && b[j] != b',' {
                    return Err(invalid("token list", j, "expected ','"));
                }
                i = j;
            } else if b[i] == b',' || is_lws_byte(b[i]) {
                i += 1;
            } else {
                return Err(invalid("token list", i, "not a token"));
            }
        }
        Ok(TokenList { raw: s })
    }

    /// The tokens in order.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> {
        split_values(self.raw)
    }

    /// True if the list holds `token`, ignoring ASCII case (option-tags, RFC 3261 §19.2).
    pub fn contains(&self, token: &str) -> bool {
        self.iter().any(|t| t.eq_ignore_ascii_case(token))
    }

    /// True if the list holds `token` exactly (methods are case-sensitive, RFC 3261 §7.1).
    pub fn contains_exact(&self, token: &str) -> bool {
        self.iter().any(|t| t == token)
    }

    /// True if there is no token.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// The value as written.
    pub fn as_str(&self) -> &'a str {
        self.raw
    }
}

impl fmt::Display for TokenList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.raw)
    }
}

/// Parses `token *(SEMI generic-param)`: returns (trimmed value, token, raw params).
fn token_and_params<'a>(s: &'a str, name: &'static str) -> Result<(&'a str, &'a str, &'a str)> {
    let (base, t) = trim_with_offset(s);
    let e = scan_token(t.as_bytes(), 0);
    if e == 0 {
        return Err(invalid(name, base, "expected a token"));
    }
    walk_header_params(&t[e..], base + e, |_, _| {})?;
    Ok((t, &t[..e], &t[e..]))
}

/// The Event header (RFC 6665 §8.2.1): an event package (with templates, e.g.
/// `presence.winfo`) and parameters such as `id`.
///
/// ```
/// use sip_core::headers::Event;
/// let e = Event::parse("presence;id=17").unwrap();
/// assert_eq!(e.event_type(), "presence");
/// assert_eq!(e.id(), Some("17"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Event<'a> {
    raw: &'a str,
    event_type: &'a str,
    params: &'a str,
}

impl<'a> Event<'a> {
    /// Parses one Event value (compact form `o`).
    pub fn parse(s: &'a str) -> Result<Event<'a>> {
        let (raw, event_type, params) = token_and_params(s, "Event")?;
        Ok(Event {
            raw,
            event_type,
            params,
        })
    }

    /// The event type as written (compare case-insensitively, RFC 6665 §8.2.1).
    pub fn event_type(&self) -> &'a str {
        self.event_type
    }

    /// The parameters.
    pub fn params(&self) -> Params<'a> {
        Params::from_validated(self.params)
    }

    /// The `id` parameter.
    pub fn id(&self) -> Option<&'a str> {
        self.params().get("id").flatten()
    }

    /// The value as written.
    pub fn as_str(&self) -> &'a str {
        self.raw
    }
}

impl fmt::Display for Event<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.raw)
    }
}

/// The Subscription-State header (RFC 6665 §8.2.3): `active`, `pending`, `terminated` or an
/// extension, with `expires`, `reason`, `retry-after`.
///
/// ```
/// use sip_core::headers::SubscriptionState;
/// let s = SubscriptionState::parse("terminated;reason=timeout;retry-after=30").unwrap();
/// assert_eq!(s.state(), "terminated");
/// assert_eq!(s.reason(), Some("timeout"));
/// assert_eq!(s.retry_after(), Some(30));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscriptionState<'a> {
    raw: &'a str,
    state: &'a str,
    params: &'a str,
}

impl<'a> SubscriptionState<'a> {
    /// Parses the value; a present `expires` or `retry-after` must be delta-seconds.
    pub fn parse(s: &'a str) -> Result<SubscriptionState<'a>> {
        let (raw, state, params) = token_and_params(s, "Subscription-State")?;
        let v = SubscriptionState { raw, state, params };
        for name in ["expires", "retry-after"] {
            if let Some(val) = v.params().get(name) {
                if val.and_then(parse_u32_saturating).is_none() {
                    return Err(invalid("Subscription-State", 0, "bad delta-seconds"));
                }
            }
        }
        Ok(v)
    }

    /// The state as written.
    pub fn state(&self) -> &'a str {
        self.state
    }

    /// True if the state is `active` (case-insensitive).
    pub fn is_active(&self) -> bool {
        self.state.eq_ignore_ascii_case("active")
    }

    /// True if the state is `pending`.
    pub fn is_pending(&self) -> bool {
        self.state.eq_ignore_ascii_case("pending")
    }

    /// True if the state is `terminated`.
    pub fn is_terminated(&self) -> bool {
        self.state.eq_ignore_ascii_case("terminated")
    }

    /// The parameters.
    pub fn params(&self) -> Params<'a> {
        Params::from_validated(self.params)
    }

    /// The `expires` parameter (saturating delta-seconds).
    pub fn expires(&self) -> Option<u32> {
        self.params()
            .get("expires")
            .flatten()
            .and_then(parse_u32_saturating)
    }

    /// The `reason` parameter.
    pub fn reason(&self) -> Option<&'a str> {
        self.params().get("reason").flatten()
    }

    /// The `retry-after` parameter.
    pub fn retry_after(&self) -> Option<u32> {
        self.params()
            .get("retry-after")
            .flatten()
            .and_then(parse_u32_saturating)
    }

    /// The value as written.
    pub fn as_str(&self) -> &'a str {
        self.raw
    }
}

impl fmt::Display for SubscriptionState<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.raw)
    }
}

/// The Retry-After header (RFC 3261 §20.33): `delta-seconds [ comment ] *( SEMI retry-param )`.
///
/// ```
/// use sip_core::headers::RetryAfter;
/// let r = RetryAfter::parse("18000;duration=3600").unwrap();
/// assert_eq!(r.seconds(), 18000);
/// assert_eq!(r.duration(), Some(3600));
/// let r = RetryAfter::parse("120 (I'm in a meeting)").unwrap();
/// assert_eq!(r.comment(), Some("I'm in a meeting"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RetryAfter<'a> {
    raw: &'a str,
    seconds: u32,
    comment: Option<&'a str>,
    params: &'a str,
}

impl<'a> RetryAfter<'a> {
    /// Parses the value. Seconds saturate at `u32::MAX`; a present `duration` must be
    /// delta-seconds; comments may nest and hold quoted pairs.
    pub fn parse(s: &'a str) -> Result<RetryAfter<'a>> {
        let (base, t) = trim_with_offset(s);
        let (digits, _) = leading_digits(t);
        let seconds = parse_u32_saturating(digits)
            .ok_or_else(|| invalid("Retry-After", base, "bad delta-seconds"))?;
        let b = t.as_bytes();
        let mut i = skip_lws(b, digits.len());
        let mut comment = None;
        if b.get(i) == Some(&b'(') {
            let end = scan_comment(b, i)
                .ok_or_else(|| invalid("Retry-After", base + i, "unterminated comment"))?;
            comment = Some(&t[i + 1..end - 1]);
            i = end;
        } else {
            i = digits.len();
        }
        walk_header_params(&t[i..], base + i, |_, _| {})?;
        let v = RetryAfter {
            raw: t,
            seconds,
            comment,
            params: &t[i..],
        };
        if let Some(d) = v.params().get("duration") {
            if d.and_then(parse_u32_saturating).is_none() {
                return Err(invalid("Retry-After", base + i, "bad duration"));
            }
        }
        Ok(v)
    }

    /// The delay in seconds.
    pub fn seconds(&self) -> u32 {
        self.seconds
    }

    /// The comment without its outer parentheses, as written.
    pub fn comment(&self) -> Option<&'a str> {
        self.comment
    }

    /// The `duration` parameter.
    pub fn duration(&self) -> Option<u32> {
        self.params()
            .get("duration")
            .flatten()
            .and_then(parse_u32_saturating)
    }

    /// The parameters.
    pub fn params(&self) -> Params<'a> {
        Params::from_validated(self.params)
    }

    /// The value as written.
    pub fn as_str(&self) -> &'a str {
        self.raw
    }
}

impl fmt::Display for RetryAfter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.raw)
    }
}

/// Scans a (possibly nested) `comment` starting at `b[i] == '('`; returns the index past it.
fn scan_comment(b: &[u8], i: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut j = i;
    while j < b.len() {
        match b[j] {
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(j + 1);
                }
            }
            b'\\' => j += 1,
            _ => {}
        }
        j += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cseq() {
        let c = CSeq::parse("0009\r\n  INVITE").unwrap();
        assert_eq!((c.seq, c.method), (9, Method::Invite));
        assert_eq!(CSeq::parse("2147483649 REGISTER").unwrap().seq, 2147483649);
        assert_eq!(
            CSeq::parse(" 1 FOO ").unwrap().method,
            Method::Extension("FOO")
        );
        for bad in [
            "",
            "INVITE",
            "1",
            "1INVITE",
            "-1 INVITE",
            "1 INVITE x",
            "1 IN;VITE",
            "4294967296 ACK",
            "1 , ACK",
        ] {
            assert!(CSeq::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_max_forwards("0").unwrap(), 0);
        assert_eq!(parse_max_forwards("255").unwrap(), 255);
        assert!(parse_max_forwards("").is_err());
        assert!(parse_max_forwards("1 2").is_err());
        assert_eq!(parse_content_length(" 0 ").unwrap(), 0);
        assert_eq!(
            parse_content_length("4294967295").unwrap(),
            u32::MAX as usize
        );
        assert_eq!(
            parse_content_length("4294967296"),
            Err(Error::InvalidContentLength { offset: 0 })
        );
        assert!(parse_content_length("+1").is_err());
        assert_eq!(parse_expires("0").unwrap(), 0);
        assert!(parse_expires("").is_err());
        assert!(parse_expires("-1").is_err());
    }

    #[test]
    fn call_ids() {
        assert!(is_valid_call_id("wsinv.ndaksdj@192.0.2.1"));
        assert!(is_valid_call_id("SSG9559905523997077@hlau_4100"));
        assert!(is_valid_call_id("a<b>:\\\"/[]?{}()"));
        for bad in ["", "@", "a@", "@b", "a b", "a;b", "é"] {
            assert!(!is_valid_call_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn media_types() {
        let m = MediaType::parse(" application / sdp ").unwrap();
        assert!(m.essence_eq("APPLICATION/SDP"));
        assert!(!m.essence_eq("application/sdpx"));
        assert!(!m.essence_eq("application"));
        let m = MediaType::parse("multipart/mixed;boundary=\"unique-boundary-1\"").unwrap();
        assert_eq!(
            m.params().get_unquoted("boundary").unwrap(),
            "unique-boundary-1"
        );
        for bad in [
            "",
            "application",
            "application/",
            "/sdp",
            "a/b c",
            "a/b;",
            "a b/c",
        ] {
            assert!(MediaType::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn token_lists() {
        assert!(TokenList::parse("").unwrap().is_empty());
        assert!(TokenList::parse(" , ").unwrap().is_empty());
        let l = TokenList::parse("foo, bar,baz").unwrap();
        assert_eq!(l.iter().count(), 3);
        for bad in ["a b", "a;b", "a,\"b\"", "<a>"] {
            assert!(TokenList::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn events_and_states() {
        let e = Event::parse(" presence.winfo ").unwrap();
        assert_eq!(e.event_type(), "presence.winfo");
        assert_eq!(e.id(), None);
        assert!(Event::parse(";id=1").is_err());
        assert!(Event::parse("a b").is_err());
        let s = SubscriptionState::parse("active ; expires = 600").unwrap();
        assert!(s.is_active());
        assert_eq!(s.expires(), Some(600));
        assert!(SubscriptionState::parse("pending").unwrap().is_pending());
        assert!(SubscriptionState::parse("TERMINATED")
            .unwrap()
            .is_terminated());
        assert!(SubscriptionState::parse("active;expires=x").is_err());
        assert!(SubscriptionState::parse("active;expires").is_err());
    }

    #[test]
    fn retry_after() {
        let r = RetryAfter::parse("5").unwrap();
        assert_eq!((r.seconds(), r.comment(), r.duration()), (5, None, None));
        let r = RetryAfter::parse("5 (a (nested) \\) one) ;duration=10").unwrap();
        assert_eq!(r.comment(), Some("a (nested) \\) one"));
        assert_eq!(r.duration(), Some(10));
        for bad in ["", "x", "5 (open", "5;duration=x", "5 6", "5 ()x"] {
            assert!(RetryAfter::parse(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = CSeq::parse(&s);
            let _ = parse_max_forwards(&s);
            let _ = parse_content_length(&s);
            let _ = parse_expires(&s);
            let _ = MediaType::parse(&s);
            let _ = TokenList::parse(&s).map(|l| l.iter().count());
            let _ = Event::parse(&s);
            let _ = SubscriptionState::parse(&s);
            let _ = RetryAfter::parse(&s);
            let _ = is_valid_call_id(&s);
        }

        #[test]
        fn never_panics_shaped(s in "[0-9]{0,3}[ ()\\\\;=a-z]{0,16}") {
            let _ = RetryAfter::parse(&s);
            let _ = CSeq::parse(&s);
        }

        #[test]
        fn cseq_round_trip(seq in any::<u32>(), m in "INVITE|ACK|BYE|[A-Z]{1,8}") {
            let text = format!("{seq} {m}");
            let c = CSeq::parse(&text).unwrap();
            prop_assert_eq!(c.seq, seq);
            prop_assert_eq!(c.method.as_str(), m.as_str());
            let again = c.to_string();
            prop_assert_eq!(CSeq::parse(&again).unwrap(), c);
        }
    }
}
