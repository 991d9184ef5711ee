//! The INVITE usage of a dialog (RFC 3261 §13–§15): which INVITE is pending on each side,
//! glare (§14.1: 491 and the retry timer), the UAS's 2xx retransmission until the ACK
//! (§13.3.1.4), and the UAC's ACK kept to answer every retransmitted 2xx (§13.2.2.4).

use std::time::{Duration, Instant};

use sip_core::Message;

use super::retransmit::{TwoXxAction, TwoXxRetransmit};
use crate::id::Role;

/// Timer values the INVITE usage needs (RFC 3261 §17.1.1.1 defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// T1, the RTT estimate (500 ms).
    pub t1: Duration,
    /// T2, the cap of non-INVITE retransmission intervals (4 s).
    pub t2: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
        }
    }
}

/// What to answer an INVITE received in a dialog (§14.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteVerdict {
    /// Go ahead: hand it to the application.
    Accept,
    /// Answer with this status (491 for glare; 500 with `Retry-After` for an INVITE arriving
    /// while the peer's previous one is still pending).
    Reject {
        /// The status.
        status: u16,
        /// Seconds for a Retry-After header.
        retry_after: Option<u32>,
    },
}

/// A local (re-)INVITE cannot start now (§14.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an INVITE is already pending in this dialog")]
pub struct Pending;

/// What the usage asks when its timer fires.
#[derive(Debug, Clone, PartialEq)]
pub enum UsageAction {
    /// Send this 2xx again (§13.3.1.4).
    Retransmit2xx(Box<Message>),
    /// No ACK within 64·T1: confirm, then end the session with a BYE (§13.3.1.4).
    AckTimeout,
    /// The §14.1 glare timer ran out: the application may retry its re-INVITE.
    GlareRetry,
}

/// The INVITE usage state.
#[derive(Debug, Clone, Default)]
pub struct InviteUsage {
    timers: Timers,
    local_invite: Option<u32>,
    remote_invite: Option<u32>,
    // Boxed: the stored messages are large inline, and most dialogs hold neither.
    answer: Option<Box<TwoXxRetransmit>>,
    ack: Option<Box<(u32, Message)>>,
    glare_retry: Option<Instant>,
}

impl InviteUsage {
    /// A usage with these timers.
    pub fn new(timers: Timers) -> Self {
        InviteUsage {
            timers,
            ..InviteUsage::default()
        }
    }

    /// The CSeq of our pending INVITE, if any.
    pub fn local_invite(&self) -> Option<u32> {
        self.local_invite
    }

    /// The CSeq of the peer's pending INVITE (final not sent, or 2xx not yet ACKed).
    pub fn remote_invite(&self) -> Option<u32> {
        self.remote_invite
    }

    /// True while our 2xx waits for its ACK.
    pub fn awaiting_ack(&self) -> bool {
        self.answer.is_some()
    }

    /// §14.2: an INVITE with CSeq `seq` arrived (after [`crate::Dialog::check_request`]
    /// passed). While ours is pending: 491. While the peer's previous one is: 500 with a
    /// Retry-After of 0–10 s (`random` picks it).
    pub fn on_invite(&mut self, seq: u32, random: u64) -> InviteVerdict {
        if self.local_invite.is_some() {
            return InviteVerdict::Reject {
                status: 491,
                retry_after: None,
            };
        }
        if self.remote_invite.is_some_and(|r| r != seq) {
            return InviteVerdict::Reject {
                status: 500,
                retry_after: Some((random % 11) as u32),
            };
        }
        self.remote_invite = Some(seq);
        InviteVerdict::Accept
    }

    /// We sent the final `response` to the peer's INVITE with CSeq `seq` at `now`. A 2xx is
    /// then retransmitted until [`InviteUsage::on_ack`]; any other final ends the INVITE.
    pub fn answered(&mut self, now: Instant, seq: u32, response: &Message) {
        let status = response.status().unwrap_or(0);
        if (200..300).contains(&status) {
            self.answer = Some(Box::new(TwoXxRetransmit::new(
                now,
                response.clone(),
                seq,
                self.timers.t1,
                self.timers.t2,
            )));
        } else if status >= 300 && self.remote_invite == Some(seq) {
            self.remote_invite = None;
        }
    }

