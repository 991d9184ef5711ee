//! Offers the peer makes in a dialog (re-INVITE, RFC 3261 §14.2; UPDATE, RFC 3311 §5.2),
//! answered by the application when [`super::UserAgentBuilder::manual_answers`] is on: the
//! request is held, [`CallEvent::OfferRequest`] carries the offer, and [`Call::answer_offer`]
//! (or [`super::IncomingCall::answer_offer`] in an early dialog) sends a 2xx with the chosen
//! SDP or a rejection (488 Not Acceptable Here, 491…). An offer not answered in 64·T1 is
//! rejected with 500. Off (the default), offers are answered at once with our current SDP.
//!
//! Also here: UPDATE in an early dialog as the UAC ([`Call::update`] before the answer), sent
//! by the INVITE task that holds the early dialogs.

use std::sync::Arc;

use bytes::Bytes;
use sip_core::{Message, Method};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::call::{Call, CallEvent};
use super::incoming::{retransmit_2xx, IncomingCall};
use super::shared::{CallSlot, Shared};
use super::{UaError, ALLOW};
use crate::endpoint::ServerTransaction;

/// The application's answer to an offer ([`CallEvent::OfferRequest`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OfferAnswer {
    /// 200 with this SDP answer (it becomes our current session description).
    Accept(Bytes),
    /// Reject with this status (488, 491, 500…); the session stays as it was.
    Reject(u16),
}

/// An offer held for the application.
pub(crate) struct PendingOffer {
    id: u64,
    txn: Arc<ServerTransaction>,
}

/// What [`hold`] did with an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Held {
    /// Held: the application answers.
    ForApp,
    /// Another offer is held already: answer 500 with Retry-After (RFC 3311 §5.2).
    Busy,
    /// Nobody reads the call's events: answer it as usual.
    NoListener,
}

/// In the pump, under the lock: holds the offer in `txn`'s request (a re-INVITE or UPDATE
/// with a body) for the application and tells it.
pub(crate) fn hold(
    shared: &Arc<Shared>,
    slot: &mut CallSlot,
    key: u64,
    txn: &Arc<ServerTransaction>,
) -> Held {
    if slot.pending_offer.is_some() {
        return Held::Busy;
    }
    let req = txn.request();
    let id = super::call::random();
    let event = CallEvent::OfferRequest {
        id,
        method: req
            .method()
            .map(|m| m.as_str().to_owned())
            .unwrap_or_default(),
        sdp: req.body_bytes(),
    };
    if slot.events.send(event).is_err() {
        return Held::NoListener;
    }
    slot.pending_offer = Some(PendingOffer {
        id,
        txn: txn.clone(),
    });
    let limit = shared.config.t1 * 64;
    let shared = shared.clone();
    tokio::spawn(
        async move {
            tokio::time::sleep(limit).await;
            if answer(&shared, key, id, OfferAnswer::Reject(500))
                .await
                .is_ok()
            {
                tracing::warn!("offer not answered by the application: 500");
            }
        }
        .instrument(slot.span.clone()),
    );
    Held::ForApp
}

impl Call {
    /// Answers the offer of [`CallEvent::OfferRequest`] `id` (with
    /// [`super::UserAgentBuilder::manual_answers`]).
    pub async fn answer_offer(&self, id: u64, answer: OfferAnswer) -> Result<(), UaError> {
        self::answer(&self.shared, self.key, id, answer).await
    }
}

impl IncomingCall {
    /// Answers an offer (an UPDATE in the early dialog) of [`CallEvent::OfferRequest`] `id`.
    pub async fn answer_offer(&self, id: u64, answer: OfferAnswer) -> Result<(), UaError> {
        self::answer(&self.shared, self.key, id, answer).await
    }
}

