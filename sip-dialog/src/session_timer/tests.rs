use std::time::{Duration, Instant};

use sip_core::Message;

use super::*;

fn invite(extra: &str) -> Message {
    Message::parse(
        format!(
            "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
            Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n\
            From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
            To: Bob <sip:bob@biloxi.example.com>\r\nCall-ID: a84b4c76e66710\r\n\
            CSeq: 1 INVITE\r\nContact: <sip:alice@pc33.atlanta.example.com>\r\n\
            {extra}Content-Length: 0\r\n\r\n"
        )
        .into_bytes(),
    )
    .unwrap()
}

fn se(delta: u32, refresher: Option<Refresher>) -> Option<SessionExpires> {
    Some(SessionExpires { delta, refresher })
}

#[test]
fn session_expires_parses_and_prints() {
    let s = SessionExpires::parse("1800 ; refresher=UAS;x=y").unwrap();
    assert_eq!(s, se(1800, Some(Refresher::Uas)).unwrap());
    assert_eq!(s.to_string(), "1800;refresher=uas");
    assert_eq!(SessionExpires::parse("90").unwrap().to_string(), "90");
    assert_eq!(
        SessionExpires::parse("90;refresher=me").unwrap().refresher,
        None
    );
    assert_eq!(SessionExpires::parse("soon"), None);
    // The compact form x.
    let m = invite("x: 600;refresher=uac\r\nMin-SE: 120\r\n");
    assert_eq!(SessionExpires::of(&m), se(600, Some(Refresher::Uac)));
    assert_eq!(min_se(&m), 120);
    assert_eq!(min_se(&invite("Min-SE: 30\r\n")), MIN_SE);
    assert_eq!(min_se(&invite("")), MIN_SE);
}

#[test]
fn uas_rejects_too_small_with_422_and_its_min_se() {
    let cfg = Config::new(1800, 300);
    let m = invite("Supported: timer\r\nSession-Expires: 120\r\n");
    assert_eq!(
        uas_negotiate(&m, Some(&cfg)),
        UasDecision::TooSmall { min_se: 300 }
    );
    // Without a local policy the floor is 90 s.
    assert_eq!(
        uas_negotiate(&invite("Session-Expires: 60\r\n"), None),
        UasDecision::TooSmall { min_se: 90 }
    );
}

#[test]
fn uas_chooses_interval_and_refresher() {
    let cfg = Config::new(600, 90);
    // UAC supports timer without naming a refresher: uac refreshes, Require: timer; the UAS
    // lowers 1800 to its 600, never below the request's Min-SE.
    let m = invite("Supported: timer\r\nSession-Expires: 1800\r\nMin-SE: 900\r\n");
    assert_eq!(
        uas_negotiate(&m, Some(&cfg)),
        UasDecision::Accept {
            session_expires: se(900, Some(Refresher::Uac)),
            require: true
        }
    );
    // The UAC's refresher choice is kept.
    let m = invite("Supported: timer\r\nSession-Expires: 300;refresher=uas\r\n");
    assert_eq!(
        uas_negotiate(&m, Some(&cfg)),
        UasDecision::Accept {
            session_expires: se(300, Some(Refresher::Uas)),
            require: true
        }
    );
    // A UAC without the extension: we refresh, no Require.
    assert_eq!(
        uas_negotiate(&invite(""), Some(&cfg)),
        UasDecision::Accept {
            session_expires: se(600, Some(Refresher::Uas)),
            require: false
        }
    );
    // No policy and nothing asked: no timer.
    assert_eq!(
        uas_negotiate(&invite("Supported: timer\r\n"), None),
        UasDecision::Accept {
            session_expires: None,
            require: false
        }
    );
}

