//! URI equivalence: RFC 3261 §19.1.4 for `sip:`/`sips:`, RFC 3966 §4 for `tel:`.
//!
//! A registrar matches a REGISTER's Contact against the bindings it holds with these rules
//! (RFC 3261 §10.3 step 7), a proxy compares Request-URIs and Route entries with them, and a
//! UA matches dialogs' remote targets. The comparison allocates nothing: escapes are resolved
//! while both sides are walked.

use crate::params::Params;
use crate::text::hex_val;
use crate::uri::{Host, Scheme, Uri};

/// RFC 3261 §25.1 `reserved`: escaping one of these changes the meaning, so `%3B` and `;` differ.
const RESERVED: &[u8] = b";/?:@&=+$,";

/// One character of an escaped text once `%XX` is resolved: a reserved character that arrived
/// escaped stays distinct from the same character written plainly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Plain(u8),
    Escaped(u8),
}

impl Unit {
    fn lower(self) -> Unit {
        match self {
            Unit::Plain(c) => Unit::Plain(c.to_ascii_lowercase()),
            Unit::Escaped(c) => Unit::Escaped(c.to_ascii_lowercase()),
        }
    }
}

/// The characters of `s` with `%XX` escapes resolved.
fn units(s: &str) -> impl Iterator<Item = Unit> + '_ {
    let b = s.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        let c = *b.get(i)?;
        if c == b'%' {
            let hi = b.get(i + 1).copied().and_then(hex_val);
            let lo = b.get(i + 2).copied().and_then(hex_val);
            if let (Some(hi), Some(lo)) = (hi, lo) {
                i += 3;
                let v = hi << 4 | lo;
                return Some(if RESERVED.contains(&v) {
                    Unit::Escaped(v)
                } else {
                    Unit::Plain(v)
                });
            }
        }
        i += 1;
        Some(Unit::Plain(c))
    })
}

/// Equal once escapes are resolved; `fold` compares ASCII letters case-insensitively.
fn text_eq(a: &str, b: &str, fold: bool) -> bool {
    if a == b {
        return true;
    }
    if fold {
        units(a).map(Unit::lower).eq(units(b).map(Unit::lower))
    } else {
        units(a).eq(units(b))
    }
}

fn opt_text_eq(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => text_eq(a, b, false),
        _ => false,
    }
}

/// The first parameter of `params` named `name` (escapes resolved, case-insensitive).
fn find_param<'a>(params: Params<'a>, name: &str) -> Option<Option<&'a str>> {
    params
        .iter()
        .find(|(n, _)| text_eq(n, name, true))
        .map(|(_, v)| v)
}

/// The parameters of `params`, the first of each name only (a repeated name is one parameter:
/// its first value counts, as [`Params::get`] reads it).
fn distinct(params: Params<'_>) -> impl Iterator<Item = (&str, Option<&str>)> {
    params
        .iter()
        .enumerate()
        .filter(move |(k, (n, _))| !params.iter().take(*k).any(|(m, _)| text_eq(n, m, true)))
        .map(|(_, p)| p)
}

/// Parameters that never match when only one URI has them (RFC 3261 §19.1.4: `user`, `ttl`,
/// `method`, `maddr`; and `transport`, whose default an omitted one does not match either).
fn is_sticky(name: &str) -> bool {
    ["user", "ttl", "method", "maddr", "transport"]
        .iter()
        .any(|s| text_eq(name, s, true))
}

/// Parameter values: the ones the grammar spells as tokens or hosts compare without case, the
/// rest (method included) exactly, escapes resolved either way.
fn param_value_eq(name: &str, a: Option<&str>, b: Option<&str>) -> bool {
    let fold = ["transport", "user", "maddr", "ttl", "lr"]
        .iter()
        .any(|s| text_eq(name, s, true));
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => text_eq(a, b, fold),
        _ => false,
    }
}

/// RFC 3261 §19.1.4 rules for uri-parameters.
fn sip_params_eq(a: Params<'_>, b: Params<'_>) -> bool {
    let one_way = |x: Params<'_>, y: Params<'_>| {
        distinct(x).all(|(n, v)| match find_param(y, n) {
            Some(w) => param_value_eq(n, v, w),
            None => !is_sticky(n),
        })
    };
    one_way(a, b) && one_way(b, a)
}

/// URI headers: every one present in both, with equal values (names without case).
fn headers_eq(a: &Uri<'_>, b: &Uri<'_>) -> bool {
    let one_way = |x: &Uri<'_>, y: &Uri<'_>| {
        // Every header of one is in the other with an equal value (a repeated header
        // matches any of the other's values of that name).
        x.header_iter().all(|(n, v)| {
            y.header_iter()
                .any(|(m, w)| text_eq(n, m, true) && text_eq(v, w, false))
        })
    };
    one_way(a, b) && one_way(b, a)
}

fn host_eq(a: &Host<'_>, b: &Host<'_>) -> bool {
    match (a, b) {
        (Host::Domain(x), Host::Domain(y)) => text_eq(x, y, true),
        (Host::Ipv4(x), Host::Ipv4(y)) => x == y,
        (Host::Ipv6(x), Host::Ipv6(y)) => x == y,
        // A name and the address it resolves to are different URIs.
        _ => false,
    }
}

/// A `tel:` number without its visual separators (RFC 3966 §5.1.1).
fn tel_digits(n: &str) -> impl Iterator<Item = u8> + '_ {
    n.bytes()
        .filter(|c| !matches!(c, b'-' | b'.' | b'(' | b')'))
        .map(|c| c.to_ascii_lowercase())
}

