//! The event pump: it takes the endpoint's events and routes them. New INVITEs become
//! [`IncomingCall`]s, requests in dialogs are checked (RFC 3261 §12.2.2) and answered (BYE
//! §15.1.2, re-INVITE with §14.2 glare answers, UPDATE, INFO, NOTIFY, MESSAGE), ACKs stop the
//! 2xx retransmission, 2xx retransmissions after the INVITE transaction get their ACK again,
//! CANCELs end ringing calls, closed flows wake the registrations. RFC 6665: NOTIFYs of our
//! subscriptions go to their task (`subscription.rs`), new SUBSCRIBEs to the application and
//! refreshes to their notifier (`notifier.rs`).

use std::sync::Arc;

use bytes::Bytes;
use sip_core::{HeaderName, Message, Method};
use sip_dialog::invite::InviteVerdict;
use sip_dialog::{DialogId, EndCause};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::call::{insert_slot, random, send_ack, CallEnd, CallEvent};
use super::incoming::{retransmit_2xx, IncomingCall, IncomingMessage};
use super::shared::Shared;
use super::subscription::Routed;
use super::ALLOW;
use crate::endpoint::{ServerEvent, ServerTransaction};

/// Takes the endpoint's events until it shuts down.
pub(crate) async fn pump(shared: Arc<Shared>) {
    while let Some(event) = shared.endpoint.next_event().await {
        match event {
            ServerEvent::Request(txn) => handle_request(&shared, txn).await,
            ServerEvent::Ack { request, flow } => on_ack(&shared, &request, flow),
            ServerEvent::StrayResponse { response, .. } => on_stray(&shared, &response).await,
            ServerEvent::Cancelled { invite, .. } => on_cancelled(&shared, invite),
            ServerEvent::FlowClosed { flow, .. } => {
                let _ = shared.flow_closed.send(flow);
            }
            _ => {}
        }
    }
}

fn on_ack(shared: &Shared, ack: &Message, flow: sip_core::Flow) {
    let mut st = shared.state();
    let Some(e) = st.dialogs.match_request(ack) else {
        return;
    };
    let seq = ack.cseq().map(|c| c.seq).unwrap_or(0);
    if e.usage.invite.on_ack(seq) {
        e.usage.flow = Some(flow);
        let call = e.usage.call;
        tracing::debug!(call_id = ack.call_id().unwrap_or_default(), seq, "ACK");
        if let Some(slot) = st.calls.get(&call) {
            slot.wake.notify_one();
        }
    }
}

/// A 2xx retransmission after the INVITE transaction ended: ACK it again (§13.2.2.4).
async fn on_stray(shared: &Shared, response: &Message) {
    let is_2xx_invite = response.status().is_some_and(|s| (200..300).contains(&s))
        && response.cseq().is_ok_and(|c| c.method == Method::Invite);
    if !is_2xx_invite {
        return;
    }
    let seq = response.cseq().map(|c| c.seq).unwrap_or(0);
    let ack = {
        let mut st = shared.state();
        st.dialogs
            .match_response(response)
            .and_then(|e| e.usage.invite.ack_for(seq).cloned())
    };
    if let Some(ack) = ack {
        send_ack(shared, ack, None).await;
    }
}

fn on_cancelled(shared: &Shared, invite: sip_transaction::TransactionKey) {
    let mut st = shared.state();
    let key = st.calls.iter().find_map(|(k, s)| {
        let txn = s.invite_txn.as_ref()?;
        (s.unanswered && txn.key() == Some(invite)).then_some(*k)
    });
    let Some(key) = key else { return };
    if let Some(slot) = st.calls.remove(&key) {
        if let Some(id) = &slot.dialog {
            st.dialogs.remove(id, EndCause::Rejected);
        }
        let _enter = slot.span.enter();
        tracing::info!("cancelled by the caller");
        let _ = slot.events.send(CallEvent::Ended {
            cause: CallEnd::Cancelled,
        });
    }
}

