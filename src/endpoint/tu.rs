//! Handing events to the TU without ever waiting for it, and without losing what it needs to
//! keep state right.
//!
//! - A new request goes to the TU only when the channel has room and nothing waits before it;
//!   otherwise it is answered 503 with Retry-After (explicit back-pressure) and counted.
//! - ACKs, CANCELs and flow open/close events are never dropped: what the channel cannot take
//!   waits in a backlog, in order, and is handed on as the TU reads. While the backlog is at its
//!   cap the driver stops reading from the transport (which in turn stops reading sockets), so
//!   the backlog stays bounded and nothing is lost.
//! - Stray responses (which anyone can forge) have a cap of their own, in the channel and
//!   backlog together; past it they are dropped and counted, so they cannot crowd out the rest.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::{ServerEvent, ServerTransaction};

/// Most events waiting in the backlog before the driver stops reading the transport.
pub(crate) const BACKLOG_CAP: usize = 65_536;

/// Most stray responses in the channel and backlog together.
pub(crate) const STRAY_CAP: usize = 256;

/// What became of an event.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// In the channel or the backlog.
    Accepted,
    /// A stray response over its cap: dropped (counted by the caller).
    StrayDropped,
    /// The TU is gone.
    Closed,
}

/// The sending side of the TU channel, with its backlog.
pub(crate) struct TuSender {
    tx: mpsc::Sender<ServerEvent>,
    backlog: VecDeque<ServerEvent>,
    /// Stray responses not yet taken by the TU (decremented by the receiving side).
    strays: Arc<AtomicUsize>,
    /// The largest the backlog has been.
    pub(crate) backlog_peak: usize,
}

impl TuSender {
    pub(crate) fn new(tx: mpsc::Sender<ServerEvent>, strays: Arc<AtomicUsize>) -> TuSender {
        TuSender {
            tx,
            backlog: VecDeque::new(),
            strays,
            backlog_peak: 0,
        }
    }

    /// Hands a new request to the TU if it can take it now; otherwise gives it back, for the
    /// caller to answer 503.
    pub(crate) fn try_request(&mut self, txn: ServerTransaction) -> Option<ServerTransaction> {
        if !self.backlog.is_empty() {
            return Some(txn);
        }
        match self.tx.try_send(ServerEvent::Request(txn)) {
            Ok(()) => None,
            Err(e) => match e.into_inner() {
                ServerEvent::Request(txn) => Some(txn),
                _ => None,
            },
        }
    }

    /// Hands on an event that must not be lost (or a stray response, within its cap).
    pub(crate) fn deliver(&mut self, ev: ServerEvent) -> Delivery {
        if let ServerEvent::StrayResponse { .. } = ev {
            if self.strays.load(Ordering::Relaxed) >= STRAY_CAP {
                return Delivery::StrayDropped;
            }
            self.strays.fetch_add(1, Ordering::Relaxed);
        }
        if self.backlog.is_empty() {
            match self.tx.try_send(ev) {
                Ok(()) => return Delivery::Accepted,
                Err(mpsc::error::TrySendError::Full(ev)) => self.backlog.push_back(ev),
                Err(mpsc::error::TrySendError::Closed(_)) => return Delivery::Closed,
            }
        } else {
            self.backlog.push_back(ev);
        }
        self.backlog_peak = self.backlog_peak.max(self.backlog.len());
        Delivery::Accepted
    }

    /// Events waiting for room in the channel.
    pub(crate) fn backlog(&self) -> usize {
        self.backlog.len()
    }

    /// Whether the transport may be read: the backlog is under its cap.
    pub(crate) fn accepting(&self) -> bool {
        self.backlog.len() < BACKLOG_CAP
    }

    /// Waits for room in the channel and moves as much of the backlog as fits. Pending forever
    /// while the backlog is empty (for use in `select!`).
    pub(crate) async fn drain(&mut self) {
        if self.backlog.is_empty() {
            return std::future::pending().await;
        }
        let Ok(permit) = self.tx.reserve().await else {
            self.backlog.clear();
            return;
        };
        if let Some(ev) = self.backlog.pop_front() {
            permit.send(ev);
        }
        while let Some(ev) = self.backlog.pop_front() {
            if let Err(e) = self.tx.try_send(ev) {
                if let mpsc::error::TrySendError::Full(ev) = e {
                    self.backlog.push_front(ev);
                }
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sip_core::{Flow, Transport};

    fn flow() -> Flow {
        Flow {
            transport: Transport::Tcp,
            local: "127.0.0.1:5060".parse().unwrap(),
            remote: "127.0.0.1:40000".parse().unwrap(),
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_full_channel_backlogs_in_order_and_loses_nothing() {
        let (tx, mut rx) = mpsc::channel(2);
        let mut tu = TuSender::new(tx, Arc::new(AtomicUsize::new(0)));
        for _ in 0..10 {
            assert_eq!(
                tu.deliver(ServerEvent::FlowOpened(flow())),
                Delivery::Accepted
            );
        }
        assert_eq!(tu.backlog(), 8);
        let mut got = 0;
        while got < 10 {
            tokio::select! {
                biased;
                Some(_) = rx.recv() => got += 1,
                _ = tu.drain() => {}
            }
        }
        assert_eq!(tu.backlog(), 0);
        assert_eq!(tu.backlog_peak, 8);
    }

    #[test]
    fn stray_responses_have_their_own_cap() {
        let (tx, _rx) = mpsc::channel(1);
        let strays = Arc::new(AtomicUsize::new(0));
        let mut tu = TuSender::new(tx, strays.clone());
        let resp = sip_core::Message::parse(
            &b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"[..],
        )
        .unwrap();
        let mut dropped = 0;
        for _ in 0..STRAY_CAP + 10 {
            let ev = ServerEvent::StrayResponse {
                response: resp.clone(),
                flow: flow(),
            };
            if tu.deliver(ev) == Delivery::StrayDropped {
                dropped += 1;
            }
        }
        assert_eq!(dropped, 10);
        // Other events still get through (into the backlog: the channel is full).
        assert_eq!(
            tu.deliver(ServerEvent::FlowOpened(flow())),
            Delivery::Accepted
        );
        assert_eq!(tu.backlog(), STRAY_CAP);
    }
}
