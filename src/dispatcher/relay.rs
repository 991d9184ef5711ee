//! The dispatcher's hot path (RFC 3261 §16.11): a forwarded request or response is written
//! straight from the received message into one reused buffer (start line, our Via or none,
//! the lines added, every other line as received), without copying the message, editing it
//! and serialising the copy. Only what stateless forwarding uses is looked at: the top Via,
//! Max-Forwards, the top Route, the fields of the branch.
//!
//! The branch is stateless-safe as §16.11 recommends: `z9hG4bKdx.<loop>.<unique>`, where
//! `<unique>` hashes the received top Via's branch (with the magic cookie; else the top Via,
//! the tags, Call-ID, CSeq number and Request-URI), so a retransmission, its CANCEL and the
//! ACK of a non-2xx answer all get the branch of their INVITE; `<loop>` hashes what decides
//! where the dispatcher sends the request (Request-URI, Call-ID, CSeq number, From tag, Route,
//! Proxy-Require), and a request that comes back with a Via carrying the same `<loop>` has
//! looped (§16.3 step 4: 482), while one that spirals (a node sending it back along a Path:
//! another Request-URI and Route) has not.

use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::LazyLock;

use bytes::{BufMut, Bytes, BytesMut};
use memchr::memmem::Finder;
use sip_core::via::Via;
use sip_core::{HeaderName, Message, Transport};

/// Our branch prefix (`z9hG4bK` and a marker).
pub const BRANCH_PREFIX: &str = "z9hG4bKdx.";

/// The prefix of the proxy core's stateless branches (the dispatcher's slow path uses it).
const CORE_PREFIX: &str = "z9hG4bKsp.";

/// Searchers built once (building one per message cost more than the search).
static TAG: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b";tag="));
static BRANCH: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"branch="));
static OURS: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(BRANCH_PREFIX.as_bytes()));

fn hasher() -> impl Hasher {
    // Fixed seed: the same request gets the same branch in every process and after a restart.
    foldhash::quality::FixedState::with_seed(0x6473_702d_7265_6c61).build_hasher()
}

/// The `tag` parameter of a From or To value, found by a byte scan (enough for hashing: the
/// same header gives the same tag).
fn tag_of(v: &[u8]) -> &[u8] {
    let Some(i) = TAG.find(v) else {
        return &[];
    };
    let rest = &v[i + 5..];
    let end = rest
        .iter()
        .position(|b| matches!(b, b';' | b',' | b' ' | b'\t' | b'>'))
        .unwrap_or(rest.len());
    &rest[..end]
}

/// The CSeq number (its first token).
fn cseq_number(req: &Message) -> &[u8] {
    let v = req.header_bytes(HeaderName::CSeq).unwrap_or_default();
    let end = v
        .iter()
        .position(|b| b.is_ascii_whitespace())
        .unwrap_or(v.len());
    &v[..end]
}

/// The first value of a list header line and the rest after its comma (commas inside quoted
/// strings do not count).
fn split_first(line: &[u8]) -> (&[u8], Option<&[u8]>) {
    let Some(comma) = memchr::memchr(b',', line) else {
        return (line, None);
    };
    if memchr::memchr(b'"', &line[..comma]).is_none() {
        return (
            line[..comma].trim_ascii_end(),
            Some(line[comma + 1..].trim_ascii()),
        );
    }
    let mut quoted = false;
    let mut i = 0;
    while i < line.len() {
        match line[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                let rest = line[i + 1..].trim_ascii();
                return (line[..i].trim_ascii_end(), Some(rest));
            }
            _ => {}
        }
        i += 1;
    }
    (line, None)
}

/// The first value of the first Via line, and the values after it on that line.
fn top_via(msg: &Message) -> Option<(&[u8], Option<&[u8]>)> {
    msg.header_bytes(HeaderName::Via).map(split_first)
}

