//! RFC 6665 subscriptions on the UserAgent's own endpoint, on loopback (127.0.0.14): one UA
//! subscribes to another (NOTIFYs in order, refresh, unsubscribe, terminate); a bare endpoint
//! plays the other side where the UA must face what a UA would not do (NOTIFY before the 2xx,
//! forked NOTIFYs, a 481 to a NOTIFY, no refresh, a NOTIFY of no subscription); the rate
//! limit; and a UA watches a user's presence through the domain server (proxy, registrar and
//! event server, with digest) while that user registers, unregisters, or lets a binding
//! expire. Awaits are bounded; nothing sleeps to wait.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sip_stack::auth::{MemoryStore, ThrottleConfig};
use sip_stack::core::auth::Algorithm;
use sip_stack::core::builder::RequestBuilder;
use sip_stack::core::{HeaderName, Message, Method, Target, Transport};
use sip_stack::endpoint::{Endpoint, ServerEvent, ServerTransaction};
use sip_stack::events::pidf::{Basic, Pidf};
use sip_stack::events::{EventConfig, EventServer, ImPackage, PresencePackage};
use sip_stack::proxy::{Identity, Interface, LocationRouter, ProxyAuth, ProxyBuilder, ProxyConfig};
use sip_stack::registrar::{Registrar, RegistrarConfig};
use sip_stack::ua::{
    Content, IncomingSubscription, NotifierConfig, NotifierEnd, NotifierEvent, SubState,
    Subscription, SubscriptionEvent, UaError, UserAgent,
};
use sip_transaction::Config;
use tokio::time::timeout;

const T1: Duration = Duration::from_millis(50);
const LIMIT: Duration = Duration::from_secs(10);

async fn endpoint() -> Endpoint {
    Endpoint::builder()
        .udp("127.0.0.14:0".parse().unwrap())
        .transaction_config(Config::default().with_t1(T1))
        .build()
        .await
        .unwrap()
}

async fn ua_with(user: &str, notifier: NotifierConfig, proxy: Option<Target>) -> UserAgent {
    let mut b = UserAgent::builder(endpoint().await)
        .aor(format!("sip:{user}@example.com"))
        .credentials("example.com", user, "secret")
        .timers(T1, T1 * 8)
        .notifier(notifier);
    if let Some(p) = proxy {
        b = b.outbound_proxy(p);
    }
    b.build().unwrap()
}

async fn ua(user: &str) -> UserAgent {
    ua_with(user, NotifierConfig::default(), None).await
}

fn addr(ep: &Endpoint) -> std::net::SocketAddr {
    ep.local_addr(Transport::Udp).unwrap()
}

fn uri_of(ep: &Endpoint, user: &str) -> String {
    format!("sip:{user}@{}", addr(ep))
}

fn text(s: &str) -> Option<Content> {
    Some(Content {
        content_type: "text/plain".into(),
        body: Bytes::copy_from_slice(s.as_bytes()),
    })
}

async fn next_sub(s: &mut Subscription) -> Option<SubscriptionEvent> {
    timeout(LIMIT, s.next()).await.expect("in time")
}

/// The next NOTIFY's state and body.
async fn notified(s: &mut Subscription) -> (SubState, String) {
    match next_sub(s).await {
        Some(SubscriptionEvent::Notify(n)) => {
            let body = n.content.map(|c| c.body).unwrap_or_default();
            (n.state, String::from_utf8(body.to_vec()).unwrap())
        }
        other => panic!("expected a NOTIFY, got {other:?}"),
    }
}

fn terminated(reason: &str) -> SubState {
    SubState::Terminated {
        reason: Some(reason.into()),
        retry_after: None,
    }
}

async fn incoming(subs: &mut sip_stack::ua::IncomingSubscriptions) -> IncomingSubscription {
    timeout(LIMIT, subs.next())
        .await
        .expect("in time")
        .expect("a SUBSCRIBE")
}

