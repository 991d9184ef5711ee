//! Rewriting the top Via: `received` and `rport` on receipt (RFC 3261 §18.2.1, RFC 3581 §4),
//! and the transport on a UDP→TCP switch (RFC 3261 §18.1.1).
//!
//! The top value is replaced with sip-core's `set_top_value`, so the other Via values and
//! every other header are written back byte for byte. The new value is put together on the
//! stack: stamping a request allocates at most the message's edit buffer.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use sip_core::uri::Host;
use sip_core::via::Via;
use sip_core::{Message, Result, Transport};

/// Stamps the top Via of a received request with the packet's source (RFC 3261 §18.2.1,
/// RFC 3581 §4). Returns whether the message changed.
///
/// - `received` is added when the sent-by host is a domain name or an address other than the
///   source address, and always when `rport` asks for it (RFC 3581 §4);
/// - an empty `rport` is filled with the source port;
/// - a `received` already present is replaced (it can only be stale or forged).
///
/// ```
/// use sip_core::Message;
/// let mut m = Message::parse(&b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP host.example;rport;branch=z9hG4bK1\r\n\r\n"[..]).unwrap();
/// assert!(sip_transport::stamp_via(&mut m, "192.0.2.7:4000".parse().unwrap()).unwrap());
/// let via = m.via().unwrap();
/// assert_eq!(via.received(), Some("192.0.2.7"));
/// assert_eq!(via.rport(), Some(Some(4000)));
/// assert_eq!(via.branch(), Some("z9hG4bK1"));
/// ```
pub fn stamp_via(msg: &mut Message, source: SocketAddr) -> Result<bool> {
    let new = stamped_value(&msg.via()?, source);
    apply_stamp(msg, new)
}

/// The top Via value stamped for `source`, or `None` when it needs no change (see
/// [`stamp_via`]); for a caller that has parsed the top Via already.
pub(crate) fn stamped_value(via: &Via<'_>, source: SocketAddr) -> Option<ViaText> {
    let src_ip = source.ip().to_canonical();
    let rport_wanted = via.rport() == Some(None);
    let differs = match via.sent_by_host() {
        Host::Ipv4(a) => IpAddr::V4(*a) != src_ip,
        Host::Ipv6(a) => IpAddr::V6(*a).to_canonical() != src_ip,
        Host::Domain(_) => true,
    };
    let received_right = via.received_addr().map(|r| r.to_canonical()) == Some(src_ip);
    if !rport_wanted && (!differs || received_right) {
        return None;
    }
    Some(rewrite_params(
        via,
        src_ip,
        rport_wanted.then_some(source.port()),
    ))
}

