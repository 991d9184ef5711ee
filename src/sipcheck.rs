//! The verdict `sipcheck` prints for one captured message: parsed and validated, or the
//! response a server should send. Shared by the `sipcheck` example and the conformance tests.

use sip_core::{Message, StartLine};

/// What a generic parse-and-validate says of one datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Parsed and validated.
    Ok {
        /// `"request"` or `"response"` and the method or status.
        start: OkStart,
        /// The Call-ID.
        call_id: String,
        /// Number of header lines.
        headers: usize,
        /// Body length in bytes.
        body_len: usize,
    },
    /// Refused: the status a server should answer (a response is dropped, not answered).
    Err {
        /// Status code, e.g. 400, 505, 513.
        status: u16,
        /// What was wrong.
        error: String,
    },
}

/// The start line of an accepted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OkStart {
    /// A request: method and Request-URI.
    Request {
        /// The method as written.
        method: String,
        /// The Request-URI as written.
        uri: String,
    },
    /// A response: the status code.
    Response {
        /// The status code.
        status: u16,
    },
}

/// Parses one datagram and validates it.
///
/// ```
/// use sip_stack::sipcheck::{check, Verdict};
/// match check(b"SIP/7.0 200 OK\r\n\r\n") {
///     Verdict::Err { status, .. } => assert_eq!(status, 505),
///     other => panic!("{other:?}"),
/// }
/// ```
pub fn check(datagram: &[u8]) -> Verdict {
    let msg = match Message::parse(bytes::Bytes::copy_from_slice(datagram)) {
        Ok(m) => m,
        Err(e) => {
            return Verdict::Err {
                status: e.response_status().0,
                error: e.to_string(),
            }
        }
    };
    if let Err(e) = msg.validate() {
        return Verdict::Err {
            status: e.response_status().0,
            error: e.to_string(),
        };
    }
    let start = match msg.start_line() {
        StartLine::Request { method, uri } => OkStart::Request {
            method: method.as_str().to_owned(),
            uri: uri.to_owned(),
        },
        StartLine::Response { status, .. } => OkStart::Response { status },
    };
    Verdict::Ok {
        start,
        call_id: msg.call_id().unwrap_or_default().to_owned(),
        headers: msg.header_count(),
        body_len: msg.body().len(),
    }
}

/// Writes `s` as a JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Verdict {
    /// Whether the message was accepted.
    pub fn is_ok(&self) -> bool {
        matches!(self, Verdict::Ok { .. })
    }

    /// The one-line JSON object `sipcheck --json` prints for `file`.
    pub fn to_json(&self, file: &str) -> String {
        match self {
            Verdict::Ok {
                start,
                call_id,
                headers,
                body_len,
            } => {
                let start = match start {
                    OkStart::Request { method, uri } => format!(
                        "\"kind\":\"request\",\"method\":{},\"uri\":{}",
                        json_string(method),
                        json_string(uri)
                    ),
                    OkStart::Response { status } => {
                        format!("\"kind\":\"response\",\"status\":{status}")
                    }
                };
                format!(
                    "{{\"file\":{},\"ok\":true,{start},\"call_id\":{},\"headers\":{headers},\"body_len\":{body_len}}}",
                    json_string(file),
                    json_string(call_id)
                )
            }
            Verdict::Err { status, error } => format!(
                "{{\"file\":{},\"ok\":false,\"status\":{status},\"error\":{}}}",
                json_string(file),
                json_string(error)
            ),
        }
    }

    /// The one-line human-readable form `sipcheck` prints for `file`.
    pub fn to_text(&self, file: &str) -> String {
        match self {
            Verdict::Ok {
                start,
                call_id,
                headers,
                body_len,
            } => {
                let s = match start {
                    OkStart::Request { method, uri } => format!("{method} {uri}"),
                    OkStart::Response { status } => format!("response {status}"),
                };
                format!(
                    "{file}: ok: {s} (Call-ID {call_id}, {headers} headers, {body_len}-byte body)"
                )
            }
            Verdict::Err { status, error } => format!("{file}: REJECT {status}: {error}"),
        }
    }
}
