//! Addresses: `name-addr` / `addr-spec` with header parameters (RFC 3261 §20.10 Contact,
//! §20.20 From, §20.39 To, §20.30 Record-Route, §20.34 Route, §25.1), as used by From, To,
//! Contact, Route, Record-Route, Reply-To, Refer-To and P-Asserted-Identity.
//!
//! The URI may be of any scheme ([`AnyUri`]): a To of `isbn:2983792873` is well-formed
//! (RFC 4475 §3.2.2 `unksm2`); the element's role decides whether it can use it.

use std::borrow::Cow;
use std::fmt;

use crate::error::{Error, Result};
use crate::params::{walk_header_params, Params};
use crate::text::{
    is_lws_byte, parse_u32_digits, parse_u32_saturating, scan_class, scan_quoted_strict, skip_lws,
    unescape_quoted_pairs, DISPLAY,
};
use crate::uri::{parse_sip_prefix, sip_prefix, AnyUri, Uri};

fn syntax(what: &'static str, offset: usize) -> Error {
    Error::Syntax { what, offset }
}

/// Splits the LWS around `s`: returns (offset of the first non-LWS byte, trimmed text).
#[inline]
pub(crate) fn trim_with_offset(s: &str) -> (usize, &str) {
    let b = s.as_bytes();
    let start = skip_lws(b, 0);
    let mut end = b.len();
    while end > start && is_lws_byte(b[end - 1]) {
        end -= 1;
    }
    // Both ends sit next to ASCII bytes (or at the ends), so they are char boundaries.
    (start, s.get(start..end).unwrap_or(""))
}

/// One `name-addr` or `addr-spec` value with its header parameters.
///
/// ```
/// use sip_core::addr::NameAddr;
/// let a = NameAddr::parse(r#" "J Rosenberg \\\""  <sip:jdrosen@example.com>
///   ;
///   tag = 98asjd8"#).unwrap();
/// assert_eq!(a.display_name(), Some(r#"J Rosenberg \\\""#));
/// assert_eq!(a.display_name_decoded().unwrap(), r#"J Rosenberg \""#);
/// assert_eq!(a.uri_str(), "sip:jdrosen@example.com");
/// assert_eq!(a.tag(), Some("98asjd8"));
///
/// // addr-spec form: the parameters belong to the header, not to the URI (RFC 3261 §20.10).
/// let a = NameAddr::parse("sip:caller@example.net;tag=39291").unwrap();
/// assert_eq!(a.uri_str(), "sip:caller@example.net");
/// assert_eq!(a.tag(), Some("39291"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NameAddr<'a> {
    raw: &'a str,
    display: Option<&'a str>,
    display_quoted: bool,
    angle: bool,
    uri: AnyUri<'a>,
    params: &'a str,
    tag: Option<&'a str>,
}

impl<'a> NameAddr<'a> {
    /// Parses one value (without the header name; surrounding LWS and folding allowed).
    ///
    /// Rejected: unbalanced quotes (RFC 4475 `quotbal`), display names that are neither a
    /// token sequence nor a quoted string (`baddn`), white space inside `<…>` (`badaspec`), and
    /// an addr-spec holding `?` or `,` outside angle brackets (RFC 3261 §20.10). Unquoted
    /// display names may hold UTF-8 beyond the token grammar, as some phones send them.
    pub fn parse(s: &'a str) -> Result<NameAddr<'a>> {
        Self::parse_with(s, |_, _| {})
    }

    /// [`NameAddr::parse`], also calling `on_param(name, value)` for each header parameter.
    #[inline]
    fn parse_with(
        s: &'a str,
        on_param: impl FnMut(&'a str, Option<&'a str>),
    ) -> Result<NameAddr<'a>> {
        let (base, t) = trim_with_offset(s);
        let b = t.as_bytes();
        let display;
        let display_quoted;
        let lt;
        match b.first() {
            None => return Err(syntax("address", base)),
            Some(b'"') => {
                let end =
                    scan_quoted_strict(b, 0).ok_or_else(|| syntax("quoted display name", base))?;
                display = t.get(1..end - 1);
                display_quoted = true;
                lt = skip_lws(b, end);
                if b.get(lt) != Some(&b'<') {
                    return Err(syntax("name-addr", base + lt));
                }
            }
            Some(_) => {
                let i = scan_class(b, 0, DISPLAY);
                if b.get(i) != Some(&b'<') {
                    return Self::parse_addr_spec(t, base, on_param);
                }
                display = if i == 0 {
                    None
                } else {
                    let (_, dn) = trim_with_offset(t.get(..i).unwrap_or(""));
                    (!dn.is_empty()).then_some(dn)
                };
                display_quoted = false;
                lt = i;
            }
        }
        let (uri, gt) = angle_uri(t, lt, base)?;
        let rest = t.get(gt + 1..).unwrap_or("");
        let tag = header_params(rest, base + gt + 1, on_param)?;
        Ok(NameAddr {
            raw: t,
            display,
            display_quoted,
            angle: true,
            uri,
            params: rest,
            tag,
        })
    }

