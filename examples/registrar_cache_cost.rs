//! Runs N REGISTERs through `Registrar::handle` (no I/O), with or without the response cache
//! that recognises retransmissions, so that the cache's cost can be counted in instructions,
//! which a shared machine does not disturb (issue 11: at most 10 %).
//!
//! ```text
//! cargo build --release --example registrar_cache_cost
//! for c in 0 32768; do valgrind --tool=callgrind --callgrind-out-file=cg.$c \
//!     target/release/examples/registrar_cache_cost $c 40000 open; done
//! callgrind_annotate --inclusive=yes cg.0 | grep Runtime::block_on    # then cg.32768
//! ```
//!
//! Arguments: cache size (0: none), number of REGISTERs, `open` or `digest`. Every REGISTER is
//! new (its own Call-ID and branch): the cache costs its insert and saves nothing. A registrar
//! without authentication keeps no cache whatever its size (`RegistrarConfig::response_cache`),
//! so `open` runs the same work for every size; `digest` shows the cache's cost.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use sip_stack::auth::{Account, DefaultRandom, DigestClient, DigestRequest, MemoryStore};
use sip_stack::core::auth::{Algorithm, Challenge};
use sip_stack::core::{Flow, HeaderName, Message, Transport};
use sip_stack::registrar::{AuthMode, Registrar, RegistrarConfig};

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
    Message::parse(s.into_bytes()).expect("a valid REGISTER")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: registrar_cache_cost CACHE N open|digest";
    let (Some(cache), Some(n), Some(mode)) = (
        args.first().and_then(|a| a.parse::<usize>().ok()),
        args.get(1).and_then(|a| a.parse::<u64>().ok()),
        args.get(2),
    ) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let digest = mode == "digest";
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let flow = Flow {
        transport: Transport::Udp,
        local: "10.1.0.1:5060".parse().expect("addr"),
        remote: "10.0.0.7:5060".parse().expect("addr"),
    };
    let mut config = RegistrarConfig::new("example.com");
    config.response_cache = cache;
    config.algorithms = vec![Algorithm::Md5];
    if digest {
        let mut users = MemoryStore::new();
        users.insert_password("alice", "example.com", "secret");
        config.auth = AuthMode::Digest(Arc::new(users));
    }
    let r = Registrar::open(config);
    let (now, wall) = (Instant::now(), SystemTime::now());
    let mut client = DigestClient::with_random(DefaultRandom::from_seed([1; 32]));
    client.add_account(Account::new("example.com", "alice", "secret"));
    let target = DigestRequest::new("REGISTER", "sip:example.com", b"");
    if digest {
        let ch = rt
            .block_on(r.handle(&register(0, "alice", None), flow, now, wall))
            .expect("a challenge");
        let challenges: Vec<Challenge<'_>> = ch
            .header_lines(HeaderName::WwwAuthenticate)
            .filter_map(|v| Challenge::parse(std::str::from_utf8(v).ok()?).ok())
            .collect();
        client
            .respond(&challenges, "example.com", &target)
            .expect("an answer");
    }
    let t = Instant::now();
    let mut ok = 0u64;
    for i in 1..=n {
        let req = if digest {
            let auth = client
                .authorize("example.com", &target)
                .expect("an answer")
                .to_string();
            register(i, "alice", Some(&auth))
        } else {
            register(i, &format!("u{i}"), None)
        };
        let resp = rt.block_on(r.handle(&req, flow, now, wall));
        ok += u64::from(resp.and_then(|m| m.status()) == Some(200));
    }
    println!(
        "{n} REGISTERs ({mode}, response cache {cache}): {ok} answered 200, {:.0} ns each",
        t.elapsed().as_nanos() as f64 / n as f64
    );
}
