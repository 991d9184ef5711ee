//! The transaction table: creation and removal, the TU actions, timers and the output queues
//! (matching of received messages is in [`inbound`](crate::inbound)).

use std::time::Instant;

use sip_core::{Flow, Message, Method, Target};

use crate::config::Config;
use crate::error::Error;
use crate::event::{Destination, Event, TerminationReason, TransactionKey, Transmit};
use crate::index::Index;
use crate::key;
use crate::messages;
use crate::stats::{StateCounts, Stats};
use crate::table::{Slab, MAX_SLOTS};
use crate::timer::{Slot, SLOTS};
use crate::txn::{Kind, Out, Peer, State, Step, Transaction};

/// Every transaction of an endpoint, sans-IO.
///
/// Inputs take the current time: [`handle_message`](Self::handle_message) for what the
/// transport received, [`handle_timeout`](Self::handle_timeout) when
/// [`poll_timeout`](Self::poll_timeout) is due, [`handle_transport_error`](Self::handle_transport_error),
/// and the TU's actions [`send_request`](Self::send_request), [`respond`](Self::respond),
/// [`send_stateless`](Self::send_stateless). Outputs are drained with
/// [`poll_transmit`](Self::poll_transmit) and [`poll_event`](Self::poll_event) after each input.
///
/// Lookups are O(1): client transactions are hashed by (branch, CSeq method), server
/// transactions by (branch, sent-by, method) or the RFC 2543 tuple, and merged-request
/// detection by (From tag, Call-ID, CSeq).
#[derive(Debug)]
pub struct TransactionLayer {
    pub(crate) config: Config,
    pub(crate) txns: Slab<Transaction>,
    pub(crate) client_index: Index,
    pub(crate) server_index: Index,
    pub(crate) merge_index: Index,
    /// Live transactions per kind ([`Kind::index`]), kept as they are inserted and removed.
    live_by_kind: [usize; 4],
    pub(crate) out: Out,
    pub(crate) scratch: Vec<u8>,
}

impl Default for TransactionLayer {
    fn default() -> Self {
        TransactionLayer::new(Config::default())
    }
}

impl TransactionLayer {
    /// An empty layer.
    pub fn new(config: Config) -> TransactionLayer {
        TransactionLayer {
            config,
            txns: Slab::default(),
            client_index: Index::default(),
            server_index: Index::default(),
            merge_index: Index::default(),
            live_by_kind: [0; 4],
            out: Out::default(),
            scratch: Vec::with_capacity(128),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Number of live transactions.
    pub fn len(&self) -> usize {
        self.txns.len()
    }

    /// Whether no transaction is live (a driver shutting down waits for this).
    pub fn is_empty(&self) -> bool {
        self.txns.is_empty()
    }

    /// The kind and state of a live transaction.
    pub fn state(&self, key: TransactionKey) -> Option<(Kind, State)> {
        self.txns.get(&key.0).map(|t| (t.kind, t.state))
    }

    /// Counters since creation.
    pub fn stats(&self) -> &Stats {
        &self.out.stats
    }

    /// Live transactions of one kind, counted as they come and go (no walk of the table).
    ///
    /// ```
    /// use sip_transaction::{Kind, TransactionLayer};
    /// assert_eq!(TransactionLayer::default().live_of_kind(Kind::InviteServer), 0);
    /// ```
    pub fn live_of_kind(&self, kind: Kind) -> usize {
        self.live_by_kind.get(kind.index()).copied().unwrap_or(0)
    }

    /// Live transactions by kind and state (walks the table; [`live_of_kind`](Self::live_of_kind)
    /// is the constant-time count by kind).
    pub fn state_counts(&self) -> StateCounts {
        let mut c = StateCounts::default();
        for t in self.txns.values() {
            if let Some(slot) = c
                .counts
                .get_mut(t.kind.index())
                .and_then(|r| r.get_mut(t.state.index()))
            {
                *slot += 1;
            }
        }
        c
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.transmits.pop_front()
    }

    /// The next event for the TU.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.out.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called; `None` when no timer
    /// is armed.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        while let Some((at, id, slot)) = self.out.timers.peek() {
            if self.is_live(at, id, slot) {
                return Some(at);
            }
            self.out.timers.pop();
        }
        None
    }

