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

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sip_core::{HeaderName, Message};
use tokio::sync::Notify;

/// How long an answer is kept: 64·T1 with T1 = 500 ms (RFC 3261 §17.1.2.2, Timer F).
pub const RETRANSMISSION_WINDOW: Duration = Duration::from_secs(32);

/// What identifies a request and its retransmissions (RFC 3261 §17.2.3): a keyed fingerprint
/// of its Call-ID, CSeq (number and method, as written) and top Via branch.
///
/// A fingerprint rather than the strings: the cache then allocates nothing per request and
/// hashes each request once (SipHash under a random key drawn when the cache is made, so
/// nobody can craft requests that share one). Two requests sharing one by chance is rare, and
/// harmless: an answer is given again only when its own Call-ID, CSeq and top Via branch,
/// which every response copies from its request, are the request's ([`same_request`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey(u64);

/// The parts of a request (or of the response that copied them) that a key covers.
fn parts(m: &Message) -> Option<[&[u8]; 3]> {
    Some([
        m.header_bytes(HeaderName::CallId)?,
        m.header_bytes(HeaderName::CSeq)?,
        branch(m.header_bytes(HeaderName::Via)?),
    ])
}

/// Whether `response` answers `request`: same Call-ID, CSeq and top Via branch.
fn same_request(request: &Message, response: &Message) -> bool {
    matches!((parts(request), parts(response)), (Some(a), Some(b)) if a == b)
}

/// The request's top Via branch as written (empty for an RFC 2543 client that sends none:
/// Call-ID and CSeq still tell its requests apart).
fn branch(top_via: &[u8]) -> &[u8] {
    // Scans for '=' and looks back: cheaper than building a substring searcher per request.
    let Some(at) = memchr::memchr_iter(b'=', top_via)
        .find(|&i| i >= 6 && top_via.get(i - 6..i) == Some(b"branch".as_slice()))
    else {
        return b"";
    };
    let rest = top_via.get(at + 1..).unwrap_or_default();
    let end = rest
        .iter()
        .position(|b| matches!(b, b';' | b',' | b' ' | b'\t' | b'\r' | b'\n'))
        .unwrap_or(rest.len());
    rest.get(..end).unwrap_or_default()
}

/// A hasher for keys that are already uniformly random fingerprints.
#[derive(Default)]
struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = i;
    }
}

type FingerprintMap<V> = HashMap<CacheKey, V, BuildHasherDefault<FingerprintHasher>>;

/// What the map holds for a key: in flight, or the sequence number of its answer in
/// `Inner::order`.
const IN_FLIGHT: u64 = u64::MAX;

/// One answer: when it was stored, its key, and its wire form. Kept serialized (a parsed
/// [`Message`] is several times larger than its bytes): the response's own buffer (a slice of
/// the slab it was built in), shared, not copied.
struct Answer {
    at: Instant,
    key: CacheKey,
    bytes: Bytes,
}

/// The answers live in `order`, oldest first, and the map holds 16 bytes per key (the key and
/// a sequence number): with 20 000 answers a second kept 32 s, the map is the part looked up
/// at random, and the smaller it is the fewer of those lookups miss the CPU's caches.
struct Inner {
    map: FingerprintMap<u64>,
    /// Answered requests, oldest first; `order[i]` has sequence number `first + i`.
    order: VecDeque<Answer>,
    first: u64,
    /// Until then the cache may have forgotten a request that can still be retransmitted.
    blind_until: Option<Instant>,
}

impl Inner {
    /// The answer a map value points at (`None` for in flight).
    fn answer(&self, seq: u64) -> Option<&Answer> {
        let i = usize::try_from(seq.checked_sub(self.first)?).ok()?;
        self.order.get(i)
    }

