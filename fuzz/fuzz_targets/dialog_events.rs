//! Random sequences of responses to a forking INVITE, requests in dialogs, INVITE-usage actions
//! and timer firings, derived from the input bytes, against the dialog layer: never panics,
//! the table never passes its cap, and once every dialog has been ended the table is empty
//! (no unbounded growth).
#![no_main]
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sip_core::{Message, Method};
use sip_dialog::invite::{ClientEvent, InviteClient, InviteUsage, InviteVerdict};
use sip_dialog::{DialogTable, EndCause, Limits, Role};

const STATUSES: [u16; 12] = [100, 180, 183, 200, 202, 301, 404, 408, 486, 487, 491, 603];
const METHODS: [&str; 7] = ["INVITE", "ACK", "BYE", "INFO", "UPDATE", "NOTIFY", "CANCEL"];
const TAGS: [&str; 4] = ["t0", "t1", "t2", "t3"];
const CAP: usize = 8;
const VIA: &str = "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKfz";

fn invite(call: u8) -> Option<Message> {
    Message::parse(
        format!(
        "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK{call}\r\n\
From: <sip:alice@example.com>;tag=local{call}\r\nTo: <sip:bob@example.com>\r\n\
Call-ID: c{call}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@192.0.2.1>\r\n\
Record-Route: <sip:p{call}.example.com;lr>\r\nContent-Length: 0\r\n\r\n"
    )
        .into_bytes(),
    )
    .ok()
}

fn response(inv: &Message, status: u16, tag: &str, contact: bool) -> Option<Message> {
    let mut b = inv.response(status).to_tag(tag);
    if contact {
        b = b.header("Contact", format!("<sip:bob@192.0.2.{}>", tag.len()));
    }
    b.build().ok()
}

fn request(method: &str, call: u8, remote: &str, seq: u32, raw: &[u8]) -> Option<Message> {
    let mut s = format!(
        "{method} sip:alice@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKr{seq}\r\n\
From: <sip:bob@example.com>;tag={remote}\r\nTo: <sip:alice@example.com>;tag=local{call}\r\n\
Call-ID: c{call}\r\nCSeq: {seq} {method}\r\n"
    );
    if !raw.is_empty() {
        // Arbitrary Contact bytes: the target refresh must cope with any.
        s.push_str("Contact: ");
        s.push_str(&String::from_utf8_lossy(raw).replace(['\r', '\n'], " "));
        s.push_str("\r\n");
    }
    s.push_str("Content-Length: 0\r\n\r\n");
    Message::parse(s.into_bytes()).ok()
}

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut now = t0;
    let mut table: DialogTable<InviteUsage> = DialogTable::new(Limits {
        max_dialogs: CAP,
        max_bytes: 1 << 20,
    });
    let mut clients: Vec<InviteClient> = Vec::new();
    let mut it = data.chunks(4);
    while let Some(op) = it.next() {
        let [a, b, c, d] = [0, 1, 2, 3].map(|i| op.get(i).copied().unwrap_or(0));
        let call = a % 4;
        match b % 6 {
            0 => {
                if clients.len() < 4 {
                    if let Some(inv) = invite(call) {
                        if let Ok(c) = InviteClient::new(
                            inv,
                            "sip:alice@192.0.2.1",
                            Duration::from_millis(500),
                        ) {
                            clients.push(c);
                        }
                    }
                }
            }
            1 => {
                let i = usize::from(c) % clients.len().max(1);
                let Some(client) = clients.get_mut(i) else {
                    continue;
                };
                let status = STATUSES[usize::from(d) % STATUSES.len()];
                let tag = TAGS[usize::from(d >> 4) % TAGS.len()];
                let Some(resp) = response(client.invite(), status, tag, d & 8 == 0) else {
                    continue;
                };
                match client.on_response(now, &resp, VIA) {
                    ClientEvent::Answered { dialog, ack, .. }
                    | ClientEvent::ExtraFork { dialog, ack } => {
                        assert_eq!(ack.method(), Some(Method::Ack));
                        let mut usage = InviteUsage::default();
                        usage.set_ack(client.seq(), ack);
                        let _ = table.insert(*dialog, usage);
                    }
                    ClientEvent::Early { .. } => assert!(!client.early_dialogs().is_empty()),
                    _ => {}
                }
            }
            2 => {
                let method = METHODS[usize::from(c) % METHODS.len()];
                let remote = TAGS[usize::from(c >> 4) % TAGS.len()];
                let raw: Vec<u8> = it.next().map(<[u8]>::to_vec).unwrap_or_default();
                let Some(req) = request(method, call, remote, u32::from(d), &raw) else {
                    continue;
                };
                let Some(e) = table.match_request(&req) else {
                    continue;
                };
                let id = e.dialog.id().clone();
                if e.dialog.check_request(&req).is_err() {
                    continue;
                }
                match method {
                    "BYE" => {
                        e.usage.stop();
                        e.dialog.terminate(EndCause::RemoteBye);
                    }
                    "INVITE" => {
                        if e.usage.on_invite(u32::from(d), u64::from(c)) == InviteVerdict::Accept {
                            if let Ok(ok) = req
                                .response(200)
                                .header("Contact", "<sip:alice@192.0.2.1>")
                                .build()
                            {
                                e.usage.answered(now, u32::from(d), &ok);
                            }
                        }
                    }
                    "ACK" => {
                        e.usage.on_ack(u32::from(d));
                    }
                    _ => {}
                }
                table.update(&id);
            }
            3 => {
                let ids = table.ids();
                let Some(id) = ids.get(usize::from(c) % ids.len().max(1)) else {
                    continue;
                };
                if let Some(e) = table.get_by_id_mut(id) {
                    let seq = e.dialog.local_seq().unwrap_or(0).saturating_add(1);
                    if d & 1 == 0 && e.usage.start_local_invite(seq).is_ok() {
                        let _ = e.dialog.request(Method::Invite, VIA);
                    } else {
                        let status = STATUSES[usize::from(d) % STATUSES.len()];
                        e.usage
                            .local_invite_final(now, seq, status, Role::Uac, u64::from(c));
                    }
                }
            }
            4 => {
                now += Duration::from_millis(u64::from(c) * u64::from(d) * 10);
                for e in table.iter_mut() {
                    while let Some(due) = e.usage.poll_timeout() {
                        if due > now || e.usage.handle_timeout(now).is_none() {
                            break;
                        }
                    }
                }
                clients.retain(|c| !c.is_done(now));
            }
            _ => {
                let i = usize::from(c) % clients.len().max(1);
                if let Some(client) = clients.get_mut(i) {
                    if let ClientEvent::Failed { ended, .. } = client.on_timeout(now) {
                        assert!(ended.len() <= TAGS.len());
                    }
                }
            }
        }
        assert!(table.len() <= CAP);
        let s = table.stats();
        assert_eq!(s.early + s.confirmed, table.len());
    }
    // Ending every dialog empties the table.
    for id in table.ids() {
        if let Some(e) = table.get_by_id_mut(&id) {
            e.dialog.terminate(EndCause::LocalBye);
        }
        table.update(&id);
    }
    assert!(table.is_empty());
    assert_eq!(table.stats().bytes, 0);
});
