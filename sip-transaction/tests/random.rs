//! Random sequences of messages, timer firings and TU actions: the layer never panics, never
//! reports a transaction twice as terminated, and every transaction ends once time runs on.

mod common;

use std::collections::HashSet;
use std::time::Instant;

use common::*;
use proptest::prelude::*;
use sip_core::builder::RequestBuilder;
use sip_core::{Message, Method, Transport};
use sip_transaction::{Config, Event, TransactionKey, TransactionLayer};

const METHODS: [Method<'static>; 5] = [
    Method::Invite,
    Method::Ack,
    Method::Cancel,
    Method::Options,
    Method::Bye,
];
const STATUSES: [u16; 11] = [100, 180, 183, 200, 202, 301, 404, 486, 487, 500, 603];
const TRANSPORTS: [Transport; 3] = [Transport::Udp, Transport::Tcp, Transport::Tls];

#[derive(Debug, Clone)]
enum Op {
    Send {
        method: usize,
        branch: u8,
        transport: usize,
    },
    Request {
        method: usize,
        branch: u8,
        transport: usize,
        cookie: bool,
        to_tag: bool,
    },
    Response {
        status: usize,
        branch: u8,
        method: usize,
    },
    Respond {
        which: usize,
        status: usize,
    },
    Cancel {
        which: usize,
    },
    Advance {
        ms: u32,
    },
    TransportError {
        which: usize,
    },
    Abort {
        which: usize,
    },
    Raw(Vec<u8>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..5usize, 0..6u8, 0..3usize).prop_map(|(method, branch, transport)| Op::Send {
            method,
            branch,
            transport
        }),
        (0..5usize, 0..6u8, 0..3usize, any::<bool>(), any::<bool>()).prop_map(
            |(method, branch, transport, cookie, to_tag)| Op::Request {
                method,
                branch,
                transport,
                cookie,
                to_tag
            }
        ),
        (0..11usize, 0..6u8, 0..5usize).prop_map(|(status, branch, method)| Op::Response {
            status,
            branch,
            method
        }),
        (0..16usize, 0..11usize).prop_map(|(which, status)| Op::Respond { which, status }),
        (0..16usize).prop_map(|which| Op::Cancel { which }),
        prop_oneof![0..300u32, 0..5_000u32, 0..200_000u32].prop_map(|ms| Op::Advance { ms }),
        (0..16usize).prop_map(|which| Op::TransportError { which }),
        (0..16usize).prop_map(|which| Op::Abort { which }),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Op::Raw),
    ]
}

fn message(method: Method<'_>, branch: &str, cookie: bool, to_tag: bool, t: Transport) -> Message {
    let b = if cookie {
        format!("z9hG4bK{branch}")
    } else {
        branch.to_owned()
    };
    RequestBuilder::new(method, "sip:bob@example.com")
        .header("Via", format!("SIP/2.0/{t} 192.0.2.1:5060;branch={b}"))
        .header("From", "<sip:alice@example.com>;tag=a1")
        .header(
            "To",
            if to_tag {
                "<sip:bob@example.com>;tag=b9"
            } else {
                "<sip:bob@example.com>"
            },
        )
        .header("Call-ID", "fuzz-call")
        .header("CSeq", format!("1 {}", method.as_str()))
        .build()
        .unwrap()
}

struct World {
    layer: TransactionLayer,
    now: Instant,
    keys: Vec<TransactionKey>,
    requests: Vec<Message>,
    ended: HashSet<TransactionKey>,
}

impl World {
    fn drain(&mut self) {
        while self.layer.poll_transmit().is_some() {}
        while let Some(e) = self.layer.poll_event() {
            match e {
                Event::Request(r) => {
                    self.keys.push(r.key);
                    self.requests.push(r.request);
                }
                Event::Cancel { cancel, .. } => {
                    self.keys.push(cancel.key);
                    self.requests.push(cancel.request);
                }
                Event::Terminated { key, .. } => {
                    assert!(self.ended.insert(key), "{key} terminated twice");
                    assert!(self.layer.state(key).is_none());
                }
                _ => {}
            }
        }
    }

