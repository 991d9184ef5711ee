//! The dispatcher's request path: the §16.3 checks it needs, the choice of the next hop
//! (a device's flow by its token, the next Route, a node), and the forwarded request written
//! by [`super::relay`]. What it leaves (see [`Dispatcher::on_request_general`]) goes through
//! the proxy core.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use bytes::BytesMut;
use sip_core::addr::NameAddr;
use sip_core::{Flow, HeaderName, Message, Method, Target, Transport};
use sip_transport::Destination;

use super::relay::{self, RequestEdits};
use super::{bump, creates_dialog, same_flow, Dispatcher, Role, TokenError};

/// What the top Route says.
enum TopRoute {
    /// None, or not ours.
    NotOurs,
    /// Ours, to pop; with the flow its token names, if it has one.
    Ours(Option<Flow>),
}

/// Where the request goes.
enum Hop {
    /// A device's flow (RFC 5626 §5.3).
    Device(Flow),
    /// The next hop of the route set.
    Route(Target),
    /// A node (dispatched).
    Node(Target),
}

/// Whether `value` holds `host:port` (`advertised`), or the host with no port after it (the
/// default port may be ours): a cheap test before parsing the value.
fn spells_address(value: &str, advertised: &str) -> bool {
    let Some((host, port)) = advertised.rsplit_once(':') else {
        return value.contains(advertised);
    };
    value.match_indices(host).any(|(i, _)| {
        let rest = &value[i + host.len()..];
        match rest.strip_prefix(':') {
            Some(p) => {
                p.starts_with(port) && !p[port.len()..].starts_with(|c: char| c.is_ascii_digit())
            }
            // Another host that starts with ours, or ours without a port.
            None => !rest.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-'),
        }
    })
}

impl Dispatcher {
    pub(super) fn on_request(&self, req: Message, flow: Flow, buf: &mut BytesMut) {
        // §16.3 step 1, for what forwarding uses: the transport checked the top Via; the
        // nodes check the rest.
        let complete = [
            HeaderName::CallId,
            HeaderName::From,
            HeaderName::To,
            HeaderName::CSeq,
        ]
        .iter()
        .all(|h| req.has(*h));
        if !complete {
            return self.respond(&req, flow, 400);
        }
        // §16.3 step 3, §16.6 step 3.
        let max_forwards = match req.max_forwards() {
            Some(Ok(0)) => return self.respond(&req, flow, 483),
            Some(Ok(n)) => u32::from(n) - 1,
            Some(Err(_)) => return self.respond(&req, flow, 400),
            None => 70,
        };
        // §16.3 step 4.
        let loop_part = relay::loop_hash(&req);
        if relay::looped(&req, loop_part) {
            return self.respond(&req, flow, 482);
        }
        // A strict router before us (§16.4) is the general path's business.
        if req.uri_str().is_some_and(|u| u.contains(";lr")) {
            return self.on_request_general(req, flow);
        }
        let (pop, token) = match self.top_route(&req) {
            Ok(TopRoute::NotOurs) => (0, None),
            Ok(TopRoute::Ours(t)) => (1, t),
            Err(Some(e)) => {
                tracing::debug!(error = %e, peer = %flow.remote, "flow token refused");
                return self.respond(&req, flow, 403);
            }
            Err(None) => return self.on_request_general(req, flow),
        };
        let hop = match token.filter(|d| !same_flow(d, &flow)) {
            Some(device) => Hop::Device(device),
            None => match self.route_hop(&req, pop) {
                Ok(Some(t)) => Hop::Route(t),
                Ok(None) => match self.pick_node(&req, &flow) {
                    Ok(Some(t)) => Hop::Node(t),
                    Ok(None) => return self.respond(&req, flow, 503),
                    // From a node, routed by its Request-URI.
                    Err(()) => return self.on_request_general(req, flow),
                },
                Err(()) => return self.on_request_general(req, flow),
            },
        };
        let branch = (loop_part, relay::unique_hash(&req));
        self.send(req, flow, hop, pop, max_forwards, branch, buf);
    }

    /// The top Route, when it names us; `Err(Some)` for a token that is not ours, `Err(None)`
    /// when popping it is more than dropping one line (the general path does it).
    fn top_route(&self, req: &Message) -> Result<TopRoute, Option<TokenError>> {
        let Some(top) = req.values(HeaderName::Route).next() else {
            return Ok(TopRoute::NotOurs);
        };
        // Ours only if it spells the host of one of our addresses (the node's Record-Route
        // of an in-dialog request, the common case, does not): no parse needed to tell.
        // IPv6 references have several spellings: those are parsed.
        let might_be_ours =
            top.contains('[') || self.sent_bys.iter().any(|s| spells_address(top, s));
        if !might_be_ours {
            return Ok(TopRoute::NotOurs);
        }
        let Some(uri) = NameAddr::parse(top).ok().and_then(|a| a.sip_uri().cloned()) else {
            return Ok(TopRoute::NotOurs);
        };
        if !self.identity.is_us(&uri) {
            return Ok(TopRoute::NotOurs);
        }
        let next_ours = req
            .values(HeaderName::Route)
            .nth(1)
            .and_then(|v| NameAddr::parse(v).ok())
            .is_some_and(|a| a.sip_uri().is_some_and(|u| self.identity.is_us(u)));
        if next_ours || !relay::single_valued(req, HeaderName::Route, 1) {
            return Err(None);
        }
        match uri.user() {
            Some(user) => self
                .tokens
                .decode(user)
                .map(|f| TopRoute::Ours(Some(f)))
                .map_err(Some),
            None => Ok(TopRoute::Ours(None)),
        }
    }

