//! Dense tables keyed by [`TransactionKey`]: the layer's slab of live transactions, and
//! [`KeyMap`], where a transaction user keeps its own state per transaction.
//!
//! A key is a slot index (its low [`INDEX_BITS`] bits) and the generation of that slot (the
//! rest). Looking a key up is an array index and a comparison, with no hashing; growing is a
//! `Vec` growing (a large one is moved by the allocator's `mremap`, not copied), never a
//! rehash of every live entry. With UDP transactions lingering 32 s (Timers J, L, M), a
//! hash map of them doubled and moved every entry again and again while traffic ramped up;
//! under a 5000 calls/s proxy load that was over a tenth of the process's CPU.
//!
//! Freed slots are reused oldest first, and a slot's generation grows on each reuse, so a
//! stale key misses: a key comes back only after its slot has been reused 2^40 times.

use std::collections::VecDeque;

use crate::event::TransactionKey;

/// Bits of a key that index the slot: at most 2^24 (16.7 million) live transactions.
pub(crate) const INDEX_BITS: u32 = 24;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;
/// How many transactions a layer can hold at once, whatever its configuration says.
pub(crate) const MAX_SLOTS: usize = 1 << INDEX_BITS;

fn split(id: u64) -> (usize, u64) {
    ((id & INDEX_MASK) as usize, id >> INDEX_BITS)
}

fn join(index: usize, generation: u64) -> u64 {
    (generation << INDEX_BITS) | index as u64
}

struct Slot<T> {
    generation: u64,
    value: Option<T>,
}

/// The live transactions of a layer, by key.
pub(crate) struct Slab<T> {
    slots: Vec<Slot<T>>,
    /// Freed slots, oldest first.
    free: VecDeque<u32>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            slots: Vec::new(),
            free: VecDeque::new(),
            len: 0,
        }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Slab<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<T> Slab<T> {
    /// The key the next [`insert`](Self::insert) will use (`None` when every slot is taken).
    pub(crate) fn next_key(&self) -> Option<u64> {
        match self.free.front() {
            Some(&i) => Some(join(i as usize, self.slots[i as usize].generation)),
            None if self.slots.len() < MAX_SLOTS => Some(join(self.slots.len(), 1)),
            None => None,
        }
    }

    /// Stores `value` under [`next_key`](Self::next_key); returns that key (`None`, and
    /// nothing stored, when full).
    pub(crate) fn insert(&mut self, value: T) -> Option<u64> {
        let key = self.next_key()?;
        let (i, _) = split(key);
        if self.free.pop_front().is_none() {
            self.slots.push(Slot {
                generation: 1,
                value: None,
            });
        }
        self.slots[i].value = Some(value);
        self.len += 1;
        Some(key)
    }

    /// The value under `key`, if it is live.
    pub(crate) fn get(&self, key: &u64) -> Option<&T> {
        let (i, g) = split(*key);
        let s = self.slots.get(i)?;
        if s.generation == g {
            s.value.as_ref()
        } else {
            None
        }
    }

    /// The value under `key`, if it is live.
    pub(crate) fn get_mut(&mut self, key: &u64) -> Option<&mut T> {
        let (i, g) = split(*key);
        let s = self.slots.get_mut(i)?;
        if s.generation == g {
            s.value.as_mut()
        } else {
            None
        }
    }

    /// Whether `key` is live.
    pub(crate) fn contains_key(&self, key: &u64) -> bool {
        self.get(key).is_some()
    }

    /// Takes the value under `key` out; its slot goes to the back of the free list with the
    /// next generation.
    pub(crate) fn remove(&mut self, key: &u64) -> Option<T> {
        let (i, g) = split(*key);
        let s = self.slots.get_mut(i)?;
        if s.generation != g {
            return None;
        }
        let v = s.value.take()?;
        s.generation = (s.generation + 1) & (u64::MAX >> INDEX_BITS);
        if s.generation == 0 {
            s.generation = 1;
        }
        self.free.push_back(i as u32);
        self.len -= 1;
        Some(v)
    }

    /// Live values.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether none is live.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Live keys and values, in slot order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &T)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((join(i, s.generation), s.value.as_ref()?)))
    }

    /// Live values, in slot order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().filter_map(|s| s.value.as_ref())
    }

    /// Live keys, in slot order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = u64> + '_ {
        self.iter().map(|(k, _)| k)
    }
}

/// A transaction user's state per transaction, keyed by [`TransactionKey`] and stored by the
/// key's slot: O(1) without hashing, and it grows as a `Vec` does (to the most transactions
/// live at once), never rehashing. A value left under the key of a transaction whose slot
/// has been reused is replaced by the new transaction's.
///
/// ```
/// use sip_transaction::{KeyMap, TransactionKey};
/// let mut m = KeyMap::default();
/// let k = TransactionKey::from_u64(1 << 24);
/// assert_eq!(m.insert(k, "a"), None);
/// assert_eq!(m.get(k), Some(&"a"));
/// assert_eq!(m.remove(k), Some("a"));
/// assert!(m.is_empty());
/// ```
pub struct KeyMap<T> {
    slots: Vec<Option<(u64, T)>>,
    len: usize,
}

