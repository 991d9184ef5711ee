//! Digest authentication benchmarks (sip-auth), per request, for MD5 and SHA-256.
//!
//! ```text
//! cargo bench --bench auth -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! - `auth/challenge/<alg>`: build the 401 challenge (fresh HMAC nonce) and write its
//!   WWW-Authenticate value.
//! - `auth/verify/<alg>`: parse an Authorization value and verify it (nonce MAC, HA1 lookup,
//!   digest, constant-time compare, replay table), each request with the next `nc`.
//! - `auth/parse_credentials/<alg>`: parsing the Authorization value alone.
//! - `auth/verify_forged/<alg>`: parse and verify with a forged nonce (what a flood costs).
//!
//! The request (method, Request-URI, user and realm) is the one of
//! `testdata/bench/register_auth.sip`.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use sip_auth::{
    Account, DefaultRandom, DigestClient, DigestRequest, DigestServer, MemoryStore, Outcome,
    ServerConfig, ServerKey,
};
use sip_core::auth::{Algorithm, Challenge, Credentials};

struct Corpus {
    method: String,
    uri: String,
    username: String,
    realm: String,
}

/// Method and Request-URI from the request line, user and realm from its Authorization.
fn corpus() -> Corpus {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/bench/register_auth.sip");
    let text = std::fs::read_to_string(path).expect("testdata/bench/register_auth.sip");
    let mut start = text.lines().next().unwrap_or_default().split(' ');
    let method = start.next().unwrap_or_default().to_owned();
    let uri = start.next().unwrap_or_default().to_owned();
    let auth = text
        .lines()
        .find_map(|l| l.strip_prefix("Authorization:"))
        .expect("an Authorization header");
    let cr = Credentials::parse(auth).expect("a valid Authorization");
    Corpus {
        method,
        uri,
        username: cr.username.as_deref().unwrap_or_default().to_owned(),
        realm: cr.realm.as_deref().unwrap_or_default().to_owned(),
    }
}

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn bench_auth(c: &mut Criterion) {
    let corpus = corpus();
    let request = DigestRequest::new(&corpus.method, &corpus.uri, b"");
    let mut users = MemoryStore::new();
    users.insert_password(&corpus.username, &corpus.realm, "wonderland");
    let mut group = c.benchmark_group("auth");
    for (name, algorithm) in [("MD5", Algorithm::Md5), ("SHA-256", Algorithm::Sha256)] {
        let config = ServerConfig::new(corpus.realm.clone()).algorithms(&[algorithm]);
        let mut server = DigestServer::with_random(
            config,
            ServerKey::from_bytes([7; 32]),
            DefaultRandom::from_seed([1; 32]),
        );
        group.bench_function(format!("challenge/{name}"), |b| {
            b.iter(|| {
                let challenges = server.challenges(black_box(now()), false);
                challenges.iter().map(|c| c.to_string()).collect::<Vec<_>>()
            })
        });

        let mut client = DigestClient::with_random(DefaultRandom::from_seed([2; 32]));
        client.add_account(Account::new(
            corpus.realm.clone(),
            corpus.username.clone(),
            "wonderland",
        ));
        let headers: Vec<String> = server
            .challenges(now(), false)
            .iter()
            .map(|c| c.to_string())
            .collect();
        let parsed: Vec<Challenge<'_>> = headers
            .iter()
            .map(|h| Challenge::parse(h).expect("challenge"))
            .collect();
        let first = client
            .respond(&parsed, &corpus.realm, &request)
            .expect("answer")
            .to_string();
        // The genuine nonce with its MAC altered: the key id matches, so it costs an HMAC.
        let mut forged = Credentials::parse(&first).expect("parses").into_owned();
        let nonce = forged.nonce.take().unwrap_or_default();
        let flipped = if nonce.ends_with('0') { '1' } else { '0' };
        forged.nonce = Some(format!("{}{flipped}", &nonce[..nonce.len() - 1]).into());
        let forged = forged.to_string();
        group.bench_function(format!("verify/{name}"), |b| {
            b.iter_batched(
                || {
                    client
                        .authorize(&corpus.realm, &request)
                        .expect("next nc")
                        .to_string()
                },
                |header| {
                    let cr = Credentials::parse(&header).expect("parses");
                    let outcome = server.verify(now(), &cr, &request, &users);
                    assert!(matches!(outcome, Outcome::Authenticated(_)));
                    outcome
                },
                BatchSize::SmallInput,
            )
        });
        group.bench_function(format!("parse_credentials/{name}"), |b| {
            b.iter(|| Credentials::parse(black_box(&first)).map(|c| c.nc))
        });
        group.bench_function(format!("verify_forged/{name}"), |b| {
            b.iter(|| {
                let cr = Credentials::parse(black_box(&forged)).expect("parses");
                let outcome = server.verify(now(), &cr, &request, &users);
                assert!(matches!(outcome, Outcome::Rejected(_)));
                outcome
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_auth);
criterion_main!(benches);