    fn parse_addr_spec(
        t: &'a str,
        base: usize,
        on_param: impl FnMut(&'a str, Option<&'a str>),
    ) -> Result<NameAddr<'a>> {
        let b = t.as_bytes();
        let mut end = 0;
        while end < b.len() && b[end] != b';' && !is_lws_byte(b[end]) {
            if matches!(b[end], b'?' | b',') {
                return Err(syntax(
                    "addr-spec: '?' or ',' needs angle brackets",
                    base + end,
                ));
            }
            end += 1;
        }
        let uri = AnyUri::parse_at(&t[..end], base)?;
        let rest = &t[end..];
        let tag = header_params(rest, base + end, on_param)?;
        Ok(NameAddr {
            raw: t,
            display: None,
            display_quoted: false,
            angle: false,
            uri,
            params: rest,
            tag,
        })
    }

    /// The value as written, without surrounding LWS.
    pub fn as_str(&self) -> &'a str {
        self.raw
    }

    /// The display name as written: for a quoted string, the text between the quotes with its
    /// escapes kept; for a token sequence, the tokens and the LWS between them.
    pub fn display_name(&self) -> Option<&'a str> {
        self.display
    }

    /// The display name with quoted-pair escapes resolved.
    pub fn display_name_decoded(&self) -> Option<Cow<'a, str>> {
        let d = self.display?;
        Some(if self.display_quoted {
            unescape_quoted_pairs(d)
        } else {
            Cow::Borrowed(d)
        })
    }

    /// True if the address was written in `<…>` (name-addr form).
    pub fn is_name_addr(&self) -> bool {
        self.angle
    }

    /// The URI, of any scheme.
    pub fn uri(&self) -> &AnyUri<'a> {
        &self.uri
    }

    /// The URI if its scheme is `sip`, `sips` or `tel`.
    pub fn sip_uri(&self) -> Option<&Uri<'a>> {
        self.uri.as_uri()
    }

    /// The URI as written.
    pub fn uri_str(&self) -> &'a str {
        self.uri.as_str()
    }

    /// The header parameters (after `>`, or after the URI in addr-spec form).
    pub fn params(&self) -> Params<'a> {
        Params::from_validated(self.params)
    }

    /// A header parameter by name (case-insensitive).
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        if self.params.is_empty() {
            return None;
        }
        self.params().get(name)
    }

    /// The `tag` parameter (RFC 3261 §19.3).
    pub fn tag(&self) -> Option<&'a str> {
        self.tag
    }

    /// The `q` parameter in thousandths (0..=1000, RFC 3261 §20.10); `None` if absent or not
    /// a valid qvalue.
    pub fn q(&self) -> Option<u16> {
        self.param("q").flatten().and_then(parse_qvalue)
    }

    /// The `expires` parameter in seconds (RFC 3261 §20.10), saturating at `u32::MAX`; `None`
    /// if absent or not a number.
    pub fn expires(&self) -> Option<u32> {
        self.param("expires")
            .flatten()
            .and_then(parse_u32_saturating)
    }

    /// The `+sip.instance` parameter without its quotes (RFC 5626 §4.1), e.g.
    /// `<urn:uuid:…>`.
    pub fn instance(&self) -> Option<Cow<'a, str>> {
        self.params().get_unquoted("+sip.instance")
    }

    /// The `reg-id` parameter (RFC 5626 §4.2).
    pub fn reg_id(&self) -> Option<u32> {
        self.param("reg-id").flatten().and_then(parse_u32_digits)
    }
}

impl fmt::Display for NameAddr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.raw)
    }
}

