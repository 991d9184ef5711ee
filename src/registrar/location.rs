//! The location service (RFC 3261 §10.3): bindings from an address-of-record to contacts, the
//! rules of §10.3 for changing them, and the [`LocationStore`] trait with an in-memory store.
//!
//! The rules live in [`apply_register`], a pure function over one AOR's bindings, so that any
//! store (in memory, or a networked one inside its own transaction) applies exactly the same
//! semantics.

use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sip_core::uri::Uri;
use sip_core::Flow;
use smallvec::SmallVec;

/// An AOR's bindings as a REGISTER leaves them (inline for up to two: no allocation for the
/// usual one or two).
pub type Bindings = SmallVec<[Binding; 2]>;

/// What one REGISTER changed (inline for up to two).
pub type BindingChanges = SmallVec<[BindingChange; 2]>;

/// One AOR's bindings as a store keeps them: the one binding most AORs have is held inline
/// (in the store's table entry), so registering a new AOR or refreshing one allocates no
/// list.
pub type AorBindings = SmallVec<[Binding; 1]>;

/// One contact registered for an address-of-record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The contact URI as registered (without the angle brackets and header parameters).
    /// Shared: a binding is copied into every lookup and every 200's Contact list, and a
    /// copy is a reference count, not an allocation.
    pub contact: Arc<str>,
    /// When the binding expires.
    pub expires_at: Instant,
    /// The q-value in thousandths (1000 when absent).
    pub q: u16,
    /// The Call-ID of the REGISTER that created or last refreshed it (shared, as `contact`).
    pub call_id: Arc<str>,
    /// The CSeq of that REGISTER.
    pub cseq: u32,
    /// The flow the REGISTER arrived on: where to reach the contact behind NAT.
    pub flow: Flow,
    /// Whether the contact was found unreachable (flow closed, keep-alives unanswered).
    pub offline: bool,
    /// RFC 5626 instance and reg-id, RFC 3327 Path: kept out of line, since most bindings
    /// have none (this keeps a binding within 256 bytes beyond its contact).
    pub extra: Option<Box<BindingExtra>>,
}

/// The rarer parts of a binding.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BindingExtra {
    /// RFC 5626 `+sip.instance` (unquoted), when given.
    pub instance: Option<Box<str>>,
    /// RFC 5626 `reg-id`, when given.
    pub reg_id: Option<u32>,
    /// RFC 3327 Path values, top first.
    pub path: Box<[Box<str>]>,
}

impl Binding {
    /// Seconds left before the binding expires (0 when expired).
    pub fn remaining(&self, now: Instant) -> u64 {
        self.expires_at.saturating_duration_since(now).as_secs()
    }

    /// Whether the binding uses RFC 5626 outbound (instance and reg-id): it is then tied to its
    /// flow, and the flow identifies it.
    pub fn is_outbound(&self) -> bool {
        self.instance().is_some() && self.reg_id().is_some()
    }

    /// RFC 5626 `+sip.instance`.
    pub fn instance(&self) -> Option<&str> {
        self.extra.as_ref().and_then(|e| e.instance.as_deref())
    }

    /// RFC 5626 `reg-id`.
    pub fn reg_id(&self) -> Option<u32> {
        self.extra.as_ref().and_then(|e| e.reg_id)
    }

    /// RFC 3327 Path values, top first.
    pub fn path(&self) -> &[Box<str>] {
        self.extra.as_ref().map_or(&[], |e| &e.path)
    }

    /// Bytes this binding takes: the struct and the strings it owns (contact, Call-ID,
    /// instance, Path), what [`StoreLimits::max_bytes`] budgets.
    pub fn footprint(&self) -> usize {
        std::mem::size_of::<Binding>() + self.heap_bytes()
    }

    /// Heap bytes this binding owns (its strings), for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        self.contact.len()
            + self.call_id.len()
            + self.extra.as_ref().map_or(0, |e| {
                std::mem::size_of::<BindingExtra>()
                    + e.instance.as_ref().map_or(0, |s| s.len())
                    + e.path
                        .iter()
                        .map(|p| p.len() + std::mem::size_of::<Box<str>>())
                        .sum::<usize>()
            })
    }
}

