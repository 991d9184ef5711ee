//! RFC 3261 §16.4: route information preprocessing.
//!
//! 1. A Request-URI that is a value we put in a Record-Route means the previous hop is a
//!    strict router: the real Request-URI is the last Route value, which is removed.
//! 2. A top Route naming us is removed (with the double Record-Route of §16.6 step 4, two of
//!    them may be ours, and both are).

use sip_core::addr::NameAddr;
use sip_core::{HeaderName, Message};

use super::identity::Identity;

/// What preprocessing changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Preprocessed {
    /// The strict-route fix-up was applied.
    pub strict_fixed: bool,
    /// How many Route values naming us were removed.
    pub popped: usize,
}

/// Applies §16.4 to a received request.
pub fn preprocess(req: &mut Message, id: &Identity) -> sip_core::Result<Preprocessed> {
    let strict_fixed = strict_route_fixup(req, id)?;
    let popped = pop_own_routes(req, id);
    Ok(Preprocessed {
        strict_fixed,
        popped,
    })
}

/// Whether a Route/Record-Route value names us.
fn names_us(value: &str, id: &Identity) -> bool {
    NameAddr::parse(value)
        .ok()
        .and_then(|a| a.sip_uri().map(|u| id.is_us(u)))
        .unwrap_or(false)
}

/// Step 1: our Record-Route URI (it carries `lr`) as Request-URI, with a Route set: the last
/// Route value becomes the Request-URI.
fn strict_route_fixup(req: &mut Message, id: &Identity) -> sip_core::Result<bool> {
    let ours = match req.request_uri() {
        Some(Ok(u)) => u.is_lr() && u.user().is_none() && id.is_us(&u),
        _ => false,
    };
    if !ours {
        return Ok(false);
    }
    let mut routes: Vec<String> = req.values(HeaderName::Route).map(str::to_owned).collect();
    let Some(last) = routes.pop() else {
        return Ok(false);
    };
    let uri = NameAddr::parse(&last)?.uri_str().to_owned();
    req.set_request_uri(&uri)?;
    req.remove_header(HeaderName::Route);
    for r in routes.iter().rev() {
        req.push_route(r)?;
    }
    Ok(true)
}

/// Step 2: removes every top Route value naming us.
fn pop_own_routes(req: &mut Message, id: &Identity) -> usize {
    let mut n = 0;
    while req
        .values(HeaderName::Route)
        .next()
        .is_some_and(|v| names_us(v, id))
    {
        if !req.remove_top(sip_core::HeaderName::Route) {
            break;
        }
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::identity::Interface;
    use sip_core::Transport;

    fn id() -> Identity {
        Identity::new(
            vec![
                Interface::new(Transport::Udp, "192.0.2.1:5060".parse().unwrap()),
                Interface::new(Transport::Tcp, "192.0.2.1:5060".parse().unwrap()),
            ],
            vec!["example.com".into()],
        )
    }

    fn req(ruri: &str, routes: &str) -> Message {
        Message::parse(
            format!(
                "BYE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKa\r\n{routes}\
                 From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>;tag=2\r\n\
                 Call-ID: c1\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            )
            .into_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn pops_our_top_routes() {
        let mut r = req(
            "sip:bob@192.0.2.20:5062",
            "Route: <sip:192.0.2.1:5060;transport=tcp;lr>, <sip:192.0.2.1;lr>\r\nRoute: <sip:198.51.100.7;lr>\r\n",
        );
        let p = preprocess(&mut r, &id()).unwrap();
        assert_eq!(
            p,
            Preprocessed {
                strict_fixed: false,
                popped: 2
            }
        );
        let left: Vec<&str> = r.values(HeaderName::Route).collect();
        assert_eq!(left, ["<sip:198.51.100.7;lr>"]);
        assert_eq!(r.uri_str(), Some("sip:bob@192.0.2.20:5062"));
    }

    #[test]
    fn foreign_top_route_stays() {
        let mut r = req("sip:bob@192.0.2.20", "Route: <sip:198.51.100.7;lr>\r\n");
        assert_eq!(preprocess(&mut r, &id()).unwrap().popped, 0);
        assert_eq!(r.count(HeaderName::Route), 1);
    }

    #[test]
    fn strict_route_fixup() {
        // A strict router put our Record-Route URI in the Request-URI and the remote target
        // at the end of the Route set.
        let mut r = req(
            "sip:192.0.2.1;lr",
            "Route: <sip:198.51.100.7;lr>\r\nRoute: <sip:bob@192.0.2.20:5062>\r\n",
        );
        let p = preprocess(&mut r, &id()).unwrap();
        assert!(p.strict_fixed);
        assert_eq!(r.uri_str(), Some("sip:bob@192.0.2.20:5062"));
        let left: Vec<&str> = r.values(HeaderName::Route).collect();
        assert_eq!(left, ["<sip:198.51.100.7;lr>"]);
        let again = Message::parse(r.to_bytes()).unwrap();
        assert_eq!(again.uri_str(), Some("sip:bob@192.0.2.20:5062"));
    }

    #[test]
    fn our_address_as_target_is_not_a_strict_route() {
        // Addressed to the proxy itself (a user part): no fix-up.
        let mut r = req("sip:bob@192.0.2.1", "Route: <sip:198.51.100.7;lr>\r\n");
        assert!(!preprocess(&mut r, &id()).unwrap().strict_fixed);
        assert_eq!(r.uri_str(), Some("sip:bob@192.0.2.1"));
    }
}