/// RFC 4028 §9: the session interval asked for is below our Min-SE.
async fn respond_422(txn: &ServerTransaction, min_se: u32) {
    if let Ok(r) = txn
        .request()
        .response(422)
        .header("Min-SE", min_se.to_string())
        .build()
    {
        let _ = txn.respond(r).await;
    }
}

async fn respond(txn: &ServerTransaction, status: u16) {
    if let Ok(r) = txn.request().response(status).build() {
        let _ = txn.respond(r).await;
    }
}

async fn handle_request(shared: &Arc<Shared>, txn: ServerTransaction) {
    let has_to_tag = txn
        .request()
        .to()
        .ok()
        .and_then(|t| t.tag().map(|_| ()))
        .is_some();
    if has_to_tag {
        let txn = match txn.request().method() {
            Some(Method::Notify) => match super::subscription::route_notify(shared, txn) {
                Routed::Taken => return,
                Routed::Busy(busy) => return super::subscription::answer(&busy, 503).await,
                Routed::NotOurs(txn) => *txn,
            },
            Some(Method::Subscribe) => match super::notifier::on_resubscribe(shared, txn).await {
                Ok(()) => return,
                Err(txn) => *txn,
            },
            _ => txn,
        };
        return in_dialog(shared, txn).await;
    }
    if txn.merged_with().is_some() {
        return respond(&txn, 482).await;
    }
    match txn.request().method() {
        Some(Method::Invite) => new_call(shared, txn).await,
        Some(Method::Message) => message(shared, &txn).await,
        Some(Method::Subscribe) => super::notifier::on_subscribe(shared, txn).await,
        Some(Method::Options) => {
            let ok = txn
                .request()
                .response(200)
                .header("Allow", ALLOW)
                .header("Accept", "application/sdp")
                .build();
            if let Ok(ok) = ok {
                let _ = txn.respond(ok).await;
            }
        }
        Some(Method::Bye) | Some(Method::Info) | Some(Method::Update) | Some(Method::Notify) => {
            respond(&txn, 481).await
        }
        _ => {
            if let Ok(r) = txn.request().response(405).header("Allow", ALLOW).build() {
                let _ = txn.respond(r).await;
            }
        }
    }
}

async fn message(shared: &Shared, txn: &ServerTransaction) {
    let req = txn.request();
    let msg = IncomingMessage {
        from: req
            .from()
            .map(|f| f.uri_str().to_owned())
            .unwrap_or_default(),
        content_type: req
            .header(HeaderName::ContentType)
            .unwrap_or("text/plain")
            .to_owned(),
        body: req.body_bytes(),
    };
    let delivered = shared
        .state()
        .messages
        .as_ref()
        .is_some_and(|tx| tx.send(msg).is_ok());
    respond(txn, if delivered { 200 } else { 480 }).await;
}

async fn new_call(shared: &Arc<Shared>, txn: ServerTransaction) {
    let req = txn.request();
    // §12.1.1 / §8.1.1.8: an INVITE must carry a Contact to form a dialog.
    if req
        .contacts()
        .next()
        .and_then(|c| c.ok())
        .and_then(|c| c.addr().map(|_| ()))
        .is_none()
    {
        if let Ok(r) = req.response(400).reason("Missing Contact").build() {
            let _ = txn.respond(r).await;
        }
        return;
    }
    if let Some(unsupported) = unsupported_extensions(req) {
        if let Ok(r) = req.response(420).header("Unsupported", unsupported).build() {
            let _ = txn.respond(r).await;
        }
        return;
    }
    if let Err(min_se) = super::session_timer::negotiate(shared, req) {
        return respond_422(&txn, min_se).await;
    }
    let call_id = req.call_id().unwrap_or_default().to_owned();
    let remote_tag = req
        .from()
        .ok()
        .and_then(|f| f.tag().map(str::to_owned))
        .unwrap_or_default();
    // The endpoint fixes one To-tag per server transaction (its own 487 or 500 carry it too).
    let local_tag = txn.to_tag().to_owned();
    let span = tracing::info_span!("call", dir = "in", %call_id, %local_tag, %remote_tag);
    let txn = Arc::new(txn);
    let (tx, events) = mpsc::unbounded_channel();
    let key = insert_slot(shared, tx, span.clone(), Bytes::new(), Some(txn.clone()));
    let call = IncomingCall {
        shared: shared.clone(),
        key,
        txn: txn.clone(),
        local_tag,
        events: Some(events),
    };
    span.in_scope(|| tracing::info!(from = %call.from(), "incoming call"));
    let sent = {
        let st = shared.state();
        match &st.incoming {
            Some(incoming) => incoming.send(call).map_err(|e| e.0),
            None => Err(call),
        }
    };
    if let Err(call) = sent {
        call.end_slot(EndCause::Rejected);
        respond(&txn, 480).await;
    }
}

