//! Requests a [`Call`] sends in its established dialog (RFC 3261 §12.2.1.1): re-INVITE with
//! the §14.1 glare retry, UPDATE (RFC 3311), INFO (RFC 6086) and REFER (RFC 3515), each
//! digest-retried with CSeq + 1; a 481 or 408 ends the dialog (§12.2.1.2).

use std::sync::Arc;

use bytes::Bytes;
use sip_core::{HeaderName, Message, Method, Target};
use sip_dialog::invite::glare_delay;
use sip_dialog::{DialogId, EndCause};

use super::call::{random, send_ack, Call, CallEnd, CallEvent};
use super::shared::Shared;
use super::{UaError, ALLOW};
use crate::endpoint::ClientTransaction;

impl Call {
    /// Sends a re-INVITE with `sdp` (RFC 3261 §14.1) and returns the peer's answer. While an
    /// INVITE of the peer's is still pending (our 2xx not yet ACKed) it waits for the ACK
    /// first; on 491 (glare) it waits the §14.1 time and tries again, up to three times.
    pub async fn reinvite(&self, sdp: Bytes) -> Result<Bytes, UaError> {
        let mut last = UaError::Pending;
        for _ in 0..4 {
            match self.try_reinvite(&sdp).await {
                Err(UaError::Pending) => {
                    self.wait_for_ack().await;
                    last = UaError::Pending;
                }
                Err(UaError::Rejected(491)) => {
                    let role = self.role().unwrap_or(sip_dialog::Role::Uas);
                    let delay = glare_delay(role, random());
                    tracing::info!(?delay, "re-INVITE glare: retrying");
                    tokio::time::sleep(delay).await;
                    last = UaError::Rejected(491);
                }
                other => return other,
            }
        }
        Err(last)
    }

    fn role(&self) -> Option<sip_dialog::Role> {
        let st = self.shared.state();
        let id = st.calls.get(&self.key)?.dialog.clone()?;
        Some(st.dialogs.get_by_id(&id)?.dialog.role())
    }

    async fn try_reinvite(&self, sdp: &Bytes) -> Result<Bytes, UaError> {
        let (dest, id) = self.destination()?;
        let dest = dest.await?;
        let mut auth: Option<(HeaderName, String)> = None;
        let session = super::session_timer::request_headers(&self.shared, self.key);
        for _ in 0..3 {
            let invite = {
                let mut st = self.shared.state();
                let e = st.dialogs.get_by_id_mut(&id).ok_or(UaError::NoDialog)?;
                let seq = e.dialog.local_seq().unwrap_or(0).saturating_add(1);
                e.usage
                    .invite
                    .start_local_invite(seq)
                    .map_err(|_| UaError::Pending)?;
                let mut b = e
                    .dialog
                    .request(Method::Invite, &self.shared.via())?
                    .header("Allow", ALLOW)
                    .header("Supported", super::prack::SUPPORTED);
                for (name, value) in &session {
                    b = b.header(name, value);
                }
                if let Some((name, value)) = auth.take() {
                    b = b.header(name.canonical().unwrap_or("Authorization"), value);
                }
                b.body("application/sdp", sdp.clone()).build()?
            };
            let seq = invite.cseq().map(|c| c.seq).unwrap_or(0);
            let mut txn = self
                .shared
                .endpoint
                .request(invite.clone(), dest.clone())
                .await?;
            let response = txn.final_response().await;
            let status = response.as_ref().map_or(408, |r| r.status().unwrap_or(408));
            let role = {
                let mut st = self.shared.state();
                let e = st.dialogs.get_by_id_mut(&id).ok_or(UaError::NoDialog)?;
                e.usage.invite.local_invite_final(
                    Shared::now(),
                    seq,
                    status,
                    e.dialog.role(),
                    random(),
                );
                e.dialog.role()
            };
            let _ = role;
            let response = match response {
                Ok(r) => r,
                Err(_) => return Err(self.gone(408)),
            };
            if matches!(status, 401 | 407) {
                auth = self.shared.answer_challenge(&invite, &response, &dest);
                if auth.is_some() {
                    continue;
                }
            }
            if (200..300).contains(&status) {
                let ack = {
                    let mut st = self.shared.state();
                    let e = st.dialogs.get_by_id_mut(&id).ok_or(UaError::NoDialog)?;
                    e.dialog.refresh_target(&response);
                    let ack = e.dialog.ack(seq, &self.shared.via()).build()?;
                    e.usage.invite.set_ack(seq, ack.clone());
                    if let Some(slot) = st.calls.get_mut(&self.key) {
                        slot.local_sdp = sdp.clone();
                    }
                    ack
                };
                send_ack(&self.shared, ack.clone(), None).await;
                tokio::spawn(reack(self.shared.clone(), txn, ack));
                super::session_timer::on_2xx_received(&self.shared, self.key, &response);
                return Ok(response.body_bytes());
            }
            if matches!(status, 481 | 408) {
                return Err(self.gone(status));
            }
            return Err(UaError::Rejected(status));
        }
        Err(UaError::AuthFailed)
    }

