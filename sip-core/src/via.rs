//! The Via header value (RFC 3261 §20.42, §18.2.1; `rport` RFC 3581; IPv6 RFC 5118).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::addr::trim_with_offset;
use crate::error::{Error, Result};
use crate::params::{walk_header_params, Params};
use crate::text::{name_is, parse_u32_digits, scan_pvalue, scan_token, skip_lws, slice};
use crate::uri::{parse_host, parse_port, Host};

/// The `branch` magic cookie of RFC 3261 §8.1.1.7.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

fn syntax(what: &'static str, offset: usize) -> Error {
    Error::Syntax { what, offset }
}

/// One `via-parm`: sent-protocol, sent-by and via-params.
///
/// ```
/// use sip_core::via::Via;
/// let v = Via::parse("SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch  =   z9hG4bK9ikj8").unwrap();
/// assert_eq!(v.transport(), "TCP");
/// assert_eq!(v.host_str(), "spindle.example.com");
/// assert_eq!(v.branch(), Some("z9hG4bK9ikj8"));
/// assert!(v.has_magic_cookie());
///
/// let v = Via::parse("SIP/2.0/UDP 192.0.2.20:5080;branch=z9hG4bK-1;rport=5080;received=198.51.100.9").unwrap();
/// assert_eq!(v.sent_by_port(), Some(5080));
/// assert_eq!(v.rport(), Some(Some(5080)));
/// assert_eq!(v.received(), Some("198.51.100.9"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Via<'a> {
    raw: &'a str,
    protocol_name: &'a str,
    protocol_version: &'a str,
    transport: &'a str,
    host: Host<'a>,
    host_str: &'a str,
    port: Option<u16>,
    params: &'a str,
    branch: Option<&'a str>,
    received: Option<&'a str>,
    rport: Option<Option<u16>>,
    maddr: Option<&'a str>,
    ttl: Option<u8>,
    /// Where `received` and `rport` are written in `raw` (`;name[=value]`, empty ranges when
    /// absent), when the parameters are the plain `;name[=value]` run and each occurs at most
    /// once: what [`Via::text_without`] cuts out.
    stamp_cuts: Option<[(u32, u32); 2]>,
}

