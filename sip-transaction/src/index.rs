//! The matching indexes: byte-string keys (branch, sent-by, method; the RFC 2543 tuple; the
//! merge key) to transaction keys, each entry keeping its key's hash beside it.
//!
//! Growing a table rehashes every entry. A `HashMap<Box<[u8]>, u64>` hashes each key again
//! for that, reading it through its pointer (a cache miss per entry); here the stored hash is
//! used, and only the entries move. Keys are hashed with foldhash's quality hasher seeded at
//! random per table, so that collisions cannot be chosen from outside.

use std::hash::BuildHasher;

use hashbrown::hash_table::{Entry as TableEntry, HashTable};

struct Entry {
    hash: u64,
    key: Box<[u8]>,
    id: u64,
}

/// Byte-string keys to transaction ids.
#[derive(Default)]
pub(crate) struct Index {
    table: HashTable<Entry>,
    state: foldhash::quality::RandomState,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("len", &self.table.len())
            .finish()
    }
}

impl Index {
    fn hash(&self, key: &[u8]) -> u64 {
        self.state.hash_one(key)
    }

    /// The id indexed under `key`.
    pub(crate) fn get(&self, key: &[u8]) -> Option<u64> {
        let h = self.hash(key);
        self.table.find(h, |e| *e.key == *key).map(|e| e.id)
    }

    /// Whether `key` is indexed.
    pub(crate) fn contains_key(&self, key: &[u8]) -> bool {
        self.get(key).is_some()
    }

    /// Indexes `id` under `key`; returns the id it replaces.
    pub(crate) fn insert(&mut self, key: Box<[u8]>, id: u64) -> Option<u64> {
        let h = self.hash(&key);
        match self.table.entry(h, |e| *e.key == *key, |e: &Entry| e.hash) {
            TableEntry::Occupied(mut o) => Some(std::mem::replace(&mut o.get_mut().id, id)),
            TableEntry::Vacant(v) => {
                v.insert(Entry { hash: h, key, id });
                None
            }
        }
    }

    /// Removes `key` if it is indexed to `id` (a newer transaction's entry stays); returns
    /// whether it was.
    pub(crate) fn remove_if(&mut self, key: &[u8], id: u64) -> bool {
        let h = self.hash(key);
        match self.table.find_entry(h, |e| *e.key == *key) {
            Ok(o) if o.get().id == id => {
                o.remove();
                true
            }
            _ => false,
        }
    }

    /// Entries indexed.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        /// The index behaves as a map, through growth and removals.
        #[test]
        fn behaves_as_a_map(ops in proptest::collection::vec((0u8..3, 0u16..300, any::<u64>()), 1..2000)) {
            let mut index = Index::default();
            let mut model: HashMap<Vec<u8>, u64> = HashMap::new();
            for (op, k, id) in ops {
                let key = format!("z9hG4bK{k}INVITE").into_bytes();
                match op {
                    0 => prop_assert_eq!(index.insert(key.clone().into(), id), model.insert(key, id)),
                    1 => {
                        let want = model.get(&key).copied();
                        let target = want.unwrap_or(id);
                        let removed = index.remove_if(&key, target);
                        prop_assert_eq!(removed, want == Some(target));
                        if removed {
                            model.remove(&key);
                        }
                    }
                    _ => prop_assert!(!index.remove_if(&key, u64::MAX) || model.remove(&key).is_some()),
                }
                prop_assert_eq!(index.len(), model.len());
                let key = format!("z9hG4bK{k}INVITE").into_bytes();
                prop_assert_eq!(index.get(&key), model.get(&key).copied());
            }
            for (k, v) in &model {
                prop_assert_eq!(index.get(k), Some(*v));
                prop_assert!(index.contains_key(k));
            }
        }
    }
}