    /// Sends an UPDATE with `sdp` (RFC 3311) and returns the answer's body.
    /// Before the answer, as the caller, it goes in the early dialog (RFC 3311 §5.1).
    pub async fn update(&self, sdp: Bytes) -> Result<Bytes, UaError> {
        if self.dialog_id().is_none() {
            return super::offer::early_update(&self.shared, self.key, sdp).await;
        }
        let session = super::session_timer::request_headers(&self.shared, self.key);
        let mut headers: Vec<(&str, &str)> =
            session.iter().map(|(n, v)| (*n, v.as_str())).collect();
        headers.push(("Supported", super::prack::SUPPORTED));
        let r = self
            .request(
                Method::Update,
                Some(("application/sdp", sdp.clone())),
                &headers,
            )
            .await?;
        self.final_ok(&r)?;
        super::session_timer::on_2xx_received(&self.shared, self.key, &r);
        if let Some(slot) = self.shared.state().calls.get_mut(&self.key) {
            slot.local_sdp = sdp;
        }
        Ok(r.body_bytes())
    }

    /// Sends an INFO with this body (RFC 6086) and returns the final status.
    pub async fn info(&self, content_type: &str, body: Bytes) -> Result<u16, UaError> {
        let r = self
            .request(Method::Info, Some((content_type, body)), &[])
            .await?;
        self.final_ok(&r)
    }

    /// Sends a REFER to `target` (RFC 3515) and returns the final status (202 when accepted).
    /// The NOTIFYs that follow are answered 200 and reported as [`CallEvent::ReferNotify`]
    /// (the REFERs we receive: [`CallEvent::Refer`]).
    pub async fn refer(&self, target: &str) -> Result<u16, UaError> {
        let refer_to = format!("<{target}>");
        let r = self
            .request(Method::Refer, None, &[("Refer-To", &refer_to)])
            .await?;
        self.final_ok(&r)
    }

    fn final_ok(&self, r: &Message) -> Result<u16, UaError> {
        match r.status() {
            Some(s) if (200..300).contains(&s) => Ok(s),
            Some(s) if matches!(s, 481 | 408) => Err(self.gone(s)),
            Some(s) => Err(UaError::Rejected(s)),
            None => Err(UaError::NoResponse("no status".into())),
        }
    }

    /// §12.2.1.2: a 481 or 408 to a request in the dialog ends it.
    fn gone(&self, status: u16) -> UaError {
        let slot = {
            let mut st = self.shared.state();
            if let Some(id) = st.calls.get(&self.key).and_then(|s| s.dialog.clone()) {
                if let Some(e) = st.dialogs.get_by_id_mut(&id) {
                    e.usage.invite.stop();
                    e.dialog.terminate(EndCause::Gone);
                }
                st.dialogs.update(&id);
            }
            st.calls.remove(&self.key)
        };
        if let Some(slot) = slot {
            let _ = slot.events.send(CallEvent::Ended {
                cause: CallEnd::Gone,
            });
        }
        UaError::Rejected(status)
    }

    #[allow(clippy::type_complexity)]
    fn destination(
        &self,
    ) -> Result<
        (
            impl std::future::Future<Output = Result<Target, UaError>> + '_,
            DialogId,
        ),
        UaError,
    > {
        let st = self.shared.state();
        let id = st
            .calls
            .get(&self.key)
            .and_then(|s| s.dialog.clone())
            .ok_or(UaError::NoDialog)?;
        let e = st.dialogs.get_by_id(&id).ok_or(UaError::NoDialog)?;
        let (hop, flow) = (e.dialog.next_hop(), e.usage.flow);
        drop(st);
        Ok((
            async move { self.shared.dialog_destination(&hop, flow).await },
            id,
        ))
    }

    /// A non-INVITE request in the dialog (§12.2.1.1), digest-retried with CSeq + 1.
    pub(super) async fn request(
        &self,
        method: Method<'static>,
        body: Option<(&str, Bytes)>,
        headers: &[(&str, &str)],
    ) -> Result<Message, UaError> {
        let (dest, id) = self.destination()?;
        let dest = dest.await?;
        self.shared
            .send_with_auth(&dest, |auth| {
                let built = (|| {
                    let mut st = self.shared.state();
                    let e = st.dialogs.get_by_id_mut(&id).ok_or(UaError::NoDialog)?;
                    let mut b = e.dialog.request(method, &self.shared.via())?;
                    for (n, v) in headers {
                        b = b.header(n, v);
                    }
                    if let Some((name, value)) = auth {
                        b = b.header(name.canonical().unwrap_or("Authorization"), value);
                    }
                    if let Some((ct, body)) = &body {
                        b = b.body(ct, body.clone());
                    }
                    Ok(b.build()?)
                })();
                std::future::ready(built)
            })
            .await
    }
}

/// Sends the ACK again for every retransmission of the 2xx still arriving on the INVITE
/// client transaction (§13.2.2.4).
async fn reack(shared: Arc<Shared>, mut txn: ClientTransaction, ack: Message) {
    while let Some(r) = txn.next_response().await {
        if r.status().is_some_and(|s| (200..300).contains(&s)) {
            send_ack(&shared, ack.clone(), None).await;
        }
    }
}
