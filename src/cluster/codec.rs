//! How a binding is written in Redis: one string of `\n`-separated fields, the first seven of
//! which the Lua scripts read.
//!
//! `expiry-ms \n cseq \n call-id \n offline(0|1) \n node \n flow \n bound(0|1) \n q \n contact
//! \n instance \n reg-id \n path` (Path values joined by U+001F). The expiry is in the Redis
//! server's clock; the script that writes a binding puts it in front of the rest.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sip_core::uri::Uri;
use sip_core::{Flow, Transport};

use crate::registrar::{Binding, BindingExtra, ContactUpdate, RegisterChange};

/// Separator of Path values inside the last field (a control character no header value holds).
const PATH_SEP: char = '\u{1f}';

/// Separator of the parts of a script's answer (see [`super::lua`]): the REGISTER script
/// answers with one string, which costs the node one reply to parse instead of one per
/// binding.
pub const REPLY_SEP: u8 = 0x1e;

/// A field made safe to store: the separators cannot occur in it.
fn clean(s: &str) -> std::borrow::Cow<'_, str> {
    const SEPS: [char; 4] = ['\n', '\r', PATH_SEP, REPLY_SEP as char];
    // A byte scan: the separators are ASCII, and this runs on every field of every REGISTER.
    if s.bytes().any(|b| matches!(b, b'\n' | b'\r' | 0x1e | 0x1f)) {
        s.replace(SEPS, " ").into()
    } else {
        s.into()
    }
}

/// A flow as stored: `TRANSPORT|local|remote`.
pub fn flow_key(flow: &Flow) -> String {
    let mut out = String::with_capacity(56);
    push_flow(&mut out, flow);
    out
}

fn push_flow(out: &mut String, flow: &Flow) {
    out.push_str(flow.transport.as_str());
    out.push('|');
    push_addr(out, &flow.local);
    out.push('|');
    push_addr(out, &flow.remote);
}

/// Appends `n` in decimal, without the formatting machinery (this runs per REGISTER).
fn push_u64(out: &mut String, n: u64) {
    let mut buf = [0u8; 20];
    // Only ASCII digits are written.
    out.push_str(
        std::str::from_utf8(sip_core::builder::decimal_digits(n, &mut buf)).unwrap_or_default(),
    );
}

/// Appends an address as `SocketAddr`'s `Display` writes it (so that `parse` reads it back).
fn push_addr(out: &mut String, addr: &SocketAddr) {
    match addr {
        SocketAddr::V4(a) => {
            for (i, o) in a.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_u64(out, u64::from(o));
            }
            out.push(':');
            push_u64(out, u64::from(a.port()));
        }
        SocketAddr::V6(a) => {
            use std::fmt::Write;
            let _ = write!(out, "{a}");
        }
    }
}

fn parse_flow(s: &str) -> Option<Flow> {
    let mut it = s.split('|');
    let transport = Transport::from_name(it.next()?)?;
    let local: SocketAddr = it.next()?.parse().ok()?;
    let remote: SocketAddr = it.next()?.parse().ok()?;
    Some(Flow {
        transport,
        local,
        remote,
    })
}

