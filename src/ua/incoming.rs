//! What arrives: the event pump that takes the endpoint's events (new calls, requests in
//! dialogs, ACKs, CANCELs, stray 2xx, closed flows), [`IncomingCall`] with ring / accept /
//! reject, the UAS's 2xx retransmission until the ACK, and incoming MESSAGEs.

use std::sync::Arc;

use bytes::Bytes;
use sip_core::{HeaderName, Message, Method};
use sip_dialog::invite::{InviteUsage, InviteVerdict, UsageAction};
use sip_dialog::{Dialog, DialogId, EndCause};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::call::{emit, insert_slot, random, send_ack, timers, Call, CallEnd, CallEvent};
use super::shared::{Shared, Usage};
use super::{UaError, ALLOW};
use crate::endpoint::{ServerEvent, ServerTransaction};

/// A call that arrived: ring it, accept it or reject it. Dropped unanswered, the endpoint
/// answers it 500.
#[derive(Debug)]
pub struct IncomingCall {
    shared: Arc<Shared>,
    key: u64,
    txn: Arc<ServerTransaction>,
    local_tag: String,
    events: Option<mpsc::UnboundedReceiver<CallEvent>>,
}

/// The stream of incoming calls ([`super::UserAgent::incoming`]).
#[derive(Debug)]
pub struct IncomingCalls {
    pub(crate) rx: mpsc::UnboundedReceiver<IncomingCall>,
}

impl IncomingCalls {
    /// The next call; `None` once the UserAgent is gone.
    pub async fn next(&mut self) -> Option<IncomingCall> {
        self.rx.recv().await
    }
}

/// A MESSAGE that arrived (RFC 3428), already answered 200.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingMessage {
    /// The sender (From URI).
    pub from: String,
    /// The Content-Type.
    pub content_type: String,
    /// The body.
    pub body: Bytes,
}

/// The stream of incoming MESSAGEs ([`super::UserAgent::messages`]).
#[derive(Debug)]
pub struct IncomingMessages {
    pub(crate) rx: mpsc::UnboundedReceiver<IncomingMessage>,
}

impl IncomingMessages {
    /// The next MESSAGE.
    pub async fn next(&mut self) -> Option<IncomingMessage> {
        self.rx.recv().await
    }
}

impl IncomingCall {
    /// The INVITE.
    pub fn request(&self) -> &Message {
        self.txn.request()
    }

    /// The caller (From URI).
    pub fn from(&self) -> String {
        self.request()
            .from()
            .map(|f| f.uri_str().to_owned())
            .unwrap_or_default()
    }

    /// The SDP offer (empty when the INVITE carried none).
    pub fn offer(&self) -> Bytes {
        self.request().body_bytes()
    }

    /// The next event before the answer (the caller cancelling: `Ended { Cancelled }`).
    pub async fn next_event(&mut self) -> Option<CallEvent> {
        self.events.as_mut()?.recv().await
    }

    /// Sends 180 Ringing (an early dialog, RFC 3261 §12.1.1).
    pub async fn ring(&self) -> Result<(), UaError> {
        self.provisional(180, None).await
    }

    /// Sends 183 Session Progress with early media `sdp`.
    pub async fn progress(&self, sdp: Bytes) -> Result<(), UaError> {
        self.provisional(183, Some(sdp)).await
    }

    async fn provisional(&self, status: u16, sdp: Option<Bytes>) -> Result<(), UaError> {
        let mut b = self.dialog_response(status);
        if let Some(sdp) = sdp {
            b = b.body("application/sdp", sdp);
        }
        let response = b.build()?;
        self.ensure_dialog(true)?;
        self.txn.respond(response).await?;
        Ok(())
    }

    /// §12.1.1: a dialog-forming response carries our tag and Contact and copies the
    /// request's Record-Route.
    fn dialog_response(&self, status: u16) -> sip_core::builder::ResponseBuilder {
        let req = self.request();
        let mut b = req
            .response(status)
            .to_tag(&self.local_tag)
            .header("Contact", format!("<{}>", self.shared.config.contact));
        for rr in req.values(HeaderName::RecordRoute) {
            b = b.header("Record-Route", rr);
        }
        b
    }

