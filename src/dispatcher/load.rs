//! [`LoadReporter`]: a node's side of load-aware dispatching.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sip_core::{Flow, Message, Method};

use crate::endpoint::{Endpoint, StatelessResponder};

/// The header a node's OPTIONS answers carry its load in: its live transactions.
pub const LOAD_HEADER: &str = "X-Load";

/// Answers OPTIONS addressed to the node itself (a Request-URI without a user part, as the
/// dispatcher's probes are) at once and statelessly, with the node's load in [`LOAD_HEADER`];
/// every other request goes to the wrapped responder (the registrar's, usually).
pub struct LoadReporter<R: StatelessResponder> {
    inner: Option<Arc<R>>,
    load: Arc<AtomicU64>,
}

impl<R: StatelessResponder> LoadReporter<R> {
    /// Wraps `inner` (or nothing); the load starts at 0 (see [`LoadReporter::track`]).
    pub fn new(inner: Option<Arc<R>>) -> LoadReporter<R> {
        LoadReporter {
            inner,
            load: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Sets the load reported.
    pub fn set_load(&self, load: u64) {
        self.load.store(load, Ordering::Relaxed);
    }

    /// Copies the Endpoint's live transaction count into the reported load every `every`,
    /// until the reporter is dropped.
    pub fn track(
        self: &Arc<Self>,
        endpoint: Endpoint,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let load = self.load.clone();
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if weak.strong_count() == 0 {
                    return;
                }
                load.store(endpoint.counters().live as u64, Ordering::Relaxed);
            }
        })
    }
}

impl<R: StatelessResponder> StatelessResponder for LoadReporter<R> {
    fn respond(&self, request: &Message, flow: Flow) -> Option<Message> {
        if request.method() == Some(Method::Options) {
            let to_node = request
                .request_uri()
                .and_then(|u| u.ok())
                .is_some_and(|u| u.user().is_none());
            if to_node {
                return request
                    .response(200)
                    .header(LOAD_HEADER, self.load.load(Ordering::Relaxed).to_string())
                    .build()
                    .ok();
            }
        }
        self.inner.as_ref()?.respond(request, flow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sip_core::Transport;

    struct Never;
    impl StatelessResponder for Never {
        fn respond(&self, _: &Message, _: Flow) -> Option<Message> {
            None
        }
    }

    #[test]
    fn options_to_the_node_answered_with_load() {
        let r = LoadReporter::<Never>::new(Some(Arc::new(Never)));
        r.set_load(42);
        let flow = Flow {
            transport: Transport::Udp,
            local: "192.0.2.1:5060".parse().unwrap(),
            remote: "192.0.2.2:5060".parse().unwrap(),
        };
        let req = |uri: &str| {
            Message::parse(
                format!(
                    "OPTIONS {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.2;branch=z9hG4bKp\r\n\
                     From: <sip:d@x>;tag=1\r\nTo: <{uri}>\r\nCall-ID: p\r\nCSeq: 1 OPTIONS\r\n\
                     Content-Length: 0\r\n\r\n"
                )
                .into_bytes(),
            )
            .unwrap()
        };
        let resp = r.respond(&req("sip:192.0.2.1:5060"), flow).unwrap();
        assert_eq!(resp.status(), Some(200));
        let load: Vec<&[u8]> = resp.headers_named(LOAD_HEADER).collect();
        assert_eq!(load, vec![&b"42"[..]]);
        // OPTIONS to a user is the proxy's business.
        assert!(r.respond(&req("sip:bob@example.com"), flow).is_none());
    }
}
