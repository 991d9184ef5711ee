//! RFC 3262: reliable provisional responses (option-tag `100rel`), sans-IO.
//!
//! - UAS: [`ReliableProvisionals`] numbers each reliable 1xx with an RSeq (§3), keeps at most
//!   one unacknowledged at a time (later ones wait in a small bounded queue), retransmits it at
//!   T1, 2·T1, 4·T1… until its PRACK or 64·T1 (then the INVITE should be rejected with a 5xx),
//!   matches PRACKs by their RAck (481 for none), and says when the final response may go
//!   (§3: not a 2xx while a provisional carrying a session description is unacknowledged).
//! - UAC: [`PrackClient`] decides, per early dialog (To-tag), which reliable 1xx gets a PRACK
//!   (§4: the first, then RSeq + 1 only; retransmissions and out-of-order ones are not
//!   PRACKed); [`prack_request`] builds the PRACK with its RAck in the early dialog.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use sip_core::builder::{RequestBuilder, ResponseBuilder};
use sip_core::{HeaderName, Message, Method};

use crate::dialog::Dialog;
use crate::Error;

/// The option-tag of RFC 3262.
pub const OPTION_TAG: &str = "100rel";

/// Reliable provisionals waiting behind the unacknowledged one (§3 allows one at a time).
pub const MAX_QUEUED: usize = 4;

/// Early dialogs a [`PrackClient`] tracks RSeq for (forks of one INVITE).
pub const MAX_FORKS: usize = 16;

/// The RAck header (RFC 3262 §7.2): the RSeq being acknowledged, and the CSeq number and
/// method of the request whose provisional it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RAck {
    /// The RSeq of the provisional.
    pub rseq: u32,
    /// The CSeq number of the INVITE.
    pub cseq: u32,
}

impl RAck {
    /// Parses `RSeq SP CSeq-number SP Method`; only INVITE is acknowledged (§3).
    pub fn parse(value: &str) -> Option<RAck> {
        let mut parts = value.split_ascii_whitespace();
        let rseq = parts.next()?.parse().ok()?;
        let cseq = parts.next()?.parse().ok()?;
        let method = parts.next()?;
        if parts.next().is_some() || !method.eq_ignore_ascii_case("INVITE") {
            return None;
        }
        Some(RAck { rseq, cseq })
    }
}

impl fmt::Display for RAck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} INVITE", self.rseq, self.cseq)
    }
}

/// The RSeq of a reliable provisional (§7.1: 1 to 2³¹ − 1), if `response` is one: a 101–199
/// with `Require: 100rel` and an RSeq.
pub fn reliable_rseq(response: &Message) -> Option<u32> {
    let status = response.status()?;
    if !(101..200).contains(&status) || !response.has_token(HeaderName::Require, OPTION_TAG) {
        return None;
    }
    let rseq: u32 = response.header(HeaderName::RSeq)?.trim().parse().ok()?;
    (1..=0x7fff_ffff).contains(&rseq).then_some(rseq)
}

/// True when a request asks for reliable provisionals (`Require: 100rel`).
pub fn required(request: &Message) -> bool {
    request.has_token(HeaderName::Require, OPTION_TAG)
}

/// True when a request admits reliable provisionals (`Supported` or `Require: 100rel`).
pub fn supported(request: &Message) -> bool {
    required(request) || request.has_token(HeaderName::Supported, OPTION_TAG)
}

/// The reliable provisional waiting for its PRACK.
#[derive(Debug, Clone)]
struct Outstanding {
    rseq: u32,
    response: Message,
    has_sdp: bool,
    interval: Duration,
    next: Instant,
    give_up: Instant,
}

/// What [`ReliableProvisionals::handle_timeout`] asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum ProvisionalAction {
    /// Send this reliable provisional again.
    Retransmit(Box<Message>),
    /// 64·T1 without a PRACK (§3): reject the INVITE with a 5xx.
    TimedOut,
}

/// What a PRACK received by the UAS means (§3).
#[derive(Debug, Clone, PartialEq)]
pub enum PrackVerdict {
    /// It acknowledges the outstanding provisional: answer 200. `next` is the queued reliable
    /// provisional to send now, if any.
    Acknowledged {
        /// The next reliable provisional, RSeq assigned.
        next: Option<Box<Message>>,
    },
    /// It matches no unacknowledged reliable provisional: answer 481.
    NoMatch,
}