/// Alice subscribes in a task of its own (the call returns once bob answers).
fn subscribe(
    ua: &UserAgent,
    target: &str,
    event: &str,
    expires: u32,
    accept: &'static [&'static str],
) -> tokio::task::JoinHandle<Result<Subscription, UaError>> {
    let (ua, target, event) = (ua.clone(), target.to_owned(), event.to_owned());
    tokio::spawn(async move { ua.subscribe(&target, &event, expires, accept).await })
}

async fn subscribed(
    h: tokio::task::JoinHandle<Result<Subscription, UaError>>,
) -> Result<Subscription, UaError> {
    timeout(LIMIT, h).await.expect("in time").unwrap()
}

async fn notifier_event(n: &mut sip_stack::ua::Notifier) -> NotifierEvent {
    timeout(LIMIT, n.next_event())
        .await
        .expect("in time")
        .expect("an event")
}

#[tokio::test]
async fn notifies_arrive_in_order_and_unsubscribe_terminates() {
    let alice = ua("alice").await;
    let bob = ua("bob").await;
    let mut requests = bob.subscriptions();
    let bob_uri = uri_of(bob.endpoint(), "bob");
    let sub = subscribe(&alice, &bob_uri, "presence", 600, &["text/plain"]);
    let inc = incoming(&mut requests).await;
    assert_eq!(inc.event().package, "presence");
    assert_eq!(inc.from(), "sip:alice@example.com");
    assert_eq!(
        inc.request().unwrap().header(HeaderName::Accept),
        Some("text/plain")
    );
    let mut notifier = inc.accept(text("state 0")).await.unwrap();
    let mut sub = subscribed(sub).await.unwrap();
    assert_eq!(notifier.subscriber(), "sip:alice@example.com");
    assert_eq!(
        notified(&mut sub).await,
        (SubState::Active, "state 0".into())
    );

    for i in 1..=5 {
        notifier
            .notify("text/plain", Bytes::from(format!("state {i}")))
            .unwrap();
    }
    // One at a time, in order; a state queued behind an outstanding NOTIFY is not lost
    // (the queue holds 16).
    for i in 1..=5 {
        assert_eq!(
            notified(&mut sub).await,
            (SubState::Active, format!("state {i}"))
        );
    }

    sub.unsubscribe().await;
    let (state, _) = notified(&mut sub).await;
    assert_eq!(state, terminated("timeout"));
    assert_eq!(next_sub(&mut sub).await, None, "the stream ends");
    assert_eq!(
        notifier_event(&mut notifier).await,
        NotifierEvent::Ended(NotifierEnd::Unsubscribed)
    );
    assert!(!notifier.is_active());
    assert!(matches!(
        notifier.notify("text/plain", Bytes::new()),
        Err(UaError::NoDialog)
    ));
}

#[tokio::test]
async fn refresh_reaches_the_notifier_and_terminate_ends_it() {
    let alice = ua("alice").await;
    // Bob grants 2 s: the refresh is due after 1 s.
    let short = NotifierConfig {
        min_expires: 1,
        max_expires: 2,
        ..NotifierConfig::default()
    };
    let bob = ua_with("bob", short, None).await;
    let mut requests = bob.subscriptions();
    let bob_uri = uri_of(bob.endpoint(), "bob");
    let sub = subscribe(&alice, &bob_uri, "presence", 600, &[]);
    let mut notifier = incoming(&mut requests).await.accept(None).await.unwrap();
    let mut sub = subscribed(sub).await.unwrap();
    assert_eq!(notified(&mut sub).await, (SubState::Active, String::new()));
    assert_eq!(
        notifier_event(&mut notifier).await,
        NotifierEvent::Refreshed { expires: 2 }
    );
    notifier.notify("text/plain", Bytes::from("after")).unwrap();
    assert_eq!(notified(&mut sub).await, (SubState::Active, "after".into()));

    notifier.terminate("deactivated").unwrap();
    assert_eq!(notified(&mut sub).await.0, terminated("deactivated"));
    assert_eq!(next_sub(&mut sub).await, None);
    loop {
        match notifier_event(&mut notifier).await {
            NotifierEvent::Refreshed { .. } => continue,
            e => {
                assert_eq!(e, NotifierEvent::Ended(NotifierEnd::Terminated));
                break;
            }
        }
    }
}