/// Sends the application's answer to the held offer `id` of call `key`.
async fn answer(
    shared: &Arc<Shared>,
    key: u64,
    id: u64,
    answer: OfferAnswer,
) -> Result<(), UaError> {
    let (response, txn, retransmit) = {
        let mut guard = shared.state();
        let st = &mut *guard;
        let slot = st.calls.get_mut(&key).ok_or(UaError::NoDialog)?;
        if slot.pending_offer.as_ref().is_none_or(|p| p.id != id) {
            return Err(UaError::Dialog("no such offer pending".into()));
        }
        let Some(pending) = slot.pending_offer.take() else {
            return Err(UaError::NoDialog);
        };
        let req = pending.txn.request();
        let is_invite = req.method() == Some(Method::Invite);
        let response = match &answer {
            OfferAnswer::Accept(sdp) => {
                let mut b = req
                    .response(200)
                    .header("Contact", format!("<{}>", shared.config.contact))
                    .header("Allow", ALLOW)
                    .header("Supported", super::prack::SUPPORTED);
                if let Ok(h) = super::session_timer::negotiate(shared, req) {
                    for (name, value) in h {
                        b = b.header(name, value);
                    }
                }
                b.body("application/sdp", sdp.clone()).build()?
            }
            OfferAnswer::Reject(status) => req.response((*status).clamp(300, 699)).build()?,
        };
        let ok = response.status().is_some_and(|s| s < 300);
        if let OfferAnswer::Accept(sdp) = &answer {
            slot.local_sdp = sdp.clone();
        }
        if ok {
            super::session_timer::on_2xx_sent_locked(shared, slot, key, req, &response);
        }
        let mut retransmit = None;
        if is_invite {
            slot.invite_txn = Some(pending.txn.clone());
            let seq = req.cseq().map(|c| c.seq).unwrap_or(0);
            if let Some(dialog) = slot.dialog.clone() {
                if let Some(e) = st.dialogs.get_by_id_mut(&dialog) {
                    e.usage.invite.answered(Shared::now(), seq, &response);
                }
                if ok {
                    retransmit = Some(dialog);
                }
            }
        }
        (response, pending.txn, retransmit)
    };
    txn.respond(response).await?;
    if let Some(dialog) = retransmit {
        let span = shared
            .state()
            .calls
            .get(&key)
            .map_or_else(tracing::Span::none, |s| s.span.clone());
        tokio::spawn(retransmit_2xx(shared.clone(), key, dialog).instrument(span));
    }
    Ok(())
}

/// An UPDATE the application wants sent in the early dialog of an outgoing call.
pub(crate) struct EarlyUpdate {
    pub sdp: Bytes,
    pub reply: oneshot::Sender<Result<Bytes, UaError>>,
}

/// The channel to the INVITE task of an outgoing call, for UPDATEs in its early dialog.
pub(crate) type EarlyUpdates = mpsc::Sender<EarlyUpdate>;

/// Sends an UPDATE with `sdp` in call `key`'s early dialog (RFC 3311 §5.1), through its
/// INVITE task; the answer's body.
pub(crate) async fn early_update(shared: &Shared, key: u64, sdp: Bytes) -> Result<Bytes, UaError> {
    let tx = shared
        .state()
        .calls
        .get(&key)
        .and_then(|s| s.early_updates.clone())
        .ok_or(UaError::NoDialog)?;
    let (reply, rx) = oneshot::channel();
    tx.try_send(EarlyUpdate { sdp, reply })
        .map_err(|_| UaError::Pending)?;
    rx.await.map_err(|_| UaError::NoDialog)?
}

/// In the INVITE task: builds the UPDATE in the latest early dialog of `client` and sends it
/// on its own task, replying on `update.reply`.
pub(crate) fn send_early_update(
    shared: &Arc<Shared>,
    key: u64,
    client: &mut sip_dialog::invite::InviteClient,
    update: EarlyUpdate,
) {
    let Some(tag) = client
        .early_dialogs()
        .last()
        .map(|d| d.id().remote_tag.clone())
    else {
        let _ = update.reply.send(Err(UaError::NoDialog));
        return;
    };
    let Some(dialog) = client.early_dialog_mut(&tag) else {
        let _ = update.reply.send(Err(UaError::NoDialog));
        return;
    };
    let next_hop = dialog.next_hop();
    let built = dialog
        .request(Method::Update, &shared.via())
        .map_err(UaError::from)
        .and_then(|b| {
            Ok(b.header("Allow", ALLOW)
                .header("Supported", super::prack::SUPPORTED)
                .body("application/sdp", update.sdp.clone())
                .build()?)
        });
    let request = match built {
        Ok(r) => r,
        Err(e) => {
            let _ = update.reply.send(Err(e));
            return;
        }
    };
    let shared = shared.clone();
    tokio::spawn(
        async move {
            let result = send(&shared, next_hop, request).await;
            if result.is_ok() {
                if let Some(slot) = shared.state().calls.get_mut(&key) {
                    slot.local_sdp = update.sdp.clone();
                }
            }
            let _ = update.reply.send(result);
        }
        .in_current_span(),
    );
}

async fn send(shared: &Shared, next_hop: String, request: Message) -> Result<Bytes, UaError> {
    let dest = shared.dialog_destination(&next_hop, None).await?;
    let mut txn = shared.endpoint.request(request, dest).await?;
    let r = txn.final_response().await?;
    match r.status() {
        Some(s) if (200..300).contains(&s) => Ok(r.body_bytes()),
        Some(s) => Err(UaError::Rejected(s)),
        None => Err(UaError::NoResponse("UPDATE".into())),
    }
}
