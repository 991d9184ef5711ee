//! Parameter lists: the `;name=value` tails of header values (RFC 3261 §7.3.1, §25.1
//! `generic-param`) and of SIP URIs (RFC 3261 §19.1.1 `uri-parameters`).
//!
//! A [`Params`] stores only the raw slice. Parsing validates the grammar once; iteration and
//! look-up rescan the slice lazily, so no vector is ever built.

use std::borrow::Cow;
use std::fmt;

use crate::error::{Error, Result};
use crate::text::{
    is_escape_at, is_lws_byte, is_paramchar_byte, is_pvalue_byte, scan_pvalue, scan_quoted,
    scan_quoted_strict, scan_token, skip_lws, unquote,
};

/// A validated list of parameters, borrowed from the text it was parsed from.
///
/// ```
/// use sip_core::params::Params;
/// let p = Params::parse(" ; tag = 98asjd8 ;lr; x=\"a;b\"").unwrap();
/// assert_eq!(p.get("TAG"), Some(Some("98asjd8")));
/// assert_eq!(p.get("lr"), Some(None));
/// assert_eq!(p.get("x"), Some(Some("\"a;b\"")));
/// assert_eq!(p.iter().count(), 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Params<'a> {
    raw: &'a str,
}

impl<'a> Params<'a> {
    /// An empty list.
    pub const fn empty() -> Params<'static> {
        Params { raw: "" }
    }

    /// Parses header parameters `*( SEMI generic-param )` (RFC 3261 §25.1), tolerating LWS
    /// around `;` and `=`. Values are a token, a quoted string, an IPv6 reference, or (for the
    /// `received` form of RFC 5118 §4.5) a token that may contain `:`.
    pub fn parse(s: &'a str) -> Result<Params<'a>> {
        walk_header_params(s, 0, |_, _| {})?;
        Ok(Params { raw: s })
    }

    /// Parses SIP URI parameters `*( ";" pname [ "=" pvalue ] )` (RFC 3261 §19.1.1, §25.1):
    /// `paramchar`s and `%XX` escapes only, no white space.
    pub fn parse_uri(s: &'a str) -> Result<Params<'a>> {
        walk_uri_params(s, 0)?;
        Ok(Params { raw: s })
    }

    /// Wraps text already validated by one of the walkers of this module.
    pub(crate) fn from_validated(raw: &'a str) -> Params<'a> {
        Params { raw }
    }

    /// The raw text, exactly as written (starting with `;` or LWS, or empty).
    pub fn as_str(&self) -> &'a str {
        self.raw
    }

    /// True if there is no parameter.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// The parameters in order, as `(name, raw value)`; a quoted value keeps its quotes.
    pub fn iter(&self) -> ParamsIter<'a> {
        ParamsIter {
            raw: self.raw,
            pos: 0,
        }
    }

    /// The first parameter named `name` (ASCII case-insensitive): `Some(None)` if it has no
    /// value, `Some(Some(raw))` if it has one, `None` if absent.
    pub fn get(&self, name: &str) -> Option<Option<&'a str>> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The value of `name` with quotes removed and escapes resolved; `None` if the parameter is
    /// absent or has no value.
    pub fn get_unquoted(&self, name: &str) -> Option<Cow<'a, str>> {
        self.get(name).flatten().map(unquote)
    }

    /// True if a parameter named `name` (ASCII case-insensitive) is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

impl<'a> IntoIterator for Params<'a> {
    type Item = (&'a str, Option<&'a str>);
    type IntoIter = ParamsIter<'a>;
    fn into_iter(self) -> ParamsIter<'a> {
        self.iter()
    }
}

impl fmt::Display for Params<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.raw)
    }
}

/// Iterator over a [`Params`]; see [`Params::iter`].
#[derive(Debug, Clone)]
pub struct ParamsIter<'a> {
    raw: &'a str,
    pos: usize,
}