/// The `branch` parameter of a Via value, by a byte scan.
fn branch_of(via: &[u8]) -> Option<&[u8]> {
    let i = BRANCH.find(via)?;
    let rest = &via[i + 7..];
    let end = rest
        .iter()
        .position(|b| matches!(b, b';' | b',' | b' ' | b'\t'))
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

/// The branch of a message's top Via, by a byte scan.
pub fn top_branch(msg: &Message) -> Option<&[u8]> {
    branch_of(top_via(msg)?.0)
}

/// The loop part: what decides where the dispatcher sends the request (§16.3 step 4).
pub fn loop_hash(req: &Message) -> u64 {
    let mut h = hasher();
    h.write(req.uri_str().unwrap_or_default().as_bytes());
    h.write_u8(0);
    h.write(req.header_bytes(HeaderName::CallId).unwrap_or_default());
    h.write_u8(0);
    h.write(cseq_number(req));
    h.write_u8(0);
    h.write(tag_of(
        req.header_bytes(HeaderName::From).unwrap_or_default(),
    ));
    for name in [HeaderName::Route, HeaderName::ProxyRequire] {
        for v in req.header_lines(name) {
            h.write_u8(1);
            h.write(v);
        }
    }
    h.finish()
}

/// The unique part (§16.11): the received branch when it has the magic cookie, else the
/// fields that tell transactions apart.
pub fn unique_hash(req: &Message) -> u64 {
    let mut h = hasher();
    let via = top_via(req).map(|(v, _)| v).unwrap_or_default();
    match branch_of(via).filter(|b| b.starts_with(b"z9hG4bK")) {
        Some(b) => h.write(b),
        None => {
            h.write(via);
            h.write_u8(0);
            h.write(tag_of(req.header_bytes(HeaderName::To).unwrap_or_default()));
            h.write_u8(0);
            h.write(tag_of(
                req.header_bytes(HeaderName::From).unwrap_or_default(),
            ));
            h.write_u8(0);
            h.write(req.header_bytes(HeaderName::CallId).unwrap_or_default());
            h.write_u8(0);
            h.write(cseq_number(req));
            h.write_u8(0);
            h.write(req.uri_str().unwrap_or_default().as_bytes());
        }
    }
    h.finish()
}

fn hex16(v: u64) -> [u8; 16] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut d = [0u8; 16];
    for (i, c) in d.iter_mut().enumerate() {
        *c = HEX[((v >> (60 - 4 * i)) & 15) as usize];
    }
    d
}

fn put_hex(out: &mut BytesMut, v: u64) {
    out.put_slice(&hex16(v));
}

/// §16.3 step 4: a Via of ours with the same loop part means the request came back unchanged
/// in what decides its routing.
pub fn looped(req: &Message, loop_part: u64) -> bool {
    let hex = hex16(loop_part);
    req.header_lines(HeaderName::Via).any(|v| {
        OURS.find_iter(v).any(|i| {
            v.get(i + BRANCH_PREFIX.len()..)
                .is_some_and(|rest| rest.starts_with(&hex) && rest.get(16) == Some(&b'.'))
        })
    })
}

/// What the dispatcher does to a request it forwards.
pub struct RequestEdits<'a> {
    /// Transport of the Via we add.
    pub transport: Transport,
    /// Our sent-by.
    pub sent_by: &'a str,
    /// The two parts of our branch.
    pub branch: (u64, u64),
    /// The new Max-Forwards.
    pub max_forwards: u32,
    /// Route lines removed from the top (each holds one value: see [`single_valued`]).
    pub pop_routes: usize,
    /// Lines added after our Via (`Path`, `Record-Route`, `Require`): above every line of
    /// the same name, so they are the topmost values.
    pub add: &'a [(&'a str, &'a str)],
}

/// Whether the first `n` Route lines each hold one value (so dropping a line pops a value).
pub fn single_valued(req: &Message, name: HeaderName, n: usize) -> bool {
    req.header_lines(name)
        .take(n)
        .all(|v| memchr::memchr(b',', v).is_none())
}

