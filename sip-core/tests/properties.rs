//! Property tests of the message layer: generated valid messages round-trip (parse → serialise
//! → parse equal, with the values they were generated from); arbitrary bytes never panic any
//! parser, accessor or editor; the stream framer gives the same frames whatever the chunking.

use bytes::Bytes;
use proptest::prelude::*;
use sip_core::framer::{Frame, Framer};
use sip_core::{HeaderName, Limits, Message, Method};

const METHODS: &[&str] = &[
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "REGISTER",
    "OPTIONS",
    "MESSAGE",
    "SUBSCRIBE",
    "NOTIFY",
    "PUBLISH",
    "INFO",
    "UPDATE",
    "PRACK",
    "REFER",
    "FOO-BAR",
    "x.y",
];

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9.!%*_+`'~-]{0,12}"
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]([a-z0-9-]{0,8}[a-z0-9])?(\\.[a-z][a-z0-9]{0,6}){0,3}",
        (1u8..=254, 0u8..=255, 0u8..=255, 1u8..=254)
            .prop_map(|(a, b, c, d)| format!("{a}.{b}.{c}.{d}")),
        any::<[u16; 8]>().prop_map(|s| format!("[{}]", std::net::Ipv6Addr::from(s))),
    ]
}

fn port() -> impl Strategy<Value = Option<u16>> {
    proptest::option::of(1u16..=65535)
}

fn uri() -> impl Strategy<Value = String> {
    ("[a-z][a-z0-9._-]{0,10}", host(), port()).prop_map(|(user, host, port)| match port {
        Some(p) => format!("sip:{user}@{host}:{p}"),
        None => format!("sip:{user}@{host}"),
    })
}

/// An extension header name that does not collide with a known one.
fn ext_name() -> impl Strategy<Value = String> {
    "X-[A-Za-z0-9-]{1,12}"
}

/// A header value: visible characters and inner spaces, no leading or trailing space.
fn ext_value() -> impl Strategy<Value = String> {
    "[!-~]([ -~]{0,30}[!-~])?"
}

#[derive(Debug, Clone)]
struct Generated {
    method: String,
    uri: String,
    vias: Vec<(String, Option<u16>, String)>,
    from_tag: String,
    to_uri: String,
    call_id: String,
    cseq: u32,
    max_forwards: u8,
    extra: Vec<(String, String)>,
    body: Vec<u8>,
    compact: bool,
}

fn generated() -> impl Strategy<Value = Generated> {
    (
        (
            0..METHODS.len(),
            uri(),
            proptest::collection::vec((host(), port(), token()), 1..4),
        ),
        (token(), uri(), "[a-zA-Z0-9]{1,20}(@[a-z0-9.]{1,10})?"),
        (
            any::<u32>(),
            any::<u8>(),
            proptest::collection::vec((ext_name(), ext_value()), 0..6),
        ),
        (
            proptest::collection::vec(any::<u8>(), 0..200),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (m, uri, vias),
                (from_tag, to_uri, call_id),
                (cseq, max_forwards, extra),
                (body, compact),
            )| {
                Generated {
                    method: METHODS[m].to_owned(),
                    uri,
                    vias,
                    from_tag,
                    to_uri,
                    call_id,
                    cseq,
                    max_forwards,
                    extra,
                    body,
                    compact,
                }
            },
        )
}

impl Generated {
    fn wire(&self) -> Vec<u8> {
        let (v, f, t, i, l) = if self.compact {
            ("v", "f", "t", "i", "l")
        } else {
            ("Via", "From", "To", "Call-ID", "Content-Length")
        };
        let mut s = format!("{} {} SIP/2.0\r\n", self.method, self.uri);
        for (host, port, branch) in &self.vias {
            let sent_by = match port {
                Some(p) => format!("{host}:{p}"),
                None => host.clone(),
            };
            s += &format!("{v}: SIP/2.0/UDP {sent_by};branch=z9hG4bK{branch}\r\n");
        }
        s += &format!("{f}: <sip:alice@example.com>;tag={}\r\n", self.from_tag);
        s += &format!("{t}: <{}>\r\n", self.to_uri);
        s += &format!("{i}: {}\r\n", self.call_id);
        s += &format!("CSeq: {} {}\r\n", self.cseq, self.method);
        s += &format!("Max-Forwards: {}\r\n", self.max_forwards);
        for (n, val) in &self.extra {
            s += &format!("{n}: {val}\r\n");
        }
        s += &format!("{l}: {}\r\n\r\n", self.body.len());
        let mut out = s.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The tag scan a response builder and the proxy use agrees with the full parse on every
    /// value the parser accepts: display names (quoted, with `;`, `<`, `tag=` and escapes),
    /// URI parameters named tag, addr-specs, header parameters in any order and case.
    #[test]
    fn tag_scan_agrees_with_the_parse(
        display in prop_oneof![
            Just(String::new()),
            token().prop_map(|t| format!("{t} ")),
            "[a-z ;<>=,tag]{0,10}".prop_map(|t| format!("\"{t}\" ")),
            Just("\"a\\\"<;tag=q\" ".to_owned()),
        ],
        user in token(),
        h in host(),
        uri_tag in proptest::option::of(token()),
        angle in any::<bool>(),
        params in proptest::collection::vec(
            (prop_oneof![Just("tag".to_owned()), Just("TAG".to_owned()), token()],
             proptest::option::of(token())),
            0..4,
        ),
    ) {
        let uri = match (&uri_tag, angle) {
            (Some(t), true) => format!("sip:{user}@{h};tag={t}"),
            _ => format!("sip:{user}@{h}"),
        };
        let mut v = if angle || !display.is_empty() {
            format!("{display}<{uri}>")
        } else {
            uri
        };
        for (n, val) in &params {
            v.push(';');
            v.push_str(n);
            if let Some(val) = val {
                v.push('=');
                v.push_str(val);
            }
        }
        if let Ok(parsed) = sip_core::addr::NameAddr::parse(&v) {
            prop_assert_eq!(sip_core::addr::tag_param(&v), parsed.tag(), "{}", v);
        }
    }

    /// `header_param` finds what splitting the list at every `;` and comparing trimmed names
    /// finds.
    #[test]
    fn header_param_is_the_first_matching_pair(
        params in prop::collection::vec(("[a-zA-Z]{1,6}", prop::option::of("[a-z0-9 =]{0,5}"), "[ ]{0,2}"), 0..6),
        name in "[a-zA-Z]{1,6}",
    ) {
        let mut list = String::new();
        for (i, (n, v, lws)) in params.iter().enumerate() {
            if i > 0 {
                list.push(';');
            }
            list.push_str(lws);
            list.push_str(n);
            if let Some(v) = v {
                list.push('=');
                list.push_str(v);
            }
        }
        let reference = list.split(';').find_map(|p| {
            let p = p.trim_ascii_start();
            let (n, v) = match p.find('=') {
                Some(i) => (p[..i].trim_ascii_end(), p[i + 1..].trim_ascii()),
                None => (p.trim_ascii_end(), ""),
            };
            n.eq_ignore_ascii_case(&name).then_some(v)
        });
        prop_assert_eq!(sip_core::addr::header_param(&list, &name), reference, "{}", list);
    }

    #[test]
    fn generated_messages_parse_validate_and_round_trip(g in generated()) {
        let wire = g.wire();
        let m = Message::parse(wire.clone()).unwrap();
        m.validate().unwrap();
        prop_assert_eq!(m.method().unwrap().as_str(), g.method.as_str());
        prop_assert_eq!(m.uri_str(), Some(g.uri.as_str()));
        prop_assert_eq!(m.call_id(), Some(g.call_id.as_str()));
        let cseq = m.cseq().unwrap();
        prop_assert_eq!(cseq.seq, g.cseq);
        prop_assert_eq!(cseq.method, Method::from_token(&g.method));
        prop_assert_eq!(m.max_forwards().unwrap().unwrap(), g.max_forwards);
        prop_assert_eq!(m.from().unwrap().tag(), Some(g.from_tag.as_str()));
        prop_assert_eq!(m.to().unwrap().uri_str(), g.to_uri.as_str());
        let vias: Vec<_> = m.vias().map(Result::unwrap).collect();
        prop_assert_eq!(vias.len(), g.vias.len());
        for (via, (_, port, branch)) in vias.iter().zip(&g.vias) {
            prop_assert_eq!(via.sent_by_port(), *port);
            let want = format!("z9hG4bK{branch}");
            prop_assert_eq!(via.branch(), Some(want.as_str()));
        }
        for (n, v) in &g.extra {
            prop_assert!(m.headers_named(n).any(|x| x == v.as_bytes()));
        }
        prop_assert_eq!(m.body(), &g.body[..]);
        // Unedited: serialising gives back the same bytes.
        prop_assert_eq!(&m.to_bytes()[..], &wire[..]);
        let again = Message::parse(m.to_bytes()).unwrap();
        prop_assert_eq!(&again, &m);
    }

    /// A response is indexed as it is written (no second parse); the index must be exactly
    /// what parsing its bytes gives, header by header, whatever the request and the lines added.
    #[test]
    fn built_responses_index_as_parsing_does(
        g in generated(),
        status in 100u16..700,
        tag in proptest::option::of("[A-Za-z0-9.-]{1,16}"),
        extra in proptest::collection::vec((ext_name(), "([ -~]{0,30})"), 0..4),
        body in proptest::option::of("[ -~]{0,40}"),
    ) {
        let req = Message::parse(g.wire()).unwrap();
        let mut b = req.response(status);
        if let Some(t) = &tag {
            b = b.to_tag(t);
        }
        for (n, v) in &extra {
            b = b.header(n, v);
        }
        if let Some(body) = &body {
            b = b.body("text/plain", body.clone().into_bytes());
        }
        let built = b.build().unwrap();
        let parsed = Message::parse(built.to_bytes()).unwrap();
        prop_assert_eq!(&parsed, &built);
        let raw = |m: &Message| m.headers().map(|h| (h.raw_name.to_vec(), h.value.to_vec())).collect::<Vec<_>>();
        prop_assert_eq!(raw(&parsed), raw(&built));
        prop_assert_eq!(parsed.to_bytes(), built.to_bytes());
        built.validate().unwrap();
    }

    #[test]
    fn edits_round_trip(g in generated(), name in ext_name(), value in ext_value()) {
        let mut m = Message::parse(g.wire()).unwrap();
        m.push_via("SIP/2.0/TCP proxy.example.com;branch=z9hG4bKedit").unwrap();
        m.append_header(&name, &value).unwrap();
        m.push_record_route("<sip:proxy.example.com;lr>").unwrap();
        let top = m.pop_via().unwrap();
        prop_assert_eq!(top.as_str(), "SIP/2.0/TCP proxy.example.com;branch=z9hG4bKedit");
        m.set_body(Bytes::from_static(b"new body"), Some("text/plain")).unwrap();
        let again = Message::parse(m.to_bytes()).unwrap();
        again.validate().unwrap();
        prop_assert_eq!(&again, &m);
        prop_assert_eq!(again.body(), b"new body");
        prop_assert_eq!(again.vias().count(), g.vias.len());
        prop_assert!(again.headers_named(&name).any(|x| x == value.as_bytes()));
        prop_assert_eq!(again.record_routes().count(), 1);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        exercise(&data);
    }

    #[test]
    fn mutated_messages_never_panic(g in generated(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut wire = g.wire();
        for (at, byte) in flips {
            let i = at % wire.len();
            wire[i] = byte;
        }
        exercise(&wire);
    }

    #[test]
    fn framer_is_chunking_independent(
        msgs in proptest::collection::vec(generated(), 1..4),
        pings in proptest::collection::vec(any::<bool>(), 4),
        cuts in proptest::collection::vec(1usize..64, 1..40),
    ) {
        let mut stream = Vec::new();
        for (i, g) in msgs.iter().enumerate() {
            if pings[i % pings.len()] {
                stream.extend_from_slice(b"\r\n\r\n");
            }
            stream.extend_from_slice(&g.wire());
        }
        let whole = frames(&[&stream[..]]);
        let mut chunks = Vec::new();
        let mut rest = &stream[..];
        for c in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (a, b) = rest.split_at((*c).min(rest.len()));
            chunks.push(a);
            rest = b;
        }
        let chunked = frames(&chunks);
        prop_assert_eq!(&whole, &chunked);
        let n_msgs = whole.iter().filter(|f| matches!(f, Frame::Message(_))).count();
        prop_assert_eq!(n_msgs, msgs.len());
        for (frame, g) in whole.iter().filter_map(|f| match f { Frame::Message(m) => Some(m), _ => None }).zip(&msgs) {
            prop_assert_eq!(frame.body(), &g.body[..]);
        }
    }
}

fn frames(chunks: &[&[u8]]) -> Vec<Frame> {
    let mut f = Framer::new(Limits::default());
    let mut out = Vec::new();
    for c in chunks {
        f.push(c).unwrap();
        while let Some(frame) = f.next_frame().unwrap() {
            out.push(frame);
        }
    }
    assert_eq!(f.buffered(), 0);
    out
}

/// Parses and reads everything; must never panic. What parses must also round-trip.
fn exercise(data: &[u8]) {
    if let Ok(m) = Message::parse(data.to_vec()) {
        let _ = m.validate();
        let _ = m.request_uri();
        let _ = m.cseq();
        let _ = m.vias().count();
        let _ = m.from();
        let _ = m.to();
        let _ = m.contacts().count();
        let _ = m.routes().count();
        let _ = m.max_forwards();
        let _ = m.content_type();
        let _ = m.expires();
        let _ = m.challenge(HeaderName::WwwAuthenticate);
        let _ = m.credentials(HeaderName::Authorization);
        let _ = format!("{m:?}{m}");
        let again = Message::parse(m.to_bytes()).expect("serialised message parses");
        assert_eq!(again, m);
        let mut e = m.clone();
        let _ = e.pop_via();
        let _ = e.pop_route();
        let _ = e.response(200).build();
        let again = Message::parse(e.to_bytes()).expect("edited message parses");
        assert_eq!(again, e);
    }
    let mut f = Framer::new(Limits {
        max_message_size: 1024,
        ..Limits::default()
    });
    if f.push(data).is_ok() {
        while let Ok(Some(_)) = f.next_frame() {}
    }
}
