//! Typed digest authentication headers: WWW-Authenticate / Proxy-Authenticate ([`Challenge`]),
//! Authorization / Proxy-Authorization ([`Credentials`]) and Authentication-Info
//! ([`AuthenticationInfo`]).
//!
//! Grammar: RFC 3261 §25.1 (`challenge = scheme LWS auth-param *(COMMA auth-param)`,
//! `auth-param = token LWS "=" LWS (token / quoted-string)`), with the digest parameters of
//! RFC 7616 and the algorithms of RFC 8760. Scheme and parameter names are case-insensitive;
//! quoted strings may hold `\"` escapes and folded lines. A scheme other than `Digest` is parsed
//! generically (all its parameters land in `other`), so that a server can answer it with a 401
//! rather than a 400 (RFC 4475 §3.3.1, "regaut01").
//!
//! Parsing borrows from the input: a value is copied only when it holds an escape or a fold.
//! It never panics, caps the number of parameters at [`MAX_AUTH_PARAMS`], and rejects a digest
//! parameter given twice. Values are kept as written; the typed accessors ([`Challenge::algorithm`],
//! [`Credentials::qop`]…) interpret them. `Display` writes a header value back, quoting what the
//! grammar wants quoted.
//!
//! ```
//! use sip_core::auth::{Algorithm, Challenge, Credentials};
//! let c = Challenge::parse(r#"Digest realm="atlanta.com", nonce="84a4cc6f", qop="auth,auth-int", algorithm=SHA-256"#)?;
//! assert_eq!(c.realm.as_deref(), Some("atlanta.com"));
//! assert_eq!(c.algorithm(), Ok(Algorithm::Sha256));
//! let r = Credentials::parse(r#"Digest username="bob", realm="atlanta.com", nonce="84a4cc6f", uri="sip:atlanta.com", response="0123", qop=auth, nc=00000001, cnonce="xyz""#)?;
//! assert_eq!(r.nc.map(|n| n.0), Some(1));
//! # Ok::<(), sip_core::Error>(())
//! ```

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use crate::error::Error;

/// The most parameters one challenge, credentials or Authentication-Info value may carry.
///
/// RFC 7616 defines twelve; the margin leaves room for extensions while stopping a value made of
/// thousands of tiny parameters.
pub const MAX_AUTH_PARAMS: usize = 32;

/// A digest algorithm (RFC 7616 §3.3, RFC 8760 §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `MD5` (RFC 2617; the default when a challenge names no algorithm).
    Md5,
    /// `MD5-sess`.
    Md5Sess,
    /// `SHA-256` (RFC 7616).
    Sha256,
    /// `SHA-256-sess`.
    Sha256Sess,
    /// `SHA-512-256` (RFC 7616, RFC 8760).
    Sha512_256,
    /// `SHA-512-256-sess`.
    Sha512_256Sess,
}

impl Algorithm {
    /// Every algorithm, strongest first.
    pub const ALL: [Algorithm; 6] = [
        Algorithm::Sha512_256,
        Algorithm::Sha512_256Sess,
        Algorithm::Sha256,
        Algorithm::Sha256Sess,
        Algorithm::Md5,
        Algorithm::Md5Sess,
    ];

    /// The algorithm named `name` (case-insensitive), if it is one of ours.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(name))
    }

    /// The name as written in a header (`"SHA-256"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
            Algorithm::Sha512_256 => "SHA-512-256",
            Algorithm::Sha512_256Sess => "SHA-512-256-sess",
        }
    }

    /// Whether this is a `-sess` variant (HA1 bound to nonce and cnonce, RFC 7616 §3.4.2).
    pub fn is_session(self) -> bool {
        matches!(
            self,
            Algorithm::Md5Sess | Algorithm::Sha256Sess | Algorithm::Sha512_256Sess
        )
    }

    /// Rank of the hash function: 2 for SHA-512-256, 1 for SHA-256, 0 for MD5. RFC 7616 §3.7
    /// asks servers to list challenges, and clients to prefer, the strongest first.
    pub fn strength(self) -> u8 {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => 0,
            Algorithm::Sha256 | Algorithm::Sha256Sess => 1,
            Algorithm::Sha512_256 | Algorithm::Sha512_256Sess => 2,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A quality of protection (RFC 3261 §25.1 `qop-value`, RFC 7616 §3.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Qop {
    /// `auth`: the request line is protected.
    Auth,
    /// `auth-int`: the request line and the body are protected.
    AuthInt,
}

impl Qop {
    /// The qop named `name` (case-insensitive), if it is one of ours.
    pub fn from_name(name: &str) -> Option<Qop> {
        if name.eq_ignore_ascii_case("auth") {
            Some(Qop::Auth)
        } else if name.eq_ignore_ascii_case("auth-int") {
            Some(Qop::AuthInt)
        } else {
            None
        }
    }

    /// The name as written in a header.
    pub fn as_str(self) -> &'static str {
        match self {
            Qop::Auth => "auth",
            Qop::AuthInt => "auth-int",
        }
    }
}

impl fmt::Display for Qop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A nonce count, `nc` (RFC 3261 §25.1: `8LHEX`). Written as eight lowercase hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NonceCount(pub u32);

impl NonceCount {
    /// Parses exactly eight hex digits (either case is accepted, lowercase is written).
    pub fn parse(s: &str) -> Option<NonceCount> {
        if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(s, 16).ok().map(NonceCount)
    }
}

impl fmt::Display for NonceCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// One `name=value` parameter as it appeared (used for parameters we do not interpret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthParam<'a> {
    /// The name, as written.
    pub name: Cow<'a, str>,
    /// The value, unquoted and unescaped.
    pub value: Cow<'a, str>,
    /// Whether the value was (and will be written as) a quoted-string.
    pub quoted: bool,
}

