//! The presence server and IM broker on an [`Endpoint`]: SUBSCRIBE and PUBLISH for the
//! domain's event packages, the `im` topics, and the MESSAGE store.
//!
//! State lives behind one mutex that is never held across an await. Each subscription has at
//! most one NOTIFY transaction outstanding (its [`Notifier`] decides); the task that sends it
//! awaits the final response, then takes the next. A sweeper expires publications and
//! subscriptions and releases rate-limited NOTIFYs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sip_core::uri::Uri;
use sip_core::{Flow, HeaderName, Message, Method, Target, Transport};
use sip_dialog::publication::{Compositor, CompositorConfig, PublishRequest};
use sip_dialog::subscription::{
    check_event, Content, Notifier, NotifierConfig, NotifyOutcome, Refusal,
};
use sip_dialog::DialogId;

/// A subscription's key: its dialog ID, shared by the map and the resource index.
type SubId = Arc<DialogId>;
use tracing::debug;

use super::package::{Authorization, EventPackage, PackageKind};
use super::store::{MessageStore, MessageStoreLimits};
use crate::endpoint::{Endpoint, ServerTransaction};
use crate::proxy::Identity;
use crate::registrar::Binding;

/// Caps of the `im` broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerLimits {
    /// Topics (a topic exists while it has subscribers).
    pub max_topics: usize,
    /// Subscribers per topic.
    pub max_subscribers_per_topic: usize,
    /// Bytes queued for NOTIFYs over all topics.
    pub max_queued_bytes: usize,
}

impl Default for BrokerLimits {
    fn default() -> Self {
        BrokerLimits {
            max_topics: 10_000,
            max_subscribers_per_topic: 10_000,
            max_queued_bytes: 64 << 20,
        }
    }
}

/// Settings of an [`EventServer`].
#[derive(Debug, Clone)]
pub struct EventConfig {
    /// Subscriptions of state packages (presence).
    pub state_notifier: NotifierConfig,
    /// Subscriptions of message packages (im).
    pub message_notifier: NotifierConfig,
    /// The event state compositor.
    pub compositor: CompositorConfig,
    /// The broker's caps.
    pub broker: BrokerLimits,
    /// The MESSAGE store's caps.
    pub store: MessageStoreLimits,
    /// Subscriptions in all.
    pub max_subscriptions: usize,
    /// The Retry-After of a 503 when a cap is hit.
    pub retry_after: u32,
}

impl Default for EventConfig {
    fn default() -> Self {
        EventConfig {
            state_notifier: NotifierConfig::default(),
            message_notifier: NotifierConfig {
                queue_limit: 64,
                overflow: sip_dialog::subscription::Overflow::Reject,
                ..NotifierConfig::default()
            },
            compositor: CompositorConfig::default(),
            broker: BrokerLimits::default(),
            store: MessageStoreLimits::default(),
            max_subscriptions: 100_000,
            retry_after: 5,
        }
    }
}

/// Counters and gauges of an [`EventServer`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventStats {
    /// Live `im` topics.
    pub topics: usize,
    /// Live subscriptions (every package).
    pub subscriptions: usize,
    /// Live publications (state packages).
    pub publications: usize,
    /// NOTIFY contents queued over all subscriptions.
    pub queue_depth: usize,
    /// Their bytes.
    pub queued_bytes: usize,
    /// Messages stored for offline users.
    pub stored: usize,
    /// Messages published to topics (MESSAGE or PUBLISH), accepted.
    pub messages: u64,
    /// NOTIFYs sent.
    pub notifies: u64,
    /// NOTIFYs that failed (error response or timeout): their subscriptions were removed.
    pub notifies_failed: u64,
    /// Requests refused with 503 because a cap was hit.
    pub refused: u64,
    /// Stored messages delivered.
    pub delivered: u64,
}

#[derive(Default)]
struct Counters {
    messages: AtomicU64,
    notifies: AtomicU64,
    notifies_failed: AtomicU64,
    refused: AtomicU64,
    delivered: AtomicU64,
}

struct Sub {
    notifier: Notifier,
    flow: Flow,
    resource: String,
    package: usize,
}