/// One contact of a REGISTER, ready to be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactUpdate {
    /// The contact URI (shared with the binding it makes: no copy).
    pub contact: Arc<str>,
    /// The expiration interval granted (0 removes the binding).
    pub expires: u32,
    /// q-value in thousandths.
    pub q: u16,
    /// `+sip.instance`, unquoted.
    pub instance: Option<String>,
    /// `reg-id`.
    pub reg_id: Option<u32>,
}

/// What one REGISTER asks for (RFC 3261 §10.3 steps 6–7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterChange {
    /// Call-ID of the request (shared with the bindings it makes: no copy).
    pub call_id: Arc<str>,
    /// CSeq number of the request.
    pub cseq: u32,
    /// `Contact: *` with `Expires: 0`: remove every binding.
    pub remove_all: bool,
    /// The contacts, in request order (inline for one).
    pub contacts: SmallVec<[ContactUpdate; 1]>,
    /// The flow the request arrived on.
    pub flow: Flow,
    /// The Path header values (RFC 3327), top first.
    pub path: Vec<String>,
}

/// Caps on what a store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// Most bindings for one AOR (default 16).
    pub max_bindings_per_aor: usize,
    /// Most bindings in the whole store (default 1 000 000).
    pub max_bindings: usize,
    /// Most bytes the bindings may take, on top of the count cap (default 512 MiB): each
    /// binding's [`footprint`](Binding::footprint) (contact, Call-ID, Path and instance strings
    /// included) and each AOR's key. A REGISTER that would grow the store past it is refused
    /// like one past `max_bindings` (503); one that shrinks or keeps it is applied.
    pub max_bytes: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            max_bindings_per_aor: 16,
            max_bindings: 1_000_000,
            max_bytes: 512 << 20,
        }
    }
}

/// What an AOR's entry costs besides its bindings and the AOR's bytes: its table slot (hash
/// and pointer) and its node (the inline key's room and the bindings' vector, less the one
/// binding it holds inline).
const AOR_OVERHEAD: usize = 16 + std::mem::size_of::<AorKey>() + std::mem::size_of::<AorBindings>()
    - std::mem::size_of::<Binding>();

/// Bytes one AOR's entry takes in a store (0 when it has no bindings: it is removed).
pub fn aor_footprint(aor: &str, bindings: &[Binding]) -> usize {
    if bindings.is_empty() {
        return 0;
    }
    aor.len() + AOR_OVERHEAD + bindings.iter().map(Binding::footprint).sum::<usize>()
}

/// Why a REGISTER could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// The request repeats or precedes one already applied for this Call-ID (§10.3 step 7).
    #[error("CSeq {got} is not above {have} for the same Call-ID")]
    OutOfOrder {
        /// The CSeq of the binding.
        have: u32,
        /// The CSeq of the request.
        got: u32,
    },
    /// The AOR would hold more bindings than allowed.
    #[error("too many bindings for this address-of-record")]
    TooManyForAor,
    /// The store is full.
    #[error("the location store is full")]
    StoreFull,
    /// A networked store failed.
    #[error("location store unavailable: {0}")]
    Unavailable(String),
}

/// What changed, for the registrar's event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingChange {
    /// A new binding.
    Added(Binding),
    /// An existing binding refreshed (or moved to a new Call-ID or flow).
    Refreshed(Binding),
    /// A binding removed by the client (expires 0 or `*`).
    Removed(Binding),
}

fn same_binding(b: &Binding, c: &ContactUpdate) -> bool {
    match (b.instance(), &c.instance, b.reg_id(), c.reg_id) {
        // RFC 5626 §6: the instance and reg-id identify the binding, not the contact URI.
        (Some(bi), Some(ci), Some(br), Some(cr)) => bi == ci.as_str() && br == cr,
        _ => uri_eq(&b.contact, &c.contact),
    }
}

/// Contact URI comparison by the rules of RFC 3261 §19.1.4 (§10.3 step 7), so a refresh that
/// spells the same contact differently (parameter order, case of the host or of `transport`,
/// escapes) updates its binding instead of adding a second one. URIs that do not parse as
/// `sip:`/`sips:`/`tel:` compare as written.
fn uri_eq(a: &str, b: &str) -> bool {
    match (Uri::parse(a), Uri::parse(b)) {
        (Ok(x), Ok(y)) => x.equivalent(&y),
        _ => a == b,
    }
}

