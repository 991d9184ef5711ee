//! The dialog table: dialogs by ID, matching of requests and responses (forks) to them,
//! removal on termination, caps on count and memory, and [`Stats`].
//!
//! Each entry holds a [`Dialog`] and the usage state `U` that lives on it (the INVITE session
//! of [`crate::invite`], or a subscription). Entries are grouped by Call-ID, so a lookup hashes
//! the Call-ID once and compares tags, allocating nothing.

use std::collections::HashMap;

use sip_core::Message;

use crate::dialog::{Dialog, EndCause, State};
use crate::id::DialogId;
use crate::Error;

/// Caps of a [`DialogTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Live dialogs at most.
    pub max_dialogs: usize,
    /// Heap bytes of dialog state at most (as [`Dialog::heap_size`] counts it).
    pub max_bytes: usize,
}

impl Default for Limits {
    /// 100 000 dialogs, 256 MiB.
    fn default() -> Self {
        Limits {
            max_dialogs: 100_000,
            max_bytes: 256 << 20,
        }
    }
}

/// Counters of a [`DialogTable`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Live early dialogs.
    pub early: usize,
    /// Live confirmed dialogs.
    pub confirmed: usize,
    /// Dialogs ever inserted.
    pub created: u64,
    /// Dialogs refused because the table was full.
    pub refused: u64,
    /// Ended dialogs by cause: local BYE, remote BYE, rejected, timeout, gone, extra fork,
    /// dropped (the order of [`EndCause`]).
    pub ended: [u64; 7],
    /// Heap bytes held by live dialogs.
    pub bytes: usize,
}

impl Stats {
    /// Dialogs ended for `cause`.
    pub fn ended_by(&self, cause: EndCause) -> u64 {
        self.ended.get(cause_index(cause)).copied().unwrap_or(0)
    }
}

fn cause_index(cause: EndCause) -> usize {
    match cause {
        EndCause::LocalBye => 0,
        EndCause::RemoteBye => 1,
        EndCause::Rejected => 2,
        EndCause::Timeout => 3,
        EndCause::Gone => 4,
        EndCause::ExtraFork => 5,
        EndCause::Dropped => 6,
    }
}

/// A dialog and the usage state on it.
#[derive(Debug)]
pub struct Entry<U> {
    /// The dialog.
    pub dialog: Dialog,
    /// The usage (INVITE session, subscription…).
    pub usage: U,
    /// Heap size accounted when inserted or last refreshed.
    accounted: usize,
    /// State counted in [`Stats`].
    counted: State,
}

/// Dialogs by ID.
#[derive(Debug)]
pub struct DialogTable<U> {
    by_call_id: HashMap<String, Vec<Entry<U>>>,
    len: usize,
    limits: Limits,
    stats: Stats,
}

impl<U> Default for DialogTable<U> {
    fn default() -> Self {
        DialogTable::new(Limits::default())
    }
}

impl<U> DialogTable<U> {
    /// An empty table with these caps.
    pub fn new(limits: Limits) -> Self {
        DialogTable {
            by_call_id: HashMap::new(),
            len: 0,
            limits,
            stats: Stats::default(),
        }
    }

    /// Adds a dialog. Fails when one with its ID exists or a cap would be passed.
    pub fn insert(&mut self, dialog: Dialog, usage: U) -> Result<&mut Entry<U>, Error> {
        let size = dialog.heap_size();
        if self.len() >= self.limits.max_dialogs
            || self.stats.bytes.saturating_add(size) > self.limits.max_bytes
        {
            self.stats.refused += 1;
            return Err(Error::TableFull);
        }
        let id = dialog.id();
        if self
            .get(&id.call_id, &id.local_tag, &id.remote_tag)
            .is_some()
        {
            return Err(Error::Duplicate);
        }
        let counted = dialog.state();
        self.count(counted, 1);
        self.len += 1;
        self.stats.created += 1;
        self.stats.bytes += size;
        let list = self.by_call_id.entry(id.call_id.clone()).or_default();
        list.push(Entry {
            dialog,
            usage,
            accounted: size,
            counted,
        });
        list.last_mut().ok_or(Error::TableFull)
    }

    /// The entry with this ID.
    pub fn get(&self, call_id: &str, local_tag: &str, remote_tag: &str) -> Option<&Entry<U>> {
        self.by_call_id.get(call_id)?.iter().find(|e| {
            let id = e.dialog.id();
            id.local_tag == local_tag && id.remote_tag == remote_tag
        })
    }

