//! Transport benchmarks.
//!
//! - `udp_receive/{1,2}_cores`, `tcp_receive/{1,2}_cores`: requests received, parsed,
//!   validated, Via-stamped (every request carries `rport`) and delivered through the event
//!   channel, on loopback, with a current-thread runtime (1 core) and a 2-worker runtime.
//! - After criterion: the heap our layer holds per idle TCP connection, counted by a global
//!   allocator while `IDLE_CONNECTIONS` plain client sockets (no heap of their own) are open.
//!
//! `CARGO_TARGET_DIR=/work/target-transport cargo bench -p sip-transport --bench transport`

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use sip_core::Transport;
use sip_transport::{TransportConfig, TransportEvent, TransportLayer};
use tokio::io::AsyncWriteExt;
use tokio::runtime::Runtime;

struct Counting;
static HEAP: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        HEAP.fetch_add(l.size() as isize, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        HEAP.fetch_sub(l.size() as isize, Ordering::Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        HEAP.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const IDLE_CONNECTIONS: usize = 9_000;
const BATCH: usize = 256;
const WINDOW: usize = 32;

fn request(i: usize, via_host: &str) -> Vec<u8> {
    format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP {via_host};rport;branch=z9hG4bK{i:08}\r\n\
         Max-Forwards: 70\r\nTo: <sip:alice@example.com>\r\nFrom: <sip:alice@example.com>;tag=a73kszlfl\r\n\
         Call-ID: 1j9FpLxk3uxtm8tn@192.0.2.7\r\nCSeq: {i} REGISTER\r\n\
         Contact: <sip:alice@192.0.2.7:5060;transport=udp>;expires=3600\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn runtime(cores: usize) -> Runtime {
    if cores == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cores)
            .enable_all()
            .build()
            .unwrap()
    }
}

fn bench_udp(c: &mut Criterion) {
    let mut g = c.benchmark_group("udp_receive");
    g.throughput(Throughput::Elements(BATCH as u64));
    for cores in [1, 2] {
        let rt = runtime(cores);
        let cfg = TransportConfig {
            udp_sockets_per_addr: cores,
            udp_recv_buffer: Some(4 << 20),
            ..TransportConfig::default()
        };
        let (handle, mut rx) = rt.block_on(async {
            TransportLayer::builder()
                .udp("127.0.0.1:0".parse().unwrap())
                .config(cfg)
                .build()
                .await
                .unwrap()
        });
        let to = handle.local_addr(Transport::Udp).unwrap();
        let senders: Vec<std::net::UdpSocket> = (0..8)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let msgs: Vec<Vec<u8>> = (0..BATCH).map(|i| request(i, "client.invalid")).collect();
        g.bench_function(format!("{cores}_cores"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    rt.block_on(async {
                        // A window of datagrams in flight, so the socket buffer never overflows.
                        let mut sent = 0;
                        let mut got = 0;
                        while got < BATCH {
                            while sent < BATCH && sent - got < WINDOW {
                                senders[sent % senders.len()]
                                    .send_to(&msgs[sent], to)
                                    .unwrap();
                                sent += 1;
                            }
                            match rx.recv().await {
                                Some(TransportEvent::Message { .. }) => got += 1,
                                Some(_) => {}
                                None => panic!("closed"),
                            }
                        }
                    });
                }
                start.elapsed()
            })
        });
        handle.shutdown();
    }
    g.finish();
}