/// The URI of a name-addr whose `<` is at `t[lt]`, and the index of its `>`.
#[inline(always)]
fn angle_uri(t: &str, lt: usize, base: usize) -> Result<(AnyUri<'_>, usize)> {
    let inner = t.get(lt + 1..).unwrap_or("");
    // Common case: a sip/sips URI running right up to the '>' (URI bytes exclude '>', so it is
    // the first one, as the full path below would find).
    if let Some((scheme, k)) = sip_prefix(inner.as_bytes()) {
        if let Some((u, end)) = parse_sip_prefix(inner, scheme, k) {
            if inner.as_bytes().get(end) == Some(&b'>') {
                return Ok((AnyUri::Uri(u), lt + 1 + end));
            }
        }
    }
    let b = t.as_bytes();
    let gt = memchr::memchr(b'>', &b[lt + 1..])
        .map(|p| p + lt + 1)
        .ok_or_else(|| syntax("name-addr: missing '>'", base + lt))?;
    let uri = AnyUri::parse_at(&t[lt + 1..gt], base + lt + 1)?;
    Ok((uri, gt))
}

/// Validates header parameters, passing each to `on_param`; returns the first `tag` value.
#[inline(always)]
fn header_params<'a>(
    s: &'a str,
    base: usize,
    mut on_param: impl FnMut(&'a str, Option<&'a str>),
) -> Result<Option<&'a str>> {
    let mut tag = None;
    walk_header_params(s, base, |n, v| {
        if tag.is_none() && n.len() == 3 && n.eq_ignore_ascii_case("tag") {
            tag = v;
        }
        on_param(n, v);
    })?;
    Ok(tag)
}

/// The `tag` parameter of a From or To value, found without parsing the URI: the header
/// parameters follow the `>` of a name-addr (a quoted display name may hold any character)
/// or, for an addr-spec, its first `;`. For a well-formed value this is what
/// [`NameAddr::parse`] gives as [`NameAddr::tag`], at a fraction of the cost.
///
/// ```
/// use sip_core::addr::tag_param;
/// assert_eq!(tag_param("\"B; <tag=x>\" <sip:b@y;tag=u>;x=2;tag=7"), Some("7"));
/// assert_eq!(tag_param("sip:b@y;tag=3;x"), Some("3"));
/// assert_eq!(tag_param("<sip:b@y>"), None);
/// ```
pub fn tag_param(v: &str) -> Option<&str> {
    let b = v.as_bytes();
    let mut i = 0;
    let mut quoted = false;
    let start = loop {
        match *b.get(i)? {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b'<' if !quoted => {
                let close = i + memchr::memchr(b'>', b.get(i..)?)?;
                let rest = b.get(close + 1..)?;
                break close + 1 + memchr::memchr(b';', rest)? + 1;
            }
            b';' if !quoted => break i + 1,
            _ => {}
        }
        i += 1;
    };
    // A `tag` without a value is no tag (as the parser reads it): a later one still counts.
    let mut at = start;
    loop {
        let rest = b.get(at..)?;
        let end = memchr::memchr(b';', rest).map_or(b.len(), |e| at + e);
        let (n, value) = param_pair(v.get(at..end)?);
        if n.eq_ignore_ascii_case("tag") && !value.is_empty() {
            return Some(value);
        }
        if end >= b.len() {
            return None;
        }
        at = end + 1;
    }
}

/// One `name[=value]` of a parameter list, both trimmed.
fn param_pair(p: &str) -> (&str, &str) {
    let p = p.trim_ascii_start();
    match memchr::memchr(b'=', p.as_bytes()) {
        Some(i) => (p[..i].trim_ascii_end(), p[i + 1..].trim_ascii()),
        None => (p.trim_ascii_end(), ""),
    }
}

/// The value of parameter `name` (case-insensitive) in `a=1;b;c=2`, whitespace trimmed; `""`
/// for a parameter without a value. A byte scan for plain parameter lists (no quoted values),
/// such as a Via's or a name-addr's after its URI.
///
/// ```
/// use sip_core::addr::header_param;
/// assert_eq!(header_param("branch=z9hG4bK1; RPORT", "rport"), Some(""));
/// assert_eq!(header_param("branch=z9hG4bK1;rport", "Branch"), Some("z9hG4bK1"));
/// assert_eq!(header_param("branch=z9hG4bK1", "received"), None);
/// ```
pub fn header_param<'a>(params: &'a str, name: &str) -> Option<&'a str> {
    let b = params.as_bytes();
    let mut at = 0;
    loop {
        let end = memchr::memchr(b';', b.get(at..)?).map_or(b.len(), |e| at + e);
        let (n, v) = param_pair(params.get(at..end)?);
        if n.eq_ignore_ascii_case(name) {
            return Some(v);
        }
        if end >= b.len() {
            return None;
        }
        at = end + 1;
    }
}