    /// Drops the oldest answer; its key leaves the map unless a newer request holds it.
    fn pop_oldest(&mut self) -> Option<Answer> {
        let a = self.order.pop_front()?;
        if self.map.get(&a.key) == Some(&self.first) {
            self.map.remove(&a.key);
        }
        self.first += 1;
        Some(a)
    }
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
    /// Keyed per cache with a random seed (foldhash's quality hasher: several times cheaper
    /// than SipHash; a collision only costs a cache miss, since answers are checked against
    /// the request).
    keys: foldhash::quality::RandomState,
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
            keys: foldhash::quality::RandomState::default(),
            inner: Mutex::new(Inner {
                map: FingerprintMap::default(),
                order: VecDeque::new(),
                first: 0,
                blind_until: None,
            }),
            cap: cap.max(1),
            ttl,
            notify: Notify::new(),
            waiters: AtomicUsize::new(0),
        }
    }

    /// The key of a request; `None` when it lacks a Call-ID, CSeq or Via (it is then answered
    /// without being cached).
    pub fn key(&self, req: &Message) -> Option<CacheKey> {
        let mut h = self.keys.build_hasher();
        for part in parts(req)? {
            h.write(part);
            h.write_u8(0xff);
        }
        Some(CacheKey(h.finish()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every update leaves the map consistent; a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Looks `key` (of `req`) up, marking it in flight when it is new.
    pub fn begin(&self, key: CacheKey, req: &Message, now: Instant) -> Lookup<'_> {
        let mut inner = self.lock();
        self.expire(&mut inner, now);
        match inner.map.get(&key).copied() {
            Some(IN_FLIGHT) => Lookup::InFlight(key),
            Some(seq) => {
                let parsed = inner.answer(seq).map(|a| Message::parse(a.bytes.clone()));
                match parsed {
                    Some(Ok(m)) if same_request(req, &m) => Lookup::Answered(m),
                    // Another request with the same fingerprint: answer it, uncached.
                    _ => Lookup::New(Ticket {
                        cache: self,
                        key: None,
                    }),
                }
            }
            None => {
                inner.map.insert(key, IN_FLIGHT);
                Lookup::New(Ticket {
                    cache: self,
                    key: Some(key),
                })
            }
        }
    }

    /// Waits until the in-flight `key` (of `req`) is answered or released; returns its answer.
    pub async fn wait(&self, key: &CacheKey, req: &Message) -> Option<Message> {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let answer = loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registered before the look, so an answer stored in between still wakes us.
            notified.as_mut().enable();
            let answer = {
                let inner = self.lock();
                match inner.map.get(key).copied() {
                    Some(IN_FLIGHT) => None,
                    Some(seq) => Some(inner.answer(seq).map(|a| a.bytes.clone())),
                    None => Some(None),
                }
            };
            if let Some(bytes) = answer {
                break bytes
                    .and_then(|b| Message::parse(b).ok())
                    .filter(|m| same_request(req, m));
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
            let seq = inner.first + inner.order.len() as u64;
            inner.order.push_back(Answer {
                at: now,
                key,
                bytes: response.to_bytes(),
            });
            inner.map.insert(key, seq);
        }
        self.wake();
    }

    fn release(&self, key: &CacheKey) {
        {
            let mut inner = self.lock();
            if inner.map.get(key) == Some(&IN_FLIGHT) {
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

    /// Drops the answers older than 64·T1.
    fn expire(&self, inner: &mut Inner, now: Instant) {
        while inner
            .order
            .front()
            .is_some_and(|a| now.saturating_duration_since(a.at) >= self.ttl)
        {
            inner.pop_oldest();
        }
    }

    /// Drops the oldest answer for room.
    fn evict_oldest(&self, inner: &mut Inner) {
        let Some(a) = inner.pop_oldest() else {
            return;
        };
        // It could still be retransmitted until at + ttl.
        let until = a.at + self.ttl;
        inner.blind_until = Some(inner.blind_until.map_or(until, |b| b.max(until)));
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

    fn begin<'a>(
        cache: &'a ResponseCache,
        (call_id, cseq, branch): (&str, u32, &str),
        now: Instant,
    ) -> Lookup<'a> {
        let r = req(call_id, cseq, branch);
        cache.begin(cache.key(&r).unwrap(), &r, now)
    }

    /// One cache's keys (the fingerprints are keyed per cache).
    fn keys(cache: &ResponseCache) -> impl Fn(&str, u32, &str) -> CacheKey + '_ {
        move |call_id, cseq, branch| cache.key(&req(call_id, cseq, branch)).unwrap()
    }

    #[test]
    fn keys_tell_requests_apart_and_find_the_branch() {
        let cache = ResponseCache::new(8, RETRANSMISSION_WINDOW);
        let key = keys(&cache);
        assert_eq!(key("a", 1, "z9hG4bK1"), key("a", 1, "z9hG4bK1"));
        assert_ne!(key("a", 1, "z9hG4bK1"), key("a", 2, "z9hG4bK1"));
        assert_ne!(key("a", 1, "z9hG4bK1"), key("b", 1, "z9hG4bK1"));
        assert_ne!(key("a", 1, "z9hG4bK1"), key("a", 1, "z9hG4bK2"));
        // The parts are delimited: moving bytes between them makes another key.
        assert_ne!(key("a1", 1, "x"), key("a", 11, "x"));
        assert_eq!(
            branch(b"SIP/2.0/UDP h:5060;branch=z9hG4bKx;rport"),
            b"z9hG4bKx"
        );
        assert_eq!(
            branch(b"SIP/2.0/UDP h;branch=z9hG4bKy, SIP/2.0/UDP g"),
            b"z9hG4bKy"
        );
        assert_eq!(branch(b"SIP/2.0/UDP h"), b"");
        // An answer is only ever given to the request it copied its identity from.
        let a = req("a", 1, "z9hG4bK1");
        let b = req("a", 1, "z9hG4bK2");
        let answer = a.response(200).build().unwrap();
        assert!(same_request(&a, &answer));
        assert!(!same_request(&b, &answer));
        let other = ResponseCache::new(8, RETRANSMISSION_WINDOW);
        assert_ne!(keys(&other)("a", 1, "z9hG4bK1"), key("a", 1, "z9hG4bK1"));
    }

    #[test]
    fn answers_again_until_64_t1_then_forgets() {
        let cache = ResponseCache::new(8, RETRANSMISSION_WINDOW);
        let t0 = Instant::now();
        let r = req("a", 1, "z9hG4bK1");
        let resp = r.response(200).build().unwrap();
        let Lookup::New(ticket) = begin(&cache, ("a", 1, "z9hG4bK1"), t0) else {
            panic!("new")
        };
        ticket.finish(Some(&resp), t0);
        let at = t0 + Duration::from_secs(31);
        match begin(&cache, ("a", 1, "z9hG4bK1"), at) {
            Lookup::Answered(m) => assert_eq!(m.to_bytes(), resp.to_bytes()),
            _ => panic!("answered"),
        }
        // Another CSeq or branch is another request.
        assert!(matches!(
            begin(&cache, ("a", 2, "z9hG4bK1"), at),
            Lookup::New(_)
        ));
        assert!(matches!(
            begin(&cache, ("a", 1, "z9hG4bK2"), at),
            Lookup::New(_)
        ));
        assert!(matches!(
            begin(&cache, ("a", 1, "z9hG4bK1"), t0 + RETRANSMISSION_WINDOW),
            Lookup::New(_)
        ));
        assert!(cache.vouches_new(at));
    }

    #[test]
    fn cap_holds_and_eviction_of_young_answers_is_admitted() {
        let cache = ResponseCache::new(4, RETRANSMISSION_WINDOW);
        let t0 = Instant::now();
        for i in 0..10 {
            let call_id = format!("c{i}");
            let resp = req(&call_id, 1, "b").response(200).build().unwrap();
            let Lookup::New(t) = begin(&cache, (&call_id, 1, "b"), t0) else {
                panic!()
            };
            t.finish(Some(&resp), t0);
            assert!(cache.len() <= 4);
        }
        assert!(!cache.vouches_new(t0 + Duration::from_secs(1)));
        assert!(cache.vouches_new(t0 + RETRANSMISSION_WINDOW));
        assert!(matches!(
            begin(&cache, ("c9", 1, "b"), t0),
            Lookup::Answered(_)
        ));
    }

    #[test]
    fn dropped_ticket_releases_the_key() {
        let cache = ResponseCache::new(4, RETRANSMISSION_WINDOW);
        let t0 = Instant::now();
        let Lookup::New(t) = begin(&cache, ("a", 1, "b"), t0) else {
            panic!()
        };
        assert!(matches!(
            begin(&cache, ("a", 1, "b"), t0),
            Lookup::InFlight(_)
        ));
        drop(t);
        assert!(matches!(begin(&cache, ("a", 1, "b"), t0), Lookup::New(_)));
    }

    #[tokio::test]
    async fn a_racing_worker_waits_for_the_first_answer() {
        let cache = std::sync::Arc::new(ResponseCache::new(4, RETRANSMISSION_WINDOW));
        let key = keys(&cache);
        let (ka, kb) = (key("a", 1, "b"), key("b", 1, "b"));
        let t0 = Instant::now();
        let r = req("a", 1, "b");
        let resp = r.response(401).build().unwrap();
        let Lookup::New(ticket) = begin(&cache, ("a", 1, "b"), t0) else {
            panic!()
        };
        let waiter = {
            let cache = cache.clone();
            tokio::spawn(async move { cache.wait(&ka, &req("a", 1, "b")).await })
        };
        tokio::task::yield_now().await;
        ticket.finish(Some(&resp), t0);
        let got = waiter.await.unwrap().unwrap();
        assert_eq!(got.status(), Some(401));
        // A released key wakes its waiters with nothing.
        let Lookup::New(ticket) = begin(&cache, ("b", 1, "b"), t0) else {
            panic!()
        };
        let waiter = {
            let cache = cache.clone();
            tokio::spawn(async move { cache.wait(&kb, &req("b", 1, "b")).await })
        };
        tokio::task::yield_now().await;
        drop(ticket);
        assert!(waiter.await.unwrap().is_none());
    }
}
