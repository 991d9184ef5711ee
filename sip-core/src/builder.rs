//! Building requests and responses (RFC 3261 §8.1.1, §8.2.6).
//!
//! A builder writes the wire form once and parses it, so a built message is indexed exactly
//! like a received one and every edit and accessor works the same on both.

use std::cell::RefCell;

use bytes::{BufMut, Bytes, BytesMut};
use smallvec::SmallVec;

use crate::error::{Error, Result};
use crate::message::{Body, Entry, Message, Span, Src, Start};
use crate::method::Method;
use crate::name::HeaderName;
use crate::net::Transport;
use crate::random::IdGenerator;

/// The default reason phrase of a status code (RFC 3261 §21 and companions).
///
/// ```
/// assert_eq!(sip_core::builder::reason_phrase(486), "Busy Here");
/// assert_eq!(sip_core::builder::reason_phrase(299), "");
/// ```
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        199 => "Early Dialog Terminated",
        200 => "OK",
        202 => "Accepted",
        204 => "No Notification",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        305 => "Use Proxy",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        412 => "Conditional Request Failed",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        421 => "Extension Required",
        422 => "Session Interval Too Small",
        423 => "Interval Too Brief",
        428 => "Use Identity Header",
        429 => "Provide Referrer Identity",
        430 => "Flow Failed",
        439 => "First Hop Lacks Outbound Support",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        489 => "Bad Event",
        491 => "Request Pending",
        493 => "Undecipherable",
        494 => "Security Agreement Required",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        555 => "Push Notification Service Not Supported",
        580 => "Precondition Failure",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        607 => "Unwanted",
        608 => "Rejected",
        _ => "",
    }
}

fn push_line(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn finish(mut out: Vec<u8>, headers: &[(String, String)], body: &Bytes) -> Result<Message> {
    for (n, v) in headers {
        push_line(&mut out, n, v);
    }
    push_line(&mut out, "Content-Length", &body.len().to_string());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    let msg = Message::parse(Bytes::from(out))?;
    // Every name and value given must have survived as one header line each (no injection).
    if msg.header_count() != headers.len() + 1 {
        return Err(Error::Syntax {
            what: "header value (line break)",
            offset: 0,
        });
    }
    Ok(msg)
}

/// Adds a checked header line to a builder's list, remembering the first error; Content-Length
/// is skipped (the builders compute it).
fn push_header(
    headers: &mut Vec<(String, String)>,
    error: &mut Option<Error>,
    name: &str,
    value: &str,
) {
    if let Err(e) = check_line(name, value) {
        error.get_or_insert(e);
    }
    if HeaderName::from_bytes(name.as_bytes()) != HeaderName::ContentLength {
        headers.push((name.to_owned(), value.to_owned()));
    }
}

fn check_line(name: &str, value: &str) -> Result<()> {
    if name.is_empty() || !name.bytes().all(|c| crate::parser::TOKEN[c as usize]) {
        return Err(Error::Syntax {
            what: "header name",
            offset: 0,
        });
    }
    if value.bytes().any(|c| c == b'\r' || c == b'\n' || c == 0) {
        return Err(Error::Syntax {
            what: "header value (line break)",
            offset: 0,
        });
    }
    Ok(())
}

/// Builds a request. Max-Forwards 70 is added unless set (RFC 3261 §8.1.1.6), and
/// Content-Length is always computed.
///
/// ```
/// use sip_core::{builder::RequestBuilder, HeaderName, Method};
/// let req = RequestBuilder::new(Method::Options, "sip:bob@example.com")
///     .header("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc")
///     .header("From", "<sip:alice@example.com>;tag=88sja8x")
///     .header("To", "<sip:bob@example.com>")
///     .header("Call-ID", "987asjd97y7atg")
///     .header("CSeq", "986759 OPTIONS")
///     .build()?;
/// assert_eq!(req.header(HeaderName::MaxForwards), Some("70"));
/// assert_eq!(req.header(HeaderName::ContentLength), Some("0"));
/// # Ok::<(), sip_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct RequestBuilder {
    method: String,
    uri: String,
    headers: Vec<(String, String)>,
    body: Bytes,
    error: Option<Error>,
}

impl RequestBuilder {
    /// A request with this method and Request-URI.
    pub fn new(method: Method<'_>, uri: &str) -> RequestBuilder {
        RequestBuilder {
            method: method.as_str().to_owned(),
            uri: uri.to_owned(),
            headers: Vec::new(),
            body: Bytes::new(),
            error: None,
        }
    }

