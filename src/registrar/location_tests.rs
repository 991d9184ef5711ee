//! The location service's rules and the in-memory store.

use super::*;
use sip_core::Transport;

fn flow(port: u16, transport: Transport) -> Flow {
    Flow {
        transport,
        local: "127.0.0.1:5060".parse().unwrap(),
        remote: format!("127.0.0.1:{port}").parse().unwrap(),
    }
}

fn change(call_id: &str, cseq: u32, contacts: &[(&str, u32)]) -> RegisterChange {
    RegisterChange {
        call_id: call_id.into(),
        cseq,
        remove_all: false,
        contacts: contacts
            .iter()
            .map(|(c, e)| ContactUpdate {
                contact: (*c).into(),
                expires: *e,
                q: 1000,
                instance: None,
                reg_id: None,
            })
            .collect(),
        flow: flow(4000, Transport::Udp),
        path: vec![],
    }
}

#[test]
fn ordering_per_call_id() {
    let now = Instant::now();
    let lim = StoreLimits::default();
    let mut b = Vec::new();
    apply_register(&mut b, &change("c1", 5, &[("sip:a@h", 60)]), now, &lim, 0).unwrap();
    // Same Call-ID, same CSeq: the request again (a retransmission), nothing changes.
    let e = apply_register(&mut b, &change("c1", 5, &[("sip:a@h", 0)]), now, &lim, 0);
    assert_eq!(e, Ok(BindingChanges::new()));
    assert_eq!(b.len(), 1);
    // Same Call-ID, lower CSeq: refused, nothing changes.
    let e = apply_register(&mut b, &change("c1", 4, &[("sip:a@h", 0)]), now, &lim, 0);
    assert_eq!(e, Err(RegisterError::OutOfOrder { have: 5, got: 4 }));
    assert_eq!(b.len(), 1);
    // Another Call-ID replaces whatever the CSeq.
    apply_register(&mut b, &change("c2", 1, &[("sip:a@h", 30)]), now, &lim, 0).unwrap();
    assert_eq!(&*b[0].call_id, "c2");
    // Higher CSeq, expires 0: removed.
    let ch = apply_register(&mut b, &change("c2", 2, &[("sip:a@h", 0)]), now, &lim, 0).unwrap();
    assert!(matches!(ch[0], BindingChange::Removed(_)));
    assert!(b.is_empty());
}

#[test]
fn a_refresh_spelled_differently_is_the_same_binding() {
    let now = Instant::now();
    let lim = StoreLimits::default();
    let mut b = Vec::new();
    let first = "sip:alice@10.0.0.7:5060;transport=tcp;ob";
    apply_register(&mut b, &change("c1", 1, &[(first, 60)]), now, &lim, 0).unwrap();
    // RFC 3261 §19.1.4: parameter order, the case of `transport` and an escaped
    // unreserved character do not make another contact.
    let again = "sip:%61lice@10.0.0.7:5060;ob;transport=TCP";
    let ch = apply_register(&mut b, &change("c1", 2, &[(again, 60)]), now, &lim, 0).unwrap();
    assert!(matches!(ch[..], [BindingChange::Refreshed(_)]));
    assert_eq!(b.len(), 1);
    // An explicit default port does: that is a second binding.
    let other = "sip:alice@10.0.0.7;transport=tcp;ob";
    let ch = apply_register(&mut b, &change("c1", 3, &[(other, 60)]), now, &lim, 0).unwrap();
    assert!(matches!(ch[..], [BindingChange::Added(_)]));
    assert_eq!(b.len(), 2);
    // Removing by the first spelling removes the refreshed binding (which keeps the
    // contact as last sent).
    let ch = apply_register(&mut b, &change("c1", 4, &[(first, 0)]), now, &lim, 0).unwrap();
    assert!(matches!(&ch[..], [BindingChange::Removed(r)] if &*r.contact == again));
    assert_eq!(b.len(), 1);
}

#[test]
fn caps_and_star() {
    let now = Instant::now();
    let lim = StoreLimits {
        max_bindings_per_aor: 2,
        max_bindings: 3,
        ..StoreLimits::default()
    };
    let mut b = Vec::new();
    apply_register(
        &mut b,
        &change("c", 1, &[("sip:a@h", 60), ("sip:b@h", 60)]),
        now,
        &lim,
        0,
    )
    .unwrap();
    let e = apply_register(&mut b, &change("c", 2, &[("sip:c@h", 60)]), now, &lim, 0);
    assert_eq!(e, Err(RegisterError::TooManyForAor));
    let mut other = Vec::new();
    let e = apply_register(
        &mut other,
        &change("d", 1, &[("sip:x@h", 60), ("sip:y@h", 60)]),
        now,
        &lim,
        2,
    );
    assert_eq!(e, Err(RegisterError::StoreFull));
    let mut star = change("c", 3, &[]);
    star.remove_all = true;
    let ch = apply_register(&mut b, &star, now, &lim, 0).unwrap();
    assert_eq!(ch.len(), 2);
    assert!(b.is_empty());
}

#[test]
fn outbound_identity_is_instance_and_reg_id() {
    let now = Instant::now();
    let lim = StoreLimits::default();
    let mut b = Vec::new();
    let mut c = change("c", 1, &[("sip:a@10.0.0.1:5000", 60)]);
    c.contacts[0].instance = Some("<urn:uuid:1>".into());
    c.contacts[0].reg_id = Some(1);
    apply_register(&mut b, &c, now, &lim, 0).unwrap();
    // The device moved (new contact address): same instance and reg-id, so a refresh.
    let mut c2 = change("c", 2, &[("sip:a@10.0.0.2:6000", 60)]);
    c2.contacts[0].instance = Some("<urn:uuid:1>".into());
    c2.contacts[0].reg_id = Some(1);
    let ch = apply_register(&mut b, &c2, now, &lim, 0).unwrap();
    assert!(matches!(ch[0], BindingChange::Refreshed(_)));
    assert_eq!(b.len(), 1);
    assert_eq!(&*b[0].contact, "sip:a@10.0.0.2:6000");
}

