//! What `examples/register_allocs.rs` and `tests/register_allocs.rs` share: a counting
//! global allocator (each binary installs its own with `#[global_allocator]`), the REGISTER
//! they send and the loop that sends them one at a time.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};

/// Counts every allocation and reallocation, then forwards to the system allocator.
pub struct Counting;

/// Allocations counted since the process started.
pub static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// REGISTER number `n` (its own AOR, Call-ID and contact) from `me`, with `rport` as phones
/// send it.
pub fn register(n: u32, me: SocketAddr, cseq: u32) -> Vec<u8> {
    format!(
        "REGISTER sip:localhost SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{n}-{cseq};rport\r\n\
         Max-Forwards: 70\r\nTo: <sip:u{n}@localhost>\r\nFrom: <sip:u{n}@localhost>;tag=t{n}\r\n\
         Call-ID: c{n}@{me}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:u{n}@{me}>\r\n\
         Expires: 3600\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// Sends every prepared REGISTER and waits for its 200; returns the allocations counted
/// meanwhile (the sending side allocates nothing).
pub fn run(sock: &UdpSocket, to: SocketAddr, msgs: &[Vec<u8>]) -> u64 {
    let mut buf = [0u8; 4096];
    let before = ALLOCS.load(Ordering::Relaxed);
    for m in msgs {
        sock.send_to(m, to).expect("send");
        let n = sock.recv(&mut buf).expect("no answer within 5 s");
        assert!(buf[..n].starts_with(b"SIP/2.0 200"), "not a 200");
    }
    ALLOCS.load(Ordering::Relaxed) - before
}
