//! MESSAGE store-and-forward (RFC 3428 leaves it to the server): messages for a user of the
//! domain with no binding are kept, bounded per user and in all, until the user registers;
//! then they go out oldest first.

use std::collections::{HashMap, VecDeque};

use sip_core::Message;

/// The store's caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageStoreLimits {
    /// Users with stored messages.
    pub max_users: usize,
    /// Messages kept per user.
    pub max_per_user: usize,
    /// Bytes (whole messages) kept per user.
    pub max_bytes_per_user: usize,
}

impl Default for MessageStoreLimits {
    fn default() -> Self {
        MessageStoreLimits {
            max_users: 10_000,
            max_per_user: 32,
            max_bytes_per_user: 64 * 1024,
        }
    }
}

/// Why a message was not stored: the caller answers 503 with Retry-After (or 480), so that
/// nothing is dropped silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StoreFull {
    /// This user's queue is full.
    #[error("the user's stored messages are at their cap")]
    User,
    /// Too many users have messages waiting.
    #[error("too many users with stored messages")]
    Users,
}

#[derive(Debug, Default)]
struct Queue {
    messages: VecDeque<Message>,
    bytes: usize,
}

/// Stored MESSAGEs by AOR.
#[derive(Debug, Default)]
pub struct MessageStore {
    users: HashMap<String, Queue>,
    limits: MessageStoreLimits,
    total: usize,
}

impl MessageStore {
    /// An empty store.
    pub fn new(limits: MessageStoreLimits) -> MessageStore {
        MessageStore {
            users: HashMap::new(),
            limits,
            total: 0,
        }
    }

    /// Keeps `message` for `aor`.
    pub fn store(&mut self, aor: &str, message: Message) -> Result<(), StoreFull> {
        let size = message.source().len();
        if !self.users.contains_key(aor) && self.users.len() >= self.limits.max_users {
            return Err(StoreFull::Users);
        }
        let q = self.users.entry(aor.to_owned()).or_default();
        if q.messages.len() >= self.limits.max_per_user
            || q.bytes + size > self.limits.max_bytes_per_user
        {
            if q.messages.is_empty() {
                self.users.remove(aor);
            }
            return Err(StoreFull::User);
        }
        q.bytes += size;
        q.messages.push_back(message);
        self.total += 1;
        Ok(())
    }

    /// Takes every message stored for `aor`, oldest first.
    pub fn take(&mut self, aor: &str) -> Vec<Message> {
        let q = self.users.remove(aor).unwrap_or_default();
        self.total -= q.messages.len();
        q.messages.into()
    }

    /// Puts back messages that could not be delivered, before any stored since (they are
    /// older), as far as the caps allow; returns how many did not fit.
    pub fn put_back(&mut self, aor: &str, messages: Vec<Message>) -> usize {
        let mut refused = 0;
        let newer = self.take(aor);
        for m in messages.into_iter().chain(newer) {
            if self.store(aor, m).is_err() {
                refused += 1;
            }
        }
        refused
    }

    /// True when messages are stored for `aor`.
    pub fn has(&self, aor: &str) -> bool {
        self.users.contains_key(aor)
    }

    /// Messages stored in all.
    pub fn len(&self) -> usize {
        self.total
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(n: u32) -> Message {
        Message::parse(
            format!(
                "MESSAGE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK{n}\r\n\
From: <sip:alice@example.com>;tag=a\r\nTo: <sip:bob@example.com>\r\nCall-ID: m{n}\r\n\
CSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n{n:02}"
            )
            .into_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn bounded_per_user_and_oldest_first() {
        let mut s = MessageStore::new(MessageStoreLimits {
            max_users: 1,
            max_per_user: 2,
            max_bytes_per_user: 10_000,
        });
        s.store("sip:bob@example.com", message(1)).unwrap();
        s.store("sip:bob@example.com", message(2)).unwrap();
        assert_eq!(
            s.store("sip:bob@example.com", message(3)),
            Err(StoreFull::User)
        );
        assert_eq!(
            s.store("sip:carol@example.com", message(4)),
            Err(StoreFull::Users)
        );
        assert_eq!(s.len(), 2);
        let got = s.take("sip:bob@example.com");
        assert_eq!(
            got.iter().map(|m| m.body().to_vec()).collect::<Vec<_>>(),
            [b"01", b"02"]
        );
        assert!(s.is_empty());
        s.store("sip:bob@example.com", message(5)).unwrap();
        assert_eq!(s.put_back("sip:bob@example.com", got), 1);
        let again = s.take("sip:bob@example.com");
        assert_eq!(
            again.iter().map(|m| m.body().to_vec()).collect::<Vec<_>>(),
            [b"01", b"02"]
        );
    }

    #[test]
    fn bounded_in_bytes() {
        let mut s = MessageStore::new(MessageStoreLimits {
            max_bytes_per_user: 300,
            ..MessageStoreLimits::default()
        });
        s.store("u", message(1)).unwrap();
        assert_eq!(s.store("u", message(2)), Err(StoreFull::User));
    }
}
