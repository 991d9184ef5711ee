//! Calls: the [`Call`] handle and its [`CallEvent`]s, the UAC side of the initial INVITE
//! (forks, ACKs, CANCEL, digest retry) and the requests sent in an established dialog (BYE,
//! re-INVITE with glare retry, UPDATE, INFO, REFER).

use std::sync::Arc;

use bytes::Bytes;
use sip_core::random::RandomSource;
use sip_core::{HeaderName, Message, Method, Target};
use sip_dialog::invite::{ClientEvent, InviteClient, InviteUsage, Timers};
use sip_dialog::{Dialog, DialogId, EndCause};
use tokio::sync::{mpsc, Notify};
use tracing::Instrument;

use super::shared::{out_of_dialog, CallSlot, Shared, Usage};
use super::{UaError, ALLOW};

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallEnd {
    /// We hung up (BYE sent).
    LocalBye,
    /// The peer hung up (BYE received).
    RemoteBye,
    /// The caller cancelled before the answer.
    Cancelled,
    /// Our 2xx was never ACKed (RFC 3261 §13.3.1.4): ended with BYE.
    AckTimeout,
    /// A request in the dialog got 481 or 408: the dialog is gone (§12.2.1.2).
    Gone,
    /// The session timer ran out without a refresh (RFC 4028 §10): ended with BYE.
    SessionExpired,
}

/// What happens on a call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallEvent {
    /// A provisional without a dialog (100 Trying).
    Trying,
    /// Ringing (180) or session progress (183); `early_media` holds the SDP if it carried one.
    Ringing {
        /// The status.
        status: u16,
        /// The early-media SDP.
        early_media: Option<Bytes>,
    },
    /// Answered (2xx); `sdp` is the remote session description.
    Answered {
        /// The remote SDP.
        sdp: Bytes,
    },
    /// The call attempt failed with this final status (408 for no answer at all, 500 for a 2xx
    /// without Contact, which is ACKed and ended with BYE).
    Failed {
        /// The status.
        status: u16,
    },
    /// The established call ended.
    Ended {
        /// Why.
        cause: CallEnd,
    },
    /// The peer sent a new offer (re-INVITE or UPDATE), answered with our current SDP.
    Offer {
        /// The method that carried it.
        method: String,
        /// The remote SDP.
        sdp: Bytes,
    },
    /// The session timer was negotiated or refreshed (RFC 4028): `interval` seconds, and
    /// whether we are the refresher.
    SessionTimer {
        /// The session interval, seconds.
        interval: u32,
        /// We refresh (at half the interval); otherwise the peer must, or we send BYE.
        we_refresh: bool,
    },
    /// With [`super::UserAgentBuilder::manual_answers`]: the peer sent an offer (re-INVITE, or
    /// UPDATE in an early or confirmed dialog) that waits for [`Call::answer_offer`] with this
    /// `id` (or is rejected 500 after 64·T1).
    OfferRequest {
        /// Pass it to `answer_offer`.
        id: u64,
        /// INVITE or UPDATE.
        method: String,
        /// The remote SDP offer.
        sdp: Bytes,
    },
    /// The peer asks us to contact `refer_to` (RFC 3515 REFER): answer with
    /// [`Call::accept_refer`] or [`Call::reject_refer`] and this `id` (declined with 603
    /// after 64·T1).
    Refer {
        /// Pass it to `accept_refer` / `reject_refer`.
        id: u64,
        /// The Refer-To URI.
        refer_to: String,
        /// The Referred-By URI, if any.
        referred_by: Option<String>,
    },
    /// A NOTIFY about a REFER we sent: the referred request's status (RFC 3515 §2.4.5).
    ReferNotify {
        /// The status in its sipfrag.
        status: u16,
    },
    /// An INFO arrived (answered 200).
    Info {
        /// Its Content-Type.
        content_type: String,
        /// Its body.
        body: Bytes,
    },
}

