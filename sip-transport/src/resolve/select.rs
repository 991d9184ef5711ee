//! The decisions of RFC 3263 §4 that need no DNS: what a URI already fixes (transport, port,
//! numeric host), which NAPTR services a client can use and in what order, and the RFC 2782
//! ordering of SRV records by priority and weight. Pure functions, tested beside the code.

use std::net::IpAddr;

use sip_core::random::RandomSource;
use sip_core::uri::{Host, Scheme, Uri};
use sip_core::Transport;

use super::ResolveError;

/// What the URI says before any lookup (RFC 3263 §4.1, §4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// `sips:` (only TLS-based transports qualify, RFC 3263 §4.1).
    pub(crate) secure: bool,
    /// The host to resolve: `maddr` when present, else the URI's host.
    pub(crate) host: HostKind,
    /// The transport fixed by a `transport` parameter, or by a numeric host or an explicit
    /// port (UDP for `sip:`, TLS for `sips:`, §4.1).
    pub(crate) transport: Option<Transport>,
    /// The explicit port (no SRV lookup then, §4.2).
    pub(crate) port: Option<u16>,
}

/// A host as the resolver sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostKind {
    /// A numeric address: no lookup at all.
    Ip(IpAddr),
    /// A domain name, as a fully qualified name (trailing dot), lower case.
    Name(String),
}

/// Reads what a SIP or SIPS URI fixes (RFC 3263 §4.1 and §4.2).
pub(crate) fn plan(uri: &Uri<'_>) -> Result<Plan, ResolveError> {
    let secure = match uri.scheme() {
        Scheme::Sip => false,
        Scheme::Sips => true,
        Scheme::Tel => return Err(ResolveError::NotSip(uri.as_str().to_owned())),
    };
    let host = match uri.maddr() {
        Some(m) => host_kind_str(m),
        None => match uri.host() {
            Host::Ipv4(a) => HostKind::Ip(IpAddr::V4(*a)),
            Host::Ipv6(a) => HostKind::Ip(IpAddr::V6(*a)),
            Host::Domain(d) => host_kind_str(d),
        },
    };
    let port = uri.port();
    let transport = match uri.transport() {
        Some(name) => {
            let t = transport_param(name)
                .ok_or_else(|| ResolveError::UnsupportedTransport(name.to_owned()))?;
            Some(if secure { secure_variant(t) } else { t })
        }
        None if matches!(host, HostKind::Ip(_)) || port.is_some() => Some(if secure {
            Transport::Tls
        } else {
            Transport::Udp
        }),
        None => None,
    };
    Ok(Plan {
        secure,
        host,
        transport,
        port,
    })
}

/// A `transport` URI parameter: RFC 3261's `udp`/`tcp`/`tls`, and RFC 7118's `ws`/`wss`.
fn transport_param(name: &str) -> Option<Transport> {
    Transport::from_name(name)
}

/// `sips:` over TCP means TLS (RFC 3261 §26.2.2); over WS, WSS.
fn secure_variant(t: Transport) -> Transport {
    match t {
        Transport::Tcp => Transport::Tls,
        other => secure_of(other),
    }
}

fn secure_of(t: Transport) -> Transport {
    if t == Transport::Ws {
        Transport::Wss
    } else {
        t
    }
}

fn host_kind_str(s: &str) -> HostKind {
    let bare = s.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => HostKind::Ip(ip),
        Err(_) => {
            let mut name = s.to_ascii_lowercase();
            if !name.ends_with('.') {
                name.push('.');
            }
            HostKind::Name(name)
        }
    }
}

/// The SRV service prefix of a transport (RFC 3263 §4.1 and RFC 7118 §6 for WS): `_sip._udp`,
/// `_sip._tcp`, `_sips._tcp`, `_sip._ws`, `_sips._ws`.
pub(crate) fn srv_prefix(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "_sip._udp",
        Transport::Tcp => "_sip._tcp",
        Transport::Tls => "_sips._tcp",
        Transport::Ws => "_sip._ws",
        Transport::Wss => "_sips._ws",
    }
}

/// The transport a NAPTR service field names (RFC 3263 §4.1: `SIP+D2U`, `SIP+D2T`,
/// `SIPS+D2T`; RFC 7118 §6: `SIP+D2W`, `SIPS+D2W`), case-insensitively.
pub(crate) fn naptr_service(service: &[u8]) -> Option<Transport> {
    let s = std::str::from_utf8(service).ok()?;
    if s.eq_ignore_ascii_case("SIP+D2U") {
        Some(Transport::Udp)
    } else if s.eq_ignore_ascii_case("SIP+D2T") {
        Some(Transport::Tcp)
    } else if s.eq_ignore_ascii_case("SIPS+D2T") {
        Some(Transport::Tls)
    } else {
        ws_service(s)
    }
}

