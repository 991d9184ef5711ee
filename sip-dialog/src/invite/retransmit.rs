//! RFC 3261 §13.3.1.4: the UAS core retransmits its 2xx to an INVITE (the INVITE server
//! transaction sends it once and then, in Accepted per RFC 6026, only passes on what the TU
//! sends) at T1, 2·T1, 4·T1 … capped at T2, until the ACK arrives; after 64·T1 without one it
//! gives up, and the session SHOULD be ended with a BYE.

use std::time::{Duration, Instant};

use sip_core::Message;

/// What a [`TwoXxRetransmit`] asks when its timer fires.
#[derive(Debug, Clone, PartialEq)]
pub enum TwoXxAction {
    /// Send the 2xx again.
    Retransmit(Box<Message>),
    /// 64·T1 passed without an ACK.
    GiveUp,
}

/// The retransmission schedule of one 2xx, on injected time.
#[derive(Debug, Clone)]
pub struct TwoXxRetransmit {
    response: Message,
    seq: u32,
    interval: Duration,
    t2: Duration,
    next: Instant,
    give_up: Instant,
    retransmissions: u32,
}

impl TwoXxRetransmit {
    /// Starts after the first transmission of `response` (the 2xx to the INVITE with CSeq
    /// number `seq`) at `now`.
    pub fn new(now: Instant, response: Message, seq: u32, t1: Duration, t2: Duration) -> Self {
        TwoXxRetransmit {
            response,
            seq,
            interval: t1,
            t2: t2.max(t1),
            next: now + t1,
            give_up: now + t1.saturating_mul(64),
            retransmissions: 0,
        }
    }

    /// The CSeq number of the INVITE it answers (its ACK carries the same).
    pub fn seq(&self) -> u32 {
        self.seq
    }

    /// The 2xx.
    pub fn response(&self) -> &Message {
        &self.response
    }

    /// Retransmissions sent so far.
    pub fn retransmissions(&self) -> u32 {
        self.retransmissions
    }

    /// When [`TwoXxRetransmit::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Instant {
        self.next.min(self.give_up)
    }

    /// Advances to `now`: `None` when nothing is due yet.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<TwoXxAction> {
        if now >= self.give_up {
            return Some(TwoXxAction::GiveUp);
        }
        if now < self.next {
            return None;
        }
        self.retransmissions += 1;
        self.interval = self.interval.saturating_mul(2).min(self.t2);
        self.next += self.interval;
        Some(TwoXxAction::Retransmit(Box::new(self.response.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> Message {
        Message::parse(
            &b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nFrom: <sip:a@a>;tag=1\r\n\
To: <sip:b@b>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContact: <sip:b@b>\r\n\
Content-Length: 0\r\n\r\n"[..],
        )
        .unwrap()
    }

    #[test]
    fn doubles_to_t2_then_gives_up_at_64_t1() {
        let t0 = Instant::now();
        let (t1, t2) = (Duration::from_millis(500), Duration::from_secs(4));
        let mut r = TwoXxRetransmit::new(t0, ok(), 1, t1, t2);
        let mut at = Vec::new();
        loop {
            let due = r.poll_timeout();
            match r.handle_timeout(due) {
                Some(TwoXxAction::Retransmit(_)) => at.push((due - t0).as_millis()),
                Some(TwoXxAction::GiveUp) => {
                    assert_eq!(due - t0, t1 * 64);
                    break;
                }
                None => panic!("due but nothing to do"),
            }
        }
        assert_eq!(&at[..6], [500, 1500, 3500, 7500, 11500, 15500]);
        assert_eq!(r.retransmissions() as usize, at.len());
        assert!(at.iter().all(|&ms| ms < 32_000));
    }

    #[test]
    fn nothing_before_due() {
        let t0 = Instant::now();
        let mut r = TwoXxRetransmit::new(
            t0,
            ok(),
            1,
            Duration::from_millis(100),
            Duration::from_secs(4),
        );
        assert_eq!(r.handle_timeout(t0 + Duration::from_millis(99)), None);
    }
}
