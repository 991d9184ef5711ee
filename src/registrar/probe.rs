//! The keep-alive prober's decisions, sans-IO: when to probe each binding within an interval,
//! and when a run of probe results makes a binding offline or online again.
//!
//! A registrar with many devices must not probe them all at once (a stampede of OPTIONS that
//! fills the transaction table and the devices' uplinks every interval), and one lost probe on
//! a lossy link must not declare a device gone. So probes are spread evenly over the interval,
//! each slot shifted by a random jitter, at most a bounded number are in flight (the service
//! holds a semaphore), and a binding is marked offline only after
//! [`ProbeOptions::failures_before_offline`] consecutive timeouts. A probe that could not be
//! sent at all (the transaction table is full, the endpoint is stopping) says nothing about
//! the device and is not counted.

use std::collections::HashMap;
use std::time::Duration;

use sip_core::Flow;

/// How the keep-alive prober runs ([`ServiceOptions::probe`](super::ServiceOptions::probe)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeOptions {
    /// Every binding is probed with OPTIONS over its flow once per interval.
    pub interval: Duration,
    /// Most probes in flight at once (default 64); more wait for a free slot.
    pub max_in_flight: usize,
    /// Consecutive probe timeouts before a binding is marked offline (default 2).
    pub failures_before_offline: u32,
}

impl ProbeOptions {
    /// Defaults for an interval: 64 probes in flight, offline after 2 consecutive timeouts.
    pub fn every(interval: Duration) -> ProbeOptions {
        ProbeOptions {
            interval,
            max_in_flight: 64,
            failures_before_offline: 2,
        }
    }
}

/// What one probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeResult {
    /// Any final response: the device is there.
    Answered,
    /// No final response (Timer F) or a transport error: counts towards offline.
    Failed,
    /// Not sent (transaction table full, endpoint stopping): says nothing, counts nothing.
    NotSent,
}

/// What to do with a binding after a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeVerdict {
    /// Leave it as it is.
    Keep,
    /// Mark it offline (it was online).
    Offline,
    /// Mark it online again (it was offline).
    Online,
}

/// Consecutive failures per binding (AOR and flow).
#[derive(Debug, Default)]
pub struct ProbeTracker {
    failures: HashMap<(String, Flow), u32>,
}

impl ProbeTracker {
    /// An empty tracker.
    pub fn new() -> ProbeTracker {
        ProbeTracker::default()
    }

    /// Records a probe of the binding of `aor` on `flow`, currently `offline` or not.
    pub fn record(
        &mut self,
        aor: &str,
        flow: Flow,
        offline: bool,
        result: ProbeResult,
        failures_before_offline: u32,
    ) -> ProbeVerdict {
        match result {
            ProbeResult::NotSent => ProbeVerdict::Keep,
            ProbeResult::Answered => {
                self.failures.remove(&(aor.to_owned(), flow));
                if offline {
                    ProbeVerdict::Online
                } else {
                    ProbeVerdict::Keep
                }
            }
            ProbeResult::Failed => {
                let n = self.failures.entry((aor.to_owned(), flow)).or_insert(0);
                *n = n.saturating_add(1);
                if !offline && *n >= failures_before_offline.max(1) {
                    ProbeVerdict::Offline
                } else {
                    ProbeVerdict::Keep
                }
            }
        }
    }

    /// Forgets bindings that are no longer probed (so memory follows the store).
    pub fn retain(&mut self, mut probed: impl FnMut(&str, &Flow) -> bool) {
        self.failures.retain(|(aor, flow), _| probed(aor, flow));
    }

    /// Bindings with failures on record.
    pub fn len(&self) -> usize {
        self.failures.len()
    }

    /// Whether no binding has failures on record.
    pub fn is_empty(&self) -> bool {
        self.failures.is_empty()
    }
}

/// When to send each of `n` probes within `interval`, from its start: probe `i` goes in the
/// `i`-th of `n` equal slots, at a random point of it (`random` gives uniform `u64`s).
pub fn spread(n: usize, interval: Duration, mut random: impl FnMut() -> u64) -> Vec<Duration> {
    if n == 0 {
        return Vec::new();
    }
    let slot = interval.as_nanos() / n as u128;
    (0..n)
        .map(|i| {
            let jitter = if slot == 0 {
                0
            } else {
                u128::from(random()) % slot
            };
            let at = slot * i as u128 + jitter;
            Duration::from_nanos(u64::try_from(at).unwrap_or(u64::MAX))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sip_core::Transport;

    fn flow(port: u16) -> Flow {
        Flow {
            transport: Transport::Udp,
            local: "127.0.0.1:5060".parse().unwrap(),
            remote: format!("127.0.0.1:{port}").parse().unwrap(),
        }
    }

    #[test]
    fn offline_only_after_consecutive_failures_and_not_sent_counts_nothing() {
        let mut t = ProbeTracker::new();
        let f = flow(5000);
        use ProbeResult::*;
        use ProbeVerdict::*;
        assert_eq!(t.record("a", f, false, Failed, 2), Keep);
        // An answer in between starts the count again.
        assert_eq!(t.record("a", f, false, Answered, 2), Keep);
        assert_eq!(t.record("a", f, false, Failed, 2), Keep);
        // A probe the endpoint could not send (table full) is neither.
        for _ in 0..10 {
            assert_eq!(t.record("a", f, false, NotSent, 2), Keep);
        }
        assert_eq!(t.record("a", f, false, Failed, 2), Offline);
        assert_eq!(t.record("a", f, true, Failed, 2), Keep, "already offline");
        assert_eq!(t.record("a", f, true, Answered, 2), Online);
        assert!(t.is_empty());
        // Another binding of the same AOR counts on its own; 1 means at the first failure.
        assert_eq!(t.record("a", flow(5001), false, Failed, 1), Offline);
        t.retain(|_, fl| fl.remote.port() != 5001);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn probes_are_spread_over_the_interval_with_jitter() {
        let mut seed = 7u64;
        let mut rng = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed
        };
        let interval = Duration::from_secs(30);
        let at = spread(1000, interval, &mut rng);
        assert_eq!(at.len(), 1000);
        let slot = interval / 1000;
        for (i, t) in at.iter().enumerate() {
            assert!(
                *t >= slot * i as u32 && *t < slot * (i as u32 + 1),
                "{i}: {t:?}"
            );
        }
        // Jittered: not all at the start of their slots.
        assert!(at.iter().enumerate().any(|(i, t)| *t != slot * i as u32));
        // In any tenth of the interval, about a tenth of the probes.
        let first_tenth = at.iter().filter(|t| **t < interval / 10).count();
        assert_eq!(first_tenth, 100);
        assert!(spread(0, interval, &mut rng).is_empty());
        assert_eq!(spread(3, Duration::ZERO, &mut rng), vec![Duration::ZERO; 3]);
    }
}
