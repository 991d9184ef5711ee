//! Flow tokens (RFC 5626 §5.2): the dispatcher names the flow a REGISTER came in on (its
//! transport, our local address and the device's source address; for TCP that 4-tuple is the
//! connection) in the user part of the Path URI it adds, so that a request a node later sends
//! along that Path comes back here and leaves on that very flow, even when the device's
//! Contact is a private address nothing else can reach.
//!
//! A token is `hex(flow bytes ‖ MAC)`, the MAC being HMAC-SHA256 over the flow bytes under a
//! key only the dispatcher knows, cut to 80 bits (RFC 5626 §5.2 suggests HMAC-SHA1-80): a
//! node or a device cannot forge one to make the dispatcher send to an address of its choice.
//! Tokens hold no time and no state, so the dispatcher stays stateless; a dispatcher restarted
//! with the same key ([`FlowTokens::with_key`]) still recognises the tokens it gave out.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use sip_core::{Flow, Transport};

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the MAC kept in a token.
const MAC_LEN: usize = 10;

/// Longest flow encoding: transport, then two IPv6 socket addresses (family, address, port).
const MAX_FLOW_LEN: usize = 1 + 2 * (1 + 16 + 2);

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a token's shape (length, hex digits, field values).
    #[error("malformed flow token")]
    Malformed,
    /// Well formed, but not made with our key (forged, or from another dispatcher).
    #[error("flow token not ours")]
    Forged,
}

/// Makes and checks flow tokens under one key.
#[derive(Clone)]
pub struct FlowTokens {
    mac: HmacSha256,
}

impl std::fmt::Debug for FlowTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FlowTokens { .. }")
    }
}

