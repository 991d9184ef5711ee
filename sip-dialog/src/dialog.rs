//! The dialog (RFC 3261 §12): its state, ID, route set, remote target and sequence numbers;
//! creation for both roles (§12.1), requests built in it (§12.2.1.1) and the checks on requests
//! received in it (§12.2.2). Usage-neutral: the INVITE usage ([`crate::invite`]) and a
//! SUBSCRIBE/NOTIFY usage (RFC 6665) both keep one of these.

use sip_core::builder::RequestBuilder;
use sip_core::{HeaderName, Message, Method};

use crate::id::{tag_of, DialogId, Role};
use crate::route::{RequestTarget, RouteSet};
use crate::Error;

/// The state of a dialog (RFC 3261 §12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Created by a provisional response with a To-tag.
    Early,
    /// Created or confirmed by a 2xx.
    Confirmed,
    /// Ended; the cause says how.
    Terminated(EndCause),
}

/// Why a dialog ended (counted in [`crate::Stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EndCause {
    /// We sent a BYE (§15.1.1).
    LocalBye,
    /// The peer sent a BYE (§15.1.2).
    RemoteBye,
    /// An early dialog ended by a non-2xx final response to the INVITE (§12.3), or by the
    /// 2xx of another fork.
    Rejected,
    /// Timer B / C expired, or 64·T1 passed without the ACK of a 2xx (§13.3.1.4).
    Timeout,
    /// A request in the dialog got 481 or 408 (§12.2.1.2).
    Gone,
    /// An extra 2xx from another fork that the application did not keep (§13.2.2.4).
    ExtraFork,
    /// The application ended it without signalling (shutdown, table cleanup).
    Dropped,
}

/// What to answer a request received in a dialog that does not pass §12.2.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    /// The status code.
    pub status: u16,
}

/// A dialog, UAC or UAS side.
#[derive(Debug, Clone)]
pub struct Dialog {
    id: DialogId,
    role: Role,
    state: State,
    /// Our From (UAC) / To (UAS) value, with our tag.
    local_uri: String,
    /// The peer's value, with its tag.
    remote_uri: String,
    local_seq: Option<u32>,
    remote_seq: Option<u32>,
    remote_target: String,
    route_set: RouteSet,
    secure: bool,
    local_contact: String,
}

impl Dialog {
    /// RFC 3261 §12.1.2: the UAC's dialog from its `request` and a 101–299 `response` with a
    /// To-tag. The route set is the response's Record-Route reversed, the remote target its
    /// Contact (required for a 2xx; a 1xx without one targets the Request-URI until the 2xx),
    /// the local CSeq the request's. `local_contact` is the URI we put in Contact.
    pub fn uac(
        request: &Message,
        response: &Message,
        local_contact: &str,
    ) -> Result<Dialog, Error> {
        Dialog::uac_with(request, response, local_contact, false)
    }

    /// As [`Dialog::uac`], but a 2xx without Contact is taken with the Request-URI as remote
    /// target: only to ACK and end such a malformed answer (§12.1.2 makes it an error).
    pub(crate) fn uac_with(
        request: &Message,
        response: &Message,
        local_contact: &str,
        lenient: bool,
    ) -> Result<Dialog, Error> {
        let status = response.status().unwrap_or(0);
        if !(101..300).contains(&status) {
            return Err(Error::NotDialogForming(status));
        }
        let call_id = request.call_id().ok_or(Error::Header("Call-ID"))?;
        let local_tag = tag_of(request.from())?;
        let remote_tag = tag_of(response.to())?;
        let seq = request.cseq().map_err(|_| Error::Header("CSeq"))?.seq;
        let remote_target = match contact_uri(response) {
            Some(c) => c,
            None if status < 200 || lenient => request.uri_str().unwrap_or_default().to_owned(),
            None => return Err(Error::NoContact),
        };
        let state = if status < 200 {
            State::Early
        } else {
            State::Confirmed
        };
        Ok(Dialog {
            id: DialogId {
                call_id: call_id.to_owned(),
                local_tag,
                remote_tag,
            },
            role: Role::Uac,
            state,
            local_uri: header(request, HeaderName::From, "From")?,
            remote_uri: header(response, HeaderName::To, "To")?,
            local_seq: Some(seq),
            remote_seq: None,
            remote_target,
            route_set: RouteSet::from_response(response)?,
            secure: is_sips(request.uri_str()),
            local_contact: local_contact.to_owned(),
        })
    }