    /// The next hop by the Route left after popping `pop` values: `Ok(None)` when there is
    /// none; `Err` when it is not an address with `lr` (the general path decides).
    fn route_hop(&self, req: &Message, pop: usize) -> Result<Option<Target>, ()> {
        let Some(next) = req.values(HeaderName::Route).nth(pop) else {
            return Ok(None);
        };
        let addr = NameAddr::parse(next).map_err(|_| ())?;
        let uri = addr.sip_uri().ok_or(())?;
        if !uri.is_lr() {
            return Err(());
        }
        let transport =
            uri.transport()
                .and_then(Transport::from_name)
                .unwrap_or(if uri.is_secure() {
                    Transport::Tls
                } else {
                    Transport::Udp
                });
        let host = uri
            .maddr()
            .unwrap_or(uri.host_str())
            .trim_start_matches('[')
            .trim_end_matches(']');
        let ip: IpAddr = host.parse().map_err(|_| ())?;
        let port = uri.port().unwrap_or(transport.default_port());
        Ok(Some(Target::new(transport, SocketAddr::new(ip, port))))
    }

    /// The node for a request from outside: `Ok(None)` when none is up (503); `Err` for a
    /// request from a node (routed by its Request-URI on the general path).
    fn pick_node(&self, req: &Message, flow: &Flow) -> Result<Option<Target>, ()> {
        let role = if req.method() == Some(Method::Register) {
            Role::Registrar
        } else {
            Role::Proxy
        };
        let call_id = req.call_id().unwrap_or("");
        let mut nodes = self.nodes();
        if nodes.is_node(flow.remote) {
            return Err(());
        }
        Ok(nodes
            .pick(role, call_id, Instant::now())
            .and_then(|id| nodes.target(id).cloned()))
    }

    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        req: Message,
        flow: Flow,
        hop: Hop,
        pop: usize,
        max_forwards: u32,
        branch: (u64, u64),
        buf: &mut BytesMut,
    ) {
        let transport = match &hop {
            Hop::Device(f) => f.transport,
            Hop::Route(t) | Hop::Node(t) => t.transport,
        };
        let local = match &hop {
            Hop::Device(f) => Some(f.local),
            _ => None,
        };
        let iface = match local {
            Some(l) => self.identity.interface_at(transport, l),
            None => self.identity.interface_for(transport),
        };
        let Some(iface) = iface else {
            return self.respond(&req, flow, 503);
        };
        let mut add: Vec<(&str, &str)> = Vec::new();
        let extra = self.added_lines(&req, &flow, &hop, iface.local);
        for (n, v) in &extra {
            add.push((n, v.as_str()));
        }
        let out = relay::write_request(
            buf,
            &req,
            &RequestEdits {
                transport,
                sent_by: &iface.advertised,
                branch,
                max_forwards,
                pop_routes: pop,
                add: &add,
            },
        );
        let sent = match &hop {
            Hop::Device(f) => self.transport.enqueue(Destination::Flow(*f), out, None),
            Hop::Route(t) | Hop::Node(t) => self.transport.enqueue(t.clone(), out, None),
        };
        match (sent, &hop) {
            (Ok(_), Hop::Device(_)) => bump(&self.counters.to_flows),
            (Ok(_), Hop::Route(_)) => bump(&self.counters.relayed),
            (Ok(_), Hop::Node(_)) => bump(&self.counters.dispatched),
            (Err(e), Hop::Device(f)) => {
                // The connection is gone: 430 Flow Failed tells the node to try another
                // binding (RFC 5626 §5.3).
                tracing::debug!(flow = %f, error = %e, "flow failed");
                self.respond(&req, flow, 430);
            }
            (Err(e), _) => {
                tracing::debug!(error = %e, "request not sent");
                bump(&self.counters.dropped);
            }
        }
    }

    /// The lines a forwarded request gains: toward a device, our Record-Route with its token
    /// on dialog-forming requests; a device's REGISTER toward a node, our Path with the
    /// token of its flow and `Require: path` (RFC 3327 §5.2).
    fn added_lines(
        &self,
        req: &Message,
        incoming: &Flow,
        hop: &Hop,
        local: SocketAddr,
    ) -> Vec<(&'static str, String)> {
        match hop {
            Hop::Device(device) if creates_dialog(req) => {
                let rr = self.token_uri(device, device.transport, device.local);
                vec![("Record-Route", format!("<{rr}>"))]
            }
            Hop::Node(node) if self.path && req.method() == Some(Method::Register) => {
                let path = self.token_uri(incoming, node.transport, local);
                let mut v = vec![("Path", format!("<{path}>"))];
                if !req.has_token(HeaderName::Require, "path") {
                    v.push(("Require", "path".to_owned()));
                }
                v
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::spells_address;

    #[test]
    fn addresses_spelled_in_route_values() {
        let us = "192.0.2.1:5060";
        assert!(spells_address("<sip:tok@192.0.2.1:5060;lr;ob>", us));
        assert!(spells_address("<sip:192.0.2.1;lr>", us));
        assert!(!spells_address("<sip:192.0.2.1:5061;lr>", us));
        assert!(!spells_address("<sip:192.0.2.1:50601;lr>", us));
        assert!(!spells_address(
            "<sip:192.0.2.10:5060;lr>",
            "192.0.2.1:5061"
        ));
        assert!(!spells_address("<sip:node.example.com;lr>", us));
    }
}
