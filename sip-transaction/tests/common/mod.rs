//! Shared fixtures: messages, flows, and a driver loop with injected time.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sip_core::builder::RequestBuilder;
use sip_core::{Flow, HeaderName, Message, Method, Target, Transport};
use sip_transaction::{Event, TerminationReason, TransactionKey, TransactionLayer, Transmit};

pub const LOCAL: &str = "192.0.2.1:5060";
pub const REMOTE: &str = "192.0.2.2:5060";

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub fn flow(t: Transport) -> Flow {
    Flow {
        transport: t,
        local: addr(LOCAL),
        remote: addr(REMOTE),
    }
}

pub fn target(t: Transport) -> Target {
    Target::new(t, addr(REMOTE))
}

/// A request as a UAC at `sent_by` would send it, with a Route header set.
pub fn request_from(method: Method<'_>, branch: &str, sent_by: &str, t: Transport) -> Message {
    let call_id = format!("call-{branch}");
    RequestBuilder::new(method, "sip:bob@example.com")
        .header("Via", format!("SIP/2.0/{t} {sent_by};branch={branch}"))
        .header("Route", "<sip:p1.example.com;lr>")
        .header("Route", "<sip:p2.example.com;lr>")
        .header("From", "\"Alice\" <sip:alice@example.com>;tag=a1")
        .header("To", "<sip:bob@example.com>")
        .header("Call-ID", call_id)
        .header("CSeq", format!("7 {}", method.as_str()))
        .header("Contact", "<sip:alice@192.0.2.1>")
        .build()
        .unwrap()
}

pub fn request(method: Method<'_>, branch: &str, t: Transport) -> Message {
    request_from(method, branch, "192.0.2.1:5060", t)
}

/// The response a UAS would send to `req`.
pub fn response(req: &Message, status: u16) -> Message {
    req.response(status).to_tag("b9").build().unwrap()
}

pub fn drain_tx(layer: &mut TransactionLayer) -> Vec<Transmit> {
    std::iter::from_fn(|| layer.poll_transmit()).collect()
}

pub fn drain_ev(layer: &mut TransactionLayer) -> Vec<Event> {
    std::iter::from_fn(|| layer.poll_event()).collect()
}

/// Outputs with the instant they happened at.
pub type Timed<T> = Vec<(Instant, T)>;

/// Fires timers up to and including `until`; returns every transmit and event with the
/// instant it happened at.
pub fn run_until(layer: &mut TransactionLayer, until: Instant) -> (Timed<Transmit>, Timed<Event>) {
    let mut tx = Vec::new();
    let mut ev = Vec::new();
    while let Some(at) = layer.poll_timeout() {
        if at > until {
            break;
        }
        layer.handle_timeout(at);
        tx.extend(drain_tx(layer).into_iter().map(|t| (at, t)));
        ev.extend(drain_ev(layer).into_iter().map(|e| (at, e)));
    }
    (tx, ev)
}

/// Offsets from `t0` in milliseconds.
pub fn offsets<T>(t0: Instant, v: &[(Instant, T)]) -> Vec<u64> {
    v.iter()
        .map(|(at, _)| at.duration_since(t0).as_millis() as u64)
        .collect()
}

pub fn parse(t: &Transmit) -> Message {
    Message::parse(t.payload.clone()).unwrap()
}

pub fn status_of(t: &Transmit) -> Option<u16> {
    parse(t).status()
}

pub fn method_of(t: &Transmit) -> String {
    parse(t)
        .method()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default()
}

/// The one Terminated event of `key` among `ev`, with its instant.
pub fn terminated(
    ev: &[(Instant, Event)],
    key: TransactionKey,
) -> Option<(Instant, TerminationReason)> {
    ev.iter().find_map(|(at, e)| match e {
        Event::Terminated { key: k, reason } if *k == key => Some((*at, *reason)),
        _ => None,
    })
}

pub fn response_statuses(ev: &[Event]) -> Vec<u16> {
    ev.iter()
        .filter_map(|e| match e {
            Event::Response { response, .. } => response.status(),
            _ => None,
        })
        .collect()
}

/// The key of the first Request event.
pub fn new_request_key(ev: &[Event]) -> TransactionKey {
    ev.iter()
        .find_map(|e| match e {
            Event::Request(r) => Some(r.key),
            _ => None,
        })
        .expect("a Request event")
}

pub fn header(m: &Message, name: HeaderName) -> String {
    m.header(name).unwrap_or_default().to_owned()
}
