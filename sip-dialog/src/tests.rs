//! Scenario tests of the dialog layer on injected time: both roles, §12.2.2 checks, forks,
//! glare, the 2xx/ACK exchange, RFC 5407 races and the table's caps and counters.

use std::time::{Duration, Instant};

use sip_core::{HeaderName, Message, Method};

use crate::invite::{ClientEvent, InviteClient, InviteUsage, InviteVerdict, Timers, UsageAction};
use crate::{Dialog, DialogId, DialogTable, EndCause, Error, Limits, Reject, Role, State};

const T1: Duration = Duration::from_millis(500);
const VIA: &str = "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKack";

fn invite() -> Message {
    Message::parse(
        &b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKinv1\r\n\
Record-Route: <sip:p2.example.com;lr>\r\nRecord-Route: <sip:p1.example.com;lr>\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=ftag\r\nTo: <sip:bob@example.com>\r\n\
Call-ID: call-1@192.0.2.1\r\nCSeq: 10 INVITE\r\nContact: <sip:alice@192.0.2.1:5060>\r\n\
Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"[..],
    )
    .unwrap()
}

/// A response to `invite()` from the fork with `tag`, with Record-Route as the proxies
/// would return it and a Contact.
fn response(status: u16, tag: &str) -> Message {
    let mut b = invite().response(status).to_tag(tag);
    if status > 100 {
        b = b
            .header("Record-Route", "<sip:p2.example.com;lr>")
            .header("Record-Route", "<sip:p1.example.com;lr>")
            .header("Contact", format!("<sip:bob@192.0.2.{}:5060>", tag.len()));
    }
    b.build().unwrap()
}

fn in_dialog(method: &str, seq: u32, contact: Option<&str>) -> Message {
    let mut s = format!(
        "{method} sip:alice@192.0.2.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK{method}{seq}\r\n\
From: <sip:bob@example.com>;tag=ftag\r\nTo: \"Alice\" <sip:alice@example.com>;tag=uastag\r\n\
Call-ID: call-1@192.0.2.1\r\nCSeq: {seq} {method}\r\n"
    );
    if let Some(c) = contact {
        s.push_str(&format!("Contact: <{c}>\r\n"));
    }
    s.push_str("Content-Length: 0\r\n\r\n");
    Message::parse(s.into_bytes()).unwrap()
}

#[test]
fn uac_dialog_id_and_state_per_rfc_3261_12_1_2() {
    let d = Dialog::uac(
        &invite(),
        &response(200, "bobtag"),
        "sip:alice@192.0.2.1:5060",
    )
    .unwrap();
    assert_eq!(d.role(), Role::Uac);
    assert_eq!(d.state(), State::Confirmed);
    // The UAC's local tag is the From-tag, the remote tag the To-tag.
    assert_eq!(
        d.id(),
        &DialogId {
            call_id: "call-1@192.0.2.1".into(),
            local_tag: "ftag".into(),
            remote_tag: "bobtag".into()
        }
    );
    assert_eq!(d.remote_target(), "sip:bob@192.0.2.6:5060");
    assert_eq!(
        d.route_set().routes(),
        ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    );
    assert_eq!(d.local_seq(), Some(10));
    assert_eq!(d.remote_seq(), None);
    assert!(!d.secure());
    assert_eq!(
        DialogId::of_incoming_response(&response(200, "bobtag")).as_ref(),
        Some(d.id())
    );
}