impl<'a> Iterator for ParamsIter<'a> {
    type Item = (&'a str, Option<&'a str>);

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.raw.as_bytes();
        let mut i = skip_lws(b, self.pos);
        while i < b.len() && b[i] == b';' {
            i = skip_lws(b, i + 1);
        }
        if i >= b.len() {
            self.pos = b.len();
            return None;
        }
        let start = i;
        while i < b.len() && !matches!(b[i], b'=' | b';') && !is_lws_byte(b[i]) {
            i += 1;
        }
        let name = self.raw.get(start..i).unwrap_or("");
        let j = skip_lws(b, i);
        if j < b.len() && b[j] == b'=' {
            let vstart = skip_lws(b, j + 1);
            let mut k = vstart;
            if k < b.len() && b[k] == b'"' {
                k = scan_quoted(b, k).unwrap_or(b.len());
            } else {
                while k < b.len() && b[k] != b';' && !is_lws_byte(b[k]) {
                    k += 1;
                }
            }
            self.pos = k.max(start + 1);
            let v = self.raw.get(vstart..k).unwrap_or("");
            Some((name, Some(v)))
        } else {
            self.pos = i.max(start + 1);
            Some((name, None))
        }
    }
}

fn syntax(what: &'static str, offset: usize) -> Error {
    Error::Syntax { what, offset }
}

/// Validates header parameters and calls `f(name, raw_value)` for each; `base` is added to error
/// offsets. Used by the header views to pick out `tag`, `branch`… in the same pass.
#[inline]
pub(crate) fn walk_header_params<'a>(
    s: &'a str,
    base: usize,
    mut f: impl FnMut(&'a str, Option<&'a str>),
) -> Result<()> {
    let b = s.as_bytes();
    let mut i = 0;
    // LWS is rare here: each skip is guarded by a one-byte test so the usual `;name=value`
    // costs the two class scans and little else.
    let lws_at = |i: usize| b.get(i).is_some_and(|c| is_lws_byte(*c));
    while let Some(&c) = b.get(i) {
        if c != b';' {
            i = skip_lws(b, i);
            match b.get(i) {
                None => break,
                Some(b';') => {}
                Some(_) => return Err(syntax("parameter separator", base + i)),
            }
        }
        let mut nstart = i + 1;
        if lws_at(nstart) {
            nstart = skip_lws(b, nstart);
        }
        i = scan_token(b, nstart);
        let name = match crate::text::slice(s, nstart, i) {
            Some(n) if !n.is_empty() => n,
            _ => return Err(syntax("parameter name", base + i)),
        };
        if lws_at(i) {
            i = skip_lws(b, i);
        }
        if b.get(i) != Some(&b'=') {
            f(name, None);
            continue;
        }
        let mut vstart = i + 1;
        if lws_at(vstart) {
            vstart = skip_lws(b, vstart);
        }
        let vend = match b.get(vstart) {
            Some(&c) if is_pvalue_byte(c) => scan_pvalue(b, vstart + 1),
            _ => scan_param_value(b, vstart)
                .ok_or_else(|| syntax("parameter value", base + vstart))?,
        };
        match crate::text::slice(s, vstart, vend) {
            Some(v) => f(name, Some(v)),
            None => return Err(syntax("parameter value", base + vstart)),
        }
        i = vend;
    }
    Ok(())
}

#[inline]
fn scan_param_value(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => scan_quoted_strict(b, i),
        b'[' => {
            let mut j = i + 1;
            while j < b.len() && (b[j].is_ascii_hexdigit() || matches!(b[j], b':' | b'.')) {
                j += 1;
            }
            (b.get(j) == Some(&b']') && j > i + 1).then_some(j + 1)
        }
        _ => {
            let j = scan_pvalue(b, i);
            (j > i).then_some(j)
        }
    }
}

/// Validates URI parameters (`;pname[=pvalue]`, no LWS) spanning all of `s`.
pub(crate) fn walk_uri_params(s: &str, base: usize) -> Result<()> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b';' {
            return Err(syntax("URI parameter", base + i));
        }
        i += 1;
        let nstart = i;
        i = scan_paramchars(b, i).ok_or_else(|| syntax("URI parameter", base + nstart))?;
        if i == nstart {
            return Err(syntax("URI parameter name", base + i));
        }
        if i < b.len() && b[i] == b'=' {
            i += 1;
            let vstart = i;
            i = scan_paramchars(b, i).ok_or_else(|| syntax("URI parameter", base + vstart))?;
            if i == vstart {
                return Err(syntax("URI parameter value", base + i));
            }
        }
    }
    Ok(())
}