#[test]
fn uac_retries_after_422_and_reads_the_2xx() {
    let cfg = Config::new(90, 90);
    let inv = invite("Session-Expires: 90\r\n");
    let r422 = inv.response(422).header("Min-SE", "150").build().unwrap();
    assert_eq!(uac_on_422(&r422, &cfg), Some(Config::new(150, 150)));
    // A Min-SE not above what we asked gives no retry (it would loop).
    let again = inv.response(422).header("Min-SE", "90").build().unwrap();
    assert_eq!(uac_on_422(&again, &cfg), None);
    assert_eq!(uac_on_422(&inv.response(422).build().unwrap(), &cfg), None);
    assert_eq!(
        refresh_headers(150, 150, None),
        [("Session-Expires", "150".into()), ("Min-SE", "150".into())]
    );
    assert_eq!(
        refresh_headers(90, 90, Some(false)),
        [("Session-Expires", "90;refresher=uas".to_string())]
    );

    let ok = |v: &str| {
        inv.response(200)
            .to_tag("b")
            .header("Session-Expires", v)
            .build()
            .unwrap()
    };
    assert_eq!(uac_on_2xx(&ok("150;refresher=uac")), Some((150, true)));
    assert_eq!(uac_on_2xx(&ok("150;refresher=uas")), Some((150, false)));
    assert_eq!(uac_on_2xx(&inv.response(200).build().unwrap()), None);
    assert!(we_refresh(Refresher::Uas, false));
    assert!(!we_refresh(Refresher::Uas, true));
}

#[test]
fn refresher_refreshes_at_half_and_expires_without_2xx() {
    let t0 = Instant::now();
    let mut t = SessionTimer::new(t0, 90, true);
    assert_eq!(t.poll_timeout(), t0 + Duration::from_secs(45));
    assert_eq!(t.handle_timeout(t0 + Duration::from_secs(44)), None);
    assert_eq!(
        t.handle_timeout(t0 + Duration::from_secs(45)),
        Some(SessionAction::Refresh)
    );
    // Sent once; then the deadline is the expiry: 90 − min(32, 30) = 60 s.
    assert_eq!(t.poll_timeout(), t0 + Duration::from_secs(60));
    assert_eq!(t.handle_timeout(t0 + Duration::from_secs(50)), None);
    // Its 2xx came: the timer starts over.
    let t1 = t0 + Duration::from_secs(46);
    t.refreshed(t1, 90, true);
    assert_eq!(t.poll_timeout(), t1 + Duration::from_secs(45));
    // A refresh that never gets its 2xx: the session expires.
    assert_eq!(
        t.handle_timeout(t1 + Duration::from_secs(45)),
        Some(SessionAction::Refresh)
    );
    assert_eq!(
        t.handle_timeout(t1 + Duration::from_secs(60)),
        Some(SessionAction::Expired)
    );
}

#[test]
fn non_refresher_expires_at_interval_minus_margin() {
    let t0 = Instant::now();
    // 1800 s: the margin is capped at 32 s.
    let t = SessionTimer::new(t0, 1800, false);
    assert_eq!(t.poll_timeout(), t0 + Duration::from_secs(1768));
    // 90 s: the margin is a third.
    let mut t = SessionTimer::new(t0, 90, false);
    assert_eq!(t.expires_at(), t0 + Duration::from_secs(60));
    assert_eq!(t.handle_timeout(t0 + Duration::from_secs(59)), None);
    assert_eq!(
        t.handle_timeout(t0 + Duration::from_secs(60)),
        Some(SessionAction::Expired)
    );
    // The peer refreshed and handed the refresher role to us.
    t.refreshed(t0 + Duration::from_secs(30), 120, true);
    assert!(t.we_refresh());
    assert_eq!(t.interval(), Duration::from_secs(120));
    assert_eq!(t.poll_timeout(), t0 + Duration::from_secs(90));
}

#[test]
fn refresh_answered_by_a_peer_without_timers_keeps_the_session() {
    let inv = invite("");
    let plain = inv.response(200).to_tag("b").build().unwrap();
    let with_timer = inv
        .response(200)
        .to_tag("b")
        .header("Supported", "timer")
        .build()
        .unwrap();
    let granted = inv
        .response(200)
        .to_tag("b")
        .header("Session-Expires", "300;refresher=uas")
        .build()
        .unwrap();
    assert_eq!(refresh_answered(&plain, Some((90, true))), Some((90, true)));
    assert_eq!(refresh_answered(&with_timer, Some((90, true))), None);
    assert_eq!(refresh_answered(&plain, Some((90, false))), None);
    assert_eq!(
        refresh_answered(&granted, Some((90, true))),
        Some((300, false))
    );
    assert_eq!(refresh_answered(&plain, None), None);
}
