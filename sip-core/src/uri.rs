//! URIs: `sip:`, `sips:` (RFC 3261 §19.1, §25.1), `tel:` (RFC 3966), IPv6 references
//! (RFC 5118), and opaque absolute URIs of other schemes for name-addrs.
//!
//! [`Uri::parse`] accepts only the schemes this stack handles and answers any other with
//! [`Error::UnsupportedUriScheme`] (a UAS replies 416, RFC 3261 §8.2.2.1). Header fields such as
//! To, From or Contact may legitimately carry other schemes (RFC 4475 §3.2.2 `unksm2`), so
//! [`AnyUri::parse`] also keeps an unknown-scheme absolute URI as [`AnyUri::Other`], and
//! the role decides what to do with it.
//!
//! Views borrow from the input; escapes are kept as written and decoded only on request.

use std::borrow::Cow;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::error::{Error, Result};
use crate::params::{walk_uri_params, Params};
use crate::text::{
    is_escape_at, is_hnv_byte, is_password_byte, is_uric_byte, is_user_byte, percent_decode,
    percent_decode_str, scan_class, ALNUM, LABEL, PARAM, PASSWORD, USER,
};

/// The URI schemes this stack handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `sip:` (RFC 3261 §19.1)
    Sip,
    /// `sips:` (RFC 3261 §19.1, TLS on every hop)
    Sips,
    /// `tel:` (RFC 3966)
    Tel,
}

impl Scheme {
    /// The scheme in lower case, without the colon.
    pub fn as_str(&self) -> &'static str {
        match self {
            Scheme::Sip => "sip",
            Scheme::Sips => "sips",
            Scheme::Tel => "tel",
        }
    }

    /// Classifies a scheme name (case-insensitive, RFC 3261 §19.1.4).
    pub fn from_name(name: &str) -> Option<Scheme> {
        if name.len() > 4 {
            None
        } else if name.eq_ignore_ascii_case("sip") {
            Some(Scheme::Sip)
        } else if name.eq_ignore_ascii_case("sips") {
            Some(Scheme::Sips)
        } else if name.eq_ignore_ascii_case("tel") {
            Some(Scheme::Tel)
        } else {
            None
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `host` (RFC 3261 §25.1): a host name, an IPv4 address or an IPv6 reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Host<'a> {
    /// A host name as written (case kept; compare case-insensitively).
    Domain(&'a str),
    /// A dotted-quad IPv4 address.
    Ipv4(Ipv4Addr),
    /// An IPv6 address, written in brackets in SIP (RFC 5118 §4.1).
    Ipv6(Ipv6Addr),
}

impl fmt::Display for Host<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::Ipv4(a) => write!(f, "{a}"),
            Host::Ipv6(a) => write!(f, "[{a}]"),
        }
    }
}

fn syntax(what: &'static str, offset: usize) -> Error {
    Error::Syntax { what, offset }
}

const H_DIGIT: u8 = 1;
const H_ALPHA: u8 = 2;
const H_HYPHEN: u8 = 4;
const H_DOT: u8 = 8;

/// Host-name byte classes, for the label-by-label scan of `parse_host_slow`.
const fn build_host_class() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut c = 0usize;
    while c < 256 {
        let b = c as u8;
        t[c] = if b.is_ascii_digit() {
            H_DIGIT
        } else if b.is_ascii_alphabetic() {
            H_ALPHA
        } else if b == b'-' {
            H_HYPHEN
        } else if b == b'.' {
            H_DOT
        } else {
            0
        };
        c += 1;
    }
    t
}

static HOST_CLASS: [u8; 256] = build_host_class();

/// Parses a `host` starting at `i`; returns it and the index just after it. `base` is added to
/// error offsets. Host names follow RFC 3261 `hostname` (labels of alphanumerics and inner
/// hyphens, optional trailing dot) except that the top label may start with a digit, since
/// GB28181 devices use all-digit domain IDs such as `3402000000`.
#[inline(always)]
pub(crate) fn parse_host(s: &str, i: usize, base: usize) -> Result<(Host<'_>, usize)> {
    let b = s.as_bytes();
    let fast = match b.get(i) {
        Some(b'[') => return parse_ipv6_ref(s, i, base),
        Some(c) if c.is_ascii_digit() => scan_numeric_host(b, i),
        _ => scan_domain(b, i).map(|e| (None, e)),
    };
    match fast {
        Some((v4, j)) => match (v4, s.get(i..j)) {
            (Some(a), _) => Ok((Host::Ipv4(a), j)),
            (None, Some(text)) => Ok((Host::Domain(text), j)),
            (None, None) => parse_host_slow(s, i, base),
        },
        // Not a valid host name (or a bad dotted quad): the careful scan finds the error.
        None => parse_host_slow(s, i, base),
    }
}

/// A host name starting at `b[i]`, label by label: its end, or `None` if it breaks the
/// `hostname` rules (empty label, label starting or ending with `-`, empty name).
#[inline]
fn scan_domain(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i;
    loop {
        let ls = j;
        j = scan_class(b, j, ALNUM);
        if j == ls {
            // Empty label: fine only as the trailing dot of a non-empty name.
            let trailing_dot = ls > i && !matches!(b.get(ls), Some(b'-' | b'.'));
            return trailing_dot.then_some(ls);
        }
        if b.get(j) == Some(&b'-') {
            j = scan_class(b, j, LABEL);
            if b[j - 1] == b'-' {
                return None;
            }
        }
        if b.get(j) != Some(&b'.') {
            return Some(j);
        }
        j += 1;
    }
}

