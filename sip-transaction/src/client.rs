//! The client machines: INVITE (RFC 3261 §17.1.1 with RFC 6026 §7.2) and non-INVITE (§17.1.2).

use std::time::Instant;

use sip_core::{Flow, Message};

use crate::config::Config;
use crate::event::{Event, TerminationReason};
use crate::messages;
use crate::timer::{Slot, Timer};
use crate::txn::{Kind, Out, State, Step, Transaction};

impl Transaction {
    /// Sends the request and arms A/E (unreliable only) and B/F.
    pub(crate) fn client_start(&mut self, now: Instant, cfg: &Config, out: &mut Out) {
        self.send(out, self.request.clone(), false);
        let (retransmit, timeout) = match self.kind {
            Kind::InviteClient => (Timer::A, Timer::B),
            _ => (Timer::E, Timer::F),
        };
        if !self.reliable {
            self.interval = cfg.t1();
            self.arm(out, Slot::Retransmit, retransmit, now, self.interval);
        }
        self.arm(out, Slot::Timeout, timeout, now, cfg.timer_b());
    }

    /// A response matched this client transaction.
    pub(crate) fn client_response(
        &mut self,
        now: Instant,
        cfg: &Config,
        out: &mut Out,
        response: Message,
        flow: Flow,
    ) -> Step {
        let status = response.status().unwrap_or(0);
        match self.kind {
            Kind::InviteClient => {
                self.invite_client_response(now, cfg, out, response, flow, status)
            }
            _ => self.non_invite_client_response(now, cfg, out, response, flow, status),
        }
    }

    fn deliver(&self, out: &mut Out, response: Message, flow: Flow) {
        out.events.push_back(Event::Response {
            key: self.key,
            response,
            flow,
        });
    }

    fn invite_client_response(
        &mut self,
        now: Instant,
        cfg: &Config,
        out: &mut Out,
        response: Message,
        flow: Flow,
        status: u16,
    ) -> Step {
        match (self.state, status) {
            (State::Calling | State::Proceeding, 100..=199) => {
                if self.state == State::Calling {
                    // §17.1.1.2: no more retransmissions; Timer B only runs in Calling.
                    self.disarm(Slot::Retransmit);
                    self.disarm(Slot::Timeout);
                    self.state = State::Proceeding;
                    if self.cancelled {
                        self.arm(out, Slot::Timeout, Timer::CancelWait, now, cfg.timer_b());
                    }
                }
                if let Some(c) = cfg.timer_c() {
                    self.arm(out, Slot::Guard, Timer::C, now, c);
                }
                self.deliver(out, response, flow);
                Step::Continue
            }
            (State::Calling | State::Proceeding, 200..=299) => {
                // RFC 6026 §7.2: Accepted, Timer M; the TU (not us) ACKs every 2xx.
                self.state = State::Accepted;
                self.release_request();
                let step = self.linger(now, out, Timer::M, cfg.timer_b());
                self.deliver(out, response, flow);
                step
            }
            (State::Calling | State::Proceeding, _) => {
                // §17.1.1.3: the transaction ACKs a non-2xx final response itself.
                self.state = State::Completed;
                self.stored = messages::ack_for(&self.request, &response);
                self.release_request();
                if let Some(ack) = self.stored.clone() {
                    self.send(out, ack, false);
                }
                let step = self.linger(now, out, Timer::D, self.unreliable_only(cfg.timer_d()));
                self.deliver(out, response, flow);
                step
            }
            (State::Accepted, 200..=299) => {
                self.deliver(out, response, flow);
                Step::Continue
            }
            (State::Completed, 200..=299) => {
                // A 2xx from another fork after a non-2xx final (RFC 3261 §13.2.2.4): it
                // created a dialog that the TU must ACK and end with BYE; not a retransmission.
                out.events
                    .push_back(Event::StrayResponse { response, flow });
                Step::Continue
            }
            (State::Completed, 300..=699) => {
                // A retransmitted final response: re-send the ACK, tell nobody.
                out.stats.retransmissions_absorbed += 1;
                if let Some(ack) = self.stored.clone() {
                    self.send(out, ack, true);
                }
                Step::Continue
            }
            _ => {
                out.stats.retransmissions_absorbed += 1;
                Step::Continue
            }
        }
    }

    fn non_invite_client_response(
        &mut self,
        now: Instant,
        cfg: &Config,
        out: &mut Out,
        response: Message,
        flow: Flow,
        status: u16,
    ) -> Step {
        match (self.state, status) {
            (State::Trying | State::Proceeding, 100..=199) => {
                self.state = State::Proceeding;
                self.deliver(out, response, flow);
                Step::Continue
            }
            (State::Trying | State::Proceeding, _) => {
                self.state = State::Completed;
                self.release_request();
                let step = self.linger(now, out, Timer::K, self.unreliable_only(cfg.t4()));
                self.deliver(out, response, flow);
                step
            }
            _ => {
                out.stats.retransmissions_absorbed += 1;
                Step::Continue
            }
        }
    }

    /// A timer of this client transaction fired.
    pub(crate) fn client_timer(
        &mut self,
        now: Instant,
        cfg: &Config,
        out: &mut Out,
        timer: Timer,
    ) -> Step {
        match (timer, self.state) {
            (Timer::A, State::Calling) => {
                self.send(out, self.request.clone(), true);
                self.interval = self.interval.saturating_mul(2);
                self.arm(out, Slot::Retransmit, Timer::A, now, self.interval);
                Step::Continue
            }
            (Timer::E, State::Trying) => {
                self.send(out, self.request.clone(), true);
                self.interval = self.interval.saturating_mul(2).min(cfg.t2());
                self.arm(out, Slot::Retransmit, Timer::E, now, self.interval);
                Step::Continue
            }
            (Timer::E, State::Proceeding) => {
                // §17.1.2.2: in Proceeding, E is reset to T2 each time.
                self.send(out, self.request.clone(), true);
                self.interval = cfg.t2();
                self.arm(out, Slot::Retransmit, Timer::E, now, self.interval);
                Step::Continue
            }
            (Timer::B | Timer::F | Timer::C | Timer::CancelWait, _) => {
                Step::Terminate(TerminationReason::Timeout(timer))
            }
            (Timer::D | Timer::K | Timer::M, _) => Step::Terminate(TerminationReason::Completed),
            // A timer that no longer fits the state: nothing to do.
            _ => Step::Continue,
        }
    }

    /// The TU sent a CANCEL for this INVITE client transaction (RFC 3261 §9.1): if no final
    /// response comes within 64·T1 the transaction is given up.
    pub(crate) fn cancel_sent(&mut self, now: Instant, cfg: &Config, out: &mut Out) {
        if self.kind != Kind::InviteClient || self.cancelled {
            return;
        }
        self.cancelled = true;
        if self.state == State::Proceeding && self.armed(Slot::Timeout).is_none() {
            self.arm(out, Slot::Timeout, Timer::CancelWait, now, cfg.timer_b());
        }
    }
}
