//! [`TwoXxRetransmitter`], for a UAS core written on the Endpoint without the
//! [`UserAgent`](super::UserAgent): RFC 3261 §13.3.1.4 (with RFC 6026). The INVITE server transaction
//! sends a 2xx once and then, in its Accepted state, only passes on what the TU sends; the UAS
//! core itself must retransmit the 2xx (T1, 2·T1, … capped at T2) until the ACK arrives, and give
//! up after 64·T1. The ACK of a 2xx reaches the TU as [`ServerEvent::Ack`]; hand it to
//! [`TwoXxRetransmitter::ack`] and the retransmissions for that Call-ID and CSeq stop.
//!
//! ```no_run
//! use sip_stack::endpoint::{Endpoint, ServerEvent};
//! use sip_stack::core::Method;
//! use sip_stack::ua::TwoXxRetransmitter;
//!
//! # async fn serve(endpoint: Endpoint) {
//! let answers = TwoXxRetransmitter::default();
//! while let Some(event) = endpoint.next_event().await {
//!     match event {
//!         ServerEvent::Request(txn) if txn.request().method() == Some(Method::Invite) => {
//!             let ok = txn.request().response(200).header("Contact", "<sip:uas@127.0.0.1>")
//!                 .build().unwrap();
//!             // Sent once now, then retransmitted until the ACK arrives (or 64·T1).
//!             let pending = answers.send(txn, ok).await.unwrap();
//!             tokio::spawn(async move { println!("{:?}", pending.outcome().await) });
//!         }
//!         ServerEvent::Ack { request, .. } => {
//!             answers.ack(&request);
//!         }
//!         _ => {}
//!     }
//! }
//! # }
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sip_core::{Message, Method};
use sip_dialog::invite::{TwoXxAction, TwoXxRetransmit};
use tokio::sync::oneshot;
use tracing::debug;

use crate::endpoint::{EndpointError, ServerTransaction};

/// How the retransmission of one 2xx ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// The ACK arrived.
    Acked,
    /// Stopped by the TU ([`TwoXxRetransmitter::stop_call`], e.g. a BYE arrived first), or
    /// replaced by a newer 2xx for the same Call-ID and CSeq.
    Stopped,
    /// 64·T1 passed without an ACK (§13.3.1.4: the dialog is confirmed, but the session
    /// SHOULD be ended with a BYE), or the transaction could no longer send.
    TimedOut,
    /// The response was not a 2xx to an INVITE: sent once, nothing to retransmit.
    NotApplicable,
}

/// What [`Pending2xx::outcome`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckReport {
    /// How it ended.
    pub outcome: AckOutcome,
    /// Retransmissions sent (the first transmission not counted).
    pub retransmissions: u32,
}

/// A 2xx being retransmitted until its ACK.
#[derive(Debug)]
pub struct Pending2xx {
    done: Option<oneshot::Receiver<AckReport>>,
}

impl Pending2xx {
    /// Waits until the retransmissions end.
    pub async fn outcome(mut self) -> AckReport {
        let Some(rx) = self.done.take() else {
            return AckReport {
                outcome: AckOutcome::NotApplicable,
                retransmissions: 0,
            };
        };
        rx.await.unwrap_or(AckReport {
            outcome: AckOutcome::Stopped,
            retransmissions: 0,
        })
    }
}

type Key = (String, u32);

struct Waiter {
    id: u64,
    stop: oneshot::Sender<AckOutcome>,
}

struct Inner {
    t1: Duration,
    t2: Duration,
    next_id: AtomicU64,
    waiting: Mutex<HashMap<Key, Waiter>>,
}

/// Retransmits the 2xx responses to INVITEs until their ACK (RFC 3261 §13.3.1.4). Cheap to
/// clone; one per UAS core.
#[derive(Clone)]
pub struct TwoXxRetransmitter {
    inner: Arc<Inner>,
}

impl Default for TwoXxRetransmitter {
    /// T1 = 500 ms, T2 = 4 s.
    fn default() -> Self {
        TwoXxRetransmitter::new(Duration::from_millis(500), Duration::from_secs(4))
    }
}

impl std::fmt::Debug for TwoXxRetransmitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwoXxRetransmitter")
            .field("t1", &self.inner.t1)
            .field("t2", &self.inner.t2)
            .field("pending", &self.pending())
            .finish()
    }
}

fn key_of(msg: &Message) -> Option<Key> {
    Some((msg.call_id()?.to_owned(), msg.cseq().ok()?.seq))
}