/// Parses a `qvalue` (RFC 3261 §25.1: `"0" ["." 0*3DIGIT] / "1" ["." 0*3"0"]`) into
/// thousandths.
///
/// ```
/// use sip_core::addr::parse_qvalue;
/// assert_eq!(parse_qvalue("0.33"), Some(330));
/// assert_eq!(parse_qvalue("1.000"), Some(1000));
/// assert_eq!(parse_qvalue("1.5"), None);
/// ```
pub fn parse_qvalue(s: &str) -> Option<u16> {
    let b = s.as_bytes();
    let int = match b.first()? {
        b'0' => 0u16,
        b'1' => 1000,
        _ => return None,
    };
    match b.get(1) {
        None => return Some(int),
        Some(b'.') => {}
        Some(_) => return None,
    }
    let frac = &b[2..];
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut v = 0u16;
    for k in 0..3 {
        v = v * 10 + frac.get(k).map_or(0, |d| u16::from(d - b'0'));
    }
    if int == 1000 && v != 0 {
        return None;
    }
    Some(int + v)
}

/// One Contact value (RFC 3261 §20.10): `*` or an address with contact-params.
///
/// ```
/// use sip_core::addr::ContactValue;
/// let c = ContactValue::parse(r#"<sip:alice@10.0.7.21:51234;transport=tcp>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-00c0ffee0001>";reg-id=1;expires=600"#).unwrap();
/// assert_eq!(c.expires(), Some(600));
/// assert_eq!(c.reg_id(), Some(1));
/// assert_eq!(c.instance().unwrap(), "<urn:uuid:00000000-0000-1000-8000-00c0ffee0001>");
/// assert!(ContactValue::parse(" * ").unwrap().is_star());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContactValue<'a> {
    /// `*`: all bindings (REGISTER with Expires: 0, RFC 3261 §10.2.2).
    Star,
    /// An address.
    Addr(NameAddr<'a>),
}

impl<'a> ContactValue<'a> {
    /// Parses one Contact value. Besides the name-addr rules, a present `q` must be a qvalue
    /// and a present `expires` must be delta-seconds.
    pub fn parse(s: &'a str) -> Result<ContactValue<'a>> {
        let (base, t) = trim_with_offset(s);
        if t == "*" {
            return Ok(ContactValue::Star);
        }
        // q and expires are checked in the same pass as the other parameters; the first bad
        // one is reported once the whole value is known to be well-formed.
        let mut bad = None;
        let a = NameAddr::parse_with(s, |n, v| {
            if bad.is_some() {
                return;
            }
            let is_bad = match n.len() {
                1 if n.eq_ignore_ascii_case("q") => v.and_then(parse_qvalue).is_none(),
                7 if n.eq_ignore_ascii_case("expires") => {
                    v.and_then(parse_u32_saturating).is_none()
                }
                _ => false,
            };
            if is_bad {
                bad = Some(n.as_ptr() as usize);
            }
        })?;
        if let Some(p) = bad {
            return Err(Error::InvalidHeader {
                name: "Contact",
                offset: base + (p - t.as_ptr() as usize),
                reason: "bad q or expires parameter",
            });
        }
        Ok(ContactValue::Addr(a))
    }

    /// True for `*`.
    pub fn is_star(&self) -> bool {
        matches!(self, ContactValue::Star)
    }

    /// The address, unless this is `*`.
    pub fn addr(&self) -> Option<&NameAddr<'a>> {
        match self {
            ContactValue::Star => None,
            ContactValue::Addr(a) => Some(a),
        }
    }

    /// See [`NameAddr::q`].
    pub fn q(&self) -> Option<u16> {
        self.addr()?.q()
    }

    /// See [`NameAddr::expires`].
    pub fn expires(&self) -> Option<u32> {
        self.addr()?.expires()
    }

