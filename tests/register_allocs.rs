//! Heap allocations per REGISTER on the registrar's run-to-completion path (issue 17: at most
//! 4), counted by a counting global allocator (this test binary's own) while a plain socket
//! sends REGISTERs one at a time and waits for each 200. The same measurement as
//! `cargo run --release --example register_allocs`, kept here so a change that adds an
//! allocation to the hot path fails the tests.

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::Duration;

use sip_stack::endpoint::Endpoint;
use sip_stack::registrar::{serve, InlineRegistrar, Registrar, RegistrarConfig, ServiceOptions};

#[path = "support/register_allocs.rs"]
mod support;

use support::{register, run};

#[global_allocator]
static GLOBAL: support::Counting = support::Counting;

#[test]
fn a_register_allocates_at_most_four_times() {
    const COUNT: u32 = 2000;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let registrar = Arc::new(Registrar::open(RegistrarConfig::new("localhost")));
    let builder = Endpoint::builder()
        .udp("127.0.0.1:0".parse().unwrap())
        // As the registrar example receives: datagrams packed into shared 64 KB buffers.
        .transport_config(sip_transport::TransportConfig {
            udp_receive_slab: 64 << 10,
            ..Default::default()
        })
        .stateless(registrar.clone())
        .stateless_methods(&[sip_stack::core::Method::Register])
        .user_agent(None)
        .inline(Arc::new(
            InlineRegistrar::new(registrar.clone())
                .responder(registrar.clone())
                .server(None),
        ));
    let endpoint = rt.block_on(builder.build()).unwrap();
    let to = endpoint
        .local_addr(sip_stack::core::Transport::Udp)
        .expect("UDP listener");
    let options = ServiceOptions {
        workers: 1,
        ..ServiceOptions::default()
    };
    // The server runs until the test process ends.
    std::thread::spawn(move || rt.block_on(serve(endpoint, registrar, options)));
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let me = sock.local_addr().unwrap();
    // Warm up (tables growing, thread-locals, first buffers), then measure.
    let warm: Vec<Vec<u8>> = (0..500).map(|n| register(COUNT + n, me, 1)).collect();
    run(&sock, to, &warm);
    let first: Vec<Vec<u8>> = (0..COUNT).map(|n| register(n, me, 1)).collect();
    let again: Vec<Vec<u8>> = (0..COUNT).map(|n| register(n, me, 2)).collect();
    let new_binding = run(&sock, to, &first) as f64 / f64::from(COUNT);
    let refresh = run(&sock, to, &again) as f64 / f64::from(COUNT);
    eprintln!("allocations per REGISTER: new binding {new_binding:.2}, refresh {refresh:.2}");
    // Measured 3.1 and 2.1: the contact and Call-ID strings of the binding, the AOR's key
    // for a new one, and a fraction for buffers that are refilled now and then.
    assert!(
        new_binding <= 4.0,
        "{new_binding:.2} allocations per new binding"
    );
    assert!(refresh <= 3.0, "{refresh:.2} allocations per refresh");
}
