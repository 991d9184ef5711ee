//! Lexical helpers shared by the typed header views (RFC 3261 §25.1).
//!
//! Everything here works on bytes with lookup tables: no regex, no per-char UTF-8 decoding and
//! no allocation, except in [`unquote`] and the percent decoders, which allocate only when the
//! input actually holds an escape.

use std::borrow::Cow;

/// `s.get(a..b)`, in a form the compiler inlines (the generic `str::get` often stays a call on
/// these hot paths).
#[inline(always)]
pub(crate) fn slice(s: &str, a: usize, b: usize) -> Option<&str> {
    let (head, _) = s.split_at_checked(b)?;
    head.split_at_checked(a).map(|(_, tail)| tail)
}

/// A header line as text and whether it holds a comma, from one pass over its bytes (the
/// ASCII test and the comma test fold together into vector code).
#[inline]
pub(crate) fn line_text(b: &[u8]) -> (Option<&str>, bool) {
    let (high, comma) = b
        .iter()
        .fold((0u8, 0u8), |(h, c), &x| (h | x, c | u8::from(x == b',')));
    (text_known_ascii(b, high < 0x80).ok(), comma != 0)
}

/// Whether every byte is ASCII. Past a few words an OR-fold (vectorised, no early exit) beats
/// `<[u8]>::is_ascii`.
#[inline]
fn is_ascii(b: &[u8]) -> bool {
    if b.len() < 32 {
        b.is_ascii()
    } else {
        b.iter().fold(0u8, |acc, &c| acc | c) < 0x80
    }
}

/// `std::str::from_utf8` with an ASCII fast path. Header values are nearly always ASCII, and on
/// short slices the standard validator mostly works a byte at a time, while `is_ascii` tests a
/// word at a time; non-ASCII input takes the full validation.
#[inline]
pub(crate) fn to_str(b: &[u8]) -> Result<&str, std::str::Utf8Error> {
    text_known_ascii(b, is_ascii(b))
}

/// `b` as text, given whether it was found to be all ASCII (then nothing is re-validated).
#[inline(always)]
fn text_known_ascii(b: &[u8], ascii: bool) -> Result<&str, std::str::Utf8Error> {
    if ascii {
        debug_assert!(b.is_ascii());
        // SAFETY: the caller tested every byte below 0x80, and ASCII is valid UTF-8. This and
        // nothing else in the crate is `unsafe`.
        Ok(unsafe { std::str::from_utf8_unchecked(b) })
    } else {
        std::str::from_utf8(b)
    }
}

// Character classes of RFC 3261 §25.1, one bit each in `CLASS`.
pub(crate) const TOKEN: u16 = 1 << 0;
pub(crate) const WORD: u16 = 1 << 1;
pub(crate) const UNRESERVED: u16 = 1 << 2;
pub(crate) const USER: u16 = 1 << 3;
pub(crate) const PASSWORD: u16 = 1 << 4;
pub(crate) const PARAM: u16 = 1 << 5;
pub(crate) const HNV: u16 = 1 << 6;
pub(crate) const URIC: u16 = 1 << 7;
pub(crate) const PVALUE: u16 = 1 << 8;
/// `,` `"` `<`: the bytes that matter to [`split_values`] outside angle brackets.
const SPLIT_OUT: u16 = 1 << 9;
/// `>` `"`: the bytes that matter to [`split_values`] inside angle brackets.
const SPLIT_IN: u16 = 1 << 10;
/// Bytes of an unquoted display name: token characters, LWS and non-ASCII (UTF-8) bytes.
pub(crate) const DISPLAY: u16 = 1 << 11;
/// ASCII letters and digits.
pub(crate) const ALNUM: u16 = 1 << 12;
/// ASCII letters, digits and `-`: the inside of a host-name label.
pub(crate) const LABEL: u16 = 1 << 13;

