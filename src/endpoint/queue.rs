//! The queue of one client transaction's responses, from the driver to the TU: bounded,
//! one producer, one consumer, never awaited by the producer.
//!
//! tokio's `mpsc` channel would do, but each one costs about 800 bytes (its shared state is
//! padded to cache lines and its first block holds 32 slots), and a proxy keeps one per live
//! branch. This queue costs its `Arc`, a mutex and the few boxed messages it holds.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

use sip_core::Message;

struct State {
    items: VecDeque<Box<Message>>,
    cap: usize,
    sender_gone: bool,
    receiver_gone: bool,
    waker: Option<Waker>,
}

type Shared = Arc<Mutex<State>>;

fn lock(s: &Shared) -> MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// A new queue holding at most `cap` responses.
pub(crate) fn response_queue(cap: usize) -> (ResponseSender, ResponseReceiver) {
    let shared = Arc::new(Mutex::new(State {
        items: VecDeque::new(),
        cap,
        sender_gone: false,
        receiver_gone: false,
        waker: None,
    }));
    (
        ResponseSender {
            shared: shared.clone(),
        },
        ResponseReceiver { shared },
    )
}

/// Why [`ResponseSender::try_send`] did not queue a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SendError {
    /// The queue holds `cap` responses.
    Full,
    /// The receiver is gone.
    Closed,
}

/// The driver's end.
pub(crate) struct ResponseSender {
    shared: Shared,
}

impl ResponseSender {
    /// Queues a response unless the queue is full or the receiver is gone (the response is
    /// then handed back).
    pub(crate) fn try_send(&self, m: Box<Message>) -> Result<(), (SendError, Box<Message>)> {
        let waker = {
            let mut s = lock(&self.shared);
            if s.receiver_gone {
                return Err((SendError::Closed, m));
            }
            if s.items.len() >= s.cap {
                return Err((SendError::Full, m));
            }
            s.items.push_back(m);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Room left.
    pub(crate) fn capacity(&self) -> usize {
        let s = lock(&self.shared);
        s.cap.saturating_sub(s.items.len())
    }
}

impl Drop for ResponseSender {
    fn drop(&mut self) {
        let waker = {
            let mut s = lock(&self.shared);
            s.sender_gone = true;
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl std::fmt::Debug for ResponseSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseSender").finish_non_exhaustive()
    }
}

/// The TU's end.
pub(crate) struct ResponseReceiver {
    shared: Shared,
}

impl ResponseReceiver {
    /// The next response; `None` once the queue is empty and the sender gone.
    pub(crate) async fn recv(&mut self) -> Option<Box<Message>> {
        poll_fn(|cx| {
            let mut s = lock(&self.shared);
            if let Some(m) = s.items.pop_front() {
                return Poll::Ready(Some(m));
            }
            if s.sender_gone {
                return Poll::Ready(None);
            }
            match &mut s.waker {
                Some(w) => w.clone_from(cx.waker()),
                None => s.waker = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await
    }
}

impl ResponseReceiver {
    /// Stops receiving: what is queued is returned, and every later
    /// [`try_send`](ResponseSender::try_send) fails with [`SendError::Closed`], in one step
    /// (nothing sent in between is lost).
    pub(crate) fn close(self) -> VecDeque<Box<Message>> {
        let mut s = lock(&self.shared);
        s.receiver_gone = true;
        s.waker = None;
        std::mem::take(&mut s.items)
    }
}

impl Drop for ResponseReceiver {
    fn drop(&mut self) {
        let mut s = lock(&self.shared);
        s.receiver_gone = true;
        s.items.clear();
        s.waker = None;
    }
}

impl std::fmt::Debug for ResponseReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseReceiver").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(status: u16) -> Box<Message> {
        let text = format!(
            "SIP/2.0 {status} X\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=1\r\n\
             To: <sip:b@x>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        );
        Box::new(Message::parse(text.into_bytes()).expect("parses"))
    }

    #[tokio::test]
    async fn in_order_bounded_and_closed() {
        let (tx, mut rx) = response_queue(2);
        assert_eq!(tx.capacity(), 2);
        tx.try_send(msg(180)).unwrap();
        tx.try_send(msg(183)).unwrap();
        assert_eq!(tx.try_send(msg(200)).map_err(|e| e.0), Err(SendError::Full));
        assert_eq!(tx.capacity(), 0);
        assert_eq!(rx.recv().await.and_then(|m| m.status()), Some(180));
        tx.try_send(msg(200)).unwrap();
        drop(tx);
        assert_eq!(rx.recv().await.and_then(|m| m.status()), Some(183));
        assert_eq!(rx.recv().await.and_then(|m| m.status()), Some(200));
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken() {
        let (tx, mut rx) = response_queue(4);
        let reader = tokio::spawn(async move { rx.recv().await.and_then(|m| m.status()) });
        tokio::task::yield_now().await;
        tx.try_send(msg(200)).unwrap();
        assert_eq!(reader.await.unwrap(), Some(200));
    }

    #[test]
    fn a_gone_receiver_closes_the_queue() {
        let (tx, rx) = response_queue(4);
        drop(rx);
        assert_eq!(
            tx.try_send(msg(200)).map_err(|e| e.0),
            Err(SendError::Closed)
        );
    }

    #[test]
    fn closing_hands_back_what_was_queued_and_refuses_the_rest() {
        let (tx, rx) = response_queue(4);
        tx.try_send(msg(180)).unwrap();
        tx.try_send(msg(200)).unwrap();
        let left: Vec<_> = rx.close().iter().filter_map(|m| m.status()).collect();
        assert_eq!(left, [180, 200]);
        let (e, back) = tx.try_send(msg(200)).unwrap_err();
        assert_eq!((e, back.status()), (SendError::Closed, Some(200)));
    }
}