fn ws_service(s: &str) -> Option<Transport> {
    if s.eq_ignore_ascii_case("SIP+D2W") {
        Some(Transport::Ws)
    } else if s.eq_ignore_ascii_case("SIPS+D2W") {
        Some(Transport::Wss)
    } else {
        None
    }
}

/// Whether a transport is a secure one (what a `sips:` URI may use, RFC 3263 §4.1).
pub(crate) fn is_secure(t: Transport) -> bool {
    matches!(t, Transport::Tls | Transport::Wss)
}

/// One NAPTR record as far as RFC 3263 uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Naptr {
    /// ORDER (lowest first).
    pub(crate) order: u16,
    /// PREFERENCE (lowest first within an order).
    pub(crate) preference: u16,
    /// FLAGS: RFC 3263 uses only `s` (the replacement is an SRV name).
    pub(crate) flags: Vec<u8>,
    /// SERVICES.
    pub(crate) service: Vec<u8>,
    /// REPLACEMENT, a fully qualified name.
    pub(crate) replacement: String,
}

/// RFC 3263 §4.1: the NAPTR records a client can use (flag `s`, a service it supports and, for
/// `sips:`, a secure one), lowest ORDER then PREFERENCE first, each with its transport.
pub(crate) fn usable_naptrs(
    mut records: Vec<Naptr>,
    secure: bool,
    supported: &[Transport],
) -> Vec<(Transport, String)> {
    records.sort_by_key(|r| (r.order, r.preference));
    records
        .into_iter()
        .filter(|r| r.flags.eq_ignore_ascii_case(b"s"))
        .filter_map(|r| naptr_service(&r.service).map(|t| (t, r.replacement)))
        .filter(|(t, _)| supported.contains(t) && (!secure || is_secure(*t)))
        .collect()
}

/// The transports to try by SRV when a domain has no usable NAPTR records (RFC 3263 §4.1): for
/// `sips:` the secure ones, otherwise every supported one, in the order given.
pub(crate) fn srv_fallback(secure: bool, supported: &[Transport]) -> Vec<Transport> {
    supported
        .iter()
        .copied()
        .filter(|t| !secure || is_secure(*t))
        .collect()
}

/// The transport for A/AAAA when neither NAPTR nor SRV gave one (RFC 3263 §4.1): UDP for
/// `sip:`, TLS for `sips:`.
pub(crate) fn default_transport(secure: bool) -> Transport {
    if secure {
        Transport::Tls
    } else {
        Transport::Udp
    }
}

/// One SRV record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Srv {
    /// PRIORITY (lowest first).
    pub(crate) priority: u16,
    /// WEIGHT (share of the selections within a priority).
    pub(crate) weight: u16,
    /// PORT.
    pub(crate) port: u16,
    /// TARGET, a fully qualified name (`.`: the service is not offered there).
    pub(crate) target: String,
}

/// RFC 2782 "Usage rules": records ordered by PRIORITY; within one priority, repeatedly pick
/// one at random with a chance proportional to its WEIGHT (weight-0 records placed first, so
/// they get a small chance when others weigh more). A target of `.` means "not available" and
/// is removed.
pub(crate) fn order_srv(mut records: Vec<Srv>, rng: &mut dyn RandomSource) -> Vec<Srv> {
    records.retain(|r| r.target != ".");
    records.sort_by_key(|r| (r.priority, r.weight != 0));
    let mut out = Vec::with_capacity(records.len());
    let mut rest = records.as_slice();
    while let Some(first) = rest.first() {
        let n = rest
            .iter()
            .position(|r| r.priority != first.priority)
            .unwrap_or(rest.len());
        let (group, tail) = rest.split_at(n);
        out.extend(weighted_order(group.to_vec(), rng));
        rest = tail;
    }
    out
}

