//! RFC 3261 §16.11: stateless forwarding. Used for responses that match no response context
//! (§16.7 step 1 leaves them to the stateless rules), the ACK of a 2xx (a new transaction
//! end to end), and by a stateless front-end for every request.

use std::net::{IpAddr, SocketAddr};

use sip_core::{Flow, Message, Transport};

use super::branch;
use super::forward::{forward, ForwardError, ForwardOptions, Forwarded};
use super::identity::Identity;
use super::target::ProxyTarget;

/// Where a response goes upstream (RFC 3261 §18.2.2 on the next Via).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseHop {
    /// A resolved address (`received`/`rport`, or a numeric sent-by).
    Address(Transport, SocketAddr),
    /// A sent-by host name to resolve, with its port.
    Name(Transport, String, u16),
}

/// Why a response is not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DropReason {
    /// The top Via is not ours (§16.7 step 3 / §16.11).
    #[error("top Via is not ours")]
    NotOurs,
    /// No Via below ours: the response was for us.
    #[error("response for the proxy itself")]
    ForUs,
    /// A Via does not parse.
    #[error("malformed Via")]
    BadVia,
}

/// Forwards a response statelessly: our Via removed, the next one says where (§16.11,
/// §18.2.2). The response is returned with the hop.
pub fn forward_response(
    mut resp: Message,
    id: &Identity,
) -> Result<(Message, ResponseHop), DropReason> {
    {
        let top = resp.via().map_err(|_| DropReason::BadVia)?;
        let t = Transport::from_name(top.transport()).unwrap_or(Transport::Udp);
        if !id.is_our_sent_by(top.host_str(), top.sent_by_port(), t) {
            return Err(DropReason::NotOurs);
        }
    }
    resp.remove_top(sip_core::HeaderName::Via);
    let hop = upstream_hop(&resp)?;
    Ok((resp, hop))
}

/// Where a response whose top Via is the upstream element's goes (§18.2.2: `received` and
/// `rport`, else the sent-by).
pub fn upstream_hop(resp: &Message) -> Result<ResponseHop, DropReason> {
    let next = match resp.via() {
        Ok(v) => v,
        Err(_) if resp.values(sip_core::HeaderName::Via).next().is_none() => {
            return Err(DropReason::ForUs)
        }
        Err(_) => return Err(DropReason::BadVia),
    };
    let transport = Transport::from_name(next.transport()).unwrap_or(Transport::Udp);
    let port = next
        .rport()
        .flatten()
        .or(next.sent_by_port())
        .unwrap_or(transport.default_port());
    let host = next
        .host_str()
        .trim_start_matches('[')
        .trim_end_matches(']');
    Ok(
        match next.received_addr().or_else(|| host.parse::<IpAddr>().ok()) {
            Some(ip) => ResponseHop::Address(transport, SocketAddr::new(ip, port)),
            None => ResponseHop::Name(transport, host.to_owned(), port),
        },
    )
}

/// Forwards a request statelessly (a 2xx ACK, or anything in a stateless front-end) to one
/// target, with a branch computed from the request so that a retransmission gets the same
/// one (§16.11).
pub fn forward_request(
    received: &Message,
    incoming: Option<&Flow>,
    target: &ProxyTarget,
    id: &Identity,
    opts: &ForwardOptions,
) -> Result<Forwarded, ForwardError> {
    let b = branch::branch(received, 0);
    forward(received, incoming, target, &b, id, opts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::identity::Interface;

    fn id() -> Identity {
        Identity::new(
            vec![Interface::new(
                Transport::Udp,
                "192.0.2.1:5060".parse().unwrap(),
            )],
            vec!["example.com".into()],
        )
    }

    fn response(vias: &str) -> Message {
        Message::parse(
            format!(
                "SIP/2.0 200 OK\r\n{vias}From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\n\
                 Call-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
            )
            .into_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn response_goes_to_received_rport() {
        let r = response(
            "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKsp.1\r\n\
             Via: SIP/2.0/UDP 10.0.0.9:5070;rport=40000;received=203.0.113.9;branch=z9hG4bKa\r\n",
        );
        let (m, hop) = forward_response(r, &id()).unwrap();
        assert_eq!(m.values(sip_core::HeaderName::Via).count(), 1);
        assert_eq!(
            hop,
            ResponseHop::Address(Transport::Udp, "203.0.113.9:40000".parse().unwrap())
        );
        let r = response(
            "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKsp.1\r\nVia: SIP/2.0/TCP ua.example.org;branch=z9hG4bKa\r\n",
        );
        assert_eq!(
            forward_response(r, &id()).unwrap().1,
            ResponseHop::Name(Transport::Tcp, "ua.example.org".into(), 5060)
        );
    }

    #[test]
    fn responses_not_ours_or_for_us_dropped() {
        let r = response(
            "Via: SIP/2.0/UDP 192.0.2.77;branch=z9hG4bKx\r\nVia: SIP/2.0/UDP a;branch=z9hG4bKa\r\n",
        );
        assert_eq!(forward_response(r, &id()).unwrap_err(), DropReason::NotOurs);
        let r = response("Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\n");
        assert_eq!(forward_response(r, &id()).unwrap_err(), DropReason::ForUs);
    }

    #[test]
    fn stateless_branch_is_stable() {
        let ack = Message::parse(
            &b"ACK sip:bob@192.0.2.20 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKack1\r\n\
               Max-Forwards: 70\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\n\
               Call-ID: c\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"[..],
        )
        .unwrap();
        let t = ProxyTarget::uri("sip:bob@192.0.2.20");
        let o = ForwardOptions::default();
        let a = forward_request(&ack, None, &t, &id(), &o).unwrap();
        let b = forward_request(&ack, None, &t, &id(), &o).unwrap();
        assert_eq!(
            a.request.via().unwrap().branch(),
            b.request.via().unwrap().branch()
        );
        assert_eq!(
            a.request.header(sip_core::HeaderName::MaxForwards),
            Some("69")
        );
    }
}