const fn build_class() -> [u16; 256] {
    let mut t = [0u16; 256];
    let mut b = 0usize;
    while b < 256 {
        let c = b as u8;
        let alnum = c.is_ascii_alphanumeric();
        // unreserved = alphanum / mark
        let mark = matches!(
            c,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        );
        let mut v = 0u16;
        if alnum
            || matches!(
                c,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            )
        {
            v |= TOKEN | PVALUE;
        }
        // Header parameter values also take ':' (bare IPv6 `received`, RFC 5118 §4.5).
        if c == b':' {
            v |= PVALUE;
        }
        if alnum
            || matches!(
                c,
                b'-' | b'.'
                    | b'!'
                    | b'%'
                    | b'*'
                    | b'_'
                    | b'+'
                    | b'`'
                    | b'\''
                    | b'~'
                    | b'('
                    | b')'
                    | b'<'
                    | b'>'
                    | b':'
                    | b'\\'
                    | b'"'
                    | b'/'
                    | b'['
                    | b']'
                    | b'?'
                    | b'{'
                    | b'}'
            )
        {
            v |= WORD;
        }
        if alnum || mark {
            v |= UNRESERVED | USER | PASSWORD | PARAM | HNV | URIC;
        }
        // user-unreserved
        if matches!(c, b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/') {
            v |= USER;
        }
        if matches!(c, b'&' | b'=' | b'+' | b'$' | b',') {
            v |= PASSWORD;
        }
        // param-unreserved
        if matches!(c, b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$') {
            v |= PARAM;
        }
        // hnv-unreserved
        if matches!(c, b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$') {
            v |= HNV;
        }
        // reserved (RFC 3261 §25.1, RFC 2396)
        if matches!(
            c,
            b';' | b'/' | b'?' | b':' | b'@' | b'&' | b'=' | b'+' | b'$' | b','
        ) {
            v |= URIC;
        }
        if matches!(c, b',' | b'"' | b'<') {
            v |= SPLIT_OUT;
        }
        if matches!(c, b'>' | b'"') {
            v |= SPLIT_IN;
        }
        if v & TOKEN != 0 || matches!(c, b' ' | b'\t' | b'\r' | b'\n') || c >= 0x80 {
            v |= DISPLAY;
        }
        if alnum {
            v |= ALNUM | LABEL;
        }
        if c == b'-' {
            v |= LABEL;
        }
        t[b] = v;
        b += 1;
    }
    t
}

static CLASS: [u16; 256] = build_class();

#[inline]
fn has(b: u8, class: u16) -> bool {
    CLASS[b as usize] & class != 0
}

/// Index of the first byte at or after `i` outside `class` (one bit of `CLASS`), or `b.len()`.
/// A plain loop: most runs are short, and a four-bytes-per-step variant measured slower.
#[inline]
pub(crate) fn scan_class(b: &[u8], i: usize, class: u16) -> usize {
    let Some(rest) = b.get(i..) else {
        return i;
    };
    i + rest
        .iter()
        .position(|&c| CLASS[c as usize] & class == 0)
        .unwrap_or(rest.len())
}

