//! The subscriber role of RFC 6665 on the UserAgent's own endpoint: [`UserAgent::subscribe`]
//! sends the SUBSCRIBE, one task per subscription runs its sans-IO [`Subscriber`] (refresh
//! before expiry, NOTIFY before the 2xx, forks, Timer N, unsubscribe), answers each challenge
//! once with the realm's credentials, and hands the NOTIFYs to the application as
//! [`SubscriptionEvent`]s.
//!
//! The event pump (`pump.rs`) routes every NOTIFY whose Call-ID is one of ours here; the
//! [`Subscriber`] then checks the tags and the Event (and its `id`), answering 481 or 489 when
//! they do not match.
//!
//! [`UserAgent::subscribe`]: super::UserAgent::subscribe

use std::sync::Arc;

use sip_core::{Flow, HeaderName, Message, Method, Target};
use sip_dialog::subscription::{Notification, SubscribeOutcome, Subscriber};
use sip_dialog::DialogId;
use tokio::sync::{mpsc, oneshot};

use super::shared::{out_of_dialog, Shared};
use super::{UaError, ALLOW};
use crate::endpoint::ServerTransaction;

/// The most subscriptions (forks) one SUBSCRIBE may create.
const MAX_FORKS: usize = 4;

/// Challenges answered in a row before a 401/407 is taken as the answer.
const MAX_CHALLENGES: u32 = 2;

/// NOTIFYs waiting for their subscription's task; more are answered 503 with Retry-After.
const INBOUND: usize = 16;

/// Events buffered for the application; beyond, NOTIFYs are answered only once it reads
/// (a slow reader slows its notifier, which sends one NOTIFY at a time).
const BUFFER: usize = 64;

/// What a [`Subscription`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscriptionEvent {
    /// A NOTIFY, answered 200: its subscription (forks have different dialogs), the
    /// Subscription-State (with the reason and retry-after of a termination), and the body
    /// with its Content-Type.
    Notify(Notification),
    /// A subscription ended without a terminating NOTIFY: its refresh was refused or not
    /// answered (`status`, 408 for no answer), or no NOTIFY followed its 2xx within Timer N
    /// (RFC 6665 §4.1.2.4, `status` 408).
    Removed {
        /// The subscription.
        dialog: DialogId,
        /// The status that ended it.
        status: u16,
    },
}

/// One SUBSCRIBE and the subscriptions it created ([`super::UserAgent::subscribe`]). It is
/// refreshed before it expires until [`Subscription::unsubscribe`], or until it is dropped
/// (which unsubscribes too).
#[derive(Debug)]
pub struct Subscription {
    events: mpsc::Receiver<SubscriptionEvent>,
    unsubscribe: Option<mpsc::Sender<()>>,
    call_id: String,
}

impl Subscription {
    /// The next event; `None` once every subscription has ended (its last NOTIFY said
    /// `terminated`, or it was removed).
    pub async fn next(&mut self) -> Option<SubscriptionEvent> {
        self.events.recv().await
    }

    /// Unsubscribes (RFC 6665 §4.1.2.3: SUBSCRIBE with `Expires: 0` in every subscription).
    /// The terminating NOTIFYs still arrive on [`Subscription::next`], then it ends.
    pub async fn unsubscribe(&mut self) {
        if let Some(tx) = self.unsubscribe.take() {
            let _ = tx.send(()).await;
        }
    }

    /// The Call-ID of the SUBSCRIBE (shared by its subscriptions).
    pub fn call_id(&self) -> &str {
        &self.call_id
    }
}

/// What the initial SUBSCRIBE came to, for [`start`].
type Started = oneshot::Sender<Result<(), UaError>>;

