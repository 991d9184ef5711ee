//! Plumbing of the proxy shell: name resolution of next hops, the clock, waits, branch ends
//! and latency metrics. No protocol decisions.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use sip_core::{Message, Method, Target, Transport};
use sip_transaction::{Destination, TerminationReason};
use tokio::sync::oneshot;

use super::context::BranchEnd;
use super::forward::NextHop;
use super::stateless::ResponseHop;
use crate::endpoint::{ClientTransaction, EndpointError};

pub(super) async fn resolve(transport: Transport, host: &str, port: u16) -> Option<Target> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(Target::new(transport, SocketAddr::new(ip, port)));
    }
    let addr = tokio::net::lookup_host((host, port)).await.ok()?.next()?;
    let mut t = Target::new(transport, addr);
    t.server_name = Some(host.to_owned());
    Some(t)
}

/// The target of a next hop. A host name is looked up in a boxed future: the lookup is
/// rare (IP literals are the rule) and its future large, and inline it would weigh on every
/// forward's future.
pub(super) async fn hop_target(hop: &NextHop) -> Option<Target> {
    match hop {
        NextHop::Flow(f) => Some(Target::new(f.transport, f.remote)),
        NextHop::Address {
            transport,
            host,
            port,
        } => match host.parse::<IpAddr>() {
            Ok(ip) => Some(Target::new(*transport, SocketAddr::new(ip, *port))),
            Err(_) => Box::pin(resolve(*transport, host, *port)).await,
        },
    }
}

pub(super) async fn response_destination(hop: ResponseHop) -> Option<Destination> {
    match hop {
        ResponseHop::Address(t, a) => Some(Destination::Target(Target::new(t, a))),
        ResponseHop::Name(t, h, p) => Box::pin(resolve(t, &h, p)).await.map(Destination::Target),
    }
}

/// The metric name of a method (a label must not grow without bound: others are "other").
fn method_label(m: Option<Method<'_>>) -> &'static str {
    match m {
        Some(Method::Invite) => "INVITE",
        Some(Method::Bye) => "BYE",
        Some(Method::Options) => "OPTIONS",
        Some(Method::Message) => "MESSAGE",
        Some(Method::Subscribe) => "SUBSCRIBE",
        Some(Method::Notify) => "NOTIFY",
        Some(Method::Info) => "INFO",
        Some(Method::Update) => "UPDATE",
        Some(Method::Prack) => "PRACK",
        Some(Method::Refer) => "REFER",
        _ => "other",
    }
}

/// Latency from a request's arrival to its first final response upstream, through the
/// `metrics` facade (a no-op unless the application installs a recorder):
/// `sip_proxy_request_seconds{method}`, and `sip_proxy_call_setup_seconds` for INVITE.
pub(super) fn record_latency(req: &Message, d: std::time::Duration) {
    let method = req.method();
    let secs = d.as_secs_f64();
    metrics::histogram!("sip_proxy_request_seconds", "method" => method_label(method)).record(secs);
    if method == Some(Method::Invite) {
        metrics::histogram!("sip_proxy_call_setup_seconds").record(secs);
    }
}

/// Fires once when the CANCEL receiver does; never when there is none (or it was dropped).
pub(super) async fn wait_cancel(rx: &mut Option<oneshot::Receiver<()>>) {
    match rx {
        Some(r) => {
            if r.await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

/// The next response of a branch, or never when there is none.
pub(super) async fn next_response(ct: &mut Option<ClientTransaction>) -> Option<Box<Message>> {
    match ct {
        Some(c) => c.next_response_boxed().await,
        None => std::future::pending().await,
    }
}

/// Why a branch's transaction ended without (more) responses: a transport error counts as
/// 503, anything else as 408 (§16.7 step 2).
pub(super) async fn end_reason(ct: Option<ClientTransaction>) -> BranchEnd {
    let Some(mut ct) = ct else {
        return BranchEnd::Timeout;
    };
    match ct.final_response().await {
        Err(EndpointError::NoFinalResponse(TerminationReason::TransportError)) => {
            BranchEnd::TransportError
        }
        _ => BranchEnd::Timeout,
    }
}

/// tokio's clock, so that tests with paused time drive Timer C.
pub(super) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Sleeps until `deadline`, or for ever without one.
pub(super) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
        None => std::future::pending().await,
    }
}
