//! RFC 6665 subscriptions (SUBSCRIBE/NOTIFY), sans-IO, both roles.
//!
//! - [`Subscriber`]: one SUBSCRIBE and the subscriptions it creates. The initial NOTIFY may come
//!   before the 2xx (§4.1.2.4), and a forked SUBSCRIBE can create several subscriptions, one
//!   per NOTIFY From-tag; each is a [`Dialog`] of ours. Refresh before expiry, Subscription-State
//!   (active, pending, terminated with its reason), unsubscribe with `Expires: 0`.
//! - [`Notifier`]: one subscription on the notifier side: the Expires granted (423 below the
//!   minimum), a bounded queue of NOTIFY contents sent one transaction at a time (in order),
//!   a minimum interval between NOTIFYs (rate limiting), the terminating NOTIFY on expiry or
//!   unsubscribe, removal on a failed NOTIFY (481, timeout, any other error).
//!
//! Time is injected: every call that depends on it takes `now`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sip_core::headers::{Event, SubscriptionState};
use sip_core::{HeaderName, Message, Method};

use crate::{Dialog, DialogId, Error};

/// Timer N (RFC 6665 §4.1.2.4): 64·T1, how long a subscriber waits for the first NOTIFY after
/// the 2xx of its SUBSCRIBE.
pub const TIMER_N: Duration = Duration::from_secs(32);

/// The most NOTIFY contents a [`Notifier`] keeps queued by default.
pub const DEFAULT_QUEUE_LIMIT: usize = 16;

/// An event package and its `id` (RFC 6665 §8.2.1), as an Event header names them. The package
/// name is kept lowercase: packages compare case-insensitively, ids exactly.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventKey {
    /// The package (with templates, e.g. `presence.winfo`), lowercase.
    pub package: String,
    /// The `id` parameter.
    pub id: Option<String>,
}

impl EventKey {
    /// A key for `package` without an id.
    pub fn new(package: &str) -> EventKey {
        EventKey {
            package: package.to_ascii_lowercase(),
            id: None,
        }
    }

    /// Parses an Event header value; `None` when malformed.
    pub fn parse(value: &str) -> Option<EventKey> {
        let e = Event::parse(value).ok()?;
        Some(EventKey {
            package: e.event_type().to_ascii_lowercase(),
            id: e.id().map(str::to_owned),
        })
    }

    /// The Event header of `msg` (compact form `o` included); `None` when absent or malformed.
    pub fn of(msg: &Message) -> Option<EventKey> {
        EventKey::parse(msg.header(HeaderName::Event)?)
    }

    /// The Event header value to send.
    pub fn header_value(&self) -> String {
        match &self.id {
            Some(id) => format!("{};id={id}", self.package),
            None => self.package.clone(),
        }
    }
}

/// RFC 6665 §4.1.2.4 / §4.2.1: checks the Event header of a SUBSCRIBE or PUBLISH against the
/// packages we support. Missing or malformed: 400; unknown package: 489 (Bad Event, with an
/// Allow-Events header listing `supported` in the response).
pub fn check_event(msg: &Message, supported: &[&str]) -> Result<EventKey, u16> {
    let key = EventKey::of(msg).ok_or(400u16)?;
    if supported
        .iter()
        .any(|p| p.eq_ignore_ascii_case(&key.package))
    {
        Ok(key)
    } else {
        Err(489)
    }
}

/// The state of a subscription (RFC 6665 §4.1.3, the Subscription-State header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubState {
    /// Authorized and delivering state.
    Active,
    /// Awaiting authorization.
    Pending,
    /// Ended; `reason` (`deactivated`, `probation`, `rejected`, `timeout`, `giveup`,
    /// `noresource`, `invariant`) and `retry_after` as the notifier gave them.
    Terminated {
        /// The reason parameter.
        reason: Option<String>,
        /// The retry-after parameter, in seconds.
        retry_after: Option<u32>,
    },
}

