//! Running a [`Registrar`] on an [`Endpoint`]: requests in, responses out, flows that close drop
//! their bindings, expired bindings are swept, and UDP devices behind NAT are probed with
//! OPTIONS over the flow they registered on.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sip_core::builder::RequestBuilder;
use sip_core::{Method, Target};
use tracing::{debug, info, warn};

use super::{LocationStore, Registrar, RegistrarEvent};
use crate::endpoint::{Endpoint, ServerEvent};

/// How a registrar service runs.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// Tasks taking requests from the endpoint (default 2).
    pub workers: usize,
    /// How often expired bindings are swept (default 1 s).
    pub sweep_interval: Duration,
    /// Probe every binding with OPTIONS over its flow at this interval, marking it offline when
    /// the probe times out and online when it is answered (`None`: no probing). Keeps NAT
    /// bindings open for devices that the server must reach later.
    pub probe_interval: Option<Duration>,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        ServiceOptions {
            workers: 2,
            sweep_interval: Duration::from_secs(1),
            probe_interval: None,
        }
    }
}

/// Serves `registrar` on `endpoint` until the endpoint shuts down.
pub async fn serve<S: LocationStore>(
    endpoint: Endpoint,
    registrar: Arc<Registrar<S>>,
    options: ServiceOptions,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..options.workers.max(1) {
        tasks.spawn(worker(endpoint.clone(), registrar.clone()));
    }
    {
        let registrar = registrar.clone();
        let every = options.sweep_interval;
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                registrar.sweep(Instant::now()).await;
            }
        });
    }
    if let Some(every) = options.probe_interval {
        tasks.spawn(prober(endpoint.clone(), registrar.clone(), every));
    }
    // The workers end when the endpoint does; then the timers are stopped too.
    while let Some(r) = tasks.join_next().await {
        if r.is_ok() {
            tasks.abort_all();
        }
    }
}

async fn worker<S: LocationStore>(endpoint: Endpoint, registrar: Arc<Registrar<S>>) {
    while let Some(ev) = endpoint.next_event().await {
        match ev {
            ServerEvent::Request(txn) => {
                let response = registrar
                    .handle(txn.request(), txn.flow(), Instant::now(), SystemTime::now())
                    .await;
                if let Some(mut r) = response {
                    if let Some(ua) = endpoint.user_agent() {
                        // Before Content-Length, which the builder puts last.
                        let at = r.header_count().saturating_sub(1);
                        let _ = r.insert_header(at, "Server", ua);
                    }
                    if let Err(e) = txn.respond(r).await {
                        debug!(error = %e, "response not sent");
                    }
                }
            }
            ServerEvent::FlowClosed { flow, reason } => {
                let n = registrar.flow_closed(flow).await;
                if n > 0 {
                    info!(%flow, %reason, bindings = n, "flow closed");
                }
            }
            _ => {}
        }
    }
}

async fn prober<S: LocationStore>(
    endpoint: Endpoint,
    registrar: Arc<Registrar<S>>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        for (aor, b) in registrar.store().all(Instant::now()).await {
            let endpoint = endpoint.clone();
            let registrar = registrar.clone();
            tokio::spawn(async move {
                let flow = b.flow;
                let alive = probe(&endpoint, &b.contact, flow).await;
                let changed = registrar.store().set_offline(&aor, flow, !alive).await > 0;
                if changed && alive == b.offline {
                    if alive {
                        info!(%aor, contact = %b.contact, "binding reachable again");
                        registrar.emit_event(RegistrarEvent::Alive { aor });
                    } else {
                        warn!(%aor, contact = %b.contact, %flow, "binding unreachable");
                        let mut binding = b;
                        binding.offline = true;
                        registrar.emit_event(RegistrarEvent::Offline { aor, binding });
                    }
                }
            });
        }
    }
}

/// Sends an OPTIONS over the flow a binding registered on; true when anything answers.
async fn probe(endpoint: &Endpoint, contact: &str, flow: sip_core::Flow) -> bool {
    let local = flow.local;
    let Ok(req) = RequestBuilder::new(Method::Options, contact)
        .header("Via", endpoint.via(flow.transport))
        .header(
            "From",
            format!("<sip:registrar@{local}>;tag={}", endpoint.new_tag()),
        )
        .header("To", format!("<{contact}>"))
        .header("Call-ID", endpoint.new_call_id())
        .header("CSeq", "1 OPTIONS")
        .build()
    else {
        return false;
    };
    let target = Target::new(flow.transport, flow.remote);
    match endpoint.request(req, target).await {
        Ok(mut t) => t.final_response().await.is_ok(),
        Err(_) => false,
    }
}