impl<'a> Via<'a> {
    /// Parses one Via value (one element of a comma-separated Via line). LWS is allowed around
    /// the slashes of the sent-protocol, before the port colon and around parameters (RFC 4475
    /// `wsinv`). Known parameters are checked: `ttl` 0..=255, `rport` empty or a port,
    /// `maddr` a host, `received` an IPv4 or IPv6 address, bracketed or not (RFC 5118 §4.5).
    pub fn parse(s: &'a str) -> Result<Via<'a>> {
        let (base, t) = trim_with_offset(s);
        let b = t.as_bytes();
        let (protocol_name, protocol_version, i) = match b.get(..8) {
            // The usual spelling, without LWS: the same tokens the general path finds.
            Some(b"SIP/2.0/") => (&t[..3], &t[4..7], 8),
            _ => {
                let (name, i) = token_at(t, 0, base)?;
                let i = slash_at(b, i, base)?;
                let (version, i) = token_at(t, i, base)?;
                (name, version, slash_at(b, i, base)?)
            }
        };
        let (transport, i) = token_at(t, i, base)?;
        let hstart = skip_lws(b, i);
        if hstart == i {
            return Err(syntax("Via sent-by", base + i));
        }
        let (host, hend) = parse_host(t, hstart, base)?;
        let host_str = &t[hstart..hend];
        let mut i = hend;
        let mut port = None;
        let k = skip_lws(b, i);
        if b.get(k) == Some(&b':') {
            let (p, e) = parse_port(t, skip_lws(b, k + 1), base)?;
            port = Some(p);
            i = e;
        }
        let params = &t[i..];
        let pbase = base + i;
        let mut p = KnownParams::default();
        // The usual `;name=value` run is scanned directly; anything else (LWS, quoted values,
        // IPv6 references, errors) goes through the general walker, which decides.
        let plain = p.scan_plain(params);
        if !plain {
            p = KnownParams::default();
            walk_header_params(params, pbase, |n, v| p.set(n, v))?;
        }
        let KnownParams {
            branch,
            received,
            rport: rport_raw,
            maddr,
            ttl: ttl_raw,
            cuts,
            repeated,
        } = p;
        let stamp_cuts = (plain && !repeated).then(|| {
            cuts.map(|(a, b)| {
                let at = |x: usize| u32::try_from(i + x).unwrap_or(u32::MAX);
                (at(a), at(b))
            })
        });
        let bad = |reason| Error::InvalidHeader {
            name: "Via",
            offset: pbase,
            reason,
        };
        let rport = match rport_raw {
            None => None,
            Some(None) => Some(None),
            Some(Some(v)) => match parse_u32_digits(v) {
                Some(p) if p <= u32::from(u16::MAX) => Some(Some(p as u16)),
                _ => return Err(bad("bad rport")),
            },
        };
        let ttl = match ttl_raw {
            None => None,
            Some(v) => match v.and_then(parse_u32_digits) {
                Some(n) if n <= 255 && v.is_some_and(|v| v.len() <= 3) => Some(n as u8),
                _ => return Err(bad("bad ttl")),
            },
        };
        let maddr = match maddr {
            None => None,
            Some(Some(m)) if matches!(parse_host(m, 0, 0), Ok((_, e)) if e == m.len()) => Some(m),
            Some(_) => return Err(bad("bad maddr")),
        };
        let received = match received {
            None => None,
            Some(Some(r)) if parse_ip(r).is_some() => Some(r),
            Some(_) => return Err(bad("bad received")),
        };
        let branch = match branch {
            None => None,
            Some(Some(br)) if !br.starts_with('"') => Some(br),
            Some(_) => return Err(bad("bad branch")),
        };
        Ok(Via {
            raw: t,
            protocol_name,
            protocol_version,
            transport,
            host,
            host_str,
            port,
            params,
            branch,
            received,
            rport,
            maddr,
            ttl,
            stamp_cuts,
        })
    }

    /// The value as written, without surrounding LWS.
    pub fn as_str(&self) -> &'a str {
        self.raw
    }

    /// The protocol name, normally `SIP`.
    pub fn protocol_name(&self) -> &'a str {
        self.protocol_name
    }

    /// The protocol version, normally `2.0`.
    pub fn protocol_version(&self) -> &'a str {
        self.protocol_version
    }

    /// The transport as written (`UDP`, `TCP`, `TLS`, `SCTP`, `WS`, … or any token).
    pub fn transport(&self) -> &'a str {
        self.transport
    }

    /// The sent-by host.
    pub fn sent_by_host(&self) -> &Host<'a> {
        &self.host
    }

    /// The sent-by host as written (IPv6 with brackets).
    pub fn host_str(&self) -> &'a str {
        self.host_str
    }

    /// The sent-by port, if written.
    pub fn sent_by_port(&self) -> Option<u16> {
        self.port
    }

    /// All via-params.
    pub fn params(&self) -> Params<'a> {
        Params::from_validated(self.params)
    }

    /// The `branch` parameter (RFC 3261 §8.1.1.7).
    pub fn branch(&self) -> Option<&'a str> {
        self.branch
    }

    /// True if the branch starts with the RFC 3261 magic cookie `z9hG4bK` (§8.1.1.7); an RFC
    /// 2543 peer's branch does not (RFC 4475 `inv2543`).
    pub fn has_magic_cookie(&self) -> bool {
        self.branch.is_some_and(|b| b.starts_with(MAGIC_COOKIE))
    }

    /// The `received` parameter as written: IPv4, or IPv6 with or without brackets
    /// (RFC 3261 §18.2.1, RFC 5118 §4.5).
    pub fn received(&self) -> Option<&'a str> {
        self.received
    }

    /// The value as written with its `received` parameter (and `rport` when `rport` is true)
    /// cut out, as three pieces to write one after the other: what a transport stamping the
    /// Via (RFC 3261 §18.2.1, RFC 3581 §4) keeps before appending its own. `None` when the
    /// parameters are not the plain `;name[=value]` run (LWS, quotes) or either one occurs
    /// twice; [`params`](Self::params) then has them.
    ///
    /// ```
    /// use sip_core::via::Via;
    /// let v = Via::parse("SIP/2.0/UDP h:5060;rport;branch=z9hG4bK1;received=1.2.3.4").unwrap();
    /// assert_eq!(v.text_without(true).unwrap().concat(), "SIP/2.0/UDP h:5060;branch=z9hG4bK1");
    /// assert_eq!(v.text_without(false).unwrap().concat(), "SIP/2.0/UDP h:5060;rport;branch=z9hG4bK1");
    /// ```
    pub fn text_without(&self, rport: bool) -> Option<[&'a str; 3]> {
        let [received, rp] = self.stamp_cuts?;
        let rp = if rport { rp } else { (0, 0) };
        let (mut first, mut second) = (received, rp);
        if first == (0, 0) || (second != (0, 0) && second.0 < first.0) {
            std::mem::swap(&mut first, &mut second);
        }
        let raw = self.raw;
        let piece = |a: u32, b: u32| raw.get(a as usize..b as usize);
        let end = raw.len() as u32;
        Some(match (first, second) {
            ((0, 0), _) => [raw, "", ""],
            ((a, b), (0, 0)) => [piece(0, a)?, piece(b, end)?, ""],
            ((a, b), (c, d)) => [piece(0, a)?, piece(b, c)?, piece(d, end)?],
        })
    }

    /// The `received` parameter as an address.
    pub fn received_addr(&self) -> Option<IpAddr> {
        self.received.and_then(parse_ip)
    }

    /// The `rport` parameter (RFC 3581 §4): `Some(None)` when present without a value (a client
    /// asking for it), `Some(Some(port))` when filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.rport
    }

    /// The `maddr` parameter.
    pub fn maddr(&self) -> Option<&'a str> {
        self.maddr
    }

    /// The `ttl` parameter (0..=255).
    pub fn ttl(&self) -> Option<u8> {
        self.ttl
    }
}

