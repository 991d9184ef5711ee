//! Identifiers that must be unique and unguessable: branch (RFC 3261 §8.1.1.7), tag (§19.3)
//! and Call-ID (§8.1.1.4), from one injectable random source.

use std::fmt::Write;

/// A source of random 64-bit words. [`OsRandom`] is the default; tests use [`SeededRandom`]
/// to get the same identifiers on every run.
pub trait RandomSource {
    /// The next random word.
    fn next_u64(&mut self) -> u64;
}

/// Randomness for identifiers, cryptographically strong as RFC 3261 §19.3 asks of tags and
/// §8.1.1.7 of branches, without a system call per value: a ChaCha20 generator per thread,
/// keyed from the operating system and rekeyed from it every [`RESEED_WORDS`] words. (The name
/// is historical: every word still derives from the OS's randomness.)
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRandom;

/// Words a thread's generator yields before it takes a fresh key from the operating system.
pub const RESEED_WORDS: u32 = 1 << 16;

struct ThreadRng {
    rng: Option<rand_chacha::ChaCha20Rng>,
    left: u32,
}

thread_local! {
    static THREAD_RNG: std::cell::RefCell<ThreadRng> =
        const { std::cell::RefCell::new(ThreadRng { rng: None, left: 0 }) };
}

/// A key straight from the operating system.
fn os_word() -> Option<u64> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).ok()?;
    Some(u64::from_le_bytes(b))
}

fn thread_word() -> Option<u64> {
    use rand_chacha::rand_core::{RngCore, SeedableRng};
    THREAD_RNG
        .try_with(|cell| {
            let mut t = cell.try_borrow_mut().ok()?;
            if t.left == 0 || t.rng.is_none() {
                let mut seed = [0u8; 32];
                getrandom::fill(&mut seed).ok()?;
                t.rng = Some(rand_chacha::ChaCha20Rng::from_seed(seed));
                t.left = RESEED_WORDS;
            }
            t.left -= 1;
            t.rng.as_mut().map(|r| r.next_u64())
        })
        .ok()
        .flatten()
}

impl RandomSource for OsRandom {
    fn next_u64(&mut self) -> u64 {
        // The OS source is unavailable (it practically never is): fall back to a per-process
        // hasher seed mixed with a counter, still unique within the process.
        thread_word().or_else(os_word).unwrap_or_else(fallback_u64)
    }
}

fn fallback_u64() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

/// A deterministic generator (SplitMix64) for tests and simulations. Not for production
/// identifiers: its output is predictable.
#[derive(Debug, Clone, Copy)]
pub struct SeededRandom(u64);

impl SeededRandom {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> SeededRandom {
        SeededRandom(seed)
    }
}

impl RandomSource for SeededRandom {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The RFC 3261 §8.1.1.7 magic cookie every branch we generate starts with.
pub const BRANCH_COOKIE: &str = "z9hG4bK";

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Generates branches, tags and Call-IDs.
///
/// ```
/// use sip_core::random::{IdGenerator, SeededRandom};
/// let mut ids = IdGenerator::new(SeededRandom::new(7));
/// let b = ids.branch();
/// assert!(b.starts_with("z9hG4bK") && b.len() == 7 + 22);
/// assert_ne!(ids.tag(), ids.tag());
/// assert!(ids.call_id(Some("host.example")).ends_with("@host.example"));
/// ```
#[derive(Debug, Clone)]
pub struct IdGenerator<R: RandomSource = OsRandom> {
    rng: R,
}

impl Default for IdGenerator<OsRandom> {
    fn default() -> Self {
        IdGenerator { rng: OsRandom }
    }
}

impl<R: RandomSource> IdGenerator<R> {
    /// A generator drawing from `rng`.
    pub fn new(rng: R) -> Self {
        IdGenerator { rng }
    }

    /// `n` random characters from `[0-9A-Za-z]` (5.95 bits each).
    pub fn alnum(&mut self, n: usize) -> String {
        let mut s = String::with_capacity(n);
        self.push_alnum(&mut s, n);
        s
    }

    fn push_alnum(&mut self, s: &mut String, n: usize) {
        let mut buf = [0u8; 32];
        let mut n = n;
        while n > 0 {
            let k = n.min(buf.len());
            let chunk = &mut buf[..k];
            self.fill_alnum(chunk);
            // Every byte is from ALPHABET: ASCII.
            s.extend(chunk.iter().map(|&c| char::from(c)));
            n -= k;
        }
    }

    /// Fills `out` with random characters from `[0-9A-Za-z]` (5.95 bits each), for an
    /// identifier written straight into a buffer without a `String`.
    ///
    /// ```
    /// use sip_core::random::IdGenerator;
    /// let mut tag = [0u8; 16];
    /// IdGenerator::default().fill_alnum(&mut tag);
    /// assert!(tag.iter().all(u8::is_ascii_alphanumeric));
    /// ```
    pub fn fill_alnum(&mut self, out: &mut [u8]) {
        let mut word = 0u64;
        let mut left = 0;
        for c in out {
            if left == 0 {
                word = self.rng.next_u64();
                left = 10; // 10 draws of 6 bits from 64 random bits
            }
            // Rejection-free mapping; the bias of 64/62 on two symbols is irrelevant here.
            let idx = (word & 0x3f) as usize % ALPHABET.len();
            *c = ALPHABET[idx];
            word >>= 6;
            left -= 1;
        }
    }

    /// A branch: the magic cookie and 22 random characters (about 130 bits).
    pub fn branch(&mut self) -> String {
        let mut s = String::with_capacity(29);
        s.push_str(BRANCH_COOKIE);
        self.push_alnum(&mut s, 22);
        s
    }

    /// A From/To tag: 16 random characters (about 95 bits; RFC 3261 §19.3 asks for 32).
    pub fn tag(&mut self) -> String {
        self.alnum(16)
    }

    /// A Call-ID: 24 random characters, `@host` appended when given.
    pub fn call_id(&mut self, host: Option<&str>) -> String {
        let mut s = self.alnum(24);
        if let Some(h) = host {
            let _ = write!(s, "@{h}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Words stay distinct across a rekeying, and threads draw different streams.
    #[test]
    fn thread_generator_rekeys_and_never_repeats() {
        let n = RESEED_WORDS as usize + 1000;
        let mut seen = HashSet::with_capacity(n);
        for _ in 0..n {
            assert!(seen.insert(OsRandom.next_u64()));
        }
        let other: Vec<u64> =
            std::thread::spawn(|| (0..1000).map(|_| OsRandom.next_u64()).collect())
                .join()
                .unwrap();
        assert!(other.iter().all(|w| !seen.contains(w)));
    }
}
