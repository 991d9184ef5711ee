//! The digest computations of RFC 7616 §3.4.1–3.4.3 (and RFC 2617 §3.2.2 for the
//! no-qop form): HA1, HA2 and the request digest, as lowercase hex.

use std::fmt;

use md5::Md5;
use sha2::{Digest, Sha256, Sha512_256};
use sip_core::auth::{Algorithm, NonceCount, Qop};

/// The hash function underneath an [`Algorithm`] (the `-sess` variants share theirs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashFunction {
    /// MD5: 32 hex digits.
    Md5,
    /// SHA-256: 64 hex digits.
    Sha256,
    /// SHA-512/256 (RFC 8760): 64 hex digits.
    Sha512_256,
}

impl HashFunction {
    /// The hash function of `algorithm`.
    pub fn of(algorithm: Algorithm) -> HashFunction {
        match algorithm {
            Algorithm::Md5 | Algorithm::Md5Sess => HashFunction::Md5,
            Algorithm::Sha256 | Algorithm::Sha256Sess => HashFunction::Sha256,
            Algorithm::Sha512_256 | Algorithm::Sha512_256Sess => HashFunction::Sha512_256,
        }
    }

    /// Length of a digest in hex digits.
    pub fn hex_len(self) -> usize {
        match self {
            HashFunction::Md5 => 32,
            HashFunction::Sha256 | HashFunction::Sha512_256 => 64,
        }
    }

    /// `H(p1:p2:…)`: the parts joined by colons, hashed, as lowercase hex.
    pub fn hash_joined(self, parts: &[&[u8]]) -> HexDigest {
        match self {
            HashFunction::Md5 => joined::<Md5>(parts),
            HashFunction::Sha256 => joined::<Sha256>(parts),
            HashFunction::Sha512_256 => joined::<Sha512_256>(parts),
        }
    }
}

fn joined<D: Digest>(parts: &[&[u8]]) -> HexDigest {
    let mut d = D::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            d.update(b":");
        }
        d.update(p);
    }
    HexDigest::encode(&d.finalize())
}

/// A digest written as lowercase hex, held inline (no allocation).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HexDigest {
    buf: [u8; 64],
    len: u8,
}

impl HexDigest {
    /// Lowercase hex of `bytes` (at most 32 bytes are used).
    pub fn encode(bytes: &[u8]) -> HexDigest {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = HexDigest {
            buf: [0; 64],
            len: 0,
        };
        for (pair, b) in out.buf.chunks_exact_mut(2).zip(bytes) {
            pair[0] = HEX[usize::from(b >> 4)];
            pair[1] = HEX[usize::from(b & 0x0f)];
            out.len += 2;
        }
        out
    }

    /// Copies `hex` if it is at most 64 hex digits, lowercasing it.
    pub fn from_hex(hex: &str) -> Option<HexDigest> {
        if hex.len() > 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut out = HexDigest {
            buf: [0; 64],
            len: hex.len() as u8,
        };
        for (o, b) in out.buf.iter_mut().zip(hex.bytes()) {
            *o = b.to_ascii_lowercase();
        }
        Some(out)
    }

    /// The hex digits.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// The hex digits as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..usize::from(self.len)).unwrap_or_default()
    }
}

impl fmt::Display for HexDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for HexDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HexDigest({})", self.as_str())
    }
}

/// `HA1 = H(username:realm:password)` (RFC 7616 §3.4.2), the value a credential store keeps.
pub fn ha1(hash: HashFunction, username: &str, realm: &str, password: &str) -> HexDigest {
    hash.hash_joined(&[username.as_bytes(), realm.as_bytes(), password.as_bytes()])
}