struct Inner {
    /// Boxed: a slot of the map is then a pointer, and the map keeps ~1.8 slots per entry.
    subs: HashMap<SubId, Box<Sub>>,
    /// Subscriptions by (package, resource), in subscription order: a topic's subscribers
    /// for `im`, a presentity's watchers for `presence`.
    by_resource: HashMap<(usize, String), Vec<SubId>>,
    /// One compositor per package (unused for message packages).
    compositors: Vec<Compositor>,
    /// The contacts of each AOR's live registrations (sorted), for packages that compose
    /// them ([`EventServer::set_registered`]); AORs without any have no entry.
    registered: HashMap<String, Vec<String>>,
    queued_bytes: usize,
    store: MessageStore,
}

/// What the server did with a request.
#[derive(Debug)]
pub enum Handled {
    /// Answered here.
    Done,
    /// Not for the event server: route it (boxed: a transaction handle is large).
    Route(Box<ServerTransaction>),
}

/// The presence server and IM broker.
pub struct EventServer {
    endpoint: Endpoint,
    identity: Identity,
    realm: String,
    packages: Vec<Arc<dyn EventPackage>>,
    config: EventConfig,
    inner: Mutex<Inner>,
    counters: Counters,
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The registered contacts of `aor` (none when it has no entry).
fn registered_of<'a>(registered: &'a HashMap<String, Vec<String>>, aor: &str) -> &'a [String] {
    registered.get(aor).map_or(&[], Vec::as_slice)
}

fn is_message_package(p: &dyn EventPackage) -> bool {
    p.kind() == PackageKind::Messages
}