/// Scans `1*paramchar` with escapes; `None` on a bad escape.
fn scan_paramchars(b: &[u8], mut i: usize) -> Option<usize> {
    while i < b.len() {
        if b[i] == b'%' {
            if !is_escape_at(b, i) {
                return None;
            }
            i += 3;
        } else if is_paramchar_byte(b[i]) {
            i += 1;
        } else {
            break;
        }
    }
    Some(i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_params_with_lws() {
        let p = Params::parse(" ;   tag    = 1918181833n").unwrap();
        assert_eq!(p.get("tag"), Some(Some("1918181833n")));
        let p = Params::parse("\r\n  ;\r\n  tag = 98asjd8").unwrap();
        assert_eq!(p.get("tag"), Some(Some("98asjd8")));
        let p =
            Params::parse(" ; newparam =\r\n      newvalue ;\r\n  secondparam ; q = 0.33").unwrap();
        let v: Vec<_> = p.iter().collect();
        assert_eq!(
            v,
            [
                ("newparam", Some("newvalue")),
                ("secondparam", None),
                ("q", Some("0.33"))
            ]
        );
    }

    #[test]
    fn header_param_values() {
        let p = Params::parse(
            ";received=[2001:db8::9:255];x=2001:db8::9:255;+sip.instance=\"<urn:uuid:1>\"",
        )
        .unwrap();
        assert_eq!(p.get("received"), Some(Some("[2001:db8::9:255]")));
        assert_eq!(p.get("x"), Some(Some("2001:db8::9:255")));
        assert_eq!(
            p.get_unquoted("+sip.instance").as_deref(),
            Some("<urn:uuid:1>")
        );
        assert!(p.contains("X"));
        assert!(!p.contains("y"));
        assert!(Params::parse("").unwrap().is_empty());
        assert!(Params::parse("  ").unwrap().is_empty());
    }

    #[test]
    fn header_params_rejects() {
        for bad in [
            ";",
            "; =x",
            ";a=",
            ";a=\"x",
            "x",
            ";a b",
            ";a=b c",
            ";a=[]",
            ";a=<x>",
            ";a=\"\r\"x",
        ] {
            assert!(Params::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn uri_params() {
        let p = Params::parse_uri(";lr;unknownwith=value;unknown-no-value").unwrap();
        assert_eq!(p.iter().count(), 3);
        assert!(p.contains("LR"));
        let p = Params::parse_uri(";%6C%72;n%61me=v%61lue%25%34%31").unwrap();
        assert_eq!(p.get("%6C%72"), Some(None));
        assert_eq!(p.get("n%61me"), Some(Some("v%61lue%25%34%31")));
        assert!(Params::parse_uri(";maddr=[2001:db8::1]").is_ok());
        for bad in [";", "; lr", ";a=", ";a=%ZZ", "lr", ";a=b c", ";a\"b"] {
            assert!(Params::parse_uri(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn walker_reports_values() {
        let mut seen = Vec::new();
        walk_header_params(";branch=z9hG4bK1;rport", 0, |n, v| seen.push((n, v))).unwrap();
        assert_eq!(seen, [("branch", Some("z9hG4bK1")), ("rport", None)]);
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            if let Ok(p) = Params::parse(&s) { let _ = p.iter().count(); }
            if let Ok(p) = Params::parse_uri(&s) { let _ = p.iter().count(); }
            let _ = Params::from_validated(&s).iter().take(1000).count();
        }

        #[test]
        fn iter_matches_generated(
            ps in proptest::collection::vec(("[a-z][a-z0-9.+-]{0,6}", proptest::option::of("[a-zA-Z0-9]{1,6}|\"[a-z ;,]{0,5}\"")), 0..5),
            ws in "[ ]{0,2}"
        ) {
            let mut s = String::new();
            for (n, v) in &ps {
                s.push_str(&ws); s.push(';'); s.push_str(&ws); s.push_str(n);
                if let Some(v) = v { s.push_str(&ws); s.push('='); s.push_str(&ws); s.push_str(v); }
            }
            let p = Params::parse(&s).unwrap();
            let got: Vec<_> = p.iter().map(|(n, v)| (n.to_string(), v.map(str::to_string))).collect();
            prop_assert_eq!(got, ps);
        }
    }
}
