//! The event-package parse paths on any input: the Event header (RFC 6665 §8.2.1),
//! Subscription-State (§8.2.3), a PIDF document (RFC 3863), and a whole message taken as a
//! NOTIFY by a subscriber and as a SUBSCRIBE by a notifier. Never panics; what parses
//! re-serialises to something that parses to the same value.
#![no_main]
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use sip_core::Message;
use sip_dialog::subscription::{EventKey, Notifier, NotifierConfig, SubState, Subscriber};
use sip_stack::events::pidf::Pidf;

const SUBSCRIBE: &[u8] = b"SUBSCRIBE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKsub1\r\n\
From: <sip:alice@example.com>;tag=atag\r\nTo: <sip:bob@example.com>\r\n\
Call-ID: sub-1@192.0.2.1\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:alice@192.0.2.1:5060>\r\n\
Event: presence\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n";

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Some(k) = EventKey::parse(s) {
            let again = EventKey::parse(&k.header_value()).expect("a written Event parses");
            assert_eq!(again, k);
        }
        if let Some((state, expires)) = SubState::parse(s) {
            let written = state.header_value(expires.unwrap_or(0));
            let (again, _) = SubState::parse(&written).expect("a written state parses");
            assert_eq!(again, state);
        }
    }
    if let Ok(p) = Pidf::parse(data) {
        let xml = p.to_xml();
        let again = Pidf::parse(xml.as_bytes()).expect("a written PIDF parses");
        assert_eq!(again, p);
    }
    if let Ok(msg) = Message::parse(data.to_vec()) {
        let now = Instant::now();
        let sub = Message::parse(SUBSCRIBE).expect("the fixed SUBSCRIBE parses");
        if let Ok(mut s) = Subscriber::new(sub, "sip:alice@192.0.2.1:5060", 4) {
            let _ = s.on_notify(now, &msg);
            let _ = s.on_response(now, &msg);
            let _ = s.refresh(now, || "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKr".to_owned());
        }
        if let Ok((mut n, _)) = Notifier::accept(
            now,
            &msg,
            "ntag",
            "sip:ps@192.0.2.9",
            false,
            NotifierConfig::default(),
        ) {
            let _ = n.notify_empty();
            let _ = n.poll_notify(now, "SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKn");
            let _ = n.on_subscribe(now, &msg);
        }
    }
});
