//! Random requests and responses through the proxy core: the request side (§16.3 validation,
//! §16.4 Route preprocessing, §16.5 decisions, §16.6 forwarding, stateless ACK and response
//! forwarding) on a datagram from the input, then a response context fed random responses,
//! branch ends, CANCELs and Timer C firings. Never panics; a context sends at most one final
//! response other than 2xx upstream, and none after a 2xx.
#![no_main]
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sip_core::{Flow, Message, Transport};
use sip_stack::proxy::context::{Action, BranchEnd, ResponseContext};
use sip_stack::proxy::{
    Decision, ForkMode, Identity, Interface, ProxyConfig, ProxyCore, ProxyTarget, Routed, Step,
};

const STATUSES: [u16; 16] = [
    100, 180, 183, 200, 202, 301, 401, 404, 407, 408, 486, 487, 500, 503, 600, 603,
];

fn core() -> ProxyCore {
    let identity = Identity::new(
        vec![
            Interface::new(Transport::Udp, "192.0.2.1:5060".parse().unwrap()),
            Interface::new(Transport::Tcp, "192.0.2.1:5060".parse().unwrap()),
        ],
        vec!["example.com".into()],
    );
    ProxyCore::new(ProxyConfig::new(identity))
}

fn flow() -> Flow {
    Flow {
        transport: Transport::Udp,
        local: "192.0.2.1:5060".parse().unwrap(),
        remote: "192.0.2.9:5060".parse().unwrap(),
    }
}

const INVITE: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKa\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\n\
Call-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";

fuzz_target!(|data: &[u8]| {
    let (&ctl, rest) = match data.split_first() {
        Some(x) => x,
        None => return,
    };
    let split = rest.len().min(usize::from(ctl) * 8);
    let (datagram, ops) = rest.split_at(split);
    let core = core();
    let f = flow();

    // The request side on whatever the datagram is.
    if let Ok(msg) = Message::parse(bytes::Bytes::copy_from_slice(datagram)) {
        if msg.is_request() {
            let _ = core.forward_stateless(msg.clone(), &f);
            match core.receive(msg, &f) {
                Step::Forward(req, target) => {
                    let _ = core.forward(&req, Some(&f), &target, 0);
                }
                Step::Route(req) => {
                    let decision = match ctl % 4 {
                        0 => Decision::respond(404),
                        1 => Decision::Redirect { contacts: vec!["<sip:x@192.0.2.5>".into()] },
                        _ => Decision::Forward {
                            targets: vec![
                                ProxyTarget::uri("sip:bob@192.0.2.20:5062"),
                                ProxyTarget::uri(req.uri_str().unwrap_or("sip:x@y")),
                            ],
                            mode: if ctl & 1 == 0 { ForkMode::Parallel } else { ForkMode::Sequential },
                        },
                    };
                    if let Routed::Fork(groups) = core.decide(&req, decision) {
                        for (i, t) in groups.iter().flatten().enumerate() {
                            let _ = core.forward(&req, Some(&f), t, i);
                        }
                    }
                }
                Step::Respond(_) | Step::Drop => {}
            }
        } else {
            let _ = core.forward_response(msg);
        }
    }

    // A response context driven by the remaining bytes.
    let Ok(invite) = Message::parse(INVITE) else { return };
    let t0 = Instant::now();
    let mut now = t0;
    let mut ctx = ResponseContext::new(&invite, Some(Duration::from_secs(180)));
    let branches = 1 + usize::from(ctl % 4);
    for _ in 0..branches {
        ctx.add_branch(now);
    }
    let mut finals = 0;
    let mut ok_sent = false;
    let mut check = |actions: Vec<Action>, ctx: &mut ResponseContext, now: Instant| {
        for a in actions {
            match a {
                Action::Upstream(m) => {
                    let s = m.status().unwrap_or(0);
                    if (200..300).contains(&s) {
                        ok_sent = true;
                    } else if s >= 300 {
                        assert!(!ok_sent, "a final after a 2xx");
                        finals += 1;
                        assert!(finals <= 1, "two non-2xx finals");
                    }
                }
                Action::Fork(targets) => {
                    for _ in targets {
                        ctx.add_branch(now);
                    }
                }
                Action::Cancel(_) | Action::Abandon(_) => {}
            }
        }
    };
    for pair in ops.chunks(2) {
        let op = pair[0];
        let arg = pair.get(1).copied().unwrap_or(0);
        let branch = usize::from(arg) % (ctx.branch_count() + 1);
        let actions = match op % 5 {
            0 | 1 => {
                let status = STATUSES[usize::from(arg) % STATUSES.len()];
                let mut req = invite.clone();
                let _ = req.push_via(&format!("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKsp.{branch}"));
                match req.response(status).to_tag("t").build() {
                    Ok(r) => ctx.on_response(&invite, branch, r, now),
                    Err(_) => Vec::new(),
                }
            }
            2 => ctx.on_branch_ended(
                &invite,
                branch,
                if arg & 1 == 0 { BranchEnd::Timeout } else { BranchEnd::TransportError },
            ),
            3 => ctx.on_cancel(&invite),
            _ => {
                now += Duration::from_secs(u64::from(arg));
                ctx.handle_timeout(&invite, now).0
            }
        };
        check(actions, &mut ctx, now);
    }
});
