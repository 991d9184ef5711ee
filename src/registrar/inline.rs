//! The registrar run to completion on the UDP receive task ([`InlineRegistrar`]).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Instant, SystemTime};

use sip_core::{Flow, Message, Method};
use sip_transport::{InlineHandler, TransportHandle};
use tracing::debug;

use super::{LocationStore, Registrar};
use crate::endpoint::StatelessResponder;

/// Answers UDP REGISTERs on the task that received them, as an
/// [`InlineHandler`] installed with [`EndpointBuilder::inline`](crate::endpoint::EndpointBuilder::inline):
/// the request is read, parsed, handled by the [`Registrar`] and answered without passing
/// through the endpoint's driver or a worker task (issue: run to completion).
///
/// It answers as the endpoint would with
/// [`stateless_methods`](crate::endpoint::EndpointBuilder::stateless_methods) for REGISTER:
/// without a server transaction, a retransmission answered again from the registrar's response
/// cache. The endpoint's [`StatelessResponder`] (the 401 challenge, given with
/// [`InlineRegistrar::responder`]) is asked first, and the `Server` header is added as the
/// service adds it.
///
/// With a store that [answers at once](LocationStore::answers_at_once) (the in-memory one)
/// everything happens in one call, with nothing boxed; a retransmission whose original another
/// thread is still answering goes on to the endpoint, whose worker waits for that answer. With
/// a store that waits (a networked one) each REGISTER is a task of its own on the receiving
/// thread, and the receive loop goes on. Requests other than REGISTER go on to the endpoint.
pub struct InlineRegistrar<S: LocationStore> {
    registrar: Arc<Registrar<S>>,
    responder: Option<Arc<dyn StatelessResponder>>,
    server: Option<Arc<str>>,
    answered: AtomicU64,
    deferred: AtomicU64,
}

impl<S: LocationStore> InlineRegistrar<S> {
    /// Inline REGISTER handling by `registrar`, with the endpoint's default `Server` header.
    pub fn new(registrar: Arc<Registrar<S>>) -> InlineRegistrar<S> {
        InlineRegistrar {
            registrar,
            responder: None,
            server: Some(crate::endpoint::DEFAULT_USER_AGENT.into()),
            answered: AtomicU64::new(0),
            deferred: AtomicU64::new(0),
        }
    }

    /// The endpoint's stateless responder, asked before the registrar (as the driver asks it).
    pub fn responder(mut self, responder: Arc<dyn StatelessResponder>) -> Self {
        self.responder = Some(responder);
        self
    }

    /// The `Server` header value of the answers (`None`: none); use the endpoint's
    /// [`user_agent`](crate::endpoint::EndpointBuilder::user_agent).
    pub fn server(mut self, server: Option<String>) -> Self {
        self.server = server.map(Into::into);
        self
    }

    /// REGISTERs answered on the receive task.
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    /// REGISTERs whose handling had to wait: moved to a task of its own, or (with a store that
    /// answers at once) handed on to the endpoint.
    pub fn deferred(&self) -> u64 {
        self.deferred.load(Ordering::Relaxed)
    }
}

/// Adds `Server` before Content-Length (which the builder puts last) and sends the response
/// to `request` back per RFC 3261 §18.2.2: to `reply` when the destination is known, else
/// where the request's Via says.
fn send(
    transport: &TransportHandle,
    request: &Message,
    mut response: Message,
    flow: Flow,
    server: Option<&str>,
    reply: Option<sip_core::Target>,
) {
    if let Some(s) = server.filter(|_| !response.has(sip_core::HeaderName::Server)) {
        let at = response.header_count().saturating_sub(1);
        let _ = response.insert_header(at, "Server", s);
    }
    let data = response.to_bytes();
    let sent = match reply {
        Some(target) => transport.enqueue_response_at(data, target, Some(flow), None),
        None => transport.enqueue_response_to(data, request, Some(flow), None),
    };
    if let Err(e) = sent {
        debug!(%flow, error = %e, "response not sent");
    }
}

impl<S: LocationStore> InlineHandler for InlineRegistrar<S> {
    fn request(
        &self,
        request: Message,
        flow: Flow,
        transport: &TransportHandle,
    ) -> Option<Message> {
        // The transport delivers only requests whose top Via parses (it stamped it).
        if request.method() != Some(Method::Register) {
            return Some(request);
        }
        if let Some(r) = self
            .responder
            .as_ref()
            .and_then(|r| r.respond(&request, flow))
        {
            send(transport, &request, r, flow, None, None);
            return None;
        }
        let (now, wall) = (Instant::now(), SystemTime::now());
        if self.registrar.store().answers_at_once() {
            // Nothing waits but a retransmission whose original another thread is answering:
            // then the request goes the usual way, which waits for that answer.
            let polled = {
                let work = std::pin::pin!(self.registrar.handle(&request, flow, now, wall));
                work.poll(&mut Context::from_waker(Waker::noop()))
            };
            let Poll::Ready(response) = polled else {
                self.deferred.fetch_add(1, Ordering::Relaxed);
                return Some(request);
            };
            self.answered.fetch_add(1, Ordering::Relaxed);
            if let Some(r) = response {
                send(transport, &request, r, flow, self.server.as_deref(), None);
            }
            return None;
        }
        // The store waits (a networked one): the work is a task of its own from the start,
        // so the receive loop goes on reading, and the requests of one batch of datagrams
        // reach the store together (a multiplexed connection writes them at once).
        self.deferred.fetch_add(1, Ordering::Relaxed);
        let registrar = self.registrar.clone();
        // Where the answer goes, known now from the Via the receive path stamped (the task
        // does not parse it again).
        let reply = transport.reply_destination(&request);
        let transport = transport.clone();
        let server = self.server.clone();
        // Boxed: the work's future is a few KB, and a task holding it inline is moved into
        // its cell and its finished stage written over it again (measured with callgrind:
        // boxed, the task costs fewer instructions).
        tokio::spawn(Box::pin(async move {
            if let Some(r) = registrar.handle(&request, flow, now, wall).await {
                send(&transport, &request, r, flow, server.as_deref(), reply);
            }
        }));
        None
    }
}
