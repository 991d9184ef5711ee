//! The TU's handles on transactions: [`ServerTransaction`] to answer a request,
//! [`ClientTransaction`] to read the responses to one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use sip_core::builder::ResponseBuilder;
use sip_core::{Flow, Message};
use sip_transaction::{Destination, TerminationReason, TransactionKey};
use tokio::sync::{mpsc, oneshot};

use super::{Command, EndpointError};

/// The To-tag of the responses to one request, chosen once (RFC 3261 §8.2.6.2: every response
/// to a request carries the same tag). Shared by the TU's handle and the driver, which uses it
/// for the responses it sends itself (487, 500, 503).
pub(crate) type ToTag = Arc<OnceLock<Box<str>>>;

/// The tag of a request's To header, when it has one (an in-dialog request).
pub(crate) fn request_to_tag(request: &Message) -> Option<Box<str>> {
    let to = request.to().ok()?;
    to.tag().map(Box::from)
}

/// The To-tag to use: the one already chosen, else the request's own, else a fresh one.
pub(crate) fn choose_to_tag(cell: &OnceLock<Box<str>>, request: &Message) -> Box<str> {
    cell.get_or_init(|| request_to_tag(request).unwrap_or_else(|| super::random_tag().into()))
        .clone()
}

/// A request received in a server transaction, with the means to answer it.
///
/// Dropping it before a final response was sent answers the request 500 (Server Internal
/// Error), so that a TU that forgets a request never leaves its client waiting.
#[derive(Debug)]
pub struct ServerTransaction {
    /// `None` for a request of a method the endpoint handles without transactions.
    pub(crate) key: Option<TransactionKey>,
    pub(crate) request: Message,
    pub(crate) flow: Flow,
    pub(crate) merged_with: Option<TransactionKey>,
    pub(crate) cmd: mpsc::Sender<Command>,
    pub(crate) to_tag: ToTag,
    pub(crate) final_sent: AtomicBool,
}

impl ServerTransaction {
    /// The transaction's key; `None` when the request's method is handled without a
    /// transaction ([`EndpointBuilder::stateless_methods`](super::EndpointBuilder::stateless_methods)).
    pub fn key(&self) -> Option<TransactionKey> {
        self.key
    }

    /// The request (its top Via carries `received`/`rport` as stamped by the transport).
    pub fn request(&self) -> &Message {
        &self.request
    }

    /// The flow it came on.
    pub fn flow(&self) -> Flow {
        self.flow
    }

    /// RFC 3261 §8.2.2.2: this request is a merged copy of that other live transaction's
    /// request (a UAS answers 482).
    pub fn merged_with(&self) -> Option<TransactionKey> {
        self.merged_with
    }

    /// The To-tag every response to this request carries: the request's own when it has one,
    /// otherwise one chosen once for the transaction. A response sent with another tag has
    /// its tag replaced by this one.
    pub fn to_tag(&self) -> &str {
        self.to_tag.get_or_init(|| {
            request_to_tag(&self.request).unwrap_or_else(|| super::random_tag().into())
        })
    }

    /// A response to this request with the transaction's To-tag (see
    /// [`ServerTransaction::to_tag`]).
    pub fn response(&self, status: u16) -> ResponseBuilder {
        let tag = self.to_tag();
        self.request.response(status).to_tag(tag)
    }

    /// Sends a response: any number of provisionals, then one final.
    pub async fn respond(&self, response: Message) -> Result<(), EndpointError> {
        let is_final = response.status().is_some_and(|s| s >= 200);
        let Some(key) = self.key else {
            self.cmd
                .reserve()
                .await
                .map_err(|_| EndpointError::Shutdown)
                .map(|slot| {
                    slot.send(Command::Stateless {
                        message: response,
                        destination: Destination::Flow(self.flow),
                    })
                })?;
            if is_final {
                self.final_sent.store(true, Ordering::Relaxed);
            }
            return Ok(());
        };
        let (reply, rx) = oneshot::channel();
        self.cmd
            .reserve()
            .await
            .map_err(|_| EndpointError::Shutdown)
            .map(|slot| {
                slot.send(Command::Respond {
                    key,
                    response,
                    to_tag: self.to_tag.clone(),
                    reply,
                })
            })?;
        let r = rx.await.map_err(|_| EndpointError::Shutdown)?;
        if r.is_ok() && is_final {
            self.final_sent.store(true, Ordering::Relaxed);
        }
        r
    }
}