#[test]
fn uas_dialog_id_is_the_mirror_image() {
    let d = Dialog::uas(&invite(), "uastag", "sip:bob@192.0.2.2", false).unwrap();
    assert_eq!(d.role(), Role::Uas);
    assert_eq!(d.id().local_tag, "uastag");
    assert_eq!(d.id().remote_tag, "ftag");
    assert_eq!(d.remote_target(), "sip:alice@192.0.2.1:5060");
    // The UAS keeps Record-Route in order.
    assert_eq!(
        d.route_set().routes(),
        ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
    );
    assert_eq!(d.remote_seq(), Some(10));
    assert_eq!(d.local_seq(), None);
    assert_eq!(d.local_uri(), "<sip:bob@example.com>;tag=uastag");
    // A request the peer sends later in the dialog matches it.
    let bye = Message::parse(
        &b"BYE sip:bob@192.0.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKb\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=ftag\r\nTo: <sip:bob@example.com>;tag=uastag\r\n\
Call-ID: call-1@192.0.2.1\r\nCSeq: 11 BYE\r\nContent-Length: 0\r\n\r\n"[..],
    )
    .unwrap();
    assert_eq!(DialogId::of_incoming_request(&bye).as_ref(), Some(d.id()));
    // The UAS's first request gets CSeq 1 and goes along the route set to the remote target.
    let mut d = d;
    let req = d.request(Method::Bye, VIA).unwrap().build().unwrap();
    assert_eq!(req.cseq().unwrap().seq, 1);
    assert_eq!(req.uri_str(), Some("sip:alice@192.0.2.1:5060"));
    assert_eq!(req.from().unwrap().tag(), Some("uastag"));
    assert_eq!(req.to().unwrap().tag(), Some("ftag"));
    let routes: Vec<&str> = req.values(HeaderName::Route).collect();
    assert_eq!(
        routes,
        ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
    );
}

#[test]
fn a_2xx_without_contact_forms_no_dialog() {
    let ok = invite().response(200).to_tag("t").build().unwrap();
    assert_eq!(
        Dialog::uac(&invite(), &ok, "sip:a@b").unwrap_err(),
        Error::NoContact
    );
    let ringing = invite().response(180).to_tag("t").build().unwrap();
    // A 180 without Contact still forms an early dialog (target: the Request-URI for now).
    assert_eq!(
        Dialog::uac(&invite(), &ringing, "sip:a@b")
            .unwrap()
            .remote_target(),
        "sip:bob@example.com"
    );
    let untagged = invite().response(200).to_tag("").build();
    assert!(untagged.is_err() || Dialog::uac(&invite(), &untagged.unwrap(), "sip:a@b").is_err());
    assert_eq!(
        Dialog::uac(&invite(), &response(100, "x"), "sip:a@b").unwrap_err(),
        Error::NotDialogForming(100)
    );
}

#[test]
fn sips_request_uri_makes_the_dialog_secure() {
    let inv = Message::parse(
        &b"INVITE sips:bob@example.com SIP/2.0\r\nVia: SIP/2.0/TLS a;branch=z9hG4bK1\r\n\
From: <sips:alice@example.com>;tag=1\r\nTo: <sips:bob@example.com>\r\nCall-ID: s\r\n\
CSeq: 1 INVITE\r\nContact: <sips:alice@a>\r\nContent-Length: 0\r\n\r\n"[..],
    )
    .unwrap();
    assert!(Dialog::uas(&inv, "x", "sips:bob@b", false)
        .unwrap()
        .secure());
}

#[test]
fn check_request_orders_cseq_and_refreshes_target() {
    let mut d = Dialog::uas(&invite(), "uastag", "sip:bob@192.0.2.2", false).unwrap();
    // Lower than the INVITE's 10: out of order, 500 (§12.2.2).
    assert_eq!(
        d.check_request(&in_dialog("INFO", 9, None)),
        Err(Reject { status: 500 })
    );
    assert_eq!(d.check_request(&in_dialog("INFO", 11, None)), Ok(()));
    assert_eq!(d.remote_seq(), Some(11));
    // A re-INVITE is a target refresh.
    assert_eq!(
        d.check_request(&in_dialog("INVITE", 12, Some("sip:alice@198.51.100.7"))),
        Ok(())
    );
    assert_eq!(d.remote_target(), "sip:alice@198.51.100.7");
    // INFO is not: its Contact is ignored.
    assert_eq!(
        d.check_request(&in_dialog("INFO", 13, Some("sip:elsewhere@x"))),
        Ok(())
    );
    assert_eq!(d.remote_target(), "sip:alice@198.51.100.7");
    // The ACK carries its INVITE's number: not out of order.
    assert_eq!(d.check_request(&in_dialog("ACK", 12, None)), Ok(()));
    // After the dialog ends, requests get 481.
    d.terminate(EndCause::RemoteBye);
    assert_eq!(
        d.check_request(&in_dialog("INFO", 20, None)),
        Err(Reject { status: 481 })
    );
    assert_eq!(d.request(Method::Info, VIA).unwrap_err(), Error::Terminated);
}