/// Applies one REGISTER to the bindings of its AOR, following RFC 3261 §10.3 steps 6–7:
/// per contact, an existing binding with another Call-ID is replaced; with the same Call-ID the
/// CSeq must be higher, or the whole request fails and nothing changes; expires 0 removes.
/// `others` is the number of bindings the store holds for other AORs (for the total cap).
/// Expired bindings are dropped.
pub fn apply_register(
    bindings: &mut Vec<Binding>,
    change: &RegisterChange,
    now: Instant,
    limits: &StoreLimits,
    others: usize,
) -> Result<BindingChanges, RegisterError> {
    match plan_register(bindings, change, now, limits, others)? {
        Some((next, changes)) => {
            *bindings = next.into_vec();
            Ok(changes)
        }
        None => {
            bindings.retain(|b| b.expires_at > now);
            Ok(BindingChanges::new())
        }
    }
}

/// [`apply_register`] without touching `current`: the AOR's bindings afterwards (expired ones
/// dropped, inline when there is one, else in a vector of exactly the room needed) and what changed, or `None` when the
/// request was already applied (a retransmission: nothing changes).
pub fn plan_register(
    current: &[Binding],
    change: &RegisterChange,
    now: Instant,
    limits: &StoreLimits,
    others: usize,
) -> Result<Option<(AorBindings, BindingChanges)>, RegisterError> {
    let live = |b: &&Binding| b.expires_at > now;
    // Ordering is checked for every binding touched before anything changes.
    let touched =
        |b: &Binding| change.remove_all || change.contacts.iter().any(|c| same_binding(b, c));
    for b in current.iter().filter(live).filter(|b| touched(b)) {
        if *b.call_id == *change.call_id && change.cseq == b.cseq {
            // The same request again (a retransmission reaching a registrar that answers
            // REGISTER without server transactions): already applied, nothing changes.
            return Ok(None);
        }
        if *b.call_id == *change.call_id && change.cseq < b.cseq {
            return Err(RegisterError::OutOfOrder {
                have: b.cseq,
                got: change.cseq,
            });
        }
    }
    let mut changes = BindingChanges::new();
    let mut next = AorBindings::new();
    if change.remove_all {
        changes.extend(
            current
                .iter()
                .filter(live)
                .cloned()
                .map(BindingChange::Removed),
        );
    } else {
        // No room reserved for the contacts: most refresh a binding in place, and a refresh
        // of an AOR's one binding must stay inline (no allocation).
        next.extend(current.iter().filter(live).cloned());
    }
    for c in &change.contacts {
        let existing = next.iter().position(|b| same_binding(b, c));
        if c.expires == 0 {
            if let Some(i) = existing {
                changes.push(BindingChange::Removed(next.remove(i)));
            }
            continue;
        }
        let binding = Binding {
            contact: c.contact.clone(),
            expires_at: now + Duration::from_secs(u64::from(c.expires)),
            q: c.q,
            call_id: change.call_id.clone(),
            cseq: change.cseq,
            flow: change.flow,
            offline: false,
            extra: if c.instance.is_some() || c.reg_id.is_some() || !change.path.is_empty() {
                Some(Box::new(BindingExtra {
                    instance: c.instance.as_deref().map(Into::into),
                    reg_id: c.reg_id,
                    path: change.path.iter().map(|p| p.as_str().into()).collect(),
                }))
            } else {
                None
            },
        };
        match existing {
            Some(i) => {
                next[i] = binding.clone();
                changes.push(BindingChange::Refreshed(binding));
            }
            None => {
                if next.len() >= limits.max_bindings_per_aor {
                    return Err(RegisterError::TooManyForAor);
                }
                if others + next.len() >= limits.max_bindings {
                    return Err(RegisterError::StoreFull);
                }
                next.push(binding.clone());
                changes.push(BindingChange::Added(binding));
            }
        }
    }
    if next.spilled() && next.capacity() > next.len() {
        next.shrink_to_fit();
    }
    Ok(Some((next, changes)))
}

/// A binding that went away without its owner asking (expiry, flow closed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    /// Its address-of-record.
    pub aor: String,
    /// The binding.
    pub binding: Binding,
}

