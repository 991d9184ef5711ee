//! RFC 3261 §16.6: forwarding a request to one target, as numbered steps. The result is the
//! request to send and its next hop; the driver resolves and sends it.

use sip_core::addr::NameAddr;
use sip_core::uri::Uri;
use sip_core::{Flow, HeaderName, Message, Method, Transport};

use super::identity::{Identity, Interface};
use super::target::ProxyTarget;

/// Where a forwarded request goes next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextHop {
    /// Over the flow the target registered on (outbound, TCP/TLS, NAT-ed UDP, Path).
    Flow(Flow),
    /// To this host and port (resolved by the driver: an IP literal, or a name looked up).
    Address {
        /// The transport.
        transport: Transport,
        /// Host (IPv6 without brackets).
        host: String,
        /// Port (the transport's default when the URI gave none).
        port: u16,
    },
}

impl NextHop {
    /// The transport used.
    pub fn transport(&self) -> Transport {
        match self {
            NextHop::Flow(f) => f.transport,
            NextHop::Address { transport, .. } => *transport,
        }
    }
}

/// A request ready to send.
#[derive(Debug, Clone)]
pub struct Forwarded {
    /// The request (our Via on top).
    pub request: Message,
    /// Where it goes.
    pub hop: NextHop,
}

/// Options of forwarding.
#[derive(Debug, Clone, Copy)]
pub struct ForwardOptions {
    /// Add Record-Route to dialog-creating requests (§16.6 step 4).
    pub record_route: bool,
    /// Max-Forwards put in requests without one (default 70).
    pub default_max_forwards: u8,
}

impl Default for ForwardOptions {
    fn default() -> Self {
        ForwardOptions {
            record_route: true,
            default_max_forwards: 70,
        }
    }
}

/// Why a request could not be forwarded to a target.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardError {
    /// The target or a Route URI does not parse.
    #[error("bad target or Route URI: {0}")]
    BadUri(#[from] sip_core::Error),
    /// The next hop is not a sip/sips URI.
    #[error("next hop is not a SIP URI")]
    NotSip,
    /// We have no interface for the next hop's transport.
    #[error("no interface for {0}")]
    NoInterface(Transport),
}

/// The methods for which a Record-Route is meaningful: those that create dialogs.
fn creates_dialog(m: Option<Method<'_>>) -> bool {
    matches!(
        m,
        Some(Method::Invite | Method::Subscribe | Method::Refer | Method::Notify)
    )
}

/// Forwards `received` (already preprocessed, §16.4) to `target` (§16.6 steps 1–9).
/// `incoming` is the flow it arrived on (for the double Record-Route), `branch` the value of
/// our Via branch ([`super::branch::branch`]).
pub fn forward(
    received: &Message,
    incoming: Option<&Flow>,
    target: &ProxyTarget,
    branch: &str,
    id: &Identity,
    opts: &ForwardOptions,
) -> Result<Forwarded, ForwardError> {
    // Step 1: copy the request.
    let mut req = received.clone();
    // Step 2: the Request-URI.
    if req.uri_str() != Some(target.uri.as_str()) {
        req.set_request_uri(&target.uri)?;
    }
    // Step 3: Max-Forwards.
    step3_max_forwards(&mut req, opts)?;
    // Step 6 before 4: the next hop decides the outgoing interface.
    step6_path(&mut req, target)?;
    let strict = step6_strict_router(&mut req)?;
    let hop = step7_next_hop(&req, target, strict)?;
    let out = id
        .interface_for(hop.transport())
        .ok_or(NextHop::transport(&hop))
        .map_err(ForwardError::NoInterface)?
        .clone();
    // Step 4: Record-Route.
    if opts.record_route && creates_dialog(req.method()) && !has_to_tag(&req) {
        step4_record_route(&mut req, incoming, &out, id)?;
    }
    // Step 8: our Via.
    req.push_via(&via_value(hop.transport(), &out.advertised, branch))?;
    Ok(Forwarded { request: req, hop })
}

/// Our Via value: `SIP/2.0/<transport> <sent-by>;branch=<branch>` (built without the
/// formatter: this runs for every forwarded request).
fn via_value(transport: Transport, sent_by: &str, branch: &str) -> String {
    let mut v = String::with_capacity(9 + 4 + sent_by.len() + 8 + branch.len());
    v.push_str("SIP/2.0/");
    v.push_str(transport.as_str());
    v.push(' ');
    v.push_str(sent_by);
    v.push_str(";branch=");
    v.push_str(branch);
    v
}