/// A host starting with a digit: a dotted quad (as `parse_ipv4` takes it) or a host name.
/// Returns the IPv4 address if it is a dotted quad, and the end; `None` if it is neither a
/// valid address nor a valid host name.
#[inline]
fn scan_numeric_host(b: &[u8], i: usize) -> Option<(Option<Ipv4Addr>, usize)> {
    let mut j = i;
    let mut oct = [0u8; 4];
    let mut dots = 0usize;
    let mut v: u32 = 0;
    let mut nd = 0usize;
    let mut octets_ok = true;
    loop {
        match b.get(j) {
            Some(&c) if c.is_ascii_digit() => {
                v = (v * 10 + u32::from(c - b'0')).min(256);
                nd += 1;
            }
            Some(b'.') => {
                if nd == 0 {
                    return None;
                }
                octets_ok &= nd <= 3 && v <= 255;
                if let Some(o) = oct.get_mut(dots) {
                    *o = v as u8;
                }
                dots += 1;
                v = 0;
                nd = 0;
            }
            Some(&c) if c.is_ascii_alphabetic() || c == b'-' => {
                return scan_domain(b, i).map(|e| (None, e));
            }
            _ => break,
        }
        j += 1;
    }
    if nd == 0 {
        // Trailing dot: a host name (never an address).
        return Some((None, j));
    }
    if dots != 3 {
        return Some((None, j));
    }
    if !(octets_ok && nd <= 3 && v <= 255) {
        return None;
    }
    oct[3] = v as u8;
    Some((Some(Ipv4Addr::from(oct)), j))
}

#[cold]
fn parse_ipv6_ref(s: &str, i: usize, base: usize) -> Result<(Host<'_>, usize)> {
    let b = s.as_bytes();
    let mut j = i + 1;
    while j < b.len() && (b[j].is_ascii_hexdigit() || matches!(b[j], b':' | b'.')) {
        j += 1;
    }
    if b.get(j) != Some(&b']') {
        return Err(syntax("IPv6 reference", base + i));
    }
    let addr: Ipv6Addr = s[i + 1..j]
        .parse()
        .map_err(|_| syntax("IPv6 address", base + i + 1))?;
    Ok((Host::Ipv6(addr), j + 1))
}

/// The label-by-label host-name scan, for names the fast pass did not accept.
#[cold]
#[inline(never)]
fn parse_host_slow(s: &str, i: usize, base: usize) -> Result<(Host<'_>, usize)> {
    let b = s.as_bytes();
    let mut j = i;
    let mut label_start = i;
    let mut seen = 0u8;
    let mut dots = 0;
    while j < b.len() {
        let c = HOST_CLASS[b[j] as usize];
        if c == 0 {
            break;
        }
        seen |= c;
        if c == H_DOT {
            if j == label_start || b[j - 1] == b'-' {
                return Err(syntax("host name", base + j));
            }
            dots += 1;
            label_start = j + 1;
        } else if c == H_HYPHEN && j == label_start {
            return Err(syntax("host name", base + j));
        }
        j += 1;
    }
    let all_num = seen & (H_ALPHA | H_HYPHEN) == 0;
    if j == i {
        return Err(syntax("host", base + i));
    }
    if b[j - 1] == b'-' {
        return Err(syntax("host name", base + j - 1));
    }
    let text = &s[i..j];
    if all_num && dots == 3 && label_start < j {
        return match parse_ipv4(text.as_bytes()) {
            Some(a) => Ok((Host::Ipv4(a), j)),
            None => Err(syntax("IPv4 address", base + i)),
        };
    }
    Ok((Host::Domain(text), j))
}

/// Dotted-quad IPv4 (1 to 3 digits per octet, each at most 255), faster than `str::parse`.
fn parse_ipv4(b: &[u8]) -> Option<Ipv4Addr> {
    let mut oct = [0u8; 4];
    let mut k = 0;
    let mut v: u32 = 0;
    let mut nd = 0;
    for &c in b {
        if c == b'.' {
            if nd == 0 || k >= 3 {
                return None;
            }
            oct[k] = v as u8;
            k += 1;
            v = 0;
            nd = 0;
        } else {
            v = v * 10 + u32::from(c.wrapping_sub(b'0'));
            nd += 1;
            if nd > 3 || v > 255 {
                return None;
            }
        }
    }
    if nd == 0 || k != 3 {
        return None;
    }
    oct[3] = v as u8;
    Some(Ipv4Addr::from(oct))
}

/// Parses `1*DIGIT` as a port (0..=65535) starting at `i`; returns it and the end index.
pub(crate) fn parse_port(s: &str, i: usize, base: usize) -> Result<(u16, usize)> {
    let b = s.as_bytes();
    let mut j = i;
    let mut v: u32 = 0;
    while j < b.len() && b[j].is_ascii_digit() {
        v = v * 10 + u32::from(b[j] - b'0');
        if v > u32::from(u16::MAX) {
            return Err(syntax("port", base + i));
        }
        j += 1;
    }
    if j == i {
        return Err(syntax("port", base + i));
    }
    Ok((v as u16, j))
}