fn bench_tcp(c: &mut Criterion) {
    let mut g = c.benchmark_group("tcp_receive");
    g.throughput(Throughput::Elements(BATCH as u64));
    for cores in [1, 2] {
        let rt = runtime(cores);
        let (handle, mut rx) = rt.block_on(async {
            TransportLayer::builder()
                .tcp("127.0.0.1:0".parse().unwrap())
                .build()
                .await
                .unwrap()
        });
        let to = handle.local_addr(Transport::Tcp).unwrap();
        // Two client connections, so that two cores have two readers to run.
        let mut clients: Vec<tokio::net::TcpStream> = rt.block_on(async {
            vec![
                tokio::net::TcpStream::connect(to).await.unwrap(),
                tokio::net::TcpStream::connect(to).await.unwrap(),
            ]
        });
        let batch: Vec<u8> = (0..BATCH / 2)
            .flat_map(|i| request(i, "client.invalid"))
            .collect();
        g.bench_function(format!("{cores}_cores"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    rt.block_on(async {
                        let (c0, c1) = clients.split_at_mut(1);
                        let w = async {
                            let (a, b) =
                                tokio::join!(c0[0].write_all(&batch), c1[0].write_all(&batch));
                            a.unwrap();
                            b.unwrap();
                        };
                        let r = async {
                            let mut got = 0;
                            while got < BATCH {
                                if let Some(TransportEvent::Message { .. }) = rx.recv().await {
                                    got += 1;
                                }
                            }
                        };
                        tokio::join!(w, r);
                    });
                }
                start.elapsed()
            })
        });
        handle.shutdown();
    }
    g.finish();
}

/// Heap held by the transport layer per idle TCP connection.
fn idle_connection_memory() {
    let rt = runtime(1);
    let (handle, _rx) = rt.block_on(async {
        let cfg = TransportConfig {
            max_connections_per_ip: IDLE_CONNECTIONS + 10,
            max_connections: IDLE_CONNECTIONS + 10,
            event_capacity: IDLE_CONNECTIONS + 10,
            ..TransportConfig::default()
        };
        TransportLayer::builder()
            .tcp("127.0.0.1:0".parse().unwrap())
            .config(cfg)
            .build()
            .await
            .unwrap()
    });
    let to: SocketAddr = handle.local_addr(Transport::Tcp).unwrap();
    // Warm up: one connection opened, served, closed (thread-local read buffer, tables).
    rt.block_on(async {
        let mut s = tokio::net::TcpStream::connect(to).await.unwrap();
        s.write_all(&request(0, "client.invalid")).await.unwrap();
        drop(s);
        tokio::time::sleep(Duration::from_millis(50)).await;
    });
    let before = HEAP.load(Ordering::Relaxed);
    let rss_before = rss_kib();
    // Plain blocking client sockets: no heap on our side of the measurement.
    // Connected from another thread while this one drives the runtime that accepts.
    let connector = std::thread::spawn(move || {
        (0..IDLE_CONNECTIONS)
            .map(|_| std::net::TcpStream::connect(to))
            .collect::<Result<Vec<_>, _>>()
    });
    let ok = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(120), async {
            while handle.stats().open_connections < IDLE_CONNECTIONS as u64 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .is_ok()
    });
    let clients = connector.join().expect("connector thread");
    let clients = match clients {
        Ok(c) => c,
        Err(e) => {
            println!("idle_tcp_memory: could not open {IDLE_CONNECTIONS} connections: {e}");
            return;
        }
    };
    let after = HEAP.load(Ordering::Relaxed);
    let rss_after = rss_kib();
    // The event channel holds one FlowOpened event per connection (never read here): a block
    // of 32 events costs about 32 × size_of::<TransportEvent>(), which we subtract.
    let event = std::mem::size_of::<TransportEvent>() as isize;
    let per = (after - before) / IDLE_CONNECTIONS as isize;
    let _ = writeln!(
        std::io::stdout(),
        "idle_tcp_memory: {} connections (all open: {ok}), heap +{} KiB = {} B/connection \
         ({} B/connection without the unread FlowOpened events, {event} B each); \
         process RSS +{} KiB (heap plus allocator slack; kernel socket buffers are not in RSS)",
        IDLE_CONNECTIONS,
        (after - before) / 1024,
        per,
        per - event,
        rss_after.saturating_sub(rss_before),
    );
    drop(clients);
    handle.shutdown();
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4)
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench_udp, bench_tcp
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    if std::env::args().any(|a| a == "--bench") {
        idle_connection_memory();
    }
}
