//! RFC 3261 §16.5: determining the request targets, through a [`Router`] the application
//! implements. [`LocationRouter`] is the default: the registrar's [`LocationStore`] for the
//! domains we serve, the Request-URI itself (or 403) for the others.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use sip_core::uri::Uri;
use sip_core::{Flow, Message, Method};

use super::identity::Identity;
use crate::registrar::{Binding, LocationStore, Registrar};

/// One target of a request (§16.5): where to send it, and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyTarget {
    /// The URI that becomes the Request-URI (§16.6 step 2).
    pub uri: String,
    /// The q-value in thousandths (1000 when absent), for sequential forking.
    pub q: u16,
    /// The flow the target registered over, to reach it through NAT or on its connection
    /// (RFC 5626 outbound, TCP/TLS clients).
    pub flow: Option<Flow>,
    /// RFC 3327 Path values of its registration, top first: they become Route values.
    pub path: Vec<String>,
    /// The binding uses RFC 5626 outbound: only its flow reaches it.
    pub outbound: bool,
}

impl ProxyTarget {
    /// A target reached by its URI alone.
    pub fn uri(uri: impl Into<String>) -> ProxyTarget {
        ProxyTarget {
            uri: uri.into(),
            q: 1000,
            flow: None,
            path: Vec::new(),
            outbound: false,
        }
    }

    /// A target from a registrar binding.
    pub fn from_binding(b: &Binding) -> ProxyTarget {
        ProxyTarget {
            uri: b.contact.to_string(),
            q: b.q,
            flow: Some(b.flow),
            path: b.path().iter().map(|p| p.to_string()).collect(),
            outbound: b.is_outbound(),
        }
    }
}

/// How to try several targets (§16.6: "in parallel, or one after another by q-value").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ForkMode {
    /// All at once.
    #[default]
    Parallel,
    /// Groups of equal q, highest first; the next group is tried when every branch of the
    /// previous one failed (no 2xx, no 6xx).
    Sequential,
}

/// What the router decided for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Forward to these targets.
    Forward {
        /// The targets (empty: answered 480).
        targets: Vec<ProxyTarget>,
        /// Parallel or sequential.
        mode: ForkMode,
    },
    /// Answer with this status (404, 403, 480…).
    Respond {
        /// The status.
        status: u16,
        /// A reason phrase other than the default.
        reason: Option<String>,
    },
    /// Answer 302 with these Contacts (a redirect server, §8.3).
    Redirect {
        /// The Contact values.
        contacts: Vec<String>,
    },
}

impl Decision {
    /// A response with the default reason.
    pub fn respond(status: u16) -> Decision {
        Decision::Respond {
            status,
            reason: None,
        }
    }

    /// Splits forward targets into the groups tried one after another (§16.6: sequential
    /// search by q-value; parallel: one group).
    pub fn groups(targets: Vec<ProxyTarget>, mode: ForkMode) -> Vec<Vec<ProxyTarget>> {
        match mode {
            ForkMode::Parallel => vec![targets],
            ForkMode::Sequential => {
                let mut sorted = targets;
                sorted.sort_by_key(|t| std::cmp::Reverse(t.q));
                let mut groups: Vec<Vec<ProxyTarget>> = Vec::new();
                for t in sorted {
                    match groups.last_mut() {
                        Some(g) if g.first().is_some_and(|f| f.q == t.q) => g.push(t),
                        _ => groups.push(vec![t]),
                    }
                }
                groups
            }
        }
    }
}

/// Decides the targets of requests that the proxy routes itself (not loose-routed by a
/// Route header set). The request has been validated and its Route preprocessed (§16.4).
pub trait Router: Send + Sync + 'static {
    /// The decision for `request` at `now`.
    fn route(&self, request: &Message, now: Instant) -> impl Future<Output = Decision> + Send;
}

/// What to do with requests for domains we do not serve (§16.5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ForeignPolicy {
    /// Forward by the Request-URI.
    #[default]
    Forward,
    /// Refuse with 403.
    Refuse,
}

/// The default router: the registrar's bindings for our domains (and for requests addressed
/// to our own address), forked in parallel (or sequentially); foreign domains by policy.
pub struct LocationRouter<S: LocationStore> {
    registrar: Arc<Registrar<S>>,
    identity: Identity,
    foreign: ForeignPolicy,
    mode: ForkMode,
}

impl<S: LocationStore> LocationRouter<S> {
    /// A router over `registrar`'s bindings. `identity` says which domains and addresses are
    /// ours; the AOR looked up is `sip:user@<realm>` for both.
    pub fn new(registrar: Arc<Registrar<S>>, identity: Identity) -> LocationRouter<S> {
        LocationRouter {
            registrar,
            identity,
            foreign: ForeignPolicy::Forward,
            mode: ForkMode::Parallel,
        }
    }

    /// What to do with foreign domains.
    pub fn foreign(mut self, policy: ForeignPolicy) -> Self {
        self.foreign = policy;
        self
    }

    /// Parallel (default) or sequential forking.
    pub fn fork_mode(mut self, mode: ForkMode) -> Self {
        self.mode = mode;
        self
    }