/// Sends the SUBSCRIBE and returns once it is accepted (a 2xx, or a NOTIFY that created a
/// subscription) or refused.
pub(super) async fn start(
    shared: Arc<Shared>,
    target: &str,
    event: &str,
    expires: u32,
    accept: &[&str],
) -> Result<Subscription, UaError> {
    let dest = shared.destination(target).await?;
    let call_id = shared.endpoint.new_call_id();
    let tag = shared.endpoint.new_tag();
    let initial = Initial {
        target: target.to_owned(),
        tag,
        event: event.to_owned(),
        expires,
        accept: accept.join(", "),
    };
    let subscribe = initial.build(&shared, &call_id, 1, None)?;
    let subscriber = Subscriber::new(subscribe.clone(), &shared.config.contact, MAX_FORKS)?;
    let (notify_tx, notifies) = mpsc::channel(INBOUND);
    shared
        .state()
        .subscribers
        .insert(call_id.clone(), notify_tx);
    let (events_tx, events) = mpsc::channel(BUFFER);
    let (unsub_tx, unsub_rx) = mpsc::channel(1);
    let (started_tx, started) = oneshot::channel();
    let run = Run {
        shared: shared.clone(),
        dest,
        initial,
        call_id: call_id.clone(),
        subscriber,
        notifies,
        unsubscribe: unsub_rx,
        events: events_tx,
        started: Some(started_tx),
        flow: None,
        unsubscribing: false,
        challenges: 0,
        give_up: None,
    };
    let span = tracing::info_span!("subscription", %call_id, event);
    tokio::spawn(tracing::Instrument::instrument(run.run(subscribe), span));
    let subscription = Subscription {
        events,
        unsubscribe: Some(unsub_tx),
        call_id,
    };
    match started.await {
        Ok(Ok(())) => Ok(subscription),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(UaError::NoResponse("subscription ended".into())),
    }
}

/// Where [`route_notify`] put a NOTIFY.
pub(super) enum Routed {
    /// To its subscription's task.
    Taken,
    /// Its subscription has too many waiting: answer 503.
    Busy(Box<ServerTransaction>),
    /// No subscription of ours has its Call-ID.
    NotOurs(Box<ServerTransaction>),
}

/// Routes a NOTIFY to the subscription of its Call-ID.
pub(super) fn route_notify(shared: &Shared, txn: ServerTransaction) -> Routed {
    let tx = txn
        .request()
        .call_id()
        .and_then(|c| shared.state().subscribers.get(c).cloned());
    let Some(tx) = tx else {
        return Routed::NotOurs(Box::new(txn));
    };
    match tx.try_send(txn) {
        Ok(()) => Routed::Taken,
        Err(mpsc::error::TrySendError::Full(txn)) => Routed::Busy(Box::new(txn)),
        // The subscription just ended.
        Err(mpsc::error::TrySendError::Closed(txn)) => Routed::NotOurs(Box::new(txn)),
    }
}

/// What the initial SUBSCRIBE is made of (again with CSeq + 1 for a challenge).
struct Initial {
    target: String,
    tag: String,
    event: String,
    expires: u32,
    accept: String,
}

impl Initial {
    fn build(
        &self,
        shared: &Shared,
        call_id: &str,
        cseq: u32,
        auth: Option<(HeaderName, String)>,
    ) -> Result<Message, UaError> {
        let t = &self.target;
        let mut b = out_of_dialog(shared, Method::Subscribe, t, t, call_id, &self.tag, cseq)
            .header("Event", &self.event)
            .header("Expires", self.expires.to_string())
            .header("Allow", ALLOW);
        if !self.accept.is_empty() {
            b = b.header("Accept", &self.accept);
        }
        if let Some((name, value)) = auth {
            b = b.header(name.canonical().unwrap_or("Authorization"), value);
        }
        Ok(b.build()?)
    }
}

/// The final response to one SUBSCRIBE of ours (`None`: no final response), with the request
/// and where it went (to answer a challenge).
type Answer = (Message, Target, Option<Message>);

struct Run {
    shared: Arc<Shared>,
    dest: Target,
    initial: Initial,
    call_id: String,
    subscriber: Subscriber,
    notifies: mpsc::Receiver<ServerTransaction>,
    unsubscribe: mpsc::Receiver<()>,
    events: mpsc::Sender<SubscriptionEvent>,
    started: Option<Started>,
    /// The flow the last NOTIFY came on (in-dialog requests reuse a connection).
    flow: Option<Flow>,
    unsubscribing: bool,
    /// Challenges answered in a row (at most [`MAX_CHALLENGES`], as for other requests).
    challenges: u32,
    /// After unsubscribing: when to stop waiting for the terminating NOTIFYs (Timer N).
    give_up: Option<std::time::Instant>,
}

