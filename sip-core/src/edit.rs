//! Editing a parsed message without re-parsing it (RFC 3261 §16.6, §16.7 operations for proxies).
//!
//! New and rewritten header lines are written into the message's edit buffer; every other
//! line keeps pointing into the original buffer and is written back byte for byte.

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::message::{Body, Entry, Message, Span, Src, Start};
use crate::name::HeaderName;
use crate::parser::TOKEN;

/// A header value must not smuggle in a line break that is not folding (header injection).
fn check_value(value: &str) -> Result<()> {
    let b = value.as_bytes();
    // The usual value has no CR, LF or NUL at all: one vectorised scan.
    if memchr::memchr3(b'\r', b'\n', 0, b).is_none() {
        return Ok(());
    }
    for (i, &c) in b.iter().enumerate() {
        if c == b'\r' || c == b'\n' {
            let folded = c == b'\r'
                && b.get(i + 1) == Some(&b'\n')
                && matches!(b.get(i + 2), Some(b' ' | b'\t'));
            let lf_of_fold = c == b'\n'
                && i > 0
                && b[i - 1] == b'\r'
                && matches!(b.get(i + 1), Some(b' ' | b'\t'));
            if !(folded || lf_of_fold) {
                return Err(Error::Syntax {
                    what: "header value (line break)",
                    offset: i,
                });
            }
        } else if c == 0 {
            return Err(Error::Syntax {
                what: "header value (NUL)",
                offset: i,
            });
        }
    }
    Ok(())
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || !name.bytes().all(|c| TOKEN[c as usize]) || name.len() > u16::MAX as usize
    {
        return Err(Error::Syntax {
            what: "header name",
            offset: 0,
        });
    }
    Ok(())
}

impl Message {
    /// Writes `name: value` into the edit buffer and returns its table entry.
    fn new_entry(&mut self, name: &str, value: &str) -> Result<Entry> {
        check_name(name)?;
        self.new_entry_named(HeaderName::from_bytes(name.as_bytes()), name, value)
    }

    /// [`new_entry`](Self::new_entry) for a name already resolved: `name` is what `spelled`
    /// resolves to, and `spelled` a valid header name (a canonical spelling or one checked).
    fn new_entry_named(&mut self, name: HeaderName, spelled: &str, value: &str) -> Result<Entry> {
        check_value(value)?;
        let value = value.trim_matches(|c| c == ' ' || c == '\t');
        // One allocation for the line (with room for a few more edits on the first one),
        // not one per piece written.
        self.extra_room(spelled.len() + 2 + value.len());
        let line = self.extra.len();
        self.extra.extend_from_slice(spelled.as_bytes());
        self.extra.extend_from_slice(b": ");
        let v = self.extra.len();
        self.extra.extend_from_slice(value.as_bytes());
        if self.extra.len() > u32::MAX as usize {
            return Err(Error::MessageTooLarge {
                size: self.extra.len(),
                limit: u32::MAX as usize,
            });
        }
        Ok(Entry {
            name,
            src: Src::Extra,
            name_len: spelled.len() as u16,
            line: line as u32,
            value: v as u32,
            end: self.extra.len() as u32,
        })
    }

    /// A new line for a header given by its resolved name: its canonical spelling, without
    /// checking or resolving the name again.
    fn new_entry_for(&mut self, name: HeaderName, value: &str) -> Result<Entry> {
        match name.canonical() {
            Some(spelled) => self.new_entry_named(name, spelled, value),
            None => self.new_entry("X-Unknown", value),
        }
    }

    fn spelled(name: HeaderName, fallback: &str) -> &str {
        name.canonical().unwrap_or(fallback)
    }

    /// Appends a header line at the end of the header section. The name is resolved as on the
    /// wire (so `"v"` or `"via"` give a Via line, written as given).
    pub fn append_header(&mut self, name: &str, value: &str) -> Result<()> {
        let e = self.new_entry(name, value)?;
        self.headers.push(e);
        self.edited = true;
        Ok(())
    }

    /// Inserts a header line at `index` in the header table (clamped to the end).
    pub fn insert_header(&mut self, index: usize, name: &str, value: &str) -> Result<()> {
        let e = self.new_entry(name, value)?;
        let index = index.min(self.headers.len());
        self.headers.insert(index, e);
        self.edited = true;
        Ok(())
    }