/// Scans `1*( allowed / escaped )` from `i`; returns the end or an error offset on a bad escape.
fn scan_escaped(
    b: &[u8],
    mut i: usize,
    allowed: impl Fn(u8) -> bool,
) -> std::result::Result<usize, usize> {
    while i < b.len() {
        if b[i] == b'%' {
            if !is_escape_at(b, i) {
                return Err(i);
            }
            i += 3;
        } else if allowed(b[i]) {
            i += 1;
        } else {
            break;
        }
    }
    Ok(i)
}

/// Splits `scheme ":" rest`, validating the scheme grammar
/// (`ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`).
fn split_scheme(s: &str, base: usize) -> Result<(&str, usize)> {
    let b = s.as_bytes();
    if !b.first().is_some_and(u8::is_ascii_alphabetic) {
        return Err(syntax("URI scheme", base));
    }
    let mut i = 1;
    while i < b.len() && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'+' | b'-' | b'.')) {
        i += 1;
    }
    if b.get(i) != Some(&b':') {
        return Err(syntax("URI scheme", base + i));
    }
    Ok((&s[..i], i + 1))
}

/// A `sip:`, `sips:` or `tel:` URI, borrowed from its text.
///
/// For `tel:` URIs the telephone-subscriber number is reported as [`Uri::user`] (the same place
/// it takes in the equivalent `sip:…;user=phone` URI, RFC 3261 §19.1.6), the host is an empty
/// [`Host::Domain`], and the parameters are the RFC 3966 `par`s.
///
/// ```
/// use sip_core::uri::{Uri, Scheme, Host};
/// let u = Uri::parse("sips:alice:secret@[2001:db8::10]:5061;transport=tcp;lr?Subject=hi").unwrap();
/// assert_eq!(u.scheme(), Scheme::Sips);
/// assert_eq!(u.user(), Some("alice"));
/// assert_eq!(u.password(), Some("secret"));
/// assert_eq!(u.host(), &Host::Ipv6("2001:db8::10".parse().unwrap()));
/// assert_eq!(u.host_str(), "[2001:db8::10]");
/// assert_eq!(u.port(), Some(5061));
/// assert_eq!(u.transport(), Some("tcp"));
/// assert!(u.is_lr());
/// assert_eq!(u.headers(), Some("Subject=hi"));
/// assert_eq!(u.to_string(), u.as_str());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Uri<'a> {
    raw: &'a str,
    scheme: Scheme,
    user: Option<&'a str>,
    password: Option<&'a str>,
    host: Host<'a>,
    host_str: &'a str,
    port: Option<u16>,
    params: &'a str,
    headers: Option<&'a str>,
}

impl<'a> Uri<'a> {
    /// Parses a `sip:`, `sips:` or `tel:` URI. No white space is allowed anywhere (RFC 4475
    /// `lwsruri`); escapes must be `%` HEX HEX; an IPv6 host must be bracketed (RFC 5118 §4.10).
    /// Any other well-formed scheme yields [`Error::UnsupportedUriScheme`].
    ///
    /// A Request-URI must not carry `?headers` (RFC 3261 §19.1.1 table, RFC 4475 `escruri`):
    /// this grammar accepts them, and the request validator checks [`Uri::headers`].
    ///
    /// ```
    /// use sip_core::{uri::Uri, Error};
    /// let u = Uri::parse("sip:user;par=u%40example.net@example.com").unwrap();
    /// assert_eq!(u.user(), Some("user;par=u%40example.net"));
    /// assert!(matches!(Uri::parse("http://example.com"), Err(Error::UnsupportedUriScheme { .. })));
    /// assert!(Uri::parse("sip:user@2001:db8::10").is_err());
    /// ```
    pub fn parse(s: &'a str) -> Result<Uri<'a>> {
        Self::parse_at(s, 0)
    }

    pub(crate) fn parse_at(s: &'a str, base: usize) -> Result<Uri<'a>> {
        if let Some(u) = parse_sip_whole(s) {
            return Ok(u);
        }
        let (name, i) = split_scheme(s, base)?;
        let scheme = Scheme::from_name(name).ok_or(Error::UnsupportedUriScheme { offset: base })?;
        Self::parse_rest(s, scheme, i, base)
    }

    fn parse_rest(s: &'a str, scheme: Scheme, i: usize, base: usize) -> Result<Uri<'a>> {
        match scheme {
            Scheme::Tel => parse_tel(s, i, base),
            _ => parse_sip(s, scheme, i, base),
        }
    }

    /// The whole URI as written.
    pub fn as_str(&self) -> &'a str {
        self.raw
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The user part as written, escapes kept (RFC 4475 `esc01`); for `tel:` the number.
    pub fn user(&self) -> Option<&'a str> {
        self.user
    }

    /// The user part with `%XX` escapes decoded (may contain NUL, RFC 4475 `escnull`).
    pub fn user_decoded(&self) -> Option<Cow<'a, [u8]>> {
        self.user.map(percent_decode)
    }

    /// The user part decoded as text; `None` if absent or not UTF-8 once decoded.
    pub fn user_decoded_str(&self) -> Option<Cow<'a, str>> {
        self.user.and_then(percent_decode_str)
    }

