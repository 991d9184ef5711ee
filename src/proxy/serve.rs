//! Running a [`Proxy`] with a registrar on one Endpoint.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use sip_core::Method;
use tracing::{debug, info};

use super::identity::{Identity, Interface};
use super::service::Proxy;
use super::target::Router;
use crate::endpoint::{Endpoint, ServerEvent, ServerTransaction};
use crate::registrar::{LocationStore, Registrar};

/// Our identity on an endpoint (RFC 3261 §16.4): every listener, advertised as the endpoint
/// advertises its transport ([`EndpointBuilder::advertise`](crate::endpoint::EndpointBuilder::advertise),
/// else the bound address), and `domains`.
pub fn identity_of(endpoint: &Endpoint, domains: Vec<String>) -> Identity {
    let interfaces = endpoint
        .transport()
        .local_addrs()
        .into_iter()
        .map(|(t, local)| Interface {
            transport: t,
            local,
            advertised: endpoint.advertised(t).unwrap_or_else(|| local.to_string()),
        })
        .collect();
    Identity::new(interfaces, domains)
}

/// Serves `proxy` on its endpoint until the endpoint shuts down: REGISTER goes to the
/// registrar (when given), flows that close drop their bindings, everything else to the
/// proxy. `workers` tasks take events.
pub async fn serve<R: Router, S: LocationStore>(
    proxy: Arc<Proxy<R>>,
    registrar: Option<Arc<Registrar<S>>>,
    workers: usize,
) {
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(reg) = registrar.clone() {
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                reg.sweep(Instant::now()).await;
            }
        });
    }
    for _ in 0..workers.max(1) {
        let proxy = proxy.clone();
        let registrar = registrar.clone();
        tasks.spawn(async move {
            let endpoint = proxy.endpoint().clone();
            while let Some(ev) = endpoint.next_event().await {
                match (ev, &registrar) {
                    (ServerEvent::Request(txn), Some(reg))
                        if txn.request().method() == Some(Method::Register) =>
                    {
                        register(&endpoint, reg, txn).await
                    }
                    (ServerEvent::FlowClosed { flow, reason }, Some(reg)) => {
                        let n = reg.flow_closed(flow).await;
                        if n > 0 {
                            info!(%flow, %reason, bindings = n, "flow closed");
                        }
                    }
                    (ev, _) => proxy.handle_event(ev).await,
                }
            }
        });
    }
    // The workers end when the endpoint does; then the sweeper is stopped too.
    while let Some(r) = tasks.join_next().await {
        if r.is_ok() {
            tasks.abort_all();
        }
    }
}

async fn register<S: LocationStore>(
    endpoint: &Endpoint,
    registrar: &Registrar<S>,
    txn: ServerTransaction,
) {
    let response = registrar
        .handle(txn.request(), txn.flow(), Instant::now(), SystemTime::now())
        .await;
    if let Some(mut r) = response {
        if let Some(ua) = endpoint.user_agent() {
            let at = r.header_count().saturating_sub(1);
            let _ = r.insert_header(at, "Server", ua);
        }
        if let Err(e) = txn.respond(r).await {
            debug!(error = %e, "response not sent");
        }
    }
}