    /// Puts the UAS dialog in the table (early for a provisional) if it is not there yet.
    fn ensure_dialog(&self, early: bool) -> Result<DialogId, UaError> {
        let mut st = self.shared.state();
        let slot_dialog = st
            .calls
            .get(&self.key)
            .ok_or(UaError::Cancelled)?
            .dialog
            .clone();
        if let Some(id) = slot_dialog {
            if !early {
                if let Some(e) = st.dialogs.get_by_id_mut(&id) {
                    e.dialog.confirm_local();
                }
                st.dialogs.update(&id);
            }
            return Ok(id);
        }
        let dialog = Dialog::uas(
            self.request(),
            &self.local_tag,
            &self.shared.config.contact,
            early,
        )?;
        let id = dialog.id().clone();
        let mut invite = InviteUsage::new(timers(&self.shared));
        let seq = self.request().cseq().map(|c| c.seq).unwrap_or(0);
        invite.on_invite(seq, 0);
        st.dialogs.insert(
            dialog,
            Usage {
                invite,
                call: self.key,
                flow: Some(self.txn.flow()),
            },
        )?;
        if let Some(slot) = st.calls.get_mut(&self.key) {
            slot.dialog = Some(id.clone());
        }
        Ok(id)
    }

    /// Answers 200 with `answer` (the 2xx is retransmitted until the ACK; without one the
    /// call is ended with BYE) and returns the established call.
    pub async fn accept(mut self, answer: Bytes) -> Result<Call, UaError> {
        let ok = self
            .dialog_response(200)
            .header("Allow", ALLOW)
            .body("application/sdp", answer.clone())
            .build()?;
        sip_dialog::check_dialog_response(&ok)?;
        let id = self.ensure_dialog(false)?;
        let seq = self.request().cseq().map(|c| c.seq).unwrap_or(0);
        {
            let mut st = self.shared.state();
            if let Some(e) = st.dialogs.get_by_id_mut(&id) {
                e.usage.invite.answered(Shared::now(), seq, &ok);
            }
            if let Some(slot) = st.calls.get_mut(&self.key) {
                slot.unanswered = false;
                slot.local_sdp = answer;
            }
        }
        self.txn.respond(ok).await?;
        let span = self.span();
        tokio::spawn(retransmit_2xx(self.shared.clone(), self.key, id).instrument(span));
        tracing::info!("call accepted");
        Ok(Call {
            shared: self.shared.clone(),
            key: self.key,
            events: self
                .events
                .take()
                .unwrap_or_else(|| mpsc::unbounded_channel().1),
            cancel: Arc::new(tokio::sync::Notify::new()),
        })
    }

    /// Rejects the call with `status` (486 Busy Here, 603 Decline…).
    pub async fn reject(self, status: u16) -> Result<(), UaError> {
        let response = self
            .request()
            .response(status)
            .to_tag(&self.local_tag)
            .build()?;
        self.end_slot(EndCause::Rejected);
        self.txn.respond(response).await?;
        Ok(())
    }

    fn span(&self) -> tracing::Span {
        self.shared
            .state()
            .calls
            .get(&self.key)
            .map_or_else(tracing::Span::none, |s| s.span.clone())
    }

    fn end_slot(&self, cause: EndCause) {
        let mut st = self.shared.state();
        if let Some(slot) = st.calls.remove(&self.key) {
            if let Some(id) = slot.dialog {
                st.dialogs.remove(&id, cause);
            }
        }
    }
}

/// The UAS's 2xx retransmission (RFC 3261 §13.3.1.4), timed by the dialog's InviteUsage.
pub(crate) async fn retransmit_2xx(shared: Arc<Shared>, key: u64, id: DialogId) {
    loop {
        let (due, wake, txn) = {
            let st = shared.state();
            let Some(slot) = st.calls.get(&key) else {
                return;
            };
            let Some(e) = st.dialogs.get_by_id(&id) else {
                return;
            };
            let Some(due) = e.usage.invite.poll_timeout() else {
                return;
            };
            (due, slot.wake.clone(), slot.invite_txn.clone())
        };
        tokio::select! {
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(due)) => {}
            _ = wake.notified() => continue,
        }
        let action = {
            let mut st = shared.state();
            let Some(e) = st.dialogs.get_by_id_mut(&id) else {
                return;
            };
            e.usage.invite.handle_timeout(Shared::now())
        };
        match action {
            Some(UsageAction::Retransmit2xx(m)) => {
                if let Some(txn) = txn {
                    tracing::debug!("2xx retransmitted");
                    let _ = txn.respond(*m).await;
                }
            }
            Some(UsageAction::AckTimeout) => {
                tracing::warn!("no ACK for our 2xx: ending the call");
                let call = Call::handle(shared.clone(), key);
                let _ = call.bye().await;
                emit(
                    &shared,
                    key,
                    CallEvent::Ended {
                        cause: CallEnd::AckTimeout,
                    },
                );
                return;
            }
            Some(UsageAction::GlareRetry) | None => {}
        }
    }
}

