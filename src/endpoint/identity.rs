//! Who we are on the wire: the addresses we listen on and the ones we advertise (for Via,
//! Contact and Record-Route), and the RFC 3261 §18.1.2 check that a response's top Via is ours.

use std::net::{IpAddr, SocketAddr};

use sip_core::uri::Host;
use sip_core::{HeaderName, Message, Transport};

/// Our listeners and advertised addresses.
#[derive(Debug, Clone, Default)]
pub(crate) struct Identity {
    listeners: Vec<(Transport, SocketAddr)>,
    /// (transport, host as written, lower case, port).
    advertised: Vec<(Transport, String, u16)>,
    /// Every `host:port` above as text (listeners bound to a specific address, advertised
    /// addresses): a response whose top Via carries one of them exactly is ours without a
    /// parse of that Via.
    exact: Vec<Box<str>>,
}

impl Identity {
    pub(crate) fn new(
        listeners: Vec<(Transport, SocketAddr)>,
        advertise: &[(Transport, String)],
    ) -> Identity {
        let mut advertised = Vec::new();
        for (t, hostport) in advertise {
            let (host, port) = split_host_port(hostport);
            let port = port
                .or_else(|| {
                    listeners
                        .iter()
                        .find(|(lt, _)| lt == t)
                        .map(|(_, a)| a.port())
                })
                .unwrap_or(t.default_port());
            advertised.push((*t, host.to_ascii_lowercase(), port));
        }
        let exact = listeners
            .iter()
            .filter(|(_, a)| !a.ip().is_unspecified())
            .map(|(_, a)| a.to_string().into_boxed_str())
            .chain(
                advertised
                    .iter()
                    .map(|(_, h, p)| format!("{h}:{p}").into_boxed_str()),
            )
            .collect();
        Identity {
            listeners,
            advertised,
            exact,
        }
    }

    /// The `host:port` to put in a Via, Contact or Record-Route for `transport`: the advertised
    /// address, else the listener's bound address.
    pub(crate) fn sent_by(&self, transport: Transport) -> Option<String> {
        if let Some((_, h, p)) = self.advertised.iter().find(|(t, ..)| *t == transport) {
            return Some(format!("{h}:{p}"));
        }
        self.listeners
            .iter()
            .find(|(t, _)| *t == transport)
            .map(|(_, a)| a.to_string())
    }

    /// RFC 3261 §18.1.2: whether the top Via of a response names us (one of our listeners,
    /// with its port, or an advertised address). A listener bound to an unspecified address
    /// (`0.0.0.0`, `::`) owns every address at its port.
    pub(crate) fn owns_top_via(&self, response: &Message) -> bool {
        // The usual case, our own Via as we wrote it: its sent-by is one of ours, as text.
        if let Some(sent_by) = response
            .header_bytes(HeaderName::Via)
            .and_then(plain_sent_by)
        {
            if self
                .exact
                .iter()
                .any(|e| e.as_bytes().eq_ignore_ascii_case(sent_by))
            {
                return true;
            }
        }
        let Ok(via) = response.via() else {
            return false;
        };
        let transport = Transport::from_name(via.transport()).unwrap_or(Transport::Udp);
        let port = via.sent_by_port().unwrap_or(transport.default_port());
        let ip = match via.sent_by_host() {
            Host::Ipv4(a) => Some(IpAddr::V4(*a)),
            Host::Ipv6(a) => Some(IpAddr::V6(*a)),
            Host::Domain(_) => None,
        };
        if let Some(ip) = ip {
            let listening = self
                .listeners
                .iter()
                .any(|(_, a)| a.port() == port && (a.ip() == ip || a.ip().is_unspecified()));
            if listening {
                return true;
            }
        }
        let host = via.host_str().trim_start_matches('[').trim_end_matches(']');
        self.advertised.iter().any(|(_, h, p)| {
            *p == port
                && h.trim_start_matches('[')
                    .trim_end_matches(']')
                    .eq_ignore_ascii_case(host)
        })
    }
}

/// The sent-by of a Via value written plainly (`SIP/2.0/<transport> <sent-by>` then `;`, `,`
/// or the end), as text; `None` for any other spelling, which is then parsed.
fn plain_sent_by(v: &[u8]) -> Option<&[u8]> {
    let rest = v.strip_prefix(b"SIP/2.0/")?;
    let sp = rest.iter().position(|&c| c == b' ')?;
    if !rest.get(..sp)?.iter().all(u8::is_ascii_alphabetic) {
        return None;
    }
    let after = rest.get(sp + 1..)?;
    let end = after
        .iter()
        .position(|&c| matches!(c, b';' | b',' | b' ' | b'\t'))
        .unwrap_or(after.len());
    after.get(..end).filter(|s| !s.is_empty())
}

/// `host[:port]`, with IPv6 references in brackets.
fn split_host_port(s: &str) -> (&str, Option<u16>) {
    if let Some(rest) = s.strip_prefix('[') {
        if let Some(end) = rest.find(']') {
            let port = rest[end + 1..]
                .strip_prefix(':')
                .and_then(|p| p.parse().ok());
            return (&s[..end + 2], port);
        }
        return (s, None);
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(port) => (h, Some(port)),
            Err(_) => (s, None),
        },
        _ => (s, None),
    }
}

