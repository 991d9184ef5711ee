//! The message model: one shared buffer, a start line and an ordered table of header slices.
//!
//! A parsed [`Message`] keeps the bytes it was parsed from in a [`Bytes`] buffer and indexes every
//! header as offsets into it, so parsing allocates nothing for typical messages (the header table
//! is inline). Edits (push/pop Via, new headers, a new body) write their text into a second small
//! buffer; serialising copies every unchanged header line back byte for byte.

use std::fmt;

use bytes::Bytes;
use smallvec::SmallVec;

use crate::method::Method;
use crate::name::HeaderName;

/// Header lines kept inline before the table spills to the heap. 16 covers most requests
/// and responses (a REGISTER has about 10, a softphone's INVITE 12 to 20) and keeps a
/// `Message` at about 400 bytes, which every move between layers copies; a longer message
/// costs one allocation.
pub(crate) const INLINE_HEADERS: usize = 16;

/// Where a span's bytes live: the original buffer or the edit buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Src {
    Buf,
    Extra,
}

/// A byte range in one of the message's two buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) src: Src,
    pub(crate) start: u32,
    pub(crate) end: u32,
}

impl Span {
    pub(crate) fn buf(start: usize, end: usize) -> Span {
        Span {
            src: Src::Buf,
            start: start as u32,
            end: end as u32,
        }
    }
}

/// One header line: its resolved name and the offsets of the line, the name and the value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    pub(crate) name: HeaderName,
    pub(crate) src: Src,
    /// Length of the name as written, from `line`.
    pub(crate) name_len: u16,
    /// Offset of the first byte of the line.
    pub(crate) line: u32,
    /// Offset of the first byte of the value (after the colon and any LWS).
    pub(crate) value: u32,
    /// Offset just past the last byte of the line (before its CRLF), folded lines included.
    pub(crate) end: u32,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Start {
    Request { method: Span, uri: Span },
    Response { code: u16, reason: Span },
}

#[derive(Debug, Clone)]
pub(crate) enum Body {
    Span(u32, u32),
    Owned(Bytes),
}

/// The start line of a message, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLine<'a> {
    /// A Request-Line (RFC 3261 §7.1).
    Request {
        /// The method.
        method: Method<'a>,
        /// The Request-URI as written.
        uri: &'a str,
    },
    /// A Status-Line (RFC 3261 §7.2).
    Response {
        /// The status code, 100..=699.
        status: u16,
        /// The reason phrase (UTF-8, possibly empty).
        reason: &'a str,
    },
}

/// A SIP request or response backed by one shared buffer.
///
/// ```
/// use sip_core::{HeaderName, Message, Method};
///
/// let msg = Message::parse(&b"OPTIONS sip:bob@example.com SIP/2.0\r\n\
///     Via: SIP/2.0/UDP host.example.com;branch=z9hG4bK776asdhds\r\n\
///     To: <sip:bob@example.com>\r\nFrom: <sip:alice@example.com>;tag=1928301774\r\n\
///     Call-ID: a84b4c76e66710\r\nCSeq: 63104 OPTIONS\r\nMax-Forwards: 70\r\n\
///     Content-Length: 0\r\n\r\n"[..])?;
/// assert_eq!(msg.method(), Some(Method::Options));
/// assert_eq!(msg.call_id(), Some("a84b4c76e66710"));
/// assert_eq!(msg.header(HeaderName::Via), Some("SIP/2.0/UDP host.example.com;branch=z9hG4bK776asdhds"));
/// # Ok::<(), sip_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Message {
    pub(crate) buf: Bytes,
    pub(crate) extra: Vec<u8>,
    pub(crate) start: Start,
    /// The original start line, written back verbatim while the start line is unedited.
    pub(crate) start_raw: Option<(u32, u32)>,
    pub(crate) headers: SmallVec<[Entry; INLINE_HEADERS]>,
    pub(crate) body: Body,
    /// Whether anything was edited since parsing (otherwise serialising is a buffer clone).
    pub(crate) edited: bool,
    /// Whether every line of `buf` is known to end in CRLF (a built message), so that the
    /// unedited buffer is the canonical form without looking; a parsed one is checked.
    pub(crate) crlf_only: bool,
}