    fn is_live(&self, at: Instant, id: u64, slot: u8) -> bool {
        self.txns
            .get(&id)
            .and_then(|t| t.timers.get(slot as usize).copied().flatten())
            .is_some_and(|(a, _)| a == at)
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((at, id, slot)) = self.out.timers.peek() {
            if at > now {
                break;
            }
            self.out.timers.pop();
            let Some(slot) = Slot::from_index(slot) else {
                continue;
            };
            let Some(txn) = self.txns.get_mut(&id) else {
                continue;
            };
            let timer = match txn.timers.get(slot as usize).copied().flatten() {
                Some((a, timer)) if a == at => timer,
                _ => continue,
            };
            txn.disarm(slot);
            tracing::debug!(txn = id, %timer, "timer fired");
            let step = if txn.kind.is_client() {
                txn.client_timer(now, &self.config, &mut self.out, timer)
            } else {
                txn.server_timer(now, &self.config, &mut self.out, timer)
            };
            self.apply(id, step);
        }
    }

    /// A message the transport received on `flow`. Requests are matched to server
    /// transactions (retransmissions absorbed, ACKs consumed) or create one; responses are
    /// matched to client transactions or reported as stray. An error means the message was
    /// dropped because it lacks what matching needs (a top Via, a CSeq).
    pub fn handle_message(&mut self, now: Instant, msg: Message, flow: Flow) -> Result<(), Error> {
        let r = if msg.is_request() {
            self.handle_request(now, msg, flow)
        } else {
            self.handle_response(now, msg, flow)
        };
        if r.is_err() {
            self.out.stats.malformed += 1;
        }
        r
    }

    pub(crate) fn insert(
        &mut self,
        kind: Kind,
        peer: Peer,
        reliable: bool,
        request: bytes::Bytes,
        index_key: Box<[u8]>,
    ) -> Result<u64, Error> {
        let id = self.txns.next_key().ok_or(Error::Overloaded)?;
        let mut t = Transaction::new(TransactionKey(id), kind, peer, reliable, request);
        if !index_key.is_empty() {
            let index = if kind.is_client() {
                &mut self.client_index
            } else {
                &mut self.server_index
            };
            index.insert(index_key.clone(), id);
        }
        t.index_key = index_key;
        self.txns.insert(t);
        if let Some(c) = self.out.stats.created.get_mut(kind.index()) {
            *c += 1;
        }
        if let Some(c) = self.live_by_kind.get_mut(kind.index()) {
            *c += 1;
        }
        tracing::debug!(txn = id, ?kind, "transaction created");
        self.compact_timers();
        Ok(id)
    }

    /// Whether the layer holds as many transactions as it may.
    pub(crate) fn full(&self) -> bool {
        self.txns.len() >= self.config.max_transactions().min(MAX_SLOTS)
    }

    /// Drops stale heap entries when they outnumber live ones by far.
    fn compact_timers(&mut self) {
        if self.out.timers.len() <= 1024 + 2 * SLOTS * self.txns.len() {
            return;
        }
        let txns = &self.txns;
        self.out.timers.retain(|at, id, slot| {
            txns.get(&id)
                .and_then(|t| t.timers.get(slot as usize).copied().flatten())
                .is_some_and(|(a, _)| a == at)
        });
    }

    pub(crate) fn apply(&mut self, id: u64, step: Step) {
        if let Step::Terminate(reason) = step {
            self.remove(id, reason);
        }
    }

    fn remove(&mut self, id: u64, reason: TerminationReason) {
        let Some(t) = self.txns.remove(&id) else {
            return;
        };
        if let Some(c) = self.live_by_kind.get_mut(t.kind.index()) {
            *c = c.saturating_sub(1);
        }
        let index = if t.kind.is_client() {
            &mut self.client_index
        } else {
            &mut self.server_index
        };
        if !t.index_key.is_empty() {
            index.remove_if(&t.index_key, id);
        }
        if let Some(mk) = &t.merge_key {
            self.merge_index.remove_if(mk, id);
        }
        self.out.stats.terminated += 1;
        if matches!(reason, TerminationReason::Timeout(_)) {
            self.out.stats.timeouts += 1;
        }
        tracing::debug!(txn = id, ?reason, "transaction terminated");
        self.out
            .events
            .push_back(Event::Terminated { key: t.key, reason });
    }

