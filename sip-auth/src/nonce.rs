//! Stateless server nonces (RFC 7616 §3.3 suggests `time-stamp H(time-stamp ":" ETag ":" secret)`).
//!
//! A nonce is 33 bytes written as 66 lowercase hex digits:
//! `issued (u64 seconds, big-endian) ‖ salt (8 random bytes) ‖ key id (1 byte) ‖ MAC (16 bytes)`,
//! where MAC = HMAC-SHA-256(server key, issued ‖ salt ‖ key id ‖ realm) truncated to 128 bits.
//! The server needs no memory to recognise its own nonces: a forged one fails the MAC, an old one
//! shows its age, and one issued for another realm fails the MAC too. Keys rotate: the current
//! and the previous key are accepted, chosen by the key id byte, so a forged nonce costs at most
//! one or two HMACs and never touches the replay table.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::random::RandomSource;

type HmacSha256 = Hmac<Sha256>;

const PAYLOAD_LEN: usize = 17;
const MAC_LEN: usize = 16;
const RAW_LEN: usize = PAYLOAD_LEN + MAC_LEN;
/// Length of a nonce in characters.
pub(crate) const NONCE_LEN: usize = RAW_LEN * 2;

/// A server's secret for nonces (256 bits). Servers of one cluster that share it accept each
/// other's nonces.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerKey([u8; 32]);

impl ServerKey {
    /// A key from its bytes (for a key shared across a cluster or kept across restarts).
    pub fn from_bytes(bytes: [u8; 32]) -> ServerKey {
        ServerKey(bytes)
    }

    /// A fresh key drawn from `rng`.
    pub fn random(rng: &mut impl RandomSource) -> ServerKey {
        let mut k = [0u8; 32];
        rng.fill_bytes(&mut k);
        ServerKey(k)
    }

    /// The key's identifier: the first byte of SHA-256("sip-auth key id" ‖ key).
    fn id(&self) -> u8 {
        let mut h = Sha256::new();
        h.update(b"sip-auth key id");
        h.update(self.0);
        h.finalize().first().copied().unwrap_or_default()
    }
}

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerKey(..)")
    }
}

struct KeyState {
    id: u8,
    mac: HmacSha256,
}

impl KeyState {
    fn new(key: &ServerKey) -> KeyState {
        // HMAC accepts keys of any length; 32 bytes never fails.
        let mac = <HmacSha256 as KeyInit>::new_from_slice(&key.0)
            .unwrap_or_else(|_| <HmacSha256 as KeyInit>::new(&Default::default()));
        KeyState { id: key.id(), mac }
    }

    fn tag(&self, payload: &[u8; PAYLOAD_LEN], realm: &str) -> [u8; MAC_LEN] {
        let mut m = self.mac.clone();
        m.update(payload);
        m.update(realm.as_bytes());
        let full = m.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        for (o, b) in out.iter_mut().zip(full.iter()) {
            *o = *b;
        }
        out
    }
}

/// What identifies a nonce in the replay table: when it was issued and its salt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct NonceId {
    pub issued: u64,
    pub salt: u64,
}

/// Issues and checks nonces with the current and previous keys.
pub(crate) struct NonceCodec {
    current: KeyState,
    previous: Option<KeyState>,
}

impl NonceCodec {
    pub fn new(key: &ServerKey) -> NonceCodec {
        NonceCodec {
            current: KeyState::new(key),
            previous: None,
        }
    }

    /// Makes `key` current; the current key becomes the previous one (the one before is dropped).
    pub fn rotate(&mut self, key: &ServerKey) {
        let old = std::mem::replace(&mut self.current, KeyState::new(key));
        self.previous = Some(old);
    }

    /// Drops the previous key: nonces issued under it are no longer recognised.
    pub fn retire_previous(&mut self) {
        self.previous = None;
    }

    pub fn issue(&self, realm: &str, id: NonceId) -> String {
        let mut payload = [0u8; PAYLOAD_LEN];
        payload[..8].copy_from_slice(&id.issued.to_be_bytes());
        payload[8..16].copy_from_slice(&id.salt.to_be_bytes());
        payload[16] = self.current.id;
        let tag = self.current.tag(&payload, realm);
        let mut out = String::with_capacity(NONCE_LEN);
        for b in payload.iter().chain(tag.iter()) {
            out.push(hex_digit(b >> 4));
            out.push(hex_digit(b & 0x0f));
        }
        out
    }

    /// The nonce's identity if this server (current or previous key) issued it for `realm`.
    pub fn check(&self, realm: &str, nonce: &str) -> Option<NonceId> {
        let raw = decode(nonce)?;
        let (payload, tag) = raw.split_at(PAYLOAD_LEN);
        let payload: &[u8; PAYLOAD_LEN] = payload.try_into().ok()?;
        let key_id = payload[PAYLOAD_LEN - 1];
        let genuine = [Some(&self.current), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .filter(|k| k.id == key_id)
            .any(|k| bool::from(k.tag(payload, realm).ct_eq(tag)));
        if !genuine {
            return None;
        }
        let mut issued = [0u8; 8];
        let mut salt = [0u8; 8];
        issued.copy_from_slice(&payload[..8]);
        salt.copy_from_slice(&payload[8..16]);
        Some(NonceId {
            issued: u64::from_be_bytes(issued),
            salt: u64::from_be_bytes(salt),
        })
    }
}

fn hex_digit(n: u8) -> char {
    char::from(b"0123456789abcdef"[usize::from(n & 0x0f)])
}

fn decode(nonce: &str) -> Option<[u8; RAW_LEN]> {
    let b = nonce.as_bytes();
    if b.len() != NONCE_LEN {
        return None;
    }
    let mut out = [0u8; RAW_LEN];
    for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
        let hi = nibble(*pair.first()?)?;
        let lo = nibble(*pair.get(1)?)?;
        *o = hi << 4 | lo;
    }
    Some(out)
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_and_recognises() {
        let k1 = ServerKey::from_bytes([1; 32]);
        let k2 = ServerKey::from_bytes([2; 32]);
        let mut codec = NonceCodec::new(&k1);
        let id = NonceId {
            issued: 1_700_000_000,
            salt: 42,
        };
        let n = codec.issue("example.com", id);
        assert_eq!(n.len(), NONCE_LEN);
        assert_eq!(codec.check("example.com", &n), Some(id));
        assert_eq!(codec.check("other.com", &n), None, "bound to the realm");
        // Flip each character: never accepted.
        for i in 0..n.len() {
            let mut bytes = n.clone().into_bytes();
            bytes[i] = if bytes[i] == b'0' { b'1' } else { b'0' };
            let forged = String::from_utf8(bytes).unwrap();
            assert_eq!(codec.check("example.com", &forged), None);
        }
        assert_eq!(codec.check("example.com", &n.to_uppercase()), None);
        assert_eq!(codec.check("example.com", "short"), None);
        assert_eq!(codec.check("example.com", &"é".repeat(33)), None);
        // Rotation: the previous key still verifies, the one before does not.
        codec.rotate(&k2);
        assert_eq!(codec.check("example.com", &n), Some(id));
        codec.rotate(&ServerKey::from_bytes([3; 32]));
        assert_eq!(codec.check("example.com", &n), None);
        let other = NonceCodec::new(&k2);
        assert_eq!(other.check("example.com", &n), None);
    }
}