    /// The password as written (its use is NOT RECOMMENDED, RFC 3261 §19.1.1).
    pub fn password(&self) -> Option<&'a str> {
        self.password
    }

    /// The host.
    pub fn host(&self) -> &Host<'a> {
        &self.host
    }

    /// The host as written (IPv6 with its brackets; empty for `tel:`).
    pub fn host_str(&self) -> &'a str {
        self.host_str
    }

    /// The explicit port, if any.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The uri-parameters (RFC 3261 §19.1.1).
    pub fn params(&self) -> Params<'a> {
        Params::from_validated(self.params)
    }

    /// A uri-parameter by name (case-insensitive); see [`Params::get`].
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        if self.params.is_empty() {
            return None;
        }
        self.params().get(name)
    }

    /// The `transport` parameter as written.
    pub fn transport(&self) -> Option<&'a str> {
        self.param("transport").flatten()
    }

    /// True if the `lr` parameter (loose routing, RFC 3261 §19.1.1) is present.
    pub fn is_lr(&self) -> bool {
        self.param("lr").is_some()
    }

    /// The `maddr` parameter.
    pub fn maddr(&self) -> Option<&'a str> {
        self.param("maddr").flatten()
    }

    /// The `user` parameter (e.g. `phone`).
    pub fn user_param(&self) -> Option<&'a str> {
        self.param("user").flatten()
    }

    /// The header part after `?`, without the `?` (RFC 3261 §19.1.1 `headers`).
    pub fn headers(&self) -> Option<&'a str> {
        self.headers
    }

    /// The URI headers as `(hname, hvalue)` pairs, escapes kept.
    pub fn header_iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.headers
            .unwrap_or("")
            .split('&')
            .filter(|h| !h.is_empty())
            .map(|h| h.split_once('=').unwrap_or((h, "")))
    }

    /// True for `sips:` (RFC 3261 §19.1: TLS required on every hop).
    pub fn is_secure(&self) -> bool {
        self.scheme == Scheme::Sips
    }
}

impl fmt::Display for Uri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.raw)
    }
}

/// `sip:` or `sips:` (scheme in any case) at the start of `b`: the scheme and the index just
/// after the colon.
#[inline]
pub(crate) fn sip_prefix(b: &[u8]) -> Option<(Scheme, usize)> {
    match b {
        [s, i, p, b':', ..] if s | 0x20 == b's' && i | 0x20 == b'i' && p | 0x20 == b'p' => {
            Some((Scheme::Sip, 4))
        }
        [s, i, p, s2, b':', ..]
            if s | 0x20 == b's' && i | 0x20 == b'i' && p | 0x20 == b'p' && s2 | 0x20 == b's' =>
        {
            Some((Scheme::Sips, 5))
        }
        _ => None,
    }
}

/// The common case of a whole `sip:`/`sips:` URI, via [`parse_sip_prefix`].
#[inline]
fn parse_sip_whole(s: &str) -> Option<Uri<'_>> {
    let (scheme, i) = sip_prefix(s.as_bytes())?;
    match parse_sip_prefix(s, scheme, i) {
        Some((u, end)) if end == s.len() => Some(u),
        _ => None,
    }
}

/// Fast path for the common `sip:`/`sips:` URI: no escapes, no `?headers`. Parses from `start`
/// (just after the scheme's colon) up to the first byte that cannot continue the URI and
/// returns the URI spanning `s[..end]` with `end`. `None` whenever it is not the common case
/// or anything is wrong: the full parser (`parse_sip`) then decides, errors included.
///
/// When it returns `Some`, `parse_sip` on `s[..end]` gives the same URI: user and password
/// bytes exclude `@` and `%`, so the `@` found is the first one and no escape was skipped; and
/// without userinfo the host, port and parameter bytes exclude `@`, so `s[..end]` has none.
#[inline(always)]
pub(crate) fn parse_sip_prefix(s: &str, scheme: Scheme, start: usize) -> Option<(Uri<'_>, usize)> {
    let b = s.as_bytes();
    let u = scan_class(b, start, USER);
    let mut user = None;
    let mut password = None;
    let mut hstart = start;
    match b.get(u) {
        Some(b'@') => {
            user = Some(s.get(start..u).filter(|u| !u.is_empty())?);
            hstart = u + 1;
        }
        Some(b':') => {
            let p = scan_class(b, u + 1, PASSWORD);
            if b.get(p) == Some(&b'@') {
                user = Some(s.get(start..u).filter(|u| !u.is_empty())?);
                password = Some(s.get(u + 1..p)?);
                hstart = p + 1;
            }
        }
        _ => {}
    }
    let (host, mut i) = parse_host(s, hstart, 0).ok()?;
    let host_str = s.get(hstart..i)?;
    let mut port = None;
    if b.get(i) == Some(&b':') {
        let (p, e) = parse_port(s, i + 1, 0).ok()?;
        port = Some(p);
        i = e;
    }
    let pstart = i;
    while b.get(i) == Some(&b';') {
        let n = scan_class(b, i + 1, PARAM);
        if n == i + 1 {
            return None;
        }
        i = n;
        if b.get(i) == Some(&b'=') {
            let v = scan_class(b, i + 1, PARAM);
            if v == i + 1 {
                return None;
            }
            i = v;
        }
    }
    let raw = s.get(..i)?;
    Some((
        Uri {
            raw,
            scheme,
            user,
            password,
            host,
            host_str,
            port,
            params: raw.get(pstart..)?,
            headers: None,
        },
        i,
    ))
}