/// Where bindings are kept. Async so that a networked store (a database, Redis) can implement
/// it; every implementation must apply REGISTERs with [`apply_register`] atomically per AOR.
pub trait LocationStore: Send + Sync + 'static {
    /// The live bindings of an AOR, highest q first.
    fn lookup(&self, aor: &str, now: Instant) -> impl Future<Output = Vec<Binding>> + Send;

    /// Applies a REGISTER; returns the AOR's bindings afterwards (highest q first) and what
    /// changed.
    fn register(
        &self,
        aor: &str,
        change: RegisterChange,
        now: Instant,
    ) -> impl Future<Output = Result<(Bindings, BindingChanges), RegisterError>> + Send;

    /// Removes expired bindings and returns them.
    fn sweep(&self, now: Instant) -> impl Future<Output = Vec<Lost>> + Send;

    /// A flow closed: removes the bindings that can only be reached over it (those registered
    /// over TCP/TLS, and outbound ones) and marks the others offline. Returns what was removed
    /// or marked.
    fn flow_closed(&self, flow: Flow) -> impl Future<Output = Vec<Lost>> + Send;

    /// Marks the bindings of an AOR reached over `flow` online or offline (keep-alive results).
    fn set_offline(
        &self,
        aor: &str,
        flow: Flow,
        offline: bool,
    ) -> impl Future<Output = usize> + Send;

    /// Every (AOR, binding) pair (for keep-alive probing and operators' listings).
    fn all(&self, now: Instant) -> impl Future<Output = Vec<(String, Binding)>> + Send;

    /// Number of AORs and bindings held.
    fn counts(&self) -> impl Future<Output = (usize, usize)> + Send;

    /// Bytes the bindings take ([`aor_footprint`] summed), when the store keeps count.
    fn bytes(&self) -> impl Future<Output = Option<usize>> + Send {
        async { None }
    }

    /// Whether every method's future completes on its first poll, never waiting (an
    /// in-memory store). The [`InlineRegistrar`](super::InlineRegistrar) then runs REGISTERs
    /// to completion on the receive task without boxing their work. Default `false`.
    fn answers_at_once(&self) -> bool {
        false
    }
}

/// The default store: a map in memory behind a mutex.
#[derive(Debug, Default)]
pub struct MemoryLocationStore {
    inner: Mutex<Inner>,
    limits: StoreLimits,
}

#[derive(Debug, Default)]
struct Inner {
    /// Keyed by AORs the network chooses: foldhash's quality hasher with a random seed per
    /// map (several times cheaper than SipHash, still seeded against chosen collisions).
    aors: AorTable,
    total: usize,
    /// [`aor_footprint`] summed over `aors`.
    bytes: usize,
    /// No binding expires before this (a lower bound: a refresh can leave it early). The
    /// sweep walks the AORs only once it has passed, and sets it anew from what it keeps; so
    /// with a million registered users the once-a-second sweep costs nothing until the first
    /// of them may have expired, instead of a walk of every AOR each time.
    next_expiry: Option<Instant>,
}

/// The AORs and their bindings. Each entry keeps its AOR's hash beside it, so that growing
/// the table moves entries without reading every AOR through its pointer and hashing it
/// again (with 100 000 new AORs registered at 20 000/s, the rehashes of a `HashMap` keyed by
/// `Box<str>` were ~7 % of the registrar's CPU under perf), and a REGISTER hashes its AOR
/// once. AORs are chosen by the network: foldhash's quality hasher, seeded at random per
/// table, keeps collisions from being chosen.
///
/// An entry is the hash and one boxed [`AorNode`]: the table's slots stay small (its empty
/// slots cost 16 bytes each), and a new AOR of up to [`AOR_INLINE`] bytes with one binding
/// is one allocation.
#[derive(Default)]
struct AorTable {
    table: hashbrown::HashTable<AorEntry>,
    state: foldhash::quality::RandomState,
}

struct AorEntry {
    hash: u64,
    node: Box<AorNode>,
}

/// One AOR: its key and its bindings (the first inline).
struct AorNode {
    aor: AorKey,
    bindings: AorBindings,
}

/// AORs up to this many bytes are kept inside their node (most are: `sip:user@domain`).
const AOR_INLINE: usize = 54;

/// An AOR as a table key: inline when short, else on the heap.
enum AorKey {
    Inline(u8, [u8; AOR_INLINE]),
    Heap(Box<str>),
}

