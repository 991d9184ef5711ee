//! Matching what the transport received: responses to client transactions (RFC 3261 §17.1.3),
//! requests to server transactions (§17.2.3, with the RFC 2543 fallback), ACKs to their INVITE,
//! CANCELs to the INVITE they target (§9.2), merged requests (§8.2.2.2), and the 503 of a full
//! table.

use std::time::Instant;

use sip_core::{Flow, Message, Method};

use crate::error::Error;
use crate::event::{CancelMatch, Destination, Event, IncomingRequest, TransactionKey, Transmit};
use crate::key;
use crate::layer::TransactionLayer;
use crate::messages;
use crate::txn::{Kind, Peer, State};

impl TransactionLayer {
    pub(crate) fn handle_response(
        &mut self,
        now: Instant,
        msg: Message,
        flow: Flow,
    ) -> Result<(), Error> {
        {
            let via = msg.via()?;
            let cseq = msg.cseq()?;
            key::client(
                &mut self.scratch,
                via.branch().unwrap_or_default(),
                cseq.method.as_str(),
            );
        }
        match self.client_index.get(&self.scratch) {
            Some(id) => {
                if let Some(txn) = self.txns.get_mut(&id) {
                    let step = txn.client_response(now, &self.config, &mut self.out, msg, flow);
                    self.apply(id, step);
                }
            }
            None => {
                self.out.stats.stray_responses += 1;
                self.out.events.push_back(Event::StrayResponse {
                    response: msg,
                    flow,
                });
            }
        }
        Ok(())
    }

    /// Writes the server matching key of `msg` under `method` into the scratch buffer; returns
    /// whether it is an RFC 2543 key.
    fn server_key(&mut self, msg: &Message, method: &str) -> Result<bool, Error> {
        let via = msg.via()?;
        let cseq = msg.cseq()?;
        if via.has_magic_cookie() {
            key::server(&mut self.scratch, &via, method);
            Ok(false)
        } else {
            key::rfc2543(&mut self.scratch, msg, &via, cseq.seq, method);
            Ok(true)
        }
    }

    /// RFC 2543 matching compares To tags after the lookup: an ACK's with the tag of the
    /// response sent, any other request's with the original request's.
    fn rfc2543_to_tag_matches(&self, id: u64, msg: &Message, is_ack: bool) -> bool {
        let Some(t) = self.txns.get(&id) else {
            return false;
        };
        let ours = if is_ack {
            match &t.stored {
                Some(r) => messages::to_tag_of(r),
                None => return false,
            }
        } else {
            messages::to_tag_of(&t.request)
        };
        ours == key::to_tag(msg)
    }

    pub(crate) fn handle_request(
        &mut self,
        now: Instant,
        msg: Message,
        flow: Flow,
    ) -> Result<(), Error> {
        let method = msg.method().ok_or(Error::NotARequest)?;
        let is_ack = method == Method::Ack;
        let is_cancel = method == Method::Cancel;
        let rfc2543 = self.server_key(&msg, key::method_class(method))?;
        let found = self.server_index.get(&self.scratch);
        let matched = match found {
            Some(id) if !rfc2543 || self.rfc2543_to_tag_matches(id, &msg, is_ack) => Some(id),
            _ => None,
        };
        if let Some(id) = matched {
            if let Some(txn) = self.txns.get_mut(&id) {
                let step = txn.server_request(now, &self.config, &mut self.out, msg, flow, is_ack);
                self.apply(id, step);
            }
            return Ok(());
        }
        if is_ack {
            // The ACK of a 2xx has its own branch: it is the dialog layer's (§17.2.3, §13.3.1.4).
            self.out.stats.stray_acks += 1;
            self.out.events.push_back(Event::Ack {
                key: None,
                request: msg,
                flow,
            });
            return Ok(());
        }
        if self.full() {
            self.reject_overload(&msg, flow);
            return Ok(());
        }
        let index_key: Box<[u8]> = if found.is_none() {
            self.scratch.as_slice().into()
        } else {
            // An RFC 2543 request sharing a key with another but for its To tag: it gets a
            // transaction, but retransmissions of it cannot be told apart.
            Box::default()
        };
        let invite = if is_cancel {
            Some(self.cancel_target(&msg)?)
        } else {
            None
        };
        // The merge key (§8.2.2.2) is computed once: looked up, then indexed under if new.
        let merge_key = (self.config.merge_detection() && key::merge(&mut self.scratch, &msg))
            .then(|| self.scratch.clone());
        let merged_with = merge_key.as_deref().and_then(|k| self.merged_with(k));
        let kind = if method == Method::Invite {
            Kind::InviteServer
        } else {
            Kind::NonInviteServer
        };
        let id = self.insert(
            kind,
            Peer::Flow(flow),
            flow.transport.is_reliable(),
            msg.to_bytes(),
            index_key,
        )?;
        if let Some(mk) = merge_key.filter(|_| merged_with.is_none()) {
            let mk: Box<[u8]> = mk.into_boxed_slice();
            self.merge_index.insert(mk.clone(), id);
            if let Some(t) = self.txns.get_mut(&id) {
                t.merge_key = Some(mk);
            }
        }
        if let Some(t) = self.txns.get_mut(&id) {
            t.server_start(now, &self.config, &mut self.out);
        }
        let incoming = IncomingRequest {
            key: TransactionKey(id),
            request: msg,
            flow,
            merged_with,
        };
        self.out.events.push_back(match invite {
            Some(invite) => Event::Cancel {
                cancel: incoming,
                invite,
            },
            None => Event::Request(incoming),
        });
        Ok(())
    }

    /// §9.2: the INVITE server transaction a CANCEL targets (same matching, method INVITE).
    fn cancel_target(&mut self, cancel: &Message) -> Result<CancelMatch, Error> {
        let rfc2543 = self.server_key(cancel, "INVITE")?;
        let found = self.server_index.get(&self.scratch);
        Ok(match found {
            Some(id) if !rfc2543 || self.rfc2543_to_tag_matches(id, cancel, false) => {
                match self.txns.get(&id).map(|t| t.state) {
                    Some(State::Proceeding) => CancelMatch::Pending(TransactionKey(id)),
                    Some(_) => CancelMatch::Answered(TransactionKey(id)),
                    None => CancelMatch::NotFound,
                }
            }
            _ => CancelMatch::NotFound,
        })
    }

    /// §8.2.2.2: a request without To tag whose From tag, Call-ID and CSeq are those of a live
    /// server transaction it did not match.
    fn merged_with(&mut self, merge_key: &[u8]) -> Option<TransactionKey> {
        let id = self.merge_index.get(merge_key)?;
        self.out.stats.merged_requests += 1;
        Some(TransactionKey(id))
    }

    fn reject_overload(&mut self, msg: &Message, flow: Flow) {
        self.out.stats.overload_rejections += 1;
        tracing::debug!(%flow, "transaction table full: 503");
        if let Some(payload) = messages::overload_response(msg, self.config.retry_after()) {
            self.out.transmits.push_back(Transmit {
                key: None,
                destination: Destination::Flow(flow),
                payload,
                retransmission: false,
            });
        }
    }
}