#[tokio::test]
async fn subscribe_is_rejected_or_refused() {
    let alice = ua("alice").await;
    let bob = ua("bob").await;
    let bob_uri = uri_of(bob.endpoint(), "bob");
    // Nobody listens for SUBSCRIBEs at bob's: 489.
    let r = alice.subscribe(&bob_uri, "presence", 600, &[]).await;
    assert_eq!(r.unwrap_err(), UaError::Rejected(489));
    // The application rejects.
    let mut requests = bob.subscriptions();
    let r = subscribe(&alice, &bob_uri, "dialog", 600, &[]);
    incoming(&mut requests).await.reject(403).await;
    assert_eq!(subscribed(r).await.unwrap_err(), UaError::Rejected(403));
    // Too short for bob's minimum: 423 from the machine.
    let r = subscribe(&alice, &bob_uri, "presence", 10, &[]);
    let inc = incoming(&mut requests).await;
    assert_eq!(inc.accept(None).await.unwrap_err(), UaError::Rejected(423));
    assert_eq!(subscribed(r).await.unwrap_err(), UaError::Rejected(423));
}

// --- a bare endpoint on the other side -------------------------------------------------

async fn next_request(ep: &Endpoint) -> ServerTransaction {
    loop {
        let ev = timeout(LIMIT, ep.next_event()).await.expect("in time");
        if let Some(ServerEvent::Request(txn)) = ev {
            return txn;
        }
    }
}

async fn respond(txn: &ServerTransaction, status: u16) {
    let r = txn.response(status).build().unwrap();
    txn.respond(r).await.unwrap();
}

async fn final_status(ep: &Endpoint, to: &Endpoint, req: Message) -> u16 {
    let target = Target::new(Transport::Udp, addr(to));
    let mut t = ep.request(req, target).await.unwrap();
    let r = timeout(LIMIT, t.final_response()).await.unwrap().unwrap();
    r.status().unwrap()
}

/// A NOTIFY from the bare endpoint in the subscription `subscribe` asked for, with From-tag
/// `tag`.
fn notify_for(ep: &Endpoint, subscribe: &Message, tag: &str, seq: u32, body: &str) -> Message {
    notify_event(ep, subscribe, tag, seq, body, "presence")
}

fn notify_event(
    ep: &Endpoint,
    subscribe: &Message,
    tag: &str,
    seq: u32,
    body: &str,
    event: &str,
) -> Message {
    let from = subscribe.from().unwrap();
    let contact = subscribe.contacts().next().unwrap().unwrap();
    RequestBuilder::new(Method::Notify, contact.addr().unwrap().uri_str())
        .header("Via", ep.via(Transport::Udp))
        .from_addr(None, "sip:bob@example.com", tag)
        .to_addr(None, from.uri_str(), from.tag())
        .call_id(subscribe.call_id().unwrap())
        .cseq(seq)
        .max_forwards(70)
        .contact(&uri_of(ep, "bob"))
        .header("Event", event)
        .header("Subscription-State", "active;expires=600")
        .body("text/plain", body.to_owned())
        .build()
        .unwrap()
}