impl AorKey {
    fn new(aor: &str) -> AorKey {
        if aor.len() <= AOR_INLINE {
            let mut b = [0u8; AOR_INLINE];
            b[..aor.len()].copy_from_slice(aor.as_bytes());
            AorKey::Inline(aor.len() as u8, b)
        } else {
            AorKey::Heap(aor.into())
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            AorKey::Inline(n, b) => &b[..usize::from(*n)],
            AorKey::Heap(s) => s.as_bytes(),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            // Copied from a `&str` whole: always valid.
            AorKey::Inline(..) => std::str::from_utf8(self.as_bytes()).unwrap_or_default(),
            AorKey::Heap(s) => s,
        }
    }

    fn is(&self, aor: &str) -> bool {
        self.as_bytes() == aor.as_bytes()
    }
}

impl std::fmt::Debug for AorTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl AorTable {
    fn hash(&self, aor: &str) -> u64 {
        use std::hash::BuildHasher;
        self.state.hash_one(aor)
    }

    fn get_hashed(&self, hash: u64, aor: &str) -> Option<&AorBindings> {
        self.table
            .find(hash, |e| e.node.aor.is(aor))
            .map(|e| &e.node.bindings)
    }

    fn get(&self, aor: &str) -> Option<&AorBindings> {
        self.get_hashed(self.hash(aor), aor)
    }

    fn get_mut(&mut self, aor: &str) -> Option<&mut AorBindings> {
        let h = self.hash(aor);
        self.table
            .find_mut(h, |e| e.node.aor.is(aor))
            .map(|e| &mut e.node.bindings)
    }

    /// Stores `bindings` as the AOR's (removes the AOR when there are none).
    fn set(&mut self, hash: u64, aor: &str, bindings: AorBindings) {
        use hashbrown::hash_table::Entry;
        match self
            .table
            .entry(hash, |e| e.node.aor.is(aor), |e: &AorEntry| e.hash)
        {
            Entry::Occupied(o) if bindings.is_empty() => {
                o.remove();
            }
            Entry::Occupied(mut o) => o.get_mut().node.bindings = bindings,
            Entry::Vacant(_) if bindings.is_empty() => {}
            Entry::Vacant(v) => {
                v.insert(AorEntry {
                    hash,
                    node: Box::new(AorNode {
                        aor: AorKey::new(aor),
                        bindings,
                    }),
                });
            }
        }
    }

    fn retain(&mut self, mut keep: impl FnMut(&str, &mut AorBindings) -> bool) {
        self.table.retain(|e| {
            let AorNode { aor, bindings } = &mut *e.node;
            keep(aor.as_str(), bindings)
        });
    }

    fn iter(&self) -> impl Iterator<Item = (&str, &AorBindings)> {
        self.table
            .iter()
            .map(|e| (e.node.aor.as_str(), &e.node.bindings))
    }

    fn len(&self) -> usize {
        self.table.len()
    }
}

/// Lowers `bound` to the earliest expiry among `bindings` (if any is earlier).
fn lower_to_first_expiry(bound: &mut Option<Instant>, bindings: &[Binding]) {
    if let Some(first) = bindings.iter().map(|b| b.expires_at).min() {
        *bound = Some(bound.map_or(first, |e| e.min(first)));
    }
}

