//! Dialog benchmarks on the shared corpus (`testdata/bench/invite_sdp.sip` and its
//! `response_200_sdp.sip`): a table of 10 000 confirmed dialogs built from that pair with
//! distinct Call-IDs.
//!
//! ```text
//! cargo bench -p sip-dialog --bench dialog
//! ```
//!
//! - `dialog/lookup`: find a dialog by the ID a request in it carries.
//! - `dialog/lookup_build_bye`: that lookup, then build a BYE in the dialog (§12.2.1.1).
//! - `dialog/create_uac`: form the UAC's dialog from the INVITE and its 2xx.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};
use sip_core::{HeaderName, Message, Method};
use sip_dialog::invite::InviteUsage;
use sip_dialog::{Dialog, DialogTable, Entry};

const DIALOGS: usize = 10_000;
const VIA: &str = "SIP/2.0/UDP client.atlanta.example.com:5060;branch=z9hG4bKbench";

fn corpus(name: &str) -> Message {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/bench")
        .join(name);
    Message::parse(std::fs::read(path).expect("the bench corpus")).expect("parses")
}

fn with_call_id(msg: &Message, i: usize) -> Message {
    let mut m = msg.clone();
    m.set_header(
        HeaderName::CallId,
        &format!("{i}-3848276298220188511@atlanta.example.com"),
    )
    .expect("valid Call-ID");
    Message::parse(m.to_bytes()).expect("reparses")
}

fn benches(c: &mut Criterion) {
    let invite = corpus("invite_sdp.sip");
    let ok = corpus("response_200_sdp.sip");
    let mut table: DialogTable<InviteUsage> = DialogTable::default();
    for i in 0..DIALOGS {
        let d = Dialog::uac(
            &with_call_id(&invite, i),
            &with_call_id(&ok, i),
            "sip:alice@client.atlanta.example.com",
        )
        .expect("dialog");
        table.insert(d, InviteUsage::default()).expect("room");
    }
    let probe = with_call_id(&ok, DIALOGS / 2);
    let mut g = c.benchmark_group("dialog");
    g.bench_function("lookup", |b| {
        b.iter(|| black_box(table.match_response(black_box(&probe)).is_some()))
    });
    g.bench_function("lookup_build_bye", |b| {
        b.iter(|| {
            let e = table.match_response(black_box(&probe)).expect("present");
            let bye = e
                .dialog
                .request(Method::Bye, VIA)
                .expect("live")
                .build()
                .expect("builds");
            black_box(bye)
        })
    });
    g.bench_function("create_uac", |b| {
        b.iter(|| black_box(Dialog::uac(black_box(&invite), black_box(&ok), "sip:alice@a").is_ok()))
    });
    g.finish();
    // Per confirmed dialog, stored messages aside: the entry inline (dialog + INVITE usage),
    // the dialog's heap strings, and the table's per-Call-ID key and list.
    let heap = table.stats().bytes / table.len().max(1);
    let inline = std::mem::size_of::<Entry<InviteUsage>>();
    let key = std::mem::size_of::<(String, Vec<Entry<InviteUsage>>)>()
        + table
            .iter()
            .next()
            .map_or(0, |e| e.dialog.id().call_id.len());
    eprintln!(
        "memory per confirmed dialog: {} bytes ({inline} inline entry + {heap} heap + {key} table key and list), {} dialogs",
        inline + heap + key,
        table.len()
    );
}

criterion_group!(dialog, benches);
criterion_main!(dialog);
