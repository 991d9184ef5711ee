//! The presence server and IM broker on loopback with real Endpoints: a [`Watcher`] on a
//! user's presence (closed while offline, open after a PUBLISH, closed after a SIP-If-Match
//! PUBLISH, terminated after unsubscribe), three watchers on an im topic receiving ten
//! messages in order, 412 and 489, and the broker's 503 when a subscriber's queue is full.
//! Awaits are bounded; nothing sleeps.

use std::sync::Arc;
use std::time::Duration;

use sip_stack::auth::{MemoryStore, ThrottleConfig};
use sip_stack::core::auth::Algorithm;
use sip_stack::core::builder::RequestBuilder;
use sip_stack::core::{HeaderName, Message, Method, Target, Transport};
use sip_stack::dialog::subscription::SubState;
use sip_stack::endpoint::Endpoint;
use sip_stack::events::pidf::{Basic, Pidf};
use sip_stack::events::{
    Authorization, EventConfig, EventServer, ImPackage, PresencePackage, Subscription, Watcher,
    WatcherConfig,
};
use sip_stack::proxy::{Identity, Interface, LocationRouter, ProxyAuth, ProxyBuilder, ProxyConfig};
use sip_stack::registrar::{Registrar, RegistrarConfig};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

async fn endpoint() -> Endpoint {
    Endpoint::builder()
        .udp("127.0.0.4:0".parse().unwrap())
        .build()
        .await
        .unwrap()
}

async fn start_server(config: EventConfig) -> (Endpoint, Arc<EventServer>) {
    start_server_with(config, false).await
}

async fn start_server_with(config: EventConfig, digest: bool) -> (Endpoint, Arc<EventServer>) {
    start_server_full(config, digest, Arc::new(PresencePackage::default())).await
}

async fn start_server_full(
    config: EventConfig,
    digest: bool,
    presence: Arc<PresencePackage>,
) -> (Endpoint, Arc<EventServer>) {
    let ep = endpoint().await;
    let registrar = Arc::new(Registrar::open(RegistrarConfig::new("example.com")));
    let interfaces = vec![Interface::new(
        Transport::Udp,
        ep.local_addr(Transport::Udp).unwrap(),
    )];
    let identity = Identity::new(interfaces, vec!["example.com".into()]);
    let router = LocationRouter::new(registrar.clone(), identity.clone());
    let mut proxy = ProxyBuilder::new(ProxyConfig::new(identity.clone()), router);
    if digest {
        let users = MemoryStore::from_users_file("alice:example.com:secret\n").unwrap();
        proxy = proxy.auth(
            ProxyAuth::new(
                "example.com",
                Arc::new(users),
                &[Algorithm::Md5],
                [7; 32],
                ThrottleConfig::default(),
            )
            .unwrap(),
        );
    }
    let proxy = proxy.build(ep.clone());
    let events = EventServer::new(
        ep.clone(),
        identity,
        "example.com",
        vec![presence, Arc::new(ImPackage::default())],
        config,
    );
    tokio::spawn(sip_stack::events::serve(
        proxy,
        registrar,
        events.clone(),
        2,
    ));
    (ep, events)
}

fn target(server: &Endpoint) -> Target {
    Target::new(Transport::Udp, server.local_addr(Transport::Udp).unwrap())
}

async fn watcher_with(server: &Endpoint, user: &str, buffer: usize) -> Watcher {
    let ep = endpoint().await;
    let contact = format!("sip:{user}@{}", ep.local_addr(Transport::Udp).unwrap());
    let from = format!("sip:{user}@example.com");
    let mut config = WatcherConfig::new(&from, &contact, target(server));
    config.buffer = buffer;
    Watcher::start(ep, config)
}

async fn watcher(server: &Endpoint, user: &str) -> Watcher {
    watcher_with(server, user, 64).await
}

fn pidf(basic: &str) -> String {
    format!(
        "<?xml version='1.0'?><presence xmlns='urn:ietf:params:xml:ns:pidf' \
         entity='sip:bob@example.com'><tuple id='t1'><status><basic>{basic}</basic></status>\
         </tuple></presence>"
    )
}

async fn send(client: &Endpoint, server: &Endpoint, req: Message) -> Message {
    let mut t = client.request(req, target(server)).await.unwrap();
    timeout(WAIT, t.final_response()).await.unwrap().unwrap()
}

fn publish(client: &Endpoint, event: &str, etag: Option<&str>, body: Option<String>) -> Message {
    let mut b = RequestBuilder::new(Method::Publish, "sip:bob@example.com")
        .header("Via", client.via(Transport::Udp))
        .from_addr(None, "sip:bob@example.com", &client.new_tag())
        .to_addr(None, "sip:bob@example.com", None)
        .call_id(&client.new_call_id())
        .cseq(1)
        .max_forwards(70)
        .header("Event", event)
        .header("Expires", "600");
    if let Some(t) = etag {
        b = b.header("SIP-If-Match", t);
    }
    if let Some(body) = body {
        b = b.body("application/pidf+xml", body);
    }
    b.build().unwrap()
}

fn message(client: &Endpoint, to: &str, text: &str) -> Message {
    RequestBuilder::new(Method::Message, to)
        .header("Via", client.via(Transport::Udp))
        .from_addr(None, "sip:pub@example.com", &client.new_tag())
        .to_addr(None, to, None)
        .call_id(&client.new_call_id())
        .cseq(1)
        .max_forwards(70)
        .body("text/plain", text.to_owned())
        .build()
        .unwrap()
}

async fn next_basic(sub: &mut Subscription) -> (SubState, Basic) {
    let n = timeout(WAIT, sub.next()).await.unwrap().unwrap();
    let body = n.content.expect("a PIDF body").body;
    (n.state, Pidf::parse(&body).unwrap().basic())
}

