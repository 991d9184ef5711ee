//! RFC 4028 in the UserAgent: the plumbing around `sip_dialog::session_timer`.
//!
//! With [`super::UserAgentBuilder::session_timer`], our INVITEs ask for that interval (and are
//! sent again with the Min-SE of a 422), and incoming INVITEs are granted at most it. Whether
//! configured or not, a session the peer asks to time is timed (we send `Supported: timer`).
//! Each timed call has one task: as the refresher it sends an UPDATE (when the peer allows
//! it; a re-INVITE with our current SDP otherwise) at half the interval; without a refresh by
//! `interval − min(32 s, interval / 3)` it ends the call with BYE ([`CallEnd::SessionExpired`]).
//! Every re-INVITE and UPDATE in the dialog, sent or received, renegotiates the timer.

use std::sync::Arc;

use sip_core::{HeaderName, Message, Method};
use sip_dialog::session_timer::{
    refresh_answered, refresh_headers, uas_negotiate, we_refresh, Refresher, SessionAction,
    SessionTimer, UasDecision, MIN_SE,
};
use tokio::sync::Notify;
use tracing::Instrument;

use super::call::{Call, CallEnd};
use super::shared::{CallSlot, Shared};

/// The session timer of one call.
pub(crate) struct SessionSlot {
    timer: SessionTimer,
    min_se: u32,
    /// The peer listed UPDATE in Allow: refreshes go as UPDATE, else re-INVITE.
    peer_update: bool,
    wake: Arc<Notify>,
}

/// Headers our INVITE carries to ask for a session timer (§7.1), if configured.
pub(crate) fn initial_headers(
    config: Option<&sip_dialog::session_timer::Config>,
) -> Vec<(&'static str, String)> {
    config.map_or_else(Vec::new, |c| {
        refresh_headers(c.session_expires, c.min_se, None)
    })
}

/// Headers a re-INVITE or UPDATE of call `key` carries while its session is timed.
pub(crate) fn request_headers(shared: &Shared, key: u64) -> Vec<(&'static str, String)> {
    let st = shared.state();
    let Some(s) = st.calls.get(&key).and_then(|s| s.session.as_ref()) else {
        return Vec::new();
    };
    let delta = u32::try_from(s.timer.interval().as_secs()).unwrap_or(u32::MAX);
    refresh_headers(delta, s.min_se, Some(s.timer.we_refresh()))
}

/// The 2xx to our request (the initial INVITE, a re-INVITE or an UPDATE) of call `key`
/// arrived: the timer starts, restarts or (no Session-Expires in it) stops (§7.2).
pub(crate) fn on_2xx_received(shared: &Arc<Shared>, key: u64, response: &Message) {
    let peer_update = allows_update(response);
    let current = shared
        .state()
        .calls
        .get(&key)
        .and_then(|s| s.session.as_ref())
        .map(|s| {
            let delta = u32::try_from(s.timer.interval().as_secs()).unwrap_or(u32::MAX);
            (delta, s.timer.we_refresh())
        });
    let negotiated = refresh_answered(response, current).map(|(d, ours)| (d, ours, min_of(shared)));
    set(shared, key, negotiated, peer_update);
}

/// §9 for a re-INVITE or UPDATE received in call `key`'s dialog (or, with `initial`, the
/// INVITE being answered): `Err(min_se)` to answer 422, else the headers for the 2xx. The
/// timer itself changes only once that 2xx goes ([`on_2xx_sent`]).
pub(crate) fn negotiate(
    shared: &Shared,
    request: &Message,
) -> Result<Vec<(&'static str, String)>, u32> {
    match uas_negotiate(request, shared.config.session_timer.as_ref()) {
        UasDecision::TooSmall { min_se } => Err(min_se),
        UasDecision::Accept {
            session_expires,
            require,
        } => {
            let mut h = Vec::new();
            if let Some(se) = session_expires {
                h.push(("Session-Expires", se.to_string()));
                if require {
                    h.push(("Require", sip_dialog::session_timer::OPTION_TAG.to_owned()));
                }
            }
            Ok(h)
        }
    }
}

/// Our 2xx to `request` (with the headers [`negotiate`] gave) went out in call `key`: as its
/// UAS we refresh when it named `uas`.
pub(crate) fn on_2xx_sent(shared: &Arc<Shared>, key: u64, request: &Message, response: &Message) {
    let negotiated = sip_dialog::session_timer::SessionExpires::of(response).map(|se| {
        let ours = we_refresh(se.refresher.unwrap_or(Refresher::Uac), false);
        (se.delta, ours, min_of(shared))
    });
    set(shared, key, negotiated, allows_update(request));
}

