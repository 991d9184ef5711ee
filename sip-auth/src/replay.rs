//! Nonce-count tracking in bounded memory (RFC 7616 §3.3: the server remembers which `nc`
//! values it has seen for a nonce, so that a captured request cannot be replayed).
//!
//! Entries are keyed by nonce identity `(issued, salt)` in an ordered map, so the oldest nonce
//! is always first: expired entries are dropped from the front as time passes, and when the
//! table is full the oldest entries are evicted. Eviction must not make a nonce replayable, so the
//! table keeps a *watermark*, the greatest identity it ever dropped: a nonce at or below it that
//! is not in the table may have been used, and is answered `stale` (the client retries with a
//! fresh nonce, without asking its user again). A nonce above the watermark that is not in the
//! table has never been accepted, whatever its `nc`.
//!
//! Only requests whose digest was verified are recorded, so an attacker without the password
//! can neither fill the table nor burn a legitimate client's `nc` values.

use std::collections::BTreeMap;

use crate::nonce::NonceId;

/// How many `nc` values below the highest one seen are tracked individually (requests sent in
/// parallel on one nonce may arrive out of order).
const WINDOW: u32 = 64;

#[derive(Clone, Copy, Debug)]
struct Entry {
    /// Highest nc accepted (0 for a nonce used without qop).
    max_nc: u32,
    /// Bit `i` set: nc `max_nc - i` was accepted.
    seen: u64,
}

/// Verdict on a nonce count, before recording it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReplayCheck {
    /// Never seen: accept.
    Fresh,
    /// Seen before: a replay.
    Replay,
    /// This nonce can no longer be used (evicted, or one-time and used): ask for a new one.
    Stale,
}

pub(crate) struct ReplayTable {
    map: BTreeMap<NonceId, Entry>,
    cap: usize,
    watermark: Option<NonceId>,
}

impl ReplayTable {
    pub fn new(cap: usize) -> ReplayTable {
        ReplayTable {
            map: BTreeMap::new(),
            cap: cap.max(1),
            watermark: None,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether `nc` may be accepted for `id`. `nc = None` (no qop) or `one_time` allow a single
    /// use of the nonce.
    pub fn check(&self, id: NonceId, nc: Option<u32>, one_time: bool) -> ReplayCheck {
        let Some(e) = self.map.get(&id) else {
            return if self.watermark.is_some_and(|w| id <= w) {
                ReplayCheck::Stale
            } else {
                ReplayCheck::Fresh
            };
        };
        let Some(nc) = nc.filter(|_| !one_time) else {
            return ReplayCheck::Stale;
        };
        if nc > e.max_nc {
            return ReplayCheck::Fresh;
        }
        let back = e.max_nc - nc;
        if back >= WINDOW || e.seen & (1u64 << back) != 0 {
            ReplayCheck::Replay
        } else {
            ReplayCheck::Fresh
        }
    }

    /// Records an accepted `nc` (call after [`check`](Self::check) said `Fresh`), dropping
    /// entries issued before `expired_before` and evicting the oldest beyond the cap.
    pub fn record(&mut self, id: NonceId, nc: Option<u32>, expired_before: u64) {
        let nc = nc.unwrap_or(0);
        match self.map.get_mut(&id) {
            Some(e) if nc > e.max_nc => {
                let shift = nc - e.max_nc;
                e.seen = if shift >= WINDOW { 0 } else { e.seen << shift } | 1;
                e.max_nc = nc;
            }
            Some(e) => {
                let back = e.max_nc - nc;
                if back < WINDOW {
                    e.seen |= 1u64 << back;
                }
            }
            None => {
                self.map.insert(
                    id,
                    Entry {
                        max_nc: nc,
                        seen: 1,
                    },
                );
            }
        }
        while let Some((&oldest, _)) = self.map.first_key_value() {
            let over = self.map.len() > self.cap;
            if !over && oldest.issued >= expired_before {
                break;
            }
            self.map.remove(&oldest);
            self.watermark = Some(self.watermark.map_or(oldest, |w| w.max(oldest)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(issued: u64, salt: u64) -> NonceId {
        NonceId { issued, salt }
    }

    #[test]
    fn nonce_counts() {
        let mut t = ReplayTable::new(10);
        let a = id(100, 1);
        assert_eq!(t.check(a, Some(1), false), ReplayCheck::Fresh);
        t.record(a, Some(1), 0);
        assert_eq!(t.check(a, Some(1), false), ReplayCheck::Replay);
        assert_eq!(t.check(a, Some(3), false), ReplayCheck::Fresh);
        t.record(a, Some(3), 0);
        assert_eq!(
            t.check(a, Some(2), false),
            ReplayCheck::Fresh,
            "out of order"
        );
        t.record(a, Some(2), 0);
        assert_eq!(t.check(a, Some(2), false), ReplayCheck::Replay);
        t.record(a, Some(200), 0);
        assert_eq!(
            t.check(a, Some(100), false),
            ReplayCheck::Replay,
            "below window"
        );
        assert_eq!(t.check(a, Some(199), false), ReplayCheck::Fresh);
        assert_eq!(t.check(a, Some(201), true), ReplayCheck::Stale, "one-time");
        assert_eq!(t.check(a, None, false), ReplayCheck::Stale, "no qop");
    }

    #[test]
    fn eviction_never_reopens_a_nonce() {
        let mut t = ReplayTable::new(3);
        for s in 0..10 {
            t.record(id(100 + s, s), Some(1), 0);
            assert!(t.len() <= 3);
        }
        for s in 0..7 {
            assert_eq!(t.check(id(100 + s, s), Some(1), false), ReplayCheck::Stale);
        }
        assert_eq!(t.check(id(109, 9), Some(1), false), ReplayCheck::Replay);
        assert_eq!(t.check(id(200, 0), Some(5), false), ReplayCheck::Fresh);
        // Expiry drops from the front.
        t.record(id(300, 0), Some(1), 250);
        assert_eq!(t.len(), 1);
    }
}