impl Drop for ServerTransaction {
    fn drop(&mut self) {
        if self.final_sent.load(Ordering::Relaxed) {
            return;
        }
        let cmd = Command::Abandoned {
            key: self.key,
            request: self.request.clone(),
            flow: self.flow,
            to_tag: self.to_tag.clone(),
        };
        // The command queue is bounded; when it is full the notice goes from a task of its
        // own rather than being lost.
        if let Err(mpsc::error::TrySendError::Full(cmd)) = self.cmd.try_send(cmd) {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let tx = self.cmd.clone();
                rt.spawn(async move {
                    let _ = tx.send(cmd).await;
                });
            }
        }
    }
}

/// A request sent in a client transaction: read its responses.
///
/// Its responses wait in a bounded queue of boxed messages (a live transaction's queue costs
/// pointers, not whole messages). When the TU does not read them, provisionals and
/// repeated 2xx are dropped (and counted in
/// [`Counters::responses_dropped`](super::Counters::responses_dropped)); room is always kept
/// for the first final response.
#[derive(Debug)]
pub struct ClientTransaction {
    pub(crate) key: TransactionKey,
    pub(crate) responses: super::queue::ResponseReceiver,
    pub(crate) ended: oneshot::Receiver<TerminationReason>,
    pub(crate) cmd: mpsc::Sender<Command>,
    /// The targets left for a request sent to a URI (RFC 3263 §4.3).
    #[cfg(feature = "dns")]
    pub(crate) failover: Option<Box<super::resolve::Failover>>,
}

impl ClientTransaction {
    /// The transaction's key.
    pub fn key(&self) -> TransactionKey {
        self.key
    }

    /// The next response (provisional or final; for an INVITE, further 2xx from other forks
    /// follow the first). `None` once the transaction has terminated. For a request sent with
    /// [`Endpoint::request_to_uri`](super::Endpoint::request_to_uri), a target that fails
    /// before any response is replaced by the next one here (RFC 3263 §4.3).
    pub async fn next_response(&mut self) -> Option<Message> {
        self.next_response_boxed().await.map(|r| *r)
    }

    /// [`next_response`](Self::next_response), the message left in the box it travelled
    /// in: a task that waits on many transactions keeps a pointer across its awaits, not
    /// the message.
    pub async fn next_response_boxed(&mut self) -> Option<Box<Message>> {
        loop {
            if let Some(r) = self.responses.recv().await {
                #[cfg(feature = "dns")]
                self.note_response();
                return Some(r);
            }
            // Boxed: the fail-over (a new transaction to the next address) is rare and its
            // future large; inline it would weigh on every waiting transaction's task.
            #[cfg(feature = "dns")]
            if Box::pin(self.fail_over()).await {
                continue;
            }
            return None;
        }
    }

    /// Stops listening: the responses already queued are returned, and any later 2xx (a
    /// retransmission, or another fork's answer to an INVITE) reaches the TU as
    /// [`ServerEvent::StrayResponse`](super::ServerEvent::StrayResponse), as if no
    /// transaction had matched it; later provisionals and non-2xx finals are dropped. A proxy
    /// whose request is answered need not keep a task waiting the 32 s the transaction
    /// lingers.
    pub(crate) fn close(self) -> std::collections::VecDeque<Box<Message>> {
        self.responses.close()
    }

    /// Waits for the final response, skipping provisionals. A transaction that ends without
    /// one gives [`EndpointError::NoFinalResponse`] (timeout: 408, transport error: 503).
    pub async fn final_response(&mut self) -> Result<Message, EndpointError> {
        while let Some(r) = self.next_response().await {
            if r.status().is_some_and(|s| s >= 200) {
                return Ok(r);
            }
        }
        #[cfg(feature = "dns")]
        if let Some(reason) = self.failover_reason() {
            return Err(EndpointError::NoFinalResponse(reason));
        }
        match (&mut self.ended).await {
            Ok(reason) => Err(EndpointError::NoFinalResponse(reason)),
            Err(_) => Err(EndpointError::Shutdown),
        }
    }

    /// Cancels a pending INVITE (RFC 3261 §9.1). The CANCEL is sent once a provisional
    /// response has arrived: at once if one has, otherwise when the first one comes. After a
    /// final response it does nothing (the INVITE is over; a 2xx is ended with BYE instead).
    pub async fn cancel(&self) -> Result<(), EndpointError> {
        let (reply, rx) = oneshot::channel();
        self.cmd
            .reserve()
            .await
            .map_err(|_| EndpointError::Shutdown)
            .map(|slot| {
                slot.send(Command::Cancel {
                    key: self.key,
                    reply,
                })
            })?;
        rx.await.map_err(|_| EndpointError::Shutdown)?
    }
}
