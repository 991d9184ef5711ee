//! RFC 3261 §16.7: the response context of one forwarded request, with §16.8 (Timer C),
//! §16.9 (transport errors) and §16.10 (CANCEL). Sans-IO: it takes responses, branch ends,
//! CANCELs and time, and returns [`Action`]s.
//!
//! The rules, in the RFC's order:
//! - our Via is removed from every response (step 3);
//! - provisionals other than 100 are forwarded at once (step 5), until a final went upstream;
//! - every 2xx is forwarded at once, and the first makes the context send CANCEL to every other
//!   pending branch (steps 5, 10);
//! - a 6xx cancels every other pending branch and stops new branches (step 6);
//! - other finals are kept; when no branch is left, the best is forwarded (step 6): a 6xx,
//!   else the lowest class, preferring 401, 407, 415, 420 and 484 among 4xx, with the
//!   challenges of every 401/407 merged into it (step 7) and a 503 sent as 500 (step 6);
//! - a branch that ended without a final counts as 408 (timeout) or 503 (transport error);
//! - a CANCEL of the request cancels each pending branch once it has had a provisional
//!   (§9.1, §16.10); Timer C does the same for a branch silent too long (§16.8).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use sip_core::{HeaderName, Message};

use super::target::ProxyTarget;

/// Identifies a branch within its context (its index).
pub type BranchId = usize;

/// What the driver must do.
// Most actions are Upstream: boxing the message would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Action {
    /// Send this response upstream on the server transaction.
    Upstream(Message),
    /// CANCEL this branch (it has had a provisional).
    Cancel(BranchId),
    /// Start branches for these targets (the next group of a sequential search); add each
    /// with [`ResponseContext::add_branch`].
    Fork(Vec<ProxyTarget>),
    /// Give up on this branch (Timer C before any provisional): forget its transaction.
    Abandon(BranchId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Sent, nothing heard.
    Trying,
    /// A provisional came.
    Proceeding,
    /// A final came (or was synthesised).
    Done,
}

#[derive(Debug)]
struct Branch {
    state: State,
    /// A CANCEL is wanted as soon as a provisional arrives.
    cancel_wanted: bool,
    cancel_sent: bool,
    /// Timer C deadline (INVITE only).
    timer_c: Option<Instant>,
}

/// Why a branch ended without a final response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BranchEnd {
    /// No response in time (Timer B/F, or C without a provisional): 408.
    Timeout,
    /// The transport failed (§16.9): 503.
    TransportError,
}

/// The response context of one request. It keeps no copy of the request: the methods that
/// may build a response of their own (408, 503, 487) take it from the caller, who holds it
/// anyway (in its server transaction), so a live context costs no second message.
#[derive(Debug)]
pub struct ResponseContext {
    invite: bool,
    branches: Vec<Branch>,
    /// Groups of a sequential search not started yet.
    pending_groups: VecDeque<Vec<ProxyTarget>>,
    /// The best final response so far (non-2xx), with our Via removed. Boxed: most
    /// contexts never hold one, and each holds it for a short while.
    best: Option<Box<Message>>,
    /// Challenges from every 401/407 (§16.7 step 7).
    challenges: Vec<(HeaderName, String)>,
    /// A final response went upstream.
    final_sent: bool,
    /// A 6xx arrived or the request was cancelled: no new branches.
    no_new_branches: bool,
    timer_c: Option<Duration>,
}

/// Rank of a final status for the best-response choice: lower is better.
fn rank(status: u16) -> (u8, u8) {
    let class = (status / 100) as u8;
    let class_rank = match class {
        6 => 0,
        2 => 0,
        c => c, // 3, 4, 5
    };
    let preferred = matches!(status, 401 | 407 | 415 | 420 | 484);
    (class_rank, if preferred { 0 } else { 1 })
}

impl ResponseContext {
    /// A context for `request`. The same request (as received, Route preprocessed or not:
    /// only its method, Via, From, To, Call-ID and CSeq are used) is passed to the methods
    /// that take one. `timer_c`: Timer C for INVITE branches (§16.8, more than 3 minutes;
    /// `None`: off).
    pub fn new(request: &Message, timer_c: Option<Duration>) -> ResponseContext {
        let invite = request.method() == Some(sip_core::Method::Invite);
        ResponseContext {
            invite,
            branches: Vec::new(),
            pending_groups: VecDeque::new(),
            best: None,
            challenges: Vec::new(),
            final_sent: false,
            no_new_branches: false,
            timer_c,
        }
    }