    /// Replaces every line of a known header by one line with `value` (placed where the first
    /// one was, or appended).
    pub fn set_header(&mut self, name: HeaderName, value: &str) -> Result<()> {
        let spelled = Self::spelled(name, "X-Unknown");
        if name == HeaderName::Other {
            return Err(Error::Syntax {
                what: "header name (use set_header_named for unknown headers)",
                offset: 0,
            });
        }
        let e = self.new_entry(spelled, value)?;
        match self.headers.iter().position(|h| h.name == name) {
            Some(i) => {
                self.headers[i] = e;
                let mut j = i + 1;
                while j < self.headers.len() {
                    if self.headers[j].name == name {
                        self.headers.remove(j);
                    } else {
                        j += 1;
                    }
                }
            }
            None => self.headers.push(e),
        }
        self.edited = true;
        Ok(())
    }

    /// Removes every line of a known header; returns how many were removed.
    pub fn remove_header(&mut self, name: HeaderName) -> usize {
        let before = self.headers.len();
        self.headers.retain(|h| h.name != name);
        let n = before - self.headers.len();
        if n > 0 {
            self.edited = true;
        }
        n
    }

    /// Removes every line whose name equals `name` (case-insensitive; compact forms resolved).
    pub fn remove_header_named(&mut self, name: &str) -> usize {
        let resolved = HeaderName::from_bytes(name.as_bytes());
        if resolved != HeaderName::Other {
            return self.remove_header(resolved);
        }
        let keep: smallvec::SmallVec<[bool; 64]> = self
            .headers
            .iter()
            .map(|e| {
                !(e.name == HeaderName::Other
                    && self.entry_name(e).eq_ignore_ascii_case(name.as_bytes()))
            })
            .collect();
        let before = self.headers.len();
        let mut it = keep.iter();
        self.headers.retain(|_| *it.next().unwrap_or(&true));
        let n = before - self.headers.len();
        if n > 0 {
            self.edited = true;
        }
        n
    }

    /// Adds a value at the top of a list header (Via, Record-Route…): a new line before the
    /// first line of that header, or at `fallback_index` when there is none.
    fn push_top(&mut self, name: HeaderName, value: &str, fallback_index: usize) -> Result<()> {
        let e = self.new_entry_for(name, value)?;
        let at = self
            .headers
            .iter()
            .position(|h| h.name == name)
            .unwrap_or(fallback_index.min(self.headers.len()));
        self.headers.insert(at, e);
        self.edited = true;
        Ok(())
    }

    /// Removes the topmost value of a list header and returns it. A line holding several
    /// comma-separated values is rewritten with the rest.
    fn pop_top(&mut self, name: HeaderName) -> Option<String> {
        let (src, start, end) = self.remove_top_value(name)?;
        // Edits never change bytes already written (the edit buffer only grows): the removed
        // value is still where it was.
        let b = self.src(src).get(start..end)?;
        std::str::from_utf8(b).ok().map(str::to_owned)
    }

    /// Removes the topmost value of a list header (the first value of its first line) without
    /// returning it: what a proxy does with its own Via on a response (RFC 3261 §16.7 step 3)
    /// and with its own Route (§16.4), with no copy of the value. `false` when there is none.
    ///
    /// ```
    /// use sip_core::{HeaderName, Message};
    /// let mut m = Message::parse(&b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP p;branch=z9hG4bK2, SIP/2.0/UDP a;branch=z9hG4bK1\r\n\
    ///     To: <sip:a@b>;tag=2\r\nFrom: <sip:c@d>;tag=1\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n"[..])?;
    /// assert!(m.remove_top(HeaderName::Via));
    /// assert_eq!(m.values(HeaderName::Via).collect::<Vec<_>>(), ["SIP/2.0/UDP a;branch=z9hG4bK1"]);
    /// # Ok::<(), sip_core::Error>(())
    /// ```
    pub fn remove_top(&mut self, name: HeaderName) -> bool {
        self.remove_top_value(name).is_some()
    }