    /// Adds a header line (in order). Content-Length is ignored: it is computed.
    pub fn header(mut self, name: &str, value: impl AsRef<str>) -> RequestBuilder {
        push_header(&mut self.headers, &mut self.error, name, value.as_ref());
        self
    }

    /// Sets the top Via (RFC 3261 §8.1.1.7): `SIP/2.0/{transport} {sent_by};branch={branch}`,
    /// with `rport` (RFC 3581) when asked.
    pub fn via(
        self,
        transport: Transport,
        sent_by: &str,
        branch: &str,
        rport: bool,
    ) -> RequestBuilder {
        let rport = if rport { ";rport" } else { "" };
        self.header(
            "Via",
            format!("SIP/2.0/{transport} {sent_by}{rport};branch={branch}"),
        )
    }

    /// Sets From (RFC 3261 §8.1.1.3): an optional display name, the URI and the tag.
    pub fn from_addr(self, display: Option<&str>, uri: &str, tag: &str) -> RequestBuilder {
        let value = format!("{};tag={tag}", name_addr(display, uri));
        self.header("From", value)
    }

    /// Sets To (RFC 3261 §8.1.1.2): an optional display name, the URI and, inside a dialog,
    /// the remote tag.
    pub fn to_addr(self, display: Option<&str>, uri: &str, tag: Option<&str>) -> RequestBuilder {
        let mut value = name_addr(display, uri);
        if let Some(tag) = tag {
            value.push_str(";tag=");
            value.push_str(tag);
        }
        self.header("To", value)
    }

    /// Sets Call-ID (RFC 3261 §8.1.1.4).
    pub fn call_id(self, call_id: &str) -> RequestBuilder {
        self.header("Call-ID", call_id)
    }

    /// Sets CSeq (RFC 3261 §8.1.1.5) from its number and the request's method.
    pub fn cseq(self, seq: u32) -> RequestBuilder {
        let method = self.method.clone();
        self.header("CSeq", format!("{seq} {method}"))
    }

    /// Sets Max-Forwards (RFC 3261 §8.1.1.6; 70 when not set).
    pub fn max_forwards(self, hops: u8) -> RequestBuilder {
        self.header("Max-Forwards", hops.to_string())
    }

    /// Adds a Contact with this URI (RFC 3261 §8.1.1.8), in angle brackets.
    pub fn contact(self, uri: &str) -> RequestBuilder {
        self.header("Contact", format!("<{uri}>"))
    }

    /// Adds a Route (RFC 3261 §8.1.1.1, §12.2.1.1), in angle brackets unless `route` already
    /// is a name-addr.
    pub fn route(self, route: &str) -> RequestBuilder {
        if route.trim_start().starts_with('<') || route.contains('<') {
            self.header("Route", route)
        } else {
            self.header("Route", format!("<{route}>"))
        }
    }

    /// Sets the body with its Content-Type.
    pub fn body(mut self, content_type: &str, body: impl Into<Bytes>) -> RequestBuilder {
        self = self.header("Content-Type", content_type);
        self.body = body.into();
        self
    }

    /// Writes and parses the request.
    pub fn build(self) -> Result<Message> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let mut out = Vec::with_capacity(256 + self.body.len());
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.uri.as_bytes());
        out.extend_from_slice(b" SIP/2.0\r\n");
        let mut headers = self.headers;
        if !headers
            .iter()
            .any(|(n, _)| HeaderName::from_bytes(n.as_bytes()) == HeaderName::MaxForwards)
        {
            headers.push(("Max-Forwards".to_owned(), "70".to_owned()));
        }
        let msg = finish(out, &headers, &self.body)?;
        if !msg.is_request() {
            return Err(Error::InvalidStartLine { offset: 0 });
        }
        Ok(msg)
    }
}

/// `"display" <uri>` or `<uri>`.
fn name_addr(display: Option<&str>, uri: &str) -> String {
    match display {
        Some(d) => format!(
            "\"{}\" <{uri}>",
            d.replace('\\', "\\\\").replace('"', "\\\"")
        ),
        None => format!("<{uri}>"),
    }
}