fn parse_sip<'a>(s: &'a str, scheme: Scheme, start: usize, base: usize) -> Result<Uri<'a>> {
    let b = s.as_bytes();
    let mut user = None;
    let mut password = None;
    let mut i = start;
    // `@` appears in no URI part but userinfo, so the first one ends it.
    if let Some(at) = memchr::memchr(b'@', &b[start..]).map(|p| p + start) {
        let uend =
            scan_escaped(b, start, is_user_byte).map_err(|o| syntax("URI user", base + o))?;
        if uend == start {
            return Err(syntax("URI user", base + start));
        }
        user = Some(&s[start..uend]);
        let mut j = uend;
        if b.get(j) == Some(&b':') {
            let pend = scan_escaped(b, j + 1, is_password_byte)
                .map_err(|o| syntax("URI password", base + o))?;
            password = Some(&s[j + 1..pend]);
            j = pend;
        }
        if j != at {
            return Err(syntax("URI userinfo", base + j));
        }
        i = at + 1;
    }
    let hstart = i;
    let (host, hend) = parse_host(s, i, base)?;
    i = hend;
    let host_str = &s[hstart..hend];
    let mut port = None;
    if b.get(i) == Some(&b':') {
        let (p, e) = parse_port(s, i + 1, base)?;
        port = Some(p);
        i = e;
    }
    let pstart = i;
    let pend = memchr::memchr(b'?', &b[i..]).map_or(b.len(), |p| p + i);
    walk_uri_params(&s[pstart..pend], base + pstart)?;
    let params = &s[pstart..pend];
    let mut headers = None;
    if pend < b.len() {
        validate_uri_headers(s, pend + 1, base)?;
        headers = Some(&s[pend + 1..]);
    }
    Ok(Uri {
        raw: s,
        scheme,
        user,
        password,
        host,
        host_str,
        port,
        params,
        headers,
    })
}

/// `headers = "?" header *( "&" header )`, `header = hname "=" hvalue` (RFC 3261 §25.1).
fn validate_uri_headers(s: &str, start: usize, base: usize) -> Result<()> {
    let b = s.as_bytes();
    let mut i = start;
    loop {
        let nend = scan_escaped(b, i, is_hnv_byte).map_err(|o| syntax("URI header", base + o))?;
        if nend == i || b.get(nend) != Some(&b'=') {
            return Err(syntax("URI header", base + nend));
        }
        let vend =
            scan_escaped(b, nend + 1, is_hnv_byte).map_err(|o| syntax("URI header", base + o))?;
        match b.get(vend) {
            None => return Ok(()),
            Some(b'&') => i = vend + 1,
            Some(_) => return Err(syntax("URI header", base + vend)),
        }
    }
}

/// RFC 3966 `telephone-subscriber`: a global (`+` digits) or local number with visual
/// separators, then `;`-parameters in the `paramchar` grammar.
fn parse_tel(s: &str, start: usize, base: usize) -> Result<Uri<'_>> {
    let b = s.as_bytes();
    let mut i = start;
    if b.get(i) == Some(&b'+') {
        i += 1;
    }
    let digits_start = i;
    let mut has_digit = false;
    while i < b.len() {
        match b[i] {
            c if c.is_ascii_hexdigit() || c == b'*' || c == b'#' => has_digit = true,
            b'-' | b'.' | b'(' | b')' => {}
            _ => break,
        }
        i += 1;
    }
    let global = digits_start > start;
    if !has_digit || (global && !b[digits_start..i].iter().any(u8::is_ascii_digit)) {
        return Err(syntax("telephone number", base + start));
    }
    let number = &s[start..i];
    walk_uri_params(&s[i..], base + i)?;
    Ok(Uri {
        raw: s,
        scheme: Scheme::Tel,
        user: Some(number),
        password: None,
        host: Host::Domain(""),
        host_str: "",
        port: None,
        params: &s[i..],
        headers: None,
    })
}

/// An absolute URI whose scheme this stack does not handle, kept opaque (RFC 3261 §25.1
/// `absoluteURI`), e.g. `isbn:2983792873` or `http://www.example.com`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OtherUri<'a> {
    raw: &'a str,
    scheme_len: usize,
}

impl<'a> OtherUri<'a> {
    /// The scheme as written.
    pub fn scheme(&self) -> &'a str {
        &self.raw[..self.scheme_len]
    }

    /// Everything after the `scheme:`.
    pub fn rest(&self) -> &'a str {
        &self.raw[self.scheme_len + 1..]
    }

    /// The whole URI as written.
    pub fn as_str(&self) -> &'a str {
        self.raw
    }
}