impl EventServer {
    /// A server for the domains of `identity` (`realm` stands for our own address in a
    /// Request-URI) with these packages.
    pub fn new(
        endpoint: Endpoint,
        identity: Identity,
        realm: &str,
        packages: Vec<Arc<dyn EventPackage>>,
        config: EventConfig,
    ) -> Arc<EventServer> {
        let salt = u64::from(std::process::id()) << 32
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
        let compositors = packages
            .iter()
            .enumerate()
            .map(|(i, _)| Compositor::new(config.compositor.clone(), salt.wrapping_add(i as u64)))
            .collect();
        Arc::new(EventServer {
            endpoint,
            identity,
            realm: realm.to_ascii_lowercase(),
            packages,
            inner: Mutex::new(Inner {
                subs: HashMap::new(),
                by_resource: HashMap::new(),
                compositors,
                registered: HashMap::new(),
                queued_bytes: 0,
                store: MessageStore::new(config.store),
            }),
            config,
            counters: Counters::default(),
        })
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// A snapshot of the statistics.
    pub fn stats(&self) -> EventStats {
        let g = lock(&self.inner);
        let topics = g
            .by_resource
            .keys()
            .filter(|(p, _)| {
                self.packages
                    .get(*p)
                    .is_some_and(|p| is_message_package(&**p))
            })
            .count();
        let c = &self.counters;
        EventStats {
            topics,
            subscriptions: g.subs.len(),
            publications: g.compositors.iter().map(|c| c.counts().1).sum(),
            queue_depth: g.subs.values().map(|s| s.notifier.queued().0).sum(),
            queued_bytes: g.subs.values().map(|s| s.notifier.queued().1).sum(),
            stored: g.store.len(),
            messages: c.messages.load(Ordering::Relaxed),
            notifies: c.notifies.load(Ordering::Relaxed),
            notifies_failed: c.notifies_failed.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            delivered: c.delivered.load(Ordering::Relaxed),
        }
    }

    /// Heap bytes the subscriptions hold (dialogs, queues, indexes), for the per-subscription
    /// memory figure.
    pub fn subscription_bytes(&self) -> usize {
        let g = lock(&self.inner);
        // The map's slot, the shared key (Arc counts and the ID), the index's pointer.
        let per_entry = std::mem::size_of::<Sub>()
            + 2 * std::mem::size_of::<usize>()
            + std::mem::size_of::<DialogId>()
            + std::mem::size_of::<SubId>();
        let slots = (g.subs.capacity() + 1) * std::mem::size_of::<(SubId, Box<Sub>)>();
        let entries: usize = g
            .subs
            .iter()
            .map(|(id, s)| {
                per_entry + id.heap_size() + s.notifier.heap_size() + s.resource.capacity()
            })
            .sum();
        slots + entries
    }

    /// The AOR (`sip:user@domain`) a Request-URI of ours stands for; `None` for another
    /// domain or a URI without a user.
    pub fn resource_of(&self, request: &Message) -> Option<String> {
        let uri = Uri::parse(request.uri_str()?).ok()?;
        if !self.identity.serves(&uri) {
            return None;
        }
        let user = uri.user()?;
        let host = uri.host_str().to_ascii_lowercase();
        let domain = if self.identity.is_our_domain(&host) {
            host
        } else {
            self.realm.clone()
        };
        Some(format!("sip:{user}@{domain}"))
    }

    fn package(&self, name: &str) -> Option<usize> {
        self.packages
            .iter()
            .position(|p| p.name().eq_ignore_ascii_case(name))
    }

    fn names(&self) -> Vec<&str> {
        self.packages.iter().map(|p| p.name()).collect()
    }

    /// True when `resource` is a topic with subscribers of a message package.
    pub fn is_topic(&self, resource: &str) -> bool {
        let g = lock(&self.inner);
        self.packages
            .iter()
            .enumerate()
            .filter(|(_, p)| is_message_package(&***p))
            .any(|(i, _)| g.by_resource.contains_key(&(i, resource.to_owned())))
    }

    async fn respond(
        &self,
        txn: &ServerTransaction,
        response: Result<Message, impl std::fmt::Display>,
    ) {
        match response {
            Ok(r) => {
                if let Err(e) = txn.respond(r).await {
                    debug!(error = %e, "response not sent");
                }
            }
            Err(e) => debug!(error = %e, "response not built"),
        }
    }

    async fn status(&self, txn: &ServerTransaction, status: u16) {
        let mut b = txn.response(status);
        if status == 489 {
            b = b.header("Allow-Events", self.names().join(", "));
        }
        if status == 503 {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            b = b.header("Retry-After", self.config.retry_after.to_string());
        }
        self.respond(txn, b.build()).await;
    }

    /// Handles SUBSCRIBE, PUBLISH and MESSAGE meant for the event server; anything else (and
    /// those for other domains, or for users rather than topics) comes back to be routed.
    /// `online` says whether a user has bindings (for the MESSAGE store); it is asked only for
    /// a MESSAGE to a user of ours that is not a topic.
    pub async fn handle<F, Fut>(self: &Arc<Self>, txn: ServerTransaction, online: F) -> Handled
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let req = txn.request();
        match req.method() {
            Some(Method::Subscribe) => self.subscribe(txn).await,
            Some(Method::Publish) => match self.resource_of(req) {
                Some(r) => {
                    self.publish(&txn, r).await;
                    Handled::Done
                }
                None => Handled::Route(Box::new(txn)),
            },
            Some(Method::Message) => {
                let Some(resource) = self.resource_of(req) else {
                    return Handled::Route(Box::new(txn));
                };
                if self.is_topic(&resource) {
                    let content = Content::of(req);
                    let status = self.publish_message(&resource, content);
                    self.status(&txn, status).await;
                    return Handled::Done;
                }
                if req.to().ok().and_then(|t| t.tag()).is_some() || online(resource.clone()).await {
                    return Handled::Route(Box::new(txn));
                }
                let stored = lock(&self.inner).store.store(&resource, req.clone());
                let status = if stored.is_ok() { 202 } else { 503 };
                self.status(&txn, status).await;
                Handled::Done
            }
            _ => Handled::Route(Box::new(txn)),
        }
    }