/// Builds a response to a request (RFC 3261 §8.2.6): Via lines, From, To, Call-ID and CSeq are
/// copied; a To-tag is added to every response but 100 when the request's To has none.
///
/// ```
/// use sip_core::{HeaderName, Message};
/// let req = Message::parse(&b"INVITE sip:bob@b SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\n\
///     From: <sip:alice@a>;tag=1\r\nTo: <sip:bob@b>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n\
///     Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"[..])?;
/// let resp = req.response(486).to_tag("xyz").build()?;
/// assert_eq!(resp.status(), Some(486));
/// assert_eq!(resp.reason(), Some("Busy Here"));
/// assert_eq!(resp.header(HeaderName::To), Some("<sip:bob@b>;tag=xyz"));
/// # Ok::<(), sip_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ResponseBuilder {
    status: u16,
    reason: std::borrow::Cow<'static, str>,
    /// The request's buffer (shared), where most copied values are read from.
    src: Bytes,
    /// Header lines copied from the request: name, and where the value is (offsets into
    /// `src`, or into the scratch buffer for a value the request holds elsewhere, such as a
    /// Via the transport stamped). Small, because the builder moves at every call.
    copied: smallvec::SmallVec<[Copied; 8]>,
    /// Where To goes among `copied` (right after From, where most stacks expect it).
    to_at: usize,
    to: Option<Copied>,
    to_has_tag: bool,
    to_tag: Option<String>,
    /// Header lines added by the caller, already written as `Name: value\r\n` and indexed
    /// (boxed: the builder moves at every call, the box is the thread's own).
    extra: ScratchBox,
    body: Bytes,
    error: Option<Error>,
}

/// The words of a [`ResponseBuilder::request_digest`], handed out in turn (then zeros: a tag
/// takes 96 bits).
struct TagDigest([u64; 2], usize);

impl crate::random::RandomSource for TagDigest {
    fn next_u64(&mut self) -> u64 {
        let w = self.0.get(self.1).copied().unwrap_or(0);
        self.1 += 1;
        w
    }
}

/// A value copied from the request into its response, as offsets.
#[derive(Debug, Clone, Copy)]
struct Copied {
    name: HeaderName,
    /// In the builder's scratch `copied` buffer rather than the request's buffer.
    owned: bool,
    start: u32,
    end: u32,
}

/// Where `s` is: offsets into `buf` when it lies inside it (a header value of a parsed
/// message), else a copy appended to `owned` (an edited header's value lives elsewhere).
fn locate(name: HeaderName, buf: &Bytes, owned: &mut Vec<u8>, s: &[u8]) -> Copied {
    let start = buf.as_ptr() as usize;
    let at = s.as_ptr() as usize;
    if at >= start && at + s.len() <= start + buf.len() {
        let off = at - start;
        Copied {
            name,
            owned: false,
            start: off as u32,
            end: (off + s.len()) as u32,
        }
    } else {
        let off = owned.len();
        owned.extend_from_slice(s);
        Copied {
            name,
            owned: true,
            start: off as u32,
            end: owned.len() as u32,
        }
    }
}

