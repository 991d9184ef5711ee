//! The server machines: INVITE (RFC 3261 §17.2.1 with RFC 6026 §7.1) and non-INVITE (§17.2.2).

use std::time::Instant;

use bytes::Bytes;
use sip_core::{Flow, Message};

use crate::config::Config;
use crate::error::Error;
use crate::event::{Event, TerminationReason};
use crate::messages;
use crate::timer::{Slot, Timer};
use crate::txn::{Kind, Out, State, Step, Transaction};

impl Transaction {
    /// Arms the timers of a new server transaction: for INVITE the 100 Trying delay and the
    /// optional guard; for non-INVITE a 64·T1 guard (after it the client has given up).
    pub(crate) fn server_start(&mut self, now: Instant, cfg: &Config, out: &mut Out) {
        match self.kind {
            Kind::InviteServer => {
                self.arm(
                    out,
                    Slot::Retransmit,
                    Timer::Trying100,
                    now,
                    cfg.trying_delay(),
                );
                if let Some(g) = cfg.server_guard() {
                    self.arm(out, Slot::Guard, Timer::ServerGuard, now, g);
                }
            }
            _ => self.arm(out, Slot::Guard, Timer::ServerGuard, now, cfg.timer_b()),
        }
    }

    /// A request matched this server transaction: a retransmission, or the ACK of an INVITE.
    pub(crate) fn server_request(
        &mut self,
        now: Instant,
        cfg: &Config,
        out: &mut Out,
        request: Message,
        flow: Flow,
        is_ack: bool,
    ) -> Step {
        if is_ack {
            return self.server_ack(now, cfg, out, request, flow);
        }
        match self.state {
            // §17.2.1 / §17.2.2: re-send the last response (the most recent provisional in
            // Proceeding, the final in Completed). RFC 6026 §7.1: absorbed in Accepted.
            State::Proceeding | State::Completed => {
                out.stats.retransmissions_absorbed += 1;
                if let Some(last) = self.stored.clone() {
                    self.send(out, last, true);
                }
            }
            _ => out.stats.retransmissions_absorbed += 1,
        }
        Step::Continue
    }

    fn server_ack(
        &mut self,
        now: Instant,
        cfg: &Config,
        out: &mut Out,
        request: Message,
        flow: Flow,
    ) -> Step {
        match self.state {
            State::Completed => {
                // §17.2.1: Confirmed, Timer I (T4 unreliable, zero reliable).
                self.state = State::Confirmed;
                self.linger(now, out, Timer::I, self.unreliable_only(cfg.t4()))
            }
            State::Accepted => {
                // RFC 6026 §7.1: an ACK matching in Accepted goes to the TU.
                out.events.push_back(Event::Ack {
                    key: Some(self.key),
                    request,
                    flow,
                });
                Step::Continue
            }
            _ => {
                out.stats.retransmissions_absorbed += 1;
                Step::Continue
            }
        }
    }

    /// The TU responds on this server transaction.
    pub(crate) fn server_respond(
        &mut self,
        now: Instant,
        cfg: &Config,
        out: &mut Out,
        response: &Message,
        keep_2xx: bool,
    ) -> Result<Step, Error> {
        let status = response.status().ok_or(Error::NotAResponse)?;
        let refuse = Err(Error::InvalidState {
            state: self.state,
            status,
        });
        let bytes = response.to_bytes();
        match (self.kind, self.state, status) {
            (Kind::InviteServer, State::Proceeding, 100..=199) => {
                self.disarm(Slot::Retransmit);
                if let Some(g) = cfg.server_guard() {
                    self.arm(out, Slot::Guard, Timer::ServerGuard, now, g);
                }
                self.provisional(out, bytes);
                Ok(Step::Continue)
            }
            (Kind::InviteServer, State::Proceeding, 200..=299) => {
                // RFC 6026 §7.1: Accepted, Timer L; the TU retransmits the 2xx, not us.
                self.state = State::Accepted;
                self.stored = keep_2xx.then(|| bytes.clone());
                self.release_request();
                self.send(out, bytes, false);
                Ok(self.linger(now, out, Timer::L, cfg.timer_b()))
            }
            (Kind::InviteServer, State::Accepted, 200..=299) => {
                self.send(out, bytes, true);
                Ok(Step::Continue)
            }
            (Kind::InviteServer, State::Proceeding, 300..=699) => {
                self.state = State::Completed;
                self.disarm_all();
                self.stored = Some(bytes.clone());
                self.release_request();
                self.send(out, bytes, false);
                if !self.reliable {
                    self.interval = cfg.t1();
                    self.arm(out, Slot::Retransmit, Timer::G, now, self.interval);
                }
                self.arm(out, Slot::Timeout, Timer::H, now, cfg.timer_b());
                Ok(Step::Continue)
            }
            (Kind::NonInviteServer, State::Trying | State::Proceeding, 100..=199) => {
                self.state = State::Proceeding;
                self.provisional(out, bytes);
                Ok(Step::Continue)
            }
            (Kind::NonInviteServer, State::Trying | State::Proceeding, 200..=699) => {
                self.state = State::Completed;
                self.release_request();
                self.stored = Some(bytes.clone());
                self.send(out, bytes, false);
                let wait = self.unreliable_only(cfg.timer_b());
                Ok(self.linger(now, out, Timer::J, wait))
            }
            _ => refuse,
        }
    }

    fn provisional(&mut self, out: &mut Out, bytes: Bytes) {
        self.stored = Some(bytes.clone());
        self.send(out, bytes, false);
    }

    /// A timer of this server transaction fired.
    pub(crate) fn server_timer(
        &mut self,
        now: Instant,
        cfg: &Config,
        out: &mut Out,
        timer: Timer,
    ) -> Step {
        match (timer, self.state) {
            (Timer::Trying100, State::Proceeding) if self.stored.is_none() => {
                if let Some(trying) = messages::trying_for(&self.request) {
                    self.provisional(out, trying);
                }
                Step::Continue
            }
            (Timer::G, State::Completed) => {
                if let Some(last) = self.stored.clone() {
                    self.send(out, last, true);
                }
                self.interval = self.interval.saturating_mul(2).min(cfg.t2());
                self.arm(out, Slot::Retransmit, Timer::G, now, self.interval);
                Step::Continue
            }
            (Timer::H | Timer::ServerGuard, _) => {
                Step::Terminate(TerminationReason::Timeout(timer))
            }
            (Timer::I | Timer::J | Timer::L, _) => Step::Terminate(TerminationReason::Completed),
            _ => Step::Continue,
        }
    }
}