/// RFC 2782's selection within one priority: sum the weights, take a uniform number in
/// `0..=sum`, pick the first record whose running sum reaches it; repeat with the others.
fn weighted_order(mut group: Vec<Srv>, rng: &mut dyn RandomSource) -> Vec<Srv> {
    let mut out = Vec::with_capacity(group.len());
    while !group.is_empty() {
        let sum: u64 = group.iter().map(|r| u64::from(r.weight)).sum();
        let pick = rng.next_u64() % (sum + 1);
        let mut running = 0u64;
        let mut chosen = group.len() - 1;
        for (i, r) in group.iter().enumerate() {
            running += u64::from(r.weight);
            if running >= pick {
                chosen = i;
                break;
            }
        }
        out.push(group.remove(chosen));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sip_core::random::SeededRandom;

    const ALL: [Transport; 3] = [Transport::Udp, Transport::Tcp, Transport::Tls];

    fn plan_of(s: &str) -> Plan {
        plan(&Uri::parse(s).unwrap()).unwrap()
    }

    #[test]
    fn numeric_host_and_explicit_port_fix_the_transport() {
        let p = plan_of("sip:192.0.2.1");
        assert_eq!(p.transport, Some(Transport::Udp));
        assert_eq!(p.host, HostKind::Ip("192.0.2.1".parse().unwrap()));
        assert_eq!(
            plan_of("sips:[2001:db8::1]").transport,
            Some(Transport::Tls)
        );
        let p = plan_of("sip:example.com:5070");
        assert_eq!((p.transport, p.port), (Some(Transport::Udp), Some(5070)));
        assert_eq!(
            plan_of("sips:example.com:5071").transport,
            Some(Transport::Tls)
        );
    }

    #[test]
    fn domain_without_port_or_transport_leaves_everything_to_dns() {
        let p = plan_of("sip:alice@Example.COM");
        assert_eq!(p.transport, None);
        assert_eq!(p.port, None);
        assert_eq!(p.host, HostKind::Name("example.com.".into()));
    }

    #[test]
    fn transport_param_and_maddr() {
        let p = plan_of("sip:example.com;transport=tcp");
        assert_eq!(p.transport, Some(Transport::Tcp));
        assert_eq!(
            plan_of("sips:example.com;transport=tcp").transport,
            Some(Transport::Tls)
        );
        let p = plan_of("sip:example.com;maddr=198.51.100.7");
        assert_eq!(p.host, HostKind::Ip("198.51.100.7".parse().unwrap()));
        assert_eq!(p.transport, Some(Transport::Udp));
        assert!(matches!(
            plan(&Uri::parse("sip:example.com;transport=sctp").unwrap()),
            Err(ResolveError::UnsupportedTransport(_))
        ));
    }

    fn naptr(order: u16, pref: u16, flags: &str, service: &str, repl: &str) -> Naptr {
        Naptr {
            order,
            preference: pref,
            flags: flags.as_bytes().to_vec(),
            service: service.as_bytes().to_vec(),
            replacement: repl.into(),
        }
    }

    #[test]
    fn naptr_order_preference_and_filters() {
        let recs = vec![
            naptr(50, 50, "s", "SIP+D2U", "_sip._udp.example.com."),
            naptr(10, 60, "s", "SIP+D2T", "_sip._tcp.example.com."),
            naptr(10, 50, "s", "SIPS+D2T", "_sips._tcp.example.com."),
            naptr(5, 1, "a", "SIP+D2T", "x.example.com."),
            naptr(5, 1, "s", "SIP+D2X", "y.example.com."),
        ];
        let got = usable_naptrs(recs.clone(), false, &ALL);
        assert_eq!(
            got,
            vec![
                (Transport::Tls, "_sips._tcp.example.com.".into()),
                (Transport::Tcp, "_sip._tcp.example.com.".into()),
                (Transport::Udp, "_sip._udp.example.com.".into()),
            ]
        );
        let secure = usable_naptrs(recs.clone(), true, &ALL);
        assert_eq!(
            secure,
            vec![(Transport::Tls, "_sips._tcp.example.com.".into())]
        );
        let udp_only = usable_naptrs(recs, false, &[Transport::Udp]);
        assert_eq!(
            udp_only,
            vec![(Transport::Udp, "_sip._udp.example.com.".into())]
        );
    }

    fn srv(priority: u16, weight: u16, target: &str) -> Srv {
        Srv {
            priority,
            weight,
            port: 5060,
            target: target.into(),
        }
    }

    /// A source replaying fixed words, to pin RFC 2782's choice exactly.
    struct Replay(Vec<u64>);
    impl RandomSource for Replay {
        fn next_u64(&mut self) -> u64 {
            self.0.remove(0)
        }
    }

    #[test]
    fn srv_priority_first_then_weight_by_running_sum() {
        let recs = vec![
            srv(20, 0, "backup."),
            srv(10, 1, "small."),
            srv(10, 3, "big."),
            srv(10, 0, "."),
        ];
        // Group 10 sorted as [small(1), big(3)], sum 4: pick 2 → running sums 1, 4 → big;
        // then [small], sum 1: pick 0 → small. Group 20: backup.
        let got = order_srv(recs, &mut Replay(vec![2, 0, 0]));
        let names: Vec<_> = got.iter().map(|r| r.target.as_str()).collect();
        assert_eq!(names, ["big.", "small.", "backup."]);
    }

    #[test]
    fn srv_zero_weight_placed_first_and_picked_on_zero() {
        let recs = vec![srv(1, 5, "a."), srv(1, 0, "z.")];
        let got = order_srv(recs, &mut Replay(vec![0, 0]));
        assert_eq!(got[0].target, "z.");
    }

    #[test]
    fn srv_weights_share_the_first_place() {
        let mut rng = SeededRandom::new(7);
        let mut big_first = 0;
        for _ in 0..4000 {
            let got = order_srv(vec![srv(1, 10, "small."), srv(1, 90, "big.")], &mut rng);
            assert_eq!(got.len(), 2);
            if got[0].target == "big." {
                big_first += 1;
            }
        }
        // Expected 90 / 101 of 4000 ≈ 3564 (the sum+1 range gives weight 0 one slot).
        assert!((3400..3700).contains(&big_first), "{big_first}");
    }
}