/// A URI in a header field: a [`Uri`] this stack understands, or any other absolute URI.
///
/// ```
/// use sip_core::uri::AnyUri;
/// let u = AnyUri::parse("isbn:2983792873").unwrap();
/// assert!(u.as_uri().is_none());
/// assert_eq!(u.scheme_str(), "isbn");
/// let u = AnyUri::parse("sip:a@b").unwrap();
/// assert_eq!(u.as_uri().unwrap().user(), Some("a"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnyUri<'a> {
    /// A `sip:`, `sips:` or `tel:` URI.
    Uri(Uri<'a>),
    /// Any other scheme, opaque.
    Other(OtherUri<'a>),
}

impl<'a> AnyUri<'a> {
    /// Parses a `sip:`/`sips:`/`tel:` URI, or any other syntactically valid absolute URI
    /// (`scheme ":" 1*( uric / escaped )`, no white space, no `<>"`).
    pub fn parse(s: &'a str) -> Result<AnyUri<'a>> {
        Self::parse_at(s, 0)
    }

    pub(crate) fn parse_at(s: &'a str, base: usize) -> Result<AnyUri<'a>> {
        if let Some(u) = parse_sip_whole(s) {
            return Ok(AnyUri::Uri(u));
        }
        let (name, i) = split_scheme(s, base)?;
        if let Some(scheme) = Scheme::from_name(name) {
            return Uri::parse_rest(s, scheme, i, base).map(AnyUri::Uri);
        }
        let b = s.as_bytes();
        let end = scan_escaped(b, i, is_uric_byte).map_err(|o| syntax("URI", base + o))?;
        if end == i || end != b.len() {
            return Err(syntax("URI", base + end));
        }
        Ok(AnyUri::Other(OtherUri {
            raw: s,
            scheme_len: name.len(),
        }))
    }

    /// The `sip:`/`sips:`/`tel:` URI, or `None` for another scheme.
    pub fn as_uri(&self) -> Option<&Uri<'a>> {
        match self {
            AnyUri::Uri(u) => Some(u),
            AnyUri::Other(_) => None,
        }
    }

    /// The scheme as written.
    pub fn scheme_str(&self) -> &'a str {
        match self {
            AnyUri::Uri(u) => &u.raw[..u.scheme.as_str().len()],
            AnyUri::Other(o) => o.scheme(),
        }
    }

    /// The whole URI as written.
    pub fn as_str(&self) -> &'a str {
        match self {
            AnyUri::Uri(u) => u.raw,
            AnyUri::Other(o) => o.raw,
        }
    }
}