/// Index of the first byte at or after `i` in `class` (one bit of `CLASS`), if any.
#[inline]
fn find_class(b: &[u8], mut i: usize, class: u16) -> Option<usize> {
    while let Some(&[c0, c1, c2, c3]) = b.get(i..i.wrapping_add(4)) {
        let any = CLASS[c0 as usize] | CLASS[c1 as usize] | CLASS[c2 as usize] | CLASS[c3 as usize];
        if any & class != 0 {
            break;
        }
        i += 4;
    }
    while let Some(&c) = b.get(i) {
        if CLASS[c as usize] & class != 0 {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// RFC 3261 §25.1 `token` character: `alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~"`.
#[inline]
pub fn is_token_byte(b: u8) -> bool {
    has(b, TOKEN)
}

/// RFC 3261 §25.1 `word` character (Call-ID): token characters plus `( ) < > : \ " / [ ] ? { }`.
#[inline]
pub fn is_word_byte(b: u8) -> bool {
    has(b, WORD)
}

/// RFC 3261 §25.1 `unreserved`: `alphanum / mark`.
#[inline]
pub fn is_unreserved_byte(b: u8) -> bool {
    has(b, UNRESERVED)
}

/// Characters of a SIP URI `user` other than escapes: `unreserved / user-unreserved`.
#[inline]
pub(crate) fn is_user_byte(b: u8) -> bool {
    has(b, USER)
}

/// Characters of a SIP URI `password` other than escapes.
#[inline]
pub(crate) fn is_password_byte(b: u8) -> bool {
    has(b, PASSWORD)
}

/// `paramchar` of a URI parameter other than escapes: `param-unreserved / unreserved`.
#[inline]
pub(crate) fn is_paramchar_byte(b: u8) -> bool {
    has(b, PARAM)
}

/// Characters of a URI header name or value other than escapes: `hnv-unreserved / unreserved`.
#[inline]
pub(crate) fn is_hnv_byte(b: u8) -> bool {
    has(b, HNV)
}

/// `uric` other than escapes (`reserved / unreserved`), for opaque absolute URIs.
#[inline]
pub(crate) fn is_uric_byte(b: u8) -> bool {
    has(b, URIC)
}

/// Linear white space inside a header value: SP, HTAB, CR, LF (folding is LWS, RFC 3261 §25.1).
#[inline]
pub fn is_lws_byte(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// True if `name` equals `lower` ignoring ASCII case; `lower` must be lower-case ASCII letters
/// only (for a letter, `| 0x20` maps exactly it and its upper case onto it).
#[inline]
pub(crate) fn name_is(name: &str, lower: &[u8]) -> bool {
    let n = name.as_bytes();
    n.len() == lower.len() && n.iter().zip(lower).all(|(&a, &l)| a | 0x20 == l)
}

/// True if `s` is a non-empty RFC 3261 `token`.
///
/// ```
/// use sip_core::text::is_token;
/// assert!(is_token("z9hG4bK-74.bf9"));
/// assert!(!is_token("a b"));
/// assert!(!is_token(""));
/// ```
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_byte)
}

/// True if `s` is a non-empty run of RFC 3261 `word` characters.
pub fn is_word(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_word_byte)
}

/// Index of the first byte at or after `i` that is not LWS (or `b.len()`).
#[inline]
pub(crate) fn skip_lws(b: &[u8], mut i: usize) -> usize {
    while let Some(&c) = b.get(i) {
        if !is_lws_byte(c) {
            break;
        }
        i += 1;
    }
    i
}

/// Index of the first byte at or after `i` that is not a token character (or `b.len()`).
#[inline]
pub(crate) fn scan_token(b: &[u8], i: usize) -> usize {
    scan_class(b, i, TOKEN)
}

/// Index of the first byte at or after `i` that is not a header parameter value character
/// (token characters and `:`), or `b.len()`.
#[inline]
pub(crate) fn scan_pvalue(b: &[u8], i: usize) -> usize {
    scan_class(b, i, PVALUE)
}

/// Whether `b` may appear in an unquoted header parameter value (token characters and `:`).
#[inline]
pub(crate) fn is_pvalue_byte(b: u8) -> bool {
    has(b, PVALUE)
}

/// Strips leading and trailing LWS (SP, HTAB, CR, LF).
///
/// ```
/// assert_eq!(sip_core::text::trim_lws(" \r\n\tabc \r\n"), "abc");
/// ```
pub fn trim_lws(s: &str) -> &str {
    let b = s.as_bytes();
    let start = skip_lws(b, 0);
    let mut end = b.len();
    while end > start && is_lws_byte(b[end - 1]) {
        end -= 1;
    }
    // Both ends sit next to ASCII bytes, so they are char boundaries.
    s.get(start..end).unwrap_or("")
}

/// Scans a `quoted-string` whose opening `"` is at `b[start]`; returns the index just past the
/// closing quote, or `None` if it is unterminated (RFC 3261 §25.1: `quoted-pair = "\" CHAR`).
pub(crate) fn scan_quoted(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    None
}

/// Like [`scan_quoted`] but also rejects control characters that are neither LWS nor escaped.
pub(crate) fn scan_quoted_strict(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'"' => return Some(i + 1),
            b'\\' => {
                // quoted-pair excludes CR and LF.
                match b.get(i + 1) {
                    Some(b'\r') | Some(b'\n') | None => return None,
                    Some(_) => i += 2,
                }
            }
            c if c < 0x20 && !is_lws_byte(c) => return None,
            0x7f => return None,
            _ => i += 1,
        }
    }
    None
}

