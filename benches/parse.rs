//! Parser benchmarks over the shared corpus (`testdata/bench/`, a copy of
//! `conformance/bench/`): one benchmark per file, named after its stem.
//!
//! ```text
//! cargo bench --bench parse                 # all groups
//! cargo bench --bench parse -- parse/       # just the raw parse
//! ```
//!
//! - `parse/<stem>`: datagram parse (start line, header table, body).
//! - `parse_typed/<stem>`: parse, then read Via, From, To, Call-ID, CSeq and Contact typed.
//! - `serialize/<stem>`: write a parsed message to a (reused) buffer.
//! - `proxy_edit/<stem>`: push a Via, pop a Route, serialise (what a proxy does per request).

use std::hint::black_box;
use std::path::PathBuf;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use sip_stack::core::Message;

fn corpus() -> Vec<(String, Bytes)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/bench");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("testdata/bench exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sip"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
            let data = Bytes::from(std::fs::read(&p).unwrap());
            (stem, data)
        })
        .collect()
}

fn read_typed(m: &Message) -> usize {
    let mut n = 0;
    if let Ok(v) = m.via() {
        n += v.branch().map_or(0, str::len);
    }
    if let Ok(f) = m.from() {
        n += f.tag().map_or(0, str::len);
    }
    if let Ok(t) = m.to() {
        n += t.uri_str().len();
    }
    n += m.call_id().map_or(0, str::len);
    if let Ok(c) = m.cseq() {
        n += c.seq as usize;
    }
    for c in m.contacts().flatten() {
        n += usize::from(matches!(c, sip_stack::core::addr::ContactValue::Star));
    }
    n
}

fn benches(c: &mut Criterion) {
    let corpus = corpus();
    let mut g = c.benchmark_group("parse");
    for (stem, data) in &corpus {
        // The parsed message is consumed in place (as a server does), so the figure is the
        // parse and the drop, not criterion moving a ~650-byte value out of the closure.
        g.bench_function(stem.as_str(), |b| {
            b.iter(|| {
                Message::parse(black_box(data.clone()))
                    .map(|m| m.header_count())
                    .unwrap_or(0)
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("parse_typed");
    for (stem, data) in &corpus {
        g.bench_function(stem.as_str(), |b| {
            b.iter(|| {
                let m = Message::parse(black_box(data.clone())).unwrap();
                black_box(read_typed(&m))
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("serialize");
    for (stem, data) in &corpus {
        let m = Message::parse(data.clone()).unwrap();
        let mut out = Vec::with_capacity(8192);
        g.bench_function(stem.as_str(), |b| {
            b.iter(|| {
                out.clear();
                black_box(&m).write_to(&mut out);
                black_box(out.len())
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("proxy_edit");
    for (stem, data) in &corpus {
        let mut out = Vec::with_capacity(8192);
        g.bench_function(stem.as_str(), |b| {
            b.iter(|| {
                let mut m = Message::parse(black_box(data.clone())).unwrap();
                m.push_via("SIP/2.0/UDP proxy.example.com;branch=z9hG4bK-bench")
                    .unwrap();
                let _ = m.pop_route();
                out.clear();
                m.write_to(&mut out);
                black_box(out.len())
            })
        });
    }
    g.finish();
}

criterion_group!(parse_benches, benches);
criterion_main!(parse_benches);