    /// Starts a client transaction and queues the request for `target`.
    ///
    /// The TU has put the top Via with a fresh `z9hG4bK` branch (RFC 3261 §8.1.1.7). INVITE
    /// starts an INVITE client transaction, any other method but ACK a non-INVITE one. A CANCEL
    /// whose branch is that of a live INVITE client transaction also arms that transaction's
    /// CancelWait (§9.1).
    pub fn send_request(
        &mut self,
        now: Instant,
        request: Message,
        target: Target,
    ) -> Result<TransactionKey, Error> {
        let method = request.method().ok_or(Error::NotARequest)?;
        if method == Method::Ack {
            return Err(Error::AckIsNotATransaction);
        }
        {
            let via = request.via()?;
            if !via.has_magic_cookie() {
                return Err(Error::MissingBranch);
            }
            let cseq = request.cseq()?;
            if cseq.method != method {
                return Err(Error::CSeqMethodMismatch);
            }
            key::client(
                &mut self.scratch,
                via.branch().unwrap_or_default(),
                method.as_str(),
            );
        }
        if self.client_index.contains_key(&self.scratch) {
            return Err(Error::DuplicateTransaction);
        }
        if self.full() {
            self.out.stats.overload_rejections += 1;
            return Err(Error::Overloaded);
        }
        let index_key: Box<[u8]> = self.scratch.as_slice().into();
        let kind = if method == Method::Invite {
            Kind::InviteClient
        } else {
            Kind::NonInviteClient
        };
        let reliable = target.transport.is_reliable();
        let id = self.insert(
            kind,
            Peer::Target(target),
            reliable,
            request.to_bytes(),
            index_key,
        )?;
        if let Some(t) = self.txns.get_mut(&id) {
            t.client_start(now, &self.config, &mut self.out);
        }
        if method == Method::Cancel {
            if let Ok(via) = request.via() {
                key::client(
                    &mut self.scratch,
                    via.branch().unwrap_or_default(),
                    "INVITE",
                );
                if let Some(invite) = self.client_index.get(&self.scratch) {
                    if let Some(t) = self.txns.get_mut(&invite) {
                        t.cancel_sent(now, &self.config, &mut self.out);
                    }
                }
            }
        }
        Ok(TransactionKey(id))
    }

    /// The TU's response on a server transaction: provisionals (any number), then one final;
    /// on an INVITE in Accepted, the TU's 2xx retransmissions (RFC 6026 §7.1).
    pub fn respond(
        &mut self,
        now: Instant,
        key: TransactionKey,
        response: Message,
    ) -> Result<(), Error> {
        let rfc2543 = {
            let t = self.txns.get(&key.0).ok_or(Error::UnknownTransaction)?;
            if t.kind.is_client() {
                return Err(Error::InvalidState {
                    state: t.state,
                    status: response.status().unwrap_or(0),
                });
            }
            t.index_key.first() == Some(&1)
        };
        let Some(t) = self.txns.get_mut(&key.0) else {
            return Err(Error::UnknownTransaction);
        };
        let step = t.server_respond(now, &self.config, &mut self.out, &response, rfc2543)?;
        self.apply(key.0, step);
        Ok(())
    }

    /// Queues a message outside any transaction: the ACK of a 2xx, a 2xx retransmission by
    /// the UAS core, a stateless proxy's forward, a stateless response.
    pub fn send_stateless(&mut self, message: &Message, destination: Destination) {
        self.out.transmits.push_back(Transmit {
            key: None,
            destination,
            payload: message.to_bytes(),
            retransmission: false,
        });
    }

    /// The transport failed to send for `key` (RFC 3261 §17.1.4, §17.2.4): the transaction
    /// terminates with [`TerminationReason::TransportError`]. Returns whether it was live.
    pub fn handle_transport_error(&mut self, _now: Instant, key: TransactionKey) -> bool {
        if !self.txns.contains_key(&key.0) {
            return false;
        }
        self.out.stats.transport_errors += 1;
        self.remove(key.0, TerminationReason::TransportError);
        true
    }

    /// Removes a transaction at once (for a driver's shutdown deadline).
    pub fn abort(&mut self, key: TransactionKey) -> bool {
        if !self.txns.contains_key(&key.0) {
            return false;
        }
        self.remove(key.0, TerminationReason::Aborted);
        true
    }

    /// Removes every live transaction at once (a driver's shutdown deadline); each is
    /// reported [`Event::Terminated`] with [`TerminationReason::Aborted`]. Returns how many.
    pub fn abort_all(&mut self) -> usize {
        let ids: Vec<u64> = self.txns.keys().collect();
        for &id in &ids {
            self.remove(id, TerminationReason::Aborted);
        }
        ids.len()
    }