/// A call, outgoing or accepted. Dropping it leaves the call up; end it with [`Call::bye`].
#[derive(Debug)]
pub struct Call {
    pub(crate) shared: Arc<Shared>,
    pub(crate) key: u64,
    pub(crate) events: mpsc::UnboundedReceiver<CallEvent>,
    pub(crate) cancel: Arc<Notify>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserAgent")
            .field("aor", &self.config.aor)
            .finish_non_exhaustive()
    }
}

/// Places a call: registers its slot and starts the INVITE task.
pub(crate) async fn place(
    shared: Arc<Shared>,
    target: &str,
    offer: Bytes,
) -> Result<Call, UaError> {
    let dest = shared.destination(target).await?;
    let call_id = shared.endpoint.new_call_id();
    let tag = shared.endpoint.new_tag();
    let span = tracing::info_span!("call", dir = "out", %call_id, local_tag = %tag, remote_tag = tracing::field::Empty);
    let (tx, events) = mpsc::unbounded_channel();
    let cancel = Arc::new(Notify::new());
    let key = insert_slot(&shared, tx, span.clone(), offer.clone(), None);
    let (updates, early_updates) = mpsc::channel(4);
    if let Some(slot) = shared.state().calls.get_mut(&key) {
        slot.early_updates = Some(updates);
    }
    let uac = Uac {
        shared: shared.clone(),
        key,
        dest,
        target: target.to_owned(),
        call_id,
        tag,
        offer,
        cancel: cancel.clone(),
        session: shared.config.session_timer,
        early_updates: tokio::sync::Mutex::new(early_updates),
    };
    tokio::spawn(uac.run().instrument(span));
    Ok(Call {
        shared,
        key,
        events,
        cancel,
    })
}

pub(crate) fn insert_slot(
    shared: &Shared,
    events: mpsc::UnboundedSender<CallEvent>,
    span: tracing::Span,
    local_sdp: Bytes,
    invite_txn: Option<Arc<crate::endpoint::ServerTransaction>>,
) -> u64 {
    let mut st = shared.state();
    let key = st.next_call;
    st.next_call += 1;
    let unanswered = invite_txn.is_some();
    st.calls.insert(
        key,
        CallSlot {
            events,
            dialog: None,
            span,
            local_sdp,
            invite_txn,
            wake: Arc::new(Notify::new()),
            unanswered,
            reliable: None,
            session: None,
            pending_offer: None,
            early_updates: None,
            refer: Default::default(),
        },
    );
    key
}

/// Emits an event on a call (ignored once the handle is gone).
pub(crate) fn emit(shared: &Shared, key: u64, event: CallEvent) {
    if let Some(slot) = shared.state().calls.get(&key) {
        let _ = slot.events.send(event);
    }
}

pub(crate) fn random() -> u64 {
    sip_core::random::OsRandom.next_u64()
}

pub(crate) fn timers(shared: &Shared) -> Timers {
    Timers {
        t1: shared.config.t1,
        t2: shared.config.t2,
    }
}

/// The UAC side of one outgoing INVITE.
struct Uac {
    shared: Arc<Shared>,
    key: u64,
    dest: Target,
    target: String,
    call_id: String,
    tag: String,
    offer: Bytes,
    cancel: Arc<Notify>,
    /// RFC 4028: the interval asked for (raised after a 422).
    session: Option<sip_dialog::session_timer::Config>,
    /// UPDATEs the application sends in the early dialog (RFC 3311).
    early_updates: tokio::sync::Mutex<mpsc::Receiver<super::offer::EarlyUpdate>>,
}

enum Outcome {
    Answered,
    Retry((HeaderName, String)),
    /// RFC 4028 §7.4: a 422; try again with this interval.
    MinSe(sip_dialog::session_timer::Config),
    Failed(u16),
}

