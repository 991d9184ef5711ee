//! The zero-copy message parser (RFC 3261 §7, §25; §18.3 for framing the body).
//!
//! One pass over the bytes: the start line is split and checked, every header line is found with
//! `memchr`, its name resolved and its value located; nothing is copied and, for messages of up
//! to 16 header lines, nothing is allocated (one allocation up to 64 lines). Header values are parsed into typed views only when
//! asked for.

use bytes::Bytes;
use memchr::memchr;
use smallvec::SmallVec;

use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::message::{Body, Entry, Message, Span, Src, Start};
use crate::name::HeaderName;

/// How the message arrived, which decides how its body is delimited (RFC 3261 §18.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// A datagram (UDP): a missing Content-Length means the rest of the datagram; bytes after
    /// the declared length are ignored.
    Datagram,
    /// A message cut from a stream (TCP, TLS): Content-Length is mandatory.
    Stream,
}

/// RFC 3261 §25.1 `token` characters.
pub(crate) static TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        c += 1;
    }
    t
};

impl Message {
    /// Parses one message from a datagram with the default [`Limits`].
    ///
    /// Leading CRLFs are skipped (RFC 3261 §7.5); bytes after the body are ignored.
    pub fn parse(buf: impl Into<Bytes>) -> Result<Message> {
        parse(buf.into(), &Limits::default(), Framing::Datagram)
    }

    /// Parses one message with explicit limits and framing.
    pub fn parse_with(buf: impl Into<Bytes>, limits: &Limits, framing: Framing) -> Result<Message> {
        parse(buf.into(), limits, framing)
    }
}

#[inline]
fn invalid_line(offset: usize) -> Error {
    Error::InvalidHeaderLine { offset }
}

