//! Running a [`Registrar`] on an [`Endpoint`]: requests in, responses out, flows that close drop
//! their bindings, expired bindings are swept, and UDP devices behind NAT are probed with
//! OPTIONS over the flow they registered on (spread over the interval, bounded in flight,
//! offline only after consecutive failures: [`super::probe`]).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use sip_core::builder::RequestBuilder;
use sip_core::random::{OsRandom, RandomSource, SeededRandom};
use sip_core::{Flow, Method, Target};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use super::probe::{spread, ProbeOptions, ProbeResult, ProbeTracker, ProbeVerdict};
use super::{LocationStore, Registrar, RegistrarEvent};
use crate::endpoint::{Endpoint, EndpointError, ServerEvent};
use sip_transaction::TerminationReason;

/// How a registrar service runs.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// Tasks taking requests from the endpoint (default 2).
    pub workers: usize,
    /// How often expired bindings are swept (default 1 s).
    pub sweep_interval: Duration,
    /// Probe every binding with OPTIONS over its flow once per interval, marking it offline
    /// after consecutive timeouts and online when a probe is answered (`None`: no probing).
    /// Keeps NAT bindings open for devices that the server must reach later.
    pub probe: Option<ProbeOptions>,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        ServiceOptions {
            workers: 2,
            sweep_interval: Duration::from_secs(1),
            probe: None,
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
    if let Some(probe) = options.probe {
        tasks.spawn(prober(endpoint.clone(), registrar.clone(), probe));
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
                    if let Some(ua) = endpoint
                        .user_agent()
                        .filter(|_| !r.has(sip_core::HeaderName::Server))
                    {
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

/// Probes every binding once per interval: each in its slot of the interval (with jitter), at
/// most `max_in_flight` at once, offline after `failures_before_offline` consecutive failures.
async fn prober<S: LocationStore>(
    endpoint: Endpoint,
    registrar: Arc<Registrar<S>>,
    options: ProbeOptions,
) {
    let tracker = Arc::new(Mutex::new(ProbeTracker::new()));
    let permits = Arc::new(Semaphore::new(options.max_in_flight.max(1)));
    let mut rng = SeededRandom::new(OsRandom.next_u64());
    tokio::time::sleep(options.interval).await;
    loop {
        let round = tokio::time::Instant::now();
        let bindings = registrar.store().all(Instant::now()).await;
        {
            let live: HashSet<(&str, Flow)> =
                bindings.iter().map(|(a, b)| (a.as_str(), b.flow)).collect();
            lock(&tracker).retain(|aor, flow| live.contains(&(aor, *flow)));
        }
        let offsets = spread(bindings.len(), options.interval, || rng.next_u64());
        for ((aor, binding), at) in bindings.into_iter().zip(offsets) {
            tokio::time::sleep_until(round + at).await;
            // Bounded in flight: when all slots are taken, the round waits (and runs late).
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let (endpoint, registrar, tracker) =
                (endpoint.clone(), registrar.clone(), tracker.clone());
            tokio::spawn(async move {
                let result = probe(&endpoint, &binding.contact, binding.flow).await;
                drop(permit);
                let verdict = lock(&tracker).record(
                    &aor,
                    binding.flow,
                    binding.offline,
                    result,
                    options.failures_before_offline,
                );
                apply(&registrar, aor, binding, verdict).await;
            });
        }
        tokio::time::sleep_until(round + options.interval).await;
    }
}

fn lock(t: &Mutex<ProbeTracker>) -> std::sync::MutexGuard<'_, ProbeTracker> {
    t.lock().unwrap_or_else(|e| e.into_inner())
}

async fn apply<S: LocationStore>(
    registrar: &Registrar<S>,
    aor: String,
    mut binding: super::Binding,
    verdict: ProbeVerdict,
) {
    let flow = binding.flow;
    match verdict {
        ProbeVerdict::Keep => {}
        ProbeVerdict::Online => {
            if registrar.store().set_offline(&aor, flow, false).await > 0 {
                info!(%aor, contact = %binding.contact, "binding reachable again");
                registrar.emit_event(RegistrarEvent::Alive { aor });
            }
        }
        ProbeVerdict::Offline => {
            if registrar.store().set_offline(&aor, flow, true).await > 0 {
                warn!(%aor, contact = %binding.contact, %flow, "binding unreachable");
                binding.offline = true;
                registrar.emit_event(RegistrarEvent::Offline { aor, binding });
            }
        }
    }
}

/// Sends an OPTIONS over the flow a binding registered on: answered (any final response),
/// failed (no final response, transport error) or not sent (the endpoint refused it, e.g.
/// its transaction table is full: that says nothing about the device).
async fn probe(endpoint: &Endpoint, contact: &str, flow: Flow) -> ProbeResult {
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
        return ProbeResult::NotSent;
    };
    let target = Target::new(flow.transport, flow.remote);
    let mut txn = match endpoint.request(req, target).await {
        Ok(t) => t,
        Err(e) => {
            debug!(%flow, error = %e, "probe not sent");
            return ProbeResult::NotSent;
        }
    };
    match txn.final_response().await {
        Ok(_) => ProbeResult::Answered,
        Err(EndpointError::NoFinalResponse(
            TerminationReason::Timeout(_) | TerminationReason::TransportError,
        )) => ProbeResult::Failed,
        Err(_) => ProbeResult::NotSent,
    }
}