#[test]
fn strict_route_first_hop_goes_in_the_request_uri() {
    let inv = Message::parse(
        &b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\n\
Record-Route: <sip:strict.example.com>\r\nFrom: <sip:alice@example.com>;tag=1\r\n\
To: <sip:bob@example.com>\r\nCall-ID: s\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@a>\r\n\
Content-Length: 0\r\n\r\n"[..],
    )
    .unwrap();
    let mut d = Dialog::uas(&inv, "x", "sip:bob@b", false).unwrap();
    let req = d.request(Method::Bye, VIA).unwrap().build().unwrap();
    assert_eq!(req.uri_str(), Some("sip:strict.example.com"));
    assert_eq!(
        req.values(HeaderName::Route).collect::<Vec<_>>(),
        ["<sip:alice@a>"]
    );
    assert_eq!(d.next_hop(), "sip:strict.example.com");
}

#[test]
fn forked_invite_early_dialog_per_tag_then_one_answers() {
    let t0 = Instant::now();
    let mut c = InviteClient::new(invite(), "sip:alice@192.0.2.1:5060", T1).unwrap();
    assert!(matches!(
        c.on_response(t0, &response(100, "x"), VIA),
        ClientEvent::Trying { status: 100 }
    ));
    let ClientEvent::Early {
        id: a, new: true, ..
    } = c.on_response(t0, &response(180, "forka"), VIA)
    else {
        panic!()
    };
    let ClientEvent::Early {
        id: b, new: true, ..
    } = c.on_response(t0, &response(180, "forkbb"), VIA)
    else {
        panic!()
    };
    assert_ne!(a, b);
    assert!(matches!(
        c.on_response(t0, &response(183, "forka"), VIA),
        ClientEvent::Early {
            new: false,
            status: 183,
            ..
        }
    ));
    assert_eq!(c.early_dialogs().len(), 2);

    // Fork B answers: its early dialog is confirmed; the ACK follows its route set.
    let ok_b = response(200, "forkbb");
    let ClientEvent::Answered {
        dialog,
        ack,
        cancelled: false,
    } = c.on_response(t0, &ok_b, VIA)
    else {
        panic!()
    };
    assert_eq!(dialog.id(), &b);
    assert_eq!(dialog.state(), State::Confirmed);
    assert_eq!(ack.method(), Some(Method::Ack));
    assert_eq!(ack.cseq().unwrap().seq, 10);
    assert_eq!(ack.cseq().unwrap().method, Method::Ack);
    assert_eq!(ack.uri_str(), Some("sip:bob@192.0.2.6:5060"));
    assert_eq!(
        ack.values(HeaderName::Route).next(),
        Some("<sip:p1.example.com;lr>")
    );
    assert_eq!(ack.to().unwrap().tag(), Some("forkbb"));

    // Every retransmission of that 2xx gets the same ACK again.
    let ClientEvent::Reack(again) = c.on_response(t0 + T1, &ok_b, VIA) else {
        panic!()
    };
    assert_eq!(again, ack);

    // Fork A answers too: ACK it and hand it out to be ended with BYE.
    let ClientEvent::ExtraFork {
        dialog: extra,
        ack: ack_a,
    } = c.on_response(t0 + T1, &response(200, "forka"), VIA)
    else {
        panic!()
    };
    assert_eq!(extra.id(), &a);
    assert_eq!(ack_a.to().unwrap().tag(), Some("forka"));
    let mut extra = *extra;
    let bye = extra.request(Method::Bye, VIA).unwrap().build().unwrap();
    assert_eq!(bye.cseq().unwrap().seq, 11);
    assert_eq!(bye.to().unwrap().tag(), Some("forka"));

    // The client lingers 64·T1 for late forks, then may go.
    assert_eq!(c.poll_timeout(), Some(t0 + T1 * 64));
    assert!(!c.is_done(t0 + T1 * 63));
    assert!(c.is_done(t0 + T1 * 64));
}

