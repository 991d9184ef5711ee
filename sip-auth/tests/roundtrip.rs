//! proptest: for random users, passwords, methods, URIs, bodies and algorithms, the client's
//! answer verifies on the server (through the header text), and any single changed field fails.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use sip_auth::{
    Account, DefaultRandom, DigestClient, DigestRequest, DigestServer, MemoryStore, Outcome,
    ServerConfig, ServerKey,
};
use sip_core::auth::{Algorithm, Challenge, Credentials, NonceCount, Qop};

fn text(max: usize) -> impl Strategy<Value = String> {
    // Any printable text but CR/LF (a quoted-string cannot carry them).
    proptest::string::string_regex(&format!("[^\r\n\\p{{Cc}}]{{1,{max}}}")).unwrap()
}

#[derive(Debug, Clone)]
struct Case {
    user: String,
    realm: String,
    password: String,
    method: String,
    uri: String,
    body: Vec<u8>,
    algorithm: Algorithm,
    qop: Vec<Qop>,
    seed: u8,
}

fn case() -> impl Strategy<Value = Case> {
    (
        text(16),
        text(16),
        text(24),
        "[A-Z]{3,9}",
        "sips?:[a-z0-9.@;=%-]{1,30}",
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::sample::select(Algorithm::ALL.to_vec()),
        prop_oneof![
            Just(vec![Qop::Auth]),
            Just(vec![Qop::AuthInt]),
            Just(vec![Qop::Auth, Qop::AuthInt]),
            Just(vec![]),
        ],
        any::<u8>(),
    )
        .prop_map(
            |(user, realm, password, method, uri, body, algorithm, qop, seed)| Case {
                user,
                realm,
                password,
                method,
                uri,
                body,
                algorithm,
                qop,
                seed,
            },
        )
}

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

/// Changes one field of `s` so that it differs.
fn change(s: &str) -> String {
    let mut x = s.to_owned();
    x.push('x');
    x
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn client_answer_verifies_and_any_change_fails(c in case()) {
        let mut users = MemoryStore::new();
        users.insert_password(&c.user, &c.realm, &c.password);
        let config = ServerConfig::new(c.realm.clone())
            .algorithms(&[c.algorithm])
            .qop(&c.qop)
            .opaque("o-1");
        let mut server = DigestServer::with_random(
            config,
            ServerKey::from_bytes([c.seed; 32]),
            DefaultRandom::from_seed([c.seed; 32]),
        );
        let mut client = DigestClient::with_random(DefaultRandom::from_seed([!c.seed; 32]));
        client.add_account(Account::new(c.realm.clone(), c.user.clone(), c.password.clone()));
        let request = DigestRequest::new(&c.method, &c.uri, &c.body);

        let headers: Vec<String> = server.challenges(now(), false).iter().map(|h| h.to_string()).collect();
        let parsed: Vec<Challenge<'_>> = headers.iter().map(|h| Challenge::parse(h).unwrap()).collect();
        let answer = client.respond(&parsed, "example.com", &request).unwrap().to_string();
        let good = Credentials::parse(&answer).unwrap().into_owned();

        // Every single change fails, and none of them burns the nonce count.
        let mut mutants: Vec<(&str, Credentials<'static>, DigestRequest<'_>)> = Vec::new();
        let with = |f: &dyn Fn(&mut Credentials<'static>)| { let mut x = good.clone(); f(&mut x); x };
        let o = |v: &Option<Cow<'static, str>>| Some(Cow::Owned(change(v.as_deref().unwrap_or(""))));
        mutants.push(("username", with(&|x| x.username = o(&x.username)), request));
        mutants.push(("realm", with(&|x| x.realm = o(&x.realm)), request));
        mutants.push(("nonce", with(&|x| x.nonce = o(&x.nonce)), request));
        mutants.push(("uri", with(&|x| x.uri = o(&x.uri)), request));
        mutants.push(("response", with(&|x| {
            let r = x.response.as_deref().unwrap_or("");
            let flipped: String = r.chars().rev().collect();
            x.response = Some(if flipped == r { change(r) } else { flipped }.into());
        }), request));
        mutants.push(("opaque", with(&|x| x.opaque = o(&x.opaque)), request));
        mutants.push(("algorithm", with(&|x| {
            let other = Algorithm::ALL.into_iter().find(|a| *a != c.algorithm).unwrap();
            x.algorithm = Some(other.as_str().into());
        }), request));
        if good.qop.is_some() || c.algorithm.is_session() {
            mutants.push(("cnonce", with(&|x| x.cnonce = o(&x.cnonce)), request));
        }
        if let Some(nc) = good.nc {
            mutants.push(("nc", with(&|x| x.nc = Some(NonceCount(nc.0 + 1))), request));
            mutants.push(("qop", with(&|x| {
                x.qop = Some(if x.qop.as_deref() == Some("auth") { "auth-int" } else { "auth" }.into());
            }), request));
        }
        let method = change(&c.method);
        mutants.push(("method", good.clone(), DigestRequest::new(&method, &c.uri, &c.body)));
        // A Request-URI not equivalent to the one the client answered for (RFC 3261 §19.1.4:
        // appending to a parameter may still be equivalent).
        let uri = if sip_auth::digest_uri_matches("sip:mutant.invalid", &c.uri) {
            "sip:other.invalid"
        } else {
            "sip:mutant.invalid"
        };
        mutants.push(("request uri", good.clone(), DigestRequest::new(&c.method, uri, &c.body)));
        let body = [c.body.as_slice(), b"!"].concat();
        if good.qop.as_deref() == Some("auth-int") {
            mutants.push(("body", good.clone(), DigestRequest::new(&c.method, &c.uri, &body)));
        }
        for (what, cr, req) in &mutants {
            let outcome = server.verify(now(), cr, req, &users);
            prop_assert!(matches!(outcome, Outcome::Rejected(_)), "changed {} → {:?}", what, outcome);
        }

        let outcome = server.verify(now(), &good, &request, &users);
        prop_assert!(matches!(outcome, Outcome::Authenticated(ref a) if a.username == c.user), "{:?}", outcome);
        // And never twice.
        let outcome = server.verify(now(), &good, &request, &users);
        prop_assert!(!matches!(outcome, Outcome::Authenticated(_)), "{:?}", outcome);
    }
}
