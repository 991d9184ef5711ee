//! The route set of a dialog (RFC 3261 §12.1.1, §12.1.2) and the loose/strict routing rules
//! for requests sent in it (§12.2.1.1, §16.12.1.2).

use sip_core::addr::NameAddr;
use sip_core::uri::Uri;
use sip_core::{HeaderName, Message};

use crate::Error;

/// The ordered list of proxies a request in the dialog must visit, as the name-addr values of
/// the Route headers to send (the first is the next hop).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteSet {
    routes: Vec<String>,
}

/// Where a request in the dialog goes, per §12.2.1.1: its Request-URI and its Route values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestTarget {
    /// The Request-URI.
    pub request_uri: String,
    /// The Route header values, in order.
    pub routes: Vec<String>,
}

impl RouteSet {
    /// §12.1.1: the UAS takes the request's Record-Route values in order.
    pub fn from_request(request: &Message) -> Result<RouteSet, Error> {
        Ok(RouteSet {
            routes: record_routes(request)?,
        })
    }

    /// §12.1.2: the UAC takes the response's Record-Route values in reverse order.
    pub fn from_response(response: &Message) -> Result<RouteSet, Error> {
        let mut routes = record_routes(response)?;
        routes.reverse();
        Ok(RouteSet { routes })
    }

    /// A route set from explicit values (name-addr or addr-spec), first hop first.
    pub fn new(routes: Vec<String>) -> RouteSet {
        RouteSet { routes }
    }

    /// The values, first hop first.
    pub fn routes(&self) -> &[String] {
        &self.routes
    }

    /// True when the set is empty.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Heap bytes held.
    pub fn heap_size(&self) -> usize {
        self.routes.capacity() * std::mem::size_of::<String>()
            + self.routes.iter().map(String::capacity).sum::<usize>()
    }

    /// §12.2.1.1: with an empty route set, the Request-URI is the remote target and there is no
    /// Route. When the first route has `lr` (loose routing), the Request-URI is the remote
    /// target and the Route headers are the route set. Otherwise (strict routing, RFC 2543)
    /// the Request-URI is the first route's URI (with its header and method parameters
    /// dropped) and the Route headers are the rest, followed by the remote target.
    pub fn target(&self, remote_target: &str) -> RequestTarget {
        let Some(first) = self.routes.first() else {
            return RequestTarget {
                request_uri: remote_target.to_owned(),
                routes: Vec::new(),
            };
        };
        let first_uri = NameAddr::parse(first).ok();
        let loose = first_uri
            .as_ref()
            .and_then(|a| a.sip_uri().map(Uri::is_lr))
            .unwrap_or(true);
        if loose {
            return RequestTarget {
                request_uri: remote_target.to_owned(),
                routes: self.routes.clone(),
            };
        }
        let request_uri = first_uri
            .map(|a| strip_for_request_uri(a.uri_str()))
            .unwrap_or_else(|| remote_target.to_owned());
        let mut routes: Vec<String> = self.routes.iter().skip(1).cloned().collect();
        routes.push(format!("<{remote_target}>"));
        RequestTarget {
            request_uri,
            routes,
        }
    }

    /// The URI of the next hop a request in the dialog is sent to (§8.1.2 with §12.2.1.1): the
    /// first route's URI, or the remote target when the set is empty.
    pub fn next_hop(&self, remote_target: &str) -> String {
        self.routes
            .first()
            .and_then(|r| NameAddr::parse(r).ok().map(|a| a.uri_str().to_owned()))
            .unwrap_or_else(|| remote_target.to_owned())
    }
}

/// Every Record-Route value, in order, each as written.
fn record_routes(msg: &Message) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    for v in msg.values(HeaderName::RecordRoute) {
        NameAddr::parse(v).map_err(|_| Error::Header("Record-Route"))?;
        out.push(v.to_owned());
    }
    Ok(out)
}

/// §19.1.1: the Request-URI carries no `?headers`; `method` is meaningless there too (§19.1.1
/// table). Other parameters stay.
fn strip_for_request_uri(uri: &str) -> String {
    let without_headers = uri.split('?').next().unwrap_or(uri);
    without_headers
        .split(';')
        .enumerate()
        .filter(|(i, p)| *i == 0 || !p.to_ascii_lowercase().starts_with("method="))
        .map(|(_, p)| p)
        .collect::<Vec<_>>()
        .join(";")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response_with(rr: &[&str]) -> Message {
        let mut s = String::from(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nFrom: <sip:a@a>;tag=1\r\n\
             To: <sip:b@b>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n",
        );
        for r in rr {
            s.push_str(&format!("Record-Route: {r}\r\n"));
        }
        s.push_str("Contact: <sip:b@192.0.2.2>\r\nContent-Length: 0\r\n\r\n");
        Message::parse(s.into_bytes()).unwrap()
    }

    #[test]
    fn uac_reverses_record_route_uas_keeps_it() {
        let m = response_with(&["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]);
        let uac = RouteSet::from_response(&m).unwrap();
        assert_eq!(
            uac.routes(),
            ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
        );
        let uas = RouteSet::from_request(&m).unwrap();
        assert_eq!(
            uas.routes(),
            ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
        );
    }

    #[test]
    fn comma_separated_record_route_values_split() {
        let m = response_with(&["<sip:p2.example.com;lr>, <sip:p1.example.com;lr>"]);
        assert_eq!(RouteSet::from_response(&m).unwrap().routes().len(), 2);
    }

    #[test]
    fn empty_set_targets_the_remote_target() {
        let t = RouteSet::default().target("sip:bob@192.0.2.2");
        assert_eq!(t.request_uri, "sip:bob@192.0.2.2");
        assert!(t.routes.is_empty());
        assert_eq!(
            RouteSet::default().next_hop("sip:bob@192.0.2.2"),
            "sip:bob@192.0.2.2"
        );
    }

    #[test]
    fn loose_routing_keeps_the_remote_target_in_the_request_uri() {
        let rs = RouteSet::new(vec!["<sip:p1.example.com;lr>".into(), "<sip:p2;lr>".into()]);
        let t = rs.target("sip:bob@192.0.2.2");
        assert_eq!(t.request_uri, "sip:bob@192.0.2.2");
        assert_eq!(t.routes, rs.routes());
        assert_eq!(rs.next_hop("sip:bob@192.0.2.2"), "sip:p1.example.com;lr");
    }

    #[test]
    fn strict_routing_puts_the_first_route_in_the_request_uri() {
        // RFC 3261 §12.2.1.1's example: route set <sip:proxy1>, <sip:proxy2>, <sip:proxy3;lr>,
        // <sip:proxy4>, remote target sip:user@remoteua.
        let rs = RouteSet::new(vec![
            "<sip:proxy1>".into(),
            "<sip:proxy2>".into(),
            "<sip:proxy3;lr>".into(),
            "<sip:proxy4>".into(),
        ]);
        let t = rs.target("sip:user@remoteua");
        assert_eq!(t.request_uri, "sip:proxy1");
        assert_eq!(
            t.routes,
            [
                "<sip:proxy2>",
                "<sip:proxy3;lr>",
                "<sip:proxy4>",
                "<sip:user@remoteua>"
            ]
        );
    }

    #[test]
    fn strict_route_uri_loses_headers_and_method() {
        let rs = RouteSet::new(vec!["<sip:proxy1;method=INVITE;x=1?h=v>".into()]);
        assert_eq!(rs.target("sip:u@r").request_uri, "sip:proxy1;x=1");
    }
}
