//! Random sequences against the RFC 3262 and RFC 4028 state of the dialog layer: reliable
//! provisionals sent, PRACKs with arbitrary RAck values, provisionals with arbitrary RSeq for
//! the UAC side, session refreshes and timer firings, plus the header parsers fed raw bytes.
//! Never panics; nothing is pending once the final response went; a session timer always has
//! a deadline after the last refresh.
#![no_main]
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sip_core::Message;
use sip_dialog::prack::{PrackClient, RAck, ReliableProvisionals};
use sip_dialog::session_timer::{uas_negotiate, Config, SessionExpires, SessionTimer};

fn invite(extra: &str) -> Option<Message> {
    Message::parse(
        format!(
            "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKf\r\n\
From: <sip:alice@example.com>;tag=a\r\nTo: <sip:bob@example.com>\r\nCall-ID: c\r\n\
CSeq: 1 INVITE\r\nContact: <sip:alice@192.0.2.1>\r\n{extra}Content-Length: 0\r\n\r\n"
        )
        .into_bytes(),
    )
    .ok()
}

fn header_text(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).replace(['\r', '\n'], " ")
}

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut now = t0;
    let Some(inv) = invite("Supported: 100rel, timer\r\n") else {
        return;
    };
    let t1 = Duration::from_millis(500);
    let mut rel = ReliableProvisionals::new(t1, 1, u32::from(data.first().copied().unwrap_or(1)));
    let mut client = PrackClient::new();
    let mut timer = SessionTimer::new(now, 90, false);
    let mut chunks = data.chunks(3);
    while let Some(c) = chunks.next() {
        let (op, a, b) = (c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0));
        match op % 8 {
            0 => {
                let b = inv.response(180 + u16::from(a % 4)).to_tag("b");
                let _ = rel.send(now, b);
                assert!(rel.pending() || rel.poll_timeout().is_none());
            }
            1 => {
                let rack = format!("{} {} INVITE", u32::from(a) + u32::from(b) * 256, b % 3);
                let prack = Message::parse(
                    format!(
                        "PRACK sip:bob@192.0.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKp{a}\r\n\
From: <sip:alice@example.com>;tag=a\r\nTo: <sip:bob@example.com>;tag=b\r\nCall-ID: c\r\n\
CSeq: 2 PRACK\r\nRAck: {rack}\r\nContent-Length: 0\r\n\r\n"
                    )
                    .into_bytes(),
                );
                if let Ok(p) = prack {
                    let _ = rel.on_prack(now, &p);
                }
            }
            2 => {
                now += Duration::from_millis(u64::from(a) * 37);
                let _ = rel.handle_timeout(now);
                let _ = timer.handle_timeout(now);
            }
            3 => {
                let tag = ["b", "c", "d"][usize::from(b % 3)];
                if let Ok(r) = inv
                    .response(183)
                    .to_tag(tag)
                    .header("Require", "100rel")
                    .header("RSeq", (u32::from(a) % 8).to_string())
                    .build()
                {
                    let _ = client.on_provisional(&r, 1);
                }
            }
            4 => {
                let raw = chunks.next().unwrap_or(&[]);
                let _ = RAck::parse(&header_text(raw));
                let _ = SessionExpires::parse(&header_text(raw));
            }
            5 => {
                let raw = chunks.next().unwrap_or(&[]);
                let extra = format!(
                    "Session-Expires: {}\r\nMin-SE: {}\r\n",
                    header_text(raw),
                    u32::from(a) * 10
                );
                if let Some(m) = invite(&extra) {
                    let cfg = Config::new(u32::from(b) * 20, u32::from(a) * 5);
                    let _ = uas_negotiate(&m, Some(&cfg));
                    let _ = uas_negotiate(&m, None);
                }
            }
            6 => {
                timer.refreshed(now, u32::from(a) + u32::from(b) * 256, b % 2 == 0);
                assert!(timer.poll_timeout() > now);
            }
            _ => {
                let _ = rel.may_send_final(200 + u16::from(a % 2) * 286);
                if b % 5 == 0 {
                    rel.final_sent();
                    assert!(!rel.pending());
                }
            }
        }
    }
});