    /// Queues groups for a sequential search (tried after the current branches fail).
    pub fn queue_groups(&mut self, groups: impl IntoIterator<Item = Vec<ProxyTarget>>) {
        self.pending_groups.extend(groups);
    }

    /// Registers a new branch (its request was sent at `now`); `None` when no new branch may
    /// be created (a 6xx came, or the request was cancelled).
    pub fn add_branch(&mut self, now: Instant) -> Option<BranchId> {
        if self.no_new_branches || self.final_sent {
            return None;
        }
        self.branches.push(Branch {
            state: State::Trying,
            cancel_wanted: false,
            cancel_sent: false,
            timer_c: self.timer_c.filter(|_| self.invite).map(|c| now + c),
        });
        Some(self.branches.len() - 1)
    }

    /// Number of branches created.
    pub fn branch_count(&self) -> usize {
        self.branches.len()
    }

    /// Whether every branch has its final and a final went upstream: the context may go.
    pub fn is_done(&self) -> bool {
        self.final_sent && self.branches.iter().all(|b| b.state == State::Done)
    }

    /// Whether a final response went upstream.
    pub fn final_sent(&self) -> bool {
        self.final_sent
    }

    /// Branches still waiting for a final.
    pub fn pending(&self) -> usize {
        self.branches
            .iter()
            .filter(|b| b.state != State::Done)
            .count()
    }

    /// A response arrived on `branch` (step 1–10 of §16.7). `request`: the context's.
    pub fn on_response(
        &mut self,
        request: &Message,
        branch: BranchId,
        mut resp: Message,
        now: Instant,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(status) = resp.status() else {
            return out;
        };
        let Some(b) = self.branches.get_mut(branch) else {
            return out;
        };
        // Step 3: remove our Via. With no Via left the response was for us (or the
        // downstream element dropped the Vias below ours): a provisional is dropped, a final
        // still counts, rebuilt on the request.
        resp.remove_top(sip_core::HeaderName::Via);
        if resp.values(HeaderName::Via).next().is_none() {
            if status < 200 {
                return out;
            }
            match request.response(status).build() {
                Ok(r) => resp = r,
                Err(_) => return out,
            }
        }
        if status < 200 {
            if b.state == State::Done {
                return out;
            }
            b.state = State::Proceeding;
            if let (Some(c), Some(_)) = (self.timer_c, b.timer_c) {
                b.timer_c = Some(now + c);
            }
            if b.cancel_wanted && !b.cancel_sent {
                b.cancel_sent = true;
                out.push(Action::Cancel(branch));
            }
            if status > 100 && !self.final_sent {
                out.push(Action::Upstream(resp));
            }
            return out;
        }
        let first_final_of_branch = b.state != State::Done;
        b.state = State::Done;
        b.timer_c = None;
        if (200..300).contains(&status) {
            // Every 2xx goes up (later ones too: the UAC must see each fork's answer).
            if !self.final_sent {
                self.final_sent = true;
                self.cancel_others(&mut out);
            }
            out.push(Action::Upstream(resp));
            return out;
        }
        if !first_final_of_branch {
            return out;
        }
        if status >= 600 {
            self.no_new_branches = true;
            self.pending_groups.clear();
            self.cancel_others(&mut out);
        }
        self.collect_challenges(status, &resp);
        self.keep_if_better(resp);
        self.finish_if_all_done(request, &mut out);
        out
    }

    /// A branch's transaction ended; without a final it counts as 408 or 503 (§16.7 step 2,
    /// §16.9). `request`: the context's.
    pub fn on_branch_ended(
        &mut self,
        request: &Message,
        branch: BranchId,
        why: BranchEnd,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(b) = self.branches.get_mut(branch) else {
            return out;
        };
        if b.state == State::Done {
            return out;
        }
        b.state = State::Done;
        b.timer_c = None;
        let status = match why {
            BranchEnd::Timeout => 408,
            BranchEnd::TransportError => 503,
        };
        if let Ok(r) = request.response(status).build() {
            self.keep_if_better(r);
        }
        self.finish_if_all_done(request, &mut out);
        out
    }