impl TwoXxRetransmitter {
    /// With these T1 and T2 (use the Endpoint's transaction timers).
    pub fn new(t1: Duration, t2: Duration) -> Self {
        TwoXxRetransmitter {
            inner: Arc::new(Inner {
                t1,
                t2: t2.max(t1),
                next_id: AtomicU64::new(0),
                waiting: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Waiter>> {
        self.inner.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `response` on `txn`. A 2xx to an INVITE is then retransmitted on the transaction
    /// (in its Accepted state) at T1, 2·T1, … capped at T2 until [`TwoXxRetransmitter::ack`]
    /// sees its ACK, [`TwoXxRetransmitter::stop_call`] is called, or 64·T1 pass. Any other
    /// response is sent once (the transaction layer retransmits those itself).
    pub async fn send(
        &self,
        txn: ServerTransaction,
        response: Message,
    ) -> Result<Pending2xx, EndpointError> {
        let is_2xx = response.status().is_some_and(|s| (200..300).contains(&s));
        let is_invite = txn.request().method() == Some(Method::Invite);
        txn.respond(response.clone()).await?;
        let key = match key_of(txn.request()) {
            Some(k) if is_2xx && is_invite => k,
            _ => return Ok(Pending2xx { done: None }),
        };
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (stop, mut stopped) = oneshot::channel();
        let (done_tx, done) = oneshot::channel();
        // A newer 2xx for the same INVITE replaces the older one (its sender drops: Stopped).
        self.waiting().insert(key.clone(), Waiter { id, stop });
        let this = self.clone();
        let (t1, t2) = (self.inner.t1, self.inner.t2);
        tokio::spawn(async move {
            // The schedule is sip-dialog's (sans-IO); this task only sleeps and sends.
            let mut schedule = TwoXxRetransmit::new(
                tokio::time::Instant::now().into_std(),
                response,
                key.1,
                t1,
                t2,
            );
            let outcome = loop {
                let due = tokio::time::Instant::from_std(schedule.poll_timeout());
                tokio::select! {
                    r = &mut stopped => break r.unwrap_or(AckOutcome::Stopped),
                    _ = tokio::time::sleep_until(due) => {}
                }
                match schedule.handle_timeout(tokio::time::Instant::now().into_std()) {
                    Some(TwoXxAction::Retransmit(m)) => {
                        if let Err(e) = txn.respond(*m).await {
                            debug!(call_id = %key.0, error = %e, "2xx retransmission failed");
                            break AckOutcome::TimedOut;
                        }
                    }
                    Some(TwoXxAction::GiveUp) => break AckOutcome::TimedOut,
                    None => {}
                }
            };
            let retransmissions = schedule.retransmissions();
            {
                let mut w = this.waiting();
                if w.get(&key).is_some_and(|w| w.id == id) {
                    w.remove(&key);
                }
            }
            debug!(call_id = %key.0, cseq = key.1, ?outcome, retransmissions, "2xx retransmission ended");
            let _ = done_tx.send(AckReport {
                outcome,
                retransmissions,
            });
        });
        Ok(Pending2xx { done: Some(done) })
    }

    /// An ACK arrived ([`ServerEvent::Ack`](crate::endpoint::ServerEvent::Ack)): stops the
    /// retransmission of the 2xx with its Call-ID and CSeq number. Returns whether one was
    /// pending (`false`: a retransmitted ACK, or the ACK of something else).
    pub fn ack(&self, ack: &Message) -> bool {
        if ack.method() != Some(Method::Ack) {
            return false;
        }
        let Some(key) = key_of(ack) else {
            return false;
        };
        match self.waiting().remove(&key) {
            Some(w) => {
                let _ = w.stop.send(AckOutcome::Acked);
                true
            }
            None => false,
        }
    }

    /// Stops every 2xx retransmission of this Call-ID (a BYE arrived before the ACK, the TU
    /// ends the call). Returns how many were stopped.
    pub fn stop_call(&self, call_id: &str) -> usize {
        let mut w = self.waiting();
        let keys: Vec<Key> = w.keys().filter(|k| k.0 == call_id).cloned().collect();
        for k in &keys {
            if let Some(waiter) = w.remove(k) {
                let _ = waiter.stop.send(AckOutcome::Stopped);
            }
        }
        keys.len()
    }

    /// 2xx responses still waiting for their ACK.
    pub fn pending(&self) -> usize {
        self.waiting().len()
    }
}
