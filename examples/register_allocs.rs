//! Heap allocations per REGISTER through the whole server path (issue 17): a UDP datagram in,
//! the transport, the Endpoint's driver, the registrar (open mode, stateless REGISTER, as the
//! `registrar` example runs by default), the response built and sent. Counted with a counting
//! global allocator while a plain socket (which allocates nothing per request) sends
//! REGISTERs one at a time and waits for each 200.
//!
//! ```text
//! cargo run --release --example register_allocs            # 20 000 REGISTERs
//! cargo run --release --example register_allocs -- 50000
//! cargo run --release --example register_allocs -- 20000 --no-inline
//! ```
//!
//! By default REGISTER is answered on the UDP receive task ([`InlineRegistrar`], as the
//! `registrar` example runs); `--no-inline` counts the path through the Endpoint's driver and
//! a worker task instead.
//!
//! Each REGISTER is a new AOR (a new binding), then the same AORs register again (a refresh
//! of an existing binding): both figures are printed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::UdpSocket;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sip_stack::endpoint::Endpoint;
use sip_stack::registrar::{serve, InlineRegistrar, Registrar, RegistrarConfig, ServiceOptions};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

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

#[global_allocator]
static GLOBAL: Counting = Counting;

fn register(n: u32, me: std::net::SocketAddr, cseq: u32) -> Vec<u8> {
    format!(
        "REGISTER sip:localhost SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{n}-{cseq};rport\r\n\
         Max-Forwards: 70\r\nTo: <sip:u{n}@localhost>\r\nFrom: <sip:u{n}@localhost>;tag=t{n}\r\n\
         Call-ID: c{n}@{me}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:u{n}@{me}>\r\n\
         Expires: 3600\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// Sends every prepared REGISTER and waits for its 200; returns the allocations counted.
fn run(sock: &UdpSocket, to: std::net::SocketAddr, msgs: &[Vec<u8>]) -> u64 {
    let mut buf = [0u8; 4096];
    let before = ALLOCS.load(Ordering::Relaxed);
    for m in msgs {
        sock.send_to(m, to).expect("send");
        let n = sock.recv(&mut buf).expect("no answer within 5 s");
        assert!(buf[..n].starts_with(b"SIP/2.0 200"), "not a 200");
    }
    ALLOCS.load(Ordering::Relaxed) - before
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let count: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let inline = !std::env::args().any(|a| a == "--no-inline");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let registrar = Arc::new(Registrar::open(RegistrarConfig::new("localhost")));
    let mut builder = Endpoint::builder()
        .udp("127.0.0.1:0".parse()?)
        // As the registrar example receives: datagrams packed into shared 64 KB buffers.
        .transport_config(sip_transport::TransportConfig {
            udp_receive_slab: 64 << 10,
            ..Default::default()
        })
        .stateless(registrar.clone())
        .stateless_methods(&[sip_stack::core::Method::Register])
        .user_agent(None);
    if inline {
        builder = builder.inline(Arc::new(
            InlineRegistrar::new(registrar.clone())
                .responder(registrar.clone())
                .server(None),
        ));
    }
    let endpoint = rt.block_on(builder.build())?;
    let to = endpoint
        .local_addr(sip_stack::core::Transport::Udp)
        .ok_or("no UDP")?;
    let options = ServiceOptions {
        workers: 1,
        ..ServiceOptions::default()
    };
    let server = std::thread::spawn(move || {
        rt.block_on(serve(endpoint, registrar, options));
    });
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    let me = sock.local_addr()?;
    // Warm up (maps growing, thread-locals, first buffers), then measure.
    let warm: Vec<Vec<u8>> = (0..1000).map(|n| register(count + n, me, 1)).collect();
    run(&sock, to, &warm);
    let first: Vec<Vec<u8>> = (0..count).map(|n| register(n, me, 1)).collect();
    let again: Vec<Vec<u8>> = (0..count).map(|n| register(n, me, 2)).collect();
    let new_binding = run(&sock, to, &first);
    let refresh = run(&sock, to, &again);
    println!(
        "allocations per REGISTER over {count} ({}): new binding {:.1}, refresh {:.1} (client side: 0)",
        if inline { "inline" } else { "through the driver" },
        new_binding as f64 / f64::from(count),
        refresh as f64 / f64::from(count),
    );
    drop(server);
    Ok(())
}
