//! Retransmissions are never replays: a small response cache that recognises a request the
//! registrar has already answered, whatever the answer, and gives the same response again.
//!
//! When REGISTER is answered without server transactions (the example registrar's default,
//! [`EndpointBuilder::stateless_methods`](crate::endpoint::EndpointBuilder::stateless_methods)),
//! every UDP retransmission reaches the registrar. Its digest credentials carry a nonce count
//! that was already used, which on its own looks exactly like a replay. RFC 3261 §17.2.3
//! recognises a retransmission by its top Via branch together with the method; this cache keys
//! responses by Call-ID, CSeq (number and method) and the top Via branch, and keeps them for
//! 64·T1 (32 s), as long as a client transaction may retransmit (§17.1.2.2 Timer F).
//!
//! Two workers may take a request and its retransmission at the same time. The first one
//! marks the key *in flight* before it authenticates; the second waits for that answer instead
//! of verifying the credentials a second time. The marker is removed when the first worker's
//! [`Ticket`] is dropped without an answer, so a cancelled request never blocks its
//! retransmissions.
//!
//! Memory is bounded by a count cap. Evicting an entry younger than 64·T1 means that for a
//! while the cache can no longer tell a retransmission from a replay;
//! [`ResponseCache::vouches_new`] says when it can.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sip_core::Message;
use tokio::sync::Notify;

/// How long an answer is kept: 64·T1 with T1 = 500 ms (RFC 3261 §17.1.2.2, Timer F).
pub const RETRANSMISSION_WINDOW: Duration = Duration::from_secs(32);

/// What identifies a request and its retransmissions: Call-ID, CSeq number and method, top Via
/// branch (RFC 3261 §17.2.3).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey {
    call_id: Box<str>,
    cseq: u32,
    method: Box<str>,
    branch: Box<str>,
}

impl CacheKey {
    /// The key of a request; `None` when it lacks a Call-ID, CSeq or Via (it is then answered
    /// 400 without being cached).
    pub fn of(req: &Message) -> Option<CacheKey> {
        let call_id = req.call_id()?;
        let cseq = req.cseq().ok()?;
        let via = req.via().ok()?;
        Some(CacheKey {
            call_id: call_id.into(),
            cseq: cseq.seq,
            method: cseq.method.as_str().into(),
            // RFC 2543 clients send no branch: Call-ID and CSeq still tell their requests apart.
            branch: via.branch().unwrap_or_default().into(),
        })
    }
}

enum Slot {
    /// A worker is answering it.
    InFlight,
    /// Answered with this wire form (when: in `Inner::order`). Kept serialized: a parsed
    /// [`Message`] is several times larger than its bytes.
    Done(Bytes),
}

struct Inner {
    map: HashMap<CacheKey, Slot>,
    /// Answered keys, oldest first.
    order: VecDeque<(Instant, CacheKey)>,
    /// Until then the cache may have forgotten a request that can still be retransmitted.
    blind_until: Option<Instant>,
}

/// What the cache knows of a request (moved once; boxing would cost an allocation).
#[allow(clippy::large_enum_variant)]
pub(crate) enum Lookup<'a> {
    /// Answered before: send this again.
    Answered(Message),
    /// Another worker is answering it right now ([`ResponseCache::wait`] for its answer).
    InFlight(CacheKey),
    /// New: answer it, then [`Ticket::finish`].
    New(Ticket<'a>),
}

/// The right (and duty) to answer a new request; dropping it without
/// [`finish`](Ticket::finish) releases the key.
pub(crate) struct Ticket<'a> {
    cache: &'a ResponseCache,
    key: Option<CacheKey>,
}

impl Ticket<'_> {
    /// Stores the answer for the request's retransmissions (none: forget the request).
    pub fn finish(mut self, response: Option<&Message>, now: Instant) {
        if let Some(key) = self.key.take() {
            match response {
                Some(r) => self.cache.store(key, r, now),
                None => self.cache.release(&key),
            }
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.cache.release(&key);
        }
    }
}

/// The registrar's bounded response cache (see the module documentation).
pub(crate) struct ResponseCache {
    inner: Mutex<Inner>,
    cap: usize,
    ttl: Duration,
    notify: Notify,
    waiters: AtomicUsize,
}

