//! The UAC side of an INVITE (RFC 3261 §13.2.2): one early dialog per To-tag when the request
//! forks (§12.1.2), the ACK of each 2xx built by the dialog layer (§13.2.2.4) and sent again for
//! every retransmission of that 2xx, extra 2xx from other forks handed out to be ACKed and
//! ended with BYE, a CANCEL crossing a 2xx (RFC 5407 §3.1.2 style: the call is ended with BYE),
//! and the end of every early dialog on a non-2xx final or Timer B / C.

use std::time::{Duration, Instant};

use sip_core::Message;

use crate::dialog::{Dialog, EndCause};
use crate::id::DialogId;
use crate::Error;

/// What a response to the INVITE means to the UA.
#[derive(Debug)]
pub enum ClientEvent {
    /// A provisional without To-tag (100 Trying, or a 1xx that forms no dialog).
    Trying {
        /// The status.
        status: u16,
    },
    /// A provisional with a To-tag: an early dialog (new, or one seen before).
    Early {
        /// The early dialog's ID.
        id: DialogId,
        /// The status (180, 183…).
        status: u16,
        /// True the first time this To-tag is seen.
        new: bool,
    },
    /// The first 2xx: the confirmed dialog (move it into the table) and the ACK to send to
    /// its next hop. `cancelled` is set when we had asked to CANCEL: the caller should end the
    /// call with BYE right after the ACK.
    Answered {
        /// The confirmed dialog.
        dialog: Box<Dialog>,
        /// The ACK.
        ack: Message,
        /// The call was being cancelled.
        cancelled: bool,
    },
    /// A retransmission of a 2xx already ACKed: send this ACK again.
    Reack(Message),
    /// A 2xx from another fork after the first: ACK it, then end it with BYE unless the
    /// application keeps it (§13.2.2.4).
    ExtraFork {
        /// That fork's dialog (confirmed).
        dialog: Box<Dialog>,
        /// Its ACK.
        ack: Message,
    },
    /// A 2xx without Contact (RFC 3261 §12.1.2 makes it an error): it is ACKed (to the
    /// Request-URI, along its Record-Route) so that it stops; the call should be ended with
    /// BYE and reported failed.
    InvalidAnswer {
        /// A dialog formed only to ACK and end it.
        dialog: Box<Dialog>,
        /// Its ACK.
        ack: Message,
    },
    /// A non-2xx final (or a timeout): every early dialog ended.
    Failed {
        /// The status (408 for Timer B).
        status: u16,
        /// The early dialogs that ended.
        ended: Vec<DialogId>,
    },
    /// Nothing to do: malformed, or a response the INVITE is past.
    Ignored,
}

/// The UAC's view of one INVITE and its forks.
#[derive(Debug)]
pub struct InviteClient {
    invite: Message,
    seq: u32,
    local_contact: String,
    early: Vec<Dialog>,
    /// To-tags answered 2xx, with the ACK sent for each.
    acked: Vec<(String, Message)>,
    failed: bool,
    cancelled: bool,
    /// After the first final response, forks' 2xx are still taken for 64·T1 (§13.2.2.4).
    linger_until: Option<Instant>,
    t1: Duration,
}

impl InviteClient {
    /// For the `invite` we sent (with its From-tag and CSeq); `local_contact` goes in the
    /// dialogs it forms.
    pub fn new(invite: Message, local_contact: &str, t1: Duration) -> Result<InviteClient, Error> {
        let seq = invite.cseq().map_err(|_| Error::Header("CSeq"))?.seq;
        if invite
            .from()
            .ok()
            .and_then(|f| f.tag().map(|_| ()))
            .is_none()
        {
            return Err(Error::NoTag);
        }
        Ok(InviteClient {
            invite,
            seq,
            local_contact: local_contact.to_owned(),
            early: Vec::new(),
            acked: Vec::new(),
            failed: false,
            cancelled: false,
            linger_until: None,
            t1,
        })
    }

    /// The INVITE.
    pub fn invite(&self) -> &Message {
        &self.invite
    }

    /// Its CSeq number.
    pub fn seq(&self) -> u32 {
        self.seq
    }

    /// The live early dialogs.
    pub fn early_dialogs(&self) -> &[Dialog] {
        &self.early
    }

    /// The live early dialog with this remote tag (to send a PRACK or an UPDATE in it).
    pub fn early_dialog_mut(&mut self, remote_tag: &str) -> Option<&mut Dialog> {
        self.early
            .iter_mut()
            .find(|d| d.id().remote_tag == remote_tag)
    }

    /// True once a 2xx has been received.
    pub fn answered(&self) -> bool {
        !self.acked.is_empty()
    }

    /// The application asked to CANCEL (§9.1): a 2xx that still arrives is ACKed and flagged.
    pub fn cancel(&mut self) {
        self.cancelled = true;
    }