/// Parses a whole message held in `buf`.
pub(crate) fn parse(buf: Bytes, limits: &Limits, framing: Framing) -> Result<Message> {
    let limits = limits.effective();
    let b: &[u8] = &buf;
    if b.len() > limits.max_message_size {
        return Err(Error::MessageTooLarge {
            size: b.len(),
            limit: limits.max_message_size,
        });
    }
    // RFC 3261 §7.5: ignore CRLFs before the start line.
    let mut pos = 0;
    while let Some(c) = b.get(pos) {
        if *c == b'\r' || *c == b'\n' {
            pos += 1;
        } else {
            break;
        }
    }
    if pos >= b.len() {
        return Err(Error::Empty);
    }
    let line_start = pos;
    let nl = match memchr(b'\n', &b[pos..]) {
        Some(i) => pos + i,
        None => return Err(Error::Incomplete),
    };
    let line_end = if nl > pos && b[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    let start = parse_start_line(b, line_start, line_end, &limits)?;
    pos = nl + 1;

    let mut headers: SmallVec<[Entry; crate::message::INLINE_HEADERS]> = SmallVec::new();
    let mut content_length: Option<(usize, usize)> = None; // (value start, value end)
    let body_start;
    loop {
        match b.get(pos) {
            None => {
                // The datagram ended without the blank line: tolerate it, with an empty body.
                if framing == Framing::Stream {
                    return Err(Error::Incomplete);
                }
                body_start = b.len();
                break;
            }
            Some(b'\r') => {
                if b.get(pos + 1) == Some(&b'\n') {
                    body_start = pos + 2;
                    break;
                }
                return Err(invalid_line(pos));
            }
            Some(b'\n') => {
                body_start = pos + 1;
                break;
            }
            Some(_) => {}
        }
        if headers.len() >= limits.max_headers {
            return Err(Error::TooManyHeaders {
                limit: limits.max_headers,
            });
        }
        let (entry, next) = parse_header_line(b, pos, &limits)?;
        if entry.name == HeaderName::ContentLength && content_length.is_none() {
            content_length = Some((entry.value as usize, entry.end as usize));
        }
        pos = next;
        if headers.len() == headers.inline_size() {
            // The first spill goes straight to room for 64 lines: one allocation, not two.
            headers.reserve_exact(64 - headers.len());
        }
        headers.push(entry);
    }

    let available = b.len() - body_start;
    let body_len = match content_length {
        Some((vs, ve)) => {
            let declared = parse_content_length(crate::message::trim_end(&b[vs..ve]), vs)?;
            if declared > available {
                return Err(Error::ContentLengthMismatch {
                    declared,
                    actual: available,
                });
            }
            declared
        }
        None if framing == Framing::Stream => return Err(Error::MissingContentLength),
        None => available,
    };
    Ok(Message {
        start,
        start_raw: Some((line_start as u32, line_end as u32)),
        headers,
        body: Body::Span(body_start as u32, (body_start + body_len) as u32),
        extra: Vec::new(),
        edited: false,
        crlf_only: false,
        buf,
    })
}

/// Parses a Content-Length value: decimal digits only (RFC 3261 §20.14).
pub(crate) fn parse_content_length(v: &[u8], offset: usize) -> Result<usize> {
    if v.is_empty() || v.len() > 10 {
        return Err(Error::InvalidContentLength { offset });
    }
    let mut n: u64 = 0;
    for &c in v {
        if !c.is_ascii_digit() {
            return Err(Error::InvalidContentLength { offset });
        }
        n = n * 10 + u64::from(c - b'0');
    }
    if n > u64::from(u32::MAX) {
        return Err(Error::InvalidContentLength { offset });
    }
    Ok(n as usize)
}

/// Parses the header line starting at `pos`, folded continuation lines included; returns its
/// entry and the offset of the next line.
#[inline(always)]
fn parse_header_line(b: &[u8], pos: usize, limits: &Limits) -> Result<(Entry, usize)> {
    // The canonical spellings most stacks send are recognised without scanning the name byte
    // by byte; anything else is scanned and looked up.
    let (known, name_end) = match b.get(pos..).and_then(canonical_prefix) {
        Some((name, len)) => (Some(name), pos + len),
        None => {
            let end = match b.get(pos..) {
                Some(rest) => {
                    pos + rest
                        .iter()
                        .position(|c| !TOKEN[*c as usize])
                        .unwrap_or(rest.len())
                }
                None => pos,
            };
            (None, end)
        }
    };
    let mut i = name_end;
    if name_end == pos || name_end - pos > u16::MAX as usize {
        return Err(invalid_line(pos));
    }
    // RFC 3261 §7.3.1: whitespace may separate the name from the colon (`TO :`).
    while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
        i += 1;
    }
    if b.get(i) != Some(&b':') {
        return Err(invalid_line(pos));
    }
    i += 1;
    // End of the logical line: the LF not followed by SP/HT (obsolete line folding).
    let mut eol = match memchr(b'\n', &b[i..]) {
        Some(n) => i + n,
        None => b.len(),
    };
    while eol + 1 < b.len() && (b[eol + 1] == b' ' || b[eol + 1] == b'\t') {
        eol = match memchr(b'\n', &b[eol + 1..]) {
            Some(n) => eol + 1 + n,
            None => b.len(),
        };
        if eol - pos > limits.max_header_line {
            break;
        }
    }
    let end = if eol > i && eol <= b.len() && b[eol - 1] == b'\r' {
        eol - 1
    } else {
        eol
    };
    if end - pos > limits.max_header_line {
        return Err(Error::HeaderLineTooLong {
            offset: pos,
            limit: limits.max_header_line,
        });
    }
    while i < end && matches!(b[i], b' ' | b'\t' | b'\r' | b'\n') {
        i += 1;
    }
    let entry = Entry {
        name: known.unwrap_or_else(|| HeaderName::from_bytes(&b[pos..name_end])),
        src: Src::Buf,
        name_len: (name_end - pos) as u16,
        line: pos as u32,
        value: i as u32,
        end: end as u32,
    };
    Ok((entry, (eol + 1).min(b.len())))
}

