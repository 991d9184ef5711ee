//! A stateful SIP proxy (RFC 3261 §16), its sans-IO core and the async shell that runs it on an
//! [`Endpoint`](crate::endpoint::Endpoint).
//!
//! The core follows §16's steps, one module each, and does no I/O:
//!
//! | step | module | what |
//! | --- | --- | --- |
//! | §16.3 | [`validate`] | syntax and size, URI scheme, Max-Forwards (483; OPTIONS answered), loops (482), Proxy-Require (420) |
//! | §16.4 | [`route`] | strict-route fix-up, our top Route values popped |
//! | §16.5 | [`target`] | the [`Router`] trait; [`LocationRouter`] over the registrar's bindings |
//! | §16.6 | [`forward`], [`branch`] | copy, Request-URI, Max-Forwards, (double) Record-Route, Path, next hop, Via with a stateless-safe branch |
//! | §16.7–16.10 | [`context`] | response context: best response, 2xx at once, 6xx, merged challenges, 503→500, Timer C, CANCEL |
//! | §16.11 | [`stateless`] | responses without a context, 2xx ACKs |
//! | §22.3 | [`auth`] | 407 challenges for the domain's own users |
//!
//! [`ProxyCore`] strings the request-side steps together; [`Proxy`] (in `service`) is the
//! shell: one server transaction per request, one client transaction per branch, CANCEL,
//! 2xx ACKs and stray responses, and [`ProxyStats`].
//!
//! ```
//! use sip_stack::core::{Flow, Message, Transport};
//! use sip_stack::proxy::{Identity, Interface, ProxyConfig, ProxyCore, Step};
//!
//! let local = "192.0.2.1:5060".parse().unwrap();
//! let identity = Identity::new(vec![Interface::new(Transport::Udp, local)], vec!["example.com".into()]);
//! let core = ProxyCore::new(ProxyConfig::new(identity));
//! let bye = Message::parse(&b"BYE sip:bob@192.0.2.20:5062 SIP/2.0\r\n\
//!     Via: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKa\r\nRoute: <sip:192.0.2.1;lr>\r\n\
//!     Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>;tag=2\r\n\
//!     Call-ID: c1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"[..]).unwrap();
//! let flow = Flow { transport: Transport::Udp, local, remote: "192.0.2.9:5060".parse().unwrap() };
//! // In-dialog: our Route is popped and the request loose-routed to its Request-URI.
//! let Step::Forward(req, target) = core.receive(bye, &flow) else { panic!() };
//! let out = core.forward(&req, Some(&flow), &target, 0).unwrap();
//! assert_eq!(out.request.header(sip_stack::core::HeaderName::MaxForwards), Some("69"));
//! assert_eq!(out.request.count(sip_stack::core::HeaderName::Route), 0);
//! ```

pub mod auth;
pub mod branch;
pub mod context;
pub mod forward;
pub mod identity;
pub mod route;
mod serve;
mod service;
mod shell;
pub mod stateless;
pub mod stats;
pub mod target;
pub mod validate;

use std::time::Duration;

use sip_core::{Flow, HeaderName, Message, Method};

pub use auth::{AuthCheck, ProxyAuth};
pub use context::{Action, BranchEnd, BranchId, ResponseContext};
pub use forward::{ForwardError, ForwardOptions, Forwarded, NextHop};
pub use identity::{Identity, Interface};
pub use serve::{identity_of, serve};
pub use service::{Proxy, ProxyBuilder};
pub use stats::{ProxyCounters, ProxyStats};
pub use target::{Decision, ForeignPolicy, ForkMode, LocationRouter, ProxyTarget, Router};
pub use validate::{Refusal, Valid, ValidationConfig};

/// Configuration of the proxy core.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Our addresses and domains.
    pub identity: Identity,
    /// §16.3 limits.
    pub validation: ValidationConfig,
    /// §16.6 options (Record-Route on or off).
    pub forward: ForwardOptions,
    /// Timer C (§16.8; default 180 s, the RFC's "greater than 3 minutes" rounded to it).
    pub timer_c: Option<Duration>,
    /// Most targets one request is forked to (default 16; more are dropped, lowest q first).
    pub max_targets: usize,
}

impl ProxyConfig {
    /// Defaults for an identity.
    pub fn new(identity: Identity) -> ProxyConfig {
        ProxyConfig {
            identity,
            validation: ValidationConfig::default(),
            forward: ForwardOptions::default(),
            timer_c: Some(Duration::from_secs(180)),
            max_targets: 16,
        }
    }
}

/// What to do with a received request after §16.3 and §16.4.
#[derive(Debug)]
pub enum Step {
    /// Answer it with this response (a refusal, or OPTIONS with Max-Forwards 0).
    Respond(Message),
    /// A refusal for a request that gets no answer (an ACK): drop it.
    Drop,
    /// Ask the router for its targets (§16.5).
    Route(Message),
    /// Forward it to this target without the router: a Route set remains, or an in-dialog
    /// request for a foreign Request-URI (loose routing, §16.12).
    Forward(Message, ProxyTarget),
}