/// What to do with a request in a dialog, decided under the lock.
enum Reply {
    Status(u16),
    Response(Box<Message>),
    Bye {
        invite: Option<Arc<ServerTransaction>>,
    },
    /// RFC 3262: the PRACK's status, then the next reliable provisional (on the INVITE's
    /// transaction), then the call's signal (a held 2xx may follow).
    /// Held for the application (an offer it answers itself).
    Held,
    Prack {
        status: u16,
        next: Option<Box<(Message, Arc<ServerTransaction>)>>,
        call: u64,
    },
}

async fn in_dialog(shared: &Arc<Shared>, txn: ServerTransaction) {
    let txn = Arc::new(txn);
    let (reply, spawn_retransmit) = decide(shared, &txn);
    match reply {
        Reply::Status(s) => respond(&txn, s).await,
        Reply::Response(r) => {
            let _ = txn.respond(*r).await;
        }
        Reply::Held => {}
        Reply::Prack { status, next, call } => {
            respond(&txn, status).await;
            if let Some(next) = next {
                let (provisional, invite) = *next;
                let _ = invite.respond(provisional).await;
            }
            super::prack::signal(shared, call);
        }
        Reply::Bye { invite } => {
            respond(&txn, 200).await;
            if let Some(invite) = invite {
                respond(&invite, 487).await;
            }
        }
    }
    if let Some((key, id)) = spawn_retransmit {
        let span = shared
            .state()
            .calls
            .get(&key)
            .map_or_else(tracing::Span::none, |s| s.span.clone());
        tokio::spawn(retransmit_2xx(shared.clone(), key, id).instrument(span));
    }
}