#[test]
fn non_2xx_final_and_timer_b_end_early_dialogs() {
    let t0 = Instant::now();
    let mut c = InviteClient::new(invite(), "sip:a@a", T1).unwrap();
    c.on_response(t0, &response(180, "f1"), VIA);
    c.on_response(t0, &response(180, "f2"), VIA);
    let ClientEvent::Failed { status: 486, ended } = c.on_response(t0, &response(486, "f1"), VIA)
    else {
        panic!()
    };
    assert_eq!(ended.len(), 2);
    assert!(c.early_dialogs().is_empty());
    // A 2xx from another branch after the non-2xx (RFC 6026 stray 2xx): ACK it and BYE it.
    assert!(matches!(
        c.on_response(t0, &response(200, "f2"), VIA),
        ClientEvent::ExtraFork { .. }
    ));

    let mut c = InviteClient::new(invite(), "sip:a@a", T1).unwrap();
    c.on_response(t0, &response(180, "f1"), VIA);
    let ClientEvent::Failed { status: 408, ended } = c.on_timeout(t0 + T1 * 64) else {
        panic!()
    };
    assert_eq!(ended.len(), 1);
    // Timer B after the answer changes nothing.
    let mut c = InviteClient::new(invite(), "sip:a@a", T1).unwrap();
    c.on_response(t0, &response(200, "f1"), VIA);
    assert!(matches!(c.on_timeout(t0 + T1 * 64), ClientEvent::Ignored));
}

#[test]
fn rfc5407_cancel_crossing_a_2xx_flags_the_answer() {
    let t0 = Instant::now();
    let mut c = InviteClient::new(invite(), "sip:a@a", T1).unwrap();
    c.on_response(t0, &response(180, "f1"), VIA);
    c.cancel();
    let ClientEvent::Answered {
        cancelled: true, ..
    } = c.on_response(t0, &response(200, "f1"), VIA)
    else {
        panic!()
    };
    // A late 487 after the 2xx (the CANCEL arrived too late) is ignored.
    assert!(matches!(
        c.on_response(t0, &response(487, "f1"), VIA),
        ClientEvent::Ignored
    ));
}

#[test]
fn uas_retransmits_2xx_until_ack() {
    let t0 = Instant::now();
    let mut u = InviteUsage::new(Timers {
        t1: T1,
        t2: Duration::from_secs(4),
    });
    assert_eq!(u.on_invite(10, 0), InviteVerdict::Accept);
    let ok = response(200, "uastag");
    u.answered(t0, 10, &ok);
    assert_eq!(u.poll_timeout(), Some(t0 + T1));
    assert_eq!(
        u.handle_timeout(t0 + T1),
        Some(UsageAction::Retransmit2xx(Box::new(ok.clone())))
    );
    assert_eq!(u.poll_timeout(), Some(t0 + T1 * 3));
    assert_eq!(u.handle_timeout(t0 + T1 * 2), None);
    // An ACK for another CSeq changes nothing; the right one stops it.
    assert!(!u.on_ack(9));
    assert!(u.on_ack(10));
    assert!(!u.on_ack(10));
    assert_eq!(u.poll_timeout(), None);
    assert_eq!(u.remote_invite(), None);
}