impl SubState {
    /// Parses a Subscription-State value into the state and its `expires`; `None` when
    /// malformed. An extension state is read as active.
    pub fn parse(value: &str) -> Option<(SubState, Option<u32>)> {
        let s = SubscriptionState::parse(value).ok()?;
        let state = if s.is_terminated() {
            SubState::Terminated {
                reason: s.reason().map(str::to_ascii_lowercase),
                retry_after: s.retry_after(),
            }
        } else if s.is_pending() {
            SubState::Pending
        } else {
            SubState::Active
        };
        Some((state, s.expires()))
    }

    /// The Subscription-State header value, with `expires` for active and pending.
    pub fn header_value(&self, expires: u32) -> String {
        match self {
            SubState::Active => format!("active;expires={expires}"),
            SubState::Pending => format!("pending;expires={expires}"),
            SubState::Terminated {
                reason,
                retry_after,
            } => {
                let mut v = String::from("terminated");
                if let Some(r) = reason {
                    v.push_str(";reason=");
                    v.push_str(r);
                }
                if let Some(s) = retry_after {
                    v.push_str(&format!(";retry-after={s}"));
                }
                v
            }
        }
    }

    /// True for terminated.
    pub fn is_terminated(&self) -> bool {
        matches!(self, SubState::Terminated { .. })
    }
}

/// A body of a NOTIFY or PUBLISH: its Content-Type and bytes (shared, cheap to clone for a
/// fan-out to many subscribers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    /// The Content-Type value.
    pub content_type: String,
    /// The body.
    pub body: Bytes,
}

impl Content {
    /// The Content-Type and body of `msg`, `None` when it has no body.
    pub fn of(msg: &Message) -> Option<Content> {
        if msg.body().is_empty() {
            return None;
        }
        Some(Content {
            content_type: msg
                .header(HeaderName::ContentType)
                .unwrap_or("application/octet-stream")
                .to_owned(),
            body: msg.body_bytes(),
        })
    }

    /// Bytes this content accounts for in a queue (the body, shared or not, plus the type).
    pub fn size(&self) -> usize {
        self.body.len() + self.content_type.len()
    }
}

/// A notification for the subscriber's application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The subscription (dialog) it came in: forks have different IDs.
    pub dialog: DialogId,
    /// The Subscription-State.
    pub state: SubState,
    /// The body, if any.
    pub content: Option<Content>,
}

/// One subscription of a [`Subscriber`]: its dialog and state.
#[derive(Debug, Clone)]
pub struct SubscriberDialog {
    /// The dialog.
    pub dialog: Dialog,
    /// The last Subscription-State (pending until a NOTIFY says otherwise).
    pub state: SubState,
    /// When the subscription expires, as the last 2xx or NOTIFY said.
    pub expires_at: Option<Instant>,
    /// When to send the refresh (`None` while one is outstanding or after unsubscribe).
    refresh_at: Option<Instant>,
    /// Timer N (RFC 6665 §4.1.2.4): a 2xx created it and no NOTIFY has come yet; it fails
    /// at this time.
    timer_n: Option<Instant>,
}

/// What a response to one of the [`Subscriber`]'s SUBSCRIBEs did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscribeOutcome {
    /// A provisional: nothing changes.
    Provisional,
    /// A 2xx: the subscription (dialog) is accepted until the given expiry.
    Accepted(DialogId),
    /// The initial SUBSCRIBE failed and no NOTIFY created a subscription: it is over.
    Failed(u16),
    /// A refresh (in-dialog SUBSCRIBE) failed; that subscription is removed.
    Removed(DialogId, u16),
    /// A response matching nothing of ours.
    Ignored,
}

/// The subscriber side of one SUBSCRIBE (RFC 6665 §4.1).
#[derive(Debug)]
pub struct Subscriber {
    subscribe: Message,
    local_contact: String,
    event: EventKey,
    expires: u32,
    dialogs: Vec<SubscriberDialog>,
    max_forks: usize,
    answered: bool,
    unsubscribed: bool,
}