    /// RFC 3261 §12.1.1: the UAS's dialog for `request` answered with `local_tag` (the To-tag
    /// of our 101–299 response; `early` for a provisional). The route set is the request's
    /// Record-Route in order, the remote target its Contact (required), the remote CSeq the
    /// request's; the local CSeq starts empty.
    pub fn uas(
        request: &Message,
        local_tag: &str,
        local_contact: &str,
        early: bool,
    ) -> Result<Dialog, Error> {
        let call_id = request.call_id().ok_or(Error::Header("Call-ID"))?;
        let remote_tag = tag_of(request.from())?;
        let seq = request.cseq().map_err(|_| Error::Header("CSeq"))?.seq;
        let remote_target = contact_uri(request).ok_or(Error::NoContact)?;
        let to = header(request, HeaderName::To, "To")?;
        Ok(Dialog {
            id: DialogId {
                call_id: call_id.to_owned(),
                local_tag: local_tag.to_owned(),
                remote_tag,
            },
            role: Role::Uas,
            state: if early {
                State::Early
            } else {
                State::Confirmed
            },
            local_uri: format!("{to};tag={local_tag}"),
            remote_uri: header(request, HeaderName::From, "From")?,
            local_seq: None,
            remote_seq: Some(seq),
            remote_target,
            route_set: RouteSet::from_request(request)?,
            secure: is_sips(request.uri_str()),
            local_contact: local_contact.to_owned(),
        })
    }

    /// RFC 6665 §4.1.2.4: the subscriber's dialog created by a NOTIFY that arrives before (or
    /// instead of, when forked) the 2xx to our `subscribe`. We are the UAC of the SUBSCRIBE;
    /// the remote tag is the NOTIFY's From-tag, the route set its Record-Route in order (as a
    /// UAS takes it, §12.1.1), the remote target its Contact, the remote CSeq its number.
    pub fn uac_from_notify(
        subscribe: &Message,
        notify: &Message,
        local_contact: &str,
    ) -> Result<Dialog, Error> {
        let call_id = subscribe.call_id().ok_or(Error::Header("Call-ID"))?;
        let local_tag = tag_of(subscribe.from())?;
        let remote_tag = tag_of(notify.from())?;
        let seq = subscribe.cseq().map_err(|_| Error::Header("CSeq"))?.seq;
        let remote_seq = notify.cseq().map_err(|_| Error::Header("CSeq"))?.seq;
        let remote_target = contact_uri(notify).ok_or(Error::NoContact)?;
        Ok(Dialog {
            id: DialogId {
                call_id: call_id.to_owned(),
                local_tag,
                remote_tag,
            },
            role: Role::Uac,
            state: State::Confirmed,
            local_uri: header(subscribe, HeaderName::From, "From")?,
            remote_uri: header(notify, HeaderName::From, "From")?,
            local_seq: Some(seq),
            remote_seq: Some(remote_seq),
            remote_target,
            route_set: RouteSet::from_request(notify)?,
            secure: is_sips(subscribe.uri_str()),
            local_contact: local_contact.to_owned(),
        })
    }

    /// The dialog ID.
    pub fn id(&self) -> &DialogId {
        &self.id
    }

    /// Which side we were.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The state.
    pub fn state(&self) -> State {
        self.state
    }

    /// True once terminated.
    pub fn is_terminated(&self) -> bool {
        matches!(self.state, State::Terminated(_))
    }

    /// The remote target (the peer's Contact URI).
    pub fn remote_target(&self) -> &str {
        &self.remote_target
    }

    /// The route set.
    pub fn route_set(&self) -> &RouteSet {
        &self.route_set
    }

    /// The local CSeq number (`None` until we send a request, for a UAS).
    pub fn local_seq(&self) -> Option<u32> {
        self.local_seq
    }

    /// The remote CSeq number (`None` until the peer sends a request, for a UAC).
    pub fn remote_seq(&self) -> Option<u32> {
        self.remote_seq
    }

    /// §12.1.1: true when the dialog-forming request's Request-URI was a SIPS URI.
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// The local URI with our tag (From of our requests).
    pub fn local_uri(&self) -> &str {
        &self.local_uri
    }

    /// The remote URI with the peer's tag (To of our requests).
    pub fn remote_uri(&self) -> &str {
        &self.remote_uri
    }

    /// The Contact URI we advertise in this dialog.
    pub fn local_contact(&self) -> &str {
        &self.local_contact
    }

    /// The URI the next request goes to (first route, or remote target), for the transport
    /// to resolve (RFC 3263).
    pub fn next_hop(&self) -> String {
        self.route_set.next_hop(&self.remote_target)
    }

    /// §13.2.2.4 / §12.1.2: a 2xx confirms an early dialog; its Contact becomes the remote
    /// target and the route set is recomputed from its Record-Route (UAC).
    pub fn confirm(&mut self, response: &Message) -> Result<(), Error> {
        if self.is_terminated() {
            return Err(Error::Terminated);
        }
        let target = contact_uri(response).ok_or(Error::NoContact)?;
        if self.state == State::Early && self.role == Role::Uac {
            self.route_set = RouteSet::from_response(response)?;
        }
        self.remote_target = target;
        self.state = State::Confirmed;
        Ok(())
    }

    /// §12.1.1 for the UAS: the early dialog is confirmed when we send the 2xx.
    pub fn confirm_local(&mut self) {
        if self.state == State::Early {
            self.state = State::Confirmed;
        }
    }

    /// §12.2.1.2 / §12.2.2: a target refresh request or its 2xx carries a new remote target.
    pub fn refresh_target(&mut self, msg: &Message) {
        if let Some(t) = contact_uri(msg) {
            self.remote_target = t;
        }
    }

    /// Ends the dialog.
    pub fn terminate(&mut self, cause: EndCause) {
        if !self.is_terminated() {
            self.state = State::Terminated(cause);
        }
    }

