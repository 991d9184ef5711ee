//! The notifier role of RFC 6665 on the UserAgent's own endpoint. A SUBSCRIBE outside any
//! dialog reaches the application as an [`IncomingSubscription`] (as an INVITE becomes an
//! [`IncomingCall`](super::IncomingCall)); accepted, it becomes a [`Notifier`] on which the
//! application NOTIFYs its state. The protocol is the sans-IO
//! [`sip_dialog::subscription::Notifier`]: the Expires granted (423 below the minimum), the
//! immediate NOTIFY, the bounded queue sent one transaction at a time (in order) and no
//! faster than [`NotifierConfig::min_interval`](super::NotifierConfig::min_interval), the
//! terminating NOTIFY on expiry, unsubscribe or [`Notifier::terminate`], and removal after a
//! failed NOTIFY (481, timeout).
//!
//! The machine lives in the UserAgent's shared state: the handle queues contents into it, the
//! event pump gives it the refresh SUBSCRIBEs of its dialog, and one task per subscription
//! sends what it polls.

use std::sync::Arc;

use bytes::Bytes;
use sip_core::{Flow, Message};
use sip_dialog::subscription::{Content, EventKey, Notifier as Machine, NotifyOutcome};
use sip_dialog::DialogId;
use tokio::sync::{mpsc, Notify};

use super::shared::Shared;
use super::subscription::{answer, sleep_until};
use super::UaError;
use crate::endpoint::ServerTransaction;

/// A subscription to us that arrived ([`super::UserAgent::subscriptions`]): accept it (it
/// becomes a [`Notifier`]) or reject it. Dropped unanswered, it is answered 603.
#[derive(Debug)]
pub struct IncomingSubscription {
    shared: Arc<Shared>,
    txn: Option<ServerTransaction>,
    event: EventKey,
}

/// The stream of incoming subscriptions ([`super::UserAgent::subscriptions`]).
#[derive(Debug)]
pub struct IncomingSubscriptions {
    pub(super) rx: mpsc::UnboundedReceiver<IncomingSubscription>,
}

impl IncomingSubscriptions {
    /// The next subscription; `None` once the UserAgent is gone.
    pub async fn next(&mut self) -> Option<IncomingSubscription> {
        self.rx.recv().await
    }
}

/// How a [`Notifier`]'s subscription ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotifierEnd {
    /// The subscriber unsubscribed (`Expires: 0`); the terminating NOTIFY was answered.
    Unsubscribed,
    /// It expired without a refresh; the terminating NOTIFY (`reason=timeout`) was answered.
    Expired,
    /// [`Notifier::terminate`] (or dropping the handle); the terminating NOTIFY was answered.
    Terminated,
    /// A NOTIFY failed (RFC 6665 §4.2.2): answered with `status` (481: the subscriber has no
    /// such subscription), or not answered at all (`None`: timeout, transport error).
    Failed {
        /// The final status, if any came.
        status: Option<u16>,
    },
}

/// What happens to a [`Notifier`]'s subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotifierEvent {
    /// The subscriber refreshed it for `expires` seconds.
    Refreshed {
        /// The Expires granted.
        expires: u32,
    },
    /// It is over (the last event).
    Ended(NotifierEnd),
}

/// The notifier's side of one subscription. Dropping it ends the subscription (a terminating
/// NOTIFY with `reason=noresource`).
#[derive(Debug)]
pub struct Notifier {
    shared: Arc<Shared>,
    id: DialogId,
    wake: Arc<Notify>,
    events: mpsc::UnboundedReceiver<NotifierEvent>,
    event: EventKey,
    subscriber: String,
}

/// A notifier as the UserAgent keeps it.
#[derive(Debug)]
pub(crate) struct NotifierSlot {
    machine: Machine,
    /// The flow the SUBSCRIBE came on (NOTIFYs reuse a connection).
    flow: Flow,
    wake: Arc<Notify>,
    events: mpsc::UnboundedSender<NotifierEvent>,
    /// How it ends once the terminating NOTIFY is answered (expiry unless said otherwise).
    ending: Option<NotifierEnd>,
}

impl IncomingSubscription {
    /// The SUBSCRIBE.
    pub fn request(&self) -> Option<&Message> {
        self.txn.as_ref().map(ServerTransaction::request)
    }

    /// The event package and its `id`.
    pub fn event(&self) -> &EventKey {
        &self.event
    }

    /// The subscriber (From URI).
    pub fn from(&self) -> String {
        self.request()
            .and_then(|r| r.from().ok().map(|f| f.uri_str().to_owned()))
            .unwrap_or_default()
    }