impl Subscriber {
    /// Follows `subscribe` (sent by the caller, with Event, Expires, a From-tag and a Contact
    /// whose URI is `local_contact`). At most `max_forks` subscriptions are created from it.
    pub fn new(
        subscribe: Message,
        local_contact: &str,
        max_forks: usize,
    ) -> Result<Subscriber, Error> {
        let event = EventKey::of(&subscribe).ok_or(Error::Header("Event"))?;
        let expires = match subscribe.expires() {
            Some(Ok(e)) => e,
            Some(Err(_)) => return Err(Error::Header("Expires")),
            None => 3600,
        };
        subscribe.from().map_err(|_| Error::Header("From"))?;
        Ok(Subscriber {
            subscribe,
            local_contact: local_contact.to_owned(),
            event,
            expires,
            dialogs: Vec::new(),
            max_forks: max_forks.max(1),
            answered: false,
            unsubscribed: false,
        })
    }

    /// The event package subscribed to.
    pub fn event(&self) -> &EventKey {
        &self.event
    }

    /// The subscriptions (one per fork that answered or notified).
    pub fn dialogs(&self) -> &[SubscriberDialog] {
        &self.dialogs
    }

    /// True when every subscription ended (and the initial SUBSCRIBE got its final).
    pub fn is_terminated(&self) -> bool {
        self.answered && self.dialogs.is_empty()
    }

    fn ours(&self, msg: &Message) -> bool {
        msg.call_id() == self.subscribe.call_id()
    }

    fn find(&mut self, remote_tag: &str) -> Option<usize> {
        self.dialogs
            .iter()
            .position(|d| d.dialog.id().remote_tag == remote_tag)
    }

    /// A response to the initial SUBSCRIBE or to a refresh/unsubscribe built here.
    pub fn on_response(&mut self, now: Instant, response: &Message) -> SubscribeOutcome {
        let Some(status) = response.status() else {
            return SubscribeOutcome::Ignored;
        };
        if !self.ours(response) {
            return SubscribeOutcome::Ignored;
        }
        if status < 200 {
            return SubscribeOutcome::Provisional;
        }
        let initial = response
            .cseq()
            .is_ok_and(|c| Some(c.seq) == self.subscribe.cseq().ok().map(|s| s.seq));
        let to_tag = response.to().ok().and_then(|t| t.tag().map(str::to_owned));
        if initial {
            self.answered = true;
        }
        if status >= 300 {
            if let Some(i) = to_tag.as_deref().and_then(|t| self.find(t)) {
                // A refresh that failed (481, 408…) ends that subscription; a failed initial
                // SUBSCRIBE leaves subscriptions that NOTIFYs created to their own states.
                if !initial {
                    let d = self.dialogs.remove(i);
                    return SubscribeOutcome::Removed(d.dialog.id().clone(), status);
                }
            }
            if initial && self.dialogs.is_empty() {
                return SubscribeOutcome::Failed(status);
            }
            return SubscribeOutcome::Ignored;
        }
        let Some(tag) = to_tag else {
            return SubscribeOutcome::Ignored;
        };
        let granted = match response.expires() {
            Some(Ok(e)) => e.min(self.expires.max(1)),
            _ => self.expires,
        };
        let idx = match self.find(&tag) {
            Some(i) => {
                let _ = self.dialogs[i].dialog.confirm(response);
                i
            }
            None if initial && self.dialogs.len() < self.max_forks => {
                match Dialog::uac(&self.subscribe, response, &self.local_contact) {
                    Ok(d) => {
                        self.dialogs.push(SubscriberDialog {
                            dialog: d,
                            state: SubState::Pending,
                            expires_at: None,
                            refresh_at: None,
                            timer_n: Some(now + TIMER_N),
                        });
                        self.dialogs.len() - 1
                    }
                    Err(_) => return SubscribeOutcome::Ignored,
                }
            }
            None => return SubscribeOutcome::Ignored,
        };
        let d = &mut self.dialogs[idx];
        if granted == 0 {
            // The answer to our unsubscribe: the terminating NOTIFY ends the subscription.
            d.refresh_at = None;
        } else {
            d.expires_at = Some(now + Duration::from_secs(granted.into()));
            d.refresh_at = (!self.unsubscribed).then(|| now + refresh_delay(granted));
        }
        SubscribeOutcome::Accepted(d.dialog.id().clone())
    }