impl<T> Default for KeyMap<T> {
    fn default() -> Self {
        KeyMap {
            slots: Vec::new(),
            len: 0,
        }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for KeyMap<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(
                self.slots
                    .iter()
                    .enumerate()
                    .filter_map(|(i, s)| s.as_ref().map(|(g, v)| (join(i, *g), v))),
            )
            .finish()
    }
}

impl<T> KeyMap<T> {
    /// Stores `value` under `key`; returns what that same key held.
    pub fn insert(&mut self, key: TransactionKey, value: T) -> Option<T> {
        let (i, g) = split(key.0);
        if i >= self.slots.len() {
            self.slots.resize_with(i + 1, || None);
        }
        let old = self.slots[i].replace((g, value));
        match old {
            Some((og, v)) if og == g => Some(v),
            Some(_) => None,
            None => {
                self.len += 1;
                None
            }
        }
    }

    /// The value under `key`.
    pub fn get(&self, key: TransactionKey) -> Option<&T> {
        let (i, g) = split(key.0);
        match self.slots.get(i)? {
            Some((og, v)) if *og == g => Some(v),
            _ => None,
        }
    }

    /// The value under `key`.
    pub fn get_mut(&mut self, key: TransactionKey) -> Option<&mut T> {
        let (i, g) = split(key.0);
        match self.slots.get_mut(i)? {
            Some((og, v)) if *og == g => Some(v),
            _ => None,
        }
    }

    /// Takes the value under `key` out.
    pub fn remove(&mut self, key: TransactionKey) -> Option<T> {
        let (i, g) = split(key.0);
        let slot = self.slots.get_mut(i)?;
        if !matches!(slot, Some((og, _)) if *og == g) {
            return None;
        }
        self.len -= 1;
        slot.take().map(|(_, v)| v)
    }

    /// Values stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether none is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn a_stale_key_misses_after_its_slot_is_reused() {
        let mut s = Slab::default();
        let a = s.insert("a").unwrap();
        assert_eq!(s.remove(&a), Some("a"));
        let b = s.insert("b").unwrap();
        assert_ne!(a, b);
        assert_eq!(split(a).0, split(b).0, "the slot is reused");
        assert_eq!(s.get(&a), None);
        assert_eq!(s.remove(&a), None);
        assert_eq!(s.get(&b), Some(&"b"));
        let mut m = KeyMap::default();
        m.insert(TransactionKey(a), 1);
        assert_eq!(m.get(TransactionKey(b)), None);
        assert_eq!(
            m.insert(TransactionKey(b), 2),
            None,
            "the stale value is replaced"
        );
        assert_eq!(m.len(), 1);
        assert_eq!(m.remove(TransactionKey(a)), None);
        assert_eq!(m.remove(TransactionKey(b)), Some(2));
        assert!(m.is_empty());
    }

    #[test]
    fn keys_are_never_zero() {
        let mut s = Slab::default();
        assert!(s.insert(()).unwrap() != 0);
    }

    proptest! {
        /// The slab and the key map behave as hash maps of the keys the slab hands out.
        #[test]
        fn behaves_as_a_map(ops in proptest::collection::vec((any::<bool>(), any::<u8>()), 1..400)) {
            let mut s = Slab::default();
            let mut m = KeyMap::default();
            let mut model: HashMap<u64, u8> = HashMap::new();
            let mut issued: Vec<u64> = Vec::new();
            for (add, n) in ops {
                if add || issued.is_empty() {
                    let k = s.insert(n).unwrap();
                    prop_assert!(!model.contains_key(&k));
                    prop_assert!(!issued.contains(&k), "a key is never handed out twice");
                    issued.push(k);
                    model.insert(k, n);
                    m.insert(TransactionKey(k), n);
                } else {
                    let k = issued[n as usize % issued.len()];
                    prop_assert_eq!(s.remove(&k), model.remove(&k));
                    m.remove(TransactionKey(k));
                }
                prop_assert_eq!(s.len(), model.len());
                prop_assert_eq!(m.len(), model.len());
                for &k in &issued {
                    prop_assert_eq!(s.get(&k), model.get(&k));
                    prop_assert_eq!(m.get(TransactionKey(k)), model.get(&k));
                }
            }
            let mut keys: Vec<u64> = s.keys().collect();
            keys.sort_unstable();
            let mut want: Vec<u64> = model.keys().copied().collect();
            want.sort_unstable();
            prop_assert_eq!(keys, want);
        }
    }
}
