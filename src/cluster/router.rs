//! [`ClusterRouter`]: the proxy's [`Router`] over a [`RedisLocationStore`], forwarding to the
//! node that holds a binding's flow when that is another node.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use sip_core::{Message, Method};

use super::store::{Owner, RedisLocationStore};
use crate::proxy::{
    Decision, ForeignPolicy, ForkMode, Identity, LocationRouter, ProxyTarget, Router,
};
use crate::registrar::Registrar;

/// The Request-URI parameter that tells a node to reach only the bindings whose flow it holds
/// (set by the node that forwarded the request to it).
pub const NODE_PARAM: &str = "cluster-node";

/// Routes like [`LocationRouter`], with the cluster's rule for flow-bound bindings: one that
/// this node holds (or that any node can reach) is a target as usual; those another node holds
/// become one target per such node, sent there with a Route to its URI and the Request-URI
/// `sip:user@domain;cluster-node=NAME` (Path-like: the device's own address may be reachable
/// only over that node's flow); those of a node whose heartbeat lapsed are left out. A request
/// carrying `cluster-node=` with this node's name reaches only the bindings it holds, so a
/// request never bounces between nodes. Redis unavailable: 503.
pub struct ClusterRouter {
    inner: LocationRouter<RedisLocationStore>,
    registrar: Arc<Registrar<RedisLocationStore>>,
    identity: Identity,
    foreign: ForeignPolicy,
}

impl ClusterRouter {
    /// A router over `registrar`'s Redis store; `identity` says which domains and addresses
    /// are ours.
    pub fn new(registrar: Arc<Registrar<RedisLocationStore>>, identity: Identity) -> ClusterRouter {
        ClusterRouter {
            inner: LocationRouter::new(registrar.clone(), identity.clone()),
            registrar,
            identity,
            foreign: ForeignPolicy::Forward,
        }
    }

    /// What to do with foreign domains.
    pub fn foreign(mut self, policy: ForeignPolicy) -> Self {
        self.foreign = policy;
        self
    }
}

impl Router for ClusterRouter {
    async fn route(&self, request: &Message, now: Instant) -> Decision {
        let Some(Ok(uri)) = request.request_uri() else {
            return Decision::respond(416);
        };
        if !self.identity.serves(&uri) {
            return match self.foreign {
                ForeignPolicy::Forward => Decision::Forward {
                    targets: vec![ProxyTarget::uri(uri.as_str())],
                    mode: ForkMode::Parallel,
                },
                ForeignPolicy::Refuse => Decision::respond(403),
            };
        }
        let Some(aor) = self.inner.aor_of(&uri) else {
            return if request.method() == Some(Method::Options) {
                Decision::respond(200)
            } else {
                Decision::respond(404)
            };
        };
        let store = self.registrar.store();
        let me = store.config().node.as_str();
        let only_mine = uri.param(NODE_PARAM).flatten() == Some(me);
        let bindings = match store.lookup_routes(&aor, now).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(%aor, error = %e, "location store unavailable");
                return Decision::Respond {
                    status: 503,
                    reason: Some("Location Store Unavailable".into()),
                };
            }
        };
        if bindings.is_empty() {
            return Decision::respond(404);
        }
        let mut targets = Vec::new();
        let mut remote: BTreeMap<String, (String, u16)> = BTreeMap::new();
        for (b, owner) in &bindings {
            if b.offline {
                continue;
            }
            match owner {
                Owner::Here => targets.push(ProxyTarget::from_binding(b)),
                // Registered on another node but reachable from any: that node's UDP socket
                // is not ours, so it is reached at its contact.
                Owner::Anyone if !only_mine => targets.push(ProxyTarget {
                    flow: None,
                    ..ProxyTarget::from_binding(b)
                }),
                Owner::Anyone => {}
                Owner::Node { name, uri } if !only_mine => {
                    let e = remote.entry(name.clone()).or_insert((uri.clone(), b.q));
                    e.1 = e.1.max(b.q);
                }
                Owner::Node { .. } => {}
                Owner::Dead(name) => {
                    tracing::debug!(%aor, node = %name, contact = %b.contact, "binding of a dead node skipped");
                }
            }
        }
        for (name, (node_uri, q)) in remote {
            targets.push(ProxyTarget {
                uri: format!("{aor};{NODE_PARAM}={name}"),
                q,
                flow: None,
                path: vec![format!("<{node_uri};lr>")],
                outbound: false,
            });
        }
        if targets.is_empty() {
            return Decision::respond(480);
        }
        Decision::Forward {
            targets,
            mode: ForkMode::Parallel,
        }
    }
}