    /// A NOTIFY received: the status to answer, and the notification for the application when
    /// it was accepted (2xx). RFC 6665 §4.1.3: it matches by Call-ID, To-tag (our From-tag)
    /// and Event; the first NOTIFY of a fork (or one before the 2xx) creates its subscription.
    pub fn on_notify(&mut self, now: Instant, notify: &Message) -> (u16, Option<Notification>) {
        if notify.method() != Some(Method::Notify) || !self.ours(notify) {
            return (481, None);
        }
        let our_tag = self.subscribe.from().ok().and_then(|f| f.tag());
        let to_tag = notify.to().ok().and_then(|t| t.tag());
        if our_tag.is_none() || our_tag != to_tag {
            return (481, None);
        }
        match EventKey::of(notify) {
            Some(k) if k == self.event => {}
            Some(_) => return (489, None),
            None => return (400, None),
        }
        let Some((state, expires)) = notify
            .header(HeaderName::SubscriptionState)
            .and_then(SubState::parse)
        else {
            return (400, None);
        };
        let Some(from_tag) = notify.from().ok().and_then(|f| f.tag().map(str::to_owned)) else {
            return (400, None);
        };
        let idx = match self.find(&from_tag) {
            Some(i) => {
                if let Err(r) = self.dialogs[i].dialog.check_request(notify) {
                    return (r.status, None);
                }
                i
            }
            None => {
                if self.unsubscribed && !state.is_terminated() {
                    return (481, None);
                }
                if self.dialogs.len() >= self.max_forks {
                    return (481, None);
                }
                match Dialog::uac_from_notify(&self.subscribe, notify, &self.local_contact) {
                    Ok(d) => {
                        self.dialogs.push(SubscriberDialog {
                            dialog: d,
                            state: SubState::Pending,
                            expires_at: None,
                            // Refreshed once the 2xx (or this NOTIFY's expires) says when.
                            refresh_at: None,
                            timer_n: None,
                        });
                        self.dialogs.len() - 1
                    }
                    Err(_) => return (400, None),
                }
            }
        };
        let d = &mut self.dialogs[idx];
        d.timer_n = None;
        let id = d.dialog.id().clone();
        if let (Some(e), false) = (expires, state.is_terminated()) {
            let at = now + Duration::from_secs(e.into());
            // §4.1.2.1: the notifier may shorten the subscription; refresh before it ends.
            if d.expires_at.is_none_or(|cur| at < cur) {
                d.expires_at = Some(at);
                if !self.unsubscribed {
                    d.refresh_at = Some(now + refresh_delay(e));
                }
            }
        }
        d.state = state.clone();
        if state.is_terminated() {
            self.dialogs.remove(idx);
        }
        let notification = Notification {
            dialog: id,
            state,
            content: Content::of(notify),
        };
        (200, Some(notification))
    }