    async fn subscribe(self: &Arc<Self>, txn: ServerTransaction) -> Handled {
        let req = txn.request();
        if let Some(id) = DialogId::of_incoming_request(req) {
            return self.resubscribe(txn, id).await;
        }
        let Some(resource) = self.resource_of(req) else {
            return Handled::Route(Box::new(txn));
        };
        let names = self.names();
        let key = match check_event(req, &names) {
            Ok(k) => k,
            Err(s) => {
                self.status(&txn, s).await;
                return Handled::Done;
            }
        };
        let Some(pi) = self.package(&key.package) else {
            self.status(&txn, 489).await;
            return Handled::Done;
        };
        let package = self.packages[pi].clone();
        let watcher = req
            .from()
            .ok()
            .map(|f| f.uri_str().to_owned())
            .unwrap_or_default();
        let pending = match package.authorize(&watcher, &resource) {
            Authorization::Accept => false,
            Authorization::Pending => true,
            Authorization::Reject(s) => {
                self.status(&txn, s).await;
                return Handled::Done;
            }
        };
        let messages = is_message_package(&*package);
        let config = if messages {
            self.config.message_notifier.clone()
        } else {
            self.config.state_notifier.clone()
        };
        let flow = txn.flow();
        let contact = self.local_contact(flow);
        let now = Instant::now();
        let accepted = Notifier::accept(now, req, txn.to_tag(), &contact, pending, config);
        let (mut notifier, expires) = match accepted {
            Ok(a) => a,
            Err(r) => {
                self.refuse(&txn, r).await;
                return Handled::Done;
            }
        };
        let response = notifier.response(req, expires);
        let id: SubId = Arc::new(notifier.dialog().id().clone());
        let refused = {
            let mut g = lock(&self.inner);
            let full = g.subs.len() >= self.config.max_subscriptions
                || (messages
                    && match g.by_resource.get(&(pi, resource.clone())) {
                        Some(v) => v.len() >= self.config.broker.max_subscribers_per_topic,
                        None => {
                            g.by_resource.keys().filter(|(p, _)| *p == pi).count()
                                >= self.config.broker.max_topics
                        }
                    });
            if full || g.subs.contains_key(&id) {
                true
            } else {
                // The immediate NOTIFY: the current state (none for a message package).
                let state = if pending {
                    None
                } else {
                    self.compose_state(&g, pi, &resource)
                };
                let _ = match state {
                    Some(c) => notifier.notify(c),
                    None => notifier.notify_empty(),
                };
                g.by_resource
                    .entry((pi, resource.clone()))
                    .or_default()
                    .push(id.clone());
                g.subs.insert(
                    id.clone(),
                    Box::new(Sub {
                        notifier,
                        flow,
                        resource,
                        package: pi,
                    }),
                );
                false
            }
        };
        if refused {
            self.status(&txn, 503).await;
            return Handled::Done;
        }
        self.respond(&txn, response).await;
        self.pump(id);
        Handled::Done
    }

    async fn refuse(&self, txn: &ServerTransaction, r: Refusal) {
        let resp = r.response(txn.request());
        self.respond(txn, resp).await;
    }

    /// A SUBSCRIBE in one of our subscriptions: refresh or unsubscribe.
    async fn resubscribe(self: &Arc<Self>, txn: ServerTransaction, id: DialogId) -> Handled {
        let req = txn.request();
        let now = Instant::now();
        let outcome = {
            let mut g = lock(&self.inner);
            let inner = &mut *g;
            let key = inner.subs.get_key_value(&id).map(|(k, _)| k.clone());
            match key.and_then(|k| inner.subs.get_mut(&k).map(|s| (k, s))) {
                None => None,
                Some((key, sub)) => Some(match sub.notifier.on_subscribe(now, req) {
                    Ok(expires) => {
                        if expires == 0 {
                            // §4.2.1.4: the terminating NOTIFY carries the current state.
                            let p = &self.packages[sub.package];
                            let pubs = inner.compositors[sub.package].publications(&sub.resource);
                            let registered = registered_of(&inner.registered, &sub.resource);
                            if let Some(c) = p.compose_registered(&sub.resource, pubs, registered) {
                                let _ = sub.notifier.notify(c);
                            }
                        }
                        Ok((key, sub.notifier.response(req, expires)))
                    }
                    Err(r) => Err((key, r)),
                }),
            }
        };
        match outcome {
            None => {
                // Not ours: a subscription that ended here, or a dialog between two others.
                let to_us = Uri::parse(req.uri_str().unwrap_or_default())
                    .is_ok_and(|u| u.user().is_none() && self.identity.is_us(&u));
                if to_us {
                    self.status(&txn, 481).await;
                    return Handled::Done;
                }
                return Handled::Route(Box::new(txn));
            }
            Some(Ok((key, resp))) => {
                self.respond(&txn, resp).await;
                self.pump(key);
            }
            Some(Err((key, r))) => {
                self.refuse(&txn, r).await;
                self.pump(key);
            }
        }
        Handled::Done
    }