impl Uac {
    async fn run(mut self) {
        let mut cseq = 1;
        let mut auth = None;
        for _ in 0..4 {
            let outcome = match self.attempt(cseq, auth.take()).await {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(error = %e, "INVITE not sent");
                    Outcome::Failed(503)
                }
            };
            match outcome {
                Outcome::Answered => return,
                Outcome::Retry(a) => {
                    auth = Some(a);
                    cseq += 1;
                }
                Outcome::MinSe(config) => {
                    tracing::info!(session_expires = config.session_expires, "422: retrying");
                    self.session = Some(config);
                    cseq += 1;
                }
                Outcome::Failed(status) => return self.fail(status),
            }
        }
        self.fail(401)
    }

    fn fail(&self, status: u16) {
        tracing::info!(status, "call failed");
        let slot = self.shared.state().calls.remove(&self.key);
        if let Some(slot) = slot {
            let _ = slot.events.send(CallEvent::Failed { status });
        }
    }

    fn invite(&self, cseq: u32, auth: Option<(HeaderName, String)>) -> Result<Message, UaError> {
        let mut b = out_of_dialog(
            &self.shared,
            Method::Invite,
            &self.target,
            &self.target,
            &self.call_id,
            &self.tag,
            cseq,
        )
        .header("Allow", ALLOW)
        .header("Supported", super::prack::SUPPORTED);
        if self.shared.config.prack {
            b = b.header("Require", sip_dialog::prack::OPTION_TAG);
        }
        for (name, value) in super::session_timer::initial_headers(self.session.as_ref()) {
            b = b.header(name, value);
        }
        if let Some((name, value)) = auth {
            b = b.header(name.canonical().unwrap_or("Authorization"), value);
        }
        Ok(b.body("application/sdp", self.offer.clone()).build()?)
    }

    async fn attempt(
        &self,
        cseq: u32,
        auth: Option<(HeaderName, String)>,
    ) -> Result<Outcome, UaError> {
        let invite = self.invite(cseq, auth)?;
        let mut txn = self
            .shared
            .endpoint
            .request(invite.clone(), self.dest.clone())
            .await?;
        let mut client = InviteClient::new(
            invite.clone(),
            &self.shared.config.contact,
            self.shared.config.t1,
        )?;
        let mut cancelling = false;
        let mut pracks = sip_dialog::prack::PrackClient::new();
        let mut early_updates = self.early_updates.lock().await;
        loop {
            let response = tokio::select! {
                r = txn.next_response() => r,
                _ = self.cancel.notified(), if !cancelling && !client.answered() => {
                    cancelling = true;
                    client.cancel();
                    tracing::info!("cancelling");
                    if let Err(e) = txn.cancel().await {
                        tracing::debug!(error = %e, "CANCEL not sent");
                    }
                    continue;
                }
                Some(update) = early_updates.recv(), if !client.answered() => {
                    super::offer::send_early_update(&self.shared, self.key, &mut client, update);
                    continue;
                }
            };
            let Some(response) = response else { break };
            let now = Shared::now();
            match client.on_response(now, &response, &self.shared.via()) {
                ClientEvent::Trying { .. } => emit(&self.shared, self.key, CallEvent::Trying),
                ClientEvent::Early { status, .. } => {
                    super::prack::on_provisional(&self.shared, &mut pracks, &mut client, &response);
                    let body = response.body_bytes();
                    let early_media = (!body.is_empty()).then_some(body);
                    emit(
                        &self.shared,
                        self.key,
                        CallEvent::Ringing {
                            status,
                            early_media,
                        },
                    );
                }
                ClientEvent::Answered {
                    dialog,
                    ack,
                    cancelled,
                } => {
                    self.answered(*dialog, ack, &response).await;
                    if cancelled {
                        // RFC 5407 §3.1.2 style: the 2xx crossed our CANCEL; end it.
                        let call = Call::handle(self.shared.clone(), self.key);
                        if let Err(e) = call.bye().await {
                            tracing::debug!(error = %e, "BYE after a crossed CANCEL failed");
                        }
                    }
                }
                ClientEvent::Reack(ack) => self.send_ack(ack).await,
                ClientEvent::ExtraFork { dialog, ack } => {
                    self.send_ack(ack).await;
                    tokio::spawn(bye_fork(self.shared.clone(), *dialog));
                }
                ClientEvent::InvalidAnswer { dialog, ack } => {
                    tracing::warn!("2xx without Contact (RFC 3261 §12.1.2): ACK, BYE, failed");
                    self.send_ack(ack).await;
                    tokio::spawn(bye_fork(self.shared.clone(), *dialog));
                    return Ok(Outcome::Failed(500));
                }
                ClientEvent::Failed { status, .. } => {
                    if matches!(status, 401 | 407) && !cancelling {
                        if let Some(a) =
                            self.shared.answer_challenge(&invite, &response, &self.dest)
                        {
                            return Ok(Outcome::Retry(a));
                        }
                    }
                    if status == 422 && !cancelling {
                        if let Some(c) = self
                            .session
                            .as_ref()
                            .and_then(|c| sip_dialog::session_timer::uac_on_422(&response, c))
                        {
                            return Ok(Outcome::MinSe(c));
                        }
                    }
                    let status = if cancelling && status == 487 {
                        487
                    } else {
                        status
                    };
                    return Ok(Outcome::Failed(status));
                }
                ClientEvent::Ignored => {}
            }
        }
        if client.answered() {
            return Ok(Outcome::Answered);
        }
        // Timer B (or a transport error) ended the transaction: the early dialogs end too.
        client.on_timeout(Shared::now());
        Ok(Outcome::Failed(match txn.final_response().await {
            Ok(r) => r.status().unwrap_or(408),
            Err(_) => 408,
        }))
    }

    /// The first 2xx: the dialog goes into the table, the ACK out, the event to the app.
    async fn answered(&self, dialog: Dialog, ack: Message, response: &Message) {
        let id = dialog.id().clone();
        tracing::Span::current().record("remote_tag", id.remote_tag.as_str());
        tracing::info!(remote_target = dialog.remote_target(), "answered");
        let mut usage = InviteUsage::new(timers(&self.shared));
        let seq = ack.cseq().map(|c| c.seq).unwrap_or(0);
        usage.set_ack(seq, ack.clone());
        let inserted = {
            let mut st = self.shared.state();
            let ok = st
                .dialogs
                .insert(
                    dialog,
                    Usage {
                        invite: usage,
                        call: self.key,
                        flow: None,
                    },
                )
                .is_ok();
            if let Some(slot) = st.calls.get_mut(&self.key) {
                slot.dialog = Some(id.clone());
            }
            ok
        };
        self.send_ack(ack).await;
        if !inserted {
            tracing::warn!("dialog table full: the call is ended");
        }
        emit(
            &self.shared,
            self.key,
            CallEvent::Answered {
                sdp: response.body_bytes(),
            },
        );
        super::session_timer::on_2xx_received(&self.shared, self.key, response);
    }

    async fn send_ack(&self, ack: Message) {
        send_ack(&self.shared, ack, None).await;
    }
}