fn put_line(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

/// Writes the forwarded request into `buf` and returns it (the buffer keeps its capacity for
/// the next message once this one is sent).
pub fn write_request(buf: &mut BytesMut, req: &Message, e: &RequestEdits<'_>) -> Bytes {
    buf.reserve(req.source().len() + 256);
    buf.put_slice(
        req.method()
            .map(|m| m.as_str())
            .unwrap_or_default()
            .as_bytes(),
    );
    buf.put_u8(b' ');
    buf.put_slice(req.uri_str().unwrap_or_default().as_bytes());
    buf.put_slice(b" SIP/2.0\r\nVia: SIP/2.0/");
    buf.put_slice(e.transport.as_str().as_bytes());
    buf.put_u8(b' ');
    buf.put_slice(e.sent_by.as_bytes());
    buf.put_slice(b";branch=");
    buf.put_slice(BRANCH_PREFIX.as_bytes());
    put_hex(buf, e.branch.0);
    buf.put_u8(b'.');
    put_hex(buf, e.branch.1);
    buf.put_slice(b"\r\n");
    for (name, value) in e.add {
        put_line(buf, name.as_bytes(), value.as_bytes());
    }
    let mf = Digits::new(e.max_forwards);
    let mut mf_written = false;
    let mut routes_left = e.pop_routes;
    for h in req.headers() {
        match h.name {
            HeaderName::Route if routes_left > 0 => routes_left -= 1,
            HeaderName::MaxForwards if !mf_written => {
                put_line(buf, h.raw_name, mf.as_slice());
                mf_written = true;
            }
            HeaderName::MaxForwards => {}
            _ => put_line(buf, h.raw_name, h.value),
        }
    }
    if !mf_written {
        put_line(buf, b"Max-Forwards", mf.as_slice());
    }
    buf.put_slice(b"\r\n");
    buf.put_slice(req.body());
    buf.split().freeze()
}

/// Up to ten decimal digits on the stack.
struct Digits {
    buf: [u8; 10],
    start: usize,
}

impl Digits {
    fn new(mut n: u32) -> Digits {
        let mut buf = [0u8; 10];
        let mut i = buf.len();
        loop {
            i -= 1;
            buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        Digits { buf, start: i }
    }

    fn as_slice(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

/// Whether a response's top Via is one of ours (our branch prefix, a sent-by among `ours`);
/// `None` without a Via.
pub fn response_is_ours(resp: &Message, ours: &[String]) -> Option<bool> {
    let (via, _) = top_via(resp)?;
    let branch = branch_of(via).unwrap_or_default();
    if !(branch.starts_with(BRANCH_PREFIX.as_bytes()) || branch.starts_with(CORE_PREFIX.as_bytes()))
    {
        return Some(false);
    }
    // `SIP/2.0/UDP host:port;params`: the sent-by is between the space and the first `;`.
    let start = memchr::memchr(b' ', via).map_or(via.len(), |i| i + 1);
    let rest = via.get(start..).unwrap_or_default().trim_ascii_start();
    let end = memchr::memchr(b';', rest).unwrap_or(rest.len());
    let sent_by = rest[..end].trim_ascii_end();
    Some(ours.iter().any(|o| o.as_bytes() == sent_by))
}

/// Where a response goes after our Via (§18.2.2 on the next Via: `received`, `rport`, else
/// the sent-by); `None` when there is no next Via or it names a host (no DNS here).
pub fn upstream(resp: &Message) -> Option<(Transport, SocketAddr)> {
    let next = resp.values(HeaderName::Via).nth(1)?;
    let v = Via::parse(next).ok()?;
    let transport = Transport::from_name(v.transport()).unwrap_or(Transport::Udp);
    let port = v
        .rport()
        .flatten()
        .or(v.sent_by_port())
        .unwrap_or(transport.default_port());
    let host = v.host_str().trim_start_matches('[').trim_end_matches(']');
    let ip = v.received_addr().or_else(|| host.parse::<IpAddr>().ok())?;
    Some((transport, SocketAddr::new(ip, port)))
}

/// Writes a response without its top Via value into `buf` and returns it (the first Via line
/// goes, or keeps the values after its first).
pub fn write_response(buf: &mut BytesMut, resp: &Message) -> Bytes {
    buf.reserve(resp.source().len() + 64);
    buf.put_slice(b"SIP/2.0 ");
    buf.put_slice(Digits::new(u32::from(resp.status().unwrap_or(500))).as_slice());
    buf.put_u8(b' ');
    buf.put_slice(resp.reason().unwrap_or_default().as_bytes());
    buf.put_slice(b"\r\n");
    let mut skipped = false;
    for h in resp.headers() {
        if h.name == HeaderName::Via && !skipped {
            skipped = true;
            if let (_, Some(rest)) = split_first(h.value) {
                put_line(buf, h.raw_name, rest);
            }
            continue;
        }
        put_line(buf, h.raw_name, h.value);
    }
    buf.put_slice(b"\r\n");
    buf.put_slice(resp.body());
    buf.split().freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(s: &str) -> Message {
        Message::parse(s.replace('\n', "\r\n").into_bytes()).unwrap()
    }

    fn invite(method: &str, to_tag: &str, branch: &str) -> Message {
        msg(&format!(
            "{method} sip:bob@example.com SIP/2.0\n\
             Via: SIP/2.0/UDP 192.0.2.9:5060;branch={branch};rport\n\
             Max-Forwards: 70\nFrom: \"A\" <sip:alice@example.com>;tag=fa\n\
             To: <sip:bob@example.com>{to_tag}\nCall-ID: c1\nCSeq: 1 {method}\n\
             Content-Length: 3\n\nabc"
        ))
    }

    #[test]
    fn branch_stable_for_cancel_and_non_2xx_ack_and_differs_per_transaction() {
        let inv = invite("INVITE", "", "z9hG4bKa1");
        let b = (loop_hash(&inv), unique_hash(&inv));
        let cancel = invite("CANCEL", "", "z9hG4bKa1");
        let ack = invite("ACK", ";tag=t9", "z9hG4bKa1");
        assert_eq!((loop_hash(&cancel), unique_hash(&cancel)), b);
        assert_eq!((loop_hash(&ack), unique_hash(&ack)), b);
        let other = invite("INVITE", "", "z9hG4bKa2");
        assert_ne!(unique_hash(&other), b.1);
        // Without the magic cookie the fields of §16.11 decide.
        let old = invite("INVITE", "", "old1");
        let old_ack = invite("ACK", ";tag=t9", "old1");
        assert_ne!(unique_hash(&old), unique_hash(&old_ack));
        assert_eq!(
            unique_hash(&old),
            unique_hash(&invite("INVITE", "", "old1"))
        );
    }

    #[test]
    fn request_written_with_via_max_forwards_routes_and_added_lines() {
        let req = msg("INVITE sip:bob@10.0.0.9 SIP/2.0\n\
             Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKa1\n\
             Route: <sip:tok@192.0.2.1:5060;lr;ob>\nRoute: <sip:n1.example.com;lr>\n\
             Max-Forwards: 9\nFrom: <sip:a@x>;tag=1\nTo: <sip:b@y>\nCall-ID: c\n\
             CSeq: 1 INVITE\nContent-Length: 3\n\nabc");
        let mut buf = BytesMut::new();
        let out = write_request(
            &mut buf,
            &req,
            &RequestEdits {
                transport: Transport::Udp,
                sent_by: "192.0.2.1:5060",
                branch: (0xab, 0xcd),
                max_forwards: 8,
                pop_routes: 1,
                add: &[("Record-Route", "<sip:tok@192.0.2.1:5060;lr;ob>")],
            },
        );
        let m = Message::parse(out.clone()).unwrap();
        m.validate().unwrap();
        assert_eq!(
            m.header(HeaderName::Via),
            Some("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKdx.00000000000000ab.00000000000000cd")
        );
        assert_eq!(m.count(HeaderName::Via), 2);
        assert_eq!(m.header(HeaderName::MaxForwards), Some("8"));
        let routes: Vec<&str> = m.values(HeaderName::Route).collect();
        assert_eq!(routes, vec!["<sip:n1.example.com;lr>"]);
        assert_eq!(
            m.header(HeaderName::RecordRoute),
            Some("<sip:tok@192.0.2.1:5060;lr;ob>")
        );
        assert_eq!(m.body(), b"abc");
        // A request without Max-Forwards gets one.
        let bare = msg("OPTIONS sip:b@y SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bKq\nFrom: <sip:a@x>;tag=1\nTo: <sip:b@y>\nCall-ID: c\nCSeq: 1 OPTIONS\n\n");
        let out = write_request(
            &mut buf,
            &bare,
            &RequestEdits {
                transport: Transport::Tcp,
                sent_by: "192.0.2.1:5060",
                branch: (1, 2),
                max_forwards: 70,
                pop_routes: 0,
                add: &[],
            },
        );
        let m = Message::parse(out).unwrap();
        assert_eq!(m.header(HeaderName::MaxForwards), Some("70"));
        assert!(m
            .header(HeaderName::Via)
            .unwrap()
            .starts_with("SIP/2.0/TCP "));
    }

    #[test]
    fn loop_detected_by_our_via_with_the_same_loop_part() {
        let req = invite("INVITE", "", "z9hG4bKa1");
        let l = loop_hash(&req);
        assert!(!looped(&req, l));
        let mut buf = BytesMut::new();
        let edits = RequestEdits {
            transport: Transport::Udp,
            sent_by: "192.0.2.1:5060",
            branch: (l, unique_hash(&req)),
            max_forwards: 69,
            pop_routes: 0,
            add: &[],
        };
        let back = Message::parse(write_request(&mut buf, &req, &edits)).unwrap();
        // Came back with the same Request-URI, Route, Call-ID…: a loop.
        assert!(looped(&back, loop_hash(&back)));
        // A spiral: another Request-URI (a node sending it on to the registered contact).
        let mut spiral = back.clone();
        spiral.set_request_uri("sip:bob@10.0.0.9").unwrap();
        assert!(!looped(&spiral, loop_hash(&spiral)));
    }

    #[test]
    fn response_our_via_dropped_and_upstream_found() {
        let resp = msg("SIP/2.0 180 Ringing\n\
             Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKdx.1.2\n\
             Via: SIP/2.0/UDP 10.0.0.9:5070;rport=40000;received=203.0.113.9;branch=z9hG4bKa\n\
             From: <sip:a@x>;tag=1\nTo: <sip:b@y>;tag=2\nCall-ID: c\nCSeq: 1 INVITE\n\
             Content-Length: 0\n\n");
        assert_eq!(
            response_is_ours(&resp, &["192.0.2.1:5060".into()]),
            Some(true)
        );
        assert_eq!(
            response_is_ours(&resp, &["192.0.2.2:5060".into()]),
            Some(false)
        );
        assert_eq!(
            upstream(&resp),
            Some((Transport::Udp, "203.0.113.9:40000".parse().unwrap()))
        );
        let mut buf = BytesMut::new();
        let m = Message::parse(write_response(&mut buf, &resp)).unwrap();
        assert_eq!(m.status(), Some(180));
        assert_eq!(m.reason(), Some("Ringing"));
        assert_eq!(m.count(HeaderName::Via), 1);
        assert!(m.header(HeaderName::Via).unwrap().contains("10.0.0.9:5070"));
        // Vias folded into one line: the first value goes, the rest stays.
        let folded = msg(
            "SIP/2.0 200 OK\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKdx.1.2 , SIP/2.0/UDP 192.0.2.8;x=\"a,b\";branch=z9hG4bKa,SIP/2.0/UDP h;branch=z9hG4bKb\n\
             From: <sip:a@x>;tag=1\nTo: <sip:b@y>;tag=2\nCall-ID: c\nCSeq: 1 INVITE\n\n",
        );
        assert_eq!(
            response_is_ours(&folded, &["192.0.2.1:5060".into()]),
            Some(true)
        );
        assert_eq!(
            upstream(&folded),
            Some((Transport::Udp, "192.0.2.8:5060".parse().unwrap()))
        );
        let m = Message::parse(write_response(&mut buf, &folded)).unwrap();
        let vias: Vec<&str> = m.values(HeaderName::Via).collect();
        assert_eq!(
            vias,
            vec![
                "SIP/2.0/UDP 192.0.2.8;x=\"a,b\";branch=z9hG4bKa",
                "SIP/2.0/UDP h;branch=z9hG4bKb"
            ]
        );
    }
}