/// A router's decision made concrete (§16.5).
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Routed {
    /// Fork to these groups of targets, one group after another (one group when parallel).
    Fork(Vec<Vec<ProxyTarget>>),
    /// Send this response.
    Respond(Message),
}

/// The request side of the proxy, sans-IO.
#[derive(Debug, Clone)]
pub struct ProxyCore {
    config: ProxyConfig,
}

impl ProxyCore {
    /// A core with this configuration.
    pub fn new(config: ProxyConfig) -> ProxyCore {
        ProxyCore { config }
    }

    /// The configuration.
    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    /// §16.3 and §16.4 on a received request (not CANCEL: the transaction layer matches it).
    pub fn receive(&self, mut req: Message, _flow: &Flow) -> Step {
        let id = &self.config.identity;
        let in_dialog = match validate::checked(&req, id, &self.config.validation) {
            Ok(validate::Checked {
                valid: Valid::Forward,
                to_tagged,
            }) => to_tagged,
            Ok(validate::Checked {
                valid: Valid::AnswerOptions,
                ..
            }) => return validate::options_answer(&req).map_or(Step::Drop, Step::Respond),
            Err(refusal) => return refusal.response(&req).map_or(Step::Drop, Step::Respond),
        };
        if route::preprocess(&mut req, id).is_err() {
            return Refusal::status(400)
                .response(&req)
                .map_or(Step::Drop, Step::Respond);
        }
        if req.values(HeaderName::Route).next().is_some() {
            let target = ProxyTarget::uri(req.uri_str().unwrap_or_default());
            return Step::Forward(req, target);
        }
        // Only an in-dialog request needs its Request-URI looked at here.
        let foreign = || match req.request_uri() {
            Some(Ok(u)) => !id.serves(&u),
            _ => false,
        };
        if in_dialog && foreign() {
            let target = ProxyTarget::uri(req.uri_str().unwrap_or_default());
            return Step::Forward(req, target);
        }
        Step::Route(req)
    }

    /// §16.5: a router's decision as groups of targets to fork to (one group when parallel),
    /// or the response to send.
    pub fn decide(&self, req: &Message, decision: Decision) -> Routed {
        let respond = |status: u16, reason: Option<&str>| {
            let mut b = req.response(status);
            if let Some(r) = reason {
                b = b.reason(r);
            }
            b.build()
        };
        let built = match decision {
            Decision::Forward { mut targets, mode } => {
                if targets.is_empty() {
                    respond(480, None)
                } else {
                    targets.sort_by_key(|t| std::cmp::Reverse(t.q));
                    targets.truncate(self.config.max_targets.max(1));
                    return Routed::Fork(Decision::groups(targets, mode));
                }
            }
            Decision::Respond { status, reason }
                if status == 200 && req.method() == Some(Method::Options) =>
            {
                let _ = reason;
                validate::options_answer(req)
                    .ok_or(sip_core::Error::InvalidStatusCode { offset: 0 })
            }
            Decision::Respond { status, reason } => respond(status, reason.as_deref()),
            Decision::Redirect { contacts } => {
                let mut b = req.response(302);
                for c in contacts {
                    b = b.header("Contact", c);
                }
                b.build()
            }
        };
        match built {
            Ok(m) => Routed::Respond(m),
            // Unbuildable (a bad status from the router): 500.
            Err(_) => Routed::Respond(req.response(500).build().unwrap_or_else(|_| req.clone())),
        }
    }

    /// §16.6 for branch `index` of `req` (as preprocessed) to `target`.
    pub fn forward(
        &self,
        req: &Message,
        incoming: Option<&Flow>,
        target: &ProxyTarget,
        index: usize,
    ) -> Result<Forwarded, ForwardError> {
        let b = branch::branch(req, index);
        forward::forward(
            req,
            incoming,
            target,
            &b,
            &self.config.identity,
            &self.config.forward,
        )
    }

    /// An ACK of a 2xx (or any request a stateless front-end forwards): §16.3, §16.4, then one
    /// stateless forward along its Route or Request-URI. `None`: dropped.
    pub fn forward_stateless(&self, req: Message, flow: &Flow) -> Option<Forwarded> {
        let (req, target) = match self.receive(req, flow) {
            Step::Forward(req, target) => (req, target),
            Step::Route(req) => {
                // Without a router only a foreign Request-URI can be forwarded.
                let ours = match req.request_uri() {
                    Some(Ok(u)) => self.config.identity.serves(&u),
                    _ => true,
                };
                if ours {
                    return None;
                }
                let target = ProxyTarget::uri(req.uri_str()?);
                (req, target)
            }
            Step::Respond(_) | Step::Drop => return None,
        };
        stateless::forward_request(
            &req,
            Some(flow),
            &target,
            &self.config.identity,
            &self.config.forward,
        )
        .ok()
    }

    /// A response that matched no context: forwarded statelessly (§16.11), or dropped.
    pub fn forward_response(&self, resp: Message) -> Option<(Message, stateless::ResponseHop)> {
        stateless::forward_response(resp, &self.config.identity).ok()
    }
}

#[cfg(test)]
mod tests;
