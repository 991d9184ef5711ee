//! Proves the allocation figure of issue #2: parsing a datagram of up to 32 header lines makes
//! at most one heap allocation (none up to 16 lines: the header table is inline and the buffer
//! is moved in; one up to 64), and reading the typed views the transaction layer needs makes
//! none.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use sip_core::Message;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    let out = f();
    (out, ALLOCATIONS.load(Ordering::SeqCst) - before)
}

fn corpus() -> Vec<(String, Bytes)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/bench");
    let mut out: Vec<(String, Bytes)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sip"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                Bytes::from(std::fs::read(&p).unwrap()),
            )
        })
        .collect();
    out.sort();
    out
}

// One test function: the counter is process-wide, so parallel tests would disturb each other.
#[test]
fn parse_and_typed_reads_allocation_counts() {
    for (name, data) in corpus() {
        // The buffer handle is made before counting, as a transport hands one over.
        let input = data.clone();
        let (msg, n) = allocations_during(|| Message::parse(input).unwrap());
        if msg.header_count() <= 16 {
            assert_eq!(
                n, 0,
                "{name}: the inline header table should need no allocation"
            );
        } else {
            // Beyond 16 lines the table spills once, straight to room for 64.
            assert!(
                n <= 1,
                "{name}: {n} allocations for {} headers",
                msg.header_count()
            );
        }
        let (_, n) = allocations_during(|| {
            let via = msg.via().unwrap();
            let from = msg.from().unwrap();
            let to = msg.to().unwrap();
            let cseq = msg.cseq().unwrap();
            let contacts = msg.contacts().filter(|c| c.is_ok()).count();
            (
                via.branch().map(str::len),
                from.tag().map(str::len),
                to.uri_str().len(),
                msg.call_id().map(str::len),
                cseq.seq,
                contacts,
            )
        });
        assert_eq!(n, 0, "{name}: typed reads allocated {n} times");
        // A request with more than 8 Via lines spills the builder's inline list of copied
        // lines (and its response, past 16 lines, the header table): not the common case.
        if msg.is_request() && msg.values(sip_core::HeaderName::Via).count() <= 6 {
            responses_share_a_slab(&name, &msg);
        }
        drop(msg);
    }
}

/// Issue 17: a response is written into the thread's response slab (one allocation per slab,
/// not per response) and its added lines into a reused buffer; the generated To-tag needs no
/// `String`. Checked over 1000 answers kept alive together, as a response cache keeps them.
fn responses_share_a_slab(name: &str, req: &Message) {
    let build = || {
        req.response(200)
            .header_fmt(
                "Contact",
                format_args!("<sip:u@192.0.2.1:5060>;expires={}", 3600),
            )
            .header("Server", "sip-stack")
            .build()
            .unwrap()
    };
    let warm = build();
    let (kept, n) = allocations_during(|| {
        let mut kept = Vec::with_capacity(1000);
        for _ in 0..1000 {
            kept.push(build());
        }
        kept
    });
    let bytes: usize = kept.iter().map(|m| m.to_bytes().len()).sum();
    // The Vec holding them is one allocation; each slab is two (its buffer, its shared
    // header).
    let slabs = bytes / sip_core::builder::RESPONSE_SLAB + 1;
    assert!(
        n <= 1 + 2 * slabs,
        "{name}: {n} allocations for 1000 responses ({bytes} bytes, {slabs} slabs)"
    );
    assert_eq!(
        kept[999].header(sip_core::HeaderName::CallId),
        warm.header(sip_core::HeaderName::CallId)
    );
}