/// Iterator over the comma-separated values of one header line; see [`split_values`].
#[derive(Debug, Clone)]
pub struct SplitValues<'a> {
    s: &'a str,
    pos: usize,
}

/// Splits one header line's value at top-level commas (RFC 3261 §7.3.1).
///
/// Commas inside quoted strings (with `\"` escapes) and inside `<…>` do not split. Each value is
/// trimmed of LWS and empty elements are skipped.
///
/// ```
/// use sip_core::text::split_values;
/// let v: Vec<_> = split_values(r#""a, b" <sip:x@y;p=1,2>;q=1 , sip:z@w,,"#).collect();
/// assert_eq!(v, [r#""a, b" <sip:x@y;p=1,2>;q=1"#, "sip:z@w"]);
/// ```
pub fn split_values(s: &str) -> SplitValues<'_> {
    SplitValues { s, pos: 0 }
}

impl<'a> Iterator for SplitValues<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let b = self.s.as_bytes();
        while self.pos < b.len() {
            let start = self.pos;
            let end = value_end(b, start);
            self.pos = end + 1;
            let v = trim_lws(self.s.get(start..end).unwrap_or(""));
            if !v.is_empty() {
                return Some(v);
            }
        }
        None
    }
}

/// Whether `b` holds `needle`. A fold without an early exit, which the compiler turns into
/// vector compares: header values are too short for `memchr`'s set-up to pay off.
#[inline]
pub(crate) fn contains_byte(b: &[u8], needle: u8) -> bool {
    b.iter().fold(0u8, |acc, &c| acc | u8::from(c == needle)) != 0
}

/// Below this many bytes a table loop beats `memchr`'s set-up.
const MEMCHR_MIN: usize = 32;

/// The first `,`, `"` or `<` at or after `i`.
#[inline]
fn find_split_out(b: &[u8], i: usize) -> Option<usize> {
    let rest = b.get(i..)?;
    if rest.len() >= MEMCHR_MIN {
        memchr::memchr3(b',', b'"', b'<', rest).map(|p| p + i)
    } else {
        find_class(b, i, SPLIT_OUT)
    }
}

/// The first `>` or `"` at or after `i`.
#[inline]
fn find_split_in(b: &[u8], i: usize) -> Option<usize> {
    let rest = b.get(i..)?;
    if rest.len() >= MEMCHR_MIN {
        memchr::memchr2(b'>', b'"', rest).map(|p| p + i)
    } else {
        find_class(b, i, SPLIT_IN)
    }
}

/// End of the value starting at `i`: the index of the next top-level comma, or `b.len()`.
/// Quoted strings are skipped whole (an unterminated one runs to the end); inside `<…>` only
/// `>` and quotes matter.
fn value_end(b: &[u8], mut i: usize) -> usize {
    // Most lines hold one value: without a comma there is nothing to split.
    if !contains_byte(b.get(i..).unwrap_or_default(), b',') {
        return b.len();
    }
    loop {
        let Some(k) = find_split_out(b, i) else {
            return b.len();
        };
        match b[k] {
            b',' => return k,
            b'"' => match scan_quoted(b, k) {
                Some(e) => i = e,
                None => return b.len(),
            },
            _ => {
                // '<': up to the matching '>'.
                i = k + 1;
                loop {
                    let Some(k) = find_split_in(b, i) else {
                        return b.len();
                    };
                    if b[k] == b'>' {
                        i = k + 1;
                        break;
                    }
                    match scan_quoted(b, k) {
                        Some(e) => i = e,
                        None => return b.len(),
                    }
                }
            }
        }
    }
}

/// Removes the surrounding double quotes of a `quoted-string` (if present) and resolves its
/// `\x` escapes (RFC 3261 §25.1). Borrows when there is nothing to unescape.
///
/// ```
/// use sip_core::text::unquote;
/// assert_eq!(unquote(r#""J Rosenberg \\\"""#), r#"J Rosenberg \""#);
/// assert_eq!(unquote("token"), "token");
/// ```
pub fn unquote(s: &str) -> Cow<'_, str> {
    let inner = if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
        &s[1..s.len() - 1]
    } else {
        s
    };
    unescape_quoted_pairs(inner)
}

