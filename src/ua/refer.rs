//! REFER (RFC 3515) received in a call's dialog: the application gets
//! [`CallEvent::Refer`] with the Refer-To, and either accepts it ([`Call::accept_refer`]: 202,
//! then NOTIFYs of the implicit subscription through the returned [`ReferNotifier`], `100
//! Trying` first and the referred call's final status last) or rejects it
//! ([`Call::reject_refer`]). A REFER not answered in 64·T1 is declined (603); with nobody
//! reading the call's events it is declined at once. On the referrer's side, the NOTIFYs that
//! come back are reported as [`CallEvent::ReferNotify`].

use std::sync::{Arc, Mutex};

use sip_core::Method;
use sip_dialog::refer::{ReferSubscription, SIPFRAG};
use tracing::Instrument;

use super::call::{Call, CallEvent};
use super::shared::{CallSlot, Shared};
use super::UaError;
use crate::endpoint::ServerTransaction;

/// The REFER state of a call: the one held for the application, and how many came.
#[derive(Default)]
pub(crate) struct ReferSlot {
    pending: Option<(u64, Arc<ServerTransaction>)>,
    received: u32,
}

/// In the pump, under the lock: what to answer a REFER now (`None`: held for the
/// application).
pub(crate) fn on_refer(
    shared: &Arc<Shared>,
    slot: &mut CallSlot,
    key: u64,
    txn: &Arc<ServerTransaction>,
) -> Option<u16> {
    let req = txn.request();
    // §2.4.1: exactly one Refer-To.
    let Some(refer_to) =
        sip_dialog::refer::refer_to(req).filter(|_| req.count(sip_core::HeaderName::ReferTo) == 1)
    else {
        return Some(400);
    };
    if slot.refer.pending.is_some() {
        // One at a time; the peer may try again.
        return Some(491);
    }
    let id = super::call::random();
    let event = CallEvent::Refer {
        id,
        refer_to,
        referred_by: req
            .referred_by()
            .and_then(|r| r.ok())
            .map(|r| r.uri_str().to_owned()),
    };
    if slot.events.send(event).is_err() {
        return Some(603);
    }
    slot.refer.received += 1;
    slot.refer.pending = Some((id, txn.clone()));
    let limit = shared.config.t1 * 64;
    let shared = shared.clone();
    tokio::spawn(
        async move {
            tokio::time::sleep(limit).await;
            if Call::handle(shared, key)
                .reject_refer(id, 603)
                .await
                .is_ok()
            {
                tracing::warn!("REFER not answered by the application: 603");
            }
        }
        .instrument(slot.span.clone()),
    );
    None
}

/// Sends the NOTIFYs of one accepted REFER's implicit subscription (RFC 3515 §2.4.4).
pub struct ReferNotifier {
    call: Call,
    subscription: Mutex<ReferSubscription>,
}

impl std::fmt::Debug for ReferNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReferNotifier").finish_non_exhaustive()
    }
}

impl ReferNotifier {
    /// Reports `status` of the referred request (a NOTIFY with it as sipfrag). A final status
    /// (≥ 200) ends the subscription; later calls, and repeats, send nothing.
    pub async fn notify(&self, status: u16) -> Result<(), UaError> {
        let n = {
            let mut s = self.subscription.lock().unwrap_or_else(|e| e.into_inner());
            s.notify(status)
        };
        let Some(n) = n else { return Ok(()) };
        let r = self
            .call
            .request(
                Method::Notify,
                Some((SIPFRAG, bytes::Bytes::from(n.body))),
                &[
                    ("Event", n.event.as_str()),
                    ("Subscription-State", n.subscription_state.as_str()),
                ],
            )
            .await?;
        match r.status() {
            Some(s) if (200..300).contains(&s) => Ok(()),
            Some(s) => Err(UaError::Rejected(s)),
            None => Err(UaError::NoResponse("NOTIFY".into())),
        }
    }

    /// Reports an event of the referred call: ringing as its status, answered as 200, failed
    /// as its status (an ended call before any of these as 487). `true` once the final status
    /// went.
    pub async fn report(&self, event: &CallEvent) -> Result<bool, UaError> {
        let status = match event {
            CallEvent::Ringing { status, .. } => *status,
            CallEvent::Answered { .. } => 200,
            CallEvent::Failed { status } => *status,
            CallEvent::Ended { .. } => 487,
            _ => return Ok(self.is_terminated()),
        };
        self.notify(status).await?;
        Ok(self.is_terminated())
    }

    /// True once the final status went.
    pub fn is_terminated(&self) -> bool {
        self.subscription
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_terminated()
    }
}

impl Call {
    /// Accepts the REFER of [`CallEvent::Refer`] `id` (202 Accepted) and reports `100 Trying`
    /// to the referrer; the returned [`ReferNotifier`] reports the rest.
    pub async fn accept_refer(&self, id: u64) -> Result<ReferNotifier, UaError> {
        let (txn, first) = self.take_refer(id)?;
        let seq = txn.request().cseq().map(|c| c.seq).unwrap_or(0);
        txn.respond(txn.request().response(202).build()?).await?;
        let notifier = ReferNotifier {
            call: Call::handle(self.shared.clone(), self.key),
            subscription: Mutex::new(ReferSubscription::new(seq, first)),
        };
        notifier.notify(100).await?;
        Ok(notifier)
    }

    /// Rejects the REFER of [`CallEvent::Refer`] `id` with `status` (603 Decline, 403…).
    pub async fn reject_refer(&self, id: u64, status: u16) -> Result<(), UaError> {
        let (txn, _) = self.take_refer(id)?;
        txn.respond(txn.request().response(status.clamp(300, 699)).build()?)
            .await?;
        Ok(())
    }

    fn take_refer(&self, id: u64) -> Result<(Arc<ServerTransaction>, bool), UaError> {
        let mut st = self.shared.state();
        let slot = st.calls.get_mut(&self.key).ok_or(UaError::NoDialog)?;
        if slot.refer.pending.as_ref().is_none_or(|(i, _)| *i != id) {
            return Err(UaError::Dialog("no such REFER pending".into()));
        }
        let first = slot.refer.received <= 1;
        let (_, txn) = slot.refer.pending.take().ok_or(UaError::NoDialog)?;
        Ok((txn, first))
    }
}

/// The referrer's side: a NOTIFY in call `key`'s dialog reporting a REFER's progress.
pub(crate) fn on_notify(slot: &CallSlot, notify: &sip_core::Message) {
    if let Some(status) = sip_dialog::refer::notify_status(notify) {
        let _ = slot.events.send(CallEvent::ReferNotify { status });
    }
}
