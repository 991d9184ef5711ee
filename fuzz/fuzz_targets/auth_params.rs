//! Fuzzes the digest header parsers of `sip_core::auth` (WWW-Authenticate / Proxy-Authenticate,
//! Authorization / Proxy-Authorization, Authentication-Info): no input may panic, and whatever
//! parses must survive a write and re-parse unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sip_core::auth::{AuthenticationInfo, Challenge, Credentials};

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = Challenge::parse_bytes(data) {
        let text = c.to_string();
        let again = Challenge::parse(&text).expect("written challenge parses");
        assert_eq!(again, c, "challenge round trip: {text}");
    }
    if let Ok(c) = Credentials::parse_bytes(data) {
        let text = c.to_string();
        let again = Credentials::parse(&text).expect("written credentials parse");
        assert_eq!(again, c, "credentials round trip: {text}");
    }
    if let Ok(a) = AuthenticationInfo::parse_bytes(data) {
        let text = a.to_string();
        let again = AuthenticationInfo::parse(&text).expect("written Authentication-Info parses");
        assert_eq!(again, a, "Authentication-Info round trip: {text}");
    }
});