/// Resolves `\x` escapes of quoted-string content (without the surrounding quotes).
pub fn unescape_quoted_pairs(inner: &str) -> Cow<'_, str> {
    let b = inner.as_bytes();
    let Some(first) = memchr::memchr(b'\\', b) else {
        return Cow::Borrowed(inner);
    };
    let mut out = Vec::with_capacity(b.len());
    out.extend_from_slice(&b[..first]);
    let mut i = first;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            out.push(b[i + 1]);
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    // Only ASCII backslashes were removed, so the bytes are still UTF-8.
    match String::from_utf8(out) {
        Ok(s) => Cow::Owned(s),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

#[inline]
pub(crate) fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// True if `b[i..]` starts with a valid `escaped` (`%` HEXDIG HEXDIG).
#[inline]
pub(crate) fn is_escape_at(b: &[u8], i: usize) -> bool {
    matches!(b.get(i..i + 3), Some([b'%', h, l]) if hex_val(*h).is_some() && hex_val(*l).is_some())
}

/// Decodes `%XX` escapes (RFC 3261 §19.1.2, §25.1 `escaped`). Borrows when there is none; a `%`
/// not followed by two hex digits is kept as is.
///
/// ```
/// use sip_core::text::percent_decode;
/// assert_eq!(&*percent_decode("null-%00-null"), b"null-\0-null");
/// ```
pub fn percent_decode(s: &str) -> Cow<'_, [u8]> {
    let b = s.as_bytes();
    let Some(first) = memchr::memchr(b'%', b) else {
        return Cow::Borrowed(b);
    };
    let mut out = Vec::with_capacity(b.len());
    out.extend_from_slice(&b[..first]);
    let mut i = first;
    while i < b.len() {
        if b[i] == b'%' {
            if let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex_val),
                b.get(i + 2).copied().and_then(hex_val),
            ) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    Cow::Owned(out)
}

/// [`percent_decode`] as text; `None` if the decoded bytes are not UTF-8.
///
/// ```
/// use sip_core::text::percent_decode_str;
/// assert_eq!(percent_decode_str("I%20have%20spaces").unwrap(), "I have spaces");
/// assert_eq!(percent_decode_str("%FF"), None);
/// ```
pub fn percent_decode_str(s: &str) -> Option<Cow<'_, str>> {
    match percent_decode(s) {
        Cow::Borrowed(_) => Some(Cow::Borrowed(s)),
        Cow::Owned(v) => String::from_utf8(v).ok().map(Cow::Owned),
    }
}

/// Parses 1*DIGIT as a `u32`, rejecting empty input, non-digits and overflow.
pub(crate) fn parse_u32_digits(s: &str) -> Option<u32> {
    if s.is_empty() {
        return None;
    }
    let mut v: u32 = 0;
    for &c in s.as_bytes() {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u32::from(d))?;
    }
    Some(v)
}