/// The inputs of a request digest (RFC 7616 §3.4.1), beyond HA1.
#[derive(Clone, Copy, Debug)]
pub struct DigestParams<'a> {
    /// The algorithm; a `-sess` one binds HA1 to `nonce` and `cnonce`.
    pub algorithm: Algorithm,
    /// The server nonce.
    pub nonce: &'a str,
    /// The client nonce (required with a qop or a `-sess` algorithm).
    pub cnonce: Option<&'a str>,
    /// The nonce count (required with a qop).
    pub nc: Option<NonceCount>,
    /// The quality of protection; `None` for the RFC 2069 form.
    pub qop: Option<Qop>,
    /// The request method (empty for `rspauth`, RFC 7616 §3.5).
    pub method: &'a str,
    /// The digest-uri.
    pub uri: &'a str,
    /// The message body (used with `auth-int` only).
    pub body: &'a [u8],
}

/// The HA1 a request digest uses: `ha1` itself, or `H(ha1:nonce:cnonce)` for `-sess`.
pub fn session_ha1(ha1: &HexDigest, p: &DigestParams<'_>) -> HexDigest {
    if p.algorithm.is_session() {
        let cnonce = p.cnonce.unwrap_or_default();
        HashFunction::of(p.algorithm).hash_joined(&[
            ha1.as_bytes(),
            p.nonce.as_bytes(),
            cnonce.as_bytes(),
        ])
    } else {
        *ha1
    }
}

/// The request digest (`response`, or `rspauth` with an empty method) from a session HA1
/// (see [`session_ha1`]).
pub fn response_with_session_ha1(session_ha1: &HexDigest, p: &DigestParams<'_>) -> HexDigest {
    let h = HashFunction::of(p.algorithm);
    let ha2 = match p.qop {
        Some(Qop::AuthInt) => {
            let body = h.hash_joined(&[p.body]);
            h.hash_joined(&[p.method.as_bytes(), p.uri.as_bytes(), body.as_bytes()])
        }
        _ => h.hash_joined(&[p.method.as_bytes(), p.uri.as_bytes()]),
    };
    match p.qop {
        Some(qop) => {
            let mut nc = [0u8; 8];
            write_nc(&mut nc, p.nc.unwrap_or(NonceCount(0)));
            h.hash_joined(&[
                session_ha1.as_bytes(),
                p.nonce.as_bytes(),
                &nc,
                p.cnonce.unwrap_or_default().as_bytes(),
                qop.as_str().as_bytes(),
                ha2.as_bytes(),
            ])
        }
        None => h.hash_joined(&[session_ha1.as_bytes(), p.nonce.as_bytes(), ha2.as_bytes()]),
    }
}

/// The request digest from the plain HA1 (`H(username:realm:password)`).
pub fn response(ha1: &HexDigest, p: &DigestParams<'_>) -> HexDigest {
    response_with_session_ha1(&session_ha1(ha1, p), p)
}

fn write_nc(out: &mut [u8; 8], nc: NonceCount) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, o) in out.iter_mut().enumerate() {
        let shift = 28 - 4 * i as u32;
        *o = HEX[((nc.0 >> shift) & 0xf) as usize];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let d = HexDigest::encode(&[0x00, 0xab, 0xff]);
        assert_eq!(d.as_str(), "00abff");
        assert_eq!(HexDigest::from_hex("00ABFF"), Some(d));
        assert_eq!(HexDigest::from_hex("0g"), None);
        let mut nc = [0u8; 8];
        write_nc(&mut nc, NonceCount(0x1a));
        assert_eq!(&nc, b"0000001a");
    }

    #[test]
    fn rfc_2617_example() {
        let ha1 = ha1(
            HashFunction::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        let p = DigestParams {
            algorithm: Algorithm::Md5,
            nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            cnonce: Some("0a4f113b"),
            nc: Some(NonceCount(1)),
            qop: Some(Qop::Auth),
            method: "GET",
            uri: "/dir/index.html",
            body: b"",
        };
        assert_eq!(
            response(&ha1, &p).as_str(),
            "6629fae49393a05397450978507c4ef1"
        );
    }
}
