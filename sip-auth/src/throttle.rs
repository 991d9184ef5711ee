//! Throttling of authentication failures, per source address and per username (as GB28181
//! platforms do against REGISTER floods): after `max_failures` failures within `window`, the
//! source (or username) is blocked for `window`. Sans-IO and bounded: at most `max_tracked`
//! keys of each kind are remembered.
//!
//! Blocking per username lets an attacker lock a known user out; turn it off with
//! [`ThrottleConfig::per_username`] where that matters more than guessing attacks spread over
//! many addresses.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use crate::secs;

/// Configuration of a [`Throttle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Failures within `window` that trigger a block (default 10).
    pub max_failures: u32,
    /// The counting window, and how long a block lasts (default 5 minutes).
    pub window: Duration,
    /// The most addresses, and the most usernames, remembered (default 10 000 each).
    pub max_tracked: usize,
    /// Whether failures are also counted per username (default true).
    pub per_username: bool,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            max_failures: 10,
            window: Duration::from_secs(300),
            max_tracked: 10_000,
            per_username: true,
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

    fn fail(&mut self, key: K, now: u64, cfg: &ThrottleConfig) -> Option<u64> {
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
        if e.failures >= cfg.max_failures.max(1) {
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

/// Counts authentication failures and blocks sources and usernames that fail too often.
///
/// Call [`check`](Self::check) before verifying, [`record_failure`](Self::record_failure) on a
/// rejection and [`record_success`](Self::record_success) on success.
pub struct Throttle {
    config: ThrottleConfig,
    by_source: Table<IpAddr>,
    by_user: Table<String>,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle")
            .field("config", &self.config)
            .field("sources", &self.by_source.map.len())
            .field("usernames", &self.by_user.map.len())
            .finish()
    }
}

impl Throttle {
    /// A throttle with `config`.
    pub fn new(config: ThrottleConfig) -> Throttle {
        Throttle {
            config,
            by_source: Table::new(),
            by_user: Table::new(),
        }
    }

    /// Whether a request from `source` for `username` may be verified.
    pub fn check(
        &self,
        now: SystemTime,
        source: Option<IpAddr>,
        username: Option<&str>,
    ) -> ThrottleDecision {
        let now = secs(now);
        let by_source = source.and_then(|s| self.by_source.blocked_until(&s, now));
        let by_user = username
            .filter(|_| self.config.per_username)
            .and_then(|u| self.by_user.blocked_until(u, now));
        decision(now, by_source.max(by_user))
    }

    /// Counts a failure; returns `Blocked` when this failure (or an earlier one) set off a block.
    pub fn record_failure(
        &mut self,
        now: SystemTime,
        source: Option<IpAddr>,
        username: Option<&str>,
    ) -> ThrottleDecision {
        let now = secs(now);
        let cfg = self.config;
        let a = source.and_then(|s| self.by_source.fail(s, now, &cfg));
        let b = username
            .filter(|_| cfg.per_username)
            .and_then(|u| self.by_user.fail(u.to_owned(), now, &cfg));
        decision(now, a.max(b))
    }

    /// Forgets the failures of `username` (a success proves the user knows the password). The
    /// source's count is kept: one address may try many usernames.
    pub fn record_success(&mut self, username: &str) {
        self.by_user.clear(username);
    }

    /// Number of sources and usernames currently remembered.
    pub fn tracked(&self) -> (usize, usize) {
        (self.by_source.map.len(), self.by_user.map.len())
    }
}

fn decision(now: u64, until: Option<u64>) -> ThrottleDecision {
    match until {
        Some(u) if u > now => ThrottleDecision::Blocked {
            retry_after: Duration::from_secs(u - now),
        },
        _ => ThrottleDecision::Allow,
    }
}