/// Sends an ACK of a 2xx to the dialog's next hop (its Request-URI or first Route).
pub(crate) async fn send_ack(shared: &Shared, ack: Message, flow: Option<sip_core::Flow>) {
    let next_hop = ack
        .routes()
        .next()
        .and_then(|r| r.ok().map(|a| a.uri_str().to_owned()))
        .or_else(|| ack.uri_str().map(str::to_owned))
        .unwrap_or_default();
    match shared.dialog_destination(&next_hop, flow).await {
        Ok(dest) => {
            if let Err(e) = shared
                .endpoint
                .send_stateless(ack, crate::endpoint::Destination::Target(dest))
                .await
            {
                tracing::debug!(error = %e, "ACK not sent");
            }
        }
        Err(e) => tracing::debug!(error = %e, "ACK destination"),
    }
}

/// An extra fork's 2xx (RFC 3261 §13.2.2.4): ACKed already; end it with BYE.
async fn bye_fork(shared: Arc<Shared>, mut dialog: Dialog) {
    let Ok(dest) = shared.dialog_destination(&dialog.next_hop(), None).await else {
        return;
    };
    let Ok(bye) = dialog
        .request(Method::Bye, &shared.via())
        .and_then(|b| Ok(b.build()?))
    else {
        return;
    };
    tracing::info!(remote_tag = %dialog.id().remote_tag, "extra fork answered: BYE");
    if let Ok(mut txn) = shared.endpoint.request(bye, dest).await {
        let _ = txn.final_response().await;
    }
}

