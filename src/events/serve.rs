//! A proxy, a registrar and an [`EventServer`] on one endpoint: the domain server of
//! `proxy --presence`. The registrar's events keep the event server's view of registrations
//! ([`EventServer::set_registered`]) current, so presence follows registration.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sip_core::Method;
use tokio::sync::broadcast::error::RecvError;
use tracing::{debug, info};

use super::server::{EventServer, Handled};
use crate::endpoint::ServerEvent;
use crate::proxy::{AuthCheck, Proxy, Router};
use crate::registrar::{LocationStore, Registrar, RegistrarEvent};

/// The live, reachable contacts of `aor` told to the event server (presence watchers get a
/// NOTIFY when that changes the state).
async fn update_registered<S: LocationStore>(
    registrar: &Registrar<S>,
    events: &Arc<EventServer>,
    aor: &str,
) {
    let contacts = registrar
        .store()
        .lookup(aor, Instant::now())
        .await
        .iter()
        .filter(|b| !b.offline)
        .map(|b| b.contact.to_string())
        .collect();
    events.set_registered(aor, contacts);
}

/// Serves until the endpoint shuts down: SUBSCRIBE, PUBLISH and MESSAGE go to `events` first
/// (after the proxy's digest check of the realm's users, when it has one; `events` hands back
/// what is not its own), REGISTER to the registrar (unless the endpoint
/// answers it statelessly), the rest to the proxy. A user that registers gets its stored
/// messages, and its watchers see it `open` (see [`EventServer::set_registered`]). `workers`
/// tasks take events.
pub async fn serve<R: Router, S: LocationStore>(
    proxy: Arc<Proxy<R>>,
    registrar: Arc<Registrar<S>>,
    events: Arc<EventServer>,
    workers: usize,
) {
    let mut tasks = tokio::task::JoinSet::new();
    {
        let reg = registrar.clone();
        let ev = events.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut sweep = tokio::time::interval(EventServer::SWEEP);
            sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => { reg.sweep(Instant::now()).await; }
                    _ = sweep.tick() => ev.sweep(Instant::now()),
                }
            }
        });
    }
    {
        let mut registered = registrar.events();
        let reg = registrar.clone();
        let ev = events.clone();
        tasks.spawn(async move {
            loop {
                match registered.recv().await {
                    Ok(RegistrarEvent::Registered { aor, .. })
                    | Ok(RegistrarEvent::Refreshed { aor, .. }) => {
                        update_registered(&reg, &ev, &aor).await;
                        if ev.has_stored(&aor) {
                            // Let the registrar's 200 go out before the first stored message.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            let bindings = reg.store().lookup(&aor, Instant::now()).await;
                            ev.deliver_stored(&aor, bindings);
                        }
                    }
                    Ok(RegistrarEvent::Unregistered { aor, .. })
                    | Ok(RegistrarEvent::Expired { aor, .. })
                    | Ok(RegistrarEvent::Offline { aor, .. }) => {
                        update_registered(&reg, &ev, &aor).await;
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(n)) => debug!(n, "registration events missed"),
                    Err(RecvError::Closed) => break,
                }
            }
        });
    }
    for _ in 0..workers.max(1) {
        let proxy = proxy.clone();
        let registrar = registrar.clone();
        let events = events.clone();
        tasks.spawn(async move {
            let endpoint = proxy.endpoint().clone();
            while let Some(ev) = endpoint.next_event().await {
                match ev {
                    ServerEvent::Request(txn) => {
                        let method = txn.request().method();
                        if method == Some(Method::Register) {
                            let resp = registrar
                                .handle(
                                    txn.request(),
                                    txn.flow(),
                                    Instant::now(),
                                    SystemTime::now(),
                                )
                                .await;
                            if let Some(r) = resp {
                                let _ = txn.respond(r).await;
                            }
                            continue;
                        }
                        if !matches!(
                            method,
                            Some(Method::Subscribe | Method::Publish | Method::Message)
                        ) {
                            proxy.handle_event(ServerEvent::Request(txn)).await;
                            continue;
                        }
                        let events = events.clone();
                        let proxy = proxy.clone();
                        let registrar = registrar.clone();
                        tokio::spawn(async move {
                            // The realm's users authenticate first (407), as for the proxy.
                            if let Some(auth) = proxy.auth() {
                                let req = txn.request();
                                let check =
                                    auth.check(req, txn.flow().remote.ip(), SystemTime::now());
                                if let AuthCheck::Refuse(r) = check {
                                    if let Some(resp) = r.response(req) {
                                        let _ = txn.respond(resp).await;
                                    }
                                    return;
                                }
                            }
                            let online = |aor: String| async move {
                                registrar
                                    .store()
                                    .lookup(&aor, Instant::now())
                                    .await
                                    .iter()
                                    .any(|b| !b.offline)
                            };
                            if let Handled::Route(txn) = events.handle(txn, online).await {
                                proxy.handle_event(ServerEvent::Request(*txn)).await;
                            }
                        });
                    }
                    ServerEvent::FlowClosed { flow, reason } => {
                        let n = registrar.flow_closed(flow).await;
                        if n > 0 {
                            info!(%flow, %reason, bindings = n, "flow closed");
                        }
                    }
                    ev => proxy.handle_event(ev).await,
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        if r.is_ok() {
            tasks.abort_all();
        }
    }
}
