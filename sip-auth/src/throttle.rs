//! Throttling of authentication failures (as GB28181 platforms do against REGISTER floods),
//! built to stop password guessing without punishing the devices behind one NAT.
//!
//! Failures are counted per (source address, username), `max_failures` (10) within `window`
//! (5 minutes), which stops guessing one user's password; and per source address with a much
//! higher limit, `max_failures_per_source` (100), which stops a source trying many usernames.
//! Hundreds of cameras behind one address thus never lock each other out: one device with a
//! wrong password blocks only itself. A blocked key stays blocked for `window`; the decision
//! says which count blocked ([`BlockScope`]). Nothing is counted per username alone, which
//! would let anyone lock a known user out from anywhere.
//!
//! What counts as a failure is the caller's call; [`Rejection::is_evidence`](crate::Rejection::is_evidence)
//! names the rejections that are evidence of guessing. Sans-IO and bounded: at most
//! `max_tracked` keys of each kind are remembered.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use crate::secs;

/// Configuration of a [`Throttle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Failures for one username from one source within `window` that block that pair
    /// (default 10).
    pub max_failures: u32,
    /// Failures from one source, whatever the usernames, within `window` that block the
    /// source (default 100).
    pub max_failures_per_source: u32,
    /// The counting window, and how long a block lasts (default 5 minutes).
    pub window: Duration,
    /// The most sources, and the most (source, username) pairs, remembered (default 10 000
    /// each).
    pub max_tracked: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            max_failures: 10,
            max_failures_per_source: 100,
            window: Duration::from_secs(300),
            max_tracked: 10_000,
        }
    }
}

/// Which count set off a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockScope {
    /// One username from one source failed `max_failures` times.
    SourceUser,
    /// The source failed `max_failures_per_source` times, over any usernames.
    Source,
}

impl BlockScope {
    /// A short name for logs (`source+user`, `source`).
    pub fn as_str(&self) -> &'static str {
        match self {
            BlockScope::SourceUser => "source+user",
            BlockScope::Source => "source",
        }
    }
}

/// What to do with a request from a source / for a username.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum ThrottleDecision {
    /// Go on and verify.
    Allow,
    /// Blocked: drop the request, or answer 403, or 503 with `Retry-After: retry_after`.
    Blocked {
        /// When the block ends, from now (whole seconds, at least 1).
        retry_after: Duration,
        /// Which count blocked.
        scope: BlockScope,
    },
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    window_start: u64,
    failures: u32,
    blocked_until: Option<u64>,
}

struct Table<K> {
    map: HashMap<K, Entry>,
}

impl<K: Hash + Eq + Clone> Table<K> {
    fn new() -> Self {
        Table {
            map: HashMap::new(),
        }
    }

    fn blocked_until<Q: Hash + Eq + ?Sized>(&self, key: &Q, now: u64) -> Option<u64>
    where
        K: Borrow<Q>,
    {
        self.map
            .get(key)
            .and_then(|e| e.blocked_until)
            .filter(|&until| until > now)
    }

    fn fail(&mut self, key: K, now: u64, cfg: &ThrottleConfig, limit: u32) -> Option<u64> {
        let window = cfg.window.as_secs().max(1);
        if !self.map.contains_key(&key) && self.map.len() >= cfg.max_tracked.max(1) {
            self.make_room(now, window, cfg.max_tracked.max(1));
        }
        let e = self.map.entry(key).or_insert(Entry {
            window_start: now,
            failures: 0,
            blocked_until: None,
        });
        if let Some(until) = e.blocked_until {
            if until > now {
                return Some(until);
            }
            *e = Entry {
                window_start: now,
                failures: 0,
                blocked_until: None,
            };
        }
        if now.saturating_sub(e.window_start) >= window {
            e.window_start = now;
            e.failures = 0;
        }
        e.failures = e.failures.saturating_add(1);
        if e.failures >= limit.max(1) {
            let until = now.saturating_add(window);
            e.blocked_until = Some(until);
            return Some(until);
        }
        None
    }