    /// Removes the first value of the first `name` line; returns where that value was.
    fn remove_top_value(&mut self, name: HeaderName) -> Option<(Src, usize, usize)> {
        let i = self.headers.iter().position(|h| h.name == name)?;
        let e = self.headers[i];
        let value = self.entry_value(&e);
        let base = value.as_ptr() as usize - self.src(e.src).as_ptr() as usize;
        let text = std::str::from_utf8(value).ok()?;
        let first = crate::text::split_values(text).next()?;
        let first_at = first.as_ptr() as usize - text.as_ptr() as usize;
        let first_end = first_at + first.len();
        let after = text.get(first_end..).unwrap_or_default();
        let after = crate::text::trim_lws(after);
        let rest = after
            .strip_prefix(',')
            .map(crate::text::trim_lws)
            .filter(|r| !r.is_empty());
        let removed = (e.src, base + first_at, base + first_end);
        match rest {
            None => {
                self.headers.remove(i);
            }
            Some(rest) => {
                // The rest is copied aside: it may live in the edit buffer the new line goes to.
                let mut copy: smallvec::SmallVec<[u8; 256]> = smallvec::SmallVec::new();
                copy.extend_from_slice(rest.as_bytes());
                let mut name_text: smallvec::SmallVec<[u8; 32]> = smallvec::SmallVec::new();
                name_text.extend_from_slice(self.entry_name(&e));
                let name_text = std::str::from_utf8(&name_text).unwrap_or("X-Unknown");
                let rest = std::str::from_utf8(&copy).unwrap_or_default();
                let ne = self.new_entry(name_text, rest).ok()?;
                self.headers[i] = ne;
            }
        }
        self.edited = true;
        Some(removed)
    }

    /// Replaces the topmost value of a list header (the first value of its first line) with
    /// `value`, keeping the others: what popping and pushing that header do, without copying
    /// the values out. A transport stamping `received` and `rport` on the top Via (RFC 3261
    /// §18.2.1, RFC 3581) does this for nearly every request. Without such a header, `value`
    /// becomes its first line.
    ///
    /// ```
    /// use sip_core::{HeaderName, Message};
    /// let mut m = Message::parse(&b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP x;branch=z9hG4bK1, SIP/2.0/UDP y\r\n\
    ///     To: <sip:a@b>\r\nFrom: <sip:c@d>;tag=1\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n"[..])?;
    /// m.set_top_value(HeaderName::Via, "SIP/2.0/UDP x;branch=z9hG4bK1;received=192.0.2.1")?;
    /// let vias: Vec<&str> = m.values(HeaderName::Via).collect();
    /// assert_eq!(vias, ["SIP/2.0/UDP x;branch=z9hG4bK1;received=192.0.2.1", "SIP/2.0/UDP y"]);
    /// # Ok::<(), sip_core::Error>(())
    /// ```
    pub fn set_top_value(&mut self, name: HeaderName, value: &str) -> Result<()> {
        let Some(i) = self.headers.iter().position(|h| h.name == name) else {
            return self.push_top(name, value, 0);
        };
        let e = self.headers[i];
        // What follows the first value on its line ("b, c" of "a, b, c"), copied aside: it
        // may live in the edit buffer that the new line is written into.
        let mut rest: smallvec::SmallVec<[u8; 256]> = smallvec::SmallVec::new();
        if let Ok(text) = std::str::from_utf8(self.entry_value(&e)) {
            if let Some(first) = crate::text::split_values(text).next() {
                let end = first.as_ptr() as usize - text.as_ptr() as usize + first.len();
                let after = text.get(end..).unwrap_or_default();
                let after = crate::text::trim_lws(after);
                if let Some(more) = after.strip_prefix(',') {
                    rest.extend_from_slice(crate::text::trim_lws(more).as_bytes());
                }
            }
        }
        let top = self.new_entry_for(name, value)?;
        if rest.is_empty() {
            self.headers[i] = top;
        } else {
            let mut name_text: smallvec::SmallVec<[u8; 32]> = smallvec::SmallVec::new();
            name_text.extend_from_slice(self.entry_name(&e));
            let name_text = std::str::from_utf8(&name_text).unwrap_or("X-Unknown");
            let rest = std::str::from_utf8(&rest).unwrap_or_default();
            let second = self.new_entry(name_text, rest)?;
            self.headers[i] = second;
            self.headers.insert(i, top);
        }
        self.edited = true;
        Ok(())
    }

    /// Adds a Via at the top (RFC 3261 §16.6 step 8): a proxy or a UAC sending the request.
    pub fn push_via(&mut self, value: &str) -> Result<()> {
        self.push_top(HeaderName::Via, value, 0)
    }

    /// Removes the topmost Via value (RFC 3261 §16.7 step 3: a proxy forwarding a response)
    /// and returns it.
    pub fn pop_via(&mut self) -> Option<String> {
        self.pop_top(HeaderName::Via)
    }

    /// Removes the topmost Route value (RFC 3261 §16.4 / §16.12: a loose-routing proxy that
    /// finds itself in the first Route) and returns it.
    pub fn pop_route(&mut self) -> Option<String> {
        self.pop_top(HeaderName::Route)
    }

    /// Adds a Route value at the top of the route set.
    pub fn push_route(&mut self, value: &str) -> Result<()> {
        let after_via = self.last_via_index();
        self.push_top(HeaderName::Route, value, after_via)
    }