impl AuthParam<'_> {
    /// Copies borrowed parts so that the parameter outlives its input.
    pub fn into_owned(self) -> AuthParam<'static> {
        AuthParam {
            name: Cow::Owned(self.name.into_owned()),
            value: Cow::Owned(self.value.into_owned()),
            quoted: self.quoted,
        }
    }
}

/// A WWW-Authenticate or Proxy-Authenticate value (RFC 3261 §20.44, §20.27; RFC 7616 §3.3).
///
/// For the `Digest` scheme the known parameters fill the typed fields; for any other scheme all
/// parameters are in [`other`](Challenge::other).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Challenge<'a> {
    /// The scheme as written (`Digest`, compared case-insensitively).
    pub scheme: Cow<'a, str>,
    /// `realm`.
    pub realm: Option<Cow<'a, str>>,
    /// `domain`: space-separated URIs, kept as one string.
    pub domain: Option<Cow<'a, str>>,
    /// `nonce`.
    pub nonce: Option<Cow<'a, str>>,
    /// `opaque`.
    pub opaque: Option<Cow<'a, str>>,
    /// `stale=true`.
    pub stale: bool,
    /// `algorithm`, as written (see [`Challenge::algorithm`]).
    pub algorithm: Option<Cow<'a, str>>,
    /// The `qop` options, in the server's order, as written (see [`Challenge::qop_options`]).
    pub qop: Vec<Cow<'a, str>>,
    /// `userhash=true` (RFC 7616 §3.4.4).
    pub userhash: bool,
    /// `charset` (RFC 7616: only `UTF-8` is defined).
    pub charset: Option<Cow<'a, str>>,
    /// Parameters not listed above, in order (all of them for a non-Digest scheme).
    pub other: Vec<AuthParam<'a>>,
}

/// An Authorization or Proxy-Authorization value (RFC 3261 §20.7, §20.28; RFC 7616 §3.4).
///
/// For the `Digest` scheme the known parameters fill the typed fields; for any other scheme all
/// parameters are in [`other`](Credentials::other).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials<'a> {
    /// The scheme as written (`Digest`, compared case-insensitively).
    pub scheme: Cow<'a, str>,
    /// `username` (or its hash when `userhash` is true).
    pub username: Option<Cow<'a, str>>,
    /// `realm`.
    pub realm: Option<Cow<'a, str>>,
    /// `nonce`.
    pub nonce: Option<Cow<'a, str>>,
    /// `uri` (the digest-uri: the Request-URI as the client wrote it).
    pub uri: Option<Cow<'a, str>>,
    /// `response`: the request digest, lowercase hex.
    pub response: Option<Cow<'a, str>>,
    /// `algorithm`, as written (see [`Credentials::algorithm`]).
    pub algorithm: Option<Cow<'a, str>>,
    /// `cnonce`.
    pub cnonce: Option<Cow<'a, str>>,
    /// `opaque`.
    pub opaque: Option<Cow<'a, str>>,
    /// `qop`, as written (see [`Credentials::qop`]).
    pub qop: Option<Cow<'a, str>>,
    /// `nc`.
    pub nc: Option<NonceCount>,
    /// `userhash=true`.
    pub userhash: bool,
    /// Parameters not listed above, in order (all of them for a non-Digest scheme).
    pub other: Vec<AuthParam<'a>>,
}

/// An Authentication-Info value (RFC 3261 §20.6, RFC 7616 §3.5).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthenticationInfo<'a> {
    /// `nextnonce`: the nonce the client should use next.
    pub nextnonce: Option<Cow<'a, str>>,
    /// `qop`, echoed from the request.
    pub qop: Option<Cow<'a, str>>,
    /// `rspauth`: the response digest proving the server knows the secret.
    pub rspauth: Option<Cow<'a, str>>,
    /// `cnonce`, echoed from the request.
    pub cnonce: Option<Cow<'a, str>>,
    /// `nc`, echoed from the request.
    pub nc: Option<NonceCount>,
    /// Parameters not listed above, in order.
    pub other: Vec<AuthParam<'a>>,
}

const WWW_AUTHENTICATE: &str = "WWW-Authenticate";
const AUTHORIZATION: &str = "Authorization";
const AUTHENTICATION_INFO: &str = "Authentication-Info";

fn is_digest(scheme: &str) -> bool {
    scheme.eq_ignore_ascii_case("Digest")
}

