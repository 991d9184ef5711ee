//! Serialising a message back to bytes.
//!
//! Unchanged parts are copied byte for byte from the buffer they were parsed from; an unedited
//! message serialises to exactly the bytes it was parsed from (minus leading CRLFs and trailing
//! garbage), so a proxy pays only for what it changes.

use bytes::Bytes;
use std::fmt;

use crate::message::{Body, Message, Start};

impl Message {
    /// Number of bytes [`Message::write_to`] writes.
    pub fn encoded_len(&self) -> usize {
        let start = match (self.start_raw, self.start) {
            (Some((s, e)), _) => (e - s) as usize,
            (None, Start::Request { method, uri }) => {
                (method.end - method.start + 1 + uri.end - uri.start + 1 + 7) as usize
            }
            (None, Start::Response { reason, .. }) => (8 + 4 + reason.end - reason.start) as usize,
        };
        let headers: usize = self
            .headers
            .iter()
            .map(|e| (e.end - e.line) as usize + 2)
            .sum();
        start + 2 + headers + 2 + self.body().len()
    }

    /// Appends the message's wire form to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        self.write_start_line(out);
        out.extend_from_slice(b"\r\n");
        for e in &self.headers {
            out.extend_from_slice(self.entry_line(e));
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(self.body());
    }

    fn write_start_line(&self, out: &mut Vec<u8>) {
        if let Some((s, e)) = self.start_raw {
            out.extend_from_slice(self.buf.get(s as usize..e as usize).unwrap_or_default());
            return;
        }
        match self.start {
            Start::Request { method, uri } => {
                out.extend_from_slice(self.span(method));
                out.push(b' ');
                out.extend_from_slice(self.span(uri));
                out.extend_from_slice(b" SIP/2.0");
            }
            Start::Response { code, reason } => {
                out.extend_from_slice(b"SIP/2.0 ");
                let mut d = [b'0'; 3];
                d[0] += (code / 100 % 10) as u8;
                d[1] += (code / 10 % 10) as u8;
                d[2] += (code % 10) as u8;
                out.extend_from_slice(&d);
                out.push(b' ');
                out.extend_from_slice(self.span(reason));
            }
        }
    }

    /// The message's wire form. For a message that was parsed and not edited this is a cheap
    /// slice of the original buffer.
    pub fn to_bytes(&self) -> Bytes {
        if !self.edited {
            if let (Some((s, _)), Body::Span(_, end)) = (self.start_raw, &self.body) {
                let (s, end) = (s as usize, *end as usize);
                // Headers are only ever parsed with CRLF or LF endings; the verbatim slice is
                // only equal to the canonical form when every line used CRLF.
                if self.crlf_only || self.uses_crlf_only(s, end) {
                    return self.buf.slice(s..end);
                }
            }
        }
        let mut v = Vec::with_capacity(self.encoded_len());
        self.write_to(&mut v);
        Bytes::from(v)
    }

    fn uses_crlf_only(&self, s: usize, end: usize) -> bool {
        let head_end = end - self.body().len();
        let head = self.buf.get(s..head_end).unwrap_or_default();
        memchr::memchr_iter(b'\n', head).all(|i| i > 0 && head[i - 1] == b'\r')
    }
}

impl fmt::Display for Message {
    /// The wire form, with a non-UTF-8 body shown lossily.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut v = Vec::new();
        self.write_to(&mut v);
        f.write_str(&String::from_utf8_lossy(&v))
    }
}

#[cfg(test)]
mod tests {
    use crate::Message;

    #[test]
    fn unedited_message_round_trips_byte_for_byte() {
        let raw = b"INVITE sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTO :\r\n sip:a@b\r\nl: 3\r\n\r\nabc";
        let m = Message::parse(&raw[..]).unwrap();
        assert_eq!(&m.to_bytes()[..], &raw[..]);
        let mut v = Vec::new();
        m.write_to(&mut v);
        assert_eq!(&v[..], &raw[..]);
        assert_eq!(m.encoded_len(), raw.len());
    }

    #[test]
    fn bare_lf_is_normalised_to_crlf() {
        let m = Message::parse(&b"SIP/2.0 200 OK\nl: 0\n\n"[..]).unwrap();
        assert_eq!(&m.to_bytes()[..], b"SIP/2.0 200 OK\r\nl: 0\r\n\r\n");
    }
}
