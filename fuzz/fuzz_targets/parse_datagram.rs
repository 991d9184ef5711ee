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
    let _ = m.max_forwards();
    let _ = m.content_type();
    let _ = m.expires();
    let _ = m.challenge(HeaderName::WwwAuthenticate);
    let _ = m.credentials(HeaderName::Authorization);
    let _ = m.to_bytes();
});