/// The identity of a binding within its AOR: RFC 5626 instance and reg-id when both are
/// given, else the contact URI in a canonical form of RFC 3261 §19.1.4 (scheme, user as
/// decoded, host in lower case, port as written, and the parameters that must match when
/// present: transport, user, method, maddr, ttl). Parameters that §19.1.4 ignores unless both
/// URIs carry them are left out, so two spellings that differ only in those are one binding.
pub fn binding_id(c: &ContactUpdate) -> String {
    let mut id = String::with_capacity(c.contact.len() + 8);
    if let (Some(i), Some(r)) = (&c.instance, c.reg_id) {
        id.push_str("o|");
        id.push_str(&clean(i));
        id.push('|');
        push_u64(&mut id, u64::from(r));
        return id;
    }
    let Ok(u) = Uri::parse(&c.contact) else {
        id.push_str("r|");
        id.push_str(&clean(&c.contact));
        return id;
    };
    id.push_str("c|");
    id.push_str(u.scheme().as_str());
    id.push(':');
    if let Some(user) = u.user_decoded_str() {
        id.push_str(&user);
        id.push('@');
    }
    let host = u.host_str();
    let at = id.len();
    id.push_str(host);
    id[at..].make_ascii_lowercase();
    if let Some(p) = u.port() {
        id.push(':');
        push_u64(&mut id, u64::from(p));
    }
    for name in ["transport", "user", "method", "maddr", "ttl"] {
        if let Some(v) = u.param(name) {
            id.push(';');
            id.push_str(name);
            id.push('=');
            let at = id.len();
            id.push_str(v.unwrap_or(""));
            id[at..].make_ascii_lowercase();
        }
    }
    match clean(&id) {
        std::borrow::Cow::Borrowed(_) => id,
        std::borrow::Cow::Owned(cleaned) => cleaned,
    }
}

/// Whether a binding must be reached over the flow it registered on, so that only the node
/// holding that flow can reach it: connection-oriented flows, RFC 5626 outbound, and a contact
/// whose address is not the one the REGISTER came from (behind NAT). A binding registered
/// through Path (RFC 3327) is not: its first hop is the Path's top URI (an edge proxy, the
/// dispatcher with a flow token), which every node reaches, and the edge holds the flow.
pub fn is_flow_bound(change: &RegisterChange, c: &ContactUpdate) -> bool {
    let flow = &change.flow;
    if !change.path.is_empty() {
        return false;
    }
    if flow.transport.is_reliable() || (c.instance.is_some() && c.reg_id.is_some()) {
        return true;
    }
    match Uri::parse(&c.contact) {
        Ok(u) => {
            let host = u.host_str().trim_start_matches('[').trim_end_matches(']');
            host.parse::<std::net::IpAddr>().ok() != Some(flow.remote.ip())
        }
        Err(_) => true,
    }
}

/// The stored value of a contact of `change`, without its expiry (the script adds it).
/// `flow_key` is [`flow_key`] of the change's flow (made once per REGISTER).
pub fn tail(change: &RegisterChange, c: &ContactUpdate, node: &str, flow_key: &str) -> String {
    let bound = is_flow_bound(change, c);
    let mut out = String::with_capacity(
        flow_key.len()
            + change.call_id.len()
            + node.len()
            + c.contact.len()
            + 96
            + change.path.iter().map(|p| p.len() + 1).sum::<usize>(),
    );
    push_u64(&mut out, u64::from(change.cseq));
    out.push('\n');
    out.push_str(&clean(&change.call_id));
    out.push_str("\n0\n");
    out.push_str(node);
    out.push('\n');
    out.push_str(flow_key);
    out.push_str(if bound { "\n1\n" } else { "\n0\n" });
    push_u64(&mut out, u64::from(c.q));
    out.push('\n');
    out.push_str(&clean(&c.contact));
    out.push('\n');
    if let Some(i) = &c.instance {
        out.push_str(&clean(i));
    }
    out.push('\n');
    if let Some(r) = c.reg_id {
        push_u64(&mut out, u64::from(r));
    }
    out.push('\n');
    for (i, p) in change.path.iter().enumerate() {
        if i > 0 {
            out.push(PATH_SEP);
        }
        out.push_str(&clean(p));
    }
    out
}

/// A stored binding, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The binding, its expiry placed on the local clock.
    pub binding: Binding,
    /// The node that registered it.
    pub node: String,
    /// Whether only that node can reach it (see [`is_flow_bound`]).
    pub bound: bool,
}

/// The fields of a stored value, borrowed from it.
struct Fields<'a> {
    exp: u64,
    cseq: u32,
    call_id: &'a str,
    offline: bool,
    node: &'a str,
    flow: Flow,
    bound: bool,
    q: u16,
    contact: &'a str,
    instance: &'a str,
    reg_id: &'a str,
    path: &'a str,
}

