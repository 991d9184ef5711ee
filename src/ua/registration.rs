//! Registration (RFC 3261 §10.2): REGISTER with digest, refreshed before the granted expiry
//! (with jitter), again at once when the flow it was made on closes, and removed on close.
//! With RFC 5626 outbound (`UserAgentBuilder::outbound`): `+sip.instance` and `reg-id` in the
//! Contact, `Supported: outbound, path`, and the §4.5 back-off between failed attempts.

use std::sync::Arc;
use std::time::Duration;

use sip_core::random::RandomSource;
use sip_core::{Message, Method, Target};
use tokio::sync::{oneshot, watch};
use tracing::Instrument;

use super::shared::{out_of_dialog, Shared};
use super::UaError;

/// Where a registration stands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistrationState {
    /// The first REGISTER is on its way.
    Registering,
    /// Registered for this many seconds (as granted by the registrar).
    Registered {
        /// Granted expiry in seconds.
        expires: u32,
    },
    /// The last attempt failed with this status (408: no answer); retried later.
    Failed {
        /// The status.
        status: u16,
    },
    /// Removed (closed).
    Unregistered,
}

/// A registration kept fresh in the background until [`Registration::close`].
#[derive(Debug)]
pub struct Registration {
    state: watch::Receiver<RegistrationState>,
    close: Option<oneshot::Sender<oneshot::Sender<()>>>,
}

impl Registration {
    /// The current state.
    pub fn state(&self) -> RegistrationState {
        self.state.borrow().clone()
    }

    /// Waits until the state changes and returns the new one (`None` once the background
    /// task has ended).
    pub async fn changed(&mut self) -> Option<RegistrationState> {
        self.state.changed().await.ok()?;
        Some(self.state.borrow().clone())
    }

    /// Unregisters (Expires: 0) and stops refreshing.
    pub async fn close(mut self) {
        if let Some(close) = self.close.take() {
            let (done, rx) = oneshot::channel();
            if close.send(done).is_ok() {
                let _ = rx.await;
            }
        }
    }
}

struct Registrar {
    shared: Arc<Shared>,
    uri: String,
    dest: Target,
    call_id: String,
    tag: String,
    cseq: u32,
    expires: u32,
    /// RFC 5626: this registration's reg-id, when outbound is on.
    reg_id: Option<u32>,
    /// Consecutive failed attempts (the §4.5 back-off).
    failures: u32,
}

pub(crate) async fn start(
    shared: Arc<Shared>,
    registrar: &str,
    expires: u32,
) -> Result<Registration, UaError> {
    let dest = shared.destination(registrar).await?;
    let call_id = shared.endpoint.new_call_id();
    let span = tracing::info_span!("registration", %call_id, registrar);
    let reg_id = shared.config.instance.as_ref().map(|_| {
        let mut st = shared.state();
        let id = st.next_reg_id;
        st.next_reg_id = st.next_reg_id.wrapping_add(1).max(1);
        id
    });
    let r = Registrar {
        reg_id,
        failures: 0,
        tag: shared.endpoint.new_tag(),
        shared,
        uri: registrar.to_owned(),
        dest,
        call_id,
        cseq: 0,
        expires,
    };
    let (state_tx, state) = watch::channel(RegistrationState::Registering);
    let (close, close_rx) = oneshot::channel();
    tokio::spawn(r.run(state_tx, close_rx).instrument(span));
    Ok(Registration {
        state,
        close: Some(close),
    })
}