    async fn publish(self: &Arc<Self>, txn: &ServerTransaction, resource: String) {
        let req = txn.request();
        let names = self.names();
        let key = match check_event(req, &names) {
            Ok(k) => k,
            Err(s) => return self.status(txn, s).await,
        };
        let Some(pi) = self.package(&key.package) else {
            return self.status(txn, 489).await;
        };
        let package = self.packages[pi].clone();
        let preq = match PublishRequest::of(req) {
            Ok(p) => p,
            Err(s) => return self.status(txn, s).await,
        };
        if let Some(c) = &preq.content {
            if let Err(s) = package.check(c) {
                return self.status(txn, s).await;
            }
        }
        if is_message_package(&*package) {
            // A PUBLISH to a topic publishes a message, like a MESSAGE.
            let status = self.publish_message(&resource, preq.content);
            if status != 200 {
                return self.status(txn, status).await;
            }
            let etag = format!("m{}", self.counters.messages.load(Ordering::Relaxed));
            let resp = txn
                .response(200)
                .header("SIP-ETag", etag)
                .header("Expires", "0")
                .build();
            return self.respond(txn, resp).await;
        }
        let now = Instant::now();
        let (result, changed_ids) = {
            let mut g = lock(&self.inner);
            let result = g.compositors[pi].publish(now, &resource, preq);
            let ids = match &result {
                Ok(p) if p.changed => self.queue_state(&mut g, pi, &resource),
                _ => Vec::new(),
            };
            (result, ids)
        };
        let resp = match result {
            Ok(p) => p.response(req),
            Err(e) => e.response(req),
        };
        self.respond(txn, resp).await;
        for id in changed_ids {
            self.pump(id);
        }
    }

    /// The state of `resource` in package `pi`: its publications and registrations composed.
    fn compose_state(&self, g: &Inner, pi: usize, resource: &str) -> Option<Content> {
        let pubs = g.compositors[pi].publications(resource);
        let registered = registered_of(&g.registered, resource);
        self.packages[pi].compose_registered(resource, pubs, registered)
    }

    /// The live registrations of `aor` are now `contacts` (the reachable contacts of its
    /// bindings; empty when it has none): the registrar's part of the state that packages
    /// compose ([`EventPackage::compose_registered`]; presence shows a registered user without
    /// publications `open`). Watchers whose composed state changed get a NOTIFY. Returns how
    /// many were notified.
    pub fn set_registered(self: &Arc<Self>, aor: &str, mut contacts: Vec<String>) -> usize {
        contacts.sort();
        contacts.dedup();
        let ids = {
            let mut g = lock(&self.inner);
            if registered_of(&g.registered, aor) == contacts.as_slice() {
                return 0;
            }
            let state_packages: Vec<usize> = (0..self.packages.len())
                .filter(|&pi| !is_message_package(&*self.packages[pi]))
                .filter(|&pi| g.by_resource.contains_key(&(pi, aor.to_owned())))
                .collect();
            let before: Vec<Option<Content>> = state_packages
                .iter()
                .map(|&pi| self.compose_state(&g, pi, aor))
                .collect();
            if contacts.is_empty() {
                g.registered.remove(aor);
            } else {
                g.registered.insert(aor.to_owned(), contacts);
            }
            let mut ids = Vec::new();
            for (pi, before) in state_packages.into_iter().zip(before) {
                if self.compose_state(&g, pi, aor) != before {
                    ids.extend(self.queue_state(&mut g, pi, aor));
                }
            }
            ids
        };
        let n = ids.len();
        for id in ids {
            self.pump(id);
        }
        n
    }

    /// Queues the composed state of `resource` to its watchers; returns them.
    fn queue_state(&self, g: &mut Inner, pi: usize, resource: &str) -> Vec<SubId> {
        let Some(ids) = g.by_resource.get(&(pi, resource.to_owned())) else {
            return Vec::new();
        };
        let ids = ids.clone();
        let Some(content) = self.compose_state(g, pi, resource) else {
            return Vec::new();
        };
        for id in &ids {
            if let Some(s) = g.subs.get_mut(id) {
                if !s.notifier.is_terminating() {
                    let _ = s.notifier.notify(content.clone());
                }
            }
        }
        ids
    }

    /// The application authorized the pending watchers of `resource` in `package` (their
    /// [`EventPackage::authorize`] said [`Authorization::Pending`]): they become active and
    /// get the current state. Returns how many were activated.
    pub fn activate(self: &Arc<Self>, package: &str, resource: &str) -> usize {
        let Some(pi) = self.package(package) else {
            return 0;
        };
        let ids: Vec<SubId> = {
            let mut g = lock(&self.inner);
            let inner = &mut *g;
            let Some(ids) = inner.by_resource.get(&(pi, resource.to_owned())) else {
                return 0;
            };
            let state = self.compose_state(inner, pi, resource);
            let mut activated = Vec::new();
            for id in ids {
                if let Some(sub) = inner.subs.get_mut(id) {
                    if *sub.notifier.state() == sip_dialog::subscription::SubState::Pending {
                        sub.notifier.activate();
                        let _ = match &state {
                            Some(c) => sub.notifier.notify(c.clone()),
                            None => sub.notifier.notify_empty(),
                        };
                        activated.push(id.clone());
                    }
                }
            }
            activated
        };
        let n = ids.len();
        for id in ids {
            self.pump(id);
        }
        n
    }