    /// The earliest refresh or Timer N due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.dialogs
            .iter()
            .flat_map(|d| [d.refresh_at, d.timer_n])
            .flatten()
            .min()
    }

    /// Timer N (RFC 6665 §4.1.2.4): subscriptions whose 2xx came 64·T1 ago without any
    /// NOTIFY are over; returns them (removed).
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<DialogId> {
        let mut gone = Vec::new();
        self.dialogs.retain(|d| {
            let expired = d.timer_n.is_some_and(|t| t <= now);
            if expired {
                gone.push(d.dialog.id().clone());
            }
            !expired
        });
        gone
    }

    /// The refresh SUBSCRIBEs due at `now`, one per subscription (each with a fresh top Via
    /// from `via`). Subscriptions past their expiry without a refresh answer are dropped.
    pub fn refresh(&mut self, now: Instant, mut via: impl FnMut() -> String) -> Vec<Message> {
        self.dialogs
            .retain(|d| d.expires_at.is_none_or(|e| e > now) || d.refresh_at.is_some());
        let mut out = Vec::new();
        let (event, expires) = (self.event.header_value(), self.expires);
        for d in &mut self.dialogs {
            if d.refresh_at.is_some_and(|at| at <= now) {
                d.refresh_at = None;
                if let Ok(m) = in_dialog_subscribe(&mut d.dialog, &via(), &event, expires) {
                    out.push(m);
                }
            }
        }
        out
    }

    /// `challenged` (a refresh or unsubscribe of ours that got a 401/407) sent again in its
    /// subscription with the next CSeq and the `credentials` header (RFC 3261 §22.2), the
    /// same Expires, a fresh top Via `via`. `None` when that subscription is gone. Answer the
    /// challenge here rather than through [`Subscriber::on_response`], which would end the
    /// subscription on the 401.
    pub fn retry_with(
        &mut self,
        challenged: &Message,
        via: &str,
        credentials: (&str, &str),
    ) -> Option<Message> {
        let remote = challenged.to().ok()?.tag()?.to_owned();
        let expires = match challenged.expires() {
            Some(Ok(e)) => e,
            _ => self.expires,
        };
        let event = self.event.header_value();
        let i = self.find(&remote)?;
        let d = &mut self.dialogs[i].dialog;
        let b = d
            .request(Method::Subscribe, via)
            .ok()?
            .header("Event", event)
            .header("Expires", expires.to_string())
            .header(credentials.0, credentials.1);
        b.build().ok()
    }

    /// Unsubscribes (§4.1.2.3): a SUBSCRIBE with `Expires: 0` in every subscription. Their
    /// terminating NOTIFYs then end them.
    pub fn unsubscribe(&mut self, mut via: impl FnMut() -> String) -> Vec<Message> {
        self.unsubscribed = true;
        let event = self.event.header_value();
        let mut out = Vec::new();
        for d in &mut self.dialogs {
            d.refresh_at = None;
            if let Ok(m) = in_dialog_subscribe(&mut d.dialog, &via(), &event, 0) {
                out.push(m);
            }
        }
        out
    }
}

/// Refresh at 90 % of the granted time, but at least 5 s before it ends when it can.
fn refresh_delay(granted: u32) -> Duration {
    let g = u64::from(granted);
    let secs = (g * 9 / 10).min(g.saturating_sub(5)).max(g / 2);
    Duration::from_secs(secs.max(1))
}

fn in_dialog_subscribe(
    dialog: &mut Dialog,
    via: &str,
    event: &str,
    expires: u32,
) -> Result<Message, Error> {
    Ok(dialog
        .request(Method::Subscribe, via)?
        .header("Event", event)
        .header("Expires", expires.to_string())
        .build()?)
}

/// The notifier's settings (RFC 6665 §4.2).
#[derive(Debug, Clone)]
pub struct NotifierConfig {
    /// Below this a SUBSCRIBE gets 423 with Min-Expires.
    pub min_expires: u32,
    /// Longer requests are cut down to this.
    pub max_expires: u32,
    /// When the SUBSCRIBE has no Expires (the package default).
    pub default_expires: u32,
    /// The most NOTIFY contents queued per subscription.
    pub queue_limit: usize,
    /// The least time between two NOTIFYs of a subscription (rate limiting, §4.2.2.3).
    pub min_interval: Duration,
    /// What to do with a content when the queue is full.
    pub overflow: Overflow,
}

