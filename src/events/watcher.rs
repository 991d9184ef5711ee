//! The subscriber side for an application: a [`Watcher`] owns an endpoint's requests, sends
//! SUBSCRIBEs through an outbound proxy, refreshes them, and hands each subscription's
//! NOTIFYs to the application as a stream of [`Notification`]s.
//!
//! One task per subscription runs its sans-IO [`Subscriber`]. A NOTIFY is answered only once
//! the application has room for its notification, so a slow reader slows its notifier down
//! (the notifier sends one NOTIFY at a time) instead of filling memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sip_core::builder::RequestBuilder;
use sip_core::{Message, Method, Target};
use sip_dialog::subscription::{Notification, SubState, SubscribeOutcome, Subscriber};
use tokio::sync::mpsc;
use tracing::debug;

use crate::endpoint::{Endpoint, EndpointError, ServerEvent, ServerTransaction};

/// How a [`Watcher`] subscribes.
#[derive(Debug, Clone)]
pub struct WatcherConfig {
    /// Our AOR (From).
    pub from: String,
    /// Our Contact URI (where NOTIFYs come).
    pub contact: String,
    /// Every request goes to this outbound proxy.
    pub outbound: Target,
    /// The Expires asked for.
    pub expires: u32,
    /// Notifications buffered per subscription before NOTIFYs wait for the application.
    pub buffer: usize,
    /// The most subscriptions (forks) one SUBSCRIBE may create.
    pub max_forks: usize,
    /// The most subscriptions at once.
    pub max_subscriptions: usize,
}

impl WatcherConfig {
    /// Subscriptions as `from` with NOTIFYs to `contact`, through `outbound`, for an hour.
    pub fn new(from: &str, contact: &str, outbound: Target) -> WatcherConfig {
        WatcherConfig {
            from: from.to_owned(),
            contact: contact.to_owned(),
            outbound,
            expires: 3600,
            buffer: 64,
            max_forks: 4,
            max_subscriptions: 10_000,
        }
    }
}