    /// Fans a message out to every active subscriber of the topic `resource` (in the order
    /// published: the queues are filled under one lock). 200 when accepted, 503 when a queue
    /// or the byte cap has no room (nothing is queued then), 404 when the topic is gone.
    pub fn publish_message(self: &Arc<Self>, resource: &str, content: Option<Content>) -> u16 {
        let Some(content) = content else {
            return 400;
        };
        let ids = {
            let mut g = lock(&self.inner);
            let Some(pi) = self
                .packages
                .iter()
                .enumerate()
                .filter(|(_, p)| is_message_package(&***p))
                .map(|(i, _)| i)
                .find(|i| g.by_resource.contains_key(&(*i, resource.to_owned())))
            else {
                return 404;
            };
            let ids = g.by_resource[&(pi, resource.to_owned())].clone();
            let live: Vec<&SubId> = ids
                .iter()
                .filter(|id| {
                    g.subs.get(*id).is_some_and(|s| {
                        !s.notifier.is_terminating()
                            && *s.notifier.state() == sip_dialog::subscription::SubState::Active
                    })
                })
                .collect();
            let size = content.size();
            let room = live
                .iter()
                .all(|id| g.subs.get(*id).is_some_and(|s| s.notifier.has_room(1)));
            if !room || g.queued_bytes + size * live.len() > self.config.broker.max_queued_bytes {
                drop(g);
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                return 503;
            }
            let live: Vec<SubId> = live.into_iter().cloned().collect();
            for id in &live {
                if let Some(s) = g.subs.get_mut(id) {
                    if s.notifier.notify(content.clone()).is_ok() {
                        g.queued_bytes += size;
                    }
                }
            }
            live
        };
        self.counters.messages.fetch_add(1, Ordering::Relaxed);
        for id in ids {
            self.pump(id);
        }
        200
    }

    fn local_contact(&self, flow: Flow) -> String {
        let host = self
            .endpoint
            .advertised(flow.transport)
            .unwrap_or_else(|| flow.local.to_string());
        match flow.transport {
            Transport::Udp => format!("sip:{host}"),
            t => format!("sip:{host};transport={}", t.as_str().to_ascii_lowercase()),
        }
    }

    /// Sends the subscription's next NOTIFY if one may go now.
    fn pump(self: &Arc<Self>, id: SubId) {
        let now = Instant::now();
        let next = {
            let mut g = lock(&self.inner);
            let inner = &mut *g;
            let Some(sub) = inner.subs.get_mut(&id) else {
                return;
            };
            if sub.notifier.is_done() {
                Self::remove(inner, &id);
                return;
            }
            let before = sub.notifier.queued().1;
            let via = self.endpoint.via(sub.flow.transport);
            let m = sub.notifier.poll_notify(now, &via);
            let sent = before - sub.notifier.queued().1;
            let flow = sub.flow;
            if is_message_package(&*self.packages[sub.package]) {
                inner.queued_bytes = inner.queued_bytes.saturating_sub(sent);
            }
            m.map(|m| (m, flow))
        };
        let Some((notify, flow)) = next else {
            return;
        };
        let me = self.clone();
        tokio::spawn(async move {
            me.counters.notifies.fetch_add(1, Ordering::Relaxed);
            let target = Target::new(flow.transport, flow.remote);
            let status = match me.endpoint.request(notify, target).await {
                Ok(mut ct) => ct.final_response().await.ok().and_then(|r| r.status()),
                Err(e) => {
                    debug!(error = %e, "NOTIFY not sent");
                    None
                }
            };
            let removed = {
                let mut g = lock(&me.inner);
                let inner = &mut *g;
                match inner.subs.get_mut(&id) {
                    Some(sub) => {
                        let o = sub.notifier.on_notify_response(status);
                        if o == NotifyOutcome::Removed {
                            Self::remove(inner, &id);
                        }
                        o == NotifyOutcome::Removed
                    }
                    None => true,
                }
            };
            if !status.is_some_and(|s| (200..300).contains(&s)) {
                me.counters.notifies_failed.fetch_add(1, Ordering::Relaxed);
            }
            if !removed {
                me.pump(id);
            }
        });
    }