fn cow_opt(o: Option<Cow<'_, str>>) -> Option<Cow<'static, str>> {
    o.map(|c| Cow::Owned(c.into_owned()))
}

impl<'a> Challenge<'a> {
    /// Parses a WWW-Authenticate / Proxy-Authenticate value (after the colon).
    pub fn parse(value: &'a str) -> Result<Challenge<'a>, Error> {
        let mut lex = Lexer::new(value, WWW_AUTHENTICATE);
        let scheme = lex.scheme()?;
        let digest = is_digest(scheme);
        let mut c = Challenge {
            scheme: Cow::Borrowed(scheme),
            ..Challenge::default()
        };
        let mut seen = Seen::default();
        lex.params(|lex, p, at| {
            if !digest {
                c.other.push(p);
                return Ok(());
            }
            let name = &*p.name;
            let v = p.value;
            let slot = match_name(name, CHALLENGE_NAMES);
            if let Some(i) = slot {
                seen.once(i, lex, at)?;
            }
            match slot {
                Some(0) => c.realm = Some(v),
                Some(1) => c.domain = Some(v),
                Some(2) => c.nonce = Some(v),
                Some(3) => c.opaque = Some(v),
                Some(4) => c.stale = lex.boolean(&v, at)?,
                Some(5) => c.algorithm = Some(v),
                Some(6) => c.qop = split_qop_list(v),
                Some(7) => c.userhash = lex.boolean(&v, at)?,
                Some(8) => c.charset = Some(v),
                _ => c.other.push(AuthParam { value: v, ..p }),
            }
            Ok(())
        })?;
        Ok(c)
    }

    /// Parses a value given as bytes (it must be UTF-8).
    pub fn parse_bytes(value: &'a [u8]) -> Result<Challenge<'a>, Error> {
        Challenge::parse(utf8(value, WWW_AUTHENTICATE)?)
    }

    /// Whether the scheme is `Digest`.
    pub fn is_digest(&self) -> bool {
        is_digest(&self.scheme)
    }

    /// The algorithm: MD5 when absent (RFC 7616 §3.3); `Err(name)` for one we do not know.
    pub fn algorithm(&self) -> Result<Algorithm, &str> {
        algorithm_of(&self.algorithm)
    }

    /// The qop options we know, in the server's order.
    pub fn qop_options(&self) -> impl Iterator<Item = Qop> + '_ {
        self.qop.iter().filter_map(|q| Qop::from_name(q))
    }

    /// Copies borrowed parts so that the challenge outlives its input.
    pub fn into_owned(self) -> Challenge<'static> {
        Challenge {
            scheme: Cow::Owned(self.scheme.into_owned()),
            realm: cow_opt(self.realm),
            domain: cow_opt(self.domain),
            nonce: cow_opt(self.nonce),
            opaque: cow_opt(self.opaque),
            stale: self.stale,
            algorithm: cow_opt(self.algorithm),
            qop: self
                .qop
                .into_iter()
                .map(|q| Cow::Owned(q.into_owned()))
                .collect(),
            userhash: self.userhash,
            charset: cow_opt(self.charset),
            other: self.other.into_iter().map(AuthParam::into_owned).collect(),
        }
    }
}

impl<'a> Credentials<'a> {
    /// Parses an Authorization / Proxy-Authorization value (after the colon).
    pub fn parse(value: &'a str) -> Result<Credentials<'a>, Error> {
        let mut lex = Lexer::new(value, AUTHORIZATION);
        let scheme = lex.scheme()?;
        let digest = is_digest(scheme);
        let mut c = Credentials {
            scheme: Cow::Borrowed(scheme),
            ..Credentials::default()
        };
        let mut seen = Seen::default();
        lex.params(|lex, p, at| {
            if !digest {
                c.other.push(p);
                return Ok(());
            }
            let slot = match_name(&p.name, CREDENTIAL_NAMES);
            if let Some(i) = slot {
                seen.once(i, lex, at)?;
            }
            let v = p.value;
            match slot {
                Some(0) => c.username = Some(v),
                Some(1) => c.realm = Some(v),
                Some(2) => c.nonce = Some(v),
                Some(3) => c.uri = Some(v),
                Some(4) => c.response = Some(v),
                Some(5) => c.algorithm = Some(v),
                Some(6) => c.cnonce = Some(v),
                Some(7) => c.opaque = Some(v),
                Some(8) => c.qop = Some(v),
                Some(9) => c.nc = Some(lex.nonce_count(&v, at)?),
                Some(10) => c.userhash = lex.boolean(&v, at)?,
                _ => c.other.push(AuthParam { value: v, ..p }),
            }
            Ok(())
        })?;
        Ok(c)
    }

    /// Parses a value given as bytes (it must be UTF-8).
    pub fn parse_bytes(value: &'a [u8]) -> Result<Credentials<'a>, Error> {
        Credentials::parse(utf8(value, AUTHORIZATION)?)
    }

    /// Whether the scheme is `Digest`.
    pub fn is_digest(&self) -> bool {
        is_digest(&self.scheme)
    }

    /// The algorithm: MD5 when absent; `Err(name)` for one we do not know.
    pub fn algorithm(&self) -> Result<Algorithm, &str> {
        algorithm_of(&self.algorithm)
    }

    /// The qop: `Ok(None)` when absent (RFC 2069 compatibility), `Err(name)` when unknown.
    pub fn qop(&self) -> Result<Option<Qop>, &str> {
        match &self.qop {
            None => Ok(None),
            Some(q) => Qop::from_name(q).map(Some).ok_or(&**q),
        }
    }

    /// Copies borrowed parts so that the credentials outlive their input.
    pub fn into_owned(self) -> Credentials<'static> {
        Credentials {
            scheme: Cow::Owned(self.scheme.into_owned()),
            username: cow_opt(self.username),
            realm: cow_opt(self.realm),
            nonce: cow_opt(self.nonce),
            uri: cow_opt(self.uri),
            response: cow_opt(self.response),
            algorithm: cow_opt(self.algorithm),
            cnonce: cow_opt(self.cnonce),
            opaque: cow_opt(self.opaque),
            qop: cow_opt(self.qop),
            nc: self.nc,
            userhash: self.userhash,
            other: self.other.into_iter().map(AuthParam::into_owned).collect(),
        }
    }
}

impl<'a> AuthenticationInfo<'a> {
    /// Parses an Authentication-Info value (after the colon): `ainfo *(COMMA ainfo)`.
    pub fn parse(value: &'a str) -> Result<AuthenticationInfo<'a>, Error> {
        let mut lex = Lexer::new(value, AUTHENTICATION_INFO);
        let mut a = AuthenticationInfo::default();
        let mut seen = Seen::default();
        lex.params(|lex, p, at| {
            let slot = match_name(&p.name, INFO_NAMES);
            if let Some(i) = slot {
                seen.once(i, lex, at)?;
            }
            let v = p.value;
            match slot {
                Some(0) => a.nextnonce = Some(v),
                Some(1) => a.qop = Some(v),
                Some(2) => a.rspauth = Some(v),
                Some(3) => a.cnonce = Some(v),
                Some(4) => a.nc = Some(lex.nonce_count(&v, at)?),
                _ => a.other.push(AuthParam { value: v, ..p }),
            }
            Ok(())
        })?;
        Ok(a)
    }

    /// Parses a value given as bytes (it must be UTF-8).
    pub fn parse_bytes(value: &'a [u8]) -> Result<AuthenticationInfo<'a>, Error> {
        AuthenticationInfo::parse(utf8(value, AUTHENTICATION_INFO)?)
    }

    /// Copies borrowed parts so that the value outlives its input.
    pub fn into_owned(self) -> AuthenticationInfo<'static> {
        AuthenticationInfo {
            nextnonce: cow_opt(self.nextnonce),
            qop: cow_opt(self.qop),
            rspauth: cow_opt(self.rspauth),
            cnonce: cow_opt(self.cnonce),
            nc: self.nc,
            other: self.other.into_iter().map(AuthParam::into_owned).collect(),
        }
    }
}

fn algorithm_of<'s>(a: &'s Option<Cow<'_, str>>) -> Result<Algorithm, &'s str> {
    match a {
        None => Ok(Algorithm::Md5),
        Some(name) => Algorithm::from_name(name).ok_or(&**name),
    }
}

fn utf8<'a>(value: &'a [u8], name: &'static str) -> Result<&'a str, Error> {
    crate::text::to_str(value).map_err(|e| Error::InvalidHeader {
        name,
        offset: e.valid_up_to(),
        reason: "not UTF-8",
    })
}

const CHALLENGE_NAMES: &[&str] = &[
    "realm",
    "domain",
    "nonce",
    "opaque",
    "stale",
    "algorithm",
    "qop",
    "userhash",
    "charset",
];
const CREDENTIAL_NAMES: &[&str] = &[
    "username",
    "realm",
    "nonce",
    "uri",
    "response",
    "algorithm",
    "cnonce",
    "opaque",
    "qop",
    "nc",
    "userhash",
];
const INFO_NAMES: &[&str] = &["nextnonce", "qop", "rspauth", "cnonce", "nc"];

fn match_name(name: &str, names: &[&str]) -> Option<usize> {
    names.iter().position(|n| n.eq_ignore_ascii_case(name))
}

/// Which known parameters were seen (each table has fewer than 32 names).
#[derive(Default)]
struct Seen(u32);

impl Seen {
    fn once(&mut self, i: usize, lex: &Lexer<'_>, at: usize) -> Result<(), Error> {
        let bit = 1u32.checked_shl(i as u32).unwrap_or(0);
        if self.0 & bit != 0 {
            return Err(lex.err_at(at, "duplicate parameter"));
        }
        self.0 |= bit;
        Ok(())
    }
}

/// Splits a challenge's `qop="auth,auth-int"` into its options.
fn split_qop_list(v: Cow<'_, str>) -> Vec<Cow<'_, str>> {
    fn trim(s: &str) -> &str {
        s.trim_matches(|c: char| c == ' ' || c == '\t' || c == '\r' || c == '\n')
    }
    match v {
        Cow::Borrowed(s) => s
            .split(',')
            .map(trim)
            .filter(|s| !s.is_empty())
            .map(Cow::Borrowed)
            .collect(),
        Cow::Owned(s) => s
            .split(',')
            .map(trim)
            .filter(|s| !s.is_empty())
            .map(|s| Cow::Owned(s.to_owned()))
            .collect(),
    }
}

/// Byte classes: `TOKEN` for RFC 3261 §25.1 `token` characters; `PLAIN` for bytes that a
/// quoted-string carries as they are (not `"`, `\\`, CR, LF or another control character; TAB
/// is plain).
const TOKEN: u8 = 1;
const PLAIN: u8 = 2;

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        if b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            )
        {
            t[i] |= TOKEN;
        }
        if b == b'\t' || (b >= 0x20 && b != 0x7f && b != b'"' && b != b'\\') {
            t[i] |= PLAIN;
        }
        i += 1;
    }
    t
};

fn is_token_byte(b: u8) -> bool {
    CLASS[usize::from(b)] & TOKEN != 0
}

fn is_plain_byte(b: u8) -> bool {
    CLASS[usize::from(b)] & PLAIN != 0
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_byte)
}

