//! The stream framer: TCP/TLS bytes in, whole messages out (RFC 3261 §18.3, RFC 5626 §3.5.1).
//!
//! Feed it whatever the socket returned; it yields every complete message, reports the RFC 5626
//! keep-alive `CRLFCRLF` as a [`Frame::Ping`] (and a lone `CRLF` as a [`Frame::Pong`]) instead of
//! a parse error, and never buffers more than the message size limit. A framing error (no
//! Content-Length, a message larger than the limit, malformed headers) leaves the stream
//! unsynchronised: the connection should be answered (if possible) and closed.

use bytes::{Buf, BytesMut};
use memchr::memmem;

use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::message::Message;
use crate::name::HeaderName;
use crate::parser::{parse, parse_content_length, Framing, TOKEN};

/// What the framer found next on the stream.
// Boxing the message would cost an allocation per message; frames are moved once.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A whole message.
    Message(Message),
    /// An RFC 5626 keep-alive ping (`CRLFCRLF`); a server answers with a pong (`CRLF`).
    Ping,
    /// An RFC 5626 keep-alive pong (a lone `CRLF`), reported by a framer made
    /// [`Framer::with_pongs`].
    Pong,
}

/// Turns a byte stream into SIP messages.
///
/// ```
/// use sip_core::framer::{Frame, Framer};
///
/// let mut f = Framer::default();
/// f.push(b"\r\n\r\nOPTIONS sip:a@b SIP/2.0\r\nContent-Length: 2\r\n\r\nh").unwrap();
/// assert_eq!(f.next_frame().unwrap(), Some(Frame::Ping));
/// assert_eq!(f.next_frame().unwrap(), None); // body incomplete
/// f.push(b"i").unwrap();
/// match f.next_frame().unwrap() {
///     Some(Frame::Message(m)) => assert_eq!(m.body(), b"hi"),
///     other => panic!("{other:?}"),
/// }
/// ```
#[derive(Debug)]
pub struct Framer {
    buf: BytesMut,
    limits: Limits,
    /// Where the search for the end of the header section resumes (avoids rescanning).
    scanned: usize,
    /// Once the header section is complete: its length and the whole message's length.
    pending: Option<usize>,
    failed: bool,
    report_pongs: bool,
}

impl Default for Framer {
    fn default() -> Self {
        Framer::new(Limits::default())
    }
}

impl Framer {
    /// A framer with the given limits; `max_message_size` also bounds the bytes buffered.
    pub fn new(limits: Limits) -> Framer {
        Framer {
            buf: BytesMut::new(),
            limits: limits.effective(),
            scanned: 0,
            pending: None,
            failed: false,
            report_pongs: false,
        }
    }

    /// For the client end of a flow (the side that sends pings, RFC 5626 §3.5.1): report a lone
    /// `CRLF` as a [`Frame::Pong`] as soon as it arrives. Without this (the server end) a lone
    /// `CRLF` is taken as the start of a ping or as CRLF before a message, so the frames are the
    /// same however the stream is cut; with it, a ping cut after its first CRLF reads as pongs.
    pub fn with_pongs(mut self) -> Framer {
        self.report_pongs = true;
        self
    }

