//! The event server's view of registrations ([`EventServer::set_registered`]) and how it
//! composes with publications.

use std::sync::Arc;

use sip_core::Transport;
use sip_dialog::publication::PublishRequest;

use super::*;
use crate::events::pidf::{Basic, Pidf};
use crate::events::{ImPackage, PresencePackage};
use crate::proxy::Interface;

const BOB: &str = "sip:bob@example.com";

async fn server() -> Arc<EventServer> {
    let ep = Endpoint::builder()
        .udp("127.0.0.14:0".parse().unwrap())
        .build()
        .await
        .unwrap();
    let interfaces = vec![Interface::new(
        Transport::Udp,
        ep.local_addr(Transport::Udp).unwrap(),
    )];
    let identity = Identity::new(interfaces, vec!["example.com".into()]);
    EventServer::new(
        ep,
        identity,
        "example.com",
        vec![
            Arc::new(PresencePackage::default()),
            Arc::new(ImPackage::default()),
        ],
        EventConfig::default(),
    )
}

/// Bob's presence as a watcher would get it now.
fn presence(s: &EventServer) -> Pidf {
    let g = lock(&s.inner);
    let c = s.compose_state(&g, 0, BOB).unwrap();
    Pidf::parse(&c.body).unwrap()
}

#[tokio::test]
async fn registrations_make_presence_until_the_last_binding_goes() {
    let s = server().await;
    assert_eq!(presence(&s).basic(), Basic::Closed);
    let (c1, c2) = ("sip:bob@192.0.2.1:5060", "sip:bob@192.0.2.2:5060");
    // No watcher: nobody to notify, but the state is kept (sorted, without duplicates).
    assert_eq!(
        s.set_registered(BOB, vec![c2.into(), c1.into(), c2.into()]),
        0
    );
    let doc = presence(&s);
    assert_eq!(doc.basic(), Basic::Open);
    let contacts: Vec<_> = doc.tuples.iter().map(|t| t.contact.as_deref()).collect();
    assert_eq!(contacts, [Some(c1), Some(c2)]);
    // Only bob has an entry.
    assert_eq!(lock(&s.inner).registered.len(), 1);
    assert_eq!(s.set_registered(BOB, vec![c1.into()]), 0);
    assert_eq!(presence(&s).tuples.len(), 1);
    s.set_registered(BOB, Vec::new());
    assert_eq!(presence(&s).basic(), Basic::Closed);
    assert!(lock(&s.inner).registered.is_empty(), "no entry is kept");
}

#[tokio::test]
async fn a_publication_takes_precedence_over_registrations() {
    let s = server().await;
    s.set_registered(BOB, vec!["sip:bob@192.0.2.1:5060".into()]);
    let closed = "<?xml version='1.0'?><presence xmlns='urn:ietf:params:xml:ns:pidf' \
                  entity='sip:bob@example.com'><tuple id='desk'><status><basic>closed</basic>\
                  </status></tuple></presence>";
    let publish = sip_core::Message::parse(
        format!(
            "PUBLISH sip:bob@example.com SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKp1\r\n\
             From: <sip:bob@example.com>;tag=p\r\nTo: <sip:bob@example.com>\r\n\
             Call-ID: p1\r\nCSeq: 1 PUBLISH\r\nEvent: presence\r\nExpires: 60\r\n\
             Content-Type: application/pidf+xml\r\nContent-Length: {}\r\n\r\n{closed}",
            closed.len()
        )
        .into_bytes(),
    )
    .unwrap();
    let preq = PublishRequest::of(&publish).unwrap();
    lock(&s.inner).compositors[0]
        .publish(Instant::now(), BOB, preq)
        .unwrap();
    let doc = presence(&s);
    assert_eq!(
        doc.basic(),
        Basic::Closed,
        "published closed while registered"
    );
    assert_eq!(doc.tuples[0].id, "desk");
    // Once the publication is gone, the registration shows again.
    let later = Instant::now() + Duration::from_secs(120);
    let expired = lock(&s.inner).compositors[0].expire(later);
    assert_eq!(expired, [BOB.to_owned()]);
    assert_eq!(presence(&s).basic(), Basic::Open);
}