    /// Adds a Record-Route at the top (RFC 3261 §16.6 step 4).
    pub fn push_record_route(&mut self, value: &str) -> Result<()> {
        let after_via = self.last_via_index();
        self.push_top(HeaderName::RecordRoute, value, after_via)
    }

    fn last_via_index(&self) -> usize {
        self.headers
            .iter()
            .rposition(|h| h.name == HeaderName::Via)
            .map_or(0, |i| i + 1)
    }

    /// Replaces the body and sets Content-Length to its length. The Content-Type is set when
    /// given, and removed when the body is empty and `content_type` is `None`.
    pub fn set_body(&mut self, body: impl Into<Bytes>, content_type: Option<&str>) -> Result<()> {
        let body = body.into();
        if let Some(ct) = content_type {
            self.set_header(HeaderName::ContentType, ct)?;
        } else if body.is_empty() {
            self.remove_header(HeaderName::ContentType);
        }
        self.set_header(HeaderName::ContentLength, &body.len().to_string())?;
        self.body = Body::Owned(body);
        self.edited = true;
        Ok(())
    }

    /// Replaces the Request-URI of a request (RFC 3261 §16.6 step 2, §16.12).
    pub fn set_request_uri(&mut self, uri: &str) -> Result<()> {
        if uri.is_empty() || !uri.bytes().all(|c| (0x21..0x7f).contains(&c)) {
            return Err(Error::Syntax {
                what: "Request-URI",
                offset: 0,
            });
        }
        let method = match self.start {
            Start::Request { method, .. } => method,
            Start::Response { .. } => {
                return Err(Error::Syntax {
                    what: "Request-URI of a response",
                    offset: 0,
                })
            }
        };
        let method = self.move_to_extra(method);
        self.extra_room(uri.len());
        let s = self.extra.len();
        self.extra.extend_from_slice(uri.as_bytes());
        let uri = Span {
            src: Src::Extra,
            start: s as u32,
            end: self.extra.len() as u32,
        };
        self.start = Start::Request { method, uri };
        self.start_raw = None;
        self.edited = true;
        Ok(())
    }

    /// Sets the status code and reason phrase of a response.
    pub fn set_status(&mut self, code: u16, reason: &str) -> Result<()> {
        if !(100..=699).contains(&code) || reason.bytes().any(|c| c < 0x20 && c != b'\t') {
            return Err(Error::InvalidStatusCode { offset: 0 });
        }
        if !self.is_response() {
            return Err(Error::InvalidStatusCode { offset: 0 });
        }
        self.extra_room(reason.len());
        let s = self.extra.len();
        self.extra.extend_from_slice(reason.as_bytes());
        self.start = Start::Response {
            code,
            reason: Span {
                src: Src::Extra,
                start: s as u32,
                end: self.extra.len() as u32,
            },
        };
        self.start_raw = None;
        self.edited = true;
        Ok(())
    }

    /// Room for `n` more bytes of edits. The first edit of a message takes a recycled buffer
    /// (see [`crate::message`]'s spare buffers) with room for a few more edits, so that the
    /// usual single edit (a Via stamped with `received`/`rport`) allocates nothing once the
    /// thread has dropped an edited message before.
    fn extra_room(&mut self, n: usize) {
        if self.extra.capacity() == 0 {
            self.extra = crate::message::spare_extra(n + 128);
        } else {
            self.extra.reserve(n);
        }
    }

