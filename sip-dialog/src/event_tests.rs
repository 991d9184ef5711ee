//! Scenario tests of the RFC 6665 subscription and RFC 3903 publication state machines on
//! injected time: NOTIFY before the 2xx, forked NOTIFYs, refresh, unsubscribe, the notifier's
//! ordered bounded queue, rate limit, expiry and failed NOTIFYs; the compositor's ETags.

use std::time::{Duration, Instant};

use bytes::Bytes;
use sip_core::{HeaderName, Message, Method};

use crate::publication::{Compositor, CompositorConfig, PublishRequest, Publisher, PublisherEvent};
use crate::subscription::{
    check_event, Content, EventKey, Notifier, NotifierConfig, NotifyOutcome, Overflow, QueueFull,
    SubState, SubscribeOutcome, Subscriber,
};

const VIA: &str = "SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKn1";

fn subscribe(expires: u32) -> Message {
    Message::parse(
        format!(
            "SUBSCRIBE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKsub1\r\n\
From: <sip:alice@example.com>;tag=atag\r\nTo: <sip:bob@example.com>\r\n\
Call-ID: sub-1@192.0.2.1\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:alice@192.0.2.1:5060>\r\n\
Event: presence\r\nExpires: {expires}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes(),
    )
    .unwrap()
}

fn ok(tag: &str, expires: u32) -> Message {
    subscribe(600)
        .response(200)
        .to_tag(tag)
        .header("Contact", format!("<sip:bob@192.0.2.{}:5060>", tag.len()))
        .header("Expires", expires.to_string())
        .build()
        .unwrap()
}

fn notify(from_tag: &str, seq: u32, state: &str, body: &str) -> Message {
    let body_part = if body.is_empty() {
        "Content-Length: 0\r\n\r\n".to_owned()
    } else {
        format!(
            "Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    Message::parse(
        format!(
            "NOTIFY sip:alice@192.0.2.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.5:5060;branch=z9hG4bKnot{seq}\r\n\
From: <sip:bob@example.com>;tag={from_tag}\r\nTo: <sip:alice@example.com>;tag=atag\r\n\
Call-ID: sub-1@192.0.2.1\r\nCSeq: {seq} NOTIFY\r\nContact: <sip:bob@192.0.2.5:5060>\r\n\
Event: presence\r\nSubscription-State: {state}\r\n{body_part}"
        )
        .into_bytes(),
    )
    .unwrap()
}

fn via() -> String {
    VIA.to_owned()
}

#[test]
fn event_keys_and_bad_event() {
    let k = EventKey::parse("Presence;id=7").unwrap();
    assert_eq!(k.package, "presence");
    assert_eq!(k.id.as_deref(), Some("7"));
    assert_eq!(k.header_value(), "presence;id=7");
    assert_eq!(
        check_event(&subscribe(60), &["im", "presence"]),
        Ok(EventKey::new("presence"))
    );
    assert_eq!(check_event(&subscribe(60), &["im"]), Err(489));
    let (s, e) = SubState::parse("terminated;reason=Timeout;retry-after=9").unwrap();
    assert_eq!(
        s,
        SubState::Terminated {
            reason: Some("timeout".into()),
            retry_after: Some(9)
        }
    );
    assert_eq!(e, None);
    assert_eq!(
        SubState::parse("active;expires=30").unwrap(),
        (SubState::Active, Some(30))
    );
    assert!(SubState::parse("active;expires=x").is_none());
    assert_eq!(
        SubState::Terminated {
            reason: Some("noresource".into()),
            retry_after: None
        }
        .header_value(5),
        "terminated;reason=noresource"
    );
}

#[test]
fn notify_before_2xx_creates_the_subscription_and_2xx_confirms_it() {
    let t0 = Instant::now();
    let mut s = Subscriber::new(subscribe(600), "sip:alice@192.0.2.1:5060", 4).unwrap();
    let (status, n) = s.on_notify(t0, &notify("btag", 1, "active;expires=600", "open"));
    assert_eq!(status, 200);
    let n = n.unwrap();
    assert_eq!(n.state, SubState::Active);
    assert_eq!(n.content.unwrap().body, Bytes::from_static(b"open"));
    assert_eq!(n.dialog.remote_tag, "btag");
    assert_eq!(s.dialogs().len(), 1);
    // The 2xx of the same fork arrives after: the same subscription, not a new one.
    assert_eq!(
        s.on_response(t0, &ok("btag", 600)),
        SubscribeOutcome::Accepted(n.dialog.clone())
    );
    assert_eq!(s.dialogs().len(), 1);
    assert_eq!(s.dialogs()[0].state, SubState::Active);
    assert!(!s.is_terminated());
    // A NOTIFY for another Call-ID or To-tag is not ours.
    let mut other = notify("btag", 2, "active", "");
    other = Message::parse(
        String::from_utf8_lossy(other.source())
            .replace("tag=atag", "tag=zzz")
            .into_bytes(),
    )
    .unwrap();
    assert_eq!(s.on_notify(t0, &other).0, 481);
}

#[test]
fn forked_notifies_make_one_subscription_each() {
    let t0 = Instant::now();
    let mut s = Subscriber::new(subscribe(600), "sip:alice@192.0.2.1:5060", 2).unwrap();
    assert!(matches!(
        s.on_response(t0, &ok("f1", 600)),
        SubscribeOutcome::Accepted(_)
    ));
    assert_eq!(
        s.on_notify(t0, &notify("f1", 1, "pending;expires=600", ""))
            .0,
        200
    );
    let (st, n) = s.on_notify(t0, &notify("f2", 1, "active;expires=300", "x"));
    assert_eq!(st, 200);
    assert_eq!(n.unwrap().dialog.remote_tag, "f2");
    assert_eq!(s.dialogs().len(), 2);
    assert_eq!(s.dialogs()[0].state, SubState::Pending);
    assert_eq!(s.dialogs()[1].state, SubState::Active);
    // The fork cap: a third fork is refused.
    assert_eq!(s.on_notify(t0, &notify("f3", 1, "active", "")).0, 481);
    // Out-of-order CSeq in a fork: 500.
    assert_eq!(s.on_notify(t0, &notify("f2", 2, "active", "")).0, 200);
    assert_eq!(s.on_notify(t0, &notify("f2", 1, "active", "")).0, 500);
    // Wrong event: 489; no Subscription-State: 400.
    let wrong = Message::parse(
        String::from_utf8_lossy(notify("f2", 5, "active", "").source())
            .replace("Event: presence", "Event: dialog")
            .into_bytes(),
    )
    .unwrap();
    assert_eq!(s.on_notify(t0, &wrong).0, 489);
    // Terminating one fork leaves the other.
    let (_, n) = s.on_notify(t0, &notify("f1", 2, "terminated;reason=rejected", ""));
    assert_eq!(
        n.unwrap().state,
        SubState::Terminated {
            reason: Some("rejected".into()),
            retry_after: None
        }
    );
    assert_eq!(s.dialogs().len(), 1);
    assert!(!s.is_terminated());
}

#[test]
fn refresh_before_expiry_then_unsubscribe() {
    let t0 = Instant::now();
    let mut s = Subscriber::new(subscribe(600), "sip:alice@192.0.2.1:5060", 1).unwrap();
    assert!(matches!(
        s.on_response(t0, &ok("b", 100)),
        SubscribeOutcome::Accepted(_)
    ));
    assert_eq!(
        s.on_notify(t0, &notify("b", 1, "active;expires=100", "")).0,
        200
    );
    let due = s.poll_timeout().unwrap();
    assert_eq!(due, t0 + Duration::from_secs(90));
    assert!(s.refresh(t0 + Duration::from_secs(10), via).is_empty());
    let r = s.refresh(due, via);
    assert_eq!(r.len(), 1);
    let refresh = &r[0];
    assert_eq!(refresh.method(), Some(Method::Subscribe));
    assert_eq!(refresh.header(HeaderName::Expires), Some("600"));
    assert_eq!(refresh.header(HeaderName::Event), Some("presence"));
    // The NOTIFY (a target refresh) gave the remote target.
    assert_eq!(refresh.uri_str(), Some("sip:bob@192.0.2.5:5060"));
    assert_eq!(refresh.cseq().unwrap().seq, 2);
    assert_eq!(
        s.poll_timeout(),
        None,
        "no second refresh while one is outstanding"
    );
    // The refresh's 2xx re-arms the timer.
    let ok2 = refresh
        .response(200)
        .header("Contact", "<sip:bob@192.0.2.1:5060>")
        .header("Expires", "100")
        .build()
        .unwrap();
    assert!(matches!(
        s.on_response(due, &ok2),
        SubscribeOutcome::Accepted(_)
    ));
    assert_eq!(s.poll_timeout(), Some(due + Duration::from_secs(90)));

    let u = s.unsubscribe(via);
    assert_eq!(u.len(), 1);
    assert_eq!(u[0].header(HeaderName::Expires), Some("0"));
    assert_eq!(s.poll_timeout(), None);
    let (st, n) = s.on_notify(due, &notify("b", 3, "terminated;reason=timeout", ""));
    assert_eq!(st, 200);
    assert!(n.unwrap().state.is_terminated());
    assert!(s.is_terminated());
}

#[test]
fn failed_subscribe_and_failed_refresh() {
    let t0 = Instant::now();
    let mut s = Subscriber::new(subscribe(600), "sip:alice@192.0.2.1:5060", 1).unwrap();
    let resp = subscribe(600).response(489).build().unwrap();
    assert_eq!(s.on_response(t0, &resp), SubscribeOutcome::Failed(489));
    assert!(s.is_terminated());

    let mut s = Subscriber::new(subscribe(600), "sip:alice@192.0.2.1:5060", 1).unwrap();
    s.on_response(t0, &ok("b", 60));
    assert_eq!(
        s.on_notify(t0, &notify("b", 1, "active;expires=60", "")).0,
        200
    );
    let r = s.refresh(s.poll_timeout().unwrap(), via);
    let gone = r[0].response(481).to_tag("b").build().unwrap();
    assert!(matches!(
        s.on_response(t0, &gone),
        SubscribeOutcome::Removed(_, 481)
    ));
    assert!(s.is_terminated());
}

fn accept(config: NotifierConfig) -> (Notifier, Instant) {
    let t0 = Instant::now();
    let (n, e) = Notifier::accept(
        t0,
        &subscribe(600),
        "ntag",
        "sip:ps@192.0.2.9",
        false,
        config,
    )
    .unwrap();
    assert_eq!(e, 600);
    (n, t0)
}

fn content(s: &'static str) -> Content {
    Content {
        content_type: "text/plain".into(),
        body: Bytes::from_static(s.as_bytes()),
    }
}

#[test]
fn notifier_sends_in_order_one_at_a_time() {
    let (mut n, t0) = accept(NotifierConfig::default());
    let resp = n.response(&subscribe(600), 600).unwrap();
    assert_eq!(resp.to().unwrap().tag(), Some("ntag"));
    assert_eq!(resp.header(HeaderName::Expires), Some("600"));
    n.notify(content("one")).unwrap();
    n.notify(content("two")).unwrap();
    let first = n.poll_notify(t0, VIA).unwrap();
    assert_eq!(first.body(), b"one");
    assert_eq!(
        first.header(HeaderName::SubscriptionState),
        Some("active;expires=600")
    );
    assert_eq!(first.header(HeaderName::Event), Some("presence"));
    assert_eq!(first.uri_str(), Some("sip:alice@192.0.2.1:5060"));
    assert!(
        n.poll_notify(t0, VIA).is_none(),
        "one NOTIFY outstanding at a time"
    );
    assert_eq!(n.on_notify_response(Some(100)), NotifyOutcome::Continue);
    assert!(n.poll_notify(t0, VIA).is_none());
    assert_eq!(n.on_notify_response(Some(200)), NotifyOutcome::Continue);
    let second = n.poll_notify(t0, VIA).unwrap();
    assert_eq!(second.body(), b"two");
    assert!(second.cseq().unwrap().seq > first.cseq().unwrap().seq);
    n.on_notify_response(Some(200));
    assert!(n.poll_notify(t0, VIA).is_none());
    assert_eq!(n.queued(), (0, 0));
}

#[test]
fn bounded_queue_coalesces_or_rejects() {
    let cfg = NotifierConfig {
        queue_limit: 2,
        ..NotifierConfig::default()
    };
    let (mut n, t0) = accept(cfg.clone());
    for c in ["a", "b", "c"] {
        n.notify(content(c)).unwrap();
    }
    assert_eq!(n.queued().0, 2);
    assert_eq!(
        n.poll_notify(t0, VIA).unwrap().body(),
        b"b",
        "oldest state dropped"
    );

    let (mut n, _) = accept(NotifierConfig {
        overflow: Overflow::Reject,
        ..cfg
    });
    n.notify(content("a")).unwrap();
    n.notify(content("b")).unwrap();
    assert!(!n.has_room(1));
    assert_eq!(n.notify(content("c")), Err(QueueFull));
}

#[test]
fn rate_limit_spaces_notifies() {
    let (mut n, t0) = accept(NotifierConfig {
        min_interval: Duration::from_secs(5),
        ..NotifierConfig::default()
    });
    n.notify(content("a")).unwrap();
    n.poll_notify(t0, VIA).unwrap();
    n.on_notify_response(Some(200));
    n.notify(content("b")).unwrap();
    assert!(n.poll_notify(t0 + Duration::from_secs(1), VIA).is_none());
    assert_eq!(n.poll_timeout(), Some(t0 + Duration::from_secs(5)));
    assert_eq!(
        n.poll_notify(t0 + Duration::from_secs(5), VIA)
            .unwrap()
            .body(),
        b"b"
    );
}

#[test]
fn unsubscribe_and_expiry_terminate() {
    let (mut n, t0) = accept(NotifierConfig::default());
    let mut unsub = subscribe(0);
    unsub = Message::parse(
        String::from_utf8_lossy(unsub.source())
            .replace(
                "To: <sip:bob@example.com>",
                "To: <sip:bob@example.com>;tag=ntag",
            )
            .replace("CSeq: 1 ", "CSeq: 2 ")
            .into_bytes(),
    )
    .unwrap();
    assert_eq!(n.on_subscribe(t0, &unsub), Ok(0));
    assert!(n.is_terminating());
    n.notify(content("last")).unwrap();
    let m = n.poll_notify(t0, VIA).unwrap();
    assert_eq!(
        m.header(HeaderName::SubscriptionState),
        Some("terminated;reason=timeout")
    );
    assert_eq!(m.body(), b"last");
    assert_eq!(n.on_notify_response(Some(200)), NotifyOutcome::Removed);
    assert!(n.is_done());

    let (mut n, t0) = accept(NotifierConfig::default());
    assert_eq!(n.poll_timeout(), Some(t0 + Duration::from_secs(600)));
    n.handle_timeout(t0 + Duration::from_secs(600));
    let m = n.poll_notify(t0 + Duration::from_secs(600), VIA).unwrap();
    assert_eq!(
        m.header(HeaderName::SubscriptionState),
        Some("terminated;reason=timeout")
    );
    assert!(m.body().is_empty());
}

#[test]
fn failed_notify_removes_and_short_expires_is_423() {
    let (mut n, t0) = accept(NotifierConfig::default());
    n.notify(content("a")).unwrap();
    n.poll_notify(t0, VIA).unwrap();
    assert_eq!(n.on_notify_response(Some(481)), NotifyOutcome::Removed);
    assert!(n.is_done());
    let (mut n, t0) = accept(NotifierConfig::default());
    n.notify(content("a")).unwrap();
    n.poll_notify(t0, VIA).unwrap();
    assert_eq!(n.on_notify_response(None), NotifyOutcome::Removed);

    let r = Notifier::accept(
        t0,
        &subscribe(10),
        "t",
        "sip:ps@192.0.2.9",
        false,
        NotifierConfig::default(),
    )
    .unwrap_err();
    assert_eq!((r.status, r.min_expires), (423, Some(60)));
    let resp = r.response(&subscribe(10)).unwrap();
    assert_eq!(resp.header(HeaderName::MinExpires), Some("60"));
    // Longer than the maximum: cut down.
    let (_, e) = Notifier::accept(
        t0,
        &subscribe(99_999),
        "t",
        "sip:ps@192.0.2.9",
        true,
        NotifierConfig::default(),
    )
    .unwrap();
    assert_eq!(e, 3600);
}

fn publish(
    if_match: Option<&str>,
    expires: Option<u32>,
    body: Option<&'static str>,
) -> PublishRequest {
    PublishRequest {
        if_match: if_match.map(str::to_owned),
        expires,
        content: body.map(content),
    }
}

#[test]
fn compositor_initial_refresh_modify_remove_412() {
    let t0 = Instant::now();
    let mut c = Compositor::new(CompositorConfig::default(), 0xabc);
    let p = c
        .publish(
            t0,
            "sip:bob@example.com",
            publish(None, Some(600), Some("open")),
        )
        .unwrap();
    assert!(p.changed);
    assert_eq!(p.expires, 600);
    let second = c
        .publish(
            t0,
            "sip:bob@example.com",
            publish(None, None, Some("phone")),
        )
        .unwrap();
    assert_eq!(second.expires, 3600);
    assert_eq!(c.publications("sip:bob@example.com").len(), 2);
    // Refresh: new tag, no change.
    let r = c
        .publish(
            t0,
            "sip:bob@example.com",
            publish(Some(&p.etag), Some(600), None),
        )
        .unwrap();
    assert!(!r.changed);
    assert_ne!(r.etag, p.etag);
    // The old tag is gone: 412.
    let e = c
        .publish(
            t0,
            "sip:bob@example.com",
            publish(Some(&p.etag), None, None),
        )
        .unwrap_err();
    assert_eq!(e.status, 412);
    // Modify.
    let m = c
        .publish(
            t0,
            "sip:bob@example.com",
            publish(Some(&r.etag), None, Some("closed")),
        )
        .unwrap();
    assert!(m.changed);
    assert_eq!(
        c.publications("sip:bob@example.com")[0].content.body,
        Bytes::from_static(b"closed")
    );
    // Remove.
    let x = c
        .publish(
            t0,
            "sip:bob@example.com",
            publish(Some(&m.etag), Some(0), None),
        )
        .unwrap();
    assert_eq!((x.expires, x.changed), (0, true));
    assert_eq!(c.counts(), (1, 1));
    // Initial without a body: 400; too short: 423.
    assert_eq!(
        c.publish(t0, "r", publish(None, None, None))
            .unwrap_err()
            .status,
        400
    );
    assert_eq!(
        c.publish(t0, "r", publish(None, Some(5), Some("x")))
            .unwrap_err()
            .status,
        423
    );
    // Expiry.
    assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(3600)));
    assert_eq!(
        c.expire(t0 + Duration::from_secs(3600)),
        vec!["sip:bob@example.com".to_owned()]
    );
    assert_eq!(c.counts(), (0, 0));
}

