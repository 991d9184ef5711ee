//! Who "we" are (RFC 3261 §16.4): every address we listen on or advertise, and every domain we
//! are responsible for. A Route, Record-Route or Request-URI naming any of them names us.

use std::net::{IpAddr, SocketAddr};

use sip_core::uri::{Host, Uri};
use sip_core::Transport;

/// One interface we send and receive on: a transport, the bound address and the host:port we
/// advertise in Via and Record-Route (RFC 3261 §18.2.1, §16.6 step 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// The transport.
    pub transport: Transport,
    /// The bound socket address.
    pub local: SocketAddr,
    /// `host[:port]` written into Via sent-by and Record-Route URIs.
    pub advertised: String,
}

impl Interface {
    /// An interface advertised as its bound address.
    pub fn new(transport: Transport, local: SocketAddr) -> Interface {
        Interface {
            transport,
            local,
            advertised: local.to_string(),
        }
    }
}

/// Our addresses and domains.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    interfaces: Vec<Interface>,
    /// Each interface's advertised host and port, split once (matching allocates nothing).
    advertised: Vec<Advertised>,
    domains: Vec<String>,
}

#[derive(Debug, Clone)]
struct Advertised {
    /// Lower-cased; an IPv6 address in brackets.
    host: String,
    port: Option<u16>,
    /// The host, when it is an address.
    ip: Option<IpAddr>,
}

/// A host to match: a name, or an address however it was written.
#[derive(Clone, Copy)]
enum HostRef<'a> {
    Name(&'a str),
    Ip(IpAddr),
}

impl<'a> HostRef<'a> {
    fn from_text(s: &'a str) -> HostRef<'a> {
        let bare = s
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or(s);
        match bare.parse::<IpAddr>() {
            Ok(ip) => HostRef::Ip(ip),
            Err(_) => HostRef::Name(s),
        }
    }

    fn from_uri(h: &'a Host<'a>) -> HostRef<'a> {
        match h {
            Host::Domain(d) => HostRef::from_text(d),
            Host::Ipv4(a) => HostRef::Ip(IpAddr::V4(*a)),
            Host::Ipv6(a) => HostRef::Ip(IpAddr::V6(*a)),
        }
    }
}

impl Advertised {
    fn of(i: &Interface) -> Advertised {
        let (host, port) = split_host_port(&i.advertised);
        let ip = match HostRef::from_text(&host) {
            HostRef::Ip(ip) => Some(ip),
            HostRef::Name(_) => None,
        };
        Advertised { host, port, ip }
    }

    fn names(&self, h: HostRef<'_>) -> bool {
        match h {
            HostRef::Name(n) => self.host.eq_ignore_ascii_case(n),
            HostRef::Ip(ip) => self.ip == Some(ip),
        }
    }
}

/// Splits `host[:port]` (IPv6 in brackets) into a lower-cased host and an optional port.
fn split_host_port(s: &str) -> (String, Option<u16>) {
    if let Some(rest) = s.strip_prefix('[') {
        if let Some((h, tail)) = rest.split_once(']') {
            let port = tail.strip_prefix(':').and_then(|p| p.parse().ok());
            return (format!("[{}]", h.to_ascii_lowercase()), port);
        }
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h.to_ascii_lowercase(), p.parse().ok()),
        _ => (s.to_ascii_lowercase(), None),
    }
}

fn host_text(h: &Host<'_>) -> String {
    match h {
        Host::Domain(d) => d.to_ascii_lowercase(),
        Host::Ipv4(a) => a.to_string(),
        Host::Ipv6(a) => format!("[{a}]"),
    }
}

impl Identity {
    /// An identity with these interfaces and domains.
    pub fn new(interfaces: Vec<Interface>, domains: Vec<String>) -> Identity {
        Identity {
            advertised: interfaces.iter().map(Advertised::of).collect(),
            interfaces,
            domains: domains
                .into_iter()
                .map(|d| d.to_ascii_lowercase())
                .collect(),
        }
    }

    /// The interfaces.
    pub fn interfaces(&self) -> &[Interface] {
        &self.interfaces
    }

    /// The domains we are responsible for (RFC 3261 §16.5).
    pub fn domains(&self) -> &[String] {
        &self.domains
    }

    /// The interface to send over with `transport` (the first of that transport), falling
    /// back to the first interface.
    pub fn interface_for(&self, transport: Transport) -> Option<&Interface> {
        self.interfaces
            .iter()
            .find(|i| i.transport == transport)
            .or_else(|| self.interfaces.first())
    }