impl Default for NotifierConfig {
    fn default() -> Self {
        NotifierConfig {
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            queue_limit: DEFAULT_QUEUE_LIMIT,
            min_interval: Duration::ZERO,
            overflow: Overflow::Coalesce,
        }
    }
}

/// What a full NOTIFY queue does with one more content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// State packages (presence): only the latest state matters, so the oldest queued content
    /// is dropped for the new one.
    Coalesce,
    /// Message packages (im): every content matters; the new one is refused
    /// ([`QueueFull`]) and the publisher is told to retry.
    Reject,
}

/// A NOTIFY queue had no room ([`Overflow::Reject`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("NOTIFY queue full")]
pub struct QueueFull;

/// Why a SUBSCRIBE is refused by the notifier's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The status (423, 400, 481, 500).
    pub status: u16,
    /// For 423: the Min-Expires value.
    pub min_expires: Option<u32>,
}

impl Refusal {
    fn status(status: u16) -> Refusal {
        Refusal {
            status,
            min_expires: None,
        }
    }

    /// The response to `request` this refusal means.
    pub fn response(&self, request: &Message) -> Result<Message, Error> {
        let mut b = request.response(self.status);
        if let Some(m) = self.min_expires {
            b = b.header("Min-Expires", m.to_string());
        }
        Ok(b.build()?)
    }
}

/// What the answer to a NOTIFY did to the subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyOutcome {
    /// A provisional, or a 2xx with more to send: carry on.
    Continue,
    /// The subscription is over (the terminating NOTIFY was answered, or a NOTIFY failed):
    /// remove it.
    Removed,
}

/// The notifier side of one subscription (RFC 6665 §4.2).
#[derive(Debug)]
pub struct Notifier {
    dialog: Dialog,
    event: EventKey,
    state: SubState,
    expires_at: Instant,
    queue: VecDeque<Option<Content>>,
    queued_bytes: usize,
    outstanding: Option<bool>,
    last_sent: Option<Instant>,
    terminal: Option<String>,
    done: bool,
    config: NotifierConfig,
}

impl Notifier {
    /// Accepts `subscribe` (out of dialog, already authorized by the application) with our
    /// `local_tag` and Contact URI. Returns the subscription and the Expires granted; answer
    /// with [`Notifier::response`]. `pending` starts it pending (authorization to come).
    /// An `Expires: 0` SUBSCRIBE is a fetch: the first NOTIFY is also the last.
    pub fn accept(
        now: Instant,
        subscribe: &Message,
        local_tag: &str,
        local_contact: &str,
        pending: bool,
        config: NotifierConfig,
    ) -> Result<(Notifier, u32), Refusal> {
        let event = EventKey::of(subscribe).ok_or(Refusal::status(400))?;
        let expires = granted_expires(subscribe, &config)?;
        let dialog = Dialog::uas(subscribe, local_tag, local_contact, false)
            .map_err(|_| Refusal::status(400))?;
        let n = Notifier {
            dialog,
            event,
            state: if pending {
                SubState::Pending
            } else {
                SubState::Active
            },
            expires_at: now + Duration::from_secs(expires.into()),
            queue: VecDeque::new(),
            queued_bytes: 0,
            outstanding: None,
            last_sent: None,
            terminal: (expires == 0).then(|| "timeout".to_owned()),
            done: false,
            config,
        };
        Ok((n, expires))
    }

    /// The 2xx to a SUBSCRIBE of this subscription: To-tag, Contact, the Expires granted.
    pub fn response(&self, subscribe: &Message, expires: u32) -> Result<Message, Error> {
        Ok(subscribe
            .response(200)
            .to_tag(&self.dialog.id().local_tag)
            .header("Contact", format!("<{}>", self.dialog.local_contact()))
            .header("Expires", expires.to_string())
            .build()?)
    }

    /// The dialog.
    pub fn dialog(&self) -> &Dialog {
        &self.dialog
    }