impl Call {
    pub(crate) fn handle(shared: Arc<Shared>, key: u64) -> Call {
        let (_, events) = mpsc::unbounded_channel();
        Call {
            shared,
            key,
            events,
            cancel: Arc::new(Notify::new()),
        }
    }

    /// The next event; `None` once the call has ended (or failed) and its events are read.
    pub async fn next_event(&mut self) -> Option<CallEvent> {
        self.events.recv().await
    }

    /// The dialog's ID once established.
    pub fn dialog_id(&self) -> Option<DialogId> {
        self.shared.state().calls.get(&self.key)?.dialog.clone()
    }

    /// Cancels the call while it rings (RFC 3261 §9.1). The CANCEL goes once a provisional
    /// has arrived; the call then fails with 487 (or, when the answer crossed the CANCEL, is
    /// ACKed and ended with BYE).
    pub fn cancel(&self) {
        self.cancel.notify_one();
    }

    /// Hangs up (RFC 3261 §15.1.1). As the callee, waits for the ACK of our 2xx first (at most
    /// 64·T1).
    pub async fn bye(&self) -> Result<(), UaError> {
        self.hangup(CallEnd::LocalBye).await
    }

    /// Sends the BYE and ends the call with `cause` (LocalBye, or AckTimeout when our 2xx was
    /// never ACKed).
    pub(crate) async fn hangup(&self, cause: CallEnd) -> Result<(), UaError> {
        self.wait_for_ack().await;
        let ended = match cause {
            CallEnd::AckTimeout | CallEnd::SessionExpired => EndCause::Timeout,
            _ => EndCause::LocalBye,
        };
        let result = self.request(Method::Bye, None, &[]).await;
        let slot = {
            let mut st = self.shared.state();
            if let Some(id) = st.calls.get(&self.key).and_then(|s| s.dialog.clone()) {
                if let Some(e) = st.dialogs.get_by_id_mut(&id) {
                    e.usage.invite.stop();
                    e.dialog.terminate(ended);
                }
                st.dialogs.update(&id);
            }
            st.calls.remove(&self.key)
        };
        if let Some(slot) = slot {
            slot.wake.notify_one();
            let _ = slot.events.send(CallEvent::Ended { cause });
        }
        let response = result?;
        match response.status() {
            Some(s) if (200..300).contains(&s) || s == 481 => Ok(()),
            Some(s) => Err(UaError::Rejected(s)),
            None => Err(UaError::NoResponse("BYE".into())),
        }
    }

    pub(super) async fn wait_for_ack(&self) {
        let deadline = tokio::time::Instant::now() + self.shared.config.t1 * 64;
        loop {
            let wake = {
                let st = self.shared.state();
                let Some(slot) = st.calls.get(&self.key) else {
                    return;
                };
                let waiting = slot
                    .dialog
                    .as_ref()
                    .and_then(|id| st.dialogs.get_by_id(id))
                    .is_some_and(|e| e.usage.invite.awaiting_ack());
                if !waiting {
                    return;
                }
                slot.wake.clone()
            };
            if tokio::time::timeout_at(deadline, wake.notified())
                .await
                .is_err()
            {
                return;
            }
        }
    }
}