impl ResponseCache {
    /// A cache holding at most `cap` answers (at least 1) for `ttl` each.
    pub fn new(cap: usize, ttl: Duration) -> ResponseCache {
        ResponseCache {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                order: VecDeque::new(),
                blind_until: None,
            }),
            cap: cap.max(1),
            ttl,
            notify: Notify::new(),
            waiters: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every update leaves the map consistent; a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Looks `key` up, marking it in flight when it is new.
    pub fn begin(&self, key: CacheKey, now: Instant) -> Lookup<'_> {
        let mut inner = self.lock();
        self.expire(&mut inner, now);
        match inner.map.entry(key) {
            Entry::Occupied(mut e) => {
                let parsed = match e.get() {
                    Slot::InFlight => return Lookup::InFlight(e.key().clone()),
                    Slot::Done(bytes) => Message::parse(bytes.clone()),
                };
                match parsed {
                    Ok(m) => Lookup::Answered(m),
                    // Never happens to what this process serialized: answer it afresh.
                    Err(_) => {
                        *e.get_mut() = Slot::InFlight;
                        Lookup::New(Ticket {
                            cache: self,
                            key: Some(e.key().clone()),
                        })
                    }
                }
            }
            Entry::Vacant(v) => {
                let key = v.key().clone();
                v.insert(Slot::InFlight);
                Lookup::New(Ticket {
                    cache: self,
                    key: Some(key),
                })
            }
        }
    }

    /// Waits until the in-flight `key` is answered or released; returns its answer.
    pub async fn wait(&self, key: &CacheKey) -> Option<Message> {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let answer = loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registered before the look, so an answer stored in between still wakes us.
            notified.as_mut().enable();
            match self.lock().map.get(key) {
                Some(Slot::InFlight) => {}
                Some(Slot::Done(bytes)) => break Message::parse(bytes.clone()).ok(),
                None => break None,
            }
            notified.await;
        };
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        answer
    }

    fn store(&self, key: CacheKey, response: &Message, now: Instant) {
        {
            let mut inner = self.lock();
            self.expire(&mut inner, now);
            while inner.order.len() >= self.cap {
                self.evict_oldest(&mut inner);
            }
            inner.order.push_back((now, key.clone()));
            inner.map.insert(key, Slot::Done(response.to_bytes()));
        }
        self.wake();
    }

    fn release(&self, key: &CacheKey) {
        {
            let mut inner = self.lock();
            if matches!(inner.map.get(key), Some(Slot::InFlight)) {
                inner.map.remove(key);
            }
        }
        self.wake();
    }

    fn wake(&self) {
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.notify.notify_waiters();
        }
    }

    fn expire(&self, inner: &mut Inner, now: Instant) {
        while let Some((at, _)) = inner.order.front() {
            if now.saturating_duration_since(*at) < self.ttl {
                break;
            }
            if let Some((_, key)) = inner.order.pop_front() {
                remove_done(&mut inner.map, &key);
            }
        }
    }

    fn evict_oldest(&self, inner: &mut Inner) {
        if let Some((at, key)) = inner.order.pop_front() {
            remove_done(&mut inner.map, &key);
            // It could still be retransmitted until at + ttl.
            let until = at + self.ttl;
            inner.blind_until = Some(inner.blind_until.map_or(until, |b| b.max(until)));
        }
    }

    /// Whether a request missing from the cache is certainly not a retransmission of one
    /// answered within 64·T1 (false for a while after a young answer was evicted for room).
    pub fn vouches_new(&self, now: Instant) -> bool {
        self.lock().blind_until.is_none_or(|b| now >= b)
    }

    /// Number of answers held.
    pub fn len(&self) -> usize {
        self.lock().order.len()
    }
}

