//! Memory per binding of the in-memory location store (issue 6 target: ≤ 256 B per binding
//! beyond the contact's own bytes), measured with a counting global allocator.
//!
//! ```text
//! cargo run --release --example registrar_memory            # 100 000 bindings
//! cargo run --release --example registrar_memory -- 250000  # another count
//! cargo run --release --example registrar_memory -- 100000 --check  # exit 1 over 256 B
//! ```
//!
//! Each binding is a real REGISTER (one AOR each, as softphones send it) through
//! [`Registrar::handle`], so what stays allocated is what the registrar keeps: the AOR key, the
//! binding (contact, Call-ID, flow…), the per-AOR vector and the hash map's share. The request
//! and the response are dropped after each call; live bytes are read before and after.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Instant, SystemTime};

use sip_stack::core::{Flow, Message, Transport};
use sip_stack::registrar::{Binding, LocationStore, Registrar, RegistrarConfig};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn register(i: usize) -> Message {
    // What a softphone sends: a 32-hex-digit Call-ID, a contact with port and transport.
    let raw = format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 10.0.{a}.{b}:5060;branch=z9hG4bK{i:08x}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:user{i}@example.com>;tag={i:x}\r\n\
         To: <sip:user{i}@example.com>\r\n\
         Call-ID: {i:016x}{h:016x}\r\n\
         CSeq: 1 REGISTER\r\n\
         Contact: <sip:user{i}@10.0.{a}.{b}:5060;transport=udp>\r\n\
         Expires: 3600\r\n\
         Content-Length: 0\r\n\r\n",
        a = (i >> 8) & 0xff,
        b = i & 0xff,
        h = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
    );
    Message::parse(raw.into_bytes()).expect("valid REGISTER")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let check = args.iter().any(|a| a == "--check");
    let n: usize = args
        .iter()
        .find(|a| *a != "--check")
        .map(|s| s.parse().expect("a count"))
        .unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async {
        // The store alone: without the response cache (it keeps each answer 64·T1 for
        // retransmissions, bounded by its own count cap, and would be counted here).
        let mut config = RegistrarConfig::new("example.com");
        config.response_cache = 0;
        let registrar = Registrar::open(config);
        let now = Instant::now();
        let wall = SystemTime::now();
        // Warm up what is allocated once (the registrar's lazies, the runtime), then measure.
        let flow = |i: usize| Flow {
            transport: Transport::Udp,
            local: "10.1.0.1:5060".parse().unwrap(),
            remote: format!("10.0.{}.{}:5060", (i >> 8) & 0xff, i & 0xff)
                .parse()
                .unwrap(),
        };
        let before = live();
        for i in 0..n {
            let req = register(i);
            let resp = registrar.handle(&req, flow(i), now, wall).await;
            assert_eq!(resp.map(|r| r.status()), Some(Some(200)));
        }
        let after = live();
        let (aors, bindings) = registrar.store().counts().await;
        assert_eq!((aors, bindings), (n, n));

        let all = registrar.store().all(now).await;
        let contact_bytes: usize = all.iter().map(|(_, b)| b.contact.len()).sum();
        let call_id_bytes: usize = all.iter().map(|(_, b)| b.call_id.len()).sum();
        let aor_bytes: usize = all.iter().map(|(a, _)| a.len()).sum();
        drop(all);

        let per = (after - before) as f64 / n as f64;
        let contact = contact_bytes as f64 / n as f64;
        let beyond = per - contact;
        println!("bindings                         {n} (one per AOR, through Registrar::handle)");
        println!(
            "live heap growth                 {} B = {per:.1} B per binding",
            after - before
        );
        println!("  the contact's own bytes        {contact:.1} B (e.g. sip:user1@10.0.0.1:5060;transport=udp)");
        println!("  beyond the contact             {beyond:.1} B  (target <= 256 B)");
        let mem = registrar.memory().await;
        println!(
            "  the store's own accounting     {} B per binding (Registrar::memory, the stats line)",
            mem.bytes_per_binding.unwrap_or(0)
        );
        println!("of which, per binding:");
        println!(
            "  Binding struct (size_of)       {} B",
            std::mem::size_of::<Binding>()
        );
        let node = per_aor_node();
        println!(
            "  AOR                            {:.1} B (inside its node up to 54 B)",
            aor_bytes as f64 / n as f64
        );
        println!(
            "  Call-ID                        {:.1} B",
            call_id_bytes as f64 / n as f64
        );
        println!(
            "  AOR node beyond the Binding    {node} B (inline AOR room, vector length), 16 B table slot"
        );
        println!(
            "  rest (allocator headers, hash table control bytes and growth slack): {:.1} B",
            beyond
                - std::mem::size_of::<Binding>() as f64
                - call_id_bytes as f64 / n as f64
                - node as f64
                - 16.0
        );
        println!(
            "beyond all the client's strings (contact, Call-ID, AOR): {:.1} B",
            beyond - (call_id_bytes + aor_bytes) as f64 / n as f64
        );
        if beyond > 256.0 {
            println!("OVER TARGET (256 B beyond the contact)");
            if check {
                std::process::exit(1);
            }
        }
    });
}

/// Bytes of an AOR's node in the store beyond its one inline binding: the key's inline room
/// (54 bytes, its length and tag) and the bindings vector's length word.
fn per_aor_node() -> usize {
    56 + std::mem::size_of::<sip_stack::registrar::AorBindings>() - std::mem::size_of::<Binding>()
}
