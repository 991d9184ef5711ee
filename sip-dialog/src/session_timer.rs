//! RFC 4028 session timers, sans-IO: the Session-Expires / Min-SE negotiation of both roles
//! (§7 UAC, §9 UAS, 422 when the interval is too small) and [`SessionTimer`], the timer of one
//! session on injected time: the refresher refreshes at half the interval (§10), the other side
//! ends the session with BYE when no refresh came by `interval − min(32 s, interval / 3)`.
//!
//! "uac" and "uas" in a `refresher` parameter name the roles in the transaction that carried
//! it (the initial INVITE or the latest refresh), not in the dialog: [`we_refresh`] maps them
//! to us.

use std::fmt;
use std::time::{Duration, Instant};

use sip_core::{HeaderName, Message};

/// The option-tag of RFC 4028.
pub const OPTION_TAG: &str = "timer";

/// §4: no Min-SE may be below 90 seconds (the default Min-SE).
pub const MIN_SE: u32 = 90;

/// Who refreshes the session (§4), as a role in the transaction that negotiated it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    /// The UAC of that transaction.
    Uac,
    /// The UAS of that transaction.
    Uas,
}

impl Refresher {
    fn as_str(self) -> &'static str {
        match self {
            Refresher::Uac => "uac",
            Refresher::Uas => "uas",
        }
    }
}

/// The Session-Expires header (§4): the interval in seconds and the refresher, if named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionExpires {
    /// The session interval, seconds.
    pub delta: u32,
    /// Who refreshes.
    pub refresher: Option<Refresher>,
}

impl SessionExpires {
    /// Parses `delta-seconds *(;param)`; an unknown refresher value counts as absent.
    pub fn parse(value: &str) -> Option<SessionExpires> {
        let mut parts = value.split(';');
        let delta = parts.next()?.trim().parse().ok()?;
        let mut refresher = None;
        for p in parts {
            let (name, val) = p.split_once('=').unwrap_or((p, ""));
            if name.trim().eq_ignore_ascii_case("refresher") {
                refresher = match val.trim() {
                    v if v.eq_ignore_ascii_case("uac") => Some(Refresher::Uac),
                    v if v.eq_ignore_ascii_case("uas") => Some(Refresher::Uas),
                    _ => None,
                };
            }
        }
        Some(SessionExpires { delta, refresher })
    }

    /// The Session-Expires of `msg` (compact form `x` included), if any and well formed.
    pub fn of(msg: &Message) -> Option<SessionExpires> {
        msg.header(HeaderName::SessionExpires)
            .and_then(SessionExpires::parse)
    }
}

impl fmt::Display for SessionExpires {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.delta)?;
        if let Some(r) = self.refresher {
            write!(f, ";refresher={}", r.as_str())?;
        }
        Ok(())
    }
}

/// The Min-SE of `msg` (§5), or [`MIN_SE`] when absent or malformed; never below 90.
pub fn min_se(msg: &Message) -> u32 {
    msg.header(HeaderName::MinSe)
        .and_then(|v| v.split(';').next()?.trim().parse().ok())
        .unwrap_or(MIN_SE)
        .max(MIN_SE)
}

/// True when `msg` lists `timer` in Supported or Require.
pub fn supported(msg: &Message) -> bool {
    msg.has_token(HeaderName::Supported, OPTION_TAG)
        || msg.has_token(HeaderName::Require, OPTION_TAG)
}

/// Our local policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// The interval we ask for (UAC) or grant at most (UAS), seconds.
    pub session_expires: u32,
    /// The smallest interval we accept (§5), seconds; at least [`MIN_SE`].
    pub min_se: u32,
}

impl Config {
    /// A policy asking for `session_expires` seconds, accepting down to `min_se`; both are
    /// raised to the 90-second floor of §4, and the interval to at least `min_se`.
    pub fn new(session_expires: u32, min_se: u32) -> Config {
        let min_se = min_se.max(MIN_SE);
        Config {
            session_expires: session_expires.max(min_se),
            min_se,
        }
    }
}

/// The UAS's answer to a session refresh request (initial INVITE, re-INVITE or UPDATE), §9.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UasDecision {
    /// The interval asked for is below our Min-SE: answer 422 with `Min-SE: min_se` (§9).
    TooSmall {
        /// Our Min-SE.
        min_se: u32,
    },
    /// Go ahead. With `Some`, the 2xx carries this Session-Expires (refresher always named)
    /// and, when `require`, `Require: timer`; with `None` the session has no timer.
    Accept {
        /// The Session-Expires of the 2xx.
        session_expires: Option<SessionExpires>,
        /// The UAC supports timers: the 2xx carries `Require: timer`.
        require: bool,
    },
}

/// §9: what a UAS with policy `config` (none: we use timers only when asked) answers to
/// `request`.
pub fn uas_negotiate(request: &Message, config: Option<&Config>) -> UasDecision {
    let local_min = config.map_or(MIN_SE, |c| c.min_se);
    let asked = SessionExpires::of(request);
    let uac_supports = supported(request);
    let request_min = min_se(request);
    if let Some(se) = asked {
        if se.delta < local_min {
            return UasDecision::TooSmall { min_se: local_min };
        }
    }
    let delta = match (asked, config) {
        // §9: the UAS may lower the interval, not below the request's Min-SE.
        (Some(se), Some(c)) => se.delta.min(c.session_expires.max(request_min)),
        (Some(se), None) => se.delta,
        (None, Some(c)) => c.session_expires.max(request_min),
        (None, None) => {
            return UasDecision::Accept {
                session_expires: None,
                require: false,
            }
        }
    };
    let refresher = if uac_supports {
        asked.and_then(|s| s.refresher).unwrap_or(Refresher::Uac)
    } else {
        // §9: a UAC without the extension cannot refresh; we do.
        Refresher::Uas
    };
    UasDecision::Accept {
        session_expires: Some(SessionExpires {
            delta,
            refresher: Some(refresher),
        }),
        require: uac_supports,
    }
}