    /// §12.2.1.1: a request in the dialog. To is the remote URI with its tag, From the local
    /// URI with ours, Call-ID the dialog's, CSeq the local number plus one (ACK and CANCEL use
    /// their INVITE's: see [`Dialog::ack`]), Request-URI and Route per the route set (loose or
    /// strict routing), Contact our URI for target refresh methods. `via` is the top Via (with
    /// its branch) the caller chose. The caller adds a body and other headers, then builds.
    pub fn request(&mut self, method: Method<'_>, via: &str) -> Result<RequestBuilder, Error> {
        if self.is_terminated() {
            return Err(Error::Terminated);
        }
        let seq = match self.local_seq {
            Some(s) if s >= 0x7fff_ffff => return Err(Error::CSeqExhausted),
            Some(s) => s + 1,
            // §12.2.1.1 leaves the first number of a UAS free; 1 is as good as any.
            None => 1,
        };
        self.local_seq = Some(seq);
        Ok(self.build(method, via, seq))
    }

    /// §13.2.2.4: the ACK of a 2xx to the INVITE with CSeq number `invite_seq`, built like any
    /// request of the dialog but with the INVITE's CSeq number and its own branch (`via`).
    pub fn ack(&self, invite_seq: u32, via: &str) -> RequestBuilder {
        self.build(Method::Ack, via, invite_seq)
    }

    /// The request target (Request-URI and Route values) §12.2.1.1 gives now.
    pub fn request_target(&self) -> RequestTarget {
        self.route_set.target(&self.remote_target)
    }

    fn build(&self, method: Method<'_>, via: &str, seq: u32) -> RequestBuilder {
        let target = self.request_target();
        let mut b = RequestBuilder::new(method, &target.request_uri)
            .header("Via", via)
            .header("From", &self.local_uri)
            .header("To", &self.remote_uri)
            .call_id(&self.id.call_id)
            .cseq(seq);
        for r in &target.routes {
            b = b.route(r);
        }
        if is_target_refresh(method) {
            b = b.contact(&self.local_contact);
        }
        b
    }

    /// §12.2.2: checks a request received in this dialog. A terminated dialog answers 481; a
    /// CSeq lower than the remote one answers 500 (out of order). Otherwise the remote CSeq
    /// advances and a target refresh request updates the remote target. ACK and CANCEL carry
    /// their INVITE's number and are not checked against it.
    pub fn check_request(&mut self, request: &Message) -> Result<(), Reject> {
        let method = request.method();
        if self.is_terminated() && method != Some(Method::Ack) {
            return Err(Reject { status: 481 });
        }
        if matches!(method, Some(Method::Ack) | Some(Method::Cancel)) {
            return Ok(());
        }
        let seq = request.cseq().map_err(|_| Reject { status: 400 })?.seq;
        if let Some(remote) = self.remote_seq {
            if seq < remote {
                return Err(Reject { status: 500 });
            }
        }
        self.remote_seq = Some(seq);
        if method.is_some_and(is_target_refresh) {
            self.refresh_target(request);
        }
        Ok(())
    }

    /// Heap bytes this dialog holds (for the table's memory cap and the per-dialog figure).
    pub fn heap_size(&self) -> usize {
        self.id.heap_size()
            + self.local_uri.capacity()
            + self.remote_uri.capacity()
            + self.remote_target.capacity()
            + self.local_contact.capacity()
            + self.route_set.heap_size()
    }
}

/// RFC 3261 §12.1.1: a dialog-forming response (101–299 to INVITE, SUBSCRIBE, REFER…) must
/// carry a Contact; a 2xx to INVITE without one is an error, caught here before it is sent.
pub fn check_dialog_response(response: &Message) -> Result<(), Error> {
    let status = response.status().unwrap_or(0);
    let forming = response
        .cseq()
        .is_ok_and(|c| matches!(c.method, Method::Invite | Method::Subscribe | Method::Refer));
    if forming && (200..300).contains(&status) && contact_uri(response).is_none() {
        return Err(Error::NoContact);
    }
    Ok(())
}

/// Target refresh requests (RFC 3261 §12.2: re-INVITE; RFC 3311 UPDATE, RFC 6665 SUBSCRIBE
/// and NOTIFY, RFC 3515 REFER).
pub fn is_target_refresh(method: Method<'_>) -> bool {
    matches!(
        method,
        Method::Invite | Method::Update | Method::Subscribe | Method::Notify | Method::Refer
    )
}

/// The first Contact's URI.
pub(crate) fn contact_uri(msg: &Message) -> Option<String> {
    let c = msg.contacts().next()?.ok()?;
    Some(c.addr()?.uri_str().to_owned())
}

fn header(msg: &Message, name: HeaderName, label: &'static str) -> Result<String, Error> {
    msg.header(name)
        .map(str::to_owned)
        .ok_or(Error::Header(label))
}

fn is_sips(uri: Option<&str>) -> bool {
    uri.and_then(|u| u.get(..5))
        .is_some_and(|p| p.eq_ignore_ascii_case("sips:"))
}