/// Removes `key` if it holds an answer (an in-flight marker of a newer request is kept).
fn remove_done(map: &mut HashMap<CacheKey, Slot>, key: &CacheKey) {
    if matches!(map.get(key), Some(Slot::Done(_))) {
        map.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(call_id: &str, cseq: u32, branch: &str) -> Message {
        Message::parse(
            format!(
                "REGISTER sip:example.com SIP/2.0\r\n\
                 Via: SIP/2.0/UDP 192.0.2.4:5060;branch={branch}\r\n\
                 To: <sip:bob@example.com>\r\nFrom: <sip:bob@example.com>;tag=1\r\n\
                 Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\nContent-Length: 0\r\n\r\n"
            )
            .into_bytes(),
        )
        .unwrap()
    }

    fn key(call_id: &str, cseq: u32, branch: &str) -> CacheKey {
        CacheKey::of(&req(call_id, cseq, branch)).unwrap()
    }

    #[test]
    fn answers_again_until_64_t1_then_forgets() {
        let cache = ResponseCache::new(8, RETRANSMISSION_WINDOW);
        let t0 = Instant::now();
        let r = req("a", 1, "z9hG4bK1");
        let resp = r.response(200).build().unwrap();
        let Lookup::New(ticket) = cache.begin(key("a", 1, "z9hG4bK1"), t0) else {
            panic!("new")
        };
        ticket.finish(Some(&resp), t0);
        let at = t0 + Duration::from_secs(31);
        match cache.begin(key("a", 1, "z9hG4bK1"), at) {
            Lookup::Answered(m) => assert_eq!(m.to_bytes(), resp.to_bytes()),
            _ => panic!("answered"),
        }
        // Another CSeq or branch is another request.
        assert!(matches!(
            cache.begin(key("a", 2, "z9hG4bK1"), at),
            Lookup::New(_)
        ));
        assert!(matches!(
            cache.begin(key("a", 1, "z9hG4bK2"), at),
            Lookup::New(_)
        ));
        assert!(matches!(
            cache.begin(key("a", 1, "z9hG4bK1"), t0 + RETRANSMISSION_WINDOW),
            Lookup::New(_)
        ));
        assert!(cache.vouches_new(at));
    }

    #[test]
    fn cap_holds_and_eviction_of_young_answers_is_admitted() {
        let cache = ResponseCache::new(4, RETRANSMISSION_WINDOW);
        let t0 = Instant::now();
        let resp = req("x", 1, "b").response(200).build().unwrap();
        for i in 0..10 {
            let Lookup::New(t) = cache.begin(key(&format!("c{i}"), 1, "b"), t0) else {
                panic!()
            };
            t.finish(Some(&resp), t0);
            assert!(cache.len() <= 4);
        }
        assert!(!cache.vouches_new(t0 + Duration::from_secs(1)));
        assert!(cache.vouches_new(t0 + RETRANSMISSION_WINDOW));
        assert!(matches!(
            cache.begin(key("c9", 1, "b"), t0),
            Lookup::Answered(_)
        ));
    }

    #[test]
    fn dropped_ticket_releases_the_key() {
        let cache = ResponseCache::new(4, RETRANSMISSION_WINDOW);
        let t0 = Instant::now();
        let Lookup::New(t) = cache.begin(key("a", 1, "b"), t0) else {
            panic!()
        };
        assert!(matches!(
            cache.begin(key("a", 1, "b"), t0),
            Lookup::InFlight(_)
        ));
        drop(t);
        assert!(matches!(cache.begin(key("a", 1, "b"), t0), Lookup::New(_)));
    }

    #[tokio::test]
    async fn a_racing_worker_waits_for_the_first_answer() {
        let cache = std::sync::Arc::new(ResponseCache::new(4, RETRANSMISSION_WINDOW));
        let t0 = Instant::now();
        let r = req("a", 1, "b");
        let resp = r.response(401).build().unwrap();
        let Lookup::New(ticket) = cache.begin(key("a", 1, "b"), t0) else {
            panic!()
        };
        let waiter = {
            let cache = cache.clone();
            tokio::spawn(async move { cache.wait(&key("a", 1, "b")).await })
        };
        tokio::task::yield_now().await;
        ticket.finish(Some(&resp), t0);
        let got = waiter.await.unwrap().unwrap();
        assert_eq!(got.status(), Some(401));
        // A released key wakes its waiters with nothing.
        let Lookup::New(ticket) = cache.begin(key("b", 1, "b"), t0) else {
            panic!()
        };
        let waiter = {
            let cache = cache.clone();
            tokio::spawn(async move { cache.wait(&key("b", 1, "b")).await })
        };
        tokio::task::yield_now().await;
        drop(ticket);
        assert!(waiter.await.unwrap().is_none());
    }
}