    /// A CANCEL for a live INVITE client transaction (RFC 3261 §9.1): same Request-URI,
    /// Call-ID, To, From, CSeq number, top Via and Route headers. Send it with
    /// [`send_request`](Self::send_request) once a provisional response has arrived.
    pub fn build_cancel(&self, key: TransactionKey) -> Result<Message, Error> {
        let t = self.txns.get(&key.0).ok_or(Error::UnknownTransaction)?;
        // After the final response there is nothing to cancel (§9.1), and the request is gone.
        if t.kind != Kind::InviteClient || !matches!(t.state, State::Calling | State::Proceeding) {
            return Err(Error::InvalidState {
                state: t.state,
                status: 0,
            });
        }
        messages::cancel_for(&t.request).ok_or(Error::UnknownTransaction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sip_core::Transport;

    /// Bytes one live transaction costs: the struct, its stored messages, its index keys and
    /// the hash-map slots pointing at it (key + value + control byte per map).
    fn footprint(layer: &TransactionLayer, key: TransactionKey) -> usize {
        let Some(t) = layer.txns.get(&key.0) else {
            return 0;
        };
        let map_slot = |k: usize| k + 8 + 1;
        std::mem::size_of::<Transaction>()
            + map_slot(8)
            + t.request.len()
            + t.stored.as_ref().map_or(0, |b| b.len())
            + t.index_key.len()
            + map_slot(16)
            + t.merge_key.as_ref().map_or(0, |k| k.len() + map_slot(16))
    }

    const INVITE: &str = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\nTo: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\nCSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>\r\nContent-Type: application/sdp\r\n\
Content-Length: 142\r\n\r\n\
v=0\r\no=alice 2890844526 2890844526 IN IP4 pc33.atlanta.example.com\r\ns=-\r\n\
c=IN IP4 192.0.2.101\r\nt=0 0\r\nm=audio 49172 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

    #[test]
    fn memory_per_live_transaction_stays_under_2_kib() {
        // size_of figures on x86_64: Transaction ≈ 260–300 bytes.
        let size = std::mem::size_of::<Transaction>();
        assert!(size <= 320, "Transaction is {size} bytes");
        let mut layer = TransactionLayer::default();
        let now = Instant::now();
        let flow = Flow {
            transport: Transport::Udp,
            local: "192.0.2.4:5060".parse().unwrap(),
            remote: "192.0.2.101:5060".parse().unwrap(),
        };
        let invite = Message::parse(INVITE.as_bytes()).unwrap();
        layer.handle_message(now, invite.clone(), flow).unwrap();
        let key = match layer.poll_event() {
            Some(Event::Request(r)) => r.key,
            other => panic!("{other:?}"),
        };
        let ringing = invite.response(180).to_tag("8321234356").build().unwrap();
        layer.respond(now, key, ringing).unwrap();
        let server = footprint(&layer, key);
        let client = {
            let k = layer
                .send_request(now, invite, Target::new(Transport::Udp, flow.remote))
                .unwrap();
            footprint(&layer, k)
        };
        println!("size_of::<Transaction>() = {size}; INVITE server after 180: {server} B; INVITE client: {client} B");
        assert!(server <= 2048, "{server}");
        assert!(client <= 2048, "{client}");
    }

    #[test]
    fn a_final_response_releases_the_request_a_lingering_transaction_held() {
        let mut layer = TransactionLayer::default();
        let now = Instant::now();
        let flow = Flow {
            transport: Transport::Udp,
            local: "192.0.2.4:5060".parse().unwrap(),
            remote: "192.0.2.101:5060".parse().unwrap(),
        };
        let invite = Message::parse(INVITE.as_bytes()).unwrap();
        layer.handle_message(now, invite.clone(), flow).unwrap();
        let server = match layer.poll_event() {
            Some(Event::Request(r)) => r.key,
            other => panic!("{other:?}"),
        };
        let client = layer
            .send_request(
                now,
                invite.clone(),
                Target::new(Transport::Udp, flow.remote),
            )
            .unwrap();
        let held = |layer: &TransactionLayer, k: TransactionKey| {
            layer.txns.get(&k.0).map_or(0, |t| t.request.len())
        };
        assert!(held(&layer, server) > 0);
        assert!(held(&layer, client) > 0);

        let ok = invite.response(200).to_tag("8321234356").build().unwrap();
        layer.respond(now, server, ok.clone()).unwrap();
        let bytes = ok.to_bytes();
        let resp = Message::parse(bytes).unwrap();
        layer.handle_message(now, resp, flow).unwrap();
        // Both linger in Accepted (RFC 6026) for 32 s over UDP, holding no message.
        assert_eq!(layer.state(server).map(|s| s.1), Some(State::Accepted));
        assert_eq!(layer.state(client).map(|s| s.1), Some(State::Accepted));
        assert_eq!(held(&layer, server), 0);
        assert_eq!(held(&layer, client), 0);
        // Nothing is left to cancel.
        assert!(matches!(
            layer.build_cancel(client),
            Err(Error::InvalidState {
                state: State::Accepted,
                ..
            })
        ));
    }
}
