//! RFC 3515 REFER, sans-IO: the implicit subscription a REFER we accept creates (§2.4.4),
//! whose NOTIFYs carry the progress of the referred request as a `message/sipfrag` status line
//! (RFC 3420), and the reading of such NOTIFYs on the referrer's side.
//!
//! [`ReferSubscription`] gives the Event, Subscription-State and body of each NOTIFY: `100
//! Trying` first (active), then any provisional, then one final status that terminates the
//! subscription (RFC 6665 §4.1.3: `terminated;reason=noresource`); nothing after it.

use sip_core::builder::reason_phrase;
use sip_core::{HeaderName, Message};

/// The Content-Type of the NOTIFY bodies (RFC 3515 §2.4.5).
pub const SIPFRAG: &str = "message/sipfrag;version=2.0";

/// How long (seconds) the implicit subscription lasts unless a final status ends it first.
pub const EXPIRES: u32 = 60;

/// One NOTIFY of the implicit subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferNotify {
    /// The Event header (`refer`, with `;id=` the REFER's CSeq after the first REFER).
    pub event: String,
    /// The Subscription-State header.
    pub subscription_state: String,
    /// The sipfrag body: the status line of the referred request's response.
    pub body: String,
}

/// The notifier side of the implicit subscription of one accepted REFER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferSubscription {
    event: String,
    last: Option<u16>,
    terminated: bool,
}

impl ReferSubscription {
    /// For the REFER with CSeq number `refer_seq`; `first` when it is the first REFER of the
    /// dialog (its NOTIFYs then carry a bare `Event: refer`, §2.4.6).
    pub fn new(refer_seq: u32, first: bool) -> Self {
        let event = if first {
            "refer".to_owned()
        } else {
            format!("refer;id={refer_seq}")
        };
        ReferSubscription {
            event,
            last: None,
            terminated: false,
        }
    }

    /// True once the final status went.
    pub fn is_terminated(&self) -> bool {
        self.terminated
    }

    /// The NOTIFY reporting `status` (100–699) of the referred request, or `None` when the
    /// subscription has ended, the status is out of range, or it repeats the last one.
    pub fn notify(&mut self, status: u16) -> Option<ReferNotify> {
        if self.terminated || !(100..700).contains(&status) || self.last == Some(status) {
            return None;
        }
        self.last = Some(status);
        let subscription_state = if status >= 200 {
            self.terminated = true;
            "terminated;reason=noresource".to_owned()
        } else {
            format!("active;expires={EXPIRES}")
        };
        Some(ReferNotify {
            event: self.event.clone(),
            subscription_state,
            body: format!("SIP/2.0 {status} {}\r\n", reason_phrase(status)),
        })
    }
}

/// The status a refer NOTIFY reports (the referrer's side), if `notify` is one: Event `refer`
/// (any `id`) and a sipfrag body starting with a status line.
pub fn notify_status(notify: &Message) -> Option<u16> {
    let event = notify.header(HeaderName::Event)?;
    let package = event.split(';').next()?.trim();
    if !package.eq_ignore_ascii_case("refer") {
        return None;
    }
    let body = std::str::from_utf8(notify.body()).ok()?;
    let line = body.lines().next()?;
    let mut parts = line.split_ascii_whitespace();
    if !parts.next()?.eq_ignore_ascii_case("SIP/2.0") {
        return None;
    }
    let status: u16 = parts.next()?.parse().ok()?;
    (100..700).contains(&status).then_some(status)
}

/// The Refer-To URI of a REFER (RFC 3515 §2.1), without its angle brackets.
pub fn refer_to(refer: &Message) -> Option<String> {
    let value = refer.refer_to()?.ok()?;
    Some(value.uri_str().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notify(event: &str, body: &str) -> Message {
        Message::parse(
            format!(
                "NOTIFY sip:a@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.2;branch=z9hG4bKn\r\n\
                From: <sip:b@x>;tag=b\r\nTo: <sip:a@x>;tag=a\r\nCall-ID: c\r\nCSeq: 3 NOTIFY\r\n\
                Event: {event}\r\nSubscription-State: active\r\n\
                Content-Type: message/sipfrag;version=2.0\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn progress_then_one_final_that_terminates() {
        let mut s = ReferSubscription::new(5, true);
        let first = s.notify(100).unwrap();
        assert_eq!(first.event, "refer");
        assert_eq!(first.subscription_state, "active;expires=60");
        assert_eq!(first.body, "SIP/2.0 100 Trying\r\n");
        assert_eq!(s.notify(100), None, "a repeat is not sent again");
        assert_eq!(s.notify(180).unwrap().body, "SIP/2.0 180 Ringing\r\n");
        let last = s.notify(486).unwrap();
        assert_eq!(last.subscription_state, "terminated;reason=noresource");
        assert_eq!(last.body, "SIP/2.0 486 Busy Here\r\n");
        assert!(s.is_terminated());
        assert_eq!(s.notify(200), None);
        assert_eq!(ReferSubscription::new(5, true).notify(99), None);
        assert_eq!(
            ReferSubscription::new(9, false).notify(100).unwrap().event,
            "refer;id=9"
        );
    }

    #[test]
    fn referrer_reads_the_status() {
        assert_eq!(
            notify_status(&notify("refer", "SIP/2.0 200 OK\r\n")),
            Some(200)
        );
        assert_eq!(
            notify_status(&notify("refer;id=7", "SIP/2.0 180 Ringing")),
            Some(180)
        );
        assert_eq!(
            notify_status(&notify("presence", "SIP/2.0 200 OK\r\n")),
            None
        );
        assert_eq!(notify_status(&notify("refer", "garbage")), None);
        assert_eq!(notify_status(&notify("refer", "SIP/2.0 999 Odd\r\n")), None);
    }
}