/// A cursor over a header value.
struct Lexer<'a> {
    s: &'a str,
    pos: usize,
    header: &'static str,
}

impl<'a> Lexer<'a> {
    fn new(s: &'a str, header: &'static str) -> Lexer<'a> {
        Lexer { s, pos: 0, header }
    }

    fn err_at(&self, offset: usize, reason: &'static str) -> Error {
        Error::InvalidHeader {
            name: self.header,
            offset,
            reason,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn at(&self, i: usize) -> Option<u8> {
        self.s.as_bytes().get(self.pos + i).copied()
    }

    /// LWS = [*WSP CRLF] 1*WSP; a bare LF fold is tolerated.
    fn skip_lws(&mut self) {
        loop {
            if !matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
                return;
            }
            match (self.peek(), self.at(1), self.at(2)) {
                (Some(b' ' | b'\t'), _, _) => self.pos += 1,
                (Some(b'\r'), Some(b'\n'), Some(b' ' | b'\t')) => self.pos += 3,
                (Some(b'\n'), Some(b' ' | b'\t'), _) => self.pos += 2,
                _ => return,
            }
        }
    }

    fn token(&mut self, what: &'static str) -> Result<&'a str, Error> {
        let start = self.pos;
        self.pos += self.run_len(is_token_byte);
        if self.pos == start {
            return Err(self.err_at(start, what));
        }
        // Token bytes are ASCII, so both ends are char boundaries.
        self.s
            .get(start..self.pos)
            .ok_or_else(|| self.err_at(start, what))
    }

    /// Length of the run of bytes of one class from the cursor.
    fn run_len(&self, class: impl Fn(u8) -> bool) -> usize {
        let rest = self.s.as_bytes().get(self.pos..).unwrap_or_default();
        rest.iter().position(|&b| !class(b)).unwrap_or(rest.len())
    }

    fn scheme(&mut self) -> Result<&'a str, Error> {
        self.skip_lws();
        self.token("expected an auth scheme")
    }

    /// A quoted-string, the cursor on its opening quote. Borrowed unless it holds an escape or
    /// a folded line.
    fn quoted(&mut self) -> Result<Cow<'a, str>, Error> {
        let open = self.pos;
        self.pos += 1;
        let start = self.pos;
        let mut owned: Option<String> = None;
        let mut run = start; // start of the not-yet-copied run (when owned)
        loop {
            self.pos += self.run_len(is_plain_byte);
            let Some(b) = self.peek() else {
                return Err(self.err_at(open, "unterminated quoted-string"));
            };
            match b {
                b'"' => {
                    let tail = self.slice(run, self.pos, open)?;
                    self.pos += 1;
                    return Ok(match owned {
                        None => Cow::Borrowed(tail),
                        Some(mut o) => {
                            o.push_str(tail);
                            Cow::Owned(o)
                        }
                    });
                }
                b'\\' => {
                    // quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
                    let Some(next) = self
                        .at(1)
                        .filter(|n| n.is_ascii() && !matches!(n, b'\r' | b'\n'))
                    else {
                        return Err(self.err_at(self.pos, "bad escape in quoted-string"));
                    };
                    let o = owned.get_or_insert_with(String::new);
                    o.push_str(self.slice(run, self.pos, open)?);
                    o.push(char::from(next));
                    self.pos += 2;
                    run = self.pos;
                }
                b'\r' | b'\n' => {
                    let fold = if b == b'\r' { 3 } else { 2 };
                    let folded = (b == b'\n' || self.at(1) == Some(b'\n'))
                        && matches!(self.at(fold - 1), Some(b' ' | b'\t'));
                    if !folded {
                        return Err(self.err_at(self.pos, "line break in quoted-string"));
                    }
                    // An unfolded line reads as one space.
                    let o = owned.get_or_insert_with(String::new);
                    o.push_str(self.slice(run, self.pos, open)?);
                    o.push(' ');
                    self.pos += fold;
                    run = self.pos;
                }
                0..=0x1f | 0x7f => {
                    return Err(self.err_at(self.pos, "control character in quoted-string"))
                }
                _ => self.pos += 1,
            }
        }
    }

    fn slice(&self, from: usize, to: usize, open: usize) -> Result<&'a str, Error> {
        self.s
            .get(from..to)
            .ok_or_else(|| self.err_at(open, "bad quoted-string"))
    }

    /// `auth-param *(COMMA auth-param)` up to the end of the value; `f` gets each parameter and
    /// the offset of its name.
    fn params(
        &mut self,
        mut f: impl FnMut(&Self, AuthParam<'a>, usize) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut count = 0usize;
        self.skip_lws();
        if self.peek().is_none() {
            return Ok(());
        }
        loop {
            let at = self.pos;
            count += 1;
            if count > MAX_AUTH_PARAMS {
                return Err(self.err_at(at, "too many parameters"));
            }
            let name = self.token("expected a parameter name")?;
            self.skip_lws();
            if self.peek() != Some(b'=') {
                return Err(self.err_at(self.pos, "expected '='"));
            }
            self.pos += 1;
            self.skip_lws();
            let (value, quoted) = if self.peek() == Some(b'"') {
                (self.quoted()?, true)
            } else {
                (
                    Cow::Borrowed(self.token("expected a token or quoted-string")?),
                    false,
                )
            };
            f(
                self,
                AuthParam {
                    name: Cow::Borrowed(name),
                    value,
                    quoted,
                },
                at,
            )?;
            self.skip_lws();
            match self.peek() {
                None => return Ok(()),
                Some(b',') => {
                    self.pos += 1;
                    self.skip_lws();
                }
                Some(_) => return Err(self.err_at(self.pos, "expected ',' between parameters")),
            }
        }
    }

    fn boolean(&self, v: &str, at: usize) -> Result<bool, Error> {
        if v.eq_ignore_ascii_case("true") {
            Ok(true)
        } else if v.eq_ignore_ascii_case("false") {
            Ok(false)
        } else {
            Err(self.err_at(at, "expected true or false"))
        }
    }

    fn nonce_count(&self, v: &str, at: usize) -> Result<NonceCount, Error> {
        NonceCount::parse(v).ok_or_else(|| self.err_at(at, "nc is not 8 hex digits"))
    }
}

