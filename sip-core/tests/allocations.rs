//! Proves the allocation figure of issue #2: parsing a datagram of up to 32 header lines makes
//! at most one heap allocation (in fact none: the header table is inline and the buffer is
//! moved in), and reading the typed views the transaction layer needs makes none.

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
        if msg.header_count() <= 32 {
            assert!(
                n <= 1,
                "{name}: {n} allocations for {} headers",
                msg.header_count()
            );
            assert_eq!(
                n, 0,
                "{name}: the inline header table should need no allocation"
            );
        } else {
            // Beyond 32 lines the table spills once (capacity doubles to 64).
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
        drop(msg);
    }
}
