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

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::Duration;

use sip_stack::endpoint::Endpoint;
use sip_stack::registrar::{serve, InlineRegistrar, Registrar, RegistrarConfig, ServiceOptions};

#[path = "../tests/support/register_allocs.rs"]
mod support;

use support::{register, run};

#[global_allocator]
static GLOBAL: support::Counting = support::Counting;

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
