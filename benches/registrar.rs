//! What one REGISTER costs in `Registrar::handle`, with and without the response cache that
//! recognises retransmissions (issue 11: the cache must cost at most 10 %).
//!
//! ```text
//! cargo bench --bench registrar
//! ```
//!
//! Benchmark IDs: `registrar/open/{cache,no_cache}` (no authentication: a new binding per
//! request) and `registrar/digest/{cache,no_cache}` (a REGISTER with credentials, the next
//! nonce count each time: the 200 of a digest registration). Every request is new (its own
//! Call-ID and branch), so the cache costs its insert and never saves anything here.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use sip_stack::auth::{Account, DefaultRandom, DigestClient, DigestRequest, MemoryStore};
use sip_stack::core::auth::Challenge;
use sip_stack::core::{Flow, HeaderName, Message, Transport};
use sip_stack::registrar::{AuthMode, Registrar, RegistrarConfig};

fn flow() -> Flow {
    Flow {
        transport: Transport::Udp,
        local: "10.1.0.1:5060".parse().unwrap(),
        remote: "10.0.0.7:5060".parse().unwrap(),
    }
}

fn register(i: u64, user: &str, authorization: Option<&str>) -> Message {
    let mut s = format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.7:5060;branch=z9hG4bK{i}x\r\n\
         Max-Forwards: 70\r\nTo: <sip:{user}@example.com>\r\nFrom: <sip:{user}@example.com>;tag=f{i}\r\n\
         Call-ID: bench-{i}@10.0.0.7\r\nCSeq: 1 REGISTER\r\n\
         Contact: <sip:{user}@10.0.0.7:5060;transport=udp>\r\nExpires: 3600\r\n"
    );
    if let Some(a) = authorization {
        s += &format!("Authorization: {a}\r\n");
    }
    s += "Content-Length: 0\r\n\r\n";
    Message::parse(s.into_bytes()).unwrap()
}

fn registrar(cache: bool, digest: bool) -> Registrar {
    let mut config = RegistrarConfig::new("example.com");
    config.response_cache = if cache { 32_768 } else { 0 };
    config.algorithms = vec![sip_stack::core::auth::Algorithm::Md5];
    if digest {
        let mut users = MemoryStore::new();
        users.insert_password("alice", "example.com", "secret");
        config.auth = AuthMode::Digest(Arc::new(users));
    }
    Registrar::open(config)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("registrar");
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_secs(1));
    let (now, wall) = (Instant::now(), SystemTime::now());
    for (name, cache) in [("cache", true), ("no_cache", false)] {
        let r = registrar(cache, false);
        let mut i = 0u64;
        g.bench_function(format!("open/{name}"), |b| {
            b.iter_batched(
                || {
                    i += 1;
                    // A new AOR per request, as a fleet registering: the store grows.
                    register(i, &format!("u{i}"), None)
                },
                |req| rt.block_on(r.handle(&req, flow(), now, wall)),
                BatchSize::SmallInput,
            )
        });

        let r = registrar(cache, true);
        let mut client = DigestClient::with_random(DefaultRandom::from_seed([1; 32]));
        client.add_account(Account::new("example.com", "alice", "secret"));
        let ch = rt
            .block_on(r.handle(&register(0, "alice", None), flow(), now, wall))
            .unwrap();
        let challenges: Vec<Challenge<'_>> = ch
            .header_lines(HeaderName::WwwAuthenticate)
            .map(|v| Challenge::parse(std::str::from_utf8(v).unwrap()).unwrap())
            .collect();
        let target = DigestRequest::new("REGISTER", "sip:example.com", b"");
        let first = client.respond(&challenges, "example.com", &target).unwrap();
        let first = first.to_string();
        let mut i = 1_000_000_000u64;
        let mut pending = Some(first);
        g.bench_function(format!("digest/{name}"), |b| {
            b.iter_batched(
                || {
                    i += 1;
                    let auth = pending.take().unwrap_or_else(|| {
                        client
                            .authorize("example.com", &target)
                            .unwrap()
                            .to_string()
                    });
                    register(i, "alice", Some(&auth))
                },
                |req| {
                    let resp = rt.block_on(r.handle(&req, flow(), now, wall));
                    debug_assert_eq!(resp.and_then(|m| m.status()), Some(200));
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