impl Registrar {
    async fn run(
        mut self,
        state: watch::Sender<RegistrationState>,
        mut close: oneshot::Receiver<oneshot::Sender<()>>,
    ) {
        let mut flows = self.shared.flow_closed.subscribe();
        loop {
            let wait = match self.register(self.expires).await {
                Ok((granted, response)) => {
                    self.failures = 0;
                    if self.reg_id.is_some() {
                        tracing::info!(
                            outbound = super::outbound::registrar_supports(&response),
                            flow_timer = super::outbound::flow_timer(&response),
                            "outbound registration"
                        );
                    }
                    tracing::info!(expires = granted, "registered");
                    let _ = state.send(RegistrationState::Registered { expires: granted });
                    refresh_after(granted)
                }
                Err(status) => {
                    tracing::warn!(status, "registration failed");
                    let _ = state.send(RegistrationState::Failed { status });
                    self.failures = self.failures.saturating_add(1);
                    if self.reg_id.is_some() {
                        // RFC 5626 §4.5 (our only flow to this registrar failed).
                        let random = sip_core::random::OsRandom.next_u64();
                        super::outbound::backoff(self.failures - 1, true, random)
                    } else {
                        Duration::from_secs(30)
                    }
                }
            };
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                tokio::select! {
                    done = &mut close => {
                        let _ = self.register(0).await;
                        let _ = state.send(RegistrationState::Unregistered);
                        if let Ok(done) = done {
                            let _ = done.send(());
                        }
                        return;
                    }
                    _ = tokio::time::sleep_until(deadline) => break,
                    flow = flows.recv() => {
                        // A connection-oriented flow to the registrar closed: our binding
                        // lived on it, so register again now.
                        if flow.is_ok_and(|f| f.remote == self.dest.addr) {
                            tracing::info!("flow to the registrar closed: re-registering");
                            break;
                        }
                    }
                }
            }
        }
    }

    /// One REGISTER (with digest retry). `Ok((granted, response))` on 2xx; a 423 is retried
    /// once with the registrar's Min-Expires; otherwise the status.
    async fn register(&mut self, expires: u32) -> Result<(u32, Message), u16> {
        let mut expires = expires;
        for _ in 0..2 {
            let shared = self.shared.clone();
            let aor = shared.config.aor.clone();
            let outbound_contact = shared
                .config
                .instance
                .as_deref()
                .zip(self.reg_id)
                .map(|(i, r)| super::outbound::contact(&shared.config.contact, i, r));
            let response = {
                let (uri, call_id, tag) =
                    (self.uri.clone(), self.call_id.clone(), self.tag.clone());
                let cseq = &mut self.cseq;
                shared
                    .send_with_auth(&self.dest, |auth| {
                        *cseq += 1;
                        let mut b = out_of_dialog(
                            &shared,
                            Method::Register,
                            &uri,
                            &aor,
                            &call_id,
                            &tag,
                            *cseq,
                        )
                        .header("Expires", expires.to_string());
                        if outbound_contact.is_some() {
                            b = b.header("Supported", "outbound, path");
                        }
                        if let Some((name, value)) = auth {
                            b = b.header(name.canonical().unwrap_or("Authorization"), value);
                        }
                        let built = b.build().map_err(UaError::from).and_then(|mut m| {
                            if let Some(c) = &outbound_contact {
                                m.set_header(sip_core::HeaderName::Contact, c)?;
                            }
                            Ok(m)
                        });
                        std::future::ready(built)
                    })
                    .await
            };
            let response = match response {
                Ok(r) => r,
                Err(UaError::AuthFailed) => return Err(401),
                Err(_) => return Err(408),
            };
            match response.status().unwrap_or(0) {
                s if (200..300).contains(&s) => {
                    let granted =
                        granted(&response, &self.shared.config.contact).unwrap_or(expires);
                    return Ok((granted, response));
                }
                423 => match response.min_expires().and_then(Result::ok) {
                    Some(min) if min > expires => expires = min,
                    _ => return Err(423),
                },
                s => return Err(s),
            }
        }
        Err(423)
    }
}

/// RFC 3261 §10.2.4: the expiry the registrar granted our Contact: its `expires` parameter
/// in the 2xx, else the Expires header.
fn granted(response: &Message, contact: &str) -> Option<u32> {
    let ours = response.contacts().filter_map(Result::ok).find(|c| {
        c.addr().is_some_and(|a| {
            a.uri_str() == contact
                || sip_core::uri::Uri::parse(a.uri_str())
                    .ok()
                    .zip(sip_core::uri::Uri::parse(contact).ok())
                    .is_some_and(|(x, y)| x.host_str() == y.host_str() && x.port() == y.port())
        })
    });
    ours.and_then(|c| c.expires())
        .or_else(|| response.expires().and_then(Result::ok))
}

/// Refresh before expiry: after 80–90 % of the granted time (at least 1 s before it for short
/// grants), with random jitter so that many clients do not refresh in step.
fn refresh_after(granted: u32) -> Duration {
    let granted_ms = u64::from(granted.max(2)) * 1000;
    let jitter = sip_core::random::OsRandom.next_u64() % 101;
    let at = granted_ms * (800 + jitter) / 1000;
    Duration::from_millis(at.min(granted_ms.saturating_sub(1000)).max(500))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_is_before_expiry() {
        for g in [2u32, 10, 60, 3600] {
            for _ in 0..50 {
                let d = refresh_after(g);
                assert!(d < Duration::from_secs(u64::from(g)), "{g}: {d:?}");
                assert!(d >= Duration::from_millis(500));
                if g >= 60 {
                    assert!(d >= Duration::from_secs(u64::from(g) * 8 / 10));
                }
            }
        }
    }

    #[test]
    fn granted_prefers_our_contact_expires() {
        let r = Message::parse(
            &b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nFrom: <sip:a@a>;tag=1\r\n\
To: <sip:a@a>;tag=2\r\nCall-ID: c\r\nCSeq: 2 REGISTER\r\n\
Contact: <sip:other@192.0.2.9>;expires=3600\r\nContact: <sip:alice@127.0.0.1:5070>;expires=120\r\n\
Expires: 600\r\nContent-Length: 0\r\n\r\n"[..],
        )
        .unwrap();
        assert_eq!(granted(&r, "sip:alice@127.0.0.1:5070"), Some(120));
        assert_eq!(granted(&r, "sip:bob@198.51.100.1"), Some(600));
    }
}