/// Why a subscription could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    /// [`WatcherConfig::max_subscriptions`] are live.
    #[error("too many subscriptions")]
    TooMany,
    /// The SUBSCRIBE could not be built (a malformed resource URI…).
    #[error(transparent)]
    Build(#[from] sip_core::Error),
    /// The subscription could not be set up.
    #[error(transparent)]
    Dialog(#[from] sip_dialog::Error),
    /// The endpoint refused to send.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
}

type Routes = Arc<Mutex<HashMap<String, mpsc::Sender<ServerTransaction>>>>;

/// Subscribes to event packages and delivers their notifications.
#[derive(Clone)]
pub struct Watcher {
    endpoint: Endpoint,
    config: Arc<WatcherConfig>,
    routes: Routes,
}

/// One subscription: its notifications, and unsubscribe.
pub struct Subscription {
    notifications: mpsc::Receiver<Notification>,
    unsubscribe: Option<mpsc::Sender<()>>,
}

impl Subscription {
    /// The next notification; `None` once the subscription has ended (the last one received
    /// said `terminated`, or the SUBSCRIBE failed).
    pub async fn next(&mut self) -> Option<Notification> {
        self.notifications.recv().await
    }

    /// Unsubscribes (`Expires: 0`); the terminating notification still arrives on
    /// [`Subscription::next`].
    pub async fn unsubscribe(&mut self) {
        if let Some(tx) = self.unsubscribe.take() {
            let _ = tx.send(()).await;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Watcher {
    /// Takes over `endpoint`'s requests: NOTIFYs go to their subscriptions, anything else is
    /// answered 405 (481 for a NOTIFY of no subscription).
    pub fn start(endpoint: Endpoint, config: WatcherConfig) -> Watcher {
        let w = Watcher {
            endpoint,
            config: Arc::new(config),
            routes: Arc::default(),
        };
        let me = w.clone();
        tokio::spawn(async move {
            while let Some(ev) = me.endpoint.next_event().await {
                if let ServerEvent::Request(txn) = ev {
                    me.dispatch(txn).await;
                }
            }
        });
        w
    }

    async fn dispatch(&self, txn: ServerTransaction) {
        let req = txn.request();
        let status = if req.method() != Some(Method::Notify) {
            405
        } else {
            let route = req
                .call_id()
                .and_then(|c| lock(&self.routes).get(c).cloned());
            match route {
                Some(tx) => match tx.try_send(txn) {
                    Ok(()) => return,
                    Err(mpsc::error::TrySendError::Full(txn)) => return answer(&txn, 503).await,
                    Err(mpsc::error::TrySendError::Closed(txn)) => return answer(&txn, 481).await,
                },
                None => 481,
            }
        };
        answer(&txn, status).await
    }

    /// Subscribes to `event` (e.g. `presence`, `im`) of `resource` (e.g. `sip:bob@example.com`,
    /// or a topic `sip:news@example.com`).
    pub async fn subscribe(&self, resource: &str, event: &str) -> Result<Subscription, WatchError> {
        if lock(&self.routes).len() >= self.config.max_subscriptions {
            return Err(WatchError::TooMany);
        }
        let c = &self.config;
        let call_id = self.endpoint.new_call_id();
        let subscribe = RequestBuilder::new(Method::Subscribe, resource)
            .header("Via", self.endpoint.via(c.outbound.transport))
            .from_addr(None, &c.from, &self.endpoint.new_tag())
            .to_addr(None, resource, None)
            .call_id(&call_id)
            .cseq(1)
            .max_forwards(70)
            .contact(&c.contact)
            .header("Event", event)
            .header("Expires", c.expires.to_string())
            .build()?;
        let subscriber = Subscriber::new(subscribe.clone(), &c.contact, c.max_forks)?;
        let (ntx, nrx) = mpsc::channel(16);
        lock(&self.routes).insert(call_id.clone(), ntx);
        let (out_tx, out_rx) = mpsc::channel(c.buffer.max(1));
        let (unsub_tx, unsub_rx) = mpsc::channel(1);
        let run = Run {
            endpoint: self.endpoint.clone(),
            target: c.outbound.clone(),
            subscriber,
            notifies: nrx,
            unsubscribe: unsub_rx,
            out: out_tx,
        };
        let routes = self.routes.clone();
        tokio::spawn(async move {
            run.run(subscribe).await;
            lock(&routes).remove(&call_id);
        });
        Ok(Subscription {
            notifications: out_rx,
            unsubscribe: Some(unsub_tx),
        })
    }
}

struct Run {
    endpoint: Endpoint,
    target: Target,
    subscriber: Subscriber,
    notifies: mpsc::Receiver<ServerTransaction>,
    unsubscribe: mpsc::Receiver<()>,
    out: mpsc::Sender<Notification>,
}

impl Run {
    /// Sends `request` in a client transaction whose final response comes back on `tx`
    /// (`None` in it: no final response).
    async fn send(&self, request: Message, tx: &mpsc::Sender<Option<Message>>) {
        match self.endpoint.request(request, self.target.clone()).await {
            Ok(mut ct) => {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _ = tx.send(ct.final_response().await.ok()).await;
                });
            }
            Err(e) => {
                debug!(error = %e, "SUBSCRIBE not sent");
                let _ = tx.send(None).await;
            }
        }
    }

    async fn run(mut self, subscribe: Message) {
        let (resp_tx, mut resp_rx) = mpsc::channel::<Option<Message>>(8);
        self.send(subscribe, &resp_tx).await;
        let mut unsubscribing = false;
        loop {
            let deadline = self.subscriber.poll_timeout();
            tokio::select! {
                r = resp_rx.recv() => {
                    let Some(r) = r else { return };
                    match r {
                        Some(resp) => {
                            if let SubscribeOutcome::Failed(_) =
                                self.subscriber.on_response(Instant::now(), &resp)
                            {
                                return;
                            }
                        }
                        // No answer at all to the initial SUBSCRIBE, or to a refresh.
                        None if self.subscriber.dialogs().is_empty() || unsubscribing => return,
                        None => {}
                    }
                }
                t = self.notifies.recv() => {
                    let Some(txn) = t else { return };
                    let (status, n) = self.subscriber.on_notify(Instant::now(), txn.request());
                    if let Some(n) = n {
                        // Backpressure: the NOTIFY is answered once the application has room.
                        if self.out.send(n).await.is_err() {
                            unsubscribing = true;
                        }
                    }
                    answer(&txn, status).await;
                    if self.subscriber.is_terminated() {
                        return;
                    }
                }
                _ = sleep_until(deadline) => {
                    let now = Instant::now();
                    let gone = self.subscriber.handle_timeout(now);
                    for id in gone {
                        let n = Notification {
                            dialog: id,
                            state: SubState::Terminated { reason: Some("timeout".into()), retry_after: None },
                            content: None,
                        };
                        let _ = self.out.send(n).await;
                    }
                    if self.subscriber.is_terminated() {
                        return;
                    }
                    let (ep, transport) = (self.endpoint.clone(), self.target.transport);
                    let refreshes = self.subscriber.refresh(Instant::now(), || ep.via(transport));
                    for m in refreshes {
                        self.send(m, &resp_tx).await;
                    }
                }
                u = self.unsubscribe.recv(), if !unsubscribing => {
                    let _ = u;
                    unsubscribing = true;
                    let (ep, transport) = (self.endpoint.clone(), self.target.transport);
                    for m in self.subscriber.unsubscribe(|| ep.via(transport)) {
                        self.send(m, &resp_tx).await;
                    }
                }
            }
        }
    }
}

/// Answers `txn` with `status` (Retry-After on a 503).
async fn answer(txn: &ServerTransaction, status: u16) {
    let mut b = txn.response(status);
    if status == 503 {
        b = b.header("Retry-After", "1");
    }
    match b.build() {
        Ok(r) => {
            if let Err(e) = txn.respond(r).await {
                debug!(error = %e, "response not sent");
            }
        }
        Err(e) => debug!(error = %e, "response not built"),
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}