#[tokio::test]
async fn notify_before_the_2xx_and_forked_notifies() {
    let alice = ua("alice").await;
    let bob = endpoint().await;
    let bob_uri = uri_of(&bob, "bob");
    let subscribing = tokio::spawn({
        let alice = alice.clone();
        async move { alice.subscribe(&bob_uri, "presence", 600, &[]).await }
    });
    let txn = next_request(&bob).await;
    let subscribe = txn.request().clone();
    assert_eq!(subscribe.method(), Some(Method::Subscribe));
    // The NOTIFY comes first, and the 2xx is still to come: the subscription starts.
    let n1 = notify_for(&bob, &subscribe, "fork1", 1, "first");
    assert_eq!(final_status(&bob, alice.endpoint(), n1).await, 200);
    let mut sub = timeout(LIMIT, subscribing).await.unwrap().unwrap().unwrap();
    let first = match next_sub(&mut sub).await {
        Some(SubscriptionEvent::Notify(n)) => n,
        other => panic!("{other:?}"),
    };
    assert_eq!(first.state, SubState::Active);
    let ok = txn
        .response(200)
        .to_tag("fork1")
        .header("Contact", format!("<{}>", uri_of(&bob, "bob")))
        .header("Expires", "600")
        .build()
        .unwrap();
    txn.respond(ok).await.unwrap();
    // A second fork NOTIFYs: a second subscription of the same SUBSCRIBE.
    let n2 = notify_for(&bob, &subscribe, "fork2", 1, "second");
    assert_eq!(final_status(&bob, alice.endpoint(), n2).await, 200);
    let second = match next_sub(&mut sub).await {
        Some(SubscriptionEvent::Notify(n)) => n,
        other => panic!("{other:?}"),
    };
    assert_ne!(first.dialog, second.dialog);
    assert_eq!(second.dialog.remote_tag, "fork2");
    assert_eq!(second.content.unwrap().body, Bytes::from("second"));
    // Another Event id is not this subscription: 489.
    let other = notify_event(&bob, &subscribe, "fork1", 2, "x", "presence;id=9");
    assert_eq!(final_status(&bob, alice.endpoint(), other).await, 489);
}

#[tokio::test]
async fn a_notify_of_no_subscription_gets_481() {
    let alice = ua("alice").await;
    let bob = endpoint().await;
    let fake = RequestBuilder::new(Method::Notify, &uri_of(alice.endpoint(), "alice"))
        .header("Via", bob.via(Transport::Udp))
        .from_addr(None, "sip:bob@example.com", "b1")
        .to_addr(None, "sip:alice@example.com", Some("nosuchtag"))
        .call_id("no-such-subscription@127.0.0.14")
        .cseq(1)
        .max_forwards(70)
        .header("Event", "presence")
        .header("Subscription-State", "active;expires=60")
        .build()
        .unwrap();
    assert_eq!(final_status(&bob, alice.endpoint(), fake).await, 481);
}