    /// The interface a request arrived on (transport and local address), if it is one of ours.
    pub fn interface_at(&self, transport: Transport, local: SocketAddr) -> Option<&Interface> {
        self.interfaces
            .iter()
            .find(|i| i.transport == transport && i.local == local)
            .or_else(|| self.interface_for(transport))
    }

    /// Whether `host[:port]` (a Via sent-by, as written) is one of our interfaces.
    pub fn is_our_sent_by(&self, host: &str, port: Option<u16>, transport: Transport) -> bool {
        self.is_our_host_port(HostRef::from_text(host), port, transport)
    }

    fn is_our_host_port(&self, host: HostRef<'_>, port: Option<u16>, transport: Transport) -> bool {
        let port = port.unwrap_or(transport.default_port());
        let local_ip = |i: &Interface| matches!(host, HostRef::Ip(ip) if ip == i.local.ip());
        self.interfaces.iter().zip(&self.advertised).any(|(i, a)| {
            let ours = a.port.unwrap_or(i.transport.default_port()) == port
                && (a.names(host) || local_ip(i));
            ours || (i.local.port() == port && local_ip(i))
        })
    }

    /// Whether a SIP URI names one of our addresses (host and port; a missing port is the
    /// default port of the URI's transport).
    pub fn is_our_address(&self, uri: &Uri<'_>) -> bool {
        let transport =
            uri.transport()
                .and_then(Transport::from_name)
                .unwrap_or(if uri.is_secure() {
                    Transport::Tls
                } else {
                    Transport::Udp
                });
        let h = uri.host();
        let host = HostRef::from_uri(h);
        self.is_our_host_port(host, uri.port(), transport)
            || (uri.port().is_none()
                && self
                    .interfaces
                    .iter()
                    .zip(&self.advertised)
                    .any(|(i, a)| a.names(host) && i.local.port() == transport.default_port()))
    }

    /// Whether `host` is one of our domains.
    pub fn is_our_domain(&self, host: &str) -> bool {
        self.domains.iter().any(|d| d.eq_ignore_ascii_case(host))
    }

    /// Whether a URI is ours at all: our address, or a domain we serve (RFC 3261 §16.4: "a
    /// value this proxy previously placed into a Record-Route", or §16.5's domain test).
    pub fn is_us(&self, uri: &Uri<'_>) -> bool {
        self.is_our_address(uri)
    }

    /// Whether the Request-URI's host is a domain we are responsible for, or our own address.
    pub fn serves(&self, uri: &Uri<'_>) -> bool {
        let named = match uri.host() {
            Host::Domain(d) => self.is_our_domain(d),
            // A domain equal to the address's text is one that parses to it (the parser
            // takes the canonical dotted quad only): no text made for each request.
            Host::Ipv4(a) => self
                .domains
                .iter()
                .any(|d| d.parse::<std::net::Ipv4Addr>().is_ok_and(|x| x == *a)),
            h => self.is_our_domain(&host_text(h)),
        };
        named || self.is_our_address(uri)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> Identity {
        Identity::new(
            vec![
                Interface::new(Transport::Udp, "192.0.2.1:5060".parse().unwrap()),
                Interface {
                    transport: Transport::Tcp,
                    local: "10.0.0.1:5080".parse().unwrap(),
                    advertised: "proxy.example.com:5080".into(),
                },
            ],
            vec!["Example.com".into()],
        )
    }

    #[test]
    fn addresses_and_domains() {
        let id = id();
        let u = |s| Uri::parse(s).unwrap();
        assert!(id.is_us(&u("sip:192.0.2.1;lr")));
        assert!(id.is_us(&u("sip:192.0.2.1:5060;lr")));
        assert!(!id.is_us(&u("sip:192.0.2.1:5070;lr")));
        assert!(id.is_us(&u("sip:proxy.example.com:5080;transport=tcp;lr")));
        assert!(id.is_us(&u("sip:10.0.0.1:5080;transport=tcp")));
        assert!(!id.is_us(&u("sip:example.com")));
        assert!(id.serves(&u("sip:bob@EXAMPLE.com")));
        assert!(id.serves(&u("sip:bob@192.0.2.1")));
        assert!(!id.serves(&u("sip:bob@example.org")));
    }

    #[test]
    fn interfaces_by_transport() {
        let id = id();
        assert_eq!(
            id.interface_for(Transport::Tcp).unwrap().advertised,
            "proxy.example.com:5080"
        );
        // No TLS interface: the first one.
        assert_eq!(
            id.interface_for(Transport::Tls).unwrap().transport,
            Transport::Udp
        );
        assert!(id.is_our_sent_by("proxy.example.com", Some(5080), Transport::Tcp));
        assert!(!id.is_our_sent_by("proxy.example.com", None, Transport::Tcp));
    }
}