    fn move_to_extra(&mut self, s: Span) -> Span {
        let bytes = self.span(s).to_vec();
        self.extra_room(bytes.len());
        let start = self.extra.len();
        self.extra.extend_from_slice(&bytes);
        Span {
            src: Src::Extra,
            start: start as u32,
            end: self.extra.len() as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Folding between a line's values (the fuzz target round_trip found a Route folded after
    /// its comma): the values after the first are kept, without the fold's line break at the
    /// start of the rewritten line, whichever side of the comma the fold is on.
    #[test]
    fn top_value_edits_keep_values_after_a_fold() {
        for route in [
            "<sip:a;lr>  ,\r\n\t\t<sip:b;lr>",
            "<sip:a;lr>\r\n ,<sip:b;lr>, <sip:c;lr>",
        ] {
            let raw = format!(
                "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP v;branch=z9hG4bK1\r\nRoute: {route}\r\n\
                 To: <sip:a@b>;tag=2\r\nFrom: <sip:c@d>;tag=1\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n"
            );
            let m = Message::parse(raw.into_bytes()).unwrap();
            let after_first: Vec<String> = m
                .values(HeaderName::Route)
                .skip(1)
                .map(str::to_owned)
                .collect();
            let mut popped = m.clone();
            assert_eq!(popped.pop_route().as_deref(), Some("<sip:a;lr>"));
            let mut removed = m.clone();
            assert!(removed.remove_top(HeaderName::Route));
            let mut replaced = m.clone();
            replaced
                .set_top_value(HeaderName::Route, "<sip:z;lr>")
                .unwrap();
            for edited in [&popped, &removed] {
                let again = Message::parse(edited.to_bytes()).unwrap();
                assert_eq!(&again, edited);
                let left: Vec<&str> = again.values(HeaderName::Route).collect();
                assert_eq!(left, after_first);
            }
            let again = Message::parse(replaced.to_bytes()).unwrap();
            assert_eq!(again, replaced);
            let mut want = vec!["<sip:z;lr>".to_owned()];
            want.extend(after_first.iter().cloned());
            assert_eq!(again.values(HeaderName::Route).collect::<Vec<_>>(), want);
        }
    }

    const RAW: &[u8] = b"INVITE sip:bob@b.example SIP/2.0\r\n\
Via: SIP/2.0/UDP p1.example;branch=z9hG4bK1, SIP/2.0/UDP ua.example;branch=z9hG4bK0\r\n\
Route: <sip:p1.example;lr>\r\nRoute: <sip:p2.example;lr>\r\n\
To: <sip:bob@b.example>\r\nFrom: <sip:alice@a.example>;tag=1\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
X-Keep: as  is\r\nContent-Length: 3\r\n\r\nabc";

    fn msg() -> Message {
        Message::parse(RAW).unwrap()
    }

    #[test]
    fn push_and_pop_via() {
        let mut m = msg();
        m.push_via("SIP/2.0/TCP p2.example;branch=z9hG4bK2")
            .unwrap();
        let vias: Vec<&str> = m.values(HeaderName::Via).collect();
        assert_eq!(vias.len(), 3);
        assert!(vias[0].starts_with("SIP/2.0/TCP p2.example"));
        assert_eq!(
            m.pop_via().as_deref(),
            Some("SIP/2.0/TCP p2.example;branch=z9hG4bK2")
        );
        assert_eq!(
            m.pop_via().as_deref(),
            Some("SIP/2.0/UDP p1.example;branch=z9hG4bK1")
        );
        let vias: Vec<&str> = m.values(HeaderName::Via).collect();
        assert_eq!(vias, ["SIP/2.0/UDP ua.example;branch=z9hG4bK0"]);
        let again = Message::parse(m.to_bytes()).unwrap();
        assert_eq!(again, m);
    }

    #[test]
    fn pop_route_and_record_route() {
        let mut m = msg();
        assert_eq!(m.pop_route().as_deref(), Some("<sip:p1.example;lr>"));
        assert_eq!(m.count(HeaderName::Route), 1);
        m.push_record_route("<sip:p1.example;lr>").unwrap();
        let out = m.to_bytes();
        let s = std::str::from_utf8(&out).unwrap();
        assert!(s.contains("Record-Route: <sip:p1.example;lr>\r\nRoute: <sip:p2.example;lr>"));
        // Untouched lines are written back exactly.
        assert!(s.contains("X-Keep: as  is\r\n"));
    }

    #[test]
    fn set_remove_and_body() {
        let mut m = msg();
        m.set_body(&b"hello"[..], Some("text/plain")).unwrap();
        let again = Message::parse(m.to_bytes()).unwrap();
        assert_eq!(again.body(), b"hello");
        assert_eq!(again.header(HeaderName::ContentLength), Some("5"));
        assert_eq!(again.header(HeaderName::ContentType), Some("text/plain"));
        assert_eq!(m.remove_header_named("x-keep"), 1);
        assert_eq!(m.remove_header(HeaderName::Route), 2);
        assert!(!m.has(HeaderName::Route));
        m.set_request_uri("sip:bob@10.0.0.1").unwrap();
        let again = Message::parse(m.to_bytes()).unwrap();
        assert_eq!(again.uri_str(), Some("sip:bob@10.0.0.1"));
    }

    #[test]
    fn header_injection_refused() {
        let mut m = msg();
        assert!(m.append_header("X-A", "a\r\nVia: evil").is_err());
        assert!(m.append_header("X A", "a").is_err());
        assert!(m.append_header("X-A", "a\r\n b").is_ok());
        assert!(m.set_request_uri("sip:a b").is_err());
    }
}