#[test]
fn compositor_caps() {
    let t0 = Instant::now();
    let mut c = Compositor::new(
        CompositorConfig {
            max_per_resource: 1,
            max_total: 2,
            max_body: 4,
            ..CompositorConfig::default()
        },
        1,
    );
    c.publish(t0, "a", publish(None, None, Some("x"))).unwrap();
    assert_eq!(
        c.publish(t0, "a", publish(None, None, Some("y")))
            .unwrap_err()
            .status,
        503
    );
    c.publish(t0, "b", publish(None, None, Some("y"))).unwrap();
    assert_eq!(
        c.publish(t0, "c", publish(None, None, Some("z")))
            .unwrap_err()
            .status,
        503
    );
    assert_eq!(
        c.publish(t0, "c", publish(None, None, Some("toolong")))
            .unwrap_err()
            .status,
        413
    );
}

#[test]
fn publisher_tracks_the_etag() {
    let t0 = Instant::now();
    let mut p = Publisher::new("presence", 600);
    let base = || {
        sip_core::builder::RequestBuilder::new(Method::Publish, "sip:bob@example.com")
            .header("Via", VIA)
            .from_addr(None, "sip:bob@example.com", "p1")
            .to_addr(None, "sip:bob@example.com", None)
            .call_id("pub-1")
            .cseq(1)
    };
    let first = p.publish(base(), Some(&content("open"))).build().unwrap();
    assert!(first.header(HeaderName::SipIfMatch).is_none());
    let resp = first
        .response(200)
        .header("SIP-ETag", "e1")
        .header("Expires", "600")
        .build()
        .unwrap();
    assert_eq!(p.on_response(t0, &resp), PublisherEvent::Accepted);
    assert_eq!(p.etag(), Some("e1"));
    assert_eq!(p.poll_timeout(), Some(t0 + Duration::from_secs(540)));
    let refresh = p.publish(base(), None).build().unwrap();
    assert_eq!(refresh.header(HeaderName::SipIfMatch), Some("e1"));
    let lost = refresh.response(412).build().unwrap();
    assert_eq!(p.on_response(t0, &lost), PublisherEvent::Lost);
    assert_eq!(p.etag(), None);
    assert!(p.remove(base()).is_none());
    let too_short = refresh
        .response(423)
        .header("Min-Expires", "900")
        .build()
        .unwrap();
    assert_eq!(p.on_response(t0, &too_short), PublisherEvent::Retry);
    let again = p.publish(base(), Some(&content("open"))).build().unwrap();
    assert_eq!(again.header(HeaderName::Expires), Some("900"));
    let ok = again
        .response(200)
        .header("SIP-ETag", "e2")
        .build()
        .unwrap();
    p.on_response(t0, &ok);
    let rm = p.remove(base()).unwrap().build().unwrap();
    assert_eq!(rm.header(HeaderName::Expires), Some("0"));
    assert_eq!(rm.header(HeaderName::SipIfMatch), Some("e2"));
}

