//! RFC 3262 in the UserAgent: the plumbing around `sip_dialog::prack`.
//!
//! - UAS: an [`IncomingCall`]'s provisionals go reliably when the INVITE requires `100rel`, or
//!   supports it and the UserAgent was built with [`super::UserAgentBuilder::prack`]. One task
//!   per call retransmits the unacknowledged one on the dialog layer's timer and rejects the
//!   INVITE with 500 after 64·T1 without PRACK; the pump answers PRACKs (200, or 481 when they
//!   match nothing); [`IncomingCall::accept`] holds the 2xx while §3 requires it.
//! - UAC: every reliable provisional the dialog layer says to acknowledge gets a PRACK in its
//!   early dialog, sent on its own transaction so that the INVITE's responses keep flowing.

use std::sync::Arc;

use sip_core::Message;
use sip_dialog::invite::InviteClient;
use sip_dialog::prack::{
    prack_request, PrackClient, PrackVerdict, ProvisionalAction, RAck, ReliableProvisionals,
    ReliableVerdict,
};
use tokio::sync::watch;
use tracing::Instrument;

use super::call::{random, CallEvent};
use super::incoming::IncomingCall;
use super::shared::Shared;
use super::UaError;

/// The option-tags the UserAgent supports (its `Supported` header).
pub(crate) const SUPPORTED: &str = "100rel, timer";

/// The UAS's reliable provisionals of one incoming call, and a signal raised whenever they
/// change (a PRACK arrived, one was queued, the final went).
pub(crate) struct UasReliable {
    pub state: ReliableProvisionals,
    pub changed: watch::Sender<()>,
}

impl IncomingCall {
    /// True when this call's provisionals go reliably (RFC 3262 §3).
    pub(super) fn reliable(&self) -> bool {
        let req = self.request();
        sip_dialog::prack::required(req)
            || (self.shared.config.prack && sip_dialog::prack::supported(req))
    }

    /// Sends a provisional reliably: numbered by the dialog layer, sent now or after the PRACK
    /// of the one before, retransmitted by the call's task.
    pub(super) async fn send_reliable(
        &self,
        response: sip_core::builder::ResponseBuilder,
    ) -> Result<(), UaError> {
        let (now_send, start_task) = {
            let mut st = self.shared.state();
            let slot = st.calls.get_mut(&self.key).ok_or(UaError::Cancelled)?;
            let start_task = slot.reliable.is_none();
            let rel = slot.reliable.get_or_insert_with(|| {
                let seq = self.request().cseq().map(|c| c.seq).unwrap_or(0);
                UasReliable {
                    state: ReliableProvisionals::new(self.shared.config.t1, seq, random() as u32),
                    changed: watch::channel(()).0,
                }
            });
            let out = rel
                .state
                .send(super::shared::Shared::now(), response)
                .map_err(|e| UaError::Dialog(e.to_string()))?;
            rel.changed.send_replace(());
            (out, start_task)
        };
        if start_task {
            let span = tracing::Span::current();
            tokio::spawn(
                retransmit(self.shared.clone(), self.key, self.txn.clone()).instrument(span),
            );
        }
        if let Some(m) = now_send {
            self.txn.respond(m).await?;
        }
        Ok(())
    }

    /// §3: waits (at most 64·T1) until a final response with `status` may be sent.
    pub(super) async fn wait_final_allowed(&self, status: u16) -> Result<(), UaError> {
        let deadline = tokio::time::Instant::now() + self.shared.config.t1 * 64;
        let mut rx = {
            let st = self.shared.state();
            let slot = st.calls.get(&self.key).ok_or(UaError::Cancelled)?;
            match &slot.reliable {
                Some(r) => r.changed.subscribe(),
                None => return Ok(()),
            }
        };
        loop {
            {
                let st = self.shared.state();
                let slot = st.calls.get(&self.key).ok_or(UaError::Cancelled)?;
                if slot
                    .reliable
                    .as_ref()
                    .is_none_or(|r| r.state.may_send_final(status))
                {
                    return Ok(());
                }
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return Err(UaError::NoResponse("PRACK".into())),
            }
        }
    }

    /// The final response is going: the reliable provisionals stop.
    pub(super) fn final_going(&self) {
        if let Some(rel) = self
            .shared
            .state()
            .calls
            .get_mut(&self.key)
            .and_then(|s| s.reliable.as_mut())
        {
            rel.state.final_sent();
            rel.changed.send_replace(());
        }
    }
}

