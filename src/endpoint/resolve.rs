//! Requests sent to a URI: RFC 3261 §8.1.2 picks the next hop (the first Route when it is a
//! loose router, else the Request-URI), RFC 3263 §4 turns it into an ordered target list, and
//! §4.3 fails over along that list when a target gives a transport error or Timer B/F fires
//! before any response, with a new branch each time. A failed target is marked down in the
//! [`Resolver`], so later requests try it last.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::OnceLock;

use sip_core::uri::Uri;
use sip_core::{Message, Target, Transport};
use sip_transaction::TerminationReason;
use sip_transport::{ResolveError, Resolver, ResolverConfig};
use tokio::sync::oneshot;
use tracing::{debug, info};

use super::{driver, ClientTransaction, Command, Endpoint, EndpointBuilder, EndpointError};

/// The resolver an endpoint uses: given to the builder, or made from the system's
/// configuration on first use.
#[derive(Default)]
pub(crate) struct ResolverSlot {
    cell: OnceLock<Result<Resolver, ResolveError>>,
    config: Option<ResolverConfig>,
}

impl ResolverSlot {
    pub(crate) fn get(&self) -> Result<Resolver, ResolveError> {
        self.cell
            .get_or_init(|| Resolver::new(self.config.clone().unwrap_or_default()))
            .clone()
    }
}

impl EndpointBuilder {
    /// The RFC 3263 resolver configuration (default: the system's nameservers, and the
    /// transports this endpoint can send on).
    pub fn resolver_config(mut self, config: ResolverConfig) -> Self {
        self.resolver.config = Some(config);
        self
    }

    /// Resolve names with only this nameserver (as the examples' `--dns ADDR:PORT`), keeping
    /// the transports this endpoint can send on.
    pub fn dns(mut self, nameserver: SocketAddr) -> Self {
        let mut cfg = self.resolver.config.take().unwrap_or_default();
        cfg.nameservers = Some(vec![nameserver]);
        cfg.transports = self.sendable_transports();
        self.resolver.config = Some(cfg);
        self
    }

    /// UDP when a UDP socket is bound, TCP always (connections are opened on demand), TLS with
    /// a client configuration.
    fn sendable_transports(&self) -> Vec<Transport> {
        let mut t = Vec::new();
        if !self.udp.is_empty() {
            t.push(Transport::Udp);
        }
        t.push(Transport::Tcp);
        if self.tls_client.is_some() {
            t.push(Transport::Tls);
        }
        t
    }

    /// The resolver slot for the endpoint being built: the configured resolver, or the
    /// system's with the transports this endpoint can send on.
    pub(crate) fn take_resolver(&self) -> ResolverSlot {
        let config = self
            .resolver
            .config
            .clone()
            .unwrap_or_else(|| ResolverConfig {
                transports: self.sendable_transports(),
                ..ResolverConfig::default()
            });
        ResolverSlot {
            cell: OnceLock::new(),
            config: Some(config),
        }
    }
}

/// What a client transaction sent to a URI keeps to fail over (RFC 3263 §4.3).
pub(crate) struct Failover {
    endpoint: Endpoint,
    resolver: Resolver,
    /// The request as the TU gave it; each attempt gets a fresh top Via.
    request: Message,
    current: Target,
    remaining: VecDeque<Target>,
    /// A response came from the current target: no failover any more.
    answered: bool,
    /// Why the last attempt ended, once the list is exhausted.
    last: Option<TerminationReason>,
}

impl std::fmt::Debug for Failover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Failover")
            .field("current", &self.current)
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

/// RFC 3261 §8.1.2: the URI the request goes to: the topmost Route when it names a loose
/// router (`lr`), otherwise the Request-URI (no Route, or strict routing where the
/// Request-URI already holds the first hop).
pub fn next_hop(request: &Message) -> Result<String, ResolveError> {
    if let Some(Ok(route)) = request.routes().next() {
        if let Some(uri) = route.uri().as_uri() {
            if uri.is_lr() {
                return Ok(uri.as_str().to_owned());
            }
        }
    }
    request
        .uri_str()
        .map(str::to_owned)
        .ok_or_else(|| ResolveError::InvalidUri("not a request".into()))
}

impl Endpoint {
    /// The endpoint's RFC 3263 resolver.
    pub fn resolver(&self) -> Result<Resolver, EndpointError> {
        Ok(self.inner.resolver.get()?)
    }

