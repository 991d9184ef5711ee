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

/// A field made safe to store: the separators cannot occur in it.
fn clean(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains(['\n', '\r', PATH_SEP]) {
        s.replace(['\n', '\r', PATH_SEP], " ").into()
    } else {
        s.into()
    }
}

/// A flow as stored: `TRANSPORT|local|remote`.
pub fn flow_key(flow: &Flow) -> String {
    format!("{}|{}|{}", flow.transport, flow.local, flow.remote)
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
    if let (Some(i), Some(r)) = (&c.instance, c.reg_id) {
        return format!("o|{}|{r}", clean(i));
    }
    let Ok(u) = Uri::parse(&c.contact) else {
        return format!("r|{}", clean(&c.contact));
    };
    let mut id = format!("c|{}:", u.scheme().as_str());
    if let Some(user) = u.user_decoded_str() {
        id.push_str(&user);
        id.push('@');
    }
    id.push_str(&u.host_str().to_ascii_lowercase());
    if let Some(p) = u.port() {
        id.push_str(&format!(":{p}"));
    }
    for name in ["transport", "user", "method", "maddr", "ttl"] {
        if let Some(v) = u.param(name) {
            id.push_str(&format!(";{name}={}", v.unwrap_or("").to_ascii_lowercase()));
        }
    }
    clean(&id).into_owned()
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
pub fn tail(change: &RegisterChange, c: &ContactUpdate, node: &str) -> String {
    let bound = is_flow_bound(change, c);
    let path: Vec<String> = change.path.iter().map(|p| clean(p).into_owned()).collect();
    format!(
        "{}\n{}\n0\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
        change.cseq,
        clean(&change.call_id),
        node,
        flow_key(&change.flow),
        u8::from(bound),
        c.q,
        clean(&c.contact),
        c.instance.as_deref().map(clean).unwrap_or_default(),
        c.reg_id.map(|r| r.to_string()).unwrap_or_default(),
        path.join(&PATH_SEP.to_string()),
    )
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

/// Decodes a stored value. `redis_now` (server ms) and `now` are the same moment on the two
/// clocks: the expiry becomes `now` plus what is left.
pub fn decode(v: &[u8], redis_now: u64, now: Instant) -> Option<Stored> {
    let s = std::str::from_utf8(v).ok()?;
    let f: Vec<&str> = s.splitn(12, '\n').collect();
    if f.len() != 12 {
        return None;
    }
    let exp: u64 = f[0].parse().ok()?;
    let left = Duration::from_millis(exp.saturating_sub(redis_now));
    let instance = (!f[9].is_empty()).then(|| f[9].into());
    let reg_id = f[10].parse().ok();
    let path: Box<[Box<str>]> = f[11]
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
    Some(Stored {
        binding: Binding {
            contact: f[8].into(),
            expires_at: now + left,
            q: f[7].parse().ok()?,
            call_id: f[2].into(),
            cseq: f[1].parse().ok()?,
            flow: parse_flow(f[5])?,
            offline: f[3] == "1",
            extra,
        },
        node: f[4].to_owned(),
        bound: f[6] == "1",
    })
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
        let v = format!("1500\n{}", tail(&ch, &c, "n1"));
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
        let v = format!("1500\n{}", tail(&with_path, &c, "n1"));
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