/// Retransmits the unacknowledged reliable provisional until its PRACK; after 64·T1 rejects
/// the INVITE with 500 (§3) and ends the call.
async fn retransmit(shared: Arc<Shared>, key: u64, txn: Arc<crate::endpoint::ServerTransaction>) {
    let mut rx = {
        let st = shared.state();
        match st.calls.get(&key).and_then(|s| s.reliable.as_ref()) {
            Some(r) => r.changed.subscribe(),
            None => return,
        }
    };
    loop {
        let due = {
            let st = shared.state();
            let Some(rel) = st.calls.get(&key).and_then(|s| s.reliable.as_ref()) else {
                return;
            };
            rel.state.poll_timeout()
        };
        match due {
            Some(due) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(tokio::time::Instant::from_std(due)) => {}
                    r = rx.changed() => { if r.is_err() { return; } continue; }
                }
            }
            None => {
                if rx.changed().await.is_err() {
                    return;
                }
                continue;
            }
        }
        let action = {
            let mut st = shared.state();
            let Some(rel) = st.calls.get_mut(&key).and_then(|s| s.reliable.as_mut()) else {
                return;
            };
            rel.state.handle_timeout(Shared::now())
        };
        match action {
            Some(ProvisionalAction::Retransmit(m)) => {
                tracing::debug!("reliable provisional retransmitted");
                let _ = txn.respond(*m).await;
            }
            Some(ProvisionalAction::TimedOut) => {
                tracing::warn!("no PRACK within 64*T1: INVITE rejected with 500");
                let slot = shared.state().calls.remove(&key);
                if let Some(slot) = slot {
                    if let Some(id) = &slot.dialog {
                        shared
                            .state()
                            .dialogs
                            .remove(id, sip_dialog::EndCause::Timeout);
                    }
                    if let Some(r) = &slot.reliable {
                        r.changed.send_replace(());
                    }
                    let _ = slot.events.send(CallEvent::Failed { status: 500 });
                }
                if let Ok(r) = txn.request().response(500).build() {
                    let _ = txn.respond(r).await;
                }
                return;
            }
            None => {}
        }
    }
}

/// The pump's answer to a PRACK in the dialog of call `key`: 200 when it acknowledges the
/// outstanding reliable provisional (and the next queued one, if any, to send), 481 otherwise.
pub(crate) fn on_prack(
    calls: &mut std::collections::HashMap<u64, super::shared::CallSlot>,
    key: u64,
    prack: &Message,
) -> (
    u16,
    Option<(Message, Arc<crate::endpoint::ServerTransaction>)>,
) {
    let Some(slot) = calls.get_mut(&key) else {
        return (481, None);
    };
    let txn = slot.invite_txn.clone();
    let Some(rel) = slot.reliable.as_mut() else {
        return (481, None);
    };
    match rel.state.on_prack(Shared::now(), prack) {
        PrackVerdict::NoMatch => (481, None),
        PrackVerdict::Acknowledged { next } => {
            tracing::debug!("PRACK");
            (200, next.zip(txn).map(|(m, t)| (*m, t)))
        }
    }
}

/// Raises the changed signal of call `key`'s reliable provisionals (after the PRACK's 200
/// went, so that a held 2xx follows it on the wire).
pub(crate) fn signal(shared: &Shared, key: u64) {
    if let Some(r) = shared
        .state()
        .calls
        .get(&key)
        .and_then(|s| s.reliable.as_ref())
    {
        r.changed.send_replace(());
    }
}

/// UAC: a provisional to our INVITE arrived; if it is a reliable one to acknowledge, the PRACK
/// is built in its early dialog and sent on its own task.
pub(crate) fn on_provisional(
    shared: &Arc<Shared>,
    acks: &mut PrackClient,
    client: &mut InviteClient,
    response: &Message,
) {
    let rack = match acks.on_provisional(response, client.seq()) {
        ReliableVerdict::Prack(r) => r,
        ReliableVerdict::Unreliable => return,
        other => {
            tracing::debug!(?other, "reliable provisional not acknowledged");
            return;
        }
    };
    let Some(tag) = response.to().ok().and_then(|t| t.tag().map(str::to_owned)) else {
        return;
    };
    let Some(dialog) = client.early_dialog_mut(&tag) else {
        return;
    };
    let next_hop = dialog.next_hop();
    let prack = match prack_request(dialog, rack, &shared.via()).and_then(|b| Ok(b.build()?)) {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(error = %e, "PRACK not built");
            return;
        }
    };
    tokio::spawn(send_prack(shared.clone(), next_hop, prack, rack).in_current_span());
}

async fn send_prack(shared: Arc<Shared>, next_hop: String, prack: Message, rack: RAck) {
    let dest = match shared.dialog_destination(&next_hop, None).await {
        Ok(d) => d,
        Err(e) => return tracing::debug!(error = %e, "PRACK destination"),
    };
    tracing::debug!(%rack, "PRACK");
    let status = match shared.endpoint.request(prack, dest).await {
        Ok(mut txn) => txn
            .final_response()
            .await
            .ok()
            .and_then(|r| r.status())
            .unwrap_or(408),
        Err(e) => {
            tracing::debug!(error = %e, "PRACK not sent");
            return;
        }
    };
    if !(200..300).contains(&status) {
        tracing::info!(status, "PRACK rejected");
    }
}