    /// The resource subscribed to (the Request-URI).
    pub fn resource(&self) -> String {
        self.request()
            .and_then(|r| r.uri_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// Accepts it, active: 200 with the Expires granted, then the immediate NOTIFY with
    /// `current` (the resource's state; `None`: a NOTIFY without a body). A SUBSCRIBE whose
    /// Expires is below [`NotifierConfig::min_expires`](super::NotifierConfig::min_expires)
    /// is answered 423 here instead (`Err(Rejected(423))`).
    pub async fn accept(self, current: Option<Content>) -> Result<Notifier, UaError> {
        self.start(false, current).await
    }

    /// Accepts it, pending (authorization to come): the immediate NOTIFY says `pending` and
    /// carries no state; [`Notifier::activate`] later makes it active.
    pub async fn accept_pending(self) -> Result<Notifier, UaError> {
        self.start(true, None).await
    }

    /// Refuses it with `status` (403, 404, 489…).
    pub async fn reject(mut self, status: u16) {
        if let Some(txn) = self.txn.take() {
            answer(&txn, status).await;
        }
    }

    async fn start(mut self, pending: bool, current: Option<Content>) -> Result<Notifier, UaError> {
        let txn = self.txn.take().ok_or(UaError::NoDialog)?;
        let shared = self.shared.clone();
        let req = txn.request();
        let subscriber = req
            .from()
            .map(|f| f.uri_str().to_owned())
            .unwrap_or_default();
        let config = shared.config.notifier.clone();
        let contact = shared.config.contact.clone();
        let accepted = Machine::accept(Shared::now(), req, txn.to_tag(), &contact, pending, config);
        let (mut machine, expires) = match accepted {
            Ok(a) => a,
            Err(refusal) => {
                if let Ok(r) = refusal.response(req) {
                    let _ = txn.respond(r).await;
                }
                return Err(UaError::Rejected(refusal.status));
            }
        };
        let response = machine.response(req, expires)?;
        let _ = match current {
            Some(c) if !pending => machine.notify(c),
            _ => machine.notify_empty(),
        };
        let id = machine.dialog().id().clone();
        let wake = Arc::new(Notify::new());
        let (tx, events) = mpsc::unbounded_channel();
        let slot = NotifierSlot {
            machine,
            flow: txn.flow(),
            wake: wake.clone(),
            events: tx,
            ending: None,
        };
        shared.state().notifiers.insert(id.clone(), slot);
        if let Err(e) = txn.respond(response).await {
            shared.state().notifiers.remove(&id);
            return Err(e.into());
        }
        let span =
            tracing::info_span!("notifier", call_id = %id.call_id, event = %self.event.package);
        tokio::spawn(tracing::Instrument::instrument(
            drive(shared.clone(), id.clone()),
            span,
        ));
        Ok(Notifier {
            shared,
            id,
            wake,
            events,
            event: self.event.clone(),
            subscriber,
        })
    }
}

impl Drop for IncomingSubscription {
    fn drop(&mut self) {
        if let Some(txn) = self.txn.take() {
            tokio::spawn(async move { answer(&txn, 603).await });
        }
    }
}

impl Notifier {
    /// The subscription's dialog.
    pub fn id(&self) -> &DialogId {
        &self.id
    }

    /// The event package.
    pub fn event(&self) -> &EventKey {
        &self.event
    }

    /// The subscriber (From URI of the SUBSCRIBE).
    pub fn subscriber(&self) -> &str {
        &self.subscriber
    }

    /// Queues a NOTIFY carrying `body` (the new state). NOTIFYs go one at a time, in order,
    /// no faster than the rate limit; a full queue drops the oldest queued state
    /// ([`NotifierConfig::overflow`](super::NotifierConfig::overflow) `Coalesce`) or refuses
    /// this one (`Reject`: `Err(QueueFull)`). `Err(NoDialog)` once the subscription is over.
    pub fn notify(&self, content_type: &str, body: Bytes) -> Result<(), UaError> {
        let content = Content {
            content_type: content_type.to_owned(),
            body,
        };
        self.with_slot(|slot| slot.machine.notify(content).map_err(|_| UaError::QueueFull))
    }

    /// A pending subscription becomes active, and a NOTIFY with `current` follows.
    pub fn activate(&self, current: Option<Content>) -> Result<(), UaError> {
        self.with_slot(|slot| {
            slot.machine.activate();
            match current {
                Some(c) => slot.machine.notify(c),
                None => slot.machine.notify_empty(),
            }
            .map_err(|_| UaError::QueueFull)
        })
    }

    /// Ends the subscription: after the queued NOTIFYs, a terminating one with `reason`
    /// (`deactivated`, `noresource`, `rejected`…). [`NotifierEvent::Ended`] follows once it
    /// is answered.
    pub fn terminate(&self, reason: &str) -> Result<(), UaError> {
        self.with_slot(|slot| {
            if !slot.machine.is_terminating() {
                slot.ending = Some(NotifierEnd::Terminated);
            }
            slot.machine.terminate(reason);
            Ok(())
        })
    }

    /// True until the subscription is over.
    pub fn is_active(&self) -> bool {
        self.shared.state().notifiers.contains_key(&self.id)
    }

    /// The next event; `None` after [`NotifierEvent::Ended`].
    pub async fn next_event(&mut self) -> Option<NotifierEvent> {
        self.events.recv().await
    }

    fn with_slot<T>(
        &self,
        f: impl FnOnce(&mut NotifierSlot) -> Result<T, UaError>,
    ) -> Result<T, UaError> {
        let r = {
            let mut st = self.shared.state();
            let slot = st.notifiers.get_mut(&self.id).ok_or(UaError::NoDialog)?;
            f(slot)
        };
        self.wake.notify_one();
        r
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        let _ = self.terminate("noresource");
    }
}

/// Routes a SUBSCRIBE in one of our notifiers' dialogs (refresh or unsubscribe) to it and
/// answers it; `Err(txn)` when it belongs to none.
pub(super) async fn on_resubscribe(
    shared: &Shared,
    txn: ServerTransaction,
) -> Result<(), Box<ServerTransaction>> {
    let Some(id) = DialogId::of_incoming_request(txn.request()) else {
        return Err(Box::new(txn));
    };
    let response = {
        let mut st = shared.state();
        let Some(slot) = st.notifiers.get_mut(&id) else {
            return Err(Box::new(txn));
        };
        let req = txn.request();
        let r = match slot.machine.on_subscribe(Shared::now(), req) {
            Ok(0) => {
                slot.ending = Some(NotifierEnd::Unsubscribed);
                slot.machine.response(req, 0).map_err(UaError::from)
            }
            Ok(expires) => {
                let _ = slot.events.send(NotifierEvent::Refreshed { expires });
                slot.machine.response(req, expires).map_err(UaError::from)
            }
            Err(refusal) => refusal.response(req).map_err(UaError::from),
        };
        slot.wake.notify_one();
        r
    };
    match response {
        Ok(r) => {
            let _ = txn.respond(r).await;
        }
        Err(_) => answer(&txn, 500).await,
    }
    Ok(())
}

/// A new SUBSCRIBE: to the application when it listens ([`super::UserAgent::subscriptions`]),
/// 489 (Bad Event) otherwise; 400 without a valid Event header.
pub(super) async fn on_subscribe(shared: &Arc<Shared>, txn: ServerTransaction) {
    let Some(event) = EventKey::of(txn.request()) else {
        return answer(&txn, 400).await;
    };
    let incoming = IncomingSubscription {
        shared: shared.clone(),
        txn: Some(txn),
        event,
    };
    let refused = {
        let st = shared.state();
        match &st.subscriptions {
            Some(tx) => tx.send(incoming).err().map(|e| e.0),
            None => Some(incoming),
        }
    };
    if let Some(mut incoming) = refused {
        if let Some(txn) = incoming.txn.take() {
            answer(&txn, 489).await;
        }
    }
}

/// What the driver does next, decided under the lock.
enum Step {
    Send(Box<Message>, String, Flow),
    Wait(Option<std::time::Instant>, Arc<Notify>),
    Over,
}

/// Sends what the machine polls, one NOTIFY transaction at a time, until it is done.
async fn drive(shared: Arc<Shared>, id: DialogId) {
    loop {
        let step = next_step(&shared, &id);
        match step {
            Step::Over => return,
            Step::Wait(deadline, wake) => {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = sleep_until(deadline) => {}
                }
            }
            Step::Send(notify, hop, flow) => {
                let status = send(&shared, *notify, &hop, flow).await;
                let mut st = shared.state();
                let Some(slot) = st.notifiers.get_mut(&id) else {
                    return;
                };
                if slot.machine.on_notify_response(status) == NotifyOutcome::Removed {
                    let end = match status {
                        Some(s) if (200..300).contains(&s) => {
                            slot.ending.take().unwrap_or(NotifierEnd::Expired)
                        }
                        status => NotifierEnd::Failed { status },
                    };
                    tracing::debug!(?end, "subscription over");
                    let _ = slot.events.send(NotifierEvent::Ended(end));
                    st.notifiers.remove(&id);
                    return;
                }
            }
        }
    }
}

fn next_step(shared: &Shared, id: &DialogId) -> Step {
    let mut st = shared.state();
    let Some(slot) = st.notifiers.get_mut(id) else {
        return Step::Over;
    };
    let now = Shared::now();
    slot.machine.handle_timeout(now);
    if slot.machine.is_done() {
        let _ = slot
            .events
            .send(NotifierEvent::Ended(NotifierEnd::Failed { status: None }));
        st.notifiers.remove(id);
        return Step::Over;
    }
    match slot.machine.poll_notify(now, &shared.via()) {
        Some(m) => Step::Send(Box::new(m), slot.machine.dialog().next_hop(), slot.flow),
        None => Step::Wait(slot.machine.poll_timeout(), slot.wake.clone()),
    }
}

/// Sends one NOTIFY and returns its final status (`None`: none came).
async fn send(shared: &Shared, notify: Message, hop: &str, flow: Flow) -> Option<u16> {
    let dest = match shared.dialog_destination(hop, Some(flow)).await {
        Ok(d) => d,
        Err(e) => {
            tracing::debug!(error = %e, "no destination for NOTIFY");
            return None;
        }
    };
    let mut txn = match shared.endpoint.request(notify, dest).await {
        Ok(t) => t,
        Err(e) => {
            tracing::debug!(error = %e, "NOTIFY not sent");
            return None;
        }
    };
    txn.final_response().await.ok().and_then(|r| r.status())
}