/// A canonical header name at the start of `line`, followed by the colon or LWS that must end
/// it: the name and its length. Each compare is against a fixed-size literal, so it compiles to
/// a few word compares.
#[inline(always)]
fn canonical_prefix(line: &[u8]) -> Option<(HeaderName, usize)> {
    #[inline(always)]
    fn is<const N: usize>(
        line: &[u8],
        lit: &[u8; N],
        name: HeaderName,
    ) -> Option<(HeaderName, usize)> {
        match (line.first_chunk::<N>(), line.get(N)) {
            (Some(head), Some(b':' | b' ' | b'\t')) if head == lit => Some((name, N)),
            _ => None,
        }
    }
    match *line.first()? {
        b'V' => is(line, b"Via", HeaderName::Via),
        b'F' => is(line, b"From", HeaderName::From),
        b'T' => is(line, b"To", HeaderName::To),
        b'C' => match *line.get(1)? {
            b'a' => is(line, b"Call-ID", HeaderName::CallId),
            b'S' => is(line, b"CSeq", HeaderName::CSeq),
            b'o' => match line.get(8) {
                Some(b'T') => is(line, b"Content-Type", HeaderName::ContentType),
                Some(b'L') => is(line, b"Content-Length", HeaderName::ContentLength),
                _ => is(line, b"Contact", HeaderName::Contact),
            },
            _ => None,
        },
        b'M' => is(line, b"Max-Forwards", HeaderName::MaxForwards),
        b'R' => match *line.get(1)? {
            b'e' => is(line, b"Record-Route", HeaderName::RecordRoute),
            _ => is(line, b"Route", HeaderName::Route),
        },
        b'U' => is(line, b"User-Agent", HeaderName::UserAgent),
        b'E' => is(line, b"Expires", HeaderName::Expires),
        b'A' => is(line, b"Allow", HeaderName::Allow),
        b'S' => is(line, b"Supported", HeaderName::Supported),
        _ => None,
    }
}

/// `SIP/2.0`, case-insensitively for the letters (RFC 3261 §7.1; ABNF literals).
#[inline]
fn is_sip_2_0(v: &[u8]) -> bool {
    v.len() == 7 && v[..4].eq_ignore_ascii_case(b"SIP/") && &v[4..] == b"2.0"
}

/// Something shaped like a SIP version (`SIP/x.y`), used to tell 505 from 400.
fn looks_like_version(v: &[u8]) -> bool {
    v.len() > 4
        && v[..4].eq_ignore_ascii_case(b"SIP/")
        && v[4..].iter().all(|c| c.is_ascii_digit() || *c == b'.')
        && v[4..].contains(&b'.')
}

fn parse_start_line(b: &[u8], start: usize, end: usize, limits: &Limits) -> Result<Start> {
    // Trailing whitespace on the start line is tolerated (RFC 4475 trws may go either way).
    let mut end = end;
    while end > start && (b[end - 1] == b' ' || b[end - 1] == b'\t') {
        end -= 1;
    }
    let line = &b[start..end];
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        return parse_status_line(b, start, end);
    }
    let sp1 = match memchr(b' ', line) {
        Some(i) => i,
        None => return Err(Error::InvalidStartLine { offset: start }),
    };
    let sp2 = match memchr::memrchr(b' ', line) {
        Some(i) if i > sp1 => i,
        _ => return Err(Error::InvalidStartLine { offset: start }),
    };
    let method = &line[..sp1];
    if method.is_empty() || !method.iter().all(|c| TOKEN[*c as usize]) {
        return Err(Error::InvalidMethod { offset: start });
    }
    let version = &line[sp2 + 1..];
    if !is_sip_2_0(version) {
        if looks_like_version(version) {
            return Err(Error::UnsupportedVersion {
                offset: start + sp2 + 1,
            });
        }
        return Err(Error::InvalidStartLine {
            offset: start + sp2 + 1,
        });
    }
    let uri = &line[sp1 + 1..sp2];
    if uri.len() > limits.max_uri_len {
        return Err(Error::UriTooLong {
            limit: limits.max_uri_len,
        });
    }
    // The Request-URI is visible ASCII: no LWS inside it (RFC 4475 lwsruri, lwsstart).
    if uri.is_empty() || !uri.iter().all(|c| (0x21..0x7f).contains(c)) {
        return Err(Error::InvalidStartLine {
            offset: start + sp1 + 1,
        });
    }
    Ok(Start::Request {
        method: Span::buf(start, start + sp1),
        uri: Span::buf(start + sp1 + 1, start + sp2),
    })
}

