//! The write side of a connection: a queue bounded in bytes, drained by the connection's own
//! writer task, so that whoever sends (the Endpoint's driver above all) only enqueues and never
//! waits for a peer to read.
//!
//! Messages to one connection are written in the order they were queued. A queue that would
//! pass its byte budget refuses the message: the peer is not reading, and the caller closes the
//! connection. A queue exists before its connection does while a connection is being opened, so
//! that every message for a new peer waits in one queue and one connection is opened.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use bytes::{Bytes, BytesMut};
use sip_core::Flow;
use tokio::sync::{oneshot, Notify};

use crate::error::SendError;

/// Who hears how a queued message fared.
#[derive(Debug, Default)]
pub(crate) enum Notice {
    /// Nobody (keep-alives, answers to malformed input).
    #[default]
    None,
    /// A failure is reported as [`crate::TransportEvent::SendFailed`] with this tag.
    Tag(u64),
    /// A waiting sender gets the result.
    Done(oneshot::Sender<Result<Flow, SendError>>),
}

/// One queued message.
#[derive(Debug)]
pub(crate) struct Item {
    pub(crate) data: Bytes,
    pub(crate) notice: Notice,
}

/// Why a message was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The byte budget would be exceeded.
    Full,
    /// The queue's connection is closing or closed.
    Closed,
}

#[derive(Debug, Default)]
struct State {
    items: VecDeque<Item>,
    bytes: usize,
}

/// A connection's outgoing messages, bounded in bytes.
#[derive(Debug)]
pub(crate) struct WriteQueue {
    state: Mutex<State>,
    closed: AtomicBool,
    limit: usize,
    /// Wakes the writer: data queued (a stored permit when it is not waiting yet).
    data: Notify,
    /// Wakes the writer when the queue closes, even in the middle of a write.
    closing: Notify,
}

impl WriteQueue {
    /// An empty queue of at most `limit` bytes.
    pub(crate) fn new(limit: usize) -> WriteQueue {
        WriteQueue {
            state: Mutex::new(State::default()),
            closed: AtomicBool::new(false),
            limit,
            data: Notify::new(),
            closing: Notify::new(),
        }
    }

    /// Queues one whole message; on refusal the item comes back so that its notice can be
    /// answered.
    pub(crate) fn push(&self, item: Item) -> Result<(), (Refused, Item)> {
        if self.is_closed() {
            return Err((Refused::Closed, item));
        }
        let Ok(mut st) = self.state.lock() else {
            return Err((Refused::Closed, item));
        };
        if st.bytes.saturating_add(item.data.len()) > self.limit {
            return Err((Refused::Full, item));
        }
        st.bytes += item.data.len();
        st.items.push_back(item);
        drop(st);
        self.data.notify_one();
        Ok(())
    }

    /// Bytes queued and not yet handed to the socket.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.state.lock().map(|s| s.bytes).unwrap_or(0)
    }

    /// Whether [`WriteQueue::close`] was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Refuses further messages and wakes the writer, which reports what is left as failed.
    pub(crate) fn shut(&self) {
        self.closed.store(true, Ordering::Release);
        self.closing.notify_waiters();
        self.data.notify_one();
    }

    /// [`WriteQueue::shut`], and returns what was still queued, for the caller to report as
    /// failed.
    pub(crate) fn close(&self) -> Vec<Item> {
        self.shut();
        self.take_all()
    }

    fn take_all(&self) -> Vec<Item> {
        match self.state.lock() {
            Ok(mut st) => {
                st.bytes = 0;
                st.items.drain(..).collect()
            }
            Err(_) => Vec::new(),
        }
    }

    /// Waits for messages and moves up to about `max_bytes` of them (at least one) into
    /// `batch`. Returns `false` once the queue is closed.
    pub(crate) async fn next_batch(&self, batch: &mut Vec<Item>, max_bytes: usize) -> bool {
        loop {
            if self.is_closed() {
                return false;
            }
            if let Ok(mut st) = self.state.lock() {
                let mut taken = 0usize;
                while let Some(front) = st.items.front() {
                    if taken > 0 && taken + front.data.len() > max_bytes {
                        break;
                    }
                    let Some(item) = st.items.pop_front() else {
                        break;
                    };
                    taken += item.data.len();
                    batch.push(item);
                }
                st.bytes -= taken.min(st.bytes);
                if !batch.is_empty() {
                    return true;
                }
            }
            self.data.notified().await;
        }
    }

    /// Completes once the queue is closed.
    pub(crate) async fn closed(&self) {
        let notified = self.closing.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.is_closed() {
            return;
        }
        notified.await;
    }
}

/// The bytes of a batch as one buffer (one write, one syscall for small messages).
pub(crate) fn coalesce(batch: &[Item]) -> Bytes {
    match batch {
        [one] => one.data.clone(),
        many => {
            let len = many.iter().map(|i| i.data.len()).sum();
            let mut buf = BytesMut::with_capacity(len);
            for i in many {
                buf.extend_from_slice(&i.data);
            }
            buf.freeze()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(n: usize) -> Item {
        Item {
            data: Bytes::from(vec![b'x'; n]),
            notice: Notice::None,
        }
    }

    #[test]
    fn budget_is_counted_in_bytes() {
        let q = WriteQueue::new(100);
        q.push(item(60)).unwrap();
        q.push(item(40)).unwrap();
        assert_eq!(q.queued_bytes(), 100);
        assert_eq!(q.push(item(1)).unwrap_err().0, Refused::Full);
        let left = q.close();
        assert_eq!(left.len(), 2);
        assert_eq!(q.push(item(1)).unwrap_err().0, Refused::Closed);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn batches_keep_order_and_respect_the_batch_size() {
        let q = WriteQueue::new(1000);
        for n in [10, 20, 30, 500] {
            q.push(item(n)).unwrap();
        }
        let mut b = Vec::new();
        assert!(q.next_batch(&mut b, 64).await);
        assert_eq!(
            b.iter().map(|i| i.data.len()).collect::<Vec<_>>(),
            [10, 20, 30]
        );
        assert_eq!(coalesce(&b).len(), 60);
        b.clear();
        // A message larger than the batch size still goes, alone.
        assert!(q.next_batch(&mut b, 64).await);
        assert_eq!(b.len(), 1);
        assert_eq!(q.queued_bytes(), 0);
        q.close();
        b.clear();
        assert!(!q.next_batch(&mut b, 64).await);
        q.closed().await;
    }
}
