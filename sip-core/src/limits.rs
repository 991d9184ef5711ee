//! Parser limits: every size and count read from the wire is checked against one of these first.

/// Limits applied while parsing and framing. The defaults are safe for a server on the open
/// internet; raise them only for trusted peers.
///
/// ```
/// use sip_core::Limits;
/// let strict = Limits { max_headers: 32, ..Limits::default() };
/// assert!(strict.max_message_size >= 4096);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest whole message (start line, headers and body), in bytes. Default 65 535 (the
    /// largest UDP datagram); a larger message is refused with 513.
    pub max_message_size: usize,
    /// Most header lines in one message. Default 256.
    pub max_headers: usize,
    /// Longest header line, folded continuation lines included. Default 16 384.
    pub max_header_line: usize,
    /// Longest Request-URI. Default 8 192 (longer: 414).
    pub max_uri_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 65_535,
            max_headers: 256,
            max_header_line: 16_384,
            max_uri_len: 8_192,
        }
    }
}

impl Limits {
    /// Offsets are stored as `u32` and header name lengths as `u16`, so the effective limits
    /// are clamped to what those can index.
    pub(crate) fn effective(&self) -> Limits {
        Limits {
            max_message_size: self.max_message_size.min(u32::MAX as usize - 1),
            max_headers: self.max_headers,
            max_header_line: self.max_header_line,
            max_uri_len: self.max_uri_len,
        }
    }
}
