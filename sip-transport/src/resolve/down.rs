//! Targets that failed recently (RFC 3263 §4.3): skipped by later resolutions until their
//! time is up. Bounded: when full, the entry that comes back soonest makes room.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use sip_core::{Target, Transport};
use tokio::time::Instant;

/// Failed targets and when each may be tried again.
#[derive(Debug)]
pub(crate) struct DownList {
    until: HashMap<(Transport, SocketAddr), Instant>,
    hold: Duration,
    cap: usize,
}

impl DownList {
    /// A list that keeps a failed target down for `hold`, with at most `cap` entries.
    pub(crate) fn new(hold: Duration, cap: usize) -> DownList {
        DownList {
            until: HashMap::new(),
            hold,
            cap: cap.max(1),
        }
    }

    /// Marks a target down from `now` for the hold time.
    pub(crate) fn mark(&mut self, target: &Target, now: Instant) {
        self.until.retain(|_, t| *t > now);
        if self.until.len() >= self.cap {
            if let Some(k) = self.until.iter().min_by_key(|(_, t)| **t).map(|(k, _)| *k) {
                self.until.remove(&k);
            }
        }
        self.until
            .insert((target.transport, target.addr), now + self.hold);
    }

    /// Whether a target is down at `now`.
    pub(crate) fn is_down(&self, target: &Target, now: Instant) -> bool {
        self.until
            .get(&(target.transport, target.addr))
            .is_some_and(|t| *t > now)
    }

    /// Moves the targets that are down behind the others, keeping each group's order: they are
    /// tried only when nothing else is left.
    pub(crate) fn reorder(&self, targets: Vec<Target>, now: Instant) -> Vec<Target> {
        let (down, up): (Vec<_>, Vec<_>) = targets.into_iter().partition(|t| self.is_down(t, now));
        up.into_iter().chain(down).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(port: u16) -> Target {
        Target::new(Transport::Udp, SocketAddr::from(([127, 0, 0, 1], port)))
    }

    #[test]
    fn down_until_the_hold_ends_then_back() {
        let now = Instant::now();
        let mut d = DownList::new(Duration::from_secs(30), 8);
        d.mark(&t(1), now);
        assert!(d.is_down(&t(1), now + Duration::from_secs(29)));
        assert!(!d.is_down(&t(1), now + Duration::from_secs(30)));
        assert!(!d.is_down(&t(2), now));
        let order = d.reorder(vec![t(1), t(2), t(3)], now);
        assert_eq!(order, vec![t(2), t(3), t(1)]);
    }

    #[test]
    fn bounded_by_evicting_the_soonest_back() {
        let now = Instant::now();
        let mut d = DownList::new(Duration::from_secs(30), 2);
        d.mark(&t(1), now);
        d.mark(&t(2), now + Duration::from_secs(1));
        d.mark(&t(3), now + Duration::from_secs(2));
        assert!(!d.is_down(&t(1), now + Duration::from_secs(2)));
        assert!(d.is_down(&t(2), now + Duration::from_secs(2)));
        assert!(d.is_down(&t(3), now + Duration::from_secs(2)));
    }
}