impl FlowTokens {
    /// Tokens under a fresh random key (they stop being recognised when the process ends).
    pub fn random() -> std::io::Result<FlowTokens> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(FlowTokens::with_key(&key))
    }

    /// Tokens under `key` (any length; 32 random bytes are right), so that several dispatchers
    /// or a restarted one recognise each other's tokens.
    pub fn with_key(key: &[u8]) -> FlowTokens {
        // HMAC takes keys of any length: this cannot fail.
        let mac = <HmacSha256 as KeyInit>::new_from_slice(key)
            .unwrap_or_else(|_| <HmacSha256 as KeyInit>::new(&Default::default()));
        FlowTokens { mac }
    }

    fn tag(&self, data: &[u8]) -> [u8; MAC_LEN] {
        let mut m = self.mac.clone();
        m.update(data);
        let full = m.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        for (o, b) in out.iter_mut().zip(full.iter()) {
            *o = *b;
        }
        out
    }

    /// The token of `flow` (lower-case hex, fit for a SIP URI's user part).
    pub fn encode(&self, flow: &Flow) -> String {
        let mut data = [0u8; MAX_FLOW_LEN];
        let n = flow_bytes(flow, &mut data);
        let mac = self.tag(&data[..n]);
        let mut out = String::with_capacity(2 * (n + MAC_LEN));
        for b in data[..n].iter().chain(mac.iter()) {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
        out
    }

    /// The flow a token names, when the token is well formed and ours.
    pub fn decode(&self, token: &str) -> Result<Flow, TokenError> {
        let t = token.as_bytes();
        if !t.len().is_multiple_of(2) || t.len() > 2 * (MAX_FLOW_LEN + MAC_LEN) {
            return Err(TokenError::Malformed);
        }
        let mut raw = [0u8; MAX_FLOW_LEN + MAC_LEN];
        let n = t.len() / 2;
        for (i, pair) in t.chunks_exact(2).enumerate() {
            raw[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        let data_len = n.checked_sub(MAC_LEN).ok_or(TokenError::Malformed)?;
        let (data, mac) = raw[..n].split_at(data_len);
        let flow = parse_flow(data).ok_or(TokenError::Malformed)?;
        // Constant time: the MAC is compared by the hmac crate's verifier.
        let mut m = self.mac.clone();
        m.update(data);
        m.verify_truncated_left(mac)
            .map_err(|_| TokenError::Forged)?;
        Ok(flow)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn nibble(c: u8) -> Result<u8, TokenError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(TokenError::Malformed),
    }
}

fn transport_code(t: Transport) -> u8 {
    match t {
        Transport::Udp => 0,
        Transport::Tcp => 1,
        Transport::Tls => 2,
        Transport::Ws => 3,
        Transport::Wss => 4,
    }
}

fn transport_of(code: u8) -> Option<Transport> {
    Some(match code {
        0 => Transport::Udp,
        1 => Transport::Tcp,
        2 => Transport::Tls,
        3 => Transport::Ws,
        4 => Transport::Wss,
        _ => return None,
    })
}

/// Writes `flow` into `out` (long enough for [`MAX_FLOW_LEN`]); returns the length.
fn flow_bytes(flow: &Flow, out: &mut [u8; MAX_FLOW_LEN]) -> usize {
    out[0] = transport_code(flow.transport);
    let mut n = 1;
    for a in [flow.local, flow.remote] {
        match a.ip() {
            IpAddr::V4(ip) => {
                out[n] = 4;
                out[n + 1..n + 5].copy_from_slice(&ip.octets());
                n += 5;
            }
            IpAddr::V6(ip) => {
                out[n] = 6;
                out[n + 1..n + 17].copy_from_slice(&ip.octets());
                n += 17;
            }
        }
        out[n..n + 2].copy_from_slice(&a.port().to_be_bytes());
        n += 2;
    }
    n
}

fn parse_flow(data: &[u8]) -> Option<Flow> {
    let (&code, mut rest) = data.split_first()?;
    let transport = transport_of(code)?;
    let mut addr = || -> Option<SocketAddr> {
        let (&family, r) = rest.split_first()?;
        let len = match family {
            4 => 4,
            6 => 16,
            _ => return None,
        };
        let ip_bytes = r.get(..len)?;
        let port = r.get(len..len + 2)?;
        rest = &r[len + 2..];
        let ip = if len == 4 {
            IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(ip_bytes).ok()?))
        } else {
            IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(ip_bytes).ok()?))
        };
        Some(SocketAddr::new(ip, u16::from_be_bytes([port[0], port[1]])))
    };
    let local = addr()?;
    let remote = addr()?;
    if !rest.is_empty() {
        return None;
    }
    Some(Flow {
        transport,
        local,
        remote,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(transport: Transport, local: &str, remote: &str) -> Flow {
        Flow {
            transport,
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
        }
    }

    #[test]
    fn round_trip_v4_v6_every_transport() {
        let t = FlowTokens::with_key(b"k");
        for tr in [
            Transport::Udp,
            Transport::Tcp,
            Transport::Tls,
            Transport::Ws,
            Transport::Wss,
        ] {
            for (l, r) in [
                ("192.0.2.1:5060", "198.51.100.7:40312"),
                ("[2001:db8::1]:5060", "[2001:db8::7]:1"),
                ("192.0.2.1:5060", "[2001:db8::7]:65535"),
            ] {
                let f = flow(tr, l, r);
                let tok = t.encode(&f);
                assert!(tok.bytes().all(|c| c.is_ascii_hexdigit()), "{tok}");
                assert_eq!(t.decode(&tok), Ok(f));
                assert_eq!(t.decode(&tok.to_ascii_uppercase()), Ok(f));
            }
        }
        // 1 + 7 + 7 flow bytes and 10 MAC bytes for IPv4.
        let f = flow(Transport::Udp, "192.0.2.1:5060", "198.51.100.7:4");
        assert_eq!(t.encode(&f).len(), 50);
    }

    #[test]
    fn forged_and_malformed_tokens_are_refused() {
        let t = FlowTokens::with_key(b"k");
        let f = flow(Transport::Udp, "192.0.2.1:5060", "198.51.100.7:40312");
        let tok = t.encode(&f);
        // Another key: not ours.
        assert_eq!(
            FlowTokens::with_key(b"other").decode(&tok),
            Err(TokenError::Forged)
        );
        // The remote address changed (the last flow byte, before the MAC): the MAC fails.
        let mut bytes = tok.clone().into_bytes();
        let i = bytes.len() - 2 * MAC_LEN - 1;
        bytes[i] = if bytes[i] == b'0' { b'1' } else { b'0' };
        assert_eq!(
            t.decode(std::str::from_utf8(&bytes).unwrap()),
            Err(TokenError::Forged)
        );
        for bad in [
            "",
            "0",
            "zz",
            &tok[..tok.len() - 1],
            &tok[..2 * MAC_LEN],
            &"00".repeat(100),
            // A transport code that does not exist, with a MAC of the right size.
            &format!("09{}", &tok[2..]),
        ] {
            assert!(t.decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn random_keys_differ() {
        let f = flow(Transport::Tcp, "192.0.2.1:5060", "198.51.100.7:40312");
        let a = FlowTokens::random().unwrap();
        let b = FlowTokens::random().unwrap();
        assert_ne!(a.encode(&f), b.encode(&f));
        assert_eq!(a.decode(&a.encode(&f)), Ok(f));
    }
}
