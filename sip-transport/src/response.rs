//! Where a response goes when it is not sent back on its request's flow (RFC 3261 §18.2.2,
//! RFC 3581 §4).

use std::net::{IpAddr, SocketAddr};

use sip_core::uri::Host;
use sip_core::via::Via;
use sip_core::{Message, Target, Transport};

use crate::error::SendError;

/// The destination of a response computed from its top Via.
///
/// ```
/// use sip_core::{Message, Transport};
/// let m = Message::parse(&b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1:5070;rport=4000;received=192.0.2.1;branch=z9hG4bK1\r\n\r\n"[..]).unwrap();
/// let t = sip_transport::response_destination(&m).unwrap();
/// assert_eq!((t.transport, t.addr), (Transport::Udp, "192.0.2.1:4000".parse().unwrap()));
/// ```
pub fn destination(msg: &Message) -> Result<Target, SendError> {
    via_destination(&msg.via()?)
}

/// [`destination`] straight from a serialized response, when its top Via can be found by a
/// scan of the header lines (no folding, no quoted parameter); `None` sends the caller to
/// the full parse. Most responses the stack sends take this path: the transport then
/// parses one Via, not the whole message it has just serialized.
pub(crate) fn destination_from_bytes(data: &[u8]) -> Option<Result<Target, SendError>> {
    let value = top_via_value(data)?;
    let via = Via::parse(value).ok()?;
    Some(via_destination(&via))
}

/// The first Via value of a message's bytes, found line by line.
fn top_via_value(data: &[u8]) -> Option<&str> {
    let mut lines = data.split(|&b| b == b'\n').skip(1);
    while let Some(line) = lines.next() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return None;
        }
        let colon = line.iter().position(|&b| b == b':')?;
        let name = line[..colon].trim_ascii_end();
        if !(name.eq_ignore_ascii_case(b"via") || name.eq_ignore_ascii_case(b"v")) {
            continue;
        }
        // A folded Via, or one with a quoted parameter: leave it to the parser.
        if lines
            .next()
            .is_some_and(|next| next.first().is_some_and(|&b| b == b' ' || b == b'\t'))
        {
            return None;
        }
        let value = &line[colon + 1..];
        if value.contains(&b'"') {
            return None;
        }
        let first = value.split(|&b| b == b',').next()?;
        return std::str::from_utf8(first.trim_ascii()).ok();
    }
    None
}

fn via_destination(via: &Via<'_>) -> Result<Target, SendError> {
    destination_with(via, via.received_addr(), via.rport())
}

/// Where the response to a request goes once the transport has stamped its top Via for
/// `source` (RFC 3261 §18.2.1): what [`destination`] reads from the stamped Via, computed from
/// the Via as parsed before the stamp, so that a server answering at once need not parse the
/// stamped Via again. `stamped`: whether the stamp rewrote it (`received` set to the source
/// address, and `rport` to the source port when it was asked for). `None` when the Via gives no
/// route, which [`destination`] reports.
pub(crate) fn stamped_destination(
    via: &Via<'_>,
    source: SocketAddr,
    stamped: bool,
) -> Option<Target> {
    let t = if stamped {
        let rport = match via.rport() {
            Some(None) => Some(Some(source.port())),
            kept => kept,
        };
        destination_with(via, Some(source.ip().to_canonical()), rport)
    } else {
        via_destination(via)
    };
    t.ok()
}