    /// The AOR a Request-URI we serve stands for: `sip:user@domain`, with our own address
    /// replaced by the realm.
    pub fn aor_of(&self, uri: &Uri<'_>) -> Option<String> {
        let user = uri.user()?;
        let host = uri.host_str().to_ascii_lowercase();
        let domain = if self.identity.is_our_domain(&host) {
            host
        } else {
            self.registrar.config().realm.to_ascii_lowercase()
        };
        Some(format!("sip:{user}@{domain}"))
    }
}

/// Targets for the bindings of an AOR: online ones; 480 when all are offline, 404 when none.
pub fn decide_from_bindings(bindings: &[Binding], mode: ForkMode) -> Decision {
    if bindings.is_empty() {
        return Decision::respond(404);
    }
    let targets: Vec<ProxyTarget> = bindings
        .iter()
        .filter(|b| !b.offline)
        .map(ProxyTarget::from_binding)
        .collect();
    if targets.is_empty() {
        return Decision::respond(480);
    }
    Decision::Forward { targets, mode }
}

impl<S: LocationStore> Router for LocationRouter<S> {
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
        let Some(aor) = self.aor_of(&uri) else {
            // The proxy itself, or a domain without a user.
            return if request.method() == Some(Method::Options) {
                Decision::respond(200)
            } else {
                Decision::respond(404)
            };
        };
        let bindings = self.registrar.store().lookup(&aor, now).await;
        decide_from_bindings(&bindings, self.mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::identity::Interface;
    use crate::registrar::RegistrarConfig;
    use sip_core::Transport;
    use std::time::SystemTime;

    fn flow(port: u16) -> Flow {
        Flow {
            transport: Transport::Udp,
            local: "192.0.2.1:5060".parse().unwrap(),
            remote: format!("192.0.2.{port}:5060").parse().unwrap(),
        }
    }

    async fn register(r: &Registrar, user: &str, contact: &str, q: &str, f: Flow) {
        let req = Message::parse(
            format!(
                "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP x;branch=z9hG4bK{contact}\r\n\
                 To: <sip:{user}@example.com>\r\nFrom: <sip:{user}@example.com>;tag=1\r\n\
                 Call-ID: {contact}\r\nCSeq: 1 REGISTER\r\nContact: <{contact}>;q={q}\r\n\
                 Content-Length: 0\r\n\r\n"
            )
            .into_bytes(),
        )
        .unwrap();
        let resp = r
            .handle(&req, f, Instant::now(), SystemTime::now())
            .await
            .unwrap();
        assert_eq!(resp.status(), Some(200));
    }

    fn invite(ruri: &str) -> Message {
        Message::parse(
            format!(
                "INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\n\
                 From: <sip:a@example.com>;tag=1\r\nTo: <{ruri}>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
                 Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            )
            .into_bytes(),
        )
        .unwrap()
    }

    fn identity() -> Identity {
        Identity::new(
            vec![Interface::new(
                Transport::Udp,
                "192.0.2.1:5060".parse().unwrap(),
            )],
            vec!["example.com".into()],
        )
    }

    #[tokio::test]
    async fn location_lookup_forks_and_refuses() {
        let reg = Arc::new(Registrar::open(RegistrarConfig::new("example.com")));
        register(&reg, "bob", "sip:bob@192.0.2.20:5062", "1.0", flow(20)).await;
        register(&reg, "bob", "sip:bob@192.0.2.21:5062", "0.5", flow(21)).await;
        let router = LocationRouter::new(reg.clone(), identity());
        let now = Instant::now();
        match router.route(&invite("sip:bob@example.com"), now).await {
            Decision::Forward { targets, mode } => {
                assert_eq!(mode, ForkMode::Parallel);
                assert_eq!(targets.len(), 2);
                assert_eq!(targets[0].flow, Some(flow(20)));
            }
            other => panic!("{other:?}"),
        }
        // Addressed to the proxy's own address: the realm's user.
        assert!(matches!(
            router.route(&invite("sip:bob@192.0.2.1:5060"), now).await,
            Decision::Forward { .. }
        ));
        assert_eq!(
            router.route(&invite("sip:nobody@example.com"), now).await,
            Decision::respond(404)
        );
        // Foreign domains: forwarded by Request-URI, or refused by setting.
        assert_eq!(
            router.route(&invite("sip:carol@example.org"), now).await,
            Decision::Forward {
                targets: vec![ProxyTarget::uri("sip:carol@example.org")],
                mode: ForkMode::Parallel
            }
        );
        let strict = LocationRouter::new(reg, identity()).foreign(ForeignPolicy::Refuse);
        assert_eq!(
            strict.route(&invite("sip:carol@example.org"), now).await,
            Decision::respond(403)
        );
    }

    #[test]
    fn sequential_groups_by_q() {
        let t = |u: &str, q| ProxyTarget {
            q,
            ..ProxyTarget::uri(u)
        };
        let groups = Decision::groups(
            vec![t("sip:a@x", 500), t("sip:b@x", 1000), t("sip:c@x", 500)],
            ForkMode::Sequential,
        );
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0], vec![t("sip:b@x", 1000)]);
        assert_eq!(groups[1].len(), 2);
        assert_eq!(
            Decision::groups(vec![t("sip:a@x", 1)], ForkMode::Parallel).len(),
            1
        );
    }
}