    /// See [`NameAddr::instance`].
    pub fn instance(&self) -> Option<Cow<'a, str>> {
        self.addr()?.instance()
    }

    /// See [`NameAddr::reg_id`].
    pub fn reg_id(&self) -> Option<u32> {
        self.addr()?.reg_id()
    }
}

impl fmt::Display for ContactValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContactValue::Star => f.write_str("*"),
            ContactValue::Addr(a) => a.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uri::Host;
    use proptest::prelude::*;

    fn ok(s: &str) -> NameAddr<'_> {
        NameAddr::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn rfc4475_valid() {
        // wsinv To and From
        let a = ok("\r\n sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n");
        assert_eq!(a.uri_str(), "sip:vivekg@chair-dnrc.example.com");
        assert_eq!(a.tag(), Some("1918181833n"));
        assert!(!a.is_name_addr());
        let a = ok(
            "\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\r\n  ;\r\n  tag = 98asjd8",
        );
        assert_eq!(a.display_name_decoded().unwrap(), "J Rosenberg \\\"");
        assert_eq!(a.tag(), Some("98asjd8"));
        // wsinv Contact
        let a = ok("\"Quoted string \\\"\\\"\" <sip:jdrosen@example.com> ; newparam =\r\n      newvalue ;\r\n  secondparam ; q = 0.33");
        assert_eq!(a.display_name_decoded().unwrap(), "Quoted string \"\"");
        assert_eq!(a.q(), Some(330));
        assert_eq!(a.param("newparam"), Some(Some("newvalue")));
        assert_eq!(a.param("secondparam"), Some(None));
        // lwsdisp
        let a = ok("caller<sip:caller@example.com>;tag=323");
        assert_eq!(a.display_name(), Some("caller"));
        assert_eq!(a.tag(), Some("323"));
        // esc01
        let a = ok("<sip:I%20have%20spaces@example.net>;tag=938");
        let u = a.sip_uri().unwrap();
        assert_eq!(u.user_decoded_str().unwrap(), "I have spaces");
        let a = ok("\r\n  <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>");
        assert!(a.params().is_empty());
        assert_eq!(a.sip_uri().unwrap().params().iter().count(), 2);
        // escnull
        assert_eq!(
            &*ok("<sip:%00@host5.example.com>")
                .sip_uri()
                .unwrap()
                .user_decoded()
                .unwrap(),
            b"\0"
        );
        // unksm2
        let a = ok("isbn:2983792873");
        assert_eq!(a.uri().scheme_str(), "isbn");
        assert!(a.sip_uri().is_none());
        assert_eq!(
            ok("<http://www.example.com>;tag=3234233").tag(),
            Some("3234233")
        );
        assert_eq!(ok("<name:John_Smith>").uri_str(), "name:John_Smith");
        // badaspec From is fine
        let a = ok("\"Bell, Alexander\" <sip:a.g.bell@example.com>;tag=433423");
        assert_eq!(a.display_name(), Some("Bell, Alexander"));
        // RFC 5118
        let a = ok("\"T. desk phone\" <sip:ted@[::ffff:192.0.2.2]>");
        assert_eq!(
            a.sip_uri().unwrap().host(),
            &Host::Ipv6("::ffff:192.0.2.2".parse().unwrap())
        );
        // multi-token and UTF-8 display names
        assert_eq!(
            ok("Alice  Liddell <sip:a@b>").display_name(),
            Some("Alice  Liddell")
        );
        assert_eq!(ok("\"Jöhn\" <sip:a@b>").display_name(), Some("Jöhn"));
        assert_eq!(ok("Jöhn <sip:a@b>").display_name(), Some("Jöhn"));
        assert_eq!(ok("\"\" <sip:a@b>").display_name(), Some(""));
        assert_eq!(ok("<sip:a@b>").display_name(), None);
        assert_eq!(ok("  <sip:a@b>").display_name(), None);
    }

    #[test]
    fn rfc4475_invalid() {
        for bad in [
            // quotbal
            "\"Mr. J. User <sip:j.user@example.com>",
            // badaspec
            "\"Watson, Thomas\" < sip:t.watson@example.org >",
            "<sip:t.watson@example.org >",
            // baddn (whole value, and the pieces a comma split gives)
            "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
            "Bell",
            // ltgtruri-like nesting, missing '>'
            "<<sip:a@b>>",
            "<sip:a@b",
            "sip:a@b>",
            "a\"b <sip:a@b>",
            // addr-spec with '?' or ','
            "sip:a@b?Subject=x",
            "sip:a@b,c",
            // params
            "<sip:a@b>;",
            "<sip:a@b> x",
            "<sip:a@b>;tag=\"x",
            "sip:a@b ;",
            "",
            "   ",
            "<>",
            "<sip:a b@c>",
            "\"x\" sip:a@b",
        ] {
            assert!(NameAddr::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn contact() {
        assert_eq!(ContactValue::parse("*").unwrap(), ContactValue::Star);
        assert_eq!(ContactValue::Star.to_string(), "*");
        let c = ContactValue::parse("<sip:carol@192.0.2.15:49320;transport=tcp>;+sip.instance=\"<urn:uuid:4a1a4e0c-56a7-4f3e-9b51-2f8c93f4d1e2>\";reg-id=1;+org.linphone.specs=\"ephemeral,groupchat/1.1,lime\"").unwrap();
        assert_eq!(
            c.instance().unwrap(),
            "<urn:uuid:4a1a4e0c-56a7-4f3e-9b51-2f8c93f4d1e2>"
        );
        assert_eq!(c.reg_id(), Some(1));
        assert_eq!(
            c.addr().unwrap().sip_uri().unwrap().transport(),
            Some("tcp")
        );
        let c = ContactValue::parse("<sip:a@b>;expires=99999999999;q=1").unwrap();
        assert_eq!(c.expires(), Some(u32::MAX));
        assert_eq!(c.q(), Some(1000));
        assert!(ContactValue::parse("<sip:a@b>;q=2").is_err());
        assert!(ContactValue::parse("<sip:a@b>;q").is_err());
        assert!(ContactValue::parse("<sip:a@b>;expires=x").is_err());
        assert!(ContactValue::parse("**").is_err());
    }

    #[test]
    fn qvalues() {
        for (s, v) in [
            ("0", 0),
            ("0.", 0),
            ("0.5", 500),
            ("0.123", 123),
            ("1", 1000),
            ("1.0", 1000),
            ("1.000", 1000),
        ] {
            assert_eq!(parse_qvalue(s), Some(v), "{s}");
        }
        for s in ["", "2", "0.1234", "1.001", "0,5", ".5", "01", "0.a"] {
            assert_eq!(parse_qvalue(s), None, "{s}");
        }
    }

    prop_compose! {
        fn name_addr()(
            display in proptest::option::of(prop_oneof!["[A-Za-z][A-Za-z0-9.]{0,8}( [A-Za-z]{1,5})?", "\"([^\"\\\\\\x00-\\x1f\\x7f]|\\\\[a-z\"])*\""]),
            user in "[a-z0-9]{1,8}",
            host in "[a-z]{1,8}\\.(com|net)",
            tag in proptest::option::of("[a-zA-Z0-9-]{1,10}"),
            angle in any::<bool>(),
            ws in "( |\r\n )?",
        ) -> (String, Option<String>, String, Option<String>) {
            let uri = format!("sip:{user}@{host}");
            let angle = angle || display.is_some();
            let mut s = String::new();
            if let Some(d) = &display { s.push_str(d); s.push_str(&ws); }
            if angle { s.push('<'); s.push_str(&uri); s.push('>'); } else { s.push_str(&uri); }
            if let Some(t) = &tag { s.push_str(&ws); s.push(';'); s.push_str(&ws); s.push_str("tag="); s.push_str(t); }
            let display = display.map(|d| d.strip_prefix('"').and_then(|x| x.strip_suffix('"')).unwrap_or(&d).to_string());
            (s, display, uri, tag)
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = NameAddr::parse(&s);
            let _ = ContactValue::parse(&s);
        }

        #[test]
        fn never_panics_addrish(s in "[\"<>a-z:@; =,\\\\]{0,24}") {
            if let Ok(a) = NameAddr::parse(&s) {
                let _ = (a.display_name_decoded(), a.params().iter().count(), a.q());
            }
        }

        #[test]
        fn generated_round_trip((s, display, uri, tag) in name_addr()) {
            let a = NameAddr::parse(&s).unwrap();
            prop_assert_eq!(a.display_name(), display.as_deref());
            prop_assert_eq!(a.uri_str(), uri.as_str());
            prop_assert_eq!(a.tag(), tag.as_deref());
            let text = a.to_string();
            prop_assert_eq!(NameAddr::parse(&text).unwrap(), a);
        }
    }
}
