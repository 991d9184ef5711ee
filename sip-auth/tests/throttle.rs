//! Throttling: blocks at the configured count, releases after the window, stays bounded.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime};

use sip_auth::{Throttle, ThrottleConfig, ThrottleDecision};

fn t(s: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
}

const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

#[test]
fn blocks_at_the_count_and_releases_after_the_window() {
    let cfg = ThrottleConfig {
        max_failures: 5,
        window: Duration::from_secs(60),
        ..ThrottleConfig::default()
    };
    let mut th = Throttle::new(cfg);
    for i in 0..4 {
        assert_eq!(
            th.check(t(i), Some(IP), Some("alice")),
            ThrottleDecision::Allow
        );
        assert_eq!(
            th.record_failure(t(i), Some(IP), Some("alice")),
            ThrottleDecision::Allow
        );
    }
    let blocked = ThrottleDecision::Blocked {
        retry_after: Duration::from_secs(60),
    };
    assert_eq!(th.record_failure(t(4), Some(IP), Some("alice")), blocked);
    assert_eq!(th.check(t(4), Some(IP), None), blocked);
    assert_eq!(
        th.check(t(4), None, Some("alice")),
        blocked,
        "per username too"
    );
    assert_eq!(
        th.check(t(34), Some(IP), Some("bob")),
        ThrottleDecision::Blocked {
            retry_after: Duration::from_secs(30)
        }
    );
    let other = IpAddr::V6(Ipv6Addr::LOCALHOST);
    assert_eq!(
        th.check(t(34), Some(other), Some("bob")),
        ThrottleDecision::Allow
    );
    // Released after the window.
    assert_eq!(
        th.check(t(64), Some(IP), Some("alice")),
        ThrottleDecision::Allow
    );
    assert_eq!(
        th.record_failure(t(64), Some(IP), Some("alice")),
        ThrottleDecision::Allow,
        "the count starts again"
    );
}

#[test]
fn failures_spread_over_more_than_the_window_do_not_block() {
    let mut th = Throttle::new(ThrottleConfig {
        max_failures: 3,
        window: Duration::from_secs(10),
        ..ThrottleConfig::default()
    });
    for i in 0..30 {
        assert_eq!(
            th.record_failure(t(i * 6), Some(IP), None),
            ThrottleDecision::Allow,
            "at {i}"
        );
    }
}

#[test]
fn success_clears_the_username_but_not_the_source() {
    let mut th = Throttle::new(ThrottleConfig {
        max_failures: 2,
        ..ThrottleConfig::default()
    });
    let _ = th.record_failure(t(0), Some(IP), Some("alice"));
    th.record_success("alice");
    assert!(matches!(
        th.record_failure(t(1), Some(IP), Some("carol")),
        ThrottleDecision::Blocked { .. }
    ));
    assert_eq!(th.check(t(1), None, Some("alice")), ThrottleDecision::Allow);
    let mut no_user = Throttle::new(ThrottleConfig {
        max_failures: 1,
        per_username: false,
        ..ThrottleConfig::default()
    });
    let _ = no_user.record_failure(t(0), None, Some("alice"));
    assert_eq!(
        no_user.check(t(0), None, Some("alice")),
        ThrottleDecision::Allow
    );
    assert_eq!(no_user.tracked(), (0, 0));
}

#[test]
fn memory_is_bounded_and_blocked_sources_are_kept_first() {
    let cap = 1000;
    let mut th = Throttle::new(ThrottleConfig {
        max_failures: 3,
        window: Duration::from_secs(300),
        max_tracked: cap,
        per_username: true,
    });
    // A blocked source.
    for _ in 0..3 {
        let _ = th.record_failure(t(0), Some(IP), None);
    }
    // A flood from 100 000 addresses and usernames, one failure each.
    for i in 0..100_000u32 {
        let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        let _ = th.record_failure(t(1), Some(ip), Some(&format!("user{i}")));
        let (sources, users) = th.tracked();
        assert!(sources <= cap && users <= cap);
    }
    assert!(matches!(
        th.check(t(2), Some(IP), None),
        ThrottleDecision::Blocked { .. }
    ));
}