/// A SUBSCRIBE from the bare endpoint to the UA.
fn subscribe_from(ep: &Endpoint, to: &UserAgent, expires: u32) -> Message {
    RequestBuilder::new(Method::Subscribe, &uri_of(to.endpoint(), "bob"))
        .header("Via", ep.via(Transport::Udp))
        .from_addr(None, "sip:carol@example.com", &ep.new_tag())
        .to_addr(None, "sip:bob@example.com", None)
        .call_id(&ep.new_call_id())
        .cseq(1)
        .max_forwards(70)
        .contact(&uri_of(ep, "carol"))
        .header("Event", "presence")
        .header("Expires", expires.to_string())
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_481_to_a_notify_removes_the_notifier() {
    let bob = ua("bob").await;
    let mut requests = bob.subscriptions();
    let carol = endpoint().await;
    let req = subscribe_from(&carol, &bob, 600);
    let (status, inc) = tokio::join!(final_status(&carol, bob.endpoint(), req), async {
        let inc = incoming(&mut requests).await;
        inc.accept(text("hello")).await.unwrap()
    });
    assert_eq!(status, 200);
    let mut notifier = inc;
    let first = next_request(&carol).await;
    assert_eq!(first.request().method(), Some(Method::Notify));
    assert_eq!(first.request().body(), b"hello");
    respond(&first, 200).await;
    notifier.notify("text/plain", Bytes::from("again")).unwrap();
    let second = next_request(&carol).await;
    assert_eq!(second.request().body(), b"again");
    respond(&second, 481).await;
    assert_eq!(
        notifier_event(&mut notifier).await,
        NotifierEvent::Ended(NotifierEnd::Failed { status: Some(481) })
    );
    assert!(!notifier.is_active());
    assert!(notifier.notify("text/plain", Bytes::new()).is_err());
}

#[tokio::test]
async fn an_unrefreshed_subscription_expires_with_a_terminating_notify() {
    let short = NotifierConfig {
        min_expires: 1,
        ..NotifierConfig::default()
    };
    let bob = ua_with("bob", short, None).await;
    let mut requests = bob.subscriptions();
    let carol = endpoint().await;
    let req = subscribe_from(&carol, &bob, 1);
    let (status, notifier) = tokio::join!(final_status(&carol, bob.endpoint(), req), async {
        incoming(&mut requests).await.accept(None).await.unwrap()
    });
    assert_eq!(status, 200);
    let mut notifier = notifier;
    let first = next_request(&carol).await;
    respond(&first, 200).await;
    // Carol never refreshes: after 1 s the terminating NOTIFY says timeout.
    let last = next_request(&carol).await;
    let state = last
        .request()
        .header(HeaderName::SubscriptionState)
        .unwrap()
        .to_owned();
    assert!(state.starts_with("terminated;reason=timeout"), "{state}");
    respond(&last, 200).await;
    assert_eq!(
        notifier_event(&mut notifier).await,
        NotifierEvent::Ended(NotifierEnd::Expired)
    );
}

// --- presence through the domain server ------------------------------------------------

/// The domain server of `proxy --presence --users` as a library: proxy (digest for the
/// realm's users), registrar and event server on one endpoint.
async fn domain_server() -> Endpoint {
    let mut config = RegistrarConfig::new("example.com");
    // Short registrations, for a binding that expires during a test.
    config.min_expires = 1;
    let ep = endpoint().await;
    let registrar = Arc::new(Registrar::open(config));
    let identity = Identity::new(
        vec![Interface::new(Transport::Udp, addr(&ep))],
        vec!["example.com".into()],
    );
    let router = LocationRouter::new(registrar.clone(), identity.clone());
    let users =
        MemoryStore::from_users_file("alice:example.com:secret\nbob:example.com:secret\n").unwrap();
    let auth = ProxyAuth::new(
        "example.com",
        Arc::new(users),
        &[Algorithm::Md5],
        [7; 32],
        ThrottleConfig::default(),
    )
    .unwrap();
    let proxy = ProxyBuilder::new(ProxyConfig::new(identity.clone()), router)
        .auth(auth)
        .build(ep.clone());
    let events = EventServer::new(
        ep.clone(),
        identity,
        "example.com",
        vec![
            Arc::new(PresencePackage::default()),
            Arc::new(ImPackage::default()),
        ],
        EventConfig::default(),
    );
    tokio::spawn(sip_stack::events::serve(proxy, registrar, events, 2));
    ep
}

async fn basic(sub: &mut Subscription) -> (SubState, Pidf) {
    match next_sub(sub).await {
        Some(SubscriptionEvent::Notify(n)) => {
            let c = n.content.expect("a PIDF body");
            assert_eq!(c.content_type, "application/pidf+xml");
            (n.state, Pidf::parse(&c.body).unwrap())
        }
        other => panic!("expected a NOTIFY, got {other:?}"),
    }
}

#[tokio::test]
async fn a_watcher_sees_registration_as_presence() {
    let server = domain_server().await;
    let proxy = Target::new(Transport::Udp, addr(&server));
    let alice = ua_with("alice", NotifierConfig::default(), Some(proxy.clone())).await;
    let bob = ua_with("bob", NotifierConfig::default(), Some(proxy)).await;
    // Alice's SUBSCRIBE is challenged (407) and retried with her credentials.
    let mut sub = alice
        .subscribe("sip:bob@example.com", "presence", 600, &[])
        .await
        .unwrap();
    let (state, doc) = basic(&mut sub).await;
    assert_eq!(state, SubState::Active);
    assert_eq!(doc.basic(), Basic::Closed, "offline");

    let registrar = format!("sip:{}", addr(&server));
    let reg = bob.register(&registrar, 600).await.unwrap();
    let (_, doc) = basic(&mut sub).await;
    assert_eq!(doc.basic(), Basic::Open, "registered");
    assert_eq!(doc.tuples.len(), 1);
    assert_eq!(doc.tuples[0].contact.as_deref(), Some(bob.contact()));

    reg.close().await;
    let (_, doc) = basic(&mut sub).await;
    assert_eq!(doc.basic(), Basic::Closed, "unregistered");

    sub.unsubscribe().await;
    let (state, _) = basic(&mut sub).await;
    assert!(state.is_terminated());
    assert_eq!(next_sub(&mut sub).await, None);

    // Wrong credentials: the challenge is answered, the second one ends it.
    let proxy = Target::new(Transport::Udp, addr(&server));
    let mallory = UserAgent::builder(endpoint().await)
        .aor("sip:alice@example.com")
        .credentials("example.com", "alice", "wrong")
        .timers(T1, T1 * 8)
        .outbound_proxy(proxy)
        .build()
        .unwrap();
    let r = mallory
        .subscribe("sip:bob@example.com", "presence", 600, &[])
        .await;
    assert_eq!(r.unwrap_err(), UaError::AuthFailed);
}

#[tokio::test]
async fn a_binding_that_expires_shows_closed() {
    let server = domain_server().await;
    let proxy = Target::new(Transport::Udp, addr(&server));
    let alice = ua_with("alice", NotifierConfig::default(), Some(proxy)).await;
    let mut sub = alice
        .subscribe("sip:carol@example.com", "presence", 600, &[])
        .await
        .unwrap();
    assert_eq!(basic(&mut sub).await.1.basic(), Basic::Closed);
    // Carol's phone registers for 1 s and never refreshes (the realm's digest does not cover
    // REGISTER: the registrar here is open).
    let phone = endpoint().await;
    let contact = uri_of(&phone, "carol");
    let register = RequestBuilder::new(Method::Register, "sip:example.com")
        .header("Via", phone.via(Transport::Udp))
        .from_addr(None, "sip:carol@example.com", &phone.new_tag())
        .to_addr(None, "sip:carol@example.com", None)
        .call_id(&phone.new_call_id())
        .cseq(1)
        .max_forwards(70)
        .contact(&contact)
        .header("Expires", "1")
        .build()
        .unwrap();
    assert_eq!(final_status(&phone, &server, register).await, 200);
    let (_, doc) = basic(&mut sub).await;
    assert_eq!(doc.basic(), Basic::Open);
    assert_eq!(doc.tuples[0].contact.as_deref(), Some(contact.as_str()));
    // The registrar's sweep expires it: closed.
    let (state, doc) = basic(&mut sub).await;
    assert_eq!(state, SubState::Active);
    assert_eq!(doc.basic(), Basic::Closed);
}

#[tokio::test]
async fn the_rate_limit_spaces_notifies_and_coalesces_states() {
    let alice = ua("alice").await;
    // At most one NOTIFY a second; one state queued, the latest (presence-like).
    let limited = NotifierConfig {
        min_interval: Duration::from_secs(1),
        queue_limit: 1,
        ..NotifierConfig::default()
    };
    let bob = ua_with("bob", limited, None).await;
    let mut requests = bob.subscriptions();
    let bob_uri = uri_of(bob.endpoint(), "bob");
    let sub = subscribe(&alice, &bob_uri, "presence", 600, &[]);
    let notifier = incoming(&mut requests)
        .await
        .accept(text("initial"))
        .await
        .unwrap();
    let mut sub = subscribed(sub).await.unwrap();
    assert_eq!(notified(&mut sub).await.1, "initial");
    let first = std::time::Instant::now();
    for s in ["a", "b", "c"] {
        notifier.notify("text/plain", Bytes::from(s)).unwrap();
    }
    assert_eq!(notified(&mut sub).await.1, "c", "a and b were coalesced");
    // Sent no sooner than a second after the first (received a moment after it was sent).
    assert!(
        first.elapsed() >= Duration::from_millis(500),
        "{:?}",
        first.elapsed()
    );
}