/// Writes `, name="value"` (or `name="value"` first), escaping `"` and `\`. CR and LF cannot be
/// carried by a quoted-string (RFC 3261 §25.1 quoted-pair excludes them) and are dropped, so
/// that a value can never split the header.
fn write_quoted(f: &mut fmt::Formatter<'_>, sep: &mut &str, name: &str, v: &str) -> fmt::Result {
    f.write_str(sep)?;
    f.write_str(name)?;
    f.write_str("=\"")?;
    *sep = ", ";
    let mut rest = v;
    // Runs of plain bytes are written at once; the special bytes are all ASCII, so every split
    // falls on a char boundary.
    while let Some(i) = rest.bytes().position(|b| !is_plain_byte(b)) {
        let (run, tail) = rest.split_at(i);
        f.write_str(run)?;
        let Some(&b) = tail.as_bytes().first() else {
            break;
        };
        if b != b'\r' && b != b'\n' {
            f.write_char('\\')?;
            f.write_char(char::from(b))?;
        }
        rest = tail.get(1..).unwrap_or_default();
    }
    f.write_str(rest)?;
    f.write_char('"')
}

/// Writes `name=value` as a token, or quoted when the value is not a valid token.
fn write_token(f: &mut fmt::Formatter<'_>, sep: &mut &str, name: &str, v: &str) -> fmt::Result {
    if is_token(v) {
        f.write_str(sep)?;
        f.write_str(name)?;
        f.write_char('=')?;
        f.write_str(v)?;
        *sep = ", ";
        Ok(())
    } else {
        write_quoted(f, sep, name, v)
    }
}