fn destination_with(
    via: &Via<'_>,
    received: Option<IpAddr>,
    rport: Option<Option<u16>>,
) -> Result<Target, SendError> {
    let transport = Transport::from_name(via.transport()).ok_or(SendError::NoRoute(
        "top Via transport is not UDP, TCP, TLS, WS or WSS",
    ))?;
    if transport.is_websocket() {
        // RFC 7118 §5: a WebSocket client cannot be connected to; its responses go back on
        // its connection only.
        return Err(SendError::NoRoute(
            "the request's WebSocket connection is closed",
        ));
    }
    let default_port = via.sent_by_port().unwrap_or(transport.default_port());
    let sent_by_ip = match via.sent_by_host() {
        Host::Ipv4(a) => Some(IpAddr::V4(*a)),
        Host::Ipv6(a) => Some(IpAddr::V6(*a)),
        Host::Domain(_) => None,
    };
    let addr = if transport.is_reliable() {
        let ip = received
            .or(sent_by_ip)
            .ok_or(SendError::NoRoute("sent-by is a domain name (RFC 3263 §5)"))?;
        SocketAddr::new(ip, default_port)
    } else if let Some(maddr) = via.maddr() {
        let ip: IpAddr = maddr
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| SendError::NoRoute("maddr is a domain name (RFC 3263 §5)"))?;
        SocketAddr::new(ip, default_port)
    } else if let Some(ip) = received {
        let port = match rport {
            Some(Some(p)) => p,
            _ => default_port,
        };
        SocketAddr::new(ip, port)
    } else {
        let ip = sent_by_ip.ok_or(SendError::NoRoute("sent-by is a domain name (RFC 3263 §5)"))?;
        SocketAddr::new(ip, default_port)
    };
    Ok(Target::new(transport, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(via: &str) -> Result<Target, SendError> {
        let raw = format!("SIP/2.0 200 OK\r\nVia: {via}\r\nContent-Length: 0\r\n\r\n");
        destination(&Message::parse(raw.into_bytes()).unwrap())
    }

    #[test]
    fn from_bytes_agrees_with_the_parser() {
        for via in [
            "SIP/2.0/UDP 10.0.0.1:5070;rport=4000;received=192.0.2.1;branch=z9hG4bK1",
            "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1, SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK2",
            "SIP/2.0/TCP 10.0.0.1:5080;received=192.0.2.9;branch=z9hG4bK1",
            "SIP/2.0/UDP [2001:db8::1]:5062;branch=z9hG4bK1",
            "SIP/2.0/UDP 10.0.0.1;maddr=224.0.1.75;branch=z9hG4bK1",
        ] {
            for name in ["Via", "v", "VIA "] {
                let raw = format!(
                    "SIP/2.0 200 OK\r\nFrom: <sip:a@b>;tag=1\r\n{name}: {via}\r\nContent-Length: 0\r\n\r\n"
                );
                let fast = destination_from_bytes(raw.as_bytes())
                    .expect("found")
                    .unwrap();
                let full = destination(&Message::parse(raw.into_bytes()).unwrap()).unwrap();
                assert_eq!(
                    (fast.transport, fast.addr),
                    (full.transport, full.addr),
                    "{via}"
                );
            }
        }
        // Folded, quoted or absent: the full parse decides.
        let folded = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1\r\n ;branch=z9hG4bK1\r\n\r\n";
        assert!(destination_from_bytes(folded).is_none());
        let quoted =
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1;x=\"a,b\";branch=z9hG4bK1\r\n\r\n";
        assert!(destination_from_bytes(quoted).is_none());
        assert!(destination_from_bytes(b"SIP/2.0 200 OK\r\nTo: <sip:a@b>\r\n\r\n").is_none());
    }

    fn addr(via: &str) -> (Transport, String) {
        let t = dest(via).unwrap();
        (t.transport, t.addr.to_string())
    }

    #[test]
    fn rules_of_18_2_2() {
        use Transport::*;
        assert_eq!(addr("SIP/2.0/UDP 10.0.0.1"), (Udp, "10.0.0.1:5060".into()));
        assert_eq!(
            addr("SIP/2.0/UDP 10.0.0.1:5070;received=192.0.2.1"),
            (Udp, "192.0.2.1:5070".into())
        );
        assert_eq!(
            addr("SIP/2.0/UDP host.example;received=192.0.2.1;rport=6000"),
            (Udp, "192.0.2.1:6000".into())
        );
        assert_eq!(
            addr("SIP/2.0/UDP host.example:5080;maddr=239.1.1.1;ttl=1"),
            (Udp, "239.1.1.1:5080".into())
        );
        assert_eq!(
            addr("SIP/2.0/TCP h.example;received=192.0.2.1;rport=6000"),
            (Tcp, "192.0.2.1:5060".into())
        );
        assert_eq!(
            addr("SIP/2.0/TLS [2001:db8::1]"),
            (Tls, "[2001:db8::1]:5061".into())
        );
        assert_eq!(
            addr("SIP/2.0/UDP 10.0.0.1;received=2001:db8::9;rport=7"),
            (Udp, "[2001:db8::9]:7".into())
        );
    }

    #[test]
    fn unroutable() {
        assert!(matches!(
            dest("SIP/2.0/UDP host.example"),
            Err(SendError::NoRoute(_))
        ));
        assert!(matches!(
            dest("SIP/2.0/SCTP 10.0.0.1"),
            Err(SendError::NoRoute(_))
        ));
    }
}