fn has_to_tag(req: &Message) -> bool {
    req.to().ok().is_some_and(|t| t.tag().is_some())
}

/// Step 3: decrement Max-Forwards, or add one.
fn step3_max_forwards(req: &mut Message, opts: &ForwardOptions) -> sip_core::Result<()> {
    let mf = match req.max_forwards() {
        Some(Ok(n)) => n.saturating_sub(1),
        _ => opts.default_max_forwards,
    };
    let mut buf = [0u8; 3];
    req.set_header(HeaderName::MaxForwards, decimal(mf, &mut buf))
}

/// `n` in decimal, written into `buf`.
fn decimal(n: u8, buf: &mut [u8; 3]) -> &str {
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + n % 10;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[i..]).unwrap_or("0")
}

/// A Record-Route URI for an interface.
fn rr_value(i: &Interface) -> String {
    let (scheme, param) = match i.transport {
        Transport::Udp => ("<sip:", ""),
        Transport::Tcp => ("<sip:", ";transport=tcp"),
        Transport::Tls => ("<sip:", ";transport=tls"),
        Transport::Ws => ("<sip:", ";transport=ws"),
        Transport::Wss => ("<sips:", ";transport=ws"),
    };
    let mut v = String::with_capacity(scheme.len() + i.advertised.len() + param.len() + 4);
    v.push_str(scheme);
    v.push_str(&i.advertised);
    v.push_str(param);
    v.push_str(";lr>");
    v
}

/// Step 4: Record-Route; two of them when the request leaves on another transport or
/// interface than it came on (the top one faces the callee, the next the caller).
fn step4_record_route(
    req: &mut Message,
    incoming: Option<&Flow>,
    out: &Interface,
    id: &Identity,
) -> sip_core::Result<()> {
    let inbound = incoming.and_then(|f| id.interface_at(f.transport, f.local));
    if let Some(inb) = inbound {
        if inb != out {
            req.push_record_route(&rr_value(inb))?;
        }
    }
    req.push_record_route(&rr_value(out))
}

/// Step 6: a target registered through Path is reached along that path (RFC 3327 §5.3).
fn step6_path(req: &mut Message, target: &ProxyTarget) -> sip_core::Result<()> {
    for p in target.path.iter().rev() {
        req.push_route(p)?;
    }
    Ok(())
}

/// Step 6, the strict-router case: when the first Route URI has no `lr`, the Request-URI goes
/// to the end of the route set and that first Route value becomes the Request-URI (RFC 3261
/// §16.6 step 6, §12.2.1.1). Returns whether it was done: the request then goes to the new
/// Request-URI, the strict router.
fn step6_strict_router(req: &mut Message) -> Result<bool, ForwardError> {
    let first = match req.values(HeaderName::Route).next() {
        Some(v) => NameAddr::parse(v)?,
        None => return Ok(false),
    };
    let Some(uri) = first.sip_uri() else {
        return Ok(false);
    };
    if uri.is_lr() {
        return Ok(false);
    }
    let next = uri.as_str().to_owned();
    let Some(old_ruri) = req.uri_str().map(str::to_owned) else {
        return Ok(false);
    };
    req.remove_top(sip_core::HeaderName::Route);
    req.append_header("Route", &format!("<{old_ruri}>"))?;
    req.set_request_uri(&next)?;
    Ok(true)
}

/// The host, port and transport a SIP URI leads to (RFC 3263 without DNS records: the host as
/// given, the port or the transport's default).
fn address_of(uri: &Uri<'_>) -> NextHop {
    let transport = uri
        .transport()
        .and_then(Transport::from_name)
        .unwrap_or(if uri.is_secure() {
            Transport::Tls
        } else {
            Transport::Udp
        });
    NextHop::Address {
        transport,
        host: hop_host(uri).to_owned(),
        port: uri.port().unwrap_or(transport.default_port()),
    }
}

/// The host a SIP URI leads to: its `maddr`, else its host (IPv6 without brackets).
fn hop_host<'a>(uri: &Uri<'a>) -> &'a str {
    uri.maddr()
        .unwrap_or(uri.host_str())
        .trim_start_matches('[')
        .trim_end_matches(']')
}