    /// The event package.
    pub fn event(&self) -> &EventKey {
        &self.event
    }

    /// The state.
    pub fn state(&self) -> &SubState {
        &self.state
    }

    /// When it expires.
    pub fn expires_at(&self) -> Instant {
        self.expires_at
    }

    /// Queued contents and their bytes.
    pub fn queued(&self) -> (usize, usize) {
        (self.queue.len(), self.queued_bytes)
    }

    /// True once over: remove it.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// True once terminating (unsubscribed, expired, or ended by the application).
    pub fn is_terminating(&self) -> bool {
        self.terminal.is_some()
    }

    /// A SUBSCRIBE received in this subscription (refresh, or unsubscribe with `Expires: 0`).
    /// Returns the Expires granted (answer with [`Notifier::response`]); an unsubscribe makes
    /// the next NOTIFY the terminating one (queue the current state with [`Notifier::notify`]).
    pub fn on_subscribe(&mut self, now: Instant, subscribe: &Message) -> Result<u32, Refusal> {
        if self.done || self.terminal.is_some() {
            return Err(Refusal::status(481));
        }
        self.dialog
            .check_request(subscribe)
            .map_err(|r| Refusal::status(r.status))?;
        let expires = granted_expires(subscribe, &self.config)?;
        if expires == 0 {
            self.terminal = Some("timeout".to_owned());
        } else {
            self.expires_at = now + Duration::from_secs(expires.into());
        }
        Ok(expires)
    }

    /// Authorization granted later: pending becomes active (queue a NOTIFY saying so).
    pub fn activate(&mut self) {
        if self.state == SubState::Pending {
            self.state = SubState::Active;
        }
    }

    /// Queues a NOTIFY with `content` (the new state, or a message). The queue is bounded:
    /// see [`Overflow`].
    pub fn notify(&mut self, content: Content) -> Result<(), QueueFull> {
        self.enqueue(Some(content))
    }

    /// Queues a NOTIFY without a body (the immediate NOTIFY of a package without state, or of
    /// a pending subscription).
    pub fn notify_empty(&mut self) -> Result<(), QueueFull> {
        self.enqueue(None)
    }

    fn enqueue(&mut self, content: Option<Content>) -> Result<(), QueueFull> {
        if self.done {
            return Ok(());
        }
        if self.queue.len() >= self.config.queue_limit.max(1) {
            match self.config.overflow {
                Overflow::Reject => return Err(QueueFull),
                Overflow::Coalesce => {
                    if let Some(old) = self.queue.pop_front() {
                        self.queued_bytes -= old.map_or(0, |c| c.size());
                    }
                }
            }
        }
        self.queued_bytes += content.as_ref().map_or(0, Content::size);
        self.queue.push_back(content);
        Ok(())
    }

    /// Room for `n` more contents without overflow.
    pub fn has_room(&self, n: usize) -> bool {
        self.queue.len() + n <= self.config.queue_limit.max(1)
    }

    /// Ends the subscription with `reason` (`deactivated`, `noresource`, `rejected`…): the
    /// NOTIFY after the queued ones says terminated.
    pub fn terminate(&mut self, reason: &str) {
        if self.terminal.is_none() {
            self.terminal = Some(reason.to_owned());
        }
    }

