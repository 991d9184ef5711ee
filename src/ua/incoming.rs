//! What arrives: [`IncomingCall`] with ring / accept / reject, the UAS's 2xx retransmission
//! until the ACK, and incoming MESSAGEs (routed here by the event pump, `pump.rs`).

use std::sync::Arc;

use bytes::Bytes;
use sip_core::{HeaderName, Message};
use sip_dialog::invite::{InviteUsage, UsageAction};
use sip_dialog::{Dialog, DialogId, EndCause};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::call::{timers, Call, CallEnd, CallEvent};
use super::shared::{Shared, Usage};
use super::{UaError, ALLOW};
use crate::endpoint::ServerTransaction;

/// A call that arrived: ring it, accept it or reject it. Dropped unanswered, the endpoint
/// answers it 500.
#[derive(Debug)]
pub struct IncomingCall {
    pub(super) shared: Arc<Shared>,
    pub(super) key: u64,
    pub(super) txn: Arc<ServerTransaction>,
    pub(super) local_tag: String,
    pub(super) events: Option<mpsc::UnboundedReceiver<CallEvent>>,
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

    /// Sends 180 Ringing (an early dialog, RFC 3261 §12.1.1). Reliably (RFC 3262) when the
    /// INVITE requires `100rel`, or supports it and [`super::UserAgentBuilder::prack`] is on.
    pub async fn ring(&self) -> Result<(), UaError> {
        self.provisional(180, None).await
    }

    /// Sends 183 Session Progress with early media `sdp` (reliably as [`IncomingCall::ring`]
    /// does; then the 2xx waits for its PRACK, RFC 3262 §3).
    pub async fn progress(&self, sdp: Bytes) -> Result<(), UaError> {
        self.provisional(183, Some(sdp)).await
    }

    async fn provisional(&self, status: u16, sdp: Option<Bytes>) -> Result<(), UaError> {
        let mut b = self.dialog_response(status);
        if let Some(sdp) = &sdp {
            b = b.body("application/sdp", sdp.clone());
        }
        self.ensure_dialog(true)?;
        if let Some(sdp) = &sdp {
            // Our answer so far: what an UPDATE in the early dialog is answered with.
            if let Some(slot) = self.shared.state().calls.get_mut(&self.key) {
                slot.local_sdp = sdp.clone();
            }
        }
        if self.reliable() {
            return self.send_reliable(b).await;
        }
        self.txn.respond(b.build()?).await?;
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
        // RFC 3262 §3: not before the PRACK of a reliable provisional that carried SDP.
        if let Err(e) = self.wait_final_allowed(200).await {
            // The call's retransmission task rejects the INVITE 500 at 64·T1 (§3) and ends the
            // call; here only if it is still there.
            if e != UaError::Cancelled {
                self.final_going();
                self.end_slot(EndCause::Timeout);
                if let Ok(r) = self.request().response(500).to_tag(&self.local_tag).build() {
                    let _ = self.txn.respond(r).await;
                }
            }
            return Err(e);
        }
        self.final_going();
        let mut b = self
            .dialog_response(200)
            .header("Allow", ALLOW)
            .header("Supported", super::prack::SUPPORTED);
        // RFC 4028 §9 (a too small interval was answered 422 before the call was offered).
        for (name, value) in
            super::session_timer::negotiate(&self.shared, self.request()).unwrap_or_default()
        {
            b = b.header(name, value);
        }
        let ok = b.body("application/sdp", answer.clone()).build()?;
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
        self.txn.respond(ok.clone()).await?;
        super::session_timer::on_2xx_sent(&self.shared, self.key, self.request(), &ok);
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
        self.final_going();
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

    pub(super) fn end_slot(&self, cause: EndCause) {
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
                if let Err(e) = call.hangup(CallEnd::AckTimeout).await {
                    tracing::debug!(error = %e, "BYE after the ACK timeout");
                }
                return;
            }
            Some(UsageAction::GlareRetry) | None => {}
        }
    }
}