/// The decimal digits of `n`, written into `buf` (no allocation, no formatter).
///
/// ```
/// let mut buf = [0u8; 20];
/// assert_eq!(sip_core::builder::decimal_digits(3600, &mut buf), b"3600");
/// ```
pub fn decimal_digits(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Appends the decimal digits of `n` (no allocation).
fn push_decimal(out: &mut impl BufMut, n: usize) {
    out.put_slice(decimal_digits(n as u64, &mut [0u8; 20]));
}

/// Length of the To-tag a response gets when the caller gives none (as
/// [`IdGenerator::tag`]).
const GENERATED_TAG_LEN: usize = 16;

/// Bytes of the slab each thread writes the responses it builds into. A response's buffer is
/// a slice of the slab (shared, reference-counted), so a thread allocates one slab per this
/// many bytes of responses instead of one buffer per response; a slab is freed when the last
/// response written into it is dropped. Responses larger than a quarter of it get their own
/// buffer. Small, so that a response kept long (a transaction's final answer, a dialog's 2xx)
/// holds at most this much memory of answers that are gone.
pub const RESPONSE_SLAB: usize = 16 * 1024;

/// Largest `extra` buffer a thread keeps for its next response.
const SCRATCH_KEEP: usize = 4096;

/// The lines a caller adds to a response, written and indexed as they come (offsets from the
/// start of `bytes`), so that `build` copies them in one piece and indexes them without a scan.
/// Each thread keeps one for its next response: no allocation per response.
#[derive(Debug, Clone, Default)]
struct Scratch {
    bytes: Vec<u8>,
    lines: Vec<Entry>,
    /// Copied values the request does not hold in its buffer.
    copied: Vec<u8>,
}

impl Scratch {
    /// Writes `name: <value>\r\n` with the value from `write`, and indexes it; `false` (and
    /// nothing written) when the value holds a CR, LF or NUL.
    fn push(&mut self, name: HeaderName, name_str: &str, write: impl FnOnce(&mut Vec<u8>)) -> bool {
        let line = self.bytes.len();
        self.bytes.extend_from_slice(name_str.as_bytes());
        self.bytes.extend_from_slice(b": ");
        let value_at = self.bytes.len();
        write(&mut self.bytes);
        let value = &self.bytes[value_at..];
        if memchr::memchr3(b'\r', b'\n', 0, value).is_some() {
            self.bytes.truncate(line);
            return false;
        }
        // As the parser reads a value: leading blanks are not part of it.
        let lead = value
            .iter()
            .take_while(|&&c| c == b' ' || c == b'\t')
            .count();
        self.lines.push(entry(
            name,
            line,
            name_str.len(),
            value_at + lead,
            self.bytes.len(),
        ));
        self.bytes.extend_from_slice(b"\r\n");
        true
    }
}

/// The builder's [`Scratch`], taken from the thread and given back when the builder drops.
#[derive(Debug, Clone)]
struct ScratchBox(Option<Box<Scratch>>);

static NO_SCRATCH: Scratch = Scratch {
    bytes: Vec::new(),
    lines: Vec::new(),
    copied: Vec::new(),
};

impl std::ops::Deref for ScratchBox {
    type Target = Scratch;
    fn deref(&self) -> &Scratch {
        self.0.as_deref().unwrap_or(&NO_SCRATCH)
    }
}

impl std::ops::DerefMut for ScratchBox {
    fn deref_mut(&mut self) -> &mut Scratch {
        self.0.get_or_insert_with(Box::default)
    }
}

thread_local! {
    static SLAB: RefCell<BytesMut> = RefCell::new(BytesMut::new());
    static SCRATCH: RefCell<Option<Box<Scratch>>> = const { RefCell::new(None) };
}

/// A buffer of at least `len` bytes of room for one response: the rest of this thread's
/// slab, a new slab, or (for a large response) a buffer of its own.
fn slab_for(len: usize) -> BytesMut {
    if len > RESPONSE_SLAB / 4 {
        return BytesMut::with_capacity(len);
    }
    SLAB.with(|slab| {
        let mut slab = slab.borrow_mut();
        if slab.capacity() < len {
            *slab = BytesMut::with_capacity(RESPONSE_SLAB);
        }
        // An empty view of the slab's free room: written, then frozen by `slab_done`.
        slab.split_off(0)
    })
}

/// The written response as shared bytes; the slab's free room past it goes back to the
/// thread for the next response.
fn slab_done(mut out: BytesMut) -> Bytes {
    let rest = out.split_off(out.len());
    if rest.capacity() > 0 {
        SLAB.with(|slab| {
            let mut slab = slab.borrow_mut();
            if slab.capacity() < rest.capacity() {
                *slab = rest;
            }
        });
    }
    out.freeze()
}

/// This thread's spare `extra` buffers (empty, with their capacity), or new ones.
fn take_scratch() -> ScratchBox {
    ScratchBox(Some(
        SCRATCH.with(|s| s.borrow_mut().take()).unwrap_or_else(|| {
            Box::new(Scratch {
                bytes: Vec::with_capacity(192),
                lines: Vec::with_capacity(8),
                copied: Vec::new(),
            })
        }),
    ))
}

impl Drop for ResponseBuilder {
    fn drop(&mut self) {
        let Some(mut v) = self.extra.0.take() else {
            return;
        };
        if v.bytes.capacity() > 0
            && v.bytes.capacity() <= SCRATCH_KEEP
            && v.copied.capacity() <= SCRATCH_KEEP
            && v.lines.capacity() <= 64
        {
            v.bytes.clear();
            v.lines.clear();
            v.copied.clear();
            SCRATCH.with(|s| {
                let mut s = s.borrow_mut();
                if s.as_ref()
                    .is_none_or(|s| s.bytes.capacity() < v.bytes.capacity())
                {
                    *s = Some(v);
                }
            });
        }
    }
}

impl Message {
    /// Starts a response to this request (see [`ResponseBuilder`]).
    pub fn response(&self, status: u16) -> ResponseBuilder {
        let mut copied = smallvec::SmallVec::new();
        let mut to = None;
        let mut to_at = 0;
        let mut to_has_tag = false;
        let src = self.source();
        // A buffer this thread used before (see `Scratch`): no allocation per response.
        let mut extra = take_scratch();
        for h in self.headers() {
            let Some(v) = h.value_str() else { continue };
            let keep = match h.name {
                HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => true,
                // RFC 3261 §8.2.6.1: a 100 echoes Timestamp.
                HeaderName::Timestamp => status == 100,
                HeaderName::To => {
                    // A scan, not a parse: the To was checked when the request arrived.
                    to_has_tag = crate::addr::tag_param(v).is_some();
                    to = Some(locate(h.name, src, &mut extra.copied, v.as_bytes()));
                    false
                }
                _ => false,
            };
            if keep {
                copied.push(locate(h.name, src, &mut extra.copied, v.as_bytes()));
                if h.name == HeaderName::From {
                    to_at = copied.len();
                }
            }
        }
        if to_at == 0 {
            to_at = copied.len();
        }
        let error = if (100..=699).contains(&status) {
            None
        } else {
            Some(Error::InvalidStatusCode { offset: 0 })
        };
        ResponseBuilder {
            status,
            reason: std::borrow::Cow::Borrowed(reason_phrase(status)),
            src: src.clone(),
            copied,
            to_at,
            to,
            to_has_tag,
            to_tag: None,
            extra,
            body: Bytes::new(),
            error,
        }
    }
}

impl ResponseBuilder {
    /// Overrides the reason phrase.
    #[inline]
    pub fn reason(mut self, reason: &str) -> ResponseBuilder {
        if reason.bytes().any(|c| c < 0x20 && c != b'\t') {
            self.error
                .get_or_insert(Error::InvalidStartLine { offset: 0 });
        }
        self.reason = std::borrow::Cow::Owned(reason.to_owned());
        self
    }

    /// The To-tag to add (when the request's To has none). Without it a random tag is
    /// generated for every status but 100.
    #[inline]
    pub fn to_tag(mut self, tag: &str) -> ResponseBuilder {
        self.to_tag = Some(tag.to_owned());
        self
    }

    /// Adds a header line after the copied ones.
    #[inline]
    pub fn header(self, name: &str, value: impl AsRef<str>) -> ResponseBuilder {
        let value = value.as_ref();
        self.header_with(name, |out| out.extend_from_slice(value.as_bytes()))
    }

    /// Adds a header line whose value `write` appends to the response's buffer (no `String`
    /// in between). The value is checked as [`header`](Self::header) checks it: a CR, LF or
    /// NUL in it fails [`build`](Self::build).
    ///
    /// ```
    /// use sip_core::{HeaderName, Message};
    /// let req = Message::parse(&b"REGISTER sip:b SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\n\
    ///     From: <sip:alice@b>;tag=1\r\nTo: <sip:alice@b>\r\nCall-ID: c1\r\nCSeq: 1 REGISTER\r\n\
    ///     Content-Length: 0\r\n\r\n"[..])?;
    /// let resp = req
    ///     .response(200)
    ///     .header_with("Contact", |out| out.extend_from_slice(b"<sip:alice@192.0.2.1>"))
    ///     .build()?;
    /// assert_eq!(resp.header(HeaderName::Contact), Some("<sip:alice@192.0.2.1>"));
    /// # Ok::<(), sip_core::Error>(())
    /// ```
    #[inline]
    pub fn header_with(mut self, name: &str, write: impl FnOnce(&mut Vec<u8>)) -> ResponseBuilder {
        if name.is_empty() || !name.bytes().all(|c| crate::parser::TOKEN[c as usize]) {
            self.error.get_or_insert(Error::Syntax {
                what: "header name",
                offset: 0,
            });
            return self;
        }
        let id = HeaderName::from_bytes(name.as_bytes());
        if id == HeaderName::ContentLength {
            return self;
        }
        if !self.extra.push(id, name, write) {
            self.error.get_or_insert(Error::Syntax {
                what: "header value (line break)",
                offset: 0,
            });
        }
        self
    }

    /// Adds a header line whose value is formatted straight into the response (no `String`
    /// in between); the value is checked as [`header`](Self::header) checks it.
    ///
    /// ```
    /// use sip_core::{HeaderName, Message};
    /// let req = Message::parse(&b"REGISTER sip:b SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\n\
    ///     From: <sip:alice@b>;tag=1\r\nTo: <sip:alice@b>\r\nCall-ID: c1\r\nCSeq: 1 REGISTER\r\n\
    ///     Content-Length: 0\r\n\r\n"[..])?;
    /// let resp = req
    ///     .response(200)
    ///     .header_fmt("Contact", format_args!("<sip:alice@{}>;expires={}", "192.0.2.1", 3600))
    ///     .build()?;
    /// assert_eq!(resp.header(HeaderName::Contact), Some("<sip:alice@192.0.2.1>;expires=3600"));
    /// # Ok::<(), sip_core::Error>(())
    /// ```
    #[inline]
    pub fn header_fmt(self, name: &str, value: std::fmt::Arguments<'_>) -> ResponseBuilder {
        use std::io::Write as _;
        self.header_with(name, |out| {
            // Writing into a Vec cannot fail; a Display impl that errs leaves a NUL, refused
            // like a line break.
            if out.write_fmt(value).is_err() {
                out.push(0);
            }
        })
    }

    /// Sets the body with its Content-Type.
    #[inline]
    pub fn body(mut self, content_type: &str, body: impl Into<Bytes>) -> ResponseBuilder {
        self = self.header("Content-Type", content_type);
        self.body = body.into();
        self
    }

    /// The bytes of a copied value.
    fn value(&self, c: Copied) -> &[u8] {
        let buf: &[u8] = if c.owned {
            &self.extra.copied
        } else {
            &self.src
        };
        buf.get(c.start as usize..c.end as usize)
            .unwrap_or_default()
    }

    /// What a To tag the caller did not choose is made from: a keyed hash (SipHash under a key
    /// drawn from the OS once per process) of the request's top Via line, From, Call-ID and
    /// CSeq as the response copies them. The same request, retransmitted, gets the same tag,
    /// as RFC 3261 §8.2.7 asks of a stateless UAS; other requests get tags nobody can
    /// predict without the key (§19.3). Requests that differ only in other headers are the
    /// same request. Two responses to one request that must differ in tag (separate
    /// dialogs) choose theirs ([`to_tag`](Self::to_tag)), as a dialog-forming UAS does.
    fn request_digest(&self) -> TagDigest {
        use std::hash::{BuildHasher, Hasher};
        static KEY: std::sync::LazyLock<std::hash::RandomState> =
            std::sync::LazyLock::new(std::hash::RandomState::new);
        let mut h = KEY.build_hasher();
        let mut via = false;
        for c in &self.copied {
            let wanted = match c.name {
                HeaderName::Via => !std::mem::replace(&mut via, true),
                HeaderName::From | HeaderName::CallId | HeaderName::CSeq => true,
                _ => false,
            };
            if wanted {
                h.write_u8(c.name as u8);
                h.write(self.value(*c));
            }
        }
        let first = h.finish();
        h.write_u8(0xff);
        TagDigest([first, h.finish()], 0)
    }

    /// Writes the response and indexes it as it goes (no parse). The bytes go into a slab
    /// this thread shares among the responses it builds (see [`RESPONSE_SLAB`]), so building
    /// a typical response allocates nothing.
    pub fn build(mut self) -> Result<Message> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let with_tag = self.to.is_some() && !self.to_has_tag && self.status != 100;
        let mut generated = [0u8; GENERATED_TAG_LEN];
        let tag: &str = match (&self.to_tag, with_tag) {
            (_, false) => "",
            (Some(t), true) => t,
            (None, true) => {
                IdGenerator::new(self.request_digest()).fill_alnum(&mut generated);
                // Alphanumeric ASCII only.
                std::str::from_utf8(&generated).unwrap_or_default()
            }
        };
        if !tag.bytes().all(|c| crate::parser::TOKEN[c as usize]) {
            return Err(Error::Syntax {
                what: "To tag",
                offset: 0,
            });
        }
        let copied_len: usize = self
            .copied
            .iter()
            .map(|c| c.name.canonical().map_or(9, str::len) + (c.end - c.start) as usize + 4)
            .sum();
        let to_len = self
            .to
            .as_ref()
            .map_or(0, |t| (t.end - t.start) as usize + 8 + tag.len() + 5);
        let len = 16
            + self.reason.len()
            + copied_len
            + to_len
            + self.extra.bytes.len()
            + 24
            + self.body.len();
        let mut out = slab_for(len);
        out.extend_from_slice(b"SIP/2.0 ");
        push_decimal(&mut out, usize::from(self.status));
        out.put_u8(b' ');
        let reason_at = out.len();
        out.extend_from_slice(self.reason.as_bytes());
        let start = Start::Response {
            code: self.status,
            reason: Span::buf(reason_at, out.len()),
        };
        let start_raw = Some((0, out.len() as u32));
        out.extend_from_slice(b"\r\n");
        // The message is indexed as it is written, not parsed again: every line is either a
        // value of a parsed message (one logical line), the To line, or a line that `header`
        // checked (a token name, no CR, LF or NUL in the value).
        let mut headers: SmallVec<[Entry; crate::message::INLINE_HEADERS]> = SmallVec::new();
        let to = self.to.map(|t| self.value(t));
        for (i, c) in self.copied.iter().enumerate() {
            if i == self.to_at {
                push_to(&mut out, &mut headers, to, with_tag, tag);
            }
            // Only known names are copied (Via, From, Call-ID, CSeq, Timestamp).
            let name = c.name.canonical().unwrap_or("X-Unknown");
            let line = out.len();
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            let value = out.len();
            out.extend_from_slice(self.value(*c));
            headers.push(entry(c.name, line, name.len(), value, out.len()));
            out.extend_from_slice(b"\r\n");
        }
        if self.to_at >= self.copied.len() {
            push_to(&mut out, &mut headers, to, with_tag, tag);
        }
        let extra_at = out.len() as u32;
        out.extend_from_slice(&self.extra.bytes);
        headers.extend(self.extra.lines.iter().map(|e| Entry {
            line: e.line + extra_at,
            value: e.value + extra_at,
            end: e.end + extra_at,
            ..*e
        }));
        let line = out.len();
        out.extend_from_slice(b"Content-Length: ");
        let value = out.len();
        push_decimal(&mut out, self.body.len());
        headers.push(entry(HeaderName::ContentLength, line, 14, value, out.len()));
        out.extend_from_slice(b"\r\n\r\n");
        let body_at = out.len();
        out.extend_from_slice(&self.body);
        let body = Body::Span(body_at as u32, out.len() as u32);
        Ok(Message {
            buf: slab_done(out),
            extra: Vec::new(),
            start,
            start_raw,
            headers,
            body,
            edited: false,
            crlf_only: true,
        })
    }
}