#[tokio::test]
async fn presence_watcher_follows_publications() {
    let (server, _events) = start_server(EventConfig::default()).await;
    let w = watcher(&server, "alice").await;
    let mut sub = w
        .subscribe("sip:bob@example.com", "presence")
        .await
        .unwrap();
    // Offline: closed.
    assert_eq!(
        next_basic(&mut sub).await,
        (SubState::Active, Basic::Closed)
    );

    let client = endpoint().await;
    let ok = send(
        &client,
        &server,
        publish(&client, "presence", None, Some(pidf("open"))),
    )
    .await;
    assert_eq!(ok.status(), Some(200));
    let etag = ok.header(HeaderName::SipETag).unwrap().to_owned();
    assert_eq!(next_basic(&mut sub).await.1, Basic::Open);

    let ok = send(
        &client,
        &server,
        publish(&client, "presence", Some(&etag), Some(pidf("closed"))),
    )
    .await;
    assert_eq!(ok.status(), Some(200));
    assert_eq!(next_basic(&mut sub).await.1, Basic::Closed);

    // The old tag is gone: 412. An unknown package: 489 with Allow-Events.
    let stale = send(
        &client,
        &server,
        publish(&client, "presence", Some(&etag), None),
    )
    .await;
    assert_eq!(stale.status(), Some(412));
    let bad = send(
        &client,
        &server,
        publish(&client, "dialog", None, Some(pidf("open"))),
    )
    .await;
    assert_eq!(bad.status(), Some(489));
    assert!(bad.header(HeaderName::AllowEvents).is_some());

    sub.unsubscribe().await;
    let last = timeout(WAIT, sub.next()).await.unwrap().unwrap();
    assert!(last.state.is_terminated());
    assert!(timeout(WAIT, sub.next()).await.unwrap().is_none());
}

#[tokio::test]
async fn three_topic_subscribers_get_ten_messages_in_order() {
    let (server, events) = start_server(EventConfig::default()).await;
    let mut subs = Vec::new();
    for i in 0..3 {
        let w = watcher(&server, &format!("s{i}")).await;
        let mut sub = w.subscribe("sip:news@example.com", "im").await.unwrap();
        // The immediate NOTIFY: active, no body.
        let first = timeout(WAIT, sub.next()).await.unwrap().unwrap();
        assert_eq!(first.state, SubState::Active);
        assert!(first.content.is_none());
        subs.push((w, sub));
    }
    let client = endpoint().await;
    for i in 0..10 {
        let r = send(
            &client,
            &server,
            message(&client, "sip:news@example.com", &format!("m{i}")),
        )
        .await;
        assert_eq!(r.status(), Some(200));
    }
    for (_, sub) in &mut subs {
        for i in 0..10 {
            let n = timeout(WAIT, sub.next()).await.unwrap().unwrap();
            let c = n.content.unwrap();
            assert_eq!(c.content_type, "text/plain");
            assert_eq!(&c.body[..], format!("m{i}").as_bytes());
        }
    }
    let s = events.stats();
    assert_eq!((s.topics, s.subscriptions, s.messages), (1, 3, 10));
}

#[tokio::test]
async fn a_full_subscriber_queue_answers_503_with_retry_after() {
    let mut config = EventConfig::default();
    config.message_notifier.queue_limit = 1;
    let (server, events) = start_server(config).await;
    // The application stops reading: the Watcher answers a NOTIFY only once its buffer (one
    // notification) has room, so the broker's NOTIFYs stall and its queue of one fills.
    let w = watcher_with(&server, "slow", 1).await;
    let mut sub = w.subscribe("sip:busy@example.com", "im").await.unwrap();
    let _initial = timeout(WAIT, sub.next()).await.unwrap().unwrap();
    let client = endpoint().await;
    let mut statuses = Vec::new();
    for i in 0..80 {
        let r = send(
            &client,
            &server,
            message(&client, "sip:busy@example.com", &format!("m{i}")),
        )
        .await;
        statuses.push(r.status().unwrap());
        if r.status() == Some(503) {
            assert!(r.header(HeaderName::RetryAfter).is_some());
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&503), "{statuses:?}");
    assert!(events.stats().refused >= 1);
}

#[tokio::test]
async fn the_realms_users_authenticate_before_subscribing() {
    let (server, _events) = start_server_with(EventConfig::default(), true).await;
    let w = watcher(&server, "alice").await;
    let mut sub = w
        .subscribe("sip:bob@example.com", "presence")
        .await
        .unwrap();
    // The Watcher has no credentials: the 407 ends the subscription before any NOTIFY.
    assert!(timeout(WAIT, sub.next()).await.unwrap().is_none());
    let client = endpoint().await;
    let r = send(
        &client,
        &server,
        publish(&client, "presence", None, Some(pidf("open"))),
    )
    .await;
    assert_eq!(r.status(), Some(407));
}

#[tokio::test]
async fn a_pending_watcher_gets_state_once_authorized() {
    let ask_bob = Arc::new(|_: &str, _: &str| Authorization::Pending);
    let presence = Arc::new(PresencePackage::with_authorizer(ask_bob));
    let (server, events) = start_server_full(EventConfig::default(), false, presence).await;
    let w = watcher(&server, "alice").await;
    let mut sub = w
        .subscribe("sip:bob@example.com", "presence")
        .await
        .unwrap();
    let first = timeout(WAIT, sub.next()).await.unwrap().unwrap();
    assert_eq!(first.state, SubState::Pending);
    assert!(first.content.is_none(), "no state before authorization");
    assert_eq!(events.activate("presence", "sip:bob@example.com"), 1);
    assert_eq!(
        next_basic(&mut sub).await,
        (SubState::Active, Basic::Closed)
    );
}
