//! The request-side driver of the core: §16.3 → §16.4 → the step to take.

use super::*;
use sip_core::Transport;

fn core() -> ProxyCore {
    let identity = Identity::new(
        vec![Interface::new(
            Transport::Udp,
            "192.0.2.1:5060".parse().unwrap(),
        )],
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

fn req(method: &str, ruri: &str, extra: &str, to_tag: bool) -> Message {
    let tag = if to_tag { ";tag=2" } else { "" };
    Message::parse(
        format!(
            "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKa\r\n{extra}\
             From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>{tag}\r\n\
             Call-ID: c1\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes(),
    )
    .unwrap()
}

#[test]
fn steps() {
    let c = core();
    // New request for our domain: the router decides.
    assert!(matches!(
        c.receive(
            req(
                "INVITE",
                "sip:bob@example.com",
                "Max-Forwards: 70\r\n",
                false
            ),
            &flow()
        ),
        Step::Route(_)
    ));
    // Max-Forwards 0: 483, and OPTIONS answered 200.
    let Step::Respond(r) = c.receive(
        req(
            "INVITE",
            "sip:bob@example.com",
            "Max-Forwards: 0\r\n",
            false,
        ),
        &flow(),
    ) else {
        panic!()
    };
    assert_eq!(r.status(), Some(483));
    let Step::Respond(r) = c.receive(
        req(
            "OPTIONS",
            "sip:bob@example.com",
            "Max-Forwards: 0\r\n",
            false,
        ),
        &flow(),
    ) else {
        panic!()
    };
    assert_eq!(r.status(), Some(200));
    // An ACK refused is dropped, not answered.
    assert!(matches!(
        c.receive(
            req("ACK", "sip:bob@example.com", "Max-Forwards: 0\r\n", true),
            &flow()
        ),
        Step::Drop
    ));
    // In dialog, to a foreign contact, without Route: loose-routed.
    let Step::Forward(_, t) = c.receive(req("BYE", "sip:bob@192.0.2.20:5062", "", true), &flow())
    else {
        panic!()
    };
    assert_eq!(t.uri, "sip:bob@192.0.2.20:5062");
    // A Route set beyond us: forwarded along it.
    let Step::Forward(r, _) = c.receive(
        req(
            "INVITE",
            "sip:carol@example.org",
            "Route: <sip:192.0.2.1;lr>, <sip:198.51.100.7;lr>\r\n",
            false,
        ),
        &flow(),
    ) else {
        panic!()
    };
    assert_eq!(r.header(HeaderName::Route), Some("<sip:198.51.100.7;lr>"));
}

#[test]
fn decisions() {
    let c = core();
    let r = req("INVITE", "sip:bob@example.com", "", false);
    let respond = |req: &Message, d| match c.decide(req, d) {
        Routed::Respond(m) => m,
        Routed::Fork(g) => panic!("forked {g:?}"),
    };
    assert_eq!(respond(&r, Decision::respond(404)).status(), Some(404));
    let none = Decision::Forward {
        targets: vec![],
        mode: ForkMode::Parallel,
    };
    assert_eq!(respond(&r, none).status(), Some(480));
    let redirect = respond(
        &r,
        Decision::Redirect {
            contacts: vec!["<sip:bob@192.0.2.30>".into()],
        },
    );
    assert_eq!(redirect.status(), Some(302));
    assert_eq!(
        redirect.header(HeaderName::Contact),
        Some("<sip:bob@192.0.2.30>")
    );
    let many: Vec<ProxyTarget> = (0..40)
        .map(|i| ProxyTarget::uri(format!("sip:b@10.0.0.{i}")))
        .collect();
    let forked = c.decide(
        &r,
        Decision::Forward {
            targets: many,
            mode: ForkMode::Parallel,
        },
    );
    let Routed::Fork(groups) = forked else {
        panic!()
    };
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].len(), 16);
    let opts = req("OPTIONS", "sip:192.0.2.1", "", false);
    let ok = respond(&opts, Decision::respond(200));
    assert_eq!(ok.status(), Some(200));
    assert!(ok.header(HeaderName::Allow).is_some());
}

#[test]
fn ack_forwarded_statelessly_and_stray_responses() {
    let c = core();
    let ack = req(
        "ACK",
        "sip:bob@192.0.2.20:5062",
        "Route: <sip:192.0.2.1;lr>\r\nMax-Forwards: 70\r\n",
        true,
    );
    let f = c.forward_stateless(ack, &flow()).unwrap();
    assert_eq!(f.request.count(HeaderName::Route), 0);
    assert!(f
        .request
        .via()
        .unwrap()
        .branch()
        .unwrap()
        .starts_with(branch::PREFIX));
    // An ACK for our own domain cannot be routed without the router: dropped.
    assert!(c
        .forward_stateless(req("ACK", "sip:bob@example.com", "", true), &flow())
        .is_none());
    // A response whose top Via is ours goes to the next Via.
    let mut sent = req("INVITE", "sip:bob@192.0.2.20", "", false);
    sent.push_via("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKsp.1.2")
        .unwrap();
    let resp = Message::parse(sent.response(200).build().unwrap().to_bytes()).unwrap();
    let (m, hop) = c.forward_response(resp).unwrap();
    assert_eq!(m.values(HeaderName::Via).count(), 1);
    assert_eq!(
        hop,
        stateless::ResponseHop::Address(Transport::Udp, "192.0.2.9:5060".parse().unwrap())
    );
}