/// The fields of a stored value. `flow` is the request's flow and its stored key, when
/// known: a stored flow spelled the same is that flow, without parsing its addresses.
fn fields<'a>(v: &'a [u8], flow: Option<(&Flow, &str)>) -> Option<Fields<'a>> {
    let s = std::str::from_utf8(v).ok()?;
    let mut rest = s;
    // Eleven fields end at a newline; the twelfth (the Path) runs to the end.
    let mut taken = 0;
    let mut next = || -> Option<&'a str> {
        taken += 1;
        if taken == 12 {
            return Some(std::mem::take(&mut rest));
        }
        let at = memchr::memchr(b'\n', rest.as_bytes())?;
        let (field, tail) = (&rest[..at], &rest[at + 1..]);
        rest = tail;
        Some(field)
    };
    let parse_flow = |f: &str| match flow {
        Some((flow, key)) if key == f => Some(*flow),
        _ => parse_flow(f),
    };
    Some(Fields {
        exp: next()?.parse().ok()?,
        cseq: next()?.parse().ok()?,
        call_id: next()?,
        offline: next()? == "1",
        node: next()?,
        flow: parse_flow(next()?)?,
        bound: next()? == "1",
        q: next()?.parse().ok()?,
        contact: next()?,
        instance: next()?,
        reg_id: next()?,
        path: next()?,
    })
}

impl Fields<'_> {
    /// The binding, its strings shared with `change` where they are the same (the contact
    /// and Call-ID of the REGISTER that wrote it: no copy).
    fn binding(&self, redis_now: u64, now: Instant, change: Option<&RegisterChange>) -> Binding {
        let left = Duration::from_millis(self.exp.saturating_sub(redis_now));
        let instance = (!self.instance.is_empty()).then(|| self.instance.into());
        let reg_id = self.reg_id.parse().ok();
        let path: Box<[Box<str>]> = self
            .path
            .split(PATH_SEP)
            .filter(|p| !p.is_empty())
            .map(Into::into)
            .collect();
        let extra = (instance.is_some() || reg_id.is_some() || !path.is_empty()).then(|| {
            Box::new(BindingExtra {
                instance,
                reg_id,
                path,
            })
        });
        let call_id = match change {
            Some(c) if *c.call_id == *self.call_id => c.call_id.clone(),
            _ => self.call_id.into(),
        };
        let contact = change
            .and_then(|c| c.contacts.iter().find(|u| *u.contact == *self.contact))
            .map_or_else(|| self.contact.into(), |u| u.contact.clone());
        Binding {
            contact,
            expires_at: now + left,
            q: self.q,
            call_id,
            cseq: self.cseq,
            flow: self.flow,
            offline: self.offline,
            extra,
        }
    }
}

/// Decodes a stored value. `redis_now` (server ms) and `now` are the same moment on the two
/// clocks: the expiry becomes `now` plus what is left.
pub fn decode(v: &[u8], redis_now: u64, now: Instant) -> Option<Stored> {
    let f = fields(v, None)?;
    Some(Stored {
        binding: f.binding(redis_now, now, None),
        node: f.node.to_owned(),
        bound: f.bound,
    })
}

