//! RFC 5626 (SIP outbound) for the UserAgent's registrations, as pure functions the
//! registration task calls: the Contact of a REGISTER with `+sip.instance` and `reg-id`
//! (§4.2), what the registrar's 2xx says (`Require: outbound`, `Flow-Timer`, §4.2.1 / §4.4.1),
//! and the §4.5 back-off between attempts to register again after a flow failed.
//!
//! The CRLF keep-alive of §4.4.1 (a `CRLFCRLF` ping, the `CRLF` pong, the flow closed when no
//! pong comes) is done by the transport on every connection the endpoint opened: build the
//! endpoint with `TransportConfig::keepalive_interval` below the registrar's Flow-Timer. A
//! closed flow re-registers at once, then with back-off while it keeps failing.

use std::time::Duration;

use sip_core::{HeaderName, Message};

/// §4.5: the base time when every flow failed, and when some still work (seconds).
const BASE_ALL_FAILED: u64 = 30;
const BASE_SOME_OK: u64 = 90;
/// §4.5: the cap of the wait (seconds).
const MAX_TIME: u64 = 1800;

/// The Contact of a REGISTER using outbound: our URI with the instance ID (a `urn:uuid:`…,
/// quoted in angle brackets as §4.1 shows) and the `reg-id` of this registration.
pub(crate) fn contact(uri: &str, instance: &str, reg_id: u32) -> String {
    format!("<{uri}>;+sip.instance=\"<{instance}>\";reg-id={reg_id}")
}

/// §4.2.1: the registrar supports outbound (its 2xx requires it): the flow is managed.
pub(crate) fn registrar_supports(response: &Message) -> bool {
    response.has_token(HeaderName::Require, "outbound")
}

/// §4.4.1: the Flow-Timer of the registrar's 2xx: keep-alives must go more often.
pub(crate) fn flow_timer(response: &Message) -> Option<u32> {
    let raw = response.headers_named("Flow-Timer").next()?;
    std::str::from_utf8(raw).ok()?.trim().parse().ok()
}

/// §4.5: how long to wait before registering again after `failures` consecutive failed
/// attempts: `min(max-time, base-time · 2^failures)`, then a random 50–100 % of it
/// (`random` draws it). `all_failed` when no flow of the instance works (base 30 s, else 90 s).
pub(crate) fn backoff(failures: u32, all_failed: bool, random: u64) -> Duration {
    let base = if all_failed {
        BASE_ALL_FAILED
    } else {
        BASE_SOME_OK
    };
    let wait = base.saturating_mul(1u64 << failures.min(16)).min(MAX_TIME);
    let percent = 50 + random % 51;
    Duration::from_millis(wait * 1000 * percent / 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_carries_instance_and_reg_id() {
        assert_eq!(
            contact(
                "sip:alice@192.0.2.1:5060;transport=tcp",
                "urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF",
                1
            ),
            "<sip:alice@192.0.2.1:5060;transport=tcp>;\
             +sip.instance=\"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>\";reg-id=1"
        );
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter() {
        // Lowest draw (50 %), then highest (100 %).
        assert_eq!(backoff(0, true, 0), Duration::from_secs(15));
        assert_eq!(backoff(0, true, 50), Duration::from_secs(30));
        assert_eq!(backoff(1, true, 50), Duration::from_secs(60));
        assert_eq!(backoff(3, true, 50), Duration::from_secs(240));
        assert_eq!(backoff(0, false, 50), Duration::from_secs(90));
        // Capped at 1800 s however many failures.
        assert_eq!(backoff(7, true, 50), Duration::from_secs(1800));
        assert_eq!(backoff(u32::MAX, false, 50), Duration::from_secs(1800));
        for r in 0..200 {
            let d = backoff(2, true, r);
            assert!(d >= Duration::from_secs(60) && d <= Duration::from_secs(120));
        }
    }

    #[test]
    fn reads_the_registrars_answer() {
        let r = Message::parse(
            &b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP a;branch=z9hG4bK1\r\nFrom: <sip:a@a>;tag=1\r\n\
To: <sip:a@a>;tag=2\r\nCall-ID: c\r\nCSeq: 2 REGISTER\r\nRequire: outbound\r\n\
Flow-Timer: 120\r\nContent-Length: 0\r\n\r\n"[..],
        )
        .unwrap();
        assert!(registrar_supports(&r));
        assert_eq!(flow_timer(&r), Some(120));
    }
}