    fn remove(inner: &mut Inner, id: &SubId) {
        let Some(sub) = inner.subs.remove(id) else {
            return;
        };
        inner.queued_bytes = inner.queued_bytes.saturating_sub(sub.notifier.queued().1);
        let key = (sub.package, sub.resource);
        if let Some(v) = inner.by_resource.get_mut(&key) {
            v.retain(|x| x != id);
            if v.is_empty() {
                inner.by_resource.remove(&key);
            }
        }
    }

    /// Expires publications (watchers are told) and subscriptions (terminating NOTIFY), and
    /// sends NOTIFYs whose rate limit has passed. Call every few hundred milliseconds.
    pub fn sweep(self: &Arc<Self>, now: Instant) {
        let ids: Vec<SubId> = {
            let mut g = lock(&self.inner);
            let mut ids = Vec::new();
            for pi in 0..self.packages.len() {
                for resource in g.compositors[pi].expire(now) {
                    ids.extend(self.queue_state(&mut g, pi, &resource));
                }
            }
            for (id, sub) in g.subs.iter_mut() {
                sub.notifier.handle_timeout(now);
                if sub.notifier.poll_timeout().is_some_and(|t| t <= now)
                    || sub.notifier.is_terminating()
                {
                    ids.push(id.clone());
                }
            }
            ids
        };
        for id in ids {
            self.pump(id);
        }
    }

    /// True when messages are stored for `aor`.
    pub fn has_stored(&self, aor: &str) -> bool {
        lock(&self.inner).store.has(aor)
    }

    /// A user registered: sends what was stored for `aor`, oldest first, one at a time (each
    /// after the previous one's 2xx), to its first binding over its flow; what cannot be
    /// delivered is stored again.
    pub fn deliver_stored(self: &Arc<Self>, aor: &str, bindings: Vec<Binding>) {
        let Some(binding) = bindings.into_iter().find(|b| !b.offline) else {
            return;
        };
        let messages = lock(&self.inner).store.take(aor);
        if messages.is_empty() {
            return;
        }
        let me = self.clone();
        let aor = aor.to_owned();
        tokio::spawn(async move {
            let mut left = messages.into_iter();
            while let Some(m) = left.next() {
                let ok = me.deliver(&m, &binding).await;
                if !ok {
                    let rest: Vec<Message> = std::iter::once(m).chain(left).collect();
                    let lost = lock(&me.inner).store.put_back(&aor, rest);
                    if lost > 0 {
                        debug!(lost, aor = %aor, "stored messages over the cap after a failed delivery");
                    }
                    return;
                }
                me.counters.delivered.fetch_add(1, Ordering::Relaxed);
            }
        });
    }

    async fn deliver(&self, stored: &Message, binding: &Binding) -> bool {
        let flow = binding.flow;
        let mut b = sip_core::builder::RequestBuilder::new(Method::Message, &binding.contact)
            .header("Via", self.endpoint.via(flow.transport))
            .max_forwards(70);
        for (label, name) in [("From", HeaderName::From), ("To", HeaderName::To)] {
            if let Some(v) = stored.header(name) {
                b = b.header(label, v);
            }
        }
        // The stored request goes on as a proxy would have forwarded it: same Call-ID and
        // CSeq, so that a recipient sees one sender's messages as one sequence.
        let call_id = stored
            .call_id()
            .map_or_else(|| self.endpoint.new_call_id(), str::to_owned);
        let seq = stored.cseq().map_or(1, |c| c.seq);
        b = b.call_id(&call_id).cseq(seq);
        if let Some(d) = stored.header(HeaderName::Date) {
            b = b.header("Date", d);
        }
        let ct = stored
            .header(HeaderName::ContentType)
            .unwrap_or("text/plain")
            .to_owned();
        let Ok(msg) = b.body(&ct, stored.body_bytes()).build() else {
            return true;
        };
        let target = Target::new(flow.transport, flow.remote);
        match self.endpoint.request(msg, target).await {
            Ok(mut ct) => ct
                .final_response()
                .await
                .ok()
                .and_then(|r| r.status())
                .is_some_and(|s| (200..300).contains(&s)),
            Err(_) => false,
        }
    }

    /// The period [`EventServer::sweep`] is meant to run at.
    pub const SWEEP: Duration = Duration::from_millis(250);
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