/// Whether a registered target must be reached over its registration flow: outbound,
/// connection-oriented, Path, or a contact IP address that is not the one the REGISTER came
/// from (NAT). Only the address is compared: a contact on the source's own address but another
/// port (a tool registering on behalf of a UA on the same host) is reached at its contact.
pub fn use_registered_flow(target: &ProxyTarget, flow: &Flow) -> bool {
    if target.outbound || flow.transport.is_reliable() || !target.path.is_empty() {
        return true;
    }
    match Uri::parse(&target.uri) {
        Ok(u) => hop_host(&u).parse::<std::net::IpAddr>().ok() != Some(flow.remote.ip()),
        Err(_) => true,
    }
}

/// Step 7: the next hop: the registration flow, the top Route, or the Request-URI.
fn step7_next_hop(
    req: &Message,
    target: &ProxyTarget,
    strict: bool,
) -> Result<NextHop, ForwardError> {
    if let Some(flow) = &target.flow {
        if use_registered_flow(target, flow) {
            return Ok(NextHop::Flow(*flow));
        }
    }
    // After the strict-router rewrite the Request-URI is the strict router: no Route decides.
    let top_route = req.values(HeaderName::Route).next().filter(|_| !strict);
    if let Some(route) = top_route {
        let a = NameAddr::parse(route)?;
        let uri = a.sip_uri().ok_or(ForwardError::NotSip)?;
        return Ok(address_of(uri));
    }
    match req.request_uri() {
        Some(Ok(u)) => Ok(address_of(&u)),
        Some(Err(e)) => Err(e.into()),
        None => Err(ForwardError::NotSip),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_strict_router_next_gets_the_request_uri_rewrite() {
        // §16.6 step 6: the first Route (no lr) becomes the Request-URI, the old Request-URI
        // the last Route value, and the request goes to the strict router.
        let received = Message::parse(
            &b"INVITE sip:bob@192.0.2.20 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKa\r\n\
               Route: <sip:198.51.100.7:5070>, <sip:203.0.113.5;lr>\r\nFrom: <sip:a@x>;tag=1\r\n\
               To: <sip:bob@y>;tag=2\r\nCall-ID: c\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\n\
               Content-Length: 0\r\n\r\n"[..],
        )
        .unwrap();
        let target = ProxyTarget::uri("sip:bob@192.0.2.20");
        let f = forward(
            &received,
            None,
            &target,
            "z9hG4bKsp.1.2",
            &id(),
            &ForwardOptions::default(),
        )
        .unwrap();
        assert_eq!(f.request.uri_str(), Some("sip:198.51.100.7:5070"));
        let routes: Vec<&str> = f.request.values(HeaderName::Route).collect();
        assert_eq!(routes, ["<sip:203.0.113.5;lr>", "<sip:bob@192.0.2.20>"]);
        assert_eq!(
            f.hop,
            NextHop::Address {
                transport: Transport::Udp,
                host: "198.51.100.7".into(),
                port: 5070
            }
        );
        let again = Message::parse(f.request.to_bytes()).unwrap();
        assert_eq!(again.values(HeaderName::Route).count(), 2);
    }

    fn id() -> Identity {
        Identity::new(
            vec![
                Interface::new(Transport::Udp, "192.0.2.1:5060".parse().unwrap()),
                Interface::new(Transport::Tcp, "192.0.2.1:5060".parse().unwrap()),
            ],
            vec!["example.com".into()],
        )
    }

    fn invite() -> Message {
        Message::parse(
            &b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKa\r\n\
               Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\n\
               Call-ID: c1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@192.0.2.9>\r\nContent-Length: 0\r\n\r\n"[..],
        )
        .unwrap()
    }

    fn udp_in() -> Flow {
        Flow {
            transport: Transport::Udp,
            local: "192.0.2.1:5060".parse().unwrap(),
            remote: "192.0.2.9:5060".parse().unwrap(),
        }
    }

    #[test]
    fn copy_ruri_mf_rr_via() {
        let t = ProxyTarget::uri("sip:bob@192.0.2.20:5062");
        let f = forward(
            &invite(),
            Some(&udp_in()),
            &t,
            "z9hG4bKsp.x",
            &id(),
            &ForwardOptions::default(),
        )
        .unwrap();
        let r = Message::parse(f.request.to_bytes()).unwrap();
        assert_eq!(r.uri_str(), Some("sip:bob@192.0.2.20:5062"));
        assert_eq!(r.header(HeaderName::MaxForwards), Some("69"));
        let rr: Vec<&str> = r.values(HeaderName::RecordRoute).collect();
        assert_eq!(rr, ["<sip:192.0.2.1:5060;lr>"]);
        assert_eq!(r.via().unwrap().branch(), Some("z9hG4bKsp.x"));
        assert_eq!(r.values(HeaderName::Via).count(), 2);
        assert_eq!(
            f.hop,
            NextHop::Address {
                transport: Transport::Udp,
                host: "192.0.2.20".into(),
                port: 5062
            }
        );
        // The received message is untouched.
        assert_eq!(invite().header(HeaderName::MaxForwards), Some("70"));
    }

    #[test]
    fn double_record_route_on_transport_change() {
        let t = ProxyTarget::uri("sip:bob@192.0.2.20:5062;transport=tcp");
        let f = forward(
            &invite(),
            Some(&udp_in()),
            &t,
            "z9hG4bKsp.x",
            &id(),
            &ForwardOptions::default(),
        )
        .unwrap();
        let r = Message::parse(f.request.to_bytes()).unwrap();
        let rr: Vec<&str> = r.values(HeaderName::RecordRoute).collect();
        assert_eq!(
            rr,
            [
                "<sip:192.0.2.1:5060;transport=tcp;lr>",
                "<sip:192.0.2.1:5060;lr>"
            ]
        );
        assert!(r.via().unwrap().as_str().starts_with("SIP/2.0/TCP "));
        let no_rr = ForwardOptions {
            record_route: false,
            ..ForwardOptions::default()
        };
        let f = forward(&invite(), Some(&udp_in()), &t, "z9hG4bKsp.x", &id(), &no_rr).unwrap();
        assert_eq!(f.request.count(HeaderName::RecordRoute), 0);
    }

    #[test]
    fn registered_flow_and_path() {
        let nat = Flow {
            transport: Transport::Udp,
            local: "192.0.2.1:5060".parse().unwrap(),
            remote: "203.0.113.5:40000".parse().unwrap(),
        };
        let mut t = ProxyTarget::uri("sip:bob@10.0.0.5:5060");
        t.flow = Some(nat);
        let f = forward(
            &invite(),
            None,
            &t,
            "z9hG4bKsp.x",
            &id(),
            &ForwardOptions::default(),
        )
        .unwrap();
        assert_eq!(f.hop, NextHop::Flow(nat));
        // Not NAT-ed (the same address, whatever the port): the contact itself.
        let mut direct = ProxyTarget::uri("sip:bob@203.0.113.5:5062");
        direct.flow = Some(nat);
        assert!(!use_registered_flow(&direct, &nat));
        // Path becomes Route, and the flow (to the edge proxy) is used.
        let mut p = ProxyTarget::uri("sip:bob@10.0.0.5:5060");
        p.path = vec!["<sip:edge.example.net;lr>".into()];
        let f = forward(
            &invite(),
            None,
            &p,
            "z9hG4bKsp.x",
            &id(),
            &ForwardOptions::default(),
        )
        .unwrap();
        assert_eq!(
            f.request.header(HeaderName::Route),
            Some("<sip:edge.example.net;lr>")
        );
        assert_eq!(
            f.hop,
            NextHop::Address {
                transport: Transport::Udp,
                host: "edge.example.net".into(),
                port: 5060
            }
        );
    }

    #[test]
    fn route_decides_next_hop_and_mf_added() {
        let mut r = Message::parse(
            &b"BYE sip:bob@192.0.2.20 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKa\r\n\
               Route: <sip:198.51.100.7:5070;transport=tcp;lr>\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\n\
               Call-ID: c1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"[..],
        )
        .unwrap();
        r.set_header(HeaderName::CallId, "c2").unwrap();
        let t = ProxyTarget::uri("sip:bob@192.0.2.20");
        let f = forward(
            &r,
            None,
            &t,
            "z9hG4bKsp.y",
            &id(),
            &ForwardOptions::default(),
        )
        .unwrap();
        assert_eq!(
            f.hop,
            NextHop::Address {
                transport: Transport::Tcp,
                host: "198.51.100.7".into(),
                port: 5070
            }
        );
        assert_eq!(f.request.header(HeaderName::MaxForwards), Some("70"));
        assert_eq!(f.request.count(HeaderName::RecordRoute), 0);
    }
}