    /// The next NOTIFY to send, if one may go now: none while one is outstanding (in-order
    /// delivery), none before the minimum interval since the last one. The last queued content
    /// of a terminating subscription goes in the terminating NOTIFY (one without a body when
    /// nothing is queued). `via` is its top Via.
    pub fn poll_notify(&mut self, now: Instant, via: &str) -> Option<Message> {
        if self.done || self.outstanding.is_some() {
            return None;
        }
        if self.queue.is_empty() && self.terminal.is_none() {
            return None;
        }
        if let Some(last) = self.last_sent {
            if now < last + self.config.min_interval {
                return None;
            }
        }
        let content = self.queue.pop_front().flatten();
        if let Some(c) = &content {
            self.queued_bytes -= c.size();
        }
        if self.queue.is_empty() {
            // An idle subscription holds no queue memory (most of them, most of the time).
            self.queue = VecDeque::new();
        }
        let last = self.terminal.is_some() && self.queue.is_empty();
        let state = match &self.terminal {
            Some(reason) if last => SubState::Terminated {
                reason: Some(reason.clone()),
                retry_after: None,
            },
            _ => self.state.clone(),
        };
        let remaining = self.expires_at.saturating_duration_since(now).as_secs() as u32;
        let mut b = match self.dialog.request(Method::Notify, via) {
            Ok(b) => b,
            Err(_) => {
                self.done = true;
                return None;
            }
        };
        b = b
            .header("Event", self.event.header_value())
            .header("Subscription-State", state.header_value(remaining));
        if let Some(c) = content {
            b = b.body(&c.content_type, c.body);
        }
        match b.build() {
            Ok(m) => {
                self.outstanding = Some(last);
                self.last_sent = Some(now);
                Some(m)
            }
            Err(_) => {
                self.done = true;
                None
            }
        }
    }

    /// The final answer to the outstanding NOTIFY (`None`: its transaction timed out or could
    /// not be sent). §4.2.2: a failed NOTIFY removes the subscription.
    pub fn on_notify_response(&mut self, status: Option<u16>) -> NotifyOutcome {
        match status {
            Some(s) if s < 200 => NotifyOutcome::Continue,
            Some(s) if s < 300 => {
                if self.outstanding.take() == Some(true) {
                    self.done = true;
                    self.dialog.terminate(crate::EndCause::LocalBye);
                    return NotifyOutcome::Removed;
                }
                NotifyOutcome::Continue
            }
            _ => {
                self.outstanding = None;
                self.done = true;
                self.dialog.terminate(crate::EndCause::Gone);
                NotifyOutcome::Removed
            }
        }
    }

    /// When [`Notifier::handle_timeout`] or [`Notifier::poll_notify`] next has work: the
    /// expiry, or the end of the rate limit with contents queued.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.done {
            return None;
        }
        let expiry = self.terminal.is_none().then_some(self.expires_at);
        let next_send = match (self.outstanding, self.last_sent) {
            (None, Some(last)) if !self.queue.is_empty() || self.terminal.is_some() => {
                Some(last + self.config.min_interval)
            }
            _ => None,
        };
        match (expiry, next_send) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The subscription expired without a refresh: the next NOTIFY terminates it with reason
    /// `timeout` (§4.2.2.4).
    pub fn handle_timeout(&mut self, now: Instant) {
        if !self.done && self.terminal.is_none() && now >= self.expires_at {
            self.terminal = Some("timeout".to_owned());
        }
    }

    /// Heap bytes held (dialog, queue bookkeeping; shared bodies counted by their length).
    pub fn heap_size(&self) -> usize {
        self.dialog.heap_size()
            + self.event.package.capacity()
            + self.event.id.as_ref().map_or(0, String::capacity)
            + self.queue.capacity() * std::mem::size_of::<Option<Content>>()
            + self.queued_bytes
    }
}

/// §4.2.1.1: the Expires a SUBSCRIBE gets: its own (or the default), at most the maximum;
/// 423 below the minimum (0 is allowed: a fetch or an unsubscribe).
fn granted_expires(subscribe: &Message, config: &NotifierConfig) -> Result<u32, Refusal> {
    let asked = match subscribe.expires() {
        Some(Ok(e)) => e,
        Some(Err(_)) => return Err(Refusal::status(400)),
        None => config.default_expires,
    };
    if asked != 0 && asked < config.min_expires {
        return Err(Refusal {
            status: 423,
            min_expires: Some(config.min_expires),
        });
    }
    Ok(asked.min(config.max_expires))
}