impl fmt::Display for Via<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.raw)
    }
}

/// The via-params this view interprets, as written: `Some(None)` for a name without a value.
/// The first occurrence of each wins.
#[derive(Default)]
struct KnownParams<'a> {
    branch: Option<Option<&'a str>>,
    received: Option<Option<&'a str>>,
    rport: Option<Option<&'a str>>,
    maddr: Option<Option<&'a str>>,
    ttl: Option<Option<&'a str>>,
    /// The plain scan's byte ranges of `received` and `rport` (from their `;`), in the text
    /// scanned.
    cuts: [(usize, usize); 2],
    /// Whether `received` or `rport` occurs more than once.
    repeated: bool,
}

impl<'a> KnownParams<'a> {
    /// Records one parameter; `n` is a non-empty token.
    #[inline(always)]
    fn set(&mut self, n: &'a str, v: Option<&'a str>) {
        // Dispatch on length and first letter: most parameters are none of these.
        let first = n.as_bytes().first().map_or(0, |c| c | 0x20);
        let slot = match (n.len(), first) {
            (6, b'b') if name_is(n, b"branch") => &mut self.branch,
            (8, b'r') if name_is(n, b"received") => &mut self.received,
            (5, b'r') if name_is(n, b"rport") => &mut self.rport,
            (5, b'm') if name_is(n, b"maddr") => &mut self.maddr,
            (3, b't') if name_is(n, b"ttl") => &mut self.ttl,
            _ => return,
        };
        if slot.is_none() {
            *slot = Some(v);
        }
    }

    /// Scans `(";" token ["=" token-or-colon])*` with nothing else (no LWS, quotes or
    /// brackets). Returns false, having recorded a prefix, when the text is anything else.
    #[inline]
    fn scan_plain(&mut self, s: &'a str) -> bool {
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] != b';' {
                return false;
            }
            let i_start = i;
            let ns = i + 1;
            let ne = scan_token(b, ns);
            let Some(name) = slice(s, ns, ne).filter(|n| !n.is_empty()) else {
                return false;
            };
            let value = if b.get(ne) == Some(&b'=') {
                let ve = scan_pvalue(b, ne + 1);
                match slice(s, ne + 1, ve).filter(|v| !v.is_empty()) {
                    Some(v) => {
                        i = ve;
                        Some(v)
                    }
                    None => return false,
                }
            } else {
                i = ne;
                None
            };
            if let Some(k) = stamp_param(name) {
                if self.cuts[k] != (0, 0) {
                    self.repeated = true;
                }
                self.cuts[k] = (i_start, i);
            }
            self.set(name, value);
        }
        true
    }
}