impl MemoryLocationStore {
    /// An empty store with these caps.
    pub fn new(limits: StoreLimits) -> MemoryLocationStore {
        MemoryLocationStore {
            inner: Mutex::new(Inner::default()),
            limits,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock only means another thread panicked mid-update; the map itself is
        // always left consistent (updates are computed aside and swapped in).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn sorted(mut v: Vec<Binding>) -> Vec<Binding> {
    v.sort_by_key(|b| std::cmp::Reverse(b.q));
    v
}

impl LocationStore for MemoryLocationStore {
    fn answers_at_once(&self) -> bool {
        true
    }

    async fn lookup(&self, aor: &str, now: Instant) -> Vec<Binding> {
        let inner = self.lock();
        sorted(
            inner
                .aors
                .get(aor)
                .map(|v| v.iter().filter(|b| b.expires_at > now).cloned().collect())
                .unwrap_or_default(),
        )
    }

    async fn register(
        &self,
        aor: &str,
        change: RegisterChange,
        now: Instant,
    ) -> Result<(Bindings, BindingChanges), RegisterError> {
        let mut inner = self.lock();
        let Inner {
            aors,
            total,
            bytes,
            next_expiry,
        } = &mut *inner;
        let hash = aors.hash(aor);
        let current = aors.get_hashed(hash, aor).map_or(&[][..], |b| b.as_slice());
        let before = current.len();
        let before_bytes = aor_footprint(aor, current);
        let others = *total - before;
        let planned = plan_register(current, &change, now, &self.limits, others)?;
        let Some((next, changes)) = planned else {
            // Already applied: the bindings as they are.
            let mut out: Bindings = current
                .iter()
                .filter(|b| b.expires_at > now)
                .cloned()
                .collect();
            out.sort_by_key(|b| std::cmp::Reverse(b.q));
            return Ok((out, BindingChanges::new()));
        };
        let after_bytes = aor_footprint(aor, &next);
        let others_bytes = bytes.saturating_sub(before_bytes);
        if after_bytes > before_bytes && others_bytes + after_bytes > self.limits.max_bytes {
            return Err(RegisterError::StoreFull);
        }
        *bytes = others_bytes + after_bytes;
        *total = others + next.len();
        lower_to_first_expiry(next_expiry, &next);
        let mut out: Bindings = next.iter().cloned().collect();
        out.sort_by_key(|b| std::cmp::Reverse(b.q));
        aors.set(hash, aor, next);
        Ok((out, changes))
    }

    async fn sweep(&self, now: Instant) -> Vec<Lost> {
        let mut inner = self.lock();
        let Inner {
            aors,
            total,
            bytes,
            next_expiry,
        } = &mut *inner;
        let mut lost = Vec::new();
        if next_expiry.is_none_or(|e| e > now) {
            return lost;
        }
        let mut earliest: Option<Instant> = None;
        aors.retain(|aor, v| {
            // Most AORs have nothing expired: they are passed over without being measured.
            if v.iter().all(|b| b.expires_at > now) {
                lower_to_first_expiry(&mut earliest, v);
                return true;
            }
            let before = aor_footprint(aor, v);
            v.retain(|b| {
                let keep = b.expires_at > now;
                if !keep {
                    lost.push(Lost {
                        aor: aor.to_string(),
                        binding: b.clone(),
                    });
                }
                keep
            });
            *bytes = bytes.saturating_sub(before) + aor_footprint(aor, v);
            lower_to_first_expiry(&mut earliest, v);
            !v.is_empty()
        });
        *next_expiry = earliest;
        *total -= lost.len();
        lost
    }

    async fn flow_closed(&self, flow: Flow) -> Vec<Lost> {
        let mut inner = self.lock();
        let Inner {
            aors, total, bytes, ..
        } = &mut *inner;
        let mut lost = Vec::new();
        let mut removed = 0;
        aors.retain(|aor, v| {
            let before = aor_footprint(aor, v);
            v.retain_mut(|b| {
                if b.flow != flow {
                    return true;
                }
                lost.push(Lost {
                    aor: aor.to_string(),
                    binding: b.clone(),
                });
                if flow.transport.is_reliable() || b.is_outbound() {
                    removed += 1;
                    false
                } else {
                    b.offline = true;
                    true
                }
            });
            *bytes = bytes.saturating_sub(before) + aor_footprint(aor, v);
            !v.is_empty()
        });
        *total -= removed;
        lost
    }

    async fn set_offline(&self, aor: &str, flow: Flow, offline: bool) -> usize {
        let mut inner = self.lock();
        inner.aors.get_mut(aor).map_or(0, |v| {
            v.iter_mut()
                .filter(|b| b.flow == flow)
                .map(|b| b.offline = offline)
                .count()
        })
    }

    async fn all(&self, now: Instant) -> Vec<(String, Binding)> {
        let inner = self.lock();
        inner
            .aors
            .iter()
            .flat_map(|(aor, v)| {
                v.iter()
                    .filter(|b| b.expires_at > now)
                    .map(move |b| (aor.to_string(), b.clone()))
            })
            .collect()
    }

    async fn counts(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.aors.len(), inner.total)
    }

    async fn bytes(&self) -> Option<usize> {
        Some(self.lock().bytes)
    }
}

#[cfg(test)]
#[path = "location_tests.rs"]
mod tests;