/// RFC 3966 §4: the numbers without separators, and the same parameters by name whatever their
/// order (`phone-context` digits without separators too), all without case.
fn tel_eq(a: &Uri<'_>, b: &Uri<'_>) -> bool {
    let (Some(na), Some(nb)) = (a.user(), b.user()) else {
        return false;
    };
    if !tel_digits(na).eq(tel_digits(nb)) {
        return false;
    }
    let value_eq = |n: &str, v: Option<&str>, w: Option<&str>| match (v, w) {
        (None, None) => true,
        (Some(v), Some(w)) if n.eq_ignore_ascii_case("phone-context") && v.starts_with('+') => {
            tel_digits(v).eq(tel_digits(w))
        }
        (Some(v), Some(w)) => text_eq(v, w, true),
        _ => false,
    };
    let one_way = |x: Params<'_>, y: Params<'_>| {
        distinct(x).all(|(n, v)| find_param(y, n).is_some_and(|w| value_eq(n, v, w)))
    };
    one_way(a.params(), b.params()) && one_way(b.params(), a.params())
}

impl Uri<'_> {
    /// Whether two URIs are equivalent: RFC 3261 §19.1.4 for `sip:`/`sips:`, RFC 3966 §4 for
    /// `tel:`. This is the comparison a registrar uses to tell a refresh of a binding from a new
    /// one (RFC 3261 §10.3).
    ///
    /// User and password compare exactly, host and scheme without case, escapes of unreserved
    /// characters equal the characters; an omitted port, `transport`, `user`, `ttl`, `method`
    /// or `maddr` does not match an explicit one; other parameters only one URI has are
    /// ignored, and URI headers must all match.
    ///
    /// ```
    /// use sip_core::uri::Uri;
    /// let eq = |a, b| Uri::parse(a).unwrap().equivalent(&Uri::parse(b).unwrap());
    /// assert!(eq("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"));
    /// assert!(eq("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"));
    /// assert!(!eq("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"));
    /// assert!(!eq("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"));
    /// ```
    pub fn equivalent(&self, other: &Uri<'_>) -> bool {
        if self.scheme() != other.scheme() {
            return false;
        }
        if self.scheme() == Scheme::Tel {
            return tel_eq(self, other);
        }
        opt_text_eq(self.user(), other.user())
            && opt_text_eq(self.password(), other.password())
            && host_eq(self.host(), other.host())
            && self.port() == other.port()
            && sip_params_eq(self.params(), other.params())
            && headers_eq(self, other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The comparison vectors: RFC 3261 §19.1.4's examples and RFC 3966 §4's rules, one pair per
    /// line with its verdict (`testdata/uri/equivalence.txt`).
    #[test]
    fn rfc_vectors() {
        let text = include_str!("../../testdata/uri/equivalence.txt");
        let mut n = 0;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (Some(verdict), Some(a), Some(b)) = (parts.next(), parts.next(), parts.next())
            else {
                panic!("bad vector line: {line}");
            };
            let ua = Uri::parse(a).unwrap_or_else(|e| panic!("{a}: {e}"));
            let ub = Uri::parse(b).unwrap_or_else(|e| panic!("{b}: {e}"));
            let want = match verdict {
                "==" => true,
                "!=" => false,
                other => panic!("bad verdict {other}"),
            };
            assert_eq!(ua.equivalent(&ub), want, "{a} {verdict} {b}");
            assert_eq!(ub.equivalent(&ua), want, "{b} {verdict} {a} (reversed)");
            n += 1;
        }
        assert!(n >= 20, "only {n} vectors");
    }

    #[test]
    fn a_repeated_parameter_counts_once() {
        for s in ["tel:+1234;q=a;q=b", "sip:a@b;x=1;x=2", "sip:a@b?h=1&h=2"] {
            let u = Uri::parse(s).unwrap();
            assert!(u.equivalent(&u), "{s}");
        }
    }

    proptest! {
        /// Every URI is equivalent to itself, and to itself with the scheme and host in
        /// another case and an unreserved user character escaped.
        #[test]
        fn reflexive_and_case_of_host(
            user in "[a-z]{1,6}",
            host in "[a-z]{1,8}\\.(com|net)",
            port in proptest::option::of(1u16..),
            params in "(;(transport=tcp|lr|x=[a-z]{1,3}))*",
        ) {
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            let a = format!("sip:{user}@{host}{port}{params}");
            let escaped = format!("%{:02x}{}", user.as_bytes()[0], &user[1..]);
            let b = format!("SIP:{escaped}@{}{port}{params}", host.to_uppercase());
            let ua = Uri::parse(&a).unwrap();
            let ub = Uri::parse(&b).unwrap();
            prop_assert!(ua.equivalent(&ua));
            prop_assert!(ua.equivalent(&ub));
            prop_assert!(ub.equivalent(&ua));
        }

        /// Symmetric on arbitrary pairs.
        #[test]
        fn symmetric(
            a in "sips?:[a-c%0-9]{0,4}@?[a-c]{1,3}(:[0-9]{1,2})?(;[a-c]{1,2}(=[a-c]{1,2})?){0,3}",
            b in "sips?:[a-c%0-9]{0,4}@?[a-c]{1,3}(:[0-9]{1,2})?(;[a-c]{1,2}(=[a-c]{1,2})?){0,3}",
        ) {
            if let (Ok(ua), Ok(ub)) = (Uri::parse(&a), Uri::parse(&b)) {
                prop_assert_eq!(ua.equivalent(&ub), ub.equivalent(&ua));
            }
        }
    }
}