/// Decodes only the binding of a stored value written by `change` (or another), sharing the
/// contact and Call-ID strings with it where they are the same; `flow_key` is
/// [`flow_key`] of the change's flow.
pub fn decode_binding(
    v: &[u8],
    redis_now: u64,
    now: Instant,
    change: &RegisterChange,
    flow_key: &str,
) -> Option<Binding> {
    Some(fields(v, Some((&change.flow, flow_key)))?.binding(redis_now, now, Some(change)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(contact: &str) -> ContactUpdate {
        ContactUpdate {
            contact: contact.into(),
            expires: 60,
            q: 500,
            instance: None,
            reg_id: None,
        }
    }

    fn change(transport: Transport, c: ContactUpdate) -> RegisterChange {
        RegisterChange {
            call_id: "abc@h".into(),
            cseq: 7,
            remove_all: false,
            contacts: vec![c].into(),
            flow: Flow {
                transport,
                local: "192.0.2.1:5060".parse().unwrap(),
                remote: "198.51.100.4:40000".parse().unwrap(),
            },
            path: vec!["<sip:edge.example.com;lr>".into()],
        }
    }

    #[test]
    fn flow_keys_read_back_and_match_display() {
        for (t, l, r) in [
            (Transport::Udp, "192.0.2.1:5060", "198.51.100.4:40000"),
            (Transport::Tls, "0.0.0.0:0", "255.255.255.255:65535"),
            (Transport::Tcp, "[::1]:5060", "[2001:db8::1%3]:5061"),
        ] {
            let flow = Flow {
                transport: t,
                local: l.parse().unwrap(),
                remote: r.parse().unwrap(),
            };
            let key = flow_key(&flow);
            assert_eq!(
                key,
                format!("{}|{}|{}", flow.transport, flow.local, flow.remote)
            );
            assert_eq!(parse_flow(&key), Some(flow));
        }
        let mut s = String::new();
        for n in [0, 7, 10, 65535, u64::MAX] {
            s.clear();
            push_u64(&mut s, n);
            assert_eq!(s, n.to_string());
        }
    }

    #[test]
    fn equivalent_contacts_have_one_id() {
        let a = binding_id(&update("sip:bob@Host.Example.com:5060;Transport=TCP;foo=1"));
        let b = binding_id(&update("sip:%62ob@host.example.com:5060;transport=tcp"));
        assert_eq!(a, b);
        assert_ne!(a, binding_id(&update("sip:bob@host.example.com")));
        let mut o = update("sip:bob@10.0.0.1");
        o.instance = Some("<urn:uuid:1>".into());
        o.reg_id = Some(1);
        assert_eq!(binding_id(&o), "o|<urn:uuid:1>|1");
    }

    #[test]
    fn round_trip() {
        let c = update("sip:bob@198.51.100.4:40000");
        let ch = RegisterChange {
            path: vec![],
            ..change(Transport::Tcp, c.clone())
        };
        let v = format!("1500\n{}", tail(&ch, &c, "n1", &flow_key(&ch.flow)));
        let now = Instant::now();
        let s = decode(v.as_bytes(), 1000, now).unwrap();
        assert_eq!(s.node, "n1");
        assert!(s.bound);
        assert_eq!(s.binding.expires_at, now + Duration::from_millis(500));
        assert_eq!(s.binding.flow, ch.flow);
        assert_eq!(s.binding.q, 500);
        assert_eq!(s.binding.cseq, 7);
        assert_eq!(&*s.binding.call_id, "abc@h");
        let with_path = change(Transport::Tcp, c.clone());
        let v = format!(
            "1500\n{}",
            tail(&with_path, &c, "n1", &flow_key(&with_path.flow))
        );
        let s = decode(v.as_bytes(), 1000, now).unwrap();
        assert_eq!(&*s.binding.path()[0], "<sip:edge.example.com;lr>");
        assert!(!s.bound);
        assert!(decode(b"garbage", 0, now).is_none());
    }

    #[test]
    fn udp_bound_only_behind_nat_and_without_path() {
        let no_path = |t, c: &ContactUpdate| RegisterChange {
            path: vec![],
            ..change(t, c.clone())
        };
        let direct = update("sip:bob@198.51.100.4:40000");
        assert!(!is_flow_bound(&no_path(Transport::Udp, &direct), &direct));
        let natted = update("sip:bob@10.0.0.4:5060");
        assert!(is_flow_bound(&no_path(Transport::Udp, &natted), &natted));
        assert!(is_flow_bound(&no_path(Transport::Tcp, &direct), &direct));
        // Through an edge (the dispatcher's Path with a flow token): any node reaches it.
        assert!(!is_flow_bound(
            &change(Transport::Udp, natted.clone()),
            &natted
        ));
        assert!(!is_flow_bound(
            &change(Transport::Tcp, direct.clone()),
            &direct
        ));
    }
}