/// The UAS side of RFC 3262 for one INVITE server transaction.
#[derive(Debug, Clone)]
pub struct ReliableProvisionals {
    t1: Duration,
    invite_seq: u32,
    next_rseq: u32,
    outstanding: Option<Outstanding>,
    queue: VecDeque<(Message, bool)>,
    done: bool,
    sdp_acknowledged: bool,
}

/// A reliable provisional could not be accepted: [`MAX_QUEUED`] are already waiting, or the
/// final response has been sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no more reliable provisionals can be sent for this INVITE")]
pub struct ProvisionalRefused;

impl ReliableProvisionals {
    /// For the INVITE with CSeq number `invite_seq`. `first_rseq` is the first RSeq (§3: chosen
    /// at random between 1 and 2³¹ − 1; it is folded into 1..=2³¹−1 here).
    pub fn new(t1: Duration, invite_seq: u32, first_rseq: u32) -> Self {
        ReliableProvisionals {
            t1,
            invite_seq,
            next_rseq: (first_rseq % 0x4000_0000).max(1),
            outstanding: None,
            queue: VecDeque::new(),
            done: false,
            sdp_acknowledged: false,
        }
    }

    /// Sends the provisional `response` reliably at `now`: `Require: 100rel` and its RSeq are
    /// added. Returns the message to send now, or `None` when it waits for the PRACK of the
    /// one before (§3).
    pub fn send(
        &mut self,
        now: Instant,
        response: ResponseBuilder,
    ) -> Result<Option<Message>, ProvisionalError> {
        if self.done {
            return Err(ProvisionalError::Refused(ProvisionalRefused));
        }
        let staged = response.header("Require", OPTION_TAG).build()?;
        let has_sdp = !staged.body().is_empty();
        if self.outstanding.is_some() {
            if self.queue.len() >= MAX_QUEUED {
                return Err(ProvisionalError::Refused(ProvisionalRefused));
            }
            self.queue.push_back((staged, has_sdp));
            return Ok(None);
        }
        Ok(Some(self.start(now, &staged, has_sdp)?))
    }

    fn start(&mut self, now: Instant, staged: &Message, has_sdp: bool) -> Result<Message, Error> {
        let rseq = self.next_rseq;
        let mut response = staged.clone();
        response.append_header("RSeq", &rseq.to_string())?;
        self.next_rseq = if rseq >= 0x7fff_ffff { 1 } else { rseq + 1 };
        self.outstanding = Some(Outstanding {
            rseq,
            response: response.clone(),
            has_sdp,
            interval: self.t1,
            next: now + self.t1,
            give_up: now + self.t1.saturating_mul(64),
        });
        Ok(response)
    }

    /// A PRACK arrived at `now` (already matched to the dialog). §3: it must carry an RAck
    /// naming the outstanding provisional's RSeq and the INVITE's CSeq.
    pub fn on_prack(&mut self, now: Instant, prack: &Message) -> PrackVerdict {
        let rack = prack.header(HeaderName::RAck).and_then(RAck::parse);
        let matches = match (&self.outstanding, rack) {
            (Some(o), Some(r)) => r.rseq == o.rseq && r.cseq == self.invite_seq,
            _ => false,
        };
        if !matches {
            return PrackVerdict::NoMatch;
        }
        if self.outstanding.take().is_some_and(|o| o.has_sdp) {
            self.sdp_acknowledged = true;
        }
        let mut next = None;
        while let Some((staged, has_sdp)) = self.queue.pop_front() {
            if let Ok(m) = self.start(now, &staged, has_sdp) {
                next = Some(Box::new(m));
                break;
            }
        }
        PrackVerdict::Acknowledged { next }
    }

    /// True once a reliable provisional carrying a session description has been PRACKed: the
    /// INVITE's offer is answered, and an UPDATE may carry a new offer (RFC 3311 §5.2).
    pub fn sdp_acknowledged(&self) -> bool {
        self.sdp_acknowledged
    }

    /// True while a reliable provisional is unacknowledged or queued.
    pub fn pending(&self) -> bool {
        self.outstanding.is_some() || !self.queue.is_empty()
    }

