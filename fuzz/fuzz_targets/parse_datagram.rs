//! Any datagram: parse, validate and read every typed view. Must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sip_core::{HeaderName, Message};

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Message::parse(bytes::Bytes::copy_from_slice(data)) else {
        return;
    };
    let _ = m.validate();
    let _ = m.request_uri();
    let _ = m.cseq();
    // The first Via as `via()` reads it is the first of `vias()`.
    assert_eq!(m.via().ok(), m.vias().next().and_then(Result::ok));
    // `values` (one pass per line, single values not split) gives what splitting every line
    // gives.
    for name in [HeaderName::Via, HeaderName::Contact, HeaderName::Route, HeaderName::Allow] {
        let reference: Vec<&str> = m
            .header_lines(name)
            .filter_map(|v| std::str::from_utf8(v).ok())
            .flat_map(sip_core::text::split_values)
            .collect();
        assert_eq!(m.values(name).collect::<Vec<_>>(), reference);
    }
    for v in m.vias() {
        let _ = v.map(|v| (v.branch(), v.received(), v.rport()));
    }
    let _ = m.from().map(|a| a.tag().map(str::len));
    let _ = m.to().map(|a| a.display_name().map(str::len));
    for c in m.contacts() {
        let _ = c;
    }
    for r in m.routes() {
        let _ = r;
    }
    let _ = m.refer_to().map(|r| r.map(|a| a.uri_str().len()));
    let _ = m.referred_by();
    for a in m.asserted_identities() {
        let _ = a;
    }
    let _ = m.max_forwards();
    let _ = m.content_type();
    let _ = m.expires();
    let _ = m.challenge(HeaderName::WwwAuthenticate);
    let _ = m.credentials(HeaderName::Authorization);
    let _ = m.to_bytes();
});