    /// Drops every entry that no longer matters; if that frees less than an eighth of the
    /// table, also drops the oldest unblocked, then oldest blocked, entries (amortised: one
    /// sort per `cap / 8` insertions).
    fn make_room(&mut self, now: u64, window: u64, cap: usize) {
        self.map.retain(|_, e| match e.blocked_until {
            Some(until) => until > now,
            None => now.saturating_sub(e.window_start) < window,
        });
        let target = cap - cap / 8 - 1;
        if self.map.len() <= target {
            return;
        }
        let mut by_age: Vec<(bool, u64, K)> = self
            .map
            .iter()
            .map(|(k, e)| (e.blocked_until.is_some(), e.window_start, k.clone()))
            .collect();
        by_age.sort_unstable_by_key(|(blocked, start, _)| (*blocked, *start));
        let excess = self.map.len() - target;
        for (_, _, k) in by_age.into_iter().take(excess) {
            self.map.remove(&k);
        }
    }

    fn clear<Q: Hash + Eq + ?Sized>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
    {
        self.map.remove(key);
    }
}

/// Counts authentication failures and blocks (source, username) pairs and sources that fail
/// too often.
///
/// Call [`check`](Self::check) before verifying, [`record_failure`](Self::record_failure) on a
/// rejection that is evidence of guessing, and [`record_success`](Self::record_success) on
/// success.
pub struct Throttle {
    config: ThrottleConfig,
    by_source: Table<IpAddr>,
    by_pair: Table<(IpAddr, String)>,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle")
            .field("config", &self.config)
            .field("sources", &self.by_source.map.len())
            .field("pairs", &self.by_pair.map.len())
            .finish()
    }
}

impl Throttle {
    /// A throttle with `config`.
    pub fn new(config: ThrottleConfig) -> Throttle {
        Throttle {
            config,
            by_source: Table::new(),
            by_pair: Table::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ThrottleConfig {
        &self.config
    }

    /// Whether a request from `source` for `username` (when it names one) may be verified.
    pub fn check(
        &self,
        now: SystemTime,
        source: IpAddr,
        username: Option<&str>,
    ) -> ThrottleDecision {
        let now = secs(now);
        if let Some(until) = self.by_source.blocked_until(&source, now) {
            return decision(now, Some(until), BlockScope::Source);
        }
        match username {
            // The common case (nobody failing) costs no allocation.
            Some(u) if !self.by_pair.map.is_empty() => {
                let until = self.by_pair.blocked_until(&(source, u.to_owned()), now);
                decision(now, until, BlockScope::SourceUser)
            }
            _ => ThrottleDecision::Allow,
        }
    }

    /// Counts a failure for `source` and, when the request named one, for (`source`,
    /// `username`); returns `Blocked` when this failure (or an earlier one) set off a block.
    pub fn record_failure(
        &mut self,
        now: SystemTime,
        source: IpAddr,
        username: Option<&str>,
    ) -> ThrottleDecision {
        let now = secs(now);
        let cfg = self.config;
        let by_source = self
            .by_source
            .fail(source, now, &cfg, cfg.max_failures_per_source);
        if let Some(until) = by_source {
            // Still counted per pair, so the pair stays blocked if the source block is lifted.
            if let Some(u) = username {
                let _ = self
                    .by_pair
                    .fail((source, u.to_owned()), now, &cfg, cfg.max_failures);
            }
            return decision(now, Some(until), BlockScope::Source);
        }
        let by_pair = username.and_then(|u| {
            self.by_pair
                .fail((source, u.to_owned()), now, &cfg, cfg.max_failures)
        });
        decision(now, by_pair, BlockScope::SourceUser)
    }

    /// Forgets the failures of `username` from `source` (a success proves the device knows the
    /// password). The source's own count is kept: one address may try many usernames.
    pub fn record_success(&mut self, source: IpAddr, username: &str) {
        if !self.by_pair.map.is_empty() {
            self.by_pair.clear(&(source, username.to_owned()));
        }
    }

    /// Number of sources and (source, username) pairs currently remembered.
    pub fn tracked(&self) -> (usize, usize) {
        (self.by_source.map.len(), self.by_pair.map.len())
    }
}

fn decision(now: u64, until: Option<u64>, scope: BlockScope) -> ThrottleDecision {
    match until {
        Some(u) if u > now => ThrottleDecision::Blocked {
            retry_after: Duration::from_secs(u - now),
            scope,
        },
        _ => ThrottleDecision::Allow,
    }
}
