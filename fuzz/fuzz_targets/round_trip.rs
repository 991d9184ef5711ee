//! What parses serialises to bytes that parse to an equal message, also after proxy edits.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sip_core::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Message::parse(bytes::Bytes::copy_from_slice(data)) else {
        return;
    };
    let again = Message::parse(m.to_bytes()).expect("serialised message parses");
    assert_eq!(again, m);
    let mut edited = m.clone();
    if edited.push_via("SIP/2.0/UDP fuzz.example;branch=z9hG4bKfuzz").is_ok() {
        let _ = edited.pop_route();
        let out = Message::parse(edited.to_bytes()).expect("edited message parses");
        assert_eq!(out, edited);
    }
});