/// The same, from the pump, with the state already locked.
pub(crate) fn on_2xx_sent_locked(
    shared: &Arc<Shared>,
    slot: &mut CallSlot,
    key: u64,
    request: &Message,
    response: &Message,
) {
    let negotiated = sip_dialog::session_timer::SessionExpires::of(response).map(|se| {
        let ours = we_refresh(se.refresher.unwrap_or(Refresher::Uac), false);
        (se.delta, ours, min_of(shared))
    });
    set_slot(shared, slot, key, negotiated, allows_update(request));
}

fn min_of(shared: &Shared) -> u32 {
    shared
        .config
        .session_timer
        .as_ref()
        .map_or(MIN_SE, |c| c.min_se)
}

fn allows_update(msg: &Message) -> bool {
    msg.has_token(HeaderName::Allow, "UPDATE")
}

fn set(shared: &Arc<Shared>, key: u64, negotiated: Option<(u32, bool, u32)>, peer_update: bool) {
    let mut st = shared.state();
    if let Some(slot) = st.calls.get_mut(&key) {
        set_slot(shared, slot, key, negotiated, peer_update);
    }
}

fn set_slot(
    shared: &Arc<Shared>,
    slot: &mut CallSlot,
    key: u64,
    negotiated: Option<(u32, bool, u32)>,
    peer_update: bool,
) {
    let now = Shared::now();
    if let Some((interval, we_refresh, _)) = negotiated {
        let _ = slot.events.send(super::call::CallEvent::SessionTimer {
            interval,
            we_refresh,
        });
    }
    match (negotiated, slot.session.as_mut()) {
        (None, s) => {
            if let Some(s) = s {
                tracing::info!("session timer off");
                s.wake.notify_one();
            }
            slot.session = None;
        }
        (Some((delta, ours, min_se)), Some(s)) => {
            s.timer.refreshed(now, delta, ours);
            s.min_se = min_se;
            s.peer_update |= peer_update;
            s.wake.notify_one();
            tracing::debug!(delta, refresher = ours, "session refreshed");
        }
        (Some((delta, ours, min_se)), None) => {
            tracing::info!(delta, refresher = ours, "session timer started");
            slot.session = Some(SessionSlot {
                timer: SessionTimer::new(now, delta, ours),
                min_se,
                peer_update,
                wake: Arc::new(Notify::new()),
            });
            tokio::spawn(run(shared.clone(), key).instrument(slot.span.clone()));
        }
    }
}

/// The call's timer task: refreshes as the refresher, BYE at expiry.
async fn run(shared: Arc<Shared>, key: u64) {
    loop {
        let (due, wake) = {
            let st = shared.state();
            let Some(s) = st.calls.get(&key).and_then(|s| s.session.as_ref()) else {
                return;
            };
            (s.timer.poll_timeout(), s.wake.clone())
        };
        tokio::select! {
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(due)) => {}
            _ = wake.notified() => continue,
        }
        let action = {
            let mut st = shared.state();
            let Some(s) = st.calls.get_mut(&key).and_then(|s| s.session.as_mut()) else {
                return;
            };
            s.timer
                .handle_timeout(Shared::now())
                .map(|a| (a, s.peer_update))
        };
        match action {
            Some((SessionAction::Refresh, update)) => {
                // On its own task: the timer keeps running, and expires the session if the
                // refresh gets no 2xx in time.
                tokio::spawn(refresh(shared.clone(), key, update).in_current_span());
            }
            Some((SessionAction::Expired, _)) => {
                tracing::warn!("session expired without refresh: BYE");
                let call = Call::handle(shared.clone(), key);
                if let Err(e) = call.hangup(CallEnd::SessionExpired).await {
                    tracing::debug!(error = %e, "BYE at session expiry");
                }
                return;
            }
            None => {}
        }
    }
}

/// §10: the refresh, as UPDATE without a body or as re-INVITE with our current SDP.
async fn refresh(shared: Arc<Shared>, key: u64, update: bool) {
    let call = Call::handle(shared.clone(), key);
    if update {
        let headers = request_headers(&shared, key);
        let mut h: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        h.push(("Supported", super::prack::SUPPORTED));
        match call.request(Method::Update, None, &h).await {
            Ok(r) if r.status().is_some_and(|s| (200..300).contains(&s)) => {
                tracing::info!("session refreshed (UPDATE)");
                on_2xx_received(&shared, key, &r);
            }
            Ok(r) => tracing::info!(status = r.status(), "session refresh (UPDATE) refused"),
            Err(e) => tracing::info!(error = %e, "session refresh (UPDATE) failed"),
        }
    } else {
        let sdp = shared
            .state()
            .calls
            .get(&key)
            .map(|s| s.local_sdp.clone())
            .unwrap_or_default();
        match call.reinvite(sdp).await {
            Ok(_) => tracing::info!("session refreshed (re-INVITE)"),
            Err(e) => tracing::info!(error = %e, "session refresh (re-INVITE) failed"),
        }
    }
}