/// Replaces the tag of a response's To header (RFC 3261 §8.2.6.2: one tag for every response
/// to a request). Returns `false` when the header cannot be rewritten.
pub(crate) fn set_to_tag(response: &mut Message, tag: &str) -> bool {
    let Some(to) = response.header(sip_core::HeaderName::To) else {
        return false;
    };
    let to = to.to_owned();
    // Parameters of the header follow the closing '>' of a name-addr, or the addr-spec.
    let params_from = to.rfind('>').map_or(0, |i| i + 1);
    let lower = to.to_ascii_lowercase();
    let Some(at) = lower[params_from..]
        .find(";tag=")
        .map(|i| params_from + i + 5)
    else {
        return false;
    };
    let end = to[at..]
        .find(|c: char| c == ';' || c.is_ascii_whitespace())
        .map_or(to.len(), |i| at + i);
    let rewritten = format!("{}{}{}", &to[..at], tag, &to[end..]);
    response
        .set_header(sip_core::HeaderName::To, &rewritten)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(via: &str) -> Message {
        Message::parse(format!(
            "SIP/2.0 200 OK\r\nVia: {via}\r\nTo: <sip:b@x>;tag=old\r\nFrom: <sip:a@x>;tag=1\r\n\
             Call-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        ))
        .unwrap()
    }

    #[test]
    fn a_response_is_ours_only_when_its_top_via_names_us() {
        let id = Identity::new(
            vec![
                (Transport::Udp, "127.0.0.1:5070".parse().unwrap()),
                (Transport::Tcp, "0.0.0.0:5080".parse().unwrap()),
            ],
            &[(Transport::Udp, "sip.example.com".to_owned())],
        );
        assert!(id.owns_top_via(&response("SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1")));
        assert!(!id.owns_top_via(&response("SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK1")));
        assert!(!id.owns_top_via(&response("SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK1")));
        // Unspecified listener: any address at its port.
        assert!(id.owns_top_via(&response("SIP/2.0/TCP 192.0.2.1:5080;branch=z9hG4bK1")));
        // The advertised name, at the listener's port.
        assert!(id.owns_top_via(&response(
            "SIP/2.0/UDP SIP.example.com:5070;branch=z9hG4bK1"
        )));
        assert!(!id.owns_top_via(&response(
            "SIP/2.0/UDP evil.example.com:5070;branch=z9hG4bK1"
        )));
        assert_eq!(id.sent_by(Transport::Udp).unwrap(), "sip.example.com:5070");
        assert_eq!(id.sent_by(Transport::Tcp).unwrap(), "0.0.0.0:5080");
    }

    /// The text match of a plainly written Via agrees with the parse (which decides every
    /// other spelling).
    #[test]
    fn plain_sent_by_is_found_as_written() {
        assert_eq!(
            plain_sent_by(b"SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1"),
            Some(&b"127.0.0.1:5070"[..])
        );
        assert_eq!(
            plain_sent_by(b"SIP/2.0/TLS [::1]:5061"),
            Some(&b"[::1]:5061"[..])
        );
        assert_eq!(
            plain_sent_by(b"SIP/2.0/UDP h,SIP/2.0/UDP g"),
            Some(&b"h"[..])
        );
        assert_eq!(plain_sent_by(b"SIP / 2.0 / UDP h"), None);
        assert_eq!(plain_sent_by(b"SIP/2.0/UDP  h"), None);
        let id = Identity::new(
            vec![(Transport::Udp, "127.0.0.1:5070".parse().unwrap())],
            &[(Transport::Tcp, "sip.example.com:5090".to_owned())],
        );
        for (via, ours) in [
            ("SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1", true),
            ("SIP/2.0/UDP 127.0.0.1:5070", true),
            ("SIP/2.0/UDP 127.0.0.1:507;branch=z9hG4bK1", false),
            ("SIP/2.0/UDP 127.0.0.1:50700;branch=z9hG4bK1", false),
            ("SIP/2.0/TCP SIP.EXAMPLE.COM:5090;branch=z9hG4bK1", true),
            ("SIP/2.0/TCP sip.example.com;branch=z9hG4bK1", false),
            ("SIP / 2.0 / UDP 127.0.0.1 : 5070 ;branch=z9hG4bK1", true),
        ] {
            assert_eq!(id.owns_top_via(&response(via)), ours, "{via}");
        }
    }

    #[test]
    fn advertised_ipv6_and_ports() {
        let id = Identity::new(
            vec![(Transport::Udp, "[::]:5060".parse().unwrap())],
            &[(Transport::Udp, "[2001:db8::1]:5062".to_owned())],
        );
        assert_eq!(id.sent_by(Transport::Udp).unwrap(), "[2001:db8::1]:5062");
        assert!(id.owns_top_via(&response("SIP/2.0/UDP [2001:db8::1]:5062;branch=z9hG4bK1")));
    }

    #[test]
    fn to_tag_is_replaced() {
        let mut r = response("SIP/2.0/UDP h;branch=z9hG4bK1");
        assert!(set_to_tag(&mut r, "new"));
        assert_eq!(
            r.header(sip_core::HeaderName::To),
            Some("<sip:b@x>;tag=new")
        );
        let mut r = Message::parse(
            &b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: sip:b@x;TAG=abc;x=y\r\nContent-Length: 0\r\n\r\n"[..],
        )
        .unwrap();
        assert!(set_to_tag(&mut r, "n2"));
        assert_eq!(
            r.header(sip_core::HeaderName::To),
            Some("sip:b@x;TAG=n2;x=y")
        );
    }
}