impl fmt::Display for AnyUri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(s: &str) -> Uri<'_> {
        Uri::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn basic_sip() {
        let u = ok("sip:alice@atlanta.example.com");
        assert_eq!(u.scheme(), Scheme::Sip);
        assert_eq!(u.user(), Some("alice"));
        assert_eq!(u.password(), None);
        assert_eq!(u.host(), &Host::Domain("atlanta.example.com"));
        assert_eq!(u.port(), None);
        assert!(u.params().is_empty());
        assert_eq!(u.headers(), None);
        let u = ok("SIP:example.com.");
        assert_eq!(u.scheme(), Scheme::Sip);
        assert_eq!(u.user(), None);
        assert_eq!(u.host_str(), "example.com.");
        let u = ok("sip:34020000002000000001@3402000000");
        assert_eq!(u.host(), &Host::Domain("3402000000"));
        let u = ok("sip:bob@127.0.0.1:5060");
        assert_eq!(u.host(), &Host::Ipv4(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(u.port(), Some(5060));
        let u = ok("sip:a@b:0");
        assert_eq!(u.port(), Some(0));
        let u = ok("sip:a@b:65535");
        assert_eq!(u.port(), Some(65535));
    }

    #[test]
    fn rfc4475_uris() {
        // semiuri: the user part holds a ';'.
        let u = ok("sip:user;par=u%40example.net@example.com");
        assert_eq!(u.user(), Some("user;par=u%40example.net"));
        assert_eq!(u.host_str(), "example.com");
        assert!(u.params().is_empty());
        // esc01: escapes kept raw, decoded on request.
        let u = ok("sip:sips%3Auser%40example.com@example.net");
        assert_eq!(u.user(), Some("sips%3Auser%40example.com"));
        assert_eq!(u.user_decoded_str().unwrap(), "sips:user@example.com");
        assert_eq!(u.scheme(), Scheme::Sip);
        let u = ok("sip:%75se%72@example.com");
        assert_eq!(u.user_decoded_str().unwrap(), "user");
        let u = ok("sip:I%20have%20spaces@example.net");
        assert_eq!(u.user_decoded_str().unwrap(), "I have spaces");
        let u = ok("sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31");
        assert_eq!(u.params().get("n%61me"), Some(Some("v%61lue%25%34%31")));
        // escnull
        let u = ok("sip:null-%00-null@example.com");
        assert_eq!(&*u.user_decoded().unwrap(), b"null-\0-null");
        assert_eq!(
            &*ok("sip:%00%00@host5.example.com").user_decoded().unwrap(),
            b"\0\0"
        );
        // wsinv Request-URI and Route
        let u = ok("sip:vivekg@chair-dnrc.example.com;unknownparam");
        assert_eq!(u.param("unknownparam"), Some(None));
        let u = ok("sip:services.example.com;lr;unknownwith=value;unknown-no-value");
        assert!(u.is_lr());
        assert_eq!(u.param("unknownwith"), Some(Some("value")));
        // escruri: the grammar allows escaped headers; the Request-URI check rejects them.
        let u = ok("sip:user@example.com?Route=%3Csip:example.com%3E");
        assert_eq!(u.headers(), Some("Route=%3Csip:example.com%3E"));
        assert_eq!(
            u.header_iter().collect::<Vec<_>>(),
            [("Route", "%3Csip:example.com%3E")]
        );
    }

    #[test]
    fn rfc4475_rejects() {
        // lwsruri
        assert!(Uri::parse("sip:user@example.com; lr").is_err());
        assert!(Uri::parse("sip:user@example.com;").is_err());
        assert!(Uri::parse(" sip:user@example.com").is_err());
        assert!(Uri::parse("sip:user@example.com ").is_err());
        // ltgtruri
        assert!(matches!(
            Uri::parse("<sip:user@example.com>"),
            Err(Error::Syntax { .. })
        ));
        // unkscm, novelsc
        assert_eq!(
            Uri::parse("nobodyKnowsThisScheme:totallyopaquecontent"),
            Err(Error::UnsupportedUriScheme { offset: 0 })
        );
        assert!(matches!(
            Uri::parse("soap.beep://192.0.2.103:3002"),
            Err(Error::UnsupportedUriScheme { .. })
        ));
        assert!(matches!(
            Uri::parse("mailto:a@b"),
            Err(Error::UnsupportedUriScheme { .. })
        ));
        // bad escapes
        assert!(Uri::parse("sip:%Zuser@example.com").is_err());
        assert!(Uri::parse("sip:user%4@example.com").is_err());
        assert!(Uri::parse("sip:user@example.com;a=%G0").is_err());
        assert!(Uri::parse("sip:user@example.com?a=%").is_err());
        // unescaped '<' in headers
        assert!(Uri::parse("sip:user@example.com?Route=<sip:example.com>").is_err());
    }

    #[test]
    fn rfc5118_ipv6() {
        let v6 = |s: &str| Host::Ipv6(s.parse().unwrap());
        let u = ok("sip:[2001:db8::10]");
        assert_eq!(u.host(), &v6("2001:db8::10"));
        assert_eq!(u.host_str(), "[2001:db8::10]");
        assert_eq!(u.host().to_string(), "[2001:db8::10]");
        let u = ok("sip:[2001:db8::10]:5070");
        assert_eq!(u.port(), Some(5070));
        // port-ambiguous: the whole thing is the address.
        let u = ok("sip:[2001:db8::10:5070]");
        assert_eq!(u.host(), &v6("2001:db8::10:5070"));
        assert_eq!(u.port(), None);
        let u = ok("sip:ted@[::ffff:192.0.2.2]");
        assert_eq!(u.host(), &v6("::ffff:192.0.2.2"));
        let u = ok("sip:user@[2001:db8::192.0.2.1]");
        assert_eq!(u.host(), &v6("2001:db8::c000:201"));
        // ipv6-bad, ipv6-bug-abnf-3-colons
        assert!(Uri::parse("sip:2001:db8::10").is_err());
        assert!(Uri::parse("sip:user@2001:db8::10").is_err());
        assert!(Uri::parse("sip:user@[2001:db8:::192.0.2.1]").is_err());
        assert!(Uri::parse("sip:user@[2001:db8::10").is_err());
        assert!(Uri::parse("sip:user@[]").is_err());
    }

    #[test]
    fn hosts_and_ports() {
        for bad in [
            "sip:a@b:65536",
            "sip:a@b:",
            "sip:a@b:99999999999",
            "sip:a@-b.com",
            "sip:a@b-.com",
            "sip:a@b..com",
            "sip:a@.",
            "sip:a@",
            "sip:@b",
            "sip:",
            "sip:a@256.1.1.1",
            "sip:a@b_c",
            "sip:a@b@c",
            "sip:a:b:c@d",
            "sip:a b@c",
            "sip:a@b?",
            "sip:a@b?x",
            "sip:a@b?=x",
            "sip:a@b?x=1&",
            "sip",
            ":a",
            "",
            "1sip:a",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad:?}");
        }
        let u = ok("sip:a:@b");
        assert_eq!(u.password(), Some(""));
        let u = ok("sip:a:p&=+$,w@b?x=&y=2");
        assert_eq!(u.password(), Some("p&=+$,w"));
        assert_eq!(u.header_iter().count(), 2);
        let u = ok("sip:1.2.3@b");
        assert_eq!(u.user(), Some("1.2.3"));
        assert_eq!(ok("sip:a@1.2.3").host(), &Host::Domain("1.2.3"));
        assert_eq!(
            ok("sip:a@example.com;maddr=[2001:db8::1]").maddr(),
            Some("[2001:db8::1]")
        );
        assert_eq!(ok("sip:+123@gw;user=phone").user_param(), Some("phone"));
        assert!(ok("sips:a@b").is_secure());
    }

    #[test]
    fn tel() {
        let u = ok("tel:+1-201-555-0123");
        assert_eq!(u.scheme(), Scheme::Tel);
        assert_eq!(u.user(), Some("+1-201-555-0123"));
        assert_eq!(u.host_str(), "");
        let u = ok("tel:7042;phone-context=example.com");
        assert_eq!(u.user(), Some("7042"));
        assert_eq!(u.param("phone-context"), Some(Some("example.com")));
        assert!(ok("tel:*21#").user().is_some());
        for bad in [
            "tel:",
            "tel:+",
            "tel:+-",
            "tel:abc x",
            "tel:123;",
            "tel:12 3",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn any_uri() {
        for (s, scheme) in [
            ("isbn:2983792873", "isbn"),
            ("http://www.example.com", "http"),
            ("name:John_Smith", "name"),
            ("urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6", "urn"),
        ] {
            let u = AnyUri::parse(s).unwrap();
            assert_eq!(u.scheme_str(), scheme);
            assert!(u.as_uri().is_none());
            assert_eq!(u.to_string(), s);
            if let AnyUri::Other(o) = u {
                assert_eq!(o.scheme(), scheme);
                assert_eq!(o.rest(), &s[scheme.len() + 1..]);
            }
        }
        assert_eq!(AnyUri::parse("SIPS:x@y").unwrap().scheme_str(), "SIPS");
        for bad in ["isbn:", "isbn:a b", "x:<y>", "x:\"", "nocolon", "sip:a b"] {
            assert!(AnyUri::parse(bad).is_err(), "{bad:?}");
        }
    }

    fn host_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z][a-z0-9-]{0,8}[a-z0-9](\\.[a-z][a-z0-9]{0,5}){0,3}",
            any::<[u8; 4]>().prop_map(|a| Ipv4Addr::from(a).to_string()),
            any::<[u16; 8]>().prop_map(|a| format!("[{}]", Ipv6Addr::from(a))),
        ]
    }

    prop_compose! {
        fn sip_uri()(
            secure in any::<bool>(),
            user in proptest::option::of("([a-zA-Z0-9_.!~*'()&=+$,;?/-]|%[0-9A-F]{2}){1,12}"),
            password in proptest::option::of("([a-z0-9&=+$,]|%[0-9a-f]{2}){0,6}"),
            host in host_strategy(),
            port in proptest::option::of(any::<u16>()),
            params in proptest::collection::vec(("[a-z][a-z0-9-]{0,6}", proptest::option::of("[a-zA-Z0-9\\[\\]/:&+$.-]{1,6}")), 0..4),
            headers in proptest::collection::vec(("[a-zA-Z][a-zA-Z0-9-]{0,6}", "[a-zA-Z0-9?:+$]{0,6}"), 0..3),
        ) -> (String, Option<String>, Option<String>, String, Option<u16>, usize) {
            let mut s = String::from(if secure { "sips:" } else { "sip:" });
            let password = if user.is_some() { password } else { None };
            if let Some(u) = &user {
                s.push_str(u);
                if let Some(p) = &password { s.push(':'); s.push_str(p); }
                s.push('@');
            }
            s.push_str(&host);
            if let Some(p) = port { s.push_str(&format!(":{p}")); }
            for (n, v) in &params {
                s.push(';'); s.push_str(n);
                if let Some(v) = v { s.push('='); s.push_str(v); }
            }
            for (k, (n, v)) in headers.iter().enumerate() {
                s.push(if k == 0 { '?' } else { '&' }); s.push_str(n); s.push('='); s.push_str(v);
            }
            (s, user, password, host, port, params.len())
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = Uri::parse(&s);
            let _ = AnyUri::parse(&s);
        }

        /// The fast host scan agrees with the label-by-label one, errors included.
        #[test]
        fn host_fast_matches_slow(s in "[a-c0-9.-]{0,12}[;:>@ ]?[a-z0-9.-]{0,3}") {
            prop_assert_eq!(parse_host(&s, 0, 0), parse_host_slow(&s, 0, 0));
        }

        #[test]
        fn host_fast_matches_slow_numeric(s in "[0-9]{0,4}(\\.[0-9]{0,4}){0,4}[.a-]?[;:]?") {
            prop_assert_eq!(parse_host(&s, 0, 0), parse_host_slow(&s, 0, 0));
        }

        /// Whenever the sip fast path accepts a URI, the full parser gives the same one.
        #[test]
        fn sip_fast_path_matches_full(s in "(sip|SIPS|sIp):[a-z0-9@:;=?&%.\\[\\]>+-]{0,24}") {
            let (scheme, i) = sip_prefix(s.as_bytes()).unwrap();
            if let Some((u, end)) = parse_sip_prefix(&s, scheme, i) {
                prop_assert_eq!(parse_sip(&s[..end], scheme, i, 0), Ok(u));
            }
        }

        #[test]
        fn never_panics_sipish(s in "sips?:[a-z0-9@:;=?&%\\[\\].+-]{0,30}") {
            if let Ok(u) = Uri::parse(&s) {
                let _ = u.params().iter().count();
                let _ = u.header_iter().count();
                let _ = u.user_decoded();
            }
        }

        #[test]
        fn generated_round_trip((s, user, password, host, port, nparams) in sip_uri()) {
            let u = Uri::parse(&s).unwrap();
            prop_assert_eq!(u.user(), user.as_deref());
            prop_assert_eq!(u.password(), password.as_deref());
            prop_assert_eq!(u.host_str(), host.as_str());
            prop_assert_eq!(u.port(), port);
            prop_assert_eq!(u.params().iter().count(), nparams);
            let text = u.to_string();
            prop_assert_eq!(&text, &s);
            prop_assert_eq!(Uri::parse(&text).unwrap(), u);
        }
    }
}