    /// A response to the INVITE arrived at `now`. `ack_via` is a Via (fresh branch) for the
    /// ACK, used if the response is a new 2xx.
    pub fn on_response(&mut self, now: Instant, response: &Message, ack_via: &str) -> ClientEvent {
        let Some(status) = response.status() else {
            return ClientEvent::Ignored;
        };
        let to_tag = response.to().ok().and_then(|t| t.tag().map(str::to_owned));
        match (status, to_tag) {
            (100..=199, None) | (100, _) => ClientEvent::Trying { status },
            (101..=199, Some(tag)) => self.provisional(response, status, tag),
            (200..=299, Some(tag)) => self.success(now, response, tag, ack_via),
            // A 2xx without a To-tag cannot be ACKed in a dialog: it is malformed.
            (200..=299, None) => ClientEvent::Ignored,
            _ => self.failure(now, status),
        }
    }

    /// Timer B (or C) fired before a final response: every early dialog ends (§12.3).
    pub fn on_timeout(&mut self, now: Instant) -> ClientEvent {
        self.failure(now, 408)
    }

    /// When the client may be dropped (64·T1 after the first final response).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.linger_until
    }

    /// True once the linger time after the final response has passed.
    pub fn is_done(&self, now: Instant) -> bool {
        self.linger_until.is_some_and(|t| now >= t)
    }

    fn provisional(&mut self, response: &Message, status: u16, tag: String) -> ClientEvent {
        if self.failed || self.answered() {
            return ClientEvent::Ignored;
        }
        if let Some(d) = self.early.iter_mut().find(|d| d.id().remote_tag == tag) {
            // A later provisional may carry a Contact the first lacked.
            d.refresh_target(response);
            return ClientEvent::Early {
                id: d.id().clone(),
                status,
                new: false,
            };
        }
        match Dialog::uac(&self.invite, response, &self.local_contact) {
            Ok(d) => {
                let id = d.id().clone();
                self.early.push(d);
                ClientEvent::Early {
                    id,
                    status,
                    new: true,
                }
            }
            Err(_) => ClientEvent::Trying { status },
        }
    }

    fn success(&mut self, now: Instant, response: &Message, tag: String, via: &str) -> ClientEvent {
        if let Some((_, ack)) = self.acked.iter().find(|(t, _)| *t == tag) {
            return ClientEvent::Reack(ack.clone());
        }
        let dialog = match self.early.iter().position(|d| d.id().remote_tag == tag) {
            Some(i) => {
                let mut d = self.early.swap_remove(i);
                if d.confirm(response).is_err() {
                    // §12.1.2: a 2xx without Contact forms no usable dialog; ACK it, give up.
                    return self.invalid(now, response, tag, via);
                }
                d
            }
            None => match Dialog::uac(&self.invite, response, &self.local_contact) {
                Ok(d) => d,
                Err(Error::NoContact) => return self.invalid(now, response, tag, via),
                Err(_) => return ClientEvent::Ignored,
            },
        };
        let Ok(ack) = dialog.ack(self.seq, via).build() else {
            return ClientEvent::Ignored;
        };
        let first = self.acked.is_empty() && !self.failed;
        self.acked.push((tag, ack.clone()));
        if first {
            // §13.2.2.4: the other early dialogs stay until their own 2xx or the linger end.
            self.linger_until = Some(now + self.t1.saturating_mul(64));
            ClientEvent::Answered {
                dialog: Box::new(dialog),
                ack,
                cancelled: self.cancelled,
            }
        } else {
            ClientEvent::ExtraFork {
                dialog: Box::new(dialog),
                ack,
            }
        }
    }

    fn invalid(&mut self, now: Instant, response: &Message, tag: String, via: &str) -> ClientEvent {
        let Ok(dialog) = Dialog::uac_with(&self.invite, response, &self.local_contact, true) else {
            return ClientEvent::Ignored;
        };
        let Ok(ack) = dialog.ack(self.seq, via).build() else {
            return ClientEvent::Ignored;
        };
        self.acked.push((tag, ack.clone()));
        if self.acked.len() == 1 && !self.failed {
            self.failed = true;
            self.linger_until = Some(now + self.t1.saturating_mul(64));
            for d in &mut self.early {
                d.terminate(EndCause::Rejected);
            }
            self.early.clear();
        }
        ClientEvent::InvalidAnswer {
            dialog: Box::new(dialog),
            ack,
        }
    }

    fn failure(&mut self, now: Instant, status: u16) -> ClientEvent {
        if self.failed || self.answered() {
            // Timer B after a 2xx, or a late non-2xx from another branch: the call stands.
            return ClientEvent::Ignored;
        }
        self.failed = true;
        self.linger_until = Some(now + self.t1.saturating_mul(64));
        let ended = self
            .early
            .drain(..)
            .map(|mut d| {
                d.terminate(EndCause::Rejected);
                d.id().clone()
            })
            .collect();
        ClientEvent::Failed { status, ended }
    }
}