#[test]
fn uas_without_ack_times_out_for_bye() {
    let t0 = Instant::now();
    let mut u = InviteUsage::new(Timers::default());
    u.on_invite(1, 0);
    u.answered(t0, 1, &response(200, "t"));
    let mut sent = 0;
    loop {
        let due = u.poll_timeout().unwrap();
        match u.handle_timeout(due) {
            Some(UsageAction::Retransmit2xx(_)) => sent += 1,
            Some(UsageAction::AckTimeout) => {
                assert_eq!(due, t0 + T1 * 64);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(sent >= 7);
    assert_eq!(u.poll_timeout(), None);
}

#[test]
fn glare_both_sides_get_491_and_retry_in_rfc_ranges() {
    let t0 = Instant::now();
    // Both ends of a dialog send a re-INVITE at once.
    let mut caller = InviteUsage::default();
    let mut callee = InviteUsage::default();
    caller.start_local_invite(11).unwrap();
    callee.start_local_invite(1).unwrap();
    // Each receives the other's: 491.
    assert_eq!(
        caller.on_invite(1, 0),
        InviteVerdict::Reject {
            status: 491,
            retry_after: None
        }
    );
    assert_eq!(
        callee.on_invite(11, 0),
        InviteVerdict::Reject {
            status: 491,
            retry_after: None
        }
    );
    // A second local INVITE cannot start while one is pending.
    assert!(caller.start_local_invite(12).is_err());
    // Each gets 491 back; the Call-ID owner (the dialog's UAC) waits 2.1–4 s, the other 0–2 s.
    for random in [0u64, 1, 190, 191, 200, u64::MAX] {
        let mut a = caller.clone();
        a.local_invite_final(t0, 11, 491, Role::Uac, random);
        let at = a.poll_timeout().unwrap() - t0;
        assert!(
            at >= Duration::from_millis(2100) && at <= Duration::from_secs(4),
            "{at:?}"
        );
        assert_eq!(at.as_millis() % 10, 0);
        assert_eq!(a.handle_timeout(t0 + at), Some(UsageAction::GlareRetry));
        assert!(a.start_local_invite(12).is_ok());
        let mut b = callee.clone();
        b.local_invite_final(t0, 1, 491, Role::Uas, random);
        let at = b.poll_timeout().unwrap() - t0;
        assert!(at <= Duration::from_secs(2), "{at:?}");
    }
}

#[test]
fn second_invite_while_first_pending_gets_500_with_retry_after() {
    let mut u = InviteUsage::default();
    assert_eq!(u.on_invite(5, 0), InviteVerdict::Accept);
    let InviteVerdict::Reject {
        status: 500,
        retry_after: Some(s),
    } = u.on_invite(6, 37)
    else {
        panic!()
    };
    assert!(s <= 10);
    // Rejecting the first with a non-2xx frees the way.
    u.answered(Instant::now(), 5, &response(488, "t"));
    assert_eq!(u.on_invite(6, 0), InviteVerdict::Accept);
}

#[test]
fn rfc5407_bye_crossing_a_reinvite() {
    // We sent a re-INVITE; the peer's BYE crosses it. The dialog ends: our re-INVITE's
    // transaction will see 481/487, and any later request in the dialog gets 481.
    let t0 = Instant::now();
    let mut table: DialogTable<InviteUsage> = DialogTable::default();
    let d = Dialog::uas(&invite(), "uastag", "sip:bob@b", false).unwrap();
    let id = d.id().clone();
    let e = table.insert(d, InviteUsage::default()).unwrap();
    e.usage.on_invite(10, 0);
    e.usage.answered(t0, 10, &response(200, "uastag"));
    e.usage.on_ack(10);
    let seq = e.dialog.local_seq().unwrap_or(0) + 1;
    e.usage.start_local_invite(seq).unwrap();
    let bye = in_dialog("BYE", 11, None);
    let e = table.match_request(&bye).unwrap();
    assert_eq!(e.dialog.check_request(&bye), Ok(()));
    e.usage.stop();
    e.dialog.terminate(EndCause::RemoteBye);
    assert_eq!(e.usage.local_invite(), None);
    let removed = table.update(&id).unwrap();
    assert!(removed.dialog.is_terminated());
    assert!(table.match_request(&in_dialog("INFO", 12, None)).is_none());
    assert_eq!(table.stats().ended_by(EndCause::RemoteBye), 1);
}

#[test]
fn rfc5407_bye_before_ack_stops_2xx_retransmission() {
    let t0 = Instant::now();
    let mut u = InviteUsage::default();
    u.on_invite(10, 0);
    u.answered(t0, 10, &response(200, "t"));
    assert!(u.awaiting_ack());
    u.stop();
    assert!(!u.awaiting_ack());
    assert_eq!(u.poll_timeout(), None);
}

#[test]
fn table_matches_counts_and_caps() {
    let mut table: DialogTable<u32> = DialogTable::new(Limits {
        max_dialogs: 2,
        max_bytes: 1 << 20,
    });
    let early = Dialog::uac(&invite(), &response(180, "a"), "sip:a@a").unwrap();
    let confirmed = Dialog::uac(&invite(), &response(200, "b"), "sip:a@a").unwrap();
    table.insert(early.clone(), 1).unwrap();
    assert_eq!(
        table.insert(early.clone(), 9).unwrap_err(),
        Error::Duplicate
    );
    table.insert(confirmed, 2).unwrap();
    assert_eq!(table.len(), 2);
    let s = table.stats();
    assert_eq!((s.early, s.confirmed, s.created), (1, 1, 2));
    assert!(s.bytes > 0);
    // Full: refused and counted.
    let other = Dialog::uac(&invite(), &response(200, "c"), "sip:a@a").unwrap();
    assert_eq!(table.insert(other, 3).unwrap_err(), Error::TableFull);
    assert_eq!(table.stats().refused, 1);
    // Responses match by (Call-ID, From-tag, To-tag).
    assert_eq!(
        table.match_response(&response(200, "b")).map(|e| e.usage),
        Some(2)
    );
    assert!(table.match_response(&response(200, "zz")).is_none());
    assert_eq!(table.forks("call-1@192.0.2.1", "ftag").count(), 2);
    // The early one is confirmed: the counters follow.
    let id = early.id().clone();
    table
        .get_by_id_mut(&id)
        .unwrap()
        .dialog
        .confirm(&response(200, "a"))
        .unwrap();
    assert!(table.update(&id).is_none());
    assert_eq!((table.stats().early, table.stats().confirmed), (0, 2));
    // Removal frees the slot and the bytes.
    table.remove(&id, EndCause::LocalBye).unwrap();
    let b = DialogId::of_incoming_response(&response(200, "b")).unwrap();
    table.remove(&b, EndCause::Timeout).unwrap();
    let s = table.stats();
    assert_eq!((table.len(), s.early, s.confirmed, s.bytes), (0, 0, 0, 0));
    assert_eq!(s.ended_by(EndCause::LocalBye), 1);
    assert_eq!(s.ended_by(EndCause::Timeout), 1);
    assert!(table.is_empty());
}

#[test]
fn table_memory_cap_refuses() {
    let d = Dialog::uac(&invite(), &response(200, "b"), "sip:a@a").unwrap();
    let mut table: DialogTable<()> = DialogTable::new(Limits {
        max_dialogs: 10,
        max_bytes: d.heap_size() - 1,
    });
    assert_eq!(table.insert(d, ()).unwrap_err(), Error::TableFull);
}

#[test]
fn confirmed_dialog_stays_under_one_kilobyte() {
    let d = Dialog::uac(
        &invite(),
        &response(200, "bobtag"),
        "sip:alice@192.0.2.1:5060",
    )
    .unwrap();
    let mut usage = InviteUsage::default();
    usage.set_ack(10, response(200, "bobtag"));
    let total = std::mem::size_of::<Dialog>()
        + d.heap_size()
        + std::mem::size_of::<InviteUsage>()
        + usage.heap_size();
    assert!(total <= 1024, "{total} bytes");
}

#[test]
fn a_2xx_without_contact_is_acked_and_reported_invalid() {
    let t0 = Instant::now();
    let mut c = InviteClient::new(invite(), "sip:a@a", T1).unwrap();
    let bare = invite().response(200).to_tag("nc").build().unwrap();
    let ClientEvent::InvalidAnswer { dialog, ack } = c.on_response(t0, &bare, VIA) else {
        panic!()
    };
    // ACKed to the Request-URI so that the 2xx stops; retransmissions get the same ACK.
    assert_eq!(ack.uri_str(), Some("sip:bob@example.com"));
    assert_eq!(dialog.id().remote_tag, "nc");
    assert!(matches!(
        c.on_response(t0, &bare, VIA),
        ClientEvent::Reack(_)
    ));
    // A real answer from another fork afterwards is an extra fork to end.
    assert!(matches!(
        c.on_response(t0, &response(200, "ok"), VIA),
        ClientEvent::ExtraFork { .. }
    ));
    // The UAS side's check before sending.
    assert_eq!(crate::check_dialog_response(&bare), Err(Error::NoContact));
    assert_eq!(crate::check_dialog_response(&response(200, "ok")), Ok(()));
    let ringing = invite().response(180).to_tag("r").build().unwrap();
    assert_eq!(crate::check_dialog_response(&ringing), Ok(()));
}