/// §12.2.2 and the method's handling, under the lock: what to answer, and whether a 2xx
/// retransmission starts.
fn decide(shared: &Arc<Shared>, txn: &Arc<ServerTransaction>) -> (Reply, Option<(u64, DialogId)>) {
    let req = txn.request();
    let method = req
        .method()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let mut guard = shared.state();
    let st = &mut *guard;
    let Some(e) = st.dialogs.match_request(req) else {
        return (Reply::Status(481), None);
    };
    if let Err(reject) = e.dialog.check_request(req) {
        return (Reply::Status(reject.status), None);
    }
    {
        let id = e.dialog.id().clone();
        let key = e.usage.call;
        let local_sdp = st
            .calls
            .get(&key)
            .map(|s| s.local_sdp.clone())
            .unwrap_or_default();
        let mut retransmit = None;
        let reply = match req.method() {
            Some(Method::Bye) => {
                e.usage.invite.stop();
                e.dialog.terminate(EndCause::RemoteBye);
                st.dialogs.update(&id);
                let slot = st.calls.remove(&key);
                match slot {
                    Some(slot) => {
                        slot.wake.notify_one();
                        let _enter = slot.span.enter();
                        tracing::info!("remote BYE");
                        let _ = slot.events.send(CallEvent::Ended {
                            cause: CallEnd::RemoteBye,
                        });
                        // §15.1.2: a BYE before our final answer ends the INVITE with 487.
                        Reply::Bye {
                            invite: slot.invite_txn.filter(|_| slot.unanswered),
                        }
                    }
                    None => Reply::Bye { invite: None },
                }
            }
            Some(Method::Invite) => {
                let seq = req.cseq().map(|c| c.seq).unwrap_or(0);
                match e.usage.invite.on_invite(seq, random()) {
                    InviteVerdict::Reject {
                        status,
                        retry_after,
                    } => {
                        let mut b = req.response(status);
                        if let Some(s) = retry_after {
                            b = b.header("Retry-After", s.to_string());
                        }
                        match b.build() {
                            Ok(r) => Reply::Response(Box::new(r)),
                            Err(_) => Reply::Status(500),
                        }
                    }
                    InviteVerdict::Accept => {
                        let session = match super::session_timer::negotiate(shared, req) {
                            Ok(h) => h,
                            Err(min_se) => {
                                // A final non-2xx ends the peer's INVITE (§14.2).
                                let reply = min_se_reply(req, min_se);
                                if let Reply::Response(r) = &reply {
                                    e.usage.invite.answered(Shared::now(), seq, r);
                                }
                                return (reply, None);
                            }
                        };
                        if let Some(reply) = hold_offer(shared, &mut st.calls, key, txn) {
                            return (reply, None);
                        }
                        let mut b = req
                            .response(200)
                            .header("Contact", format!("<{}>", shared.config.contact))
                            .header("Allow", ALLOW)
                            .header("Supported", super::prack::SUPPORTED);
                        for (name, value) in session {
                            b = b.header(name, value);
                        }
                        if !local_sdp.is_empty() {
                            b = b.body("application/sdp", local_sdp);
                        }
                        match b.build() {
                            Ok(ok) => {
                                e.usage.invite.answered(Shared::now(), seq, &ok);
                                if let Some(slot) = st.calls.get_mut(&key) {
                                    super::session_timer::on_2xx_sent_locked(
                                        shared, slot, key, req, &ok,
                                    );
                                    slot.invite_txn = Some(txn.clone());
                                    let _ = slot.events.send(CallEvent::Offer {
                                        method: method.clone(),
                                        sdp: req.body_bytes(),
                                    });
                                }
                                retransmit = Some((key, id.clone()));
                                Reply::Response(Box::new(ok))
                            }
                            Err(_) => Reply::Status(500),
                        }
                    }
                }
            }
            Some(Method::Update) => {
                let session = match super::session_timer::negotiate(shared, req) {
                    Ok(h) => h,
                    Err(min_se) => return (min_se_reply(req, min_se), None),
                };
                if early_offer_unanswered(st.calls.get(&key), req) {
                    // RFC 3311 §5.2: the INVITE's offer is not answered (reliably) yet.
                    let r = req
                        .response(500)
                        .header("Retry-After", (random() % 11).to_string())
                        .build();
                    return (
                        r.map_or(Reply::Status(500), |r| Reply::Response(Box::new(r))),
                        None,
                    );
                }
                if let Some(reply) = hold_offer(shared, &mut st.calls, key, txn) {
                    return (reply, None);
                }
                let mut b = req
                    .response(200)
                    .header("Contact", format!("<{}>", shared.config.contact))
                    .header("Supported", super::prack::SUPPORTED);
                for (name, value) in session {
                    b = b.header(name, value);
                }
                if !req.body().is_empty() {
                    if let Some(slot) = st.calls.get(&key) {
                        let _ = slot.events.send(CallEvent::Offer {
                            method: method.clone(),
                            sdp: req.body_bytes(),
                        });
                    }
                    b = b.body("application/sdp", local_sdp);
                }
                match b.build() {
                    Ok(ok) => {
                        if let Some(slot) = st.calls.get_mut(&key) {
                            super::session_timer::on_2xx_sent_locked(shared, slot, key, req, &ok);
                        }
                        Reply::Response(Box::new(ok))
                    }
                    Err(_) => Reply::Status(500),
                }
            }
            Some(Method::Prack) => {
                let (status, next) = super::prack::on_prack(&mut st.calls, key, req);
                Reply::Prack {
                    status,
                    next: next.map(Box::new),
                    call: key,
                }
            }
            Some(Method::Info) => {
                if let Some(slot) = st.calls.get(&key) {
                    let _ = slot.events.send(CallEvent::Info {
                        content_type: req
                            .header(HeaderName::ContentType)
                            .unwrap_or_default()
                            .to_owned(),
                        body: req.body_bytes(),
                    });
                }
                Reply::Status(200)
            }
            Some(Method::Notify) => {
                if let Some(slot) = st.calls.get(&key) {
                    super::refer::on_notify(slot, req);
                }
                Reply::Status(200)
            }
            Some(Method::Refer) => match st.calls.get_mut(&key) {
                Some(slot) => match super::refer::on_refer(shared, slot, key, txn) {
                    Some(status) => Reply::Status(status),
                    None => Reply::Held,
                },
                None => Reply::Status(481),
            },
            Some(Method::Options) => Reply::Status(200),
            Some(Method::Message) => {
                let msg = IncomingMessage {
                    from: req
                        .from()
                        .map(|f| f.uri_str().to_owned())
                        .unwrap_or_default(),
                    content_type: req
                        .header(HeaderName::ContentType)
                        .unwrap_or("text/plain")
                        .to_owned(),
                    body: req.body_bytes(),
                };
                let ok = st.messages.as_ref().is_some_and(|tx| tx.send(msg).is_ok());
                Reply::Status(if ok { 200 } else { 480 })
            }
            _ => Reply::Status(501),
        };
        (reply, retransmit)
    }
}

