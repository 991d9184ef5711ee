//! [`ProxyStats`]: what an operator reads about the proxy.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Live counters, updated by the proxy (relaxed atomics).
#[derive(Debug, Default)]
pub struct ProxyStats {
    /// Requests received by the proxy core (REGISTER excluded).
    pub requests: AtomicU64,
    /// Requests forwarded (one per branch, stateless forwards included).
    pub forwarded: AtomicU64,
    /// Requests forwarded statelessly (2xx ACKs, stateless mode).
    pub forwarded_stateless: AtomicU64,
    /// Responses forwarded statelessly (no context matched, §16.11).
    pub responses_stateless: AtomicU64,
    /// Final responses sent upstream by response contexts, by class 1..=6 (index 0 unused).
    pub best_by_class: [AtomicU64; 7],
    /// Requests answered by the proxy itself (refusals, 404, 483…).
    pub answered_locally: AtomicU64,
    /// CANCELs received for pending requests.
    pub cancels: AtomicU64,
    /// CANCELs sent to branches.
    pub cancels_sent: AtomicU64,
    /// Loops detected (482).
    pub loops: AtomicU64,
    /// Timer C expiries.
    pub timer_c: AtomicU64,
    /// Response contexts live.
    pub contexts_live: AtomicUsize,
    /// Client transactions (branches) live.
    pub branches_live: AtomicUsize,
    /// INVITEs that reached a final (for calls per second).
    pub invites_completed: AtomicU64,
}

/// A snapshot of [`ProxyStats`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ProxyCounters {
    /// See [`ProxyStats::requests`].
    pub requests: u64,
    /// See [`ProxyStats::forwarded`].
    pub forwarded: u64,
    /// See [`ProxyStats::forwarded_stateless`].
    pub forwarded_stateless: u64,
    /// See [`ProxyStats::responses_stateless`].
    pub responses_stateless: u64,
    /// See [`ProxyStats::best_by_class`].
    pub best_by_class: [u64; 7],
    /// See [`ProxyStats::answered_locally`].
    pub answered_locally: u64,
    /// See [`ProxyStats::cancels`].
    pub cancels: u64,
    /// See [`ProxyStats::cancels_sent`].
    pub cancels_sent: u64,
    /// See [`ProxyStats::loops`].
    pub loops: u64,
    /// See [`ProxyStats::timer_c`].
    pub timer_c: u64,
    /// See [`ProxyStats::contexts_live`].
    pub contexts_live: usize,
    /// See [`ProxyStats::branches_live`].
    pub branches_live: usize,
    /// See [`ProxyStats::invites_completed`].
    pub invites_completed: u64,
}

pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl ProxyStats {
    /// Counts a final response sent upstream.
    pub fn best(&self, status: u16) {
        if let Some(c) = self.best_by_class.get((status / 100) as usize) {
            inc(c);
        }
    }

    /// A snapshot.
    pub fn snapshot(&self) -> ProxyCounters {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut best = [0; 7];
        for (o, c) in best.iter_mut().zip(self.best_by_class.iter()) {
            *o = l(c);
        }
        ProxyCounters {
            requests: l(&self.requests),
            forwarded: l(&self.forwarded),
            forwarded_stateless: l(&self.forwarded_stateless),
            responses_stateless: l(&self.responses_stateless),
            best_by_class: best,
            answered_locally: l(&self.answered_locally),
            cancels: l(&self.cancels),
            cancels_sent: l(&self.cancels_sent),
            loops: l(&self.loops),
            timer_c: l(&self.timer_c),
            contexts_live: self.contexts_live.load(Ordering::Relaxed),
            branches_live: self.branches_live.load(Ordering::Relaxed),
            invites_completed: l(&self.invites_completed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_by_class_counts() {
        let s = ProxyStats::default();
        s.best(200);
        s.best(486);
        s.best(487);
        s.best(99); // out of range of classes: index 0, harmless
        let c = s.snapshot();
        assert_eq!(c.best_by_class[2], 1);
        assert_eq!(c.best_by_class[4], 2);
    }
}