    /// Bytes buffered and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Appends bytes read from the stream. Refuses (and leaves the buffer unchanged) when the
    /// buffered bytes would exceed what one message may take, so a peer cannot make us grow
    /// without bound: call [`Framer::next_frame`] to drain first.
    pub fn push(&mut self, data: &[u8]) -> Result<()> {
        // One whole message plus one read's worth of the next is the most we ever keep.
        let cap = self.limits.max_message_size.saturating_mul(2);
        if self.buf.len() + data.len() > cap {
            self.failed = true;
            return Err(Error::MessageTooLarge {
                size: self.buf.len() + data.len(),
                limit: self.limits.max_message_size,
            });
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed. After an error the
    /// stream cannot be resynchronised and every later call returns the error again.
    pub fn next_frame(&mut self) -> Result<Option<Frame>> {
        if self.failed {
            return Err(Error::Incomplete);
        }
        let r = self.next_inner();
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    fn next_inner(&mut self) -> Result<Option<Frame>> {
        if self.pending.is_none() {
            // Separators between messages are consumed in a loop, never by recursion: a
            // megabyte of CRLFs or LFs costs time, not stack.
            loop {
                match self.skip_separator() {
                    Separator::Skipped => continue,
                    Separator::Ping => return Ok(Some(Frame::Ping)),
                    Separator::Pong => return Ok(Some(Frame::Pong)),
                    Separator::NeedMore => return Ok(None),
                    Separator::None => break,
                }
            }
            let header_end = match self.find_header_end() {
                Some(n) => n,
                None => {
                    if self.buf.len() > self.limits.max_message_size {
                        return Err(Error::MessageTooLarge {
                            size: self.buf.len(),
                            limit: self.limits.max_message_size,
                        });
                    }
                    return Ok(None);
                }
            };
            let cl = content_length(&self.buf[..header_end])?;
            let total = header_end.checked_add(cl).ok_or(Error::MessageTooLarge {
                size: usize::MAX,
                limit: self.limits.max_message_size,
            })?;
            if total > self.limits.max_message_size {
                return Err(Error::MessageTooLarge {
                    size: total,
                    limit: self.limits.max_message_size,
                });
            }
            self.pending = Some(total);
        }
        let total = self.pending.unwrap_or(0);
        if self.buf.len() < total {
            return Ok(None);
        }
        let bytes = self.buf.split_to(total).freeze();
        self.pending = None;
        self.scanned = 0;
        parse(bytes, &self.limits, Framing::Stream).map(|m| Some(Frame::Message(m)))
    }

    /// Looks at the bytes before a start line: an RFC 5626 ping or pong, or a CRLF or bare LF
    /// that RFC 3261 §7.5 says to ignore.
    fn skip_separator(&mut self) -> Separator {
        if self.buf.starts_with(b"\r\n\r\n") {
            self.advance(4);
            return Separator::Ping;
        }
        if self.buf.starts_with(b"\r\n") {
            if self.report_pongs && self.buf.get(2) != Some(&b'\r') {
                self.advance(2);
                return Separator::Pong;
            }
            return match self.buf.get(2..4) {
                // Not a ping: CRLF before a start line is ignored (RFC 3261 §7.5).
                Some([a, _]) if *a != b'\r' => {
                    self.advance(2);
                    Separator::Skipped
                }
                Some([_, b]) if *b != b'\n' => {
                    self.advance(2);
                    Separator::Skipped
                }
                // Too few bytes to tell a ping from a CRLF before a message: wait.
                _ => Separator::NeedMore,
            };
        }
        if self.buf.first() == Some(&b'\n') {
            // A bare LF between messages: skip it.
            self.advance(1);
            return Separator::Skipped;
        }
        Separator::None
    }

    fn advance(&mut self, n: usize) {
        self.buf.advance(n);
        self.scanned = 0;
    }

    /// Length of the header section including its blank line, if complete.
    fn find_header_end(&mut self) -> Option<usize> {
        let from = self.scanned.saturating_sub(3);
        let hay = &self.buf[from..];
        let crlf = memmem::find(hay, b"\r\n\r\n").map(|i| from + i + 4);
        let lf = memmem::find(hay, b"\n\n").map(|i| from + i + 2);
        let end = match (crlf, lf) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if end.is_none() {
            self.scanned = self.buf.len();
        }
        end
    }
}

/// What [`Framer::skip_separator`] found.
enum Separator {
    /// Bytes were skipped; look again.
    Skipped,
    /// An RFC 5626 ping (`CRLFCRLF`).
    Ping,
    /// An RFC 5626 pong (`CRLF`, on a client flow).
    Pong,
    /// Not enough bytes to decide.
    NeedMore,
    /// A start line begins here.
    None,
}

/// Finds the Content-Length of a complete header section. Several Content-Length lines that
/// disagree make the body length unknowable (RFC 4475 mcl01): an error on a stream.
fn content_length(head: &[u8]) -> Result<usize> {
    let mut found: Option<usize> = None;
    let mut pos = match memchr::memchr(b'\n', head) {
        Some(i) => i + 1,
        None => return Err(Error::Incomplete),
    };
    while pos < head.len() {
        let line_end = memchr::memchr(b'\n', &head[pos..]).map_or(head.len(), |i| pos + i);
        let line = &head[pos..line_end];
        pos = line_end + 1;
        let mut n = 0;
        while n < line.len() && TOKEN[line[n] as usize] {
            n += 1;
        }
        if n == 0 || HeaderName::from_bytes(&line[..n]) != HeaderName::ContentLength {
            continue;
        }
        let rest = &line[n..];
        let colon = match memchr::memchr(b':', rest) {
            Some(c) => c,
            None => return Err(Error::InvalidHeaderLine { offset: pos }),
        };
        let v = trim(&rest[colon + 1..]);
        let value = parse_content_length(v, pos)?;
        match found {
            Some(prev) if prev != value => {
                return Err(Error::DuplicateHeader {
                    name: "Content-Length",
                })
            }
            _ => found = Some(value),
        }
    }
    found.ok_or(Error::MissingContentLength)
}

fn trim(mut v: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = v {
        if matches!(first, b' ' | b'\t' | b'\r' | b'\n') {
            v = rest;
        } else {
            break;
        }
    }
    crate::message::trim_end(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] =
        b"MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nl: 5\r\n\r\nhello";

    fn drain(f: &mut Framer) -> Vec<Frame> {
        let mut out = Vec::new();
        while let Some(fr) = f.next_frame().unwrap() {
            out.push(fr);
        }
        out
    }

    #[test]
    fn split_at_every_byte() {
        for cut in 0..=MSG.len() {
            let mut f = Framer::default();
            f.push(&MSG[..cut]).unwrap();
            let mut got = drain(&mut f);
            f.push(&MSG[cut..]).unwrap();
            got.extend(drain(&mut f));
            assert_eq!(got.len(), 1, "cut at {cut}");
            match &got[0] {
                Frame::Message(m) => assert_eq!(m.body(), b"hello"),
                other => panic!("{other:?}"),
            }
        }
    }

    /// A mebibyte of bare LFs, then of CRLFs before a start line, in one buffer: consumed in
    /// a loop (a recursive skip overflowed the stack of a debug build).
    #[test]
    fn one_mebibyte_of_separators_is_consumed_without_recursion() {
        const MIB: usize = 1 << 20;
        let limits = Limits {
            max_message_size: 2 * MIB,
            ..Limits::default()
        };
        let mut f = Framer::new(limits);
        let mut input = vec![b'\n'; MIB];
        input.extend_from_slice(MSG);
        f.push(&input).unwrap();
        assert!(matches!(f.next_frame().unwrap(), Some(Frame::Message(_))));
        assert_eq!(f.buffered(), 0);

        // CRLF pairs separated by a lone LF: each pair is "CRLF before a start line", never
        // a ping, so all of it is skipped in one call.
        let mut f = Framer::new(limits);
        let mut input = b"\r\n\n".repeat(MIB / 3);
        input.extend_from_slice(MSG);
        f.push(&input).unwrap();
        assert!(matches!(f.next_frame().unwrap(), Some(Frame::Message(_))));
        assert_eq!(f.buffered(), 0);
    }

    /// The same through the default limits, as a TCP peer would send it: chunk after chunk.
    #[test]
    fn a_stream_of_lf_chunks_never_grows_the_buffer() {
        let mut f = Framer::default();
        for _ in 0..16 {
            f.push(&[b'\n'; 65_536]).unwrap();
            assert_eq!(f.next_frame().unwrap(), None);
            assert_eq!(f.buffered(), 0);
        }
        f.push(MSG).unwrap();
        assert!(matches!(f.next_frame().unwrap(), Some(Frame::Message(_))));
    }

    #[test]
    fn server_side_waits_to_tell_ping_from_crlf() {
        let mut f = Framer::default();
        f.push(b"\r\n").unwrap();
        assert_eq!(f.next_frame().unwrap(), None);
        f.push(b"\r").unwrap();
        assert_eq!(f.next_frame().unwrap(), None);
        f.push(b"\n").unwrap();
        assert_eq!(f.next_frame().unwrap(), Some(Frame::Ping));
        f.push(b"\r\n").unwrap();
        f.push(MSG).unwrap();
        assert!(matches!(f.next_frame().unwrap(), Some(Frame::Message(_))));
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn coalesced_messages_and_pings() {
        let mut data = Vec::new();
        data.extend_from_slice(b"\r\n\r\n");
        data.extend_from_slice(MSG);
        data.extend_from_slice(MSG);
        data.extend_from_slice(b"\r\n");
        let mut f = Framer::default().with_pongs();
        f.push(&data).unwrap();
        let got = drain(&mut f);
        assert_eq!(got.len(), 4);
        assert_eq!(got[0], Frame::Ping);
        assert!(matches!(got[1], Frame::Message(_)));
        assert!(matches!(got[2], Frame::Message(_)));
        assert_eq!(got[3], Frame::Pong);
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn missing_content_length_is_an_error() {
        let mut f = Framer::default();
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n")
            .unwrap();
        assert_eq!(f.next_frame(), Err(Error::MissingContentLength));
        assert!(f.next_frame().is_err());
    }

    #[test]
    fn conflicting_content_lengths_are_an_error() {
        let mut f = Framer::default();
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 13\r\nl: 5\r\n\r\nxxxxx")
            .unwrap();
        assert!(matches!(f.next_frame(), Err(Error::DuplicateHeader { .. })));
    }

    #[test]
    fn buffering_is_bounded() {
        let lim = Limits {
            max_message_size: 100,
            ..Limits::default()
        };
        let mut f = Framer::new(lim);
        f.push(&[b'a'; 150]).unwrap();
        assert!(matches!(f.next_frame(), Err(Error::MessageTooLarge { .. })));
        let mut f = Framer::new(lim);
        assert!(f.push(&[b'a'; 201]).is_err());
        let mut f = Framer::new(lim);
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 1000\r\n\r\n")
            .unwrap();
        assert!(matches!(f.next_frame(), Err(Error::MessageTooLarge { .. })));
    }
}