impl Run {
    async fn run(mut self, subscribe: Message) {
        let (answers_tx, mut answers) = mpsc::channel::<Answer>(8);
        let dest = self.dest.clone();
        self.send(subscribe, dest, &answers_tx).await;
        loop {
            let deadline = match (self.subscriber.poll_timeout(), self.give_up) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                a = answers.recv() => {
                    let Some((request, dest, response)) = a else { break };
                    if self.on_answer(request, dest, response, &answers_tx).await {
                        break;
                    }
                }
                t = self.notifies.recv() => {
                    let Some(txn) = t else { break };
                    self.on_notify(txn).await;
                    if self.subscriber.is_terminated() {
                        break;
                    }
                }
                _ = sleep_until(deadline) => {
                    if self.on_timer(&answers_tx).await {
                        break;
                    }
                }
                u = self.unsubscribe.recv(), if !self.unsubscribing => {
                    // Asked for, or the handle was dropped (`None`): unsubscribe either way.
                    let _ = u;
                    self.unsubscribing = true;
                    self.give_up = Some(Shared::now() + sip_dialog::subscription::TIMER_N);
                    let via = self.shared.via();
                    for m in self.subscriber.unsubscribe(|| via.clone()) {
                        self.send_in_dialog(m, &answers_tx).await;
                    }
                    if self.subscriber.dialogs().is_empty() && self.started.is_none() {
                        break;
                    }
                }
            }
        }
        self.shared.state().subscribers.remove(&self.call_id);
        self.start_result(Err(UaError::NoResponse("subscription ended".into())));
        tracing::debug!("subscription over");
    }

    /// Reports how the initial SUBSCRIBE went (once).
    fn start_result(&mut self, r: Result<(), UaError>) {
        if let Some(tx) = self.started.take() {
            let _ = tx.send(r);
        }
    }

    /// Sends `request` to `dest` in a client transaction whose final response comes back on
    /// `answers`.
    async fn send(&self, request: Message, dest: Target, answers: &mpsc::Sender<Answer>) {
        let tx = answers.clone();
        match self
            .shared
            .endpoint
            .request(request.clone(), dest.clone())
            .await
        {
            Ok(mut ct) => {
                tokio::spawn(async move {
                    let r = ct.final_response().await.ok();
                    let _ = tx.send((request, dest, r)).await;
                });
            }
            Err(e) => {
                tracing::debug!(error = %e, "SUBSCRIBE not sent");
                let _ = tx.send((request, dest, None)).await;
            }
        }
    }

    /// A SUBSCRIBE in one of our subscriptions: along its route set to its remote target.
    async fn send_in_dialog(&self, request: Message, answers: &mpsc::Sender<Answer>) {
        let remote = request.to().ok().and_then(|t| t.tag().map(str::to_owned));
        let hop = self
            .subscriber
            .dialogs()
            .iter()
            .find(|d| Some(&d.dialog.id().remote_tag) == remote.as_ref())
            .map(|d| d.dialog.next_hop());
        let dest = match hop {
            Some(hop) => self.shared.dialog_destination(&hop, self.flow).await,
            None => Ok(self.dest.clone()),
        };
        match dest {
            Ok(dest) => self.send(request, dest, answers).await,
            Err(e) => {
                tracing::debug!(error = %e, "no destination for SUBSCRIBE");
                let _ = answers.send((request, self.dest.clone(), None)).await;
            }
        }
    }

    /// A final response (or none) to one of our SUBSCRIBEs; true when the run is over.
    async fn on_answer(
        &mut self,
        request: Message,
        dest: Target,
        response: Option<Message>,
        answers: &mpsc::Sender<Answer>,
    ) -> bool {
        let initial = request.to().ok().and_then(|t| t.tag()).is_none();
        let Some(response) = response else {
            return self.no_answer(initial, &request).await;
        };
        let challenged = matches!(response.status(), Some(401 | 407));
        self.challenges = if challenged { self.challenges + 1 } else { 0 };
        if challenged && self.challenges <= MAX_CHALLENGES {
            if let Some(auth) = self.shared.answer_challenge(&request, &response, &dest) {
                if let Some(retry) = self.retry(&request, initial, auth) {
                    if initial {
                        self.send(retry, dest, answers).await;
                    } else {
                        self.send_in_dialog(retry, answers).await;
                    }
                    return false;
                }
            }
        }
        match self.subscriber.on_response(Shared::now(), &response) {
            SubscribeOutcome::Accepted(_) => self.start_result(Ok(())),
            SubscribeOutcome::Failed(status) => {
                self.start_result(Err(match status {
                    401 | 407 => UaError::AuthFailed,
                    s => UaError::Rejected(s),
                }));
                return true;
            }
            SubscribeOutcome::Removed(dialog, status) => {
                let _ = self
                    .events
                    .send(SubscriptionEvent::Removed { dialog, status })
                    .await;
            }
            SubscribeOutcome::Provisional | SubscribeOutcome::Ignored => {}
        }
        self.over()
    }

    /// The challenged `request` again with credentials and CSeq + 1: the initial SUBSCRIBE
    /// (a new [`Subscriber`] follows it, as no subscription exists yet), or one in a dialog.
    fn retry(
        &mut self,
        request: &Message,
        initial: bool,
        auth: (HeaderName, String),
    ) -> Option<Message> {
        if !initial {
            let name = auth.0.canonical().unwrap_or("Authorization");
            let via = self.shared.via();
            return self.subscriber.retry_with(request, &via, (name, &auth.1));
        }
        if !self.subscriber.dialogs().is_empty() {
            return None;
        }
        let seq = request.cseq().ok()?.seq.checked_add(1)?;
        let retry = self
            .initial
            .build(&self.shared, &self.call_id, seq, Some(auth))
            .ok()?;
        self.subscriber =
            Subscriber::new(retry.clone(), &self.shared.config.contact, MAX_FORKS).ok()?;
        Some(retry)
    }

    /// No final response: the initial SUBSCRIBE failed (unless a NOTIFY created a
    /// subscription), or a refresh did: that subscription is removed (RFC 6665 §4.1.2.2).
    async fn no_answer(&mut self, initial: bool, request: &Message) -> bool {
        if initial {
            if self.subscriber.dialogs().is_empty() {
                self.start_result(Err(UaError::NoResponse("SUBSCRIBE".into())));
                return true;
            }
            return false;
        }
        // Fed to the machine as the 408 the transaction layer stands for.
        if let Ok(timeout) = request.response(408).build() {
            if let SubscribeOutcome::Removed(dialog, status) =
                self.subscriber.on_response(Shared::now(), &timeout)
            {
                let _ = self
                    .events
                    .send(SubscriptionEvent::Removed { dialog, status })
                    .await;
            }
        }
        self.over()
    }

    /// True when no subscription is left and none can come.
    fn over(&self) -> bool {
        self.subscriber.is_terminated() && self.started.is_none()
    }

    async fn on_notify(&mut self, txn: ServerTransaction) {
        let (status, n) = self.subscriber.on_notify(Shared::now(), txn.request());
        if let Some(n) = n {
            self.flow = Some(txn.flow());
            self.start_result(Ok(()));
            tracing::debug!(state = ?n.state, "NOTIFY");
            // Backpressure: the NOTIFY is answered once the application has room. A handle
            // that is gone unsubscribes on the next turn of the loop.
            let _ = self.events.send(SubscriptionEvent::Notify(n)).await;
        }
        answer(&txn, status).await;
    }

    /// Timer N and refreshes; true when the run is over.
    async fn on_timer(&mut self, answers: &mpsc::Sender<Answer>) -> bool {
        let now = Shared::now();
        if self.give_up.is_some_and(|t| t <= now) {
            // No terminating NOTIFY came for our unsubscribe: the subscriptions are over.
            let left: Vec<DialogId> = self
                .subscriber
                .dialogs()
                .iter()
                .map(|d| d.dialog.id().clone())
                .collect();
            for dialog in left {
                let ev = SubscriptionEvent::Removed {
                    dialog,
                    status: 408,
                };
                let _ = self.events.send(ev).await;
            }
            return true;
        }
        for dialog in self.subscriber.handle_timeout(now) {
            let ev = SubscriptionEvent::Removed {
                dialog,
                status: 408,
            };
            let _ = self.events.send(ev).await;
        }
        let via = self.shared.via();
        for m in self.subscriber.refresh(now, || via.clone()) {
            self.send_in_dialog(m, answers).await;
        }
        self.subscriber.is_terminated()
    }
}

/// Answers `txn` with `status` (Retry-After on a 503).
pub(super) async fn answer(txn: &ServerTransaction, status: u16) {
    let mut b = txn.response(status);
    if status == 503 {
        b = b.header("Retry-After", "1");
    }
    match b.build() {
        Ok(r) => {
            if let Err(e) = txn.respond(r).await {
                tracing::debug!(error = %e, "response not sent");
            }
        }
        Err(e) => tracing::debug!(error = %e, "response not built"),
    }
}

pub(super) async fn sleep_until(at: Option<std::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}