/// Takes the endpoint's events until it shuts down.
pub(crate) async fn pump(shared: Arc<Shared>) {
    while let Some(event) = shared.endpoint.next_event().await {
        match event {
            ServerEvent::Request(txn) => handle_request(&shared, txn).await,
            ServerEvent::Ack { request, flow } => on_ack(&shared, &request, flow),
            ServerEvent::StrayResponse { response, .. } => on_stray(&shared, &response).await,
            ServerEvent::Cancelled { invite, .. } => on_cancelled(&shared, invite),
            ServerEvent::FlowClosed { flow, .. } => {
                let _ = shared.flow_closed.send(flow);
            }
            _ => {}
        }
    }
}

fn on_ack(shared: &Shared, ack: &Message, flow: sip_core::Flow) {
    let mut st = shared.state();
    let Some(e) = st.dialogs.match_request(ack) else {
        return;
    };
    let seq = ack.cseq().map(|c| c.seq).unwrap_or(0);
    if e.usage.invite.on_ack(seq) {
        e.usage.flow = Some(flow);
        let call = e.usage.call;
        tracing::debug!(call_id = ack.call_id().unwrap_or_default(), seq, "ACK");
        if let Some(slot) = st.calls.get(&call) {
            slot.wake.notify_one();
        }
    }
}

/// A 2xx retransmission after the INVITE transaction ended: ACK it again (§13.2.2.4).
async fn on_stray(shared: &Shared, response: &Message) {
    let is_2xx_invite = response.status().is_some_and(|s| (200..300).contains(&s))
        && response.cseq().is_ok_and(|c| c.method == Method::Invite);
    if !is_2xx_invite {
        return;
    }
    let seq = response.cseq().map(|c| c.seq).unwrap_or(0);
    let ack = {
        let mut st = shared.state();
        st.dialogs
            .match_response(response)
            .and_then(|e| e.usage.invite.ack_for(seq).cloned())
    };
    if let Some(ack) = ack {
        send_ack(shared, ack, None).await;
    }
}

fn on_cancelled(shared: &Shared, invite: sip_transaction::TransactionKey) {
    let mut st = shared.state();
    let key = st.calls.iter().find_map(|(k, s)| {
        let txn = s.invite_txn.as_ref()?;
        (s.unanswered && txn.key() == Some(invite)).then_some(*k)
    });
    let Some(key) = key else { return };
    if let Some(slot) = st.calls.remove(&key) {
        if let Some(id) = &slot.dialog {
            st.dialogs.remove(id, EndCause::Rejected);
        }
        let _enter = slot.span.enter();
        tracing::info!("cancelled by the caller");
        let _ = slot.events.send(CallEvent::Ended {
            cause: CallEnd::Cancelled,
        });
    }
}

async fn respond(txn: &ServerTransaction, status: u16) {
    if let Ok(r) = txn.request().response(status).build() {
        let _ = txn.respond(r).await;
    }
}

async fn handle_request(shared: &Arc<Shared>, txn: ServerTransaction) {
    let has_to_tag = txn
        .request()
        .to()
        .ok()
        .and_then(|t| t.tag().map(|_| ()))
        .is_some();
    if has_to_tag {
        return in_dialog(shared, txn).await;
    }
    if txn.merged_with().is_some() {
        return respond(&txn, 482).await;
    }
    match txn.request().method() {
        Some(Method::Invite) => new_call(shared, txn).await,
        Some(Method::Message) => message(shared, &txn).await,
        Some(Method::Options) => {
            let ok = txn
                .request()
                .response(200)
                .header("Allow", ALLOW)
                .header("Accept", "application/sdp")
                .build();
            if let Ok(ok) = ok {
                let _ = txn.respond(ok).await;
            }
        }
        Some(Method::Bye) | Some(Method::Info) | Some(Method::Update) | Some(Method::Notify) => {
            respond(&txn, 481).await
        }
        _ => {
            if let Ok(r) = txn.request().response(405).header("Allow", ALLOW).build() {
                let _ = txn.respond(r).await;
            }
        }
    }
}