fn parse_status_line(b: &[u8], start: usize, end: usize) -> Result<Start> {
    let line = &b[start..end];
    let v_end = memchr(b' ', line).unwrap_or(line.len());
    let version = &line[..v_end];
    if !is_sip_2_0(version) {
        if looks_like_version(version) {
            return Err(Error::UnsupportedVersion { offset: start });
        }
        return Err(Error::InvalidStartLine { offset: start });
    }
    let code_start = v_end + 1;
    let rest = line.get(code_start..).unwrap_or_default();
    let code_len = memchr(b' ', rest).unwrap_or(rest.len());
    let code = &rest[..code_len];
    if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) {
        return Err(Error::InvalidStatusCode {
            offset: start + code_start,
        });
    }
    let n = u16::from(code[0] - b'0') * 100
        + u16::from(code[1] - b'0') * 10
        + u16::from(code[2] - b'0');
    if !(100..=699).contains(&n) {
        return Err(Error::InvalidStatusCode {
            offset: start + code_start,
        });
    }
    let reason_start = (start + code_start + code_len + 1).min(end);
    let reason = &b[reason_start..end];
    // Reason phrases may be UTF-8 (RFC 4475 unreason); anything else is refused.
    if std::str::from_utf8(reason).is_err() || reason.iter().any(|c| *c < 0x20 && *c != b'\t') {
        return Err(Error::InvalidStartLine {
            offset: reason_start,
        });
    }
    Ok(Start::Response {
        code: n,
        reason: Span::buf(reason_start, end),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::StartLine;
    use crate::method::Method;

    fn p(s: &[u8]) -> Result<Message> {
        Message::parse(Bytes::copy_from_slice(s))
    }

    const MIN: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
To: <sip:a@b>\r\nFrom: <sip:c@d>;tag=1\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn parses_request_line_and_headers() {
        let m = p(MIN).unwrap();
        assert_eq!(m.method(), Some(Method::Options));
        assert_eq!(m.uri_str(), Some("sip:a@b"));
        assert_eq!(m.header_count(), 6);
        assert_eq!(m.header(HeaderName::CallId), Some("x"));
        assert_eq!(m.body(), b"");
    }

    #[test]
    fn skips_leading_crlf_and_accepts_bare_lf() {
        let m = p(b"\r\n\r\nSIP/2.0 200 OK\nCall-ID: y\nContent-Length: 2\n\nhi").unwrap();
        assert_eq!(m.status(), Some(200));
        assert_eq!(m.reason(), Some("OK"));
        assert_eq!(m.call_id(), Some("y"));
        assert_eq!(m.body(), b"hi");
    }

    #[test]
    fn folded_header_value_is_one_line() {
        let m = p(b"SIP/2.0 200 OK\r\nSubject: a\r\n  b\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert_eq!(m.header(HeaderName::Subject), Some("a\r\n  b"));
        assert_eq!(m.header_count(), 2);
    }

    #[test]
    fn body_rules_on_datagrams() {
        // Missing Content-Length: the rest of the datagram.
        let m = p(b"SIP/2.0 200 OK\r\nCall-ID: y\r\n\r\nabc").unwrap();
        assert_eq!(m.body(), b"abc");
        // Extra bytes are ignored.
        let m = p(b"SIP/2.0 200 OK\r\nl: 1\r\n\r\nabc").unwrap();
        assert_eq!(m.body(), b"a");
        // A shorter body is an error.
        assert_eq!(
            p(b"SIP/2.0 200 OK\r\nl: 9\r\n\r\nabc").unwrap_err(),
            Error::ContentLengthMismatch {
                declared: 9,
                actual: 3
            }
        );
        assert!(matches!(
            p(b"SIP/2.0 200 OK\r\nl: -1\r\n\r\n"),
            Err(Error::InvalidContentLength { .. })
        ));
    }

    #[test]
    fn stream_framing_requires_content_length() {
        let r = Message::parse_with(
            &b"SIP/2.0 200 OK\r\nCall-ID: y\r\n\r\n"[..],
            &Limits::default(),
            Framing::Stream,
        );
        assert_eq!(r.unwrap_err(), Error::MissingContentLength);
    }

    #[test]
    fn start_line_errors() {
        assert!(matches!(
            p(b"OPTIONS sip:a@b SIP/7.0\r\n\r\n"),
            Err(Error::UnsupportedVersion { .. })
        ));
        assert!(matches!(
            p(b"OPTIONS  sip:a@b SIP/2.0\r\n\r\n"),
            Err(Error::InvalidStartLine { .. })
        ));
        assert!(matches!(
            p(b"SIP/2.0 4294967301 big\r\n\r\n"),
            Err(Error::InvalidStatusCode { .. })
        ));
        assert!(matches!(
            p(b"SIP/2.0 700 big\r\n\r\n"),
            Err(Error::InvalidStatusCode { .. })
        ));
        assert!(matches!(
            p(b"INV(ITE sip:a@b SIP/2.0\r\n\r\n"),
            Err(Error::InvalidMethod { .. })
        ));
        assert_eq!(p(b"\r\n\r\n").unwrap_err(), Error::Empty);
        assert_eq!(
            p(b"OPTIONS sip:a@b SIP/2.0").unwrap_err(),
            Error::Incomplete
        );
    }

    #[test]
    fn header_line_errors() {
        assert!(matches!(
            p(b"SIP/2.0 200 OK\r\nNoColon\r\n\r\n"),
            Err(Error::InvalidHeaderLine { .. })
        ));
        assert!(matches!(
            p(b"SIP/2.0 200 OK\r\n: empty\r\n\r\n"),
            Err(Error::InvalidHeaderLine { .. })
        ));
    }

    #[test]
    fn limits_are_enforced() {
        let lim = Limits {
            max_headers: 2,
            ..Limits::default()
        };
        let r = Message::parse_with(MIN, &lim, Framing::Datagram);
        assert_eq!(r.unwrap_err(), Error::TooManyHeaders { limit: 2 });
        let lim = Limits {
            max_message_size: 10,
            ..Limits::default()
        };
        assert!(matches!(
            Message::parse_with(MIN, &lim, Framing::Datagram),
            Err(Error::MessageTooLarge { .. })
        ));
        let lim = Limits {
            max_header_line: 10,
            ..Limits::default()
        };
        assert!(matches!(
            Message::parse_with(MIN, &lim, Framing::Datagram),
            Err(Error::HeaderLineTooLong { .. })
        ));
        let lim = Limits {
            max_uri_len: 3,
            ..Limits::default()
        };
        assert!(matches!(
            Message::parse_with(MIN, &lim, Framing::Datagram),
            Err(Error::UriTooLong { .. })
        ));
    }

    #[test]
    fn canonical_prefix_agrees_with_the_name_table() {
        for line in [
            &b"Via: x"[..],
            b"Via : x",
            b"Via\t: x",
            b"Vias: x",
            b"Via-X: x",
            b"From: x",
            b"To :x",
            b"Tox: x",
            b"Call-ID: x",
            b"Call-IDs: x",
            b"CSeq: 1 A",
            b"Contact: x",
            b"Content-Type: x",
            b"Content-Typo: x",
            b"Content-Length: 0",
            b"Content-Lengthy: 0",
            b"Contact-X: y",
            b"Max-Forwards: 70",
            b"Record-Route: x",
            b"Route: x",
            b"Routes: x",
            b"User-Agent: x",
            b"Expires: 1",
            b"Allow: x",
            b"Supported: x",
            b"C",
            b"Co",
            b"V",
            b"Via",
        ] {
            let by_table = {
                let n = line
                    .iter()
                    .position(|c| !TOKEN[*c as usize])
                    .unwrap_or(line.len());
                HeaderName::from_bytes(&line[..n])
            };
            if let Some((name, len)) = canonical_prefix(line) {
                assert_eq!(name, by_table, "{}", String::from_utf8_lossy(line));
                assert!(matches!(line[len], b':' | b' ' | b'\t'));
            }
            let m =
                Message::parse([&b"OPTIONS sip:a@b SIP/2.0\r\n"[..], line, b"\r\n\r\n"].concat());
            if let Ok(m) = m {
                assert_eq!(m.headers().next().map(|h| h.name), Some(by_table));
            }
        }
    }

    #[test]
    fn utf8_reason_phrase_and_empty_reason() {
        let m = p("SIP/2.0 200 = ок\r\n\r\n".as_bytes()).unwrap();
        assert_eq!(
            m.start_line(),
            StartLine::Response {
                status: 200,
                reason: "= ок"
            }
        );
        let m = p(b"SIP/2.0 100 \r\n\r\n").unwrap();
        assert_eq!(m.reason(), Some(""));
    }
}