fn write_other(f: &mut fmt::Formatter<'_>, sep: &mut &str, other: &[AuthParam<'_>]) -> fmt::Result {
    for p in other {
        if p.quoted {
            write_quoted(f, sep, &p.name, &p.value)?;
        } else {
            write_token(f, sep, &p.name, &p.value)?;
        }
    }
    Ok(())
}

fn write_scheme(f: &mut fmt::Formatter<'_>, scheme: &str) -> fmt::Result {
    if is_token(scheme) {
        f.write_str(scheme)
    } else {
        // Not representable; writing a fixed scheme keeps the output parseable.
        f.write_str("Digest")
    }
}

impl fmt::Display for Challenge<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_scheme(f, &self.scheme)?;
        let sep = &mut " ";
        let q = |f: &mut fmt::Formatter<'_>, sep: &mut &str, n, v: &Option<Cow<'_, str>>| {
            v.as_deref().map_or(Ok(()), |v| write_quoted(f, sep, n, v))
        };
        q(f, sep, "realm", &self.realm)?;
        q(f, sep, "domain", &self.domain)?;
        q(f, sep, "nonce", &self.nonce)?;
        q(f, sep, "opaque", &self.opaque)?;
        if self.stale {
            write_token(f, sep, "stale", "true")?;
        }
        if let Some(a) = &self.algorithm {
            write_token(f, sep, "algorithm", a)?;
        }
        if !self.qop.is_empty() {
            let list: Vec<&str> = self.qop.iter().map(|q| &**q).collect();
            write_quoted(f, sep, "qop", &list.join(","))?;
        }
        if self.userhash {
            write_token(f, sep, "userhash", "true")?;
        }
        if let Some(c) = &self.charset {
            write_token(f, sep, "charset", c)?;
        }
        write_other(f, sep, &self.other)
    }
}

impl fmt::Display for Credentials<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_scheme(f, &self.scheme)?;
        let sep = &mut " ";
        let q = |f: &mut fmt::Formatter<'_>, sep: &mut &str, n, v: &Option<Cow<'_, str>>| {
            v.as_deref().map_or(Ok(()), |v| write_quoted(f, sep, n, v))
        };
        let t = |f: &mut fmt::Formatter<'_>, sep: &mut &str, n, v: &Option<Cow<'_, str>>| {
            v.as_deref().map_or(Ok(()), |v| write_token(f, sep, n, v))
        };
        q(f, sep, "username", &self.username)?;
        q(f, sep, "realm", &self.realm)?;
        q(f, sep, "nonce", &self.nonce)?;
        q(f, sep, "uri", &self.uri)?;
        q(f, sep, "response", &self.response)?;
        t(f, sep, "algorithm", &self.algorithm)?;
        q(f, sep, "cnonce", &self.cnonce)?;
        q(f, sep, "opaque", &self.opaque)?;
        t(f, sep, "qop", &self.qop)?;
        if let Some(nc) = self.nc {
            write!(f, "{sep}nc={nc}")?;
            *sep = ", ";
        }
        if self.userhash {
            write_token(f, sep, "userhash", "true")?;
        }
        write_other(f, sep, &self.other)
    }
}