    /// The entry with this ID, mutable. After changing the dialog's state call
    /// [`DialogTable::update`] so that the counters follow (or [`DialogTable::remove`]).
    pub fn get_mut(
        &mut self,
        call_id: &str,
        local_tag: &str,
        remote_tag: &str,
    ) -> Option<&mut Entry<U>> {
        self.by_call_id.get_mut(call_id)?.iter_mut().find(|e| {
            let id = e.dialog.id();
            id.local_tag == local_tag && id.remote_tag == remote_tag
        })
    }

    /// The entry with this ID.
    pub fn get_by_id(&self, id: &DialogId) -> Option<&Entry<U>> {
        self.get(&id.call_id, &id.local_tag, &id.remote_tag)
    }

    /// The entry with this ID, mutable.
    pub fn get_by_id_mut(&mut self, id: &DialogId) -> Option<&mut Entry<U>> {
        self.get_mut(&id.call_id, &id.local_tag, &id.remote_tag)
    }

    /// §12.2.2: the dialog a received request belongs to (To-tag ours, From-tag theirs).
    pub fn match_request(&mut self, request: &Message) -> Option<&mut Entry<U>> {
        let (call_id, local, remote) = DialogId::request_parts(request)?;
        self.get_mut(call_id, local, remote)
    }

    /// §12.1.2 / §13.2.2.4: the dialog a response to our request belongs to (From-tag ours,
    /// To-tag theirs); `None` for a fork that has no dialog yet.
    pub fn match_response(&mut self, response: &Message) -> Option<&mut Entry<U>> {
        let call_id = response.call_id()?;
        let local = response.from().ok()?.tag()?;
        let remote = response.to().ok()?.tag()?;
        self.get_mut(call_id, local, remote)
    }

    /// Dialogs sharing a Call-ID and local tag (the early dialogs of one forked INVITE).
    pub fn forks<'a>(
        &'a self,
        call_id: &str,
        local_tag: &'a str,
    ) -> impl Iterator<Item = &'a Entry<U>> + 'a {
        self.by_call_id
            .get(call_id)
            .into_iter()
            .flatten()
            .filter(move |e| e.dialog.id().local_tag == local_tag)
    }

    /// Re-reads the state and size of the entry with this ID into the counters; removes it if
    /// it has terminated. Returns the removed entry.
    pub fn update(&mut self, id: &DialogId) -> Option<Entry<U>> {
        let (old, new, delta) = {
            let e = self.get_by_id_mut(id)?;
            let size = e.dialog.heap_size();
            let delta = size as isize - e.accounted as isize;
            e.accounted = size;
            let old = e.counted;
            e.counted = e.dialog.state();
            (old, e.counted, delta)
        };
        self.stats.bytes = self.stats.bytes.saturating_add_signed(delta);
        self.count(old, -1);
        self.count(new, 1);
        match new {
            State::Terminated(cause) => self.remove(id, cause),
            _ => None,
        }
    }

    /// Removes the dialog, counting it as ended for `cause` (terminating it if it was not).
    pub fn remove(&mut self, id: &DialogId, cause: EndCause) -> Option<Entry<U>> {
        let list = self.by_call_id.get_mut(&id.call_id)?;
        let i = list.iter().position(|e| {
            e.dialog.id().local_tag == id.local_tag && e.dialog.id().remote_tag == id.remote_tag
        })?;
        let mut entry = list.swap_remove(i);
        if list.is_empty() {
            self.by_call_id.remove(&id.call_id);
        }
        self.len -= 1;
        self.stats.bytes = self.stats.bytes.saturating_sub(entry.accounted);
        self.count(entry.counted, -1);
        if let Some(n) = self.stats.ended.get_mut(cause_index(cause)) {
            *n += 1;
        }
        entry.dialog.terminate(cause);
        Some(entry)
    }

    /// Live dialogs.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no dialog is live.
    pub fn is_empty(&self) -> bool {
        self.by_call_id.is_empty()
    }

    /// Every entry.
    pub fn iter(&self) -> impl Iterator<Item = &Entry<U>> {
        self.by_call_id.values().flatten()
    }

    /// Every entry, mutable.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Entry<U>> {
        self.by_call_id.values_mut().flatten()
    }

    /// The IDs of every live dialog.
    pub fn ids(&self) -> Vec<DialogId> {
        self.iter().map(|e| e.dialog.id().clone()).collect()
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    fn count(&mut self, state: State, by: isize) {
        let slot = match state {
            State::Early => &mut self.stats.early,
            State::Confirmed => &mut self.stats.confirmed,
            State::Terminated(_) => return,
        };
        *slot = slot.saturating_add_signed(by);
    }
}