/// Writes a [`stamped_value`] into the message; whether it changed.
pub(crate) fn apply_stamp(msg: &mut Message, new: Option<ViaText>) -> Result<bool> {
    match new {
        Some(v) => {
            msg.set_top_value(sip_core::HeaderName::Via, v.as_str())?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// A Via value put together on the stack (most fit in 256 bytes; a longer one moves to the
/// heap).
pub(crate) struct ViaText {
    buf: [u8; 256],
    len: usize,
    heap: Option<Vec<u8>>,
}

impl ViaText {
    fn new() -> ViaText {
        ViaText {
            buf: [0; 256],
            len: 0,
            heap: None,
        }
    }

    #[inline]
    fn push_bytes(&mut self, s: &[u8]) {
        match self.buf.get_mut(self.len..self.len + s.len()) {
            Some(dst) if self.heap.is_none() => {
                dst.copy_from_slice(s);
                self.len += s.len();
            }
            _ => self.spill(s),
        }
    }

    #[cold]
    fn spill(&mut self, s: &[u8]) {
        let h = self.heap.get_or_insert_with(|| {
            let mut h = Vec::with_capacity(self.len + s.len() + 64);
            h.extend_from_slice(&self.buf[..self.len]);
            h
        });
        h.extend_from_slice(s);
    }

    #[inline]
    fn push_str(&mut self, s: &str) {
        self.push_bytes(s.as_bytes());
    }

    #[inline]
    fn push_byte(&mut self, c: u8) {
        self.push_bytes(&[c]);
    }

    /// Up to five digits (an octet, a port), written without the general formatter.
    #[inline]
    fn push_decimal(&mut self, n: u16) {
        let mut d = [0u8; 5];
        let mut i = d.len();
        let mut v = n;
        loop {
            i -= 1;
            d[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.push_bytes(&d[i..]);
    }

    fn as_str(&self) -> &str {
        // Only `str`s and ASCII bytes are ever written.
        let b = match &self.heap {
            Some(h) => h.as_slice(),
            None => &self.buf[..self.len],
        };
        std::str::from_utf8(b).unwrap_or_default()
    }
}

impl std::fmt::Write for ViaText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.push_str(s);
        Ok(())
    }
}

/// The Via value with `received` (and `rport` when asked for) set, other parameters kept.
fn rewrite_params(via: &Via<'_>, received: IpAddr, rport: Option<u16>) -> ViaText {
    let mut out = ViaText::new();
    match via.text_without(rport.is_some()) {
        // The usual Via: its text as written, minus the two parameters (the same bytes the
        // loop below writes for a plain parameter run).
        Some(pieces) => {
            for p in pieces {
                out.push_str(p);
            }
        }
        None => {
            let raw = via.as_str();
            let params = via.params();
            let head_len = raw.len().saturating_sub(params.as_str().len());
            out.push_str(raw.get(..head_len).unwrap_or(raw).trim_end());
            for (name, value) in params.iter() {
                if name.eq_ignore_ascii_case("received")
                    || (rport.is_some() && name.eq_ignore_ascii_case("rport"))
                {
                    continue;
                }
                out.push_byte(b';');
                out.push_str(name);
                if let Some(v) = value {
                    out.push_byte(b'=');
                    out.push_str(v);
                }
            }
        }
    }
    // RFC 3581 §4 puts received before rport in its examples; order does not matter.
    out.push_str(";received=");
    match received {
        // Written by hand: the formatter costs more than the rest of the stamp.
        IpAddr::V4(a) => {
            for (i, o) in a.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push_byte(b'.');
                }
                out.push_decimal(u16::from(o));
            }
        }
        IpAddr::V6(a) => {
            let _ = write!(out, "{a}");
        }
    }
    if let Some(p) = rport {
        out.push_str(";rport=");
        out.push_decimal(p);
    }
    out
}

/// Rewrites the transport of the top Via (RFC 3261 §18.1.1: "the value in the top Via MUST be
/// changed" when the transport changes).
pub(crate) fn set_top_via_transport(msg: &mut Message, transport: Transport) -> Result<()> {
    let new = {
        let via = msg.via()?;
        let raw = via.as_str();
        let t = via.transport();
        let start = (t.as_ptr() as usize).saturating_sub(raw.as_ptr() as usize);
        let (Some(before), Some(after)) = (raw.get(..start), raw.get(start + t.len()..)) else {
            return Err(sip_core::Error::Syntax {
                what: "Via sent-protocol",
                offset: 0,
            });
        };
        format!("{before}{}{after}", transport.as_str())
    };
    msg.set_top_value(sip_core::HeaderName::Via, &new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sip_core::HeaderName;

    fn req(via: &str) -> Message {
        let raw = format!(
            "INVITE sip:b@example.com SIP/2.0\r\nVia: {via}\r\nVia: SIP/2.0/UDP next;branch=z9hG4bK0\r\n\
             To: <sip:b@example.com>\r\nFrom: <sip:a@example.com>;tag=1\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        );
        Message::parse(raw.into_bytes()).unwrap()
    }

    fn stamped(via: &str, src: &str) -> (bool, String) {
        let mut m = req(via);
        let changed = stamp_via(&mut m, src.parse().unwrap()).unwrap();
        let again = Message::parse(m.to_bytes()).unwrap();
        let vias: Vec<String> = again.values(HeaderName::Via).map(str::to_owned).collect();
        assert_eq!(vias.len(), 2);
        assert_eq!(vias[1], "SIP/2.0/UDP next;branch=z9hG4bK0");
        (changed, vias[0].clone())
    }

    #[test]
    fn a_via_longer_than_the_stack_buffer_is_stamped_whole() {
        let long = "x".repeat(300);
        let (c, v) = stamped(
            &format!("SIP/2.0/UDP host.example;branch=z9hG4bK1;rport;long={long}"),
            "192.0.2.7:4000",
        );
        assert!(c);
        assert_eq!(
            v,
            format!(
                "SIP/2.0/UDP host.example;branch=z9hG4bK1;long={long};received=192.0.2.7;rport=4000"
            )
        );
    }

    /// The plain-text path (segments copied as written) writes what the parameter iterator
    /// writes, and anything not plain takes the iterator.
    #[test]
    fn plain_parameters_are_copied_as_the_iterator_reads_them() {
        for params in [
            ";branch=z9hG4bK1;rport",
            ";RPORT;branch=z9hG4bK1;Received=10.0.0.9;x",
            ";branch=z9hG4bK1;rport=99;received=[2001:db8::1];maddr=10.0.0.1;ttl=3",
            " ; branch=z9hG4bK1 ; rport",
            ";branch=z9hG4bK1;rport ;x=1",
            "",
        ] {
            let text = format!("SIP/2.0/UDP 10.0.0.1:5060{params}");
            let via = Via::parse(&text).unwrap();
            for rport in [None, Some(7000)] {
                let fast = rewrite_params(&via, "192.0.2.1".parse().unwrap(), rport);
                let mut slow = ViaText::new();
                let raw = via.as_str();
                let head = raw.len() - via.params().as_str().len();
                slow.push_str(raw[..head].trim_end());
                for (name, value) in via.params().iter() {
                    if name.eq_ignore_ascii_case("received")
                        || (rport.is_some() && name.eq_ignore_ascii_case("rport"))
                    {
                        continue;
                    }
                    slow.push_byte(b';');
                    slow.push_str(name);
                    if let Some(v) = value {
                        slow.push_byte(b'=');
                        slow.push_str(v);
                    }
                }
                let tail = fast.as_str().rfind(";received=").unwrap();
                assert_eq!(&fast.as_str()[..tail], slow.as_str(), "{params:?}");
            }
        }
    }

    #[test]
    fn same_ip_without_rport_is_untouched() {
        let (c, v) = stamped(
            "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1",
            "192.0.2.1:5060",
        );
        assert!(!c);
        assert_eq!(v, "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1");
    }

    #[test]
    fn different_ip_gets_received() {
        let (c, v) = stamped(
            "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1",
            "192.0.2.1:6000",
        );
        assert!(c);
        assert_eq!(
            v,
            "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;received=192.0.2.1"
        );
    }

    #[test]
    fn domain_gets_received() {
        let (_, v) = stamped(
            "SIP/2.0/TCP pc33.example.com;branch=z9hG4bK1",
            "192.0.2.1:6000",
        );
        assert_eq!(
            v,
            "SIP/2.0/TCP pc33.example.com;branch=z9hG4bK1;received=192.0.2.1"
        );
    }

    #[test]
    fn empty_rport_is_filled_and_received_added_even_if_same() {
        let (_, v) = stamped(
            "SIP/2.0/UDP 192.0.2.1:5060;rport;branch=z9hG4bK1",
            "192.0.2.1:7000",
        );
        assert_eq!(
            v,
            "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;received=192.0.2.1;rport=7000"
        );
    }

    #[test]
    fn filled_rport_is_kept_and_stale_received_replaced() {
        let (_, v) = stamped(
            "SIP/2.0/UDP 10.0.0.1;received=10.9.9.9;rport=1234;branch=z9hG4bK1",
            "192.0.2.1:7000",
        );
        assert_eq!(
            v,
            "SIP/2.0/UDP 10.0.0.1;rport=1234;branch=z9hG4bK1;received=192.0.2.1"
        );
    }

    #[test]
    fn correct_received_is_left_alone() {
        let (c, _) = stamped(
            "SIP/2.0/UDP 10.0.0.1;received=192.0.2.1;branch=z9hG4bK1",
            "192.0.2.1:7000",
        );
        assert!(!c);
    }

    #[test]
    fn ipv6_and_mapped_sources() {
        let (c, _) = stamped(
            "SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK1",
            "[2001:db8::1]:5060",
        );
        assert!(!c);
        let (_, v) = stamped(
            "SIP/2.0/UDP [2001:db8::1];rport;branch=z9hG4bK1",
            "[2001:db8::2]:5070",
        );
        assert_eq!(
            v,
            "SIP/2.0/UDP [2001:db8::1];branch=z9hG4bK1;received=2001:db8::2;rport=5070"
        );
        // A dual-stack socket reports an IPv4 peer as ::ffff:a.b.c.d.
        let (c, _) = stamped(
            "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1",
            "[::ffff:192.0.2.1]:5060",
        );
        assert!(!c);
    }

    #[test]
    fn first_of_several_values_on_one_line() {
        let mut m = Message::parse(
            &b"OPTIONS sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h1;rport;branch=z9hG4bK1, SIP/2.0/UDP h2;branch=z9hG4bK2\r\n\r\n"[..],
        )
        .unwrap();
        stamp_via(&mut m, "192.0.2.1:1000".parse().unwrap()).unwrap();
        let vs: Vec<&str> = m.values(HeaderName::Via).collect();
        assert_eq!(
            vs,
            [
                "SIP/2.0/UDP h1;branch=z9hG4bK1;received=192.0.2.1;rport=1000",
                "SIP/2.0/UDP h2;branch=z9hG4bK2"
            ]
        );
    }

    #[test]
    fn transport_rewrite() {
        let mut m = req("SIP / 2.0 / UDP h1;branch=z9hG4bK1");
        set_top_via_transport(&mut m, Transport::Tcp).unwrap();
        assert_eq!(m.via().unwrap().transport(), "TCP");
        assert_eq!(m.via().unwrap().branch(), Some("z9hG4bK1"));
        assert_eq!(m.count(HeaderName::Via), 2);
    }
}