#[tokio::test]
async fn memory_store_flow_close_and_sweep() {
    let store = MemoryLocationStore::new(StoreLimits::default());
    let now = Instant::now();
    let mut tcp = change("t", 1, &[("sip:a@h;transport=tcp", 60)]);
    tcp.flow = flow(7000, Transport::Tcp);
    store.register("sip:a@example.com", tcp, now).await.unwrap();
    store
        .register("sip:b@example.com", change("u", 1, &[("sip:b@h", 10)]), now)
        .await
        .unwrap();
    assert_eq!(store.counts().await, (2, 2));
    let lost = store.flow_closed(flow(7000, Transport::Tcp)).await;
    assert_eq!(lost.len(), 1);
    assert_eq!(store.counts().await, (1, 1));
    // A UDP "flow" closing only marks the binding offline.
    let lost = store.flow_closed(flow(4000, Transport::Udp)).await;
    assert_eq!(lost.len(), 1);
    assert!(store.lookup("sip:b@example.com", now).await[0].offline);
    let swept = store.sweep(now + Duration::from_secs(11)).await;
    assert_eq!(swept.len(), 1);
    assert_eq!(store.counts().await, (0, 0));
}

/// The sweep skips its walk until the earliest expiry may have come, and still loses every
/// binding as it expires, refreshed ones only at their new time.
#[tokio::test]
async fn the_sweep_finds_each_expiry_and_no_refreshed_binding() {
    let store = MemoryLocationStore::new(StoreLimits::default());
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let reg = |aor: &'static str, call: &'static str, cseq: u32, e: u32, now: Instant| {
        let store = &store;
        async move {
            let c = format!("sip:{aor}@h");
            let aor = format!("sip:{aor}@example.com");
            store
                .register(&aor, change(call, cseq, &[(&c, e)]), now)
                .await
                .unwrap();
        }
    };
    assert!(store.sweep(t0).await.is_empty(), "an empty store");
    reg("a", "ca", 1, 10, t0).await;
    reg("b", "cb", 1, 100, t0).await;
    assert!(store.sweep(at(5)).await.is_empty());
    // a is refreshed to 6 + 100: its old expiry (10) passes with nothing lost.
    reg("a", "ca", 2, 100, at(6)).await;
    assert!(store.sweep(at(11)).await.is_empty());
    assert_eq!(store.counts().await, (2, 2));
    // A later binding with an earlier expiry than any is still found at its time.
    reg("c", "cc", 1, 20, at(12)).await;
    let lost = store.sweep(at(33)).await;
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].aor, "sip:c@example.com");
    let lost = store.sweep(at(101)).await;
    assert_eq!(lost.len(), 1, "b expires at 100");
    assert_eq!(lost[0].aor, "sip:b@example.com");
    let lost = store.sweep(at(107)).await;
    assert_eq!(lost.len(), 1, "a, refreshed, at 106");
    assert_eq!(store.counts().await, (0, 0));
}

#[tokio::test]
async fn byte_budget_bounds_the_store_and_is_kept_exact() {
    let now = Instant::now();
    let unbounded = MemoryLocationStore::new(StoreLimits::default());
    let long = format!("sip:a@h;x={}", "y".repeat(900));
    unbounded
        .register("sip:a@example.com", change("c", 1, &[(&long, 60)]), now)
        .await
        .unwrap();
    let big = unbounded.bytes().await.unwrap();
    let b = &unbounded.lookup("sip:a@example.com", now).await[0];
    assert_eq!(
        big,
        aor_footprint("sip:a@example.com", std::slice::from_ref(b))
    );
    assert!(big > 900 + std::mem::size_of::<Binding>());

    // A budget for one such AOR and a small one: the second big one is refused, a refresh of
    // the first is not.
    let store = MemoryLocationStore::new(StoreLimits {
        max_bytes: big + 300,
        ..StoreLimits::default()
    });
    store
        .register("sip:a@example.com", change("c", 1, &[(&long, 60)]), now)
        .await
        .unwrap();
    let e = store
        .register("sip:b@example.com", change("d", 1, &[(&long, 60)]), now)
        .await;
    assert_eq!(e, Err(RegisterError::StoreFull));
    store
        .register("sip:a@example.com", change("c", 2, &[(&long, 120)]), now)
        .await
        .unwrap();
    assert_eq!(store.bytes().await, Some(big));
    // Sweeping and removing give the bytes back exactly.
    store
        .register("sip:c@example.com", change("e", 1, &[("sip:c@h", 10)]), now)
        .await
        .unwrap();
    store.sweep(now + Duration::from_secs(11)).await;
    assert_eq!(store.bytes().await, Some(big));
    store
        .register("sip:a@example.com", change("c", 3, &[(&long, 0)]), now)
        .await
        .unwrap();
    assert_eq!(store.bytes().await, Some(0));
    let mut tcp = change("t", 1, &[("sip:a@h;transport=tcp", 60)]);
    tcp.flow = flow(7000, Transport::Tcp);
    store.register("sip:t@example.com", tcp, now).await.unwrap();
    store.flow_closed(flow(7000, Transport::Tcp)).await;
    assert_eq!(store.bytes().await, Some(0));
}