/// RFC 3261 §8.2.2.3: the option-tags of Require we do not support (answered 420 with them
/// in Unsupported), or `None` when every one is supported.
fn unsupported_extensions(req: &Message) -> Option<String> {
    let supported = super::prack::SUPPORTED;
    let missing: Vec<&str> = req
        .values(HeaderName::Require)
        .filter(|tag| {
            !tag.is_empty()
                && !supported
                    .split(", ")
                    .any(|s| s.eq_ignore_ascii_case(tag.trim()))
        })
        .collect();
    (!missing.is_empty()).then(|| missing.join(", "))
}

fn min_se_reply(req: &Message, min_se: u32) -> Reply {
    req.response(422)
        .header("Min-SE", min_se.to_string())
        .build()
        .map_or(Reply::Status(500), |r| Reply::Response(Box::new(r)))
}

/// With manual answers, an offer (a request with a body) is held for the application:
/// `Some(reply)` then (nothing now, or 500 with Retry-After when another is held, RFC 3311
/// §5.2); `None` to answer it here.
fn hold_offer(
    shared: &Arc<Shared>,
    calls: &mut std::collections::HashMap<u64, super::shared::CallSlot>,
    key: u64,
    txn: &Arc<ServerTransaction>,
) -> Option<Reply> {
    let req = txn.request();
    if !shared.config.manual_answers || req.body().is_empty() {
        return None;
    }
    let slot = calls.get_mut(&key)?;
    match super::offer::hold(shared, slot, key, txn) {
        super::offer::Held::ForApp => Some(Reply::Held),
        super::offer::Held::Busy => Some(
            req.response(500)
                .header("Retry-After", (random() % 11).to_string())
                .build()
                .map_or(Reply::Status(500), |r| Reply::Response(Box::new(r))),
        ),
        super::offer::Held::NoListener => None,
    }
}

/// RFC 3311 §5.2: an UPDATE with an offer in the early dialog of a call we have not answered,
/// while the INVITE's offer has no answer in a PRACKed reliable provisional.
fn early_offer_unanswered(slot: Option<&super::shared::CallSlot>, update: &Message) -> bool {
    let Some(slot) = slot else { return false };
    let invite_offer = slot
        .invite_txn
        .as_ref()
        .is_some_and(|t| !t.request().body().is_empty());
    slot.unanswered
        && invite_offer
        && !update.body().is_empty()
        && !slot
            .reliable
            .as_ref()
            .is_some_and(|r| r.state.sdp_acknowledged())
}