    /// Sends a request in a client transaction to where RFC 3261 §8.1.2 says (the first Route
    /// if it is a loose router, else the Request-URI), found by RFC 3263 §4. The request's top
    /// Via is replaced by the endpoint's own for the transport chosen ([`Endpoint::via`]), with
    /// a fresh branch; when a target fails before any response (transport error, Timer B or
    /// F) the next one is tried with a new branch, and the failed one is marked down (§4.3).
    ///
    /// A resolution that fails gives [`EndpointError::Resolve`] (a proxy answers it 503,
    /// [`ResolveError::response_status`]); when every target fails, the last reason comes
    /// back as [`EndpointError::NoFinalResponse`].
    pub async fn request_to_uri(
        &self,
        request: Message,
    ) -> Result<ClientTransaction, EndpointError> {
        let hop = next_hop(&request)?;
        let uri = Uri::parse(&hop).map_err(|e| ResolveError::InvalidUri(format!("{hop}: {e}")))?;
        let resolver = self.resolver()?;
        let targets: VecDeque<Target> = resolver.resolve(&uri).await?.into();
        debug!(%hop, ?targets, "request to URI");
        let mut fo = Failover {
            endpoint: self.clone(),
            resolver,
            request,
            current: Target::new(Transport::Udp, SocketAddr::from(([0, 0, 0, 0], 0))),
            remaining: targets,
            answered: false,
            last: None,
        };
        let mut last_err = None;
        while let Some(target) = fo.remaining.pop_front() {
            match fo.start(target).await {
                Ok((key, responses, ended)) => {
                    return Ok(ClientTransaction {
                        key,
                        responses,
                        ended,
                        cmd: self.inner.cmd.clone(),
                        failover: Some(Box::new(fo)),
                    })
                }
                Err(e @ EndpointError::Send(_)) => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or(EndpointError::NoFinalResponse(
            TerminationReason::TransportError,
        )))
    }
}

type Started = (
    sip_transaction::TransactionKey,
    super::queue::ResponseReceiver,
    oneshot::Receiver<TerminationReason>,
);

impl Failover {
    /// Starts a client transaction for the request to `target` with a fresh top Via; a send
    /// refused at once marks the target down.
    async fn start(&mut self, target: Target) -> Result<Started, EndpointError> {
        let mut request = self.request.clone();
        request.remove_top(sip_core::HeaderName::Via);
        request
            .push_via(&self.endpoint.via(target.transport))
            .map_err(sip_transaction::Error::from)?;
        self.current = target.clone();
        let (responses_tx, responses) = super::queue::response_queue(driver::RESPONSE_QUEUE);
        let (reply, rx) = oneshot::channel();
        self.endpoint
            .inner
            .cmd
            .reserve()
            .await
            .map_err(|_| EndpointError::Shutdown)
            .map(|slot| {
                slot.send(Command::Request {
                    request,
                    target: target.clone(),
                    responses: responses_tx,
                    reply,
                })
            })?;
        match rx.await.map_err(|_| EndpointError::Shutdown)? {
            Ok((key, ended)) => Ok((key, responses, ended)),
            Err(e) => {
                if matches!(e, EndpointError::Send(_)) {
                    self.resolver.mark_down(&target);
                }
                Err(e)
            }
        }
    }
}

impl ClientTransaction {
    /// Notes that a response came: the current target answered, no failover any more.
    pub(crate) fn note_response(&mut self) {
        if let Some(fo) = self.failover.as_mut() {
            fo.answered = true;
        }
    }

    /// The transaction ended without a response: with targets left and a reason that allows
    /// it (transport error, Timer B/F), marks the current target down and starts the next
    /// one. Returns whether a new attempt is running.
    pub(crate) async fn fail_over(&mut self) -> bool {
        let Some(fo) = self.failover.as_mut() else {
            return false;
        };
        if fo.answered || fo.last.is_some() {
            return false;
        }
        let reason = (&mut self.ended)
            .await
            .unwrap_or(TerminationReason::Aborted);
        fo.last = Some(reason);
        if !matches!(
            reason,
            TerminationReason::TransportError | TerminationReason::Timeout(_)
        ) {
            return false;
        }
        fo.resolver.mark_down(&fo.current);
        while let Some(target) = fo.remaining.pop_front() {
            info!(failed = %fo.current, next = %target, ?reason, "RFC 3263 §4.3: trying the next target");
            if let Ok((key, responses, ended)) = fo.start(target).await {
                fo.last = None;
                self.key = key;
                self.responses = responses;
                self.ended = ended;
                return true;
            }
        }
        false
    }

    /// Why the transaction ended without a final response, when failover already read it.
    pub(crate) fn failover_reason(&self) -> Option<TerminationReason> {
        self.failover.as_ref().and_then(|f| f.last)
    }

    /// The target the request went to last (for a request sent with
    /// [`Endpoint::request_to_uri`]).
    pub fn target(&self) -> Option<&Target> {
        self.failover.as_ref().map(|f| &f.current)
    }
}