impl fmt::Display for AuthenticationInfo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sep = &mut "";
        if let Some(v) = &self.nextnonce {
            write_quoted(f, sep, "nextnonce", v)?;
        }
        if let Some(v) = &self.qop {
            write_token(f, sep, "qop", v)?;
        }
        if let Some(v) = &self.rspauth {
            write_quoted(f, sep, "rspauth", v)?;
        }
        if let Some(v) = &self.cnonce {
            write_quoted(f, sep, "cnonce", v)?;
        }
        if let Some(nc) = self.nc {
            write!(f, "{sep}nc={nc}")?;
            *sep = ", ";
        }
        write_other(f, sep, &self.other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_rfc_2617_challenge() {
        let v = "Digest\r\n realm=\"testrealm@host.com\",\r\n qop=\"auth,auth-int\",\r\n \
                 nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\",\r\n \
                 opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"";
        let c = Challenge::parse(v).unwrap();
        assert!(c.is_digest());
        assert_eq!(c.realm.as_deref(), Some("testrealm@host.com"));
        assert_eq!(
            c.nonce.as_deref(),
            Some("dcd98b7102dd2f0e8b11d0f600bfb0c093")
        );
        assert_eq!(
            c.opaque.as_deref(),
            Some("5ccc069c403ebaf9f0171e9517f40e41")
        );
        assert_eq!(
            c.qop_options().collect::<Vec<_>>(),
            vec![Qop::Auth, Qop::AuthInt]
        );
        assert_eq!(c.algorithm(), Ok(Algorithm::Md5));
        assert!(matches!(c.realm, Some(Cow::Borrowed(_))), "zero-copy");
    }

    #[test]
    fn parses_rfc_7616_challenge_case_insensitively() {
        let v = "DIGEST REALM=\"http-auth@example.org\", QOP=\"auth, auth-int\", \
                 Algorithm=sha-256, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", \
                 opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\", Stale=TRUE, \
                 userhash=true, charset=UTF-8";
        let c = Challenge::parse(v).unwrap();
        assert!(c.is_digest());
        assert_eq!(c.algorithm(), Ok(Algorithm::Sha256));
        assert!(c.stale && c.userhash);
        assert_eq!(c.charset.as_deref(), Some("UTF-8"));
        assert_eq!(c.qop, vec!["auth", "auth-int"]);
    }

    #[test]
    fn parses_credentials() {
        let v = r#"Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41", x-extra=1"#;
        let c = Credentials::parse(v).unwrap();
        assert_eq!(c.username.as_deref(), Some("Mufasa"));
        assert_eq!(c.uri.as_deref(), Some("/dir/index.html"));
        assert_eq!(c.qop(), Ok(Some(Qop::Auth)));
        assert_eq!(c.nc, Some(NonceCount(1)));
        assert_eq!(c.cnonce.as_deref(), Some("0a4f113b"));
        assert_eq!(c.other.len(), 1);
        assert_eq!(c.other[0].name, "x-extra");
        let s = c.to_string();
        let again = Credentials::parse(&s).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn unknown_scheme_parses_generically() {
        // RFC 4475 §3.3.1 regaut01.
        let c = Credentials::parse("NoOneKnowsThisScheme opaque-data=here").unwrap();
        assert!(!c.is_digest());
        assert_eq!(c.scheme, "NoOneKnowsThisScheme");
        assert_eq!(c.other.len(), 1);
        assert_eq!(c.other[0].name, "opaque-data");
        assert_eq!(c.other[0].value, "here");
        assert_eq!(c.to_string(), "NoOneKnowsThisScheme opaque-data=here");
        // Duplicates are the unknown scheme's business.
        assert!(Challenge::parse("Other a=1, a=2").is_ok());
    }

    #[test]
    fn escapes_and_folds() {
        let c = Challenge::parse("Digest realm=\"a \\\"quoted\\\" \\\\ realm\", nonce=\"x\r\n y\"")
            .unwrap();
        assert_eq!(c.realm.as_deref(), Some("a \"quoted\" \\ realm"));
        assert_eq!(c.nonce.as_deref(), Some("x y"));
        let out = c.to_string();
        assert!(out.contains(r#"realm="a \"quoted\" \\ realm""#), "{out}");
        assert_eq!(Challenge::parse(&out).unwrap(), c);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "   ",
            "Digest realm",
            "Digest realm=",
            "Digest realm=\"unterminated",
            "Digest realm=\"a\" nonce=\"b\"",
            "Digest realm=\"a\",",
            "Digest realm=\"a\",,nonce=\"b\"",
            "Digest =\"a\"",
            "Digest realm=\"a\", realm=\"b\"",
            "Digest REALM=\"a\", realm=\"a\"",
            "Digest realm=\"bad\\\r\n\"",
            "Digest realm=\"line\r\nbreak\"",
            "Digest realm=\"nul\0\"",
            "Digest stale=maybe",
            "Digest realm=a b",
            "Digest realm=sip:x",
        ] {
            assert!(Challenge::parse(bad).is_err(), "accepted {bad:?}");
        }
        assert!(Credentials::parse("Digest nc=1").is_err());
        assert!(Credentials::parse("Digest nc=0000000g").is_err());
        assert!(Credentials::parse("Digest uri=\"a\", URI=\"b\"").is_err());
        assert!(AuthenticationInfo::parse("rspauth=\"a\", rspauth=\"b\"").is_err());
        let e = Challenge::parse("Digest realm=\"a\", realm=\"b\"").unwrap_err();
        assert_eq!(
            e,
            Error::InvalidHeader {
                name: "WWW-Authenticate",
                offset: 18,
                reason: "duplicate parameter"
            }
        );
        assert!(Challenge::parse_bytes(b"Digest realm=\"\xff\"").is_err());
    }

    #[test]
    fn param_count_is_capped() {
        let many: Vec<String> = (0..=MAX_AUTH_PARAMS).map(|i| format!("p{i}=v")).collect();
        let v = format!("Digest {}", many.join(", "));
        assert!(Challenge::parse(&v).is_err());
        let ok = format!("Digest {}", many[..MAX_AUTH_PARAMS].join(", "));
        assert_eq!(Challenge::parse(&ok).unwrap().other.len(), MAX_AUTH_PARAMS);
    }

    #[test]
    fn writes_tokens_and_quoted_strings_as_the_grammar_wants() {
        let c = Credentials {
            scheme: "Digest".into(),
            username: Some("bob".into()),
            realm: Some("biloxi.com".into()),
            nonce: Some("n".into()),
            uri: Some("sip:bob@biloxi.com".into()),
            response: Some("abc".into()),
            algorithm: Some("SHA-256".into()),
            cnonce: Some("c".into()),
            opaque: Some("o".into()),
            qop: Some("auth".into()),
            nc: Some(NonceCount(10)),
            ..Credentials::default()
        };
        assert_eq!(
            c.to_string(),
            "Digest username=\"bob\", realm=\"biloxi.com\", nonce=\"n\", \
             uri=\"sip:bob@biloxi.com\", response=\"abc\", algorithm=SHA-256, cnonce=\"c\", \
             opaque=\"o\", qop=auth, nc=0000000a"
        );
        let ch = Challenge {
            scheme: "Digest".into(),
            realm: Some("r".into()),
            nonce: Some("n".into()),
            stale: true,
            algorithm: Some("MD5".into()),
            qop: vec!["auth".into(), "auth-int".into()],
            ..Challenge::default()
        };
        assert_eq!(
            ch.to_string(),
            "Digest realm=\"r\", nonce=\"n\", stale=true, algorithm=MD5, qop=\"auth,auth-int\""
        );
        let info = AuthenticationInfo {
            nextnonce: Some("nn".into()),
            qop: Some("auth".into()),
            rspauth: Some("r".into()),
            cnonce: Some("c".into()),
            nc: Some(NonceCount(1)),
            other: Vec::new(),
        };
        let s = info.to_string();
        assert_eq!(
            s,
            "nextnonce=\"nn\", qop=auth, rspauth=\"r\", cnonce=\"c\", nc=00000001"
        );
        assert_eq!(AuthenticationInfo::parse(&s).unwrap(), info);
        // A CR or LF in a value can never split the header.
        let evil = Challenge {
            scheme: "Digest".into(),
            realm: Some("a\r\nVia: x".into()),
            ..Challenge::default()
        };
        assert_eq!(evil.to_string(), "Digest realm=\"aVia: x\"");
    }

    #[test]
    fn algorithms_and_qops_by_name() {
        for a in Algorithm::ALL {
            assert_eq!(Algorithm::from_name(a.as_str()), Some(a));
            assert_eq!(Algorithm::from_name(&a.as_str().to_lowercase()), Some(a));
        }
        assert_eq!(Algorithm::from_name("AKAv1-MD5"), None);
        let c = Challenge::parse("Digest realm=\"r\", nonce=\"n\", algorithm=AKAv1-MD5").unwrap();
        assert_eq!(c.algorithm(), Err("AKAv1-MD5"));
        assert_eq!(Qop::from_name("AUTH-INT"), Some(Qop::AuthInt));
        assert_eq!(NonceCount::parse("0000000A"), Some(NonceCount(10)));
        assert_eq!(NonceCount(10).to_string(), "0000000a");
    }

    /// Whatever parses survives a write and a re-parse unchanged (the fuzz target's property).
    fn assert_reparses(s: &str) {
        if let Ok(c) = Challenge::parse(s) {
            assert_eq!(Challenge::parse(&c.to_string()).as_ref(), Ok(&c), "{s:?}");
        }
        if let Ok(c) = Credentials::parse(s) {
            assert_eq!(Credentials::parse(&c.to_string()).as_ref(), Ok(&c), "{s:?}");
        }
        if let Ok(a) = AuthenticationInfo::parse(s) {
            assert_eq!(
                AuthenticationInfo::parse(&a.to_string()).as_ref(),
                Ok(&a),
                "{s:?}"
            );
        }
    }

    fn text() -> impl Strategy<Value = String> {
        // Anything but CR/LF (which a quoted-string cannot carry).
        proptest::string::string_regex("[^\r\n]{0,24}").unwrap()
    }

    fn token() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[A-Za-z0-9.!%*_+`'~-]{1,12}").unwrap()
    }

    fn opt(s: impl Strategy<Value = String>) -> impl Strategy<Value = Option<Cow<'static, str>>> {
        proptest::option::of(s.prop_map(Cow::Owned))
    }

    fn other() -> impl Strategy<Value = Vec<AuthParam<'static>>> {
        proptest::collection::vec(
            (
                token(),
                prop_oneof![
                    text().prop_map(|v| (v, true)),
                    token().prop_map(|v| (v, false))
                ],
            ),
            0..4,
        )
        .prop_map(|v| {
            v.into_iter()
                .map(|(n, (value, quoted))| AuthParam {
                    name: Cow::Owned(format!("x-{n}")),
                    value: Cow::Owned(value),
                    quoted,
                })
                .collect()
        })
    }

    prop_compose! {
        fn challenge()(
            realm in opt(text()), domain in opt(text()), nonce in opt(text()),
            opaque in opt(text()), stale: bool, algorithm in opt(token()),
            qop in proptest::collection::vec(token().prop_map(Cow::Owned), 0..3),
            userhash: bool, charset in opt(token()), other in other(),
        ) -> Challenge<'static> {
            Challenge { scheme: "Digest".into(), realm, domain, nonce, opaque, stale, algorithm,
                        qop, userhash, charset, other }
        }
    }

    prop_compose! {
        fn credentials()(
            username in opt(text()), realm in opt(text()), nonce in opt(text()),
            uri in opt(text()), response in opt(text()), algorithm in opt(token()),
            cnonce in opt(text()), opaque in opt(text()), qop in opt(token()),
            nc in proptest::option::of(any::<u32>().prop_map(NonceCount)),
            userhash: bool, other in other(),
        ) -> Credentials<'static> {
            Credentials { scheme: "Digest".into(), username, realm, nonce, uri, response,
                          algorithm, cnonce, opaque, qop, nc, userhash, other }
        }
    }

    proptest! {
        #[test]
        fn challenge_round_trips(c in challenge()) {
            let s = c.to_string();
            prop_assert_eq!(Challenge::parse(&s).unwrap(), c);
        }

        #[test]
        fn credentials_round_trip(c in credentials()) {
            let s = c.to_string();
            prop_assert_eq!(Credentials::parse(&s).unwrap(), c);
        }

        #[test]
        fn never_panics_on_text(s in "\\PC{0,80}") {
            assert_reparses(&s);
        }

        #[test]
        fn never_panics_on_bytes(b in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = Challenge::parse_bytes(&b);
            let _ = Credentials::parse_bytes(&b);
            let _ = AuthenticationInfo::parse_bytes(&b);
        }

        #[test]
        fn never_panics_on_near_valid(
            s in "(Digest|Basic)? ?([a-z]{1,5} ?= ?(\"([^\"\\\\]|\\\\.){0,6}\"?|[a-z0-9]{0,4}) ?,? ?\r?\n?[ \t]?){0,6}"
        ) {
            assert_reparses(&s);
        }
    }
}