    /// An ACK with CSeq number `seq` arrived: the 2xx retransmission stops. `false` for an ACK
    /// that matches none (a retransmitted ACK).
    pub fn on_ack(&mut self, seq: u32) -> bool {
        if self.answer.as_ref().is_some_and(|a| a.seq() == seq) {
            self.answer = None;
            if self.remote_invite == Some(seq) {
                self.remote_invite = None;
            }
            return true;
        }
        false
    }

    /// §14.1: we want to send an INVITE with CSeq `seq`. Refused while one is pending on
    /// either side (the peer's would make it glare).
    pub fn start_local_invite(&mut self, seq: u32) -> Result<(), Pending> {
        if self.local_invite.is_some() || self.remote_invite.is_some() {
            return Err(Pending);
        }
        self.local_invite = Some(seq);
        self.glare_retry = None;
        Ok(())
    }

    /// Our INVITE with CSeq `seq` got its final `status` at `now`. For 491 the glare timer
    /// starts (§14.1): when we own the Call-ID (we were the dialog's UAC) a random time in
    /// 2.1–4 s in 10 ms steps, otherwise 0–2 s; `random` draws it.
    pub fn local_invite_final(
        &mut self,
        now: Instant,
        seq: u32,
        status: u16,
        role: Role,
        random: u64,
    ) {
        if self.local_invite == Some(seq) {
            self.local_invite = None;
        }
        if status == 491 {
            self.glare_retry = Some(now + glare_delay(role, random));
        }
    }

    /// Keeps the ACK sent for the 2xx to our INVITE with CSeq `seq`, to send again for each
    /// retransmitted 2xx (§13.2.2.4).
    pub fn set_ack(&mut self, seq: u32, ack: Message) {
        self.ack = Some(Box::new((seq, ack)));
    }

    /// The ACK to send again for a retransmitted 2xx to our INVITE with CSeq `seq`.
    pub fn ack_for(&self, seq: u32) -> Option<&Message> {
        self.ack
            .as_deref()
            .filter(|(s, _)| *s == seq)
            .map(|(_, a)| a)
    }

    /// The dialog is ending (BYE sent or received): stop retransmitting, forget pending
    /// INVITEs (RFC 5407 §3.2: a BYE crossing a re-INVITE ends both).
    pub fn stop(&mut self) {
        self.answer = None;
        self.glare_retry = None;
        self.local_invite = None;
        self.remote_invite = None;
    }

    /// When [`InviteUsage::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let a = self.answer.as_deref().map(TwoXxRetransmit::poll_timeout);
        match (a, self.glare_retry) {
            (Some(a), Some(g)) => Some(a.min(g)),
            (a, g) => a.or(g),
        }
    }

    /// Advances to `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<UsageAction> {
        if self.glare_retry.is_some_and(|g| now >= g) {
            self.glare_retry = None;
            return Some(UsageAction::GlareRetry);
        }
        let answer = self.answer.as_mut()?;
        match answer.handle_timeout(now)? {
            TwoXxAction::Retransmit(m) => Some(UsageAction::Retransmit2xx(m)),
            TwoXxAction::GiveUp => {
                self.answer = None;
                self.remote_invite = None;
                Some(UsageAction::AckTimeout)
            }
        }
    }

    /// Heap bytes held, the stored messages (2xx, ACK) excluded.
    pub fn heap_size(&self) -> usize {
        let answer = self.answer.as_ref().map_or(0, |_| {
            std::mem::size_of::<TwoXxRetransmit>() - std::mem::size_of::<Message>()
        });
        let ack = self.ack.as_ref().map_or(0, |_| std::mem::size_of::<u32>());
        answer + ack
    }
}

/// §14.1's retry delay after a 491.
pub fn glare_delay(role: Role, random: u64) -> Duration {
    let tens = match role {
        // 2.1 to 4 s: 210..=400 tens of ms.
        Role::Uac => 210 + random % 191,
        // 0 to 2 s.
        Role::Uas => random % 201,
    };
    Duration::from_millis(tens * 10)
}
