//! The one error type of `sip-core`, and the SIP response a server should send for each.
//!
//! Every variant says what went wrong in protocol terms and, where it makes sense, at which byte
//! offset of the input. [`Error::response_status`] maps an error to the status code and reason
//! phrase a server answers with (RFC 3261 §8.2, §16.3, §21).

/// What went wrong while parsing, validating or framing a SIP message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input held no message (only whitespace or nothing at all).
    #[error("empty message")]
    Empty,
    /// The input ended before the message did (no blank line after the headers).
    #[error("incomplete message: the header section is not terminated")]
    Incomplete,
    /// The start line is neither a Request-Line nor a Status-Line.
    #[error("invalid start line at byte {offset}")]
    InvalidStartLine {
        /// Byte offset of the offending character.
        offset: usize,
    },
    /// The SIP-Version is not `SIP/2.0` (RFC 3261 §7.1; the answer is 505).
    #[error("unsupported SIP version at byte {offset}")]
    UnsupportedVersion {
        /// Byte offset of the version.
        offset: usize,
    },
    /// The method is not a token (RFC 3261 §25.1).
    #[error("invalid method at byte {offset}")]
    InvalidMethod {
        /// Byte offset of the method.
        offset: usize,
    },
    /// The status code is not three digits in 100..=699 (RFC 3261 §7.2).
    #[error("invalid status code at byte {offset}")]
    InvalidStatusCode {
        /// Byte offset of the status code.
        offset: usize,
    },
    /// A header line has no colon, a bad name, or is otherwise malformed.
    #[error("invalid header line at byte {offset}")]
    InvalidHeaderLine {
        /// Byte offset of the start of the line.
        offset: usize,
    },
    /// A header's value does not follow its grammar.
    #[error("invalid {name} header at byte {offset}: {reason}")]
    InvalidHeader {
        /// Canonical name of the header.
        name: &'static str,
        /// Byte offset of the value (in the message, or in the value for typed views).
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A piece of a typed value (URI, parameter, token…) does not follow its grammar.
    #[error("invalid {what} at byte {offset}")]
    Syntax {
        /// What was being parsed, e.g. `"Via sent-protocol"`.
        what: &'static str,
        /// Byte offset within the parsed text.
        offset: usize,
    },
    /// The Request-URI (or another URI) has a scheme this stack does not handle (416).
    #[error("unsupported URI scheme at byte {offset}")]
    UnsupportedUriScheme {
        /// Byte offset of the scheme.
        offset: usize,
    },
    /// A header required by RFC 3261 §8.1.1 is missing.
    #[error("missing {name} header")]
    MissingHeader {
        /// Canonical name of the missing header.
        name: &'static str,
    },
    /// A header that may appear once appears more than once (RFC 3261 §7.3).
    #[error("{name} header repeated")]
    DuplicateHeader {
        /// Canonical name of the header.
        name: &'static str,
    },
    /// The CSeq method differs from the request method (RFC 3261 §8.1.1.5).
    #[error("CSeq method does not match the request method")]
    CSeqMethodMismatch,
    /// Content-Length is not a number, or is out of range.
    #[error("invalid Content-Length at byte {offset}")]
    InvalidContentLength {
        /// Byte offset of the value.
        offset: usize,
    },
    /// The body is shorter than Content-Length says (RFC 3261 §18.3).
    #[error("body is {actual} bytes but Content-Length declares {declared}")]
    ContentLengthMismatch {
        /// The declared length.
        declared: usize,
        /// The bytes actually present.
        actual: usize,
    },
    /// A message on a stream transport has no Content-Length (RFC 3261 §18.3).
    #[error("message on a stream transport without Content-Length")]
    MissingContentLength,
    /// The message exceeds the configured size limit (513).
    #[error("message of {size} bytes exceeds the limit of {limit}")]
    MessageTooLarge {
        /// Size seen so far (or declared).
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The message has more headers than the configured limit.
    #[error("more than {limit} headers")]
    TooManyHeaders {
        /// The configured limit.
        limit: usize,
    },
    /// A header line is longer than the configured limit.
    #[error("header line at byte {offset} longer than {limit} bytes")]
    HeaderLineTooLong {
        /// Byte offset of the line.
        offset: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The Request-URI is longer than the configured limit (414).
    #[error("Request-URI longer than {limit} bytes")]
    UriTooLong {
        /// The configured limit.
        limit: usize,
    },
}

impl Error {
    /// The status code and reason phrase a server should answer a request with when parsing or
    /// validating it failed with this error.
    ///
    /// A response that fails to parse is never answered (it is dropped), but the status still
    /// says how bad the input was.
    ///
    /// ```
    /// use sip_core::Error;
    /// assert_eq!(Error::UnsupportedVersion { offset: 0 }.response_status().0, 505);
    /// assert_eq!(Error::MissingHeader { name: "Call-ID" }.response_status().0, 400);
    /// ```
    pub fn response_status(&self) -> (u16, &'static str) {
        match self {
            Error::UnsupportedVersion { .. } => (505, "Version Not Supported"),
            Error::UnsupportedUriScheme { .. } => (416, "Unsupported URI Scheme"),
            Error::MessageTooLarge { .. } => (513, "Message Too Large"),
            Error::UriTooLong { .. } => (414, "Request-URI Too Long"),
            Error::TooManyHeaders { .. } | Error::HeaderLineTooLong { .. } => {
                (513, "Message Too Large")
            }
            Error::MissingHeader { name } => (400, missing_reason(name)),
            Error::DuplicateHeader { .. } => (400, "Repeated Single-Valued Header"),
            Error::CSeqMethodMismatch => (400, "CSeq Method Mismatch"),
            Error::ContentLengthMismatch { .. }
            | Error::InvalidContentLength { .. }
            | Error::MissingContentLength => (400, "Bad Content-Length"),
            Error::InvalidHeader { .. } => (400, "Bad Header"),
            Error::InvalidMethod { .. } => (400, "Bad Method"),
            _ => (400, "Bad Request"),
        }
    }
}

fn missing_reason(name: &str) -> &'static str {
    match name {
        "To" => "Missing To",
        "From" => "Missing From",
        "Call-ID" => "Missing Call-ID",
        "CSeq" => "Missing CSeq",
        "Via" => "Missing Via",
        _ => "Missing Header",
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
