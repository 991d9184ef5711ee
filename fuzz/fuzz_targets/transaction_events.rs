//! Random sequences of messages, TU actions, transport errors and timer firings, derived from
//! the input bytes, against one transaction layer: never panics, never terminates a
//! transaction twice, and every transaction ends once time runs on (the table empties).
#![no_main]
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sip_core::builder::RequestBuilder;
use sip_core::{Flow, Message, Method, Target, Transport};
use sip_transaction::{Config, Event, TransactionKey, TransactionLayer};

const METHODS: [Method<'static>; 6] = [
    Method::Invite,
    Method::Ack,
    Method::Cancel,
    Method::Options,
    Method::Bye,
    Method::Register,
];
const STATUSES: [u16; 12] = [100, 180, 183, 200, 202, 301, 404, 408, 486, 487, 500, 603];
const TRANSPORTS: [Transport; 3] = [Transport::Udp, Transport::Tcp, Transport::Tls];

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 1], port))
}

fn flow(t: Transport) -> Flow {
    Flow {
        transport: t,
        local: addr(5060),
        remote: addr(5062),
    }
}

fn request(
    method: Method<'_>,
    branch: &str,
    to_tag: bool,
    seq: u8,
    t: Transport,
) -> Option<Message> {
    RequestBuilder::new(method, "sip:bob@example.com")
        .header("Via", format!("SIP/2.0/{t} 192.0.2.1:5062;branch={branch}"))
        .header("Route", "<sip:p.example.com;lr>")
        .header("From", "<sip:alice@example.com>;tag=a1")
        .header(
            "To",
            if to_tag {
                "<sip:bob@example.com>;tag=b9"
            } else {
                "<sip:bob@example.com>"
            },
        )
        .header("Call-ID", "fuzz")
        .header("CSeq", format!("{seq} {}", method.as_str()))
        .build()
        .ok()
}

struct World {
    layer: TransactionLayer,
    now: Instant,
    keys: Vec<(TransactionKey, Option<Message>)>,
    ended: HashSet<TransactionKey>,
}

impl World {
    fn drain(&mut self) {
        while self.layer.poll_transmit().is_some() {}
        while let Some(e) = self.layer.poll_event() {
            match e {
                Event::Request(r) => self.keys.push((r.key, Some(r.request))),
                Event::Cancel { cancel, .. } => self.keys.push((cancel.key, Some(cancel.request))),
                Event::Terminated { key, .. } => {
                    assert!(self.ended.insert(key), "{key} terminated twice");
                    assert!(self.layer.state(key).is_none());
                }
                _ => {}
            }
        }
        if self.keys.len() > 256 {
            self.keys.drain(..128);
        }
    }

    fn pick(&self, b: u8) -> Option<(TransactionKey, Option<Message>)> {
        if self.keys.is_empty() {
            return None;
        }
        self.keys.get(b as usize % self.keys.len()).cloned()
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        while let Some(at) = self.layer.poll_timeout() {
            if at > self.now {
                break;
            }
            self.layer.handle_timeout(self.now);
            self.drain();
        }
    }

    fn step(&mut self, input: &mut Input<'_>) -> Option<()> {
        let op = input.byte()?;
        let a = input.byte()?;
        let b = input.byte()?;
        let now = self.now;
        let t = TRANSPORTS[(a >> 6) as usize % 3];
        let method = METHODS[a as usize % METHODS.len()];
        let cookie = b & 0x80 == 0;
        let branch = if cookie {
            format!("z9hG4bK{}", b & 7)
        } else {
            format!("{}", b & 7)
        };
        match op % 9 {
            0 => {
                if let Some(m) = request(method, &branch, false, b >> 4, t) {
                    let target = Target::new(t, addr(5062));
                    if let Ok(k) = self.layer.send_request(now, m.clone(), target) {
                        self.keys.push((k, Some(m)));
                    }
                }
            }
            1 => {
                if let Some(m) = request(method, &branch, b & 0x40 != 0, b >> 4 & 3, t) {
                    let _ = self.layer.handle_message(now, m, flow(t));
                }
            }
            2 => {
                let status = STATUSES[(b >> 3) as usize % STATUSES.len()];
                if let Some(m) = request(method, &branch, false, b >> 4, t) {
                    if let Ok(r) = m.response(status).to_tag("b9").build() {
                        let _ = self.layer.handle_message(now, r, flow(t));
                    }
                }
            }
            3 => {
                if let Some((k, Some(req))) = self.pick(a) {
                    let status = STATUSES[b as usize % STATUSES.len()];
                    if let Ok(r) = req.response(status).to_tag("b9").build() {
                        let _ = self.layer.respond(now, k, r);
                    }
                }
            }
            4 => {
                if let Some((k, _)) = self.pick(a) {
                    if let Ok(c) = self.layer.build_cancel(k) {
                        let _ = self.layer.send_request(now, c, Target::new(t, addr(5062)));
                    }
                }
            }
            5 => self.advance(Duration::from_millis(u64::from(a) * u64::from(b) * 4)),
            6 => {
                if let Some((k, _)) = self.pick(a) {
                    if b & 1 == 0 {
                        self.layer.handle_transport_error(now, k);
                    } else {
                        self.layer.abort(k);
                    }
                }
            }
            7 => {
                let raw = input.bytes(usize::from(a)).to_vec();
                if let Ok(m) = Message::parse(raw) {
                    let _ = self.layer.handle_message(now, m, flow(t));
                }
            }
            _ => self.advance(Duration::from_millis(u64::from(a))),
        }
        self.drain();
        assert_eq!(self.layer.state_counts().total(), self.layer.len());
        Some(())
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let config = match input.byte() {
        Some(c) => Config::default()
            .with_max_transactions(usize::from(c % 16) + 1)
            .with_t1(Duration::from_millis(u64::from(c % 4) * 200 + 100)),
        None => return,
    };
    let mut w = World {
        layer: TransactionLayer::new(config),
        now: Instant::now(),
        keys: Vec::new(),
        ended: HashSet::new(),
    };
    while w.step(&mut input).is_some() {}
    for _ in 0..100_000 {
        match w.layer.poll_timeout() {
            Some(at) => {
                w.now = w.now.max(at);
                w.layer.handle_timeout(w.now);
                w.drain();
            }
            None => break,
        }
    }
    assert!(
        w.layer.is_empty(),
        "{} transactions never terminate",
        w.layer.len()
    );
    let s = w.layer.stats();
    assert_eq!(s.created.iter().sum::<u64>(), s.terminated);
});