#[test]
fn timer_n_ends_a_subscription_without_notify() {
    let t0 = Instant::now();
    let mut s = Subscriber::new(subscribe(600), "sip:alice@192.0.2.1:5060", 2).unwrap();
    assert!(matches!(
        s.on_response(t0, &ok("b", 600)),
        SubscribeOutcome::Accepted(_)
    ));
    assert_eq!(s.poll_timeout(), Some(t0 + crate::subscription::TIMER_N));
    assert!(s.handle_timeout(t0 + Duration::from_secs(31)).is_empty());
    let gone = s.handle_timeout(t0 + crate::subscription::TIMER_N);
    assert_eq!(gone.len(), 1);
    assert!(s.is_terminated());

    // A NOTIFY in time stops Timer N.
    let mut s = Subscriber::new(subscribe(600), "sip:alice@192.0.2.1:5060", 2).unwrap();
    s.on_response(t0, &ok("b", 600));
    assert_eq!(
        s.on_notify(t0, &notify("b", 1, "active;expires=600", "")).0,
        200
    );
    assert!(s.handle_timeout(t0 + Duration::from_secs(40)).is_empty());
    assert_eq!(s.dialogs().len(), 1);
}

#[test]
fn challenged_refresh_is_retried_in_its_dialog_with_the_next_cseq() {
    let t0 = Instant::now();
    let mut s = Subscriber::new(subscribe(600), "sip:alice@192.0.2.1:5060", 1).unwrap();
    s.on_response(t0, &ok("b", 100));
    assert_eq!(
        s.on_notify(t0, &notify("b", 1, "active;expires=100", "")).0,
        200
    );
    let r = s.refresh(s.poll_timeout().unwrap(), via);
    let refresh = &r[0];
    let retry = s
        .retry_with(refresh, VIA, ("Authorization", "Digest username=\"alice\""))
        .unwrap();
    assert_eq!(retry.cseq().unwrap().seq, refresh.cseq().unwrap().seq + 1);
    assert_eq!(retry.header(HeaderName::Expires), Some("600"));
    assert_eq!(retry.header(HeaderName::Event), Some("presence"));
    assert_eq!(
        retry.header(HeaderName::Authorization),
        Some("Digest username=\"alice\"")
    );
    assert_eq!(retry.call_id(), refresh.call_id());
    // The unsubscribe keeps its Expires: 0 when challenged.
    let u = s.unsubscribe(via);
    let retry = s
        .retry_with(&u[0], VIA, ("Proxy-Authorization", "x"))
        .unwrap();
    assert_eq!(retry.header(HeaderName::Expires), Some("0"));
    // A subscription we do not have.
    let other = notify("zz", 9, "active", "");
    assert!(s.retry_with(&other, VIA, ("Authorization", "x")).is_none());
}