/// §7.4: after a 422 to our request sent with `config`, the policy for the retry (its
/// Session-Expires raised to the 422's Min-SE, which becomes our Min-SE), or `None` when the
/// 422 carries no usable Min-SE larger than what we asked.
pub fn uac_on_422(response: &Message, config: &Config) -> Option<Config> {
    let asked = response
        .header(HeaderName::MinSe)
        .and_then(|v| v.split(';').next()?.trim().parse::<u32>().ok())?;
    if asked <= config.session_expires {
        return None;
    }
    Some(Config::new(asked, asked))
}

/// §7.2: the session the 2xx to our request set up: its interval and whether we refresh, or
/// `None` when it carries no Session-Expires (no timer). A missing refresher means the UAC.
pub fn uac_on_2xx(response: &Message) -> Option<(u32, bool)> {
    let se = SessionExpires::of(response)?;
    Some((
        se.delta,
        se.refresher.unwrap_or(Refresher::Uac) == Refresher::Uac,
    ))
}

/// §7.2 / §10 for a refresh we sent while the session ran for `current` seconds with us as
/// refresher or not: what its 2xx leaves. A 2xx without Session-Expires from a peer that does
/// not support timers (we were the refresher because it could not be, §9) keeps the session
/// as it was; from a peer that supports them, it ends the timer; with one, it is read as
/// [`uac_on_2xx`] does.
pub fn refresh_answered(response: &Message, current: Option<(u32, bool)>) -> Option<(u32, bool)> {
    if let Some(n) = uac_on_2xx(response) {
        return Some(n);
    }
    match current {
        Some((delta, true)) if !supported(response) => Some((delta, true)),
        _ => None,
    }
}

/// True when `refresher` is us, given whether we were the UAC of the transaction.
pub fn we_refresh(refresher: Refresher, we_are_uac: bool) -> bool {
    (refresher == Refresher::Uac) == we_are_uac
}

/// What [`SessionTimer::handle_timeout`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionAction {
    /// We are the refresher and half the interval has passed: send a refresh (re-INVITE or
    /// UPDATE) with Session-Expires.
    Refresh,
    /// No refresh came in time (or ours got no 2xx): end the session with BYE (§10).
    Expired,
}

/// The session timer of one dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionTimer {
    interval: Duration,
    we_refresh: bool,
    refreshed_at: Instant,
    refresh_sent: bool,
}

impl SessionTimer {
    /// A session of `delta` seconds negotiated at `now`; `we_refresh` when we are the
    /// refresher.
    pub fn new(now: Instant, delta: u32, we_refresh: bool) -> Self {
        SessionTimer {
            interval: Duration::from_secs(u64::from(delta.max(1))),
            we_refresh,
            refreshed_at: now,
            refresh_sent: false,
        }
    }

    /// The session interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// True when we refresh.
    pub fn we_refresh(&self) -> bool {
        self.we_refresh
    }

    /// A refresh succeeded at `now` (a 2xx to a re-INVITE or UPDATE, sent or received) and
    /// negotiated `delta` seconds with `we_refresh`: the timer starts over.
    pub fn refreshed(&mut self, now: Instant, delta: u32, we_refresh: bool) {
        *self = SessionTimer::new(now, delta, we_refresh);
    }

    /// §10: when the session expires without a refresh: `interval − min(32 s, interval / 3)`
    /// after the last one (the BYE goes then; the refresher uses the same deadline for its
    /// refresh to succeed).
    pub fn expires_at(&self) -> Instant {
        let margin = (self.interval / 3).min(Duration::from_secs(32));
        self.refreshed_at + (self.interval - margin)
    }

    /// When [`SessionTimer::handle_timeout`] must run next.
    pub fn poll_timeout(&self) -> Instant {
        if self.we_refresh && !self.refresh_sent {
            self.refreshed_at + self.interval / 2
        } else {
            self.expires_at()
        }
    }

    /// The timer fired at `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<SessionAction> {
        if now >= self.expires_at() {
            return Some(SessionAction::Expired);
        }
        if self.we_refresh && !self.refresh_sent && now >= self.refreshed_at + self.interval / 2 {
            self.refresh_sent = true;
            return Some(SessionAction::Refresh);
        }
        None
    }
}

/// The headers of a session refresh request we send (§7.1, §7.4): Session-Expires with us as
/// refresher (`refresher=uac` when `we_refresh`), Min-SE when above the default, and
/// `Supported: timer` is the caller's.
pub fn refresh_headers(
    delta: u32,
    min_se: u32,
    we_refresh: Option<bool>,
) -> Vec<(&'static str, String)> {
    let refresher = we_refresh.map(|w| if w { Refresher::Uac } else { Refresher::Uas });
    let mut h = vec![(
        "Session-Expires",
        SessionExpires { delta, refresher }.to_string(),
    )];
    if min_se > MIN_SE {
        h.push(("Min-SE", min_se.to_string()));
    }
    h
}

#[cfg(test)]
mod tests;