/// Most edit buffers (the bytes of a message's edited lines) that each thread keeps for reuse.
const SPARE_EXTRAS: usize = 32;
/// Larger edit buffers are freed, not kept.
const SPARE_EXTRA_MAX: usize = 1024;

thread_local! {
    /// Edit buffers of messages dropped on this thread, for the next messages edited here.
    /// A UDP receive loop that stamps each request's Via and answers it on the same thread
    /// (the registrar's run-to-completion path) thus edits without allocating.
    static SPARE: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// An empty edit buffer of at least `min` bytes: a spare one of this thread, or a new one.
pub(crate) fn spare_extra(min: usize) -> Vec<u8> {
    SPARE
        .try_with(|s| s.try_borrow_mut().ok()?.pop())
        .ok()
        .flatten()
        .filter(|v| v.capacity() >= min)
        .unwrap_or_else(|| Vec::with_capacity(min))
}

impl Drop for Message {
    fn drop(&mut self) {
        let cap = self.extra.capacity();
        if cap == 0 || cap > SPARE_EXTRA_MAX {
            return;
        }
        let mut v = std::mem::take(&mut self.extra);
        v.clear();
        // During thread teardown the spares may be gone: the buffer is then simply freed.
        let _ = SPARE.try_with(|s| {
            if let Ok(mut s) = s.try_borrow_mut() {
                if s.len() < SPARE_EXTRAS {
                    if s.capacity() == 0 {
                        s.reserve_exact(SPARE_EXTRAS);
                    }
                    s.push(v);
                }
            }
        });
    }
}

/// One header line as seen through [`Message::headers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderField<'a> {
    /// The resolved name ([`HeaderName::Other`] for unknown ones).
    pub name: HeaderName,
    /// The name exactly as written (`"v"`, `"MaX-fOrWaRdS"`, `"X-Custom"`).
    pub raw_name: &'a [u8],
    /// The value, LWS trimmed at both ends; folded lines are kept as written.
    pub value: &'a [u8],
}

impl<'a> HeaderField<'a> {
    /// The value as UTF-8 text, if it is.
    pub fn value_str(&self) -> Option<&'a str> {
        crate::text::to_str(self.value).ok()
    }
}

#[inline]
fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Trims SP/HT/CR/LF at the end of a value.
#[inline]
pub(crate) fn trim_end(mut v: &[u8]) -> &[u8] {
    while let [rest @ .., last] = v {
        if is_lws(*last) {
            v = rest;
        } else {
            break;
        }
    }
    v
}

impl Message {
    #[inline]
    pub(crate) fn src(&self, src: Src) -> &[u8] {
        match src {
            Src::Buf => &self.buf,
            Src::Extra => &self.extra,
        }
    }

    #[inline]
    pub(crate) fn span(&self, s: Span) -> &[u8] {
        self.src(s.src)
            .get(s.start as usize..s.end as usize)
            .unwrap_or_default()
    }

    #[inline]
    pub(crate) fn entry_value(&self, e: &Entry) -> &[u8] {
        let b = self
            .src(e.src)
            .get(e.value as usize..e.end as usize)
            .unwrap_or_default();
        trim_end(b)
    }

    #[inline]
    pub(crate) fn entry_name(&self, e: &Entry) -> &[u8] {
        let start = e.line as usize;
        self.src(e.src)
            .get(start..start + e.name_len as usize)
            .unwrap_or_default()
    }

    #[inline]
    pub(crate) fn entry_line(&self, e: &Entry) -> &[u8] {
        self.src(e.src)
            .get(e.line as usize..e.end as usize)
            .unwrap_or_default()
    }

    /// Whether this is a request.
    pub fn is_request(&self) -> bool {
        matches!(self.start, Start::Request { .. })
    }