/// The index entry of the header line at `line` whose name is `name_len` bytes long and whose
/// value runs from `value` to `end`.
fn entry(name: HeaderName, line: usize, name_len: usize, value: usize, end: usize) -> Entry {
    Entry {
        name,
        src: Src::Buf,
        name_len: name_len as u16,
        line: line as u32,
        value: value as u32,
        end: end as u32,
    }
}

/// Writes and indexes the To line (with `;tag=` when asked).
fn push_to(
    out: &mut BytesMut,
    headers: &mut SmallVec<[Entry; crate::message::INLINE_HEADERS]>,
    to: Option<&[u8]>,
    with_tag: bool,
    tag: &str,
) {
    let Some(to) = to else {
        return;
    };
    let line = out.len();
    out.extend_from_slice(b"To: ");
    out.extend_from_slice(to);
    if with_tag {
        out.extend_from_slice(b";tag=");
        out.extend_from_slice(tag.as_bytes());
    }
    headers.push(entry(HeaderName::To, line, 2, line + 4, out.len()));
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 3261 §8.2.7: a stateless UAS gives a retransmitted request the To tag it gave the
    /// original; other requests (another CSeq, branch, Call-ID or From tag) get other tags.
    #[test]
    fn a_generated_to_tag_is_the_same_for_the_same_request_only() {
        let req = |call_id: &str, from_tag: &str, cseq: u32, branch: &str, extra: &str| {
            let raw = format!(
                "OPTIONS sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch={branch}\r\n\
                 From: <sip:a@x>;tag={from_tag}\r\nTo: <sip:b@x>\r\nCall-ID: {call_id}\r\n\
                 CSeq: {cseq} OPTIONS\r\n{extra}Content-Length: 0\r\n\r\n"
            );
            Message::parse(raw.into_bytes()).unwrap()
        };
        let tag = |m: &Message, status: u16| {
            let r = m.response(status).build().unwrap();
            r.to().unwrap().tag().unwrap().to_owned()
        };
        let original = req("c1", "f1", 1, "z9hG4bK1", "");
        let t = tag(&original, 200);
        assert_eq!(t.len(), GENERATED_TAG_LEN);
        assert!(t.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(tag(&req("c1", "f1", 1, "z9hG4bK1", ""), 200), t);
        assert_eq!(
            tag(&req("c1", "f1", 1, "z9hG4bK1", "X-Other: 1\r\n"), 200),
            t
        );
        assert_eq!(tag(&original, 486), t, "any answer to that request");
        for other in [
            req("c2", "f1", 1, "z9hG4bK1", ""),
            req("c1", "f2", 1, "z9hG4bK1", ""),
            req("c1", "f1", 2, "z9hG4bK1", ""),
            req("c1", "f1", 1, "z9hG4bK2", ""),
        ] {
            assert_ne!(tag(&other, 200), t);
        }
        // A tag the caller chose wins; 100 Trying has none.
        let chosen = original.response(200).to_tag("mine").build().unwrap();
        assert_eq!(chosen.to().unwrap().tag(), Some("mine"));
        let trying = original.response(100).build().unwrap();
        assert_eq!(trying.to().unwrap().tag(), None);
    }

    #[test]
    fn typed_setters_build_a_request() {
        let req = RequestBuilder::new(Method::Invite, "sip:bob@example.com")
            .via(Transport::Tcp, "192.0.2.1:5060", "z9hG4bKtyped", true)
            .from_addr(Some("Alice \"A\""), "sip:alice@example.com", "t1")
            .to_addr(None, "sip:bob@example.com", None)
            .call_id("c1@x")
            .cseq(7)
            .max_forwards(10)
            .contact("sip:alice@192.0.2.1:5060;transport=tcp")
            .route("sip:p1.example.com;lr")
            .route("<sip:p2.example.com;lr>")
            .build()
            .unwrap();
        assert_eq!(req.via().unwrap().branch(), Some("z9hG4bKtyped"));
        assert_eq!(req.via().unwrap().transport(), "TCP");
        assert_eq!(req.from().unwrap().tag(), Some("t1"));
        assert_eq!(
            req.from().unwrap().display_name_decoded().unwrap(),
            "Alice \"A\""
        );
        assert_eq!(req.to().unwrap().tag(), None);
        assert_eq!(req.cseq().unwrap().seq, 7);
        assert_eq!(req.cseq().unwrap().method, Method::Invite);
        assert_eq!(req.header(HeaderName::MaxForwards), Some("10"));
        assert_eq!(req.call_id(), Some("c1@x"));
        let routes: Vec<String> = req
            .routes()
            .map(|r| r.unwrap().uri_str().to_owned())
            .collect();
        assert_eq!(routes, ["sip:p1.example.com;lr", "sip:p2.example.com;lr"]);
    }

    fn invite() -> Message {
        Message::parse(
            &b"INVITE sip:bob@b SIP/2.0\r\nVia: SIP/2.0/UDP p;branch=z9hG4bK2\r\n\
Via: SIP/2.0/UDP a;branch=z9hG4bK1;received=192.0.2.1\r\nFrom: \"A\" <sip:alice@a>;tag=1\r\n\
To: <sip:bob@b>\r\nCall-ID: c1\r\nCSeq: 7 INVITE\r\nTimestamp: 54\r\nMax-Forwards: 70\r\n\
Contact: <sip:alice@a>\r\nContent-Length: 0\r\n\r\n"[..],
        )
        .unwrap()
    }

    #[test]
    fn response_copies_the_right_headers() {
        let r = invite().response(200).to_tag("t9").build().unwrap();
        let vias: Vec<&str> = r.values(HeaderName::Via).collect();
        assert_eq!(vias.len(), 2);
        assert_eq!(vias[1], "SIP/2.0/UDP a;branch=z9hG4bK1;received=192.0.2.1");
        assert_eq!(
            r.header(HeaderName::From),
            Some("\"A\" <sip:alice@a>;tag=1")
        );
        assert_eq!(r.header(HeaderName::To), Some("<sip:bob@b>;tag=t9"));
        assert_eq!(r.call_id(), Some("c1"));
        assert_eq!(r.header(HeaderName::CSeq), Some("7 INVITE"));
        assert!(!r.has(HeaderName::Timestamp));
        assert!(!r.has(HeaderName::Contact));
        assert_eq!(r.header(HeaderName::ContentLength), Some("0"));
    }

    #[test]
    fn trying_has_no_tag_and_echoes_timestamp() {
        let r = invite().response(100).build().unwrap();
        assert_eq!(r.header(HeaderName::To), Some("<sip:bob@b>"));
        assert_eq!(r.header(HeaderName::Timestamp), Some("54"));
    }

    #[test]
    fn generated_tag_and_existing_tag() {
        let r = invite().response(180).build().unwrap();
        let to = r.header(HeaderName::To).unwrap();
        assert!(to.starts_with("<sip:bob@b>;tag=") && to.len() > 20);
        let r2 = r.response(200).to_tag("other").build();
        // A response has no request line, but building from a message with a tagged To keeps it.
        let r2 = r2.unwrap();
        assert_eq!(r2.header(HeaderName::To), Some(to));
    }

    #[test]
    fn injection_is_refused() {
        assert!(RequestBuilder::new(Method::Options, "sip:a@b")
            .header("X", "a\r\nVia: b")
            .build()
            .is_err());
        assert!(invite().response(200).header("X", "a\nb").build().is_err());
        assert!(invite().response(200).reason("a\r\nb").build().is_err());
        assert!(invite().response(99).build().is_err());
        assert!(RequestBuilder::new(Method::Options, "sip:a b")
            .build()
            .is_err());
    }

    #[test]
    fn request_with_body() {
        let r = RequestBuilder::new(Method::Message, "sip:a@b")
            .header("Max-Forwards", "5")
            .body("text/plain", "hi")
            .build()
            .unwrap();
        assert_eq!(r.body(), b"hi");
        assert_eq!(r.header(HeaderName::MaxForwards), Some("5"));
        assert_eq!(r.header(HeaderName::ContentType), Some("text/plain"));
        assert_eq!(r.count(HeaderName::MaxForwards), 1);
    }
}