/// Parses 1*DIGIT saturating at `u32::MAX` (delta-seconds, RFC 3261 §20.19).
pub(crate) fn parse_u32_saturating(s: &str) -> Option<u32> {
    if s.is_empty() {
        return None;
    }
    let mut v: u32 = 0;
    for &c in s.as_bytes() {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.saturating_mul(10).saturating_add(u32::from(d));
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn token_classes() {
        assert!(is_token("INVITE"));
        assert!(is_token("+sip.instance"));
        assert!(is_token("a`'~%*_!.-"));
        for bad in ["", "a b", "a;b", "a\"", "é", "a:b", "<", "a/b"] {
            assert!(!is_token(bad), "{bad:?}");
        }
        assert!(is_word("f81d4fae-7dec-11d0-a765-00a0c91e6bf6"));
        assert!(is_word("a<b>c:\\\"/[]?{}()"));
        assert!(!is_word("a b"));
        assert!(!is_word("a@b"));
    }

    #[test]
    fn trims() {
        assert_eq!(trim_lws(""), "");
        assert_eq!(trim_lws(" \r\n "), "");
        assert_eq!(trim_lws("\r\n a b\t"), "a b");
    }

    #[test]
    fn splits() {
        let v: Vec<_> = split_values("a, b ,c").collect();
        assert_eq!(v, ["a", "b", "c"]);
        let v: Vec<_> = split_values(";;,,;;,;").collect();
        assert_eq!(v, [";;", ";;", ";"]);
        let v: Vec<_> = split_values(r#""x \", y" <sip:a,b>, <sip:c>"#).collect();
        assert_eq!(v, [r#""x \", y" <sip:a,b>"#, "<sip:c>"]);
        // A quoted '<' does not open an angle bracket.
        let v: Vec<_> = split_values(r#""<" <sip:a>, <sip:b>"#).collect();
        assert_eq!(v, [r#""<" <sip:a>"#, "<sip:b>"]);
        let v: Vec<_> = split_values(
            "<sip:carol@192.0.2.15;transport=tcp>;+org.linphone.specs=\"ephemeral,groupchat/1.1,lime\", <sip:d@e>",
        )
        .collect();
        assert_eq!(v.len(), 2);
        let v: Vec<_> =
            split_values("application/sdp, application/pkcs7-mime,\r\n        multipart/mixed")
                .collect();
        assert_eq!(
            v,
            [
                "application/sdp",
                "application/pkcs7-mime",
                "multipart/mixed"
            ]
        );
        assert_eq!(split_values("").count(), 0);
        assert_eq!(split_values(" , ,").count(), 0);
        let v: Vec<_> = split_values("\"unterminated, x").collect();
        assert_eq!(v, ["\"unterminated, x"]);
    }

    #[test]
    fn unquotes() {
        assert_eq!(unquote("\"a\\\\b\""), "a\\b");
        assert_eq!(unquote("\"Quoted string \\\"\\\"\""), "Quoted string \"\"");
        assert!(matches!(unquote("\"plain\""), Cow::Borrowed("plain")));
        assert_eq!(unquote("\"\""), "");
        assert_eq!(unquote("\"é\\ü\""), "éü");
    }

    #[test]
    fn decodes() {
        assert_eq!(
            percent_decode_str("sips%3Auser%40example.com").unwrap(),
            "sips:user@example.com"
        );
        assert_eq!(percent_decode_str("%75se%72").unwrap(), "user");
        assert_eq!(&*percent_decode("%Z1%"), b"%Z1%");
        assert_eq!(&*percent_decode("%4"), b"%4");
        assert!(matches!(percent_decode("abc"), Cow::Borrowed(_)));
        assert!(is_escape_at(b"%41", 0));
        assert!(!is_escape_at(b"%4", 0));
        assert!(!is_escape_at(b"%4G", 0));
    }

    #[test]
    fn digits() {
        assert_eq!(parse_u32_digits("4294967295"), Some(u32::MAX));
        assert_eq!(parse_u32_digits("4294967296"), None);
        assert_eq!(parse_u32_digits("0009"), Some(9));
        assert_eq!(parse_u32_digits(""), None);
        assert_eq!(parse_u32_digits("1a"), None);
        assert_eq!(parse_u32_saturating("99999999999999"), Some(u32::MAX));
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = split_values(&s).count();
            let _ = unquote(&s);
            let _ = percent_decode_str(&s);
            let _ = trim_lws(&s);
            let _ = is_token(&s);
        }

        #[test]
        fn contains_byte_agrees_with_contains(b in proptest::collection::vec(any::<u8>(), 0..40), n in any::<u8>()) {
            prop_assert_eq!(contains_byte(&b, n), b.contains(&n));
        }

        #[test]
        fn line_text_agrees_with_from_utf8(b in proptest::collection::vec(any::<u8>(), 0..80)) {
            let (text, comma) = line_text(&b);
            prop_assert_eq!(text, std::str::from_utf8(&b).ok());
            prop_assert_eq!(comma, b.contains(&b','));
        }

        #[test]
                fn to_str_agrees_with_from_utf8(b in proptest::collection::vec(any::<u8>(), 0..80)) {
            prop_assert_eq!(to_str(&b).ok(), std::str::from_utf8(&b).ok());
        }

        #[test]
        fn split_values_are_trimmed_and_nonempty(s in "[a-z\",<> ;\\\\]{0,40}") {
            for v in split_values(&s) {
                prop_assert!(!v.is_empty());
                prop_assert_eq!(v, trim_lws(v));
            }
        }
    }
}