    fn pick(&self, which: usize) -> Option<(TransactionKey, Option<&Message>)> {
        if self.keys.is_empty() {
            return None;
        }
        let i = which % self.keys.len();
        Some((self.keys[i], self.requests.get(i)))
    }

    fn apply(&mut self, op: Op) {
        let now = self.now;
        match op {
            Op::Send {
                method,
                branch,
                transport,
            } => {
                let t = TRANSPORTS[transport];
                let m = message(METHODS[method], &format!("c{branch}"), true, false, t);
                if let Ok(k) = self.layer.send_request(now, m.clone(), target(t)) {
                    self.keys.push(k);
                    self.requests.push(m);
                }
            }
            Op::Request {
                method,
                branch,
                transport,
                cookie,
                to_tag,
            } => {
                let t = TRANSPORTS[transport];
                let m = message(METHODS[method], &format!("s{branch}"), cookie, to_tag, t);
                let _ = self.layer.handle_message(now, m, flow(t));
            }
            Op::Response {
                status,
                branch,
                method,
            } => {
                let m = message(
                    METHODS[method],
                    &format!("c{branch}"),
                    true,
                    false,
                    Transport::Udp,
                );
                if let Ok(r) = m.response(STATUSES[status]).to_tag("b9").build() {
                    let _ = self.layer.handle_message(now, r, flow(Transport::Udp));
                }
            }
            Op::Respond { which, status } => {
                if let Some((k, Some(req))) = self.pick(which) {
                    if let Ok(r) = req.response(STATUSES[status]).to_tag("b9").build() {
                        let _ = self.layer.respond(now, k, r);
                    }
                }
            }
            Op::Cancel { which } => {
                if let Some((k, _)) = self.pick(which) {
                    if let Ok(c) = self.layer.build_cancel(k) {
                        let _ = self.layer.send_request(now, c, target(Transport::Udp));
                    }
                }
            }
            Op::Advance { ms: d } => {
                self.now += ms(d as u64);
                while let Some(at) = self.layer.poll_timeout() {
                    if at > self.now {
                        break;
                    }
                    self.layer.handle_timeout(self.now);
                    self.drain();
                }
            }
            Op::TransportError { which } => {
                if let Some((k, _)) = self.pick(which) {
                    self.layer.handle_transport_error(now, k);
                }
            }
            Op::Abort { which } => {
                if let Some((k, _)) = self.pick(which) {
                    self.layer.abort(k);
                }
            }
            Op::Raw(bytes) => {
                if let Ok(m) = Message::parse(bytes) {
                    let _ = self.layer.handle_message(now, m, flow(Transport::Udp));
                }
            }
        }
        self.drain();
    }

    /// Runs every timer to the end; returns whether the table emptied.
    fn run_out(&mut self) -> bool {
        for _ in 0..100_000 {
            match self.layer.poll_timeout() {
                Some(at) => {
                    self.now = self.now.max(at);
                    self.layer.handle_timeout(self.now);
                    self.drain();
                }
                None => break,
            }
        }
        self.layer.is_empty()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn random_event_sequences_never_panic_and_always_drain(
        ops in proptest::collection::vec(op(), 0..80),
        small in any::<bool>(),
    ) {
        let config = if small { Config::default().with_max_transactions(4) } else { Config::default() };
        let mut w = World {
            layer: TransactionLayer::new(config),
            now: Instant::now(),
            keys: Vec::new(),
            requests: Vec::new(),
            ended: HashSet::new(),
        };
        for op in ops {
            w.apply(op);
            prop_assert_eq!(w.layer.state_counts().total(), w.layer.len());
        }
        prop_assert!(w.run_out(), "{} transactions left", w.layer.len());
        prop_assert_eq!(w.layer.poll_timeout(), None);
        let created: u64 = w.layer.stats().created.iter().sum();
        prop_assert_eq!(created, w.layer.stats().terminated);
    }
}
