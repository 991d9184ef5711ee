//! Any string as a URI and as a name-addr: never panics; what parses re-serialises to a
//! string that parses to the same URI.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sip_core::addr::NameAddr;
use sip_core::uri::Uri;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(u) = Uri::parse(s) {
        let _ = (u.user_decoded(), u.host(), u.port(), u.params().iter().count());
        let text = u.to_string();
        let again = Uri::parse(&text).expect("a displayed URI parses");
        assert_eq!(again.to_string(), text);
        // RFC 3261 §19.1.4 equivalence is reflexive and symmetric.
        assert!(u.equivalent(&u));
        assert!(again.equivalent(&u) && u.equivalent(&again));
    }
    let _ = NameAddr::parse(s).map(|a| a.params().iter().count());
});