    /// Whether this is a response.
    pub fn is_response(&self) -> bool {
        matches!(self.start, Start::Response { .. })
    }

    /// The start line.
    pub fn start_line(&self) -> StartLine<'_> {
        match self.start {
            Start::Request { method, uri } => StartLine::Request {
                method: Method::from_token(utf8(self.span(method))),
                uri: utf8(self.span(uri)),
            },
            Start::Response { code, reason } => StartLine::Response {
                status: code,
                reason: utf8(self.span(reason)),
            },
        }
    }

    /// The method of a request; `None` for a response.
    #[inline]
    pub fn method(&self) -> Option<Method<'_>> {
        match self.start {
            Start::Request { method, .. } => Some(Method::from_token(utf8(self.span(method)))),
            Start::Response { .. } => None,
        }
    }

    /// The Request-URI as written; `None` for a response. [`Message::request_uri`] parses it.
    #[inline]
    pub fn uri_str(&self) -> Option<&str> {
        match self.start {
            Start::Request { uri, .. } => Some(utf8(self.span(uri))),
            Start::Response { .. } => None,
        }
    }

    /// The status code of a response; `None` for a request.
    #[inline]
    pub fn status(&self) -> Option<u16> {
        match self.start {
            Start::Response { code, .. } => Some(code),
            Start::Request { .. } => None,
        }
    }

    /// The reason phrase of a response; `None` for a request.
    pub fn reason(&self) -> Option<&str> {
        match self.start {
            Start::Response { reason, .. } => Some(utf8(self.span(reason))),
            Start::Request { .. } => None,
        }
    }

    /// Number of header lines.
    pub fn header_count(&self) -> usize {
        self.headers.len()
    }

    /// Every header line in order.
    pub fn headers(&self) -> impl Iterator<Item = HeaderField<'_>> + '_ {
        self.headers.iter().map(move |e| HeaderField {
            name: e.name,
            raw_name: self.entry_name(e),
            value: self.entry_value(e),
        })
    }

    /// The raw values of every line of one known header, in order (`Other` matches every unknown
    /// header: use [`Message::headers_named`] for those).
    pub fn header_lines(&self, name: HeaderName) -> impl Iterator<Item = &[u8]> + '_ {
        self.headers
            .iter()
            .filter(move |e| e.name == name)
            .map(move |e| self.entry_value(e))
    }

    /// The raw values of every line whose name equals `name` (case-insensitive, compact forms
    /// resolved for known headers).
    pub fn headers_named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s [u8]> + 's {
        let resolved = HeaderName::from_bytes(name.as_bytes());
        self.headers
            .iter()
            .filter(move |e| {
                e.name == resolved
                    && (resolved != HeaderName::Other
                        || self.entry_name(e).eq_ignore_ascii_case(name.as_bytes()))
            })
            .map(move |e| self.entry_value(e))
    }

    /// The first line's value of a header, as UTF-8 text. `None` when absent or not UTF-8 (use
    /// [`Message::header_bytes`] for raw bytes).
    #[inline]
    pub fn header(&self, name: HeaderName) -> Option<&str> {
        self.header_bytes(name)
            .and_then(|v| crate::text::to_str(v).ok())
    }

    /// The first line's raw value of a header.
    #[inline]
    pub fn header_bytes(&self, name: HeaderName) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|e| e.name == name)
            .map(|e| self.entry_value(e))
    }

    /// How many lines of this header the message has.
    pub fn count(&self, name: HeaderName) -> usize {
        self.headers.iter().filter(|e| e.name == name).count()
    }

    /// Whether the message has at least one line of this header.
    pub fn has(&self, name: HeaderName) -> bool {
        self.headers.iter().any(|e| e.name == name)
    }

    /// Every comma-separated value of a header across all its lines, in order (RFC 3261 §7.3.1).
    /// Commas inside quoted strings and `<…>` do not split. Lines that are not UTF-8 are skipped.
    ///
    /// ```
    /// # use sip_core::{HeaderName, Message};
    /// let m = Message::parse(&b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b\r\n\
    ///     Via: SIP/2.0/UDP c\r\nContent-Length: 0\r\n\r\n"[..])?;
    /// assert_eq!(m.values(HeaderName::Via).count(), 3);
    /// # Ok::<(), sip_core::Error>(())
    /// ```
    pub fn values(&self, name: HeaderName) -> Values<'_> {
        Values {
            msg: self,
            name,
            next_entry: 0,
            line: crate::text::split_values(""),
        }
    }

    /// [`values`](Self::values) starting at header line `start` (the name's first line, known
    /// to the caller): the lines before it are not looked at.
    pub(crate) fn values_from(&self, name: HeaderName, start: usize) -> Values<'_> {
        Values {
            msg: self,
            name,
            next_entry: start,
            line: crate::text::split_values(""),
        }
    }

    /// The Call-ID.
    #[inline]
    pub fn call_id(&self) -> Option<&str> {
        self.header(HeaderName::CallId)
    }

    /// The body (empty when there is none).
    #[inline]
    pub fn body(&self) -> &[u8] {
        match &self.body {
            Body::Span(s, e) => self.buf.get(*s as usize..*e as usize).unwrap_or_default(),
            Body::Owned(b) => b,
        }
    }

    /// The body as a cheap [`Bytes`] handle sharing the message buffer.
    pub fn body_bytes(&self) -> Bytes {
        match &self.body {
            Body::Span(s, e) => self.buf.slice(*s as usize..*e as usize),
            Body::Owned(b) => b.clone(),
        }
    }

    /// The buffer the message was parsed from (exactly the message's bytes).
    pub fn source(&self) -> &Bytes {
        &self.buf
    }

    /// Whether the message was changed since it was parsed or built.
    pub fn is_edited(&self) -> bool {
        self.edited
    }
}