/// Which of the parameters a transport stamps `name` is: 0 `received`, 1 `rport`.
#[inline]
fn stamp_param(name: &str) -> Option<usize> {
    match name.len() {
        8 if name_is(name, b"received") => Some(0),
        5 if name_is(name, b"rport") => Some(1),
        _ => None,
    }
}

fn token_at(s: &str, i: usize, base: usize) -> Result<(&str, usize)> {
    let b = s.as_bytes();
    let i = skip_lws(b, i);
    let e = scan_token(b, i);
    if e == i {
        return Err(syntax("Via sent-protocol", base + i));
    }
    Ok((&s[i..e], e))
}

fn slash_at(b: &[u8], i: usize, base: usize) -> Result<usize> {
    let i = skip_lws(b, i);
    if b.get(i) != Some(&b'/') {
        return Err(syntax("Via sent-protocol", base + i));
    }
    Ok(i + 1)
}

/// An IPv4 address, or an IPv6 address with or without brackets.
#[inline]
fn parse_ip(s: &str) -> Option<IpAddr> {
    if let Some(a) = parse_ipv4_strict(s.as_bytes()) {
        return Some(IpAddr::V4(a));
    }
    parse_ip_slow(s)
}

/// Dotted-quad IPv4 exactly as `Ipv4Addr::from_str` takes it (1 to 3 digits per octet, at most
/// 255, no leading zero), without its set-up cost.
#[inline]
fn parse_ipv4_strict(b: &[u8]) -> Option<Ipv4Addr> {
    if !(7..=15).contains(&b.len()) {
        return None;
    }
    let digit = |i: usize| b.get(i).map(|c| c.wrapping_sub(b'0')).filter(|d| *d <= 9);
    let mut oct = [0u8; 4];
    let mut i = 0;
    for (k, o) in oct.iter_mut().enumerate() {
        if k > 0 {
            if b.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        let first = digit(i)?;
        let mut v = u32::from(first);
        i += 1;
        if let Some(d) = digit(i) {
            if first == 0 {
                return None;
            }
            v = v * 10 + u32::from(d);
            i += 1;
            if let Some(d) = digit(i) {
                v = v * 10 + u32::from(d);
                i += 1;
            }
        }
        *o = u8::try_from(v).ok()?;
    }
    (i == b.len()).then(|| Ipv4Addr::from(oct))
}

#[cold]
fn parse_ip_slow(s: &str) -> Option<IpAddr> {
    if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(s: &str) -> Via<'_> {
        Via::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn rfc4475_wsinv() {
        let v = ok(" SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw");
        assert_eq!(v.protocol_name(), "SIP");
        assert_eq!(v.protocol_version(), "2.0");
        assert_eq!(v.transport(), "UDP");
        assert_eq!(v.sent_by_host(), &Host::Ipv4(Ipv4Addr::new(192, 0, 2, 2)));
        assert_eq!(v.branch(), Some("390skdjuw"));
        assert!(!v.has_magic_cookie());
        let v = ok("SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch  =   z9hG4bK9ikj8  ");
        assert_eq!(v.host_str(), "spindle.example.com");
        assert_eq!(v.branch(), Some("z9hG4bK9ikj8"));
        assert!(v.as_str().ends_with("z9hG4bK9ikj8"));
        let v = ok("\r\n SIP  /    2.0   / UDP  192.168.255.111   ; branch=\r\n z9hG4bK30239");
        assert_eq!(v.branch(), Some("z9hG4bK30239"));
        assert_eq!(v.sent_by_port(), None);
    }

    #[test]
    fn transports_and_params() {
        for t in ["UDP", "TCP", "TLS", "SCTP", "UNKNOWN", "WSS"] {
            assert_eq!(
                ok(&format!("SIP/2.0/{t} t.example.com;branch=z9hG4bKx")).transport(),
                t
            );
        }
        let v = ok("SIP/2.0/UDP 192.168.1.2:5060;rport;branch=z9hG4bK1890963109");
        assert_eq!(v.rport(), Some(None));
        assert_eq!(v.sent_by_port(), Some(5060));
        let v = ok("SIP/2.0/TCP 192.0.2.15:49320;alias;branch=z9hG4bK.fDb2xPq8L;rport");
        assert!(v.params().contains("alias"));
        assert_eq!(v.rport(), Some(None));
        let v = ok("SIP/2.0/UDP h.example.com : 5060 ;maddr=224.2.0.1;ttl=16;BRANCH=z9hG4bKa");
        assert_eq!(v.sent_by_port(), Some(5060));
        assert_eq!(v.maddr(), Some("224.2.0.1"));
        assert_eq!(v.ttl(), Some(16));
        assert_eq!(v.branch(), Some("z9hG4bKa"));
        assert_eq!(v.rport(), None);
        assert_eq!(v.received(), None);
        assert_eq!(ok("SIP/2.0/UDP h").branch(), None);
    }

    #[test]
    fn rfc5118() {
        let v6 = |s: &str| Host::Ipv6(s.parse().unwrap());
        let v = ok("SIP/2.0/UDP [::ffff:192.0.2.10]:19823;branch=z9hG4bKbh19");
        assert_eq!(v.sent_by_host(), &v6("::ffff:192.0.2.10"));
        assert_eq!(v.sent_by_port(), Some(19823));
        let v = ok("SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255;branch=z9hG4bKas3");
        assert_eq!(v.received(), Some("2001:db8::9:255"));
        assert_eq!(v.received_addr(), Some("2001:db8::9:255".parse().unwrap()));
        assert_eq!(v.host_str(), "[2001:db8::9:1]");
        let v = ok("SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:255];branch=z9hG4bKas3-111");
        assert_eq!(v.received(), Some("[2001:db8::9:255]"));
        assert_eq!(v.received_addr(), Some("2001:db8::9:255".parse().unwrap()));
        let v = ok("SIP/2.0/TCP [2001:db8::9:255];branch=z9hG4bK451jj;received=192.0.2.200");
        assert_eq!(v.received_addr(), Some("192.0.2.200".parse().unwrap()));
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "SIP/2.0/UDP",
            "SIP/2.0/UDP ",
            "SIP/2.0 UDP host",
            "SIP/2.0/UDPhost",
            "SIP//UDP host",
            "SIP/2.0/UDP host:",
            "SIP/2.0/UDP host:70000",
            "SIP/2.0/UDP 2001:db8::1",
            "SIP/2.0/UDP [2001:db8:::1]",
            "SIP/2.0/UDP host;",
            "SIP/2.0/UDP host;branch",
            "SIP/2.0/UDP host;branch=\"x\"",
            "SIP/2.0/UDP host;ttl=256",
            "SIP/2.0/UDP host;ttl=0016",
            "SIP/2.0/UDP host;rport=x",
            "SIP/2.0/UDP host;rport=65536",
            "SIP/2.0/UDP host;received=example.com",
            "SIP/2.0/UDP host;maddr=a_b",
            "SIP/2.0/UDP host extra",
            "SIP/2.0/UDP host, SIP/2.0/UDP h2",
        ] {
            assert!(Via::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ipv4_like_std() {
        for s in [
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "01.1.1.1",
            "1.1.1",
            "1.1.1.1.",
            "1..1.1",
            "1.1.1.1234",
            "1.1.1.0010",
            "",
            ".",
            "1.2.3.4 ",
            "00.1.1.1",
            "10.0.0.1",
        ] {
            assert_eq!(parse_ipv4_strict(s.as_bytes()), s.parse().ok(), "{s:?}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = Via::parse(&s);
        }

        /// The direct scan of plain parameters and the general walker agree: whatever the
        /// spelling (case, LWS, repeats), the known parameters read back as the general
        /// parameter list gives them (first occurrence wins).
        #[test]
        fn known_params_agree_with_the_general_walker(
            params in proptest::collection::vec(
                ("(branch|BRANCH|rport|received|maddr|ttl|x|rPort)", proptest::option::of("[0-9a-z.]{1,6}"), "[ ]{0,1}"),
                0..5,
            )
        ) {
            let mut text = String::from("SIP/2.0/UDP h");
            for (n, v, sp) in &params {
                text.push_str(sp);
                text.push(';');
                text.push_str(n);
                if let Some(v) = v {
                    text.push('=');
                    text.push_str(v);
                }
            }
            let general = Params::parse(&text[13..]).unwrap();
            match Via::parse(&text) {
                Ok(v) => {
                    prop_assert_eq!(v.branch(), general.get("branch").flatten());
                    prop_assert_eq!(v.received(), general.get("received").flatten());
                    prop_assert_eq!(v.maddr(), general.get("maddr").flatten());
                    prop_assert_eq!(v.ttl().map(u32::from), general.get("ttl").flatten().and_then(|t| t.parse().ok()));
                    let rport = general.get("rport").map(|r| r.and_then(|p| p.parse::<u16>().ok()));
                    prop_assert_eq!(v.rport(), rport);
                }
                // Refused only for a known parameter with a bad value.
                Err(_) => {
                    let bad_ttl = general.get("ttl").is_some_and(|t| t.and_then(|t| t.parse::<u8>().ok()).is_none());
                    let bad_rport = general.get("rport").flatten().is_some_and(|p| p.parse::<u16>().is_err());
                    let bad_received = general.get("received").is_some_and(|r| r.and_then(|r| r.parse::<IpAddr>().ok()).is_none());
                    let bad_maddr = general.get("maddr").is_some_and(|m| {
                        m.is_none_or(|m| !matches!(parse_host(m, 0, 0), Ok((_, e)) if e == m.len()))
                    });
                    let bad_branch = general.get("branch").is_some_and(|b| b.is_none());
                    prop_assert!(bad_ttl || bad_rport || bad_received || bad_maddr || bad_branch, "{}", text);
                }
            }
        }

        #[test]
        fn ipv4_matches_std(s in "[0-9.]{0,17}") {
            prop_assert_eq!(parse_ipv4_strict(s.as_bytes()), s.parse::<Ipv4Addr>().ok());
        }

        #[test]
        fn never_panics_viaish(s in "SIP/2\\.0/[A-Z]{1,4}[ ]{0,2}[a-z0-9:.\\[\\];=\r\n ]{0,30}") {
            if let Ok(v) = Via::parse(&s) { let _ = v.params().iter().count(); }
        }

        #[test]
        fn generated_round_trip(
            transport in "UDP|TCP|TLS|SCTP|[A-Z]{2,5}",
            host in prop_oneof![
                "[a-z][a-z0-9-]{0,6}[a-z0-9](\\.[a-z]{2,4}){0,2}",
                any::<[u8; 4]>().prop_map(|a| Ipv4Addr::from(a).to_string()),
                any::<[u16; 8]>().prop_map(|a| format!("[{}]", Ipv6Addr::from(a))),
            ],
            port in proptest::option::of(any::<u16>()),
            branch in "z9hG4bK[a-zA-Z0-9.-]{1,12}",
            rport in proptest::option::of(proptest::option::of(any::<u16>())),
            ws in "( |\r\n )?",
        ) {
            let mut s = format!("SIP{ws}/2.0/{ws}{transport} {host}");
            if let Some(p) = port { s.push_str(&format!(":{p}")); }
            s.push_str(&format!("{ws};{ws}branch{ws}={ws}{branch}"));
            match rport {
                None => {}
                Some(None) => s.push_str(";rport"),
                Some(Some(p)) => s.push_str(&format!(";rport={p}")),
            }
            let v = Via::parse(&s).unwrap();
            prop_assert_eq!(v.transport(), transport.as_str());
            prop_assert_eq!(v.host_str(), host.as_str());
            prop_assert_eq!(v.sent_by_port(), port);
            prop_assert_eq!(v.branch(), Some(branch.as_str()));
            prop_assert_eq!(v.rport(), rport);
            let text = v.to_string();
            prop_assert_eq!(Via::parse(&text).unwrap(), v);
        }
    }
}