async fn message(shared: &Shared, txn: &ServerTransaction) {
    let req = txn.request();
    let msg = IncomingMessage {
        from: req
            .from()
            .map(|f| f.uri_str().to_owned())
            .unwrap_or_default(),
        content_type: req
            .header(HeaderName::ContentType)
            .unwrap_or("text/plain")
            .to_owned(),
        body: req.body_bytes(),
    };
    let delivered = shared
        .state()
        .messages
        .as_ref()
        .is_some_and(|tx| tx.send(msg).is_ok());
    respond(txn, if delivered { 200 } else { 480 }).await;
}

async fn new_call(shared: &Arc<Shared>, txn: ServerTransaction) {
    let req = txn.request();
    // §12.1.1 / §8.1.1.8: an INVITE must carry a Contact to form a dialog.
    if req
        .contacts()
        .next()
        .and_then(|c| c.ok())
        .and_then(|c| c.addr().map(|_| ()))
        .is_none()
    {
        if let Ok(r) = req.response(400).reason("Missing Contact").build() {
            let _ = txn.respond(r).await;
        }
        return;
    }
    let call_id = req.call_id().unwrap_or_default().to_owned();
    let remote_tag = req
        .from()
        .ok()
        .and_then(|f| f.tag().map(str::to_owned))
        .unwrap_or_default();
    // The endpoint fixes one To-tag per server transaction (its own 487 or 500 carry it too).
    let local_tag = txn.to_tag().to_owned();
    let span = tracing::info_span!("call", dir = "in", %call_id, %local_tag, %remote_tag);
    let txn = Arc::new(txn);
    let (tx, events) = mpsc::unbounded_channel();
    let key = insert_slot(shared, tx, span.clone(), Bytes::new(), Some(txn.clone()));
    let call = IncomingCall {
        shared: shared.clone(),
        key,
        txn: txn.clone(),
        local_tag,
        events: Some(events),
    };
    span.in_scope(|| tracing::info!(from = %call.from(), "incoming call"));
    let sent = {
        let st = shared.state();
        match &st.incoming {
            Some(incoming) => incoming.send(call).map_err(|e| e.0),
            None => Err(call),
        }
    };
    if let Err(call) = sent {
        call.end_slot(EndCause::Rejected);
        respond(&txn, 480).await;
    }
}

/// What to do with a request in a dialog, decided under the lock.
enum Reply {
    Status(u16),
    Response(Box<Message>),
    Bye {
        invite: Option<Arc<ServerTransaction>>,
    },
}

async fn in_dialog(shared: &Arc<Shared>, txn: ServerTransaction) {
    let txn = Arc::new(txn);
    let (reply, spawn_retransmit) = decide(shared, &txn);
    match reply {
        Reply::Status(s) => respond(&txn, s).await,
        Reply::Response(r) => {
            let _ = txn.respond(*r).await;
        }
        Reply::Bye { invite } => {
            respond(&txn, 200).await;
            if let Some(invite) = invite {
                respond(&invite, 487).await;
            }
        }
    }
    if let Some((key, id)) = spawn_retransmit {
        let span = shared
            .state()
            .calls
            .get(&key)
            .map_or_else(tracing::Span::none, |s| s.span.clone());
        tokio::spawn(retransmit_2xx(shared.clone(), key, id).instrument(span));
    }
}