    /// A CANCEL for the request arrived (§16.10): cancel every pending branch (each once it
    /// has had a provisional) and create no more. `request`: the context's.
    pub fn on_cancel(&mut self, request: &Message) -> Vec<Action> {
        self.no_new_branches = true;
        self.pending_groups.clear();
        let mut out = Vec::new();
        self.cancel_others(&mut out);
        // Nothing pending at all (no branch started yet): answer 487 now.
        if self.branches.is_empty() && !self.final_sent {
            if let Ok(r) = request.response(487).build() {
                self.final_sent = true;
                out.push(Action::Upstream(r));
            }
        }
        out
    }

    fn cancel_others(&mut self, out: &mut Vec<Action>) {
        for (i, b) in self.branches.iter_mut().enumerate() {
            match b.state {
                State::Proceeding if !b.cancel_sent => {
                    b.cancel_sent = true;
                    out.push(Action::Cancel(i));
                }
                State::Trying => b.cancel_wanted = true,
                _ => {}
            }
        }
    }

    /// The earliest Timer C deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.branches.iter().filter_map(|b| b.timer_c).min()
    }

    /// Timer C (§16.8): a branch with a provisional is cancelled; one without is treated as
    /// having answered 408 and abandoned. Returns the actions and how many timers fired.
    /// `request`: the context's.
    pub fn handle_timeout(&mut self, request: &Message, now: Instant) -> (Vec<Action>, usize) {
        let mut out = Vec::new();
        let mut fired = 0;
        let mut timed_out = Vec::new();
        for (i, b) in self.branches.iter_mut().enumerate() {
            if b.timer_c.is_some_and(|t| t <= now) {
                fired += 1;
                b.timer_c = None;
                match b.state {
                    State::Proceeding => {
                        if !b.cancel_sent {
                            b.cancel_sent = true;
                            out.push(Action::Cancel(i));
                        }
                    }
                    State::Trying => timed_out.push(i),
                    State::Done => {}
                }
            }
        }
        for i in timed_out {
            out.push(Action::Abandon(i));
            out.extend(self.on_branch_ended(request, i, BranchEnd::Timeout));
        }
        (out, fired)
    }

    fn collect_challenges(&mut self, status: u16, resp: &Message) {
        if status != 401 && status != 407 {
            return;
        }
        for name in [HeaderName::WwwAuthenticate, HeaderName::ProxyAuthenticate] {
            for line in resp.header_lines(name) {
                if let Ok(v) = std::str::from_utf8(line) {
                    self.challenges.push((name, v.to_owned()));
                }
            }
        }
    }

    fn keep_if_better(&mut self, resp: Message) {
        let new = resp.status().map(rank);
        let old = self.best.as_ref().and_then(|b| b.status()).map(rank);
        if old.is_none() || new < old {
            self.best = Some(Box::new(resp));
        }
    }

    /// When every branch is done: the next sequential group, or the best response upstream.
    fn finish_if_all_done(&mut self, request: &Message, out: &mut Vec<Action>) {
        if self.final_sent || self.branches.iter().any(|b| b.state != State::Done) {
            return;
        }
        if !self.no_new_branches {
            if let Some(group) = self.pending_groups.pop_front() {
                out.push(Action::Fork(group));
                return;
            }
        }
        let best = match self.best.take() {
            Some(b) => *b,
            None => match request.response(408).build() {
                Ok(r) => r,
                Err(_) => return,
            },
        };
        self.final_sent = true;
        if let Some(r) = self.finalize_best(best) {
            out.push(Action::Upstream(r));
        }
    }

    /// §16.7 steps 6–7: 503 becomes 500; a 401/407 carries every branch's challenges.
    fn finalize_best(&self, mut best: Message) -> Option<Message> {
        let status = best.status()?;
        if status == 503 {
            best.set_status(500, "Server Internal Error").ok()?;
            best.remove_header(HeaderName::RetryAfter);
        }
        if status == 401 || status == 407 {
            let own: Vec<(HeaderName, String)> =
                [HeaderName::WwwAuthenticate, HeaderName::ProxyAuthenticate]
                    .into_iter()
                    .flat_map(|n| {
                        best.header_lines(n)
                            .filter_map(|l| std::str::from_utf8(l).ok())
                            .map(move |v| (n, v.to_owned()))
                            .collect::<Vec<_>>()
                    })
                    .collect();
            for (name, value) in &self.challenges {
                if own.iter().any(|(n, v)| n == name && v == value) {
                    continue;
                }
                let spelled = name.canonical().unwrap_or("WWW-Authenticate");
                let at = best.header_count().saturating_sub(1);
                best.insert_header(at, spelled, value).ok()?;
            }
        }
        Some(best)
    }
}

#[cfg(test)]
mod tests;