    /// §3: a final response with `status` may be sent now. A 2xx must wait while an
    /// unacknowledged (or queued) reliable provisional carried a session description; any
    /// other final may go at once.
    pub fn may_send_final(&self, status: u16) -> bool {
        if !(200..300).contains(&status) {
            return true;
        }
        let outstanding_sdp = self.outstanding.as_ref().is_some_and(|o| o.has_sdp);
        !outstanding_sdp && !self.queue.iter().any(|(_, sdp)| *sdp)
    }

    /// The final response went: no more retransmissions, nothing more is sent reliably.
    pub fn final_sent(&mut self) {
        self.done = true;
        self.outstanding = None;
        self.queue.clear();
    }

    /// When [`ReliableProvisionals::handle_timeout`] must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.outstanding.as_ref().map(|o| o.next.min(o.give_up))
    }

    /// The retransmission timer (§3: T1, doubling each time) or the 64·T1 limit fired.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<ProvisionalAction> {
        let o = self.outstanding.as_mut()?;
        if now >= o.give_up {
            self.final_sent();
            return Some(ProvisionalAction::TimedOut);
        }
        if now < o.next {
            return None;
        }
        o.interval = o.interval.saturating_mul(2);
        o.next = now + o.interval;
        Some(ProvisionalAction::Retransmit(Box::new(o.response.clone())))
    }
}

/// Why a reliable provisional could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProvisionalError {
    /// The queue is full or the final response went.
    #[error(transparent)]
    Refused(#[from] ProvisionalRefused),
    /// The response could not be built.
    #[error(transparent)]
    Build(#[from] Error),
}

impl From<sip_core::Error> for ProvisionalError {
    fn from(e: sip_core::Error) -> Self {
        ProvisionalError::Build(Error::Build(e))
    }
}

/// What the UAC does with a provisional (§4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReliableVerdict {
    /// Not a reliable provisional: nothing to acknowledge.
    Unreliable,
    /// Send a PRACK with this RAck.
    Prack(RAck),
    /// A retransmission of one already PRACKed: ignore it (the PRACK's own transaction
    /// retransmits).
    Retransmission,
    /// RSeq is not the next one expected: ignore it until the missing one arrives.
    OutOfOrder,
}

/// The UAC side of RFC 3262 for one INVITE: the last RSeq acknowledged per early dialog.
#[derive(Debug, Clone, Default)]
pub struct PrackClient {
    last: Vec<(String, u32)>,
}

impl PrackClient {
    /// A client with no provisional seen.
    pub fn new() -> Self {
        PrackClient::default()
    }

    /// A provisional to the INVITE with CSeq number `invite_seq` arrived.
    pub fn on_provisional(&mut self, response: &Message, invite_seq: u32) -> ReliableVerdict {
        let Some(rseq) = reliable_rseq(response) else {
            return ReliableVerdict::Unreliable;
        };
        let Some(tag) = response.to().ok().and_then(|t| t.tag().map(str::to_owned)) else {
            // §4: a reliable provisional creates an early dialog; without a tag there is none.
            return ReliableVerdict::Unreliable;
        };
        let rack = RAck {
            rseq,
            cseq: invite_seq,
        };
        let forks = self.last.len();
        match self.last.iter_mut().find(|(t, _)| *t == tag) {
            Some((_, last)) if rseq <= *last => ReliableVerdict::Retransmission,
            Some((_, last)) if rseq != last.wrapping_add(1) => ReliableVerdict::OutOfOrder,
            Some((_, last)) => {
                *last = rseq;
                ReliableVerdict::Prack(rack)
            }
            None if forks >= MAX_FORKS => ReliableVerdict::OutOfOrder,
            None => {
                self.last.push((tag, rseq));
                ReliableVerdict::Prack(rack)
            }
        }
    }
}

/// §7.2: the PRACK for `rack` in the early (or confirmed) `dialog`, with a fresh CSeq and the
/// caller's `via`. The caller may add a body (an offer) and builds it.
pub fn prack_request(dialog: &mut Dialog, rack: RAck, via: &str) -> Result<RequestBuilder, Error> {
    Ok(dialog
        .request(Method::Prack, via)?
        .header("RAck", rack.to_string()))
}

#[cfg(test)]
mod tests;