/// §12.2.2 and the method's handling, under the lock: what to answer, and whether a 2xx
/// retransmission starts.
fn decide(shared: &Shared, txn: &Arc<ServerTransaction>) -> (Reply, Option<(u64, DialogId)>) {
    let req = txn.request();
    let method = req
        .method()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let mut guard = shared.state();
    let st = &mut *guard;
    let Some(e) = st.dialogs.match_request(req) else {
        return (Reply::Status(481), None);
    };
    if let Err(reject) = e.dialog.check_request(req) {
        return (Reply::Status(reject.status), None);
    }
    {
        let id = e.dialog.id().clone();
        let key = e.usage.call;
        let local_sdp = st
            .calls
            .get(&key)
            .map(|s| s.local_sdp.clone())
            .unwrap_or_default();
        let mut retransmit = None;
        let reply = match req.method() {
            Some(Method::Bye) => {
                e.usage.invite.stop();
                e.dialog.terminate(EndCause::RemoteBye);
                st.dialogs.update(&id);
                let slot = st.calls.remove(&key);
                match slot {
                    Some(slot) => {
                        slot.wake.notify_one();
                        let _enter = slot.span.enter();
                        tracing::info!("remote BYE");
                        let _ = slot.events.send(CallEvent::Ended {
                            cause: CallEnd::RemoteBye,
                        });
                        // §15.1.2: a BYE before our final answer ends the INVITE with 487.
                        Reply::Bye {
                            invite: slot.invite_txn.filter(|_| slot.unanswered),
                        }
                    }
                    None => Reply::Bye { invite: None },
                }
            }
            Some(Method::Invite) => {
                let seq = req.cseq().map(|c| c.seq).unwrap_or(0);
                match e.usage.invite.on_invite(seq, random()) {
                    InviteVerdict::Reject {
                        status,
                        retry_after,
                    } => {
                        let mut b = req.response(status);
                        if let Some(s) = retry_after {
                            b = b.header("Retry-After", s.to_string());
                        }
                        match b.build() {
                            Ok(r) => Reply::Response(Box::new(r)),
                            Err(_) => Reply::Status(500),
                        }
                    }
                    InviteVerdict::Accept => {
                        let mut b = req
                            .response(200)
                            .header("Contact", format!("<{}>", shared.config.contact))
                            .header("Allow", ALLOW);
                        if !local_sdp.is_empty() {
                            b = b.body("application/sdp", local_sdp);
                        }
                        match b.build() {
                            Ok(ok) => {
                                e.usage.invite.answered(Shared::now(), seq, &ok);
                                if let Some(slot) = st.calls.get_mut(&key) {
                                    slot.invite_txn = Some(txn.clone());
                                    let _ = slot.events.send(CallEvent::Offer {
                                        method: method.clone(),
                                        sdp: req.body_bytes(),
                                    });
                                }
                                retransmit = Some((key, id.clone()));
                                Reply::Response(Box::new(ok))
                            }
                            Err(_) => Reply::Status(500),
                        }
                    }
                }
            }
            Some(Method::Update) => {
                let mut b = req
                    .response(200)
                    .header("Contact", format!("<{}>", shared.config.contact));
                if !req.body().is_empty() {
                    if let Some(slot) = st.calls.get(&key) {
                        let _ = slot.events.send(CallEvent::Offer {
                            method: method.clone(),
                            sdp: req.body_bytes(),
                        });
                    }
                    b = b.body("application/sdp", local_sdp);
                }
                b.build()
                    .map_or(Reply::Status(500), |r| Reply::Response(Box::new(r)))
            }
            Some(Method::Info) => {
                if let Some(slot) = st.calls.get(&key) {
                    let _ = slot.events.send(CallEvent::Info {
                        content_type: req
                            .header(HeaderName::ContentType)
                            .unwrap_or_default()
                            .to_owned(),
                        body: req.body_bytes(),
                    });
                }
                Reply::Status(200)
            }
            Some(Method::Notify) | Some(Method::Options) => Reply::Status(200),
            Some(Method::Message) => {
                let msg = IncomingMessage {
                    from: req
                        .from()
                        .map(|f| f.uri_str().to_owned())
                        .unwrap_or_default(),
                    content_type: req
                        .header(HeaderName::ContentType)
                        .unwrap_or("text/plain")
                        .to_owned(),
                    body: req.body_bytes(),
                };
                let ok = st.messages.as_ref().is_some_and(|tx| tx.send(msg).is_ok());
                Reply::Status(if ok { 200 } else { 480 })
            }
            _ => Reply::Status(501),
        };
        (reply, retransmit)
    }
}
