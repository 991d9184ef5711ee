//! Throttling: per (source, username) and per source, blocks at the configured counts, says
//! which count blocked, releases after the window, stays bounded.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime};

use sip_auth::{BlockScope, Throttle, ThrottleConfig, ThrottleDecision};

fn t(s: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
}

const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

fn blocked(secs: u64, scope: BlockScope) -> ThrottleDecision {
    ThrottleDecision::Blocked {
        retry_after: Duration::from_secs(secs),
        scope,
    }
}

#[test]
fn a_pair_blocks_at_the_count_and_releases_after_the_window() {
    let cfg = ThrottleConfig {
        max_failures: 5,
        window: Duration::from_secs(60),
        ..ThrottleConfig::default()
    };
    let mut th = Throttle::new(cfg);
    for i in 0..4 {
        assert_eq!(th.check(t(i), IP, Some("alice")), ThrottleDecision::Allow);
        assert_eq!(
            th.record_failure(t(i), IP, Some("alice")),
            ThrottleDecision::Allow
        );
    }
    let pair = blocked(60, BlockScope::SourceUser);
    assert_eq!(th.record_failure(t(4), IP, Some("alice")), pair);
    assert_eq!(th.check(t(4), IP, Some("alice")), pair);
    // The other devices behind the same address, and requests naming no user, go on.
    assert_eq!(th.check(t(4), IP, Some("bob")), ThrottleDecision::Allow);
    assert_eq!(th.check(t(4), IP, None), ThrottleDecision::Allow);
    // The same user from elsewhere is not locked out.
    let other = IpAddr::V6(Ipv6Addr::LOCALHOST);
    assert_eq!(
        th.check(t(4), other, Some("alice")),
        ThrottleDecision::Allow
    );
    assert_eq!(
        th.check(t(34), IP, Some("alice")),
        blocked(30, BlockScope::SourceUser)
    );
    // Released after the window; the count starts again.
    assert_eq!(th.check(t(64), IP, Some("alice")), ThrottleDecision::Allow);
    assert_eq!(
        th.record_failure(t(64), IP, Some("alice")),
        ThrottleDecision::Allow
    );
}

#[test]
fn a_source_trying_many_usernames_is_blocked_at_the_higher_count() {
    let mut th = Throttle::new(ThrottleConfig::default());
    for i in 0..99 {
        let user = format!("user{i}");
        assert_eq!(th.check(t(1), IP, Some(&user)), ThrottleDecision::Allow);
        assert_eq!(
            th.record_failure(t(1), IP, Some(&user)),
            ThrottleDecision::Allow,
            "failure {i}"
        );
    }
    let source = blocked(300, BlockScope::Source);
    assert_eq!(th.record_failure(t(1), IP, Some("user99")), source);
    assert_eq!(th.check(t(1), IP, Some("anyone")), source);
    assert_eq!(th.check(t(1), IP, None), source);
    let other = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
    assert_eq!(
        th.check(t(1), other, Some("user1")),
        ThrottleDecision::Allow
    );
}

#[test]
fn failures_spread_over_more_than_the_window_do_not_block() {
    let mut th = Throttle::new(ThrottleConfig {
        max_failures: 3,
        max_failures_per_source: 3,
        window: Duration::from_secs(10),
        ..ThrottleConfig::default()
    });
    for i in 0..30 {
        assert_eq!(
            th.record_failure(t(i * 6), IP, Some("alice")),
            ThrottleDecision::Allow,
            "at {i}"
        );
    }
}

#[test]
fn success_clears_the_pair_but_not_the_source() {
    let mut th = Throttle::new(ThrottleConfig {
        max_failures: 2,
        max_failures_per_source: 3,
        ..ThrottleConfig::default()
    });
    let _ = th.record_failure(t(0), IP, Some("alice"));
    th.record_success(IP, "alice");
    assert_eq!(
        th.record_failure(t(1), IP, Some("alice")),
        ThrottleDecision::Allow,
        "the pair's count restarted"
    );
    assert_eq!(
        th.record_failure(t(1), IP, Some("carol")),
        blocked(300, BlockScope::Source),
        "the source counted all three"
    );
}

#[test]
fn memory_is_bounded_and_blocked_sources_are_kept_first() {
    let cap = 1000;
    let mut th = Throttle::new(ThrottleConfig {
        max_failures: 3,
        max_failures_per_source: 3,
        window: Duration::from_secs(300),
        max_tracked: cap,
    });
    // A blocked source.
    for _ in 0..3 {
        let _ = th.record_failure(t(0), IP, None);
    }
    // A flood from 100 000 addresses and usernames, one failure each.
    for i in 0..100_000u32 {
        let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        let _ = th.record_failure(t(1), ip, Some(&format!("user{i}")));
        let (sources, pairs) = th.tracked();
        assert!(sources <= cap && pairs <= cap);
    }
    assert!(matches!(
        th.check(t(2), IP, None),
        ThrottleDecision::Blocked {
            scope: BlockScope::Source,
            ..
        }
    ));
}