/// The comma-separated values of one header across its lines: see [`Message::values`].
#[derive(Debug, Clone)]
pub struct Values<'m> {
    msg: &'m Message,
    name: HeaderName,
    /// Index of the first header entry not looked at yet.
    next_entry: usize,
    /// What is left of the current line.
    line: crate::text::SplitValues<'m>,
}

impl<'m> Iterator for Values<'m> {
    type Item = &'m str;

    fn next(&mut self) -> Option<&'m str> {
        loop {
            if let Some(v) = self.line.next() {
                return Some(v);
            }
            let rest = self.msg.headers.get(self.next_entry..)?;
            let k = rest.iter().position(|e| e.name == self.name)?;
            self.next_entry += k + 1;
            match crate::text::line_text(self.msg.entry_value(&rest[k])) {
                (None, _) => {}
                // One value (the usual case): no splitting.
                (Some(text), false) => {
                    let v = crate::text::trim_lws(text);
                    if !v.is_empty() {
                        return Some(v);
                    }
                }
                (Some(text), true) => self.line = crate::text::split_values(text),
            }
        }
    }
}

/// Spans handed to `utf8` were validated as UTF-8 (or ASCII) by the parser or the editor.
#[inline]
pub(crate) fn utf8(b: &[u8]) -> &str {
    crate::text::to_str(b).unwrap_or_default()
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Message");
        d.field("start_line", &self.start_line());
        let hs: Vec<(String, String)> = self
            .headers()
            .map(|h| {
                (
                    String::from_utf8_lossy(h.raw_name).into_owned(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        d.field("headers", &hs);
        d.field("body_len", &self.body().len());
        d.finish()
    }
}

/// Two messages are equal when they serialise to the same start line, the same header names
/// (resolved) and values, and the same body.
impl PartialEq for Message {
    fn eq(&self, other: &Self) -> bool {
        self.start_line() == other.start_line()
            && self.headers.len() == other.headers.len()
            && self
                .headers()
                .zip(other.headers())
                .all(|(a, b)| a.name == b.name && a.value == b.value)
            && self.body() == other.body()
    }
}
