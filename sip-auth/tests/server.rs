//! Server behaviour: replay, staleness, foreign keys, one-time nonces, caps, Authentication-Info.

use std::time::{Duration, SystemTime};

use sip_auth::hash::{self, DigestParams};
use sip_auth::{
    Account, DefaultRandom, DigestClient, DigestRequest, DigestServer, HashFunction, MemoryStore,
    Outcome, Rejection, ServerConfig, ServerKey, UriCheck,
};
use sip_core::auth::{Algorithm, AuthenticationInfo, Challenge, Credentials, Qop};

const REALM: &str = "example.com";

fn t(s: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
}

fn store() -> MemoryStore {
    let mut s = MemoryStore::new();
    s.insert_password("alice", REALM, "wonderland");
    s
}

fn server(config: ServerConfig, key: u8) -> DigestServer {
    DigestServer::with_random(
        config,
        ServerKey::from_bytes([key; 32]),
        DefaultRandom::from_seed([key; 32]),
    )
}

fn client() -> DigestClient {
    let mut c = DigestClient::with_random(DefaultRandom::from_seed([9; 32]));
    c.add_account(Account::new(REALM, "alice", "wonderland"));
    c
}

fn wire(challenges: &[Challenge<'_>]) -> Vec<Challenge<'static>> {
    challenges
        .iter()
        .map(|c| Challenge::parse(&c.to_string()).unwrap().into_owned())
        .collect()
}

fn reparse(c: &Credentials<'_>) -> Credentials<'static> {
    Credentials::parse(&c.to_string()).unwrap().into_owned()
}

const REQ: DigestRequest<'static> = DigestRequest {
    method: "REGISTER",
    uri: "sip:example.com",
    body: b"",
};

fn authenticated(o: &Outcome) -> bool {
    matches!(o, Outcome::Authenticated(_))
}

#[test]
fn challenges_in_configured_order() {
    // The default prefers the strongest.
    let mut d = server(ServerConfig::new(REALM), 1);
    let algs: Vec<_> = d
        .challenges(t(0), false)
        .iter()
        .map(|c| c.algorithm().unwrap())
        .collect();
    assert_eq!(algs, [Algorithm::Sha256, Algorithm::Md5]);
    // A configured order is the order of preference (RFC 8760 §2.4), kept as given.
    let mut m = server(
        ServerConfig::new(REALM).algorithms(&[Algorithm::Md5, Algorithm::Sha256]),
        1,
    );
    let algs: Vec<_> = m
        .challenges(t(0), false)
        .iter()
        .map(|c| c.algorithm().unwrap())
        .collect();
    assert_eq!(algs, [Algorithm::Md5, Algorithm::Sha256]);
    let mut s = server(
        ServerConfig::new(REALM)
            .algorithms(&[Algorithm::Sha512_256, Algorithm::Sha256Sess, Algorithm::Md5])
            .opaque("op")
            .domain("sip:example.com"),
        1,
    );
    let cs = s.challenges(t(0), false);
    let algs: Vec<_> = cs.iter().map(|c| c.algorithm().unwrap()).collect();
    assert_eq!(
        algs,
        [Algorithm::Sha512_256, Algorithm::Sha256Sess, Algorithm::Md5]
    );
    let text = cs[0].to_string();
    assert!(text.starts_with("Digest realm=\"example.com\", domain=\"sip:example.com\", nonce=\""));
    assert!(text.ends_with("opaque=\"op\", algorithm=SHA-512-256, qop=\"auth,auth-int\""));
    assert!(cs.iter().all(|c| c.nonce == cs[0].nonce && !c.stale));
    assert!(s.challenges(t(0), true).iter().all(|c| c.stale));
    assert_ne!(s.challenges(t(0), false)[0].nonce, cs[0].nonce);
}

/// The client hashes the `uri` it chose; the server checks it against the Request-URI by URI
/// equivalence (Strict) or only reports a mismatch (Relaxed).
#[test]
fn digest_uri_policy_strict_and_relaxed() {
    let users = store();
    // What SIPp does: `REGISTER sip:example.com`, digest uri= the address it sends to.
    let sipp = DigestRequest::new("REGISTER", "sip:127.0.0.1:5060", b"");
    let cases: [(&str, UriCheck, Option<bool>); 6] = [
        // (digest uri, policy, None = rejected UriMismatch / Some(mismatch reported))
        ("sip:example.com", UriCheck::Strict, Some(false)),
        ("sip:Example.COM", UriCheck::Strict, Some(false)),
        ("sip:example.com;transport=udp", UriCheck::Strict, None),
        ("sip:127.0.0.1:5060", UriCheck::Strict, None),
        ("sip:127.0.0.1:5060", UriCheck::Relaxed, Some(true)),
        ("sip:EXAMPLE.com", UriCheck::Relaxed, Some(false)),
    ];
    for (i, (digest_uri, policy, expect)) in cases.into_iter().enumerate() {
        let mut s = server(ServerConfig::new(REALM).uri_check(policy), 1);
        let mut c = client();
        let as_sent = DigestRequest::new("REGISTER", digest_uri, b"");
        let cr = reparse(
            &c.respond(&wire(&s.challenges(t(0), false)), REALM, &as_sent)
                .unwrap(),
        );
        assert_eq!(cr.uri.as_deref(), Some(digest_uri));
        match (s.verify(t(1), &cr, &REQ, &users), expect) {
            (Outcome::Authenticated(a), Some(mismatch)) => {
                assert_eq!(a.uri_mismatch, mismatch, "case {i}")
            }
            (Outcome::Rejected(Rejection::UriMismatch), None) => {}
            (o, e) => panic!("case {i}: {o:?}, expected {e:?}"),
        }
    }
    // Relaxed still refuses a wrong password and a replay.
    let mut s = server(ServerConfig::new(REALM).uri_check(UriCheck::Relaxed), 1);
    let mut c = client();
    let cr = reparse(
        &c.respond(&wire(&s.challenges(t(0), false)), REALM, &sipp)
            .unwrap(),
    );
    assert!(authenticated(&s.verify(t(1), &cr, &REQ, &users)));
    assert!(matches!(
        s.verify(t(2), &cr, &REQ, &users),
        Outcome::Rejected(Rejection::Replay)
    ));
    let mut wrong = MemoryStore::new();
    wrong.insert_password("alice", REALM, "guess");
    let cr2 = reparse(&c.authorize(REALM, &sipp).unwrap());
    assert!(matches!(
        s.verify(t(3), &cr2, &REQ, &wrong),
        Outcome::Rejected(Rejection::WrongResponse)
    ));
    assert!(sip_auth::digest_uri_matches(
        "sip:a@B.example",
        "sip:a@b.example"
    ));
    assert!(!sip_auth::digest_uri_matches(
        "sip:a@b.example",
        "sip:A@b.example"
    ));
    assert!(sip_auth::digest_uri_matches("*", "*"));
}

#[test]
fn replay_is_rejected_and_later_counts_pass() {
    let (mut s, mut c, users) = (server(ServerConfig::new(REALM), 1), client(), store());
    let cr = reparse(
        &c.respond(&wire(&s.challenges(t(0), false)), REALM, &REQ)
            .unwrap(),
    );
    assert!(authenticated(&s.verify(t(1), &cr, &REQ, &users)));
    assert!(matches!(
        s.verify(t(2), &cr, &REQ, &users),
        Outcome::Rejected(Rejection::Replay)
    ));
    // The client's next request on the same nonce (nc=2) is fine, once.
    let cr2 = reparse(&c.authorize(REALM, &REQ).unwrap());
    assert_eq!(cr2.nc.map(|n| n.0), Some(2));
    assert!(authenticated(&s.verify(t(3), &cr2, &REQ, &users)));
    assert!(matches!(
        s.verify(t(3), &cr2, &REQ, &users),
        Outcome::Rejected(Rejection::Replay)
    ));
    assert_eq!(s.tracked_nonces(), 1);
}

#[test]
fn old_nonce_is_stale_and_the_client_recovers() {
    let config = ServerConfig::new(REALM).nonce_lifetime(Duration::from_secs(60));
    let (mut s, mut c, users) = (server(config, 1), client(), store());
    let cr = c
        .respond(&wire(&s.challenges(t(0), false)), REALM, &REQ)
        .unwrap();
    assert!(matches!(s.verify(t(61), &cr, &REQ, &users), Outcome::Stale));
    // A wrong digest on an old nonce is not stale: it is wrong.
    let mut bad = cr.clone();
    bad.response = Some("0".repeat(64).into());
    assert!(matches!(
        s.verify(t(61), &bad, &REQ, &users),
        Outcome::Rejected(Rejection::WrongResponse)
    ));
    // stale=true: the client answers the new nonce without failing.
    let cr = c
        .respond(&wire(&s.challenges(t(61), true)), REALM, &REQ)
        .unwrap();
    assert_eq!(cr.nc.map(|n| n.0), Some(1));
    assert!(authenticated(&s.verify(t(62), &cr, &REQ, &users)));
}

#[test]
fn nonce_from_another_key_is_rejected_and_rotation_keeps_the_previous_one() {
    let (mut a, mut b, users) = (
        server(ServerConfig::new(REALM), 1),
        server(ServerConfig::new(REALM), 2),
        store(),
    );
    let mut c = client();
    let from_b = c
        .respond(&wire(&b.challenges(t(0), false)), REALM, &REQ)
        .unwrap();
    // Another key's nonce with a right digest (a restart with a new key): stale, the client
    // takes a new nonce; with a wrong digest: forged.
    assert!(matches!(
        a.verify(t(1), &from_b, &REQ, &users),
        Outcome::Stale
    ));
    let mut wrong = MemoryStore::new();
    wrong.insert_password("alice", REALM, "guess");
    assert!(matches!(
        a.verify(t(1), &from_b, &REQ, &wrong),
        Outcome::Rejected(Rejection::ForgedNonce)
    ));
    let from_a = c
        .respond(&wire(&a.challenges(t(0), false)), REALM, &REQ)
        .unwrap();
    a.rotate_key(ServerKey::from_bytes([3; 32]));
    assert!(authenticated(&a.verify(t(1), &from_a, &REQ, &users)));
    let next = c.authorize(REALM, &REQ).unwrap();
    a.retire_previous_key();
    assert!(matches!(
        a.verify(t(2), &next, &REQ, &users),
        Outcome::Stale
    ));
    // A server of another realm with the same key does not accept it either.
    let mut other = server(ServerConfig::new("other.com"), 3);
    let mut cr = c.respond(&wire(&other.challenges(t(0), false)), REALM, &REQ);
    assert!(cr.is_err(), "client has no account for other.com");
    other.rotate_key(ServerKey::from_bytes([3; 32]));
    cr = Ok(from_a);
    let mut cr = cr.unwrap();
    cr.realm = Some("other.com".into());
    assert!(matches!(
        other.verify(t(1), &cr, &REQ, &users),
        Outcome::Rejected(Rejection::ForgedNonce)
    ));
}

#[test]
fn one_time_nonces_and_authentication_info() {
    let config = ServerConfig::new(REALM).one_time_nonces(true);
    let (mut s, mut c, users) = (server(config, 1), client(), store());
    let cr = c
        .respond(&wire(&s.challenges(t(0), false)), REALM, &REQ)
        .unwrap();
    let Outcome::Authenticated(who) = s.verify(t(1), &cr, &REQ, &users) else {
        panic!("not authenticated")
    };
    let info = s.authentication_info(t(1), &who, b"");
    let text = info.to_string();
    let info = AuthenticationInfo::parse(&text).unwrap();
    // rspauth = digest with an empty method (RFC 7616 §3.5).
    let ha1 = hash::ha1(HashFunction::Sha256, "alice", REALM, "wonderland");
    let expected = hash::response(
        &ha1,
        &DigestParams {
            algorithm: Algorithm::Sha256,
            nonce: cr.nonce.as_deref().unwrap(),
            cnonce: cr.cnonce.as_deref(),
            nc: cr.nc,
            qop: Some(Qop::Auth),
            method: "",
            uri: "sip:example.com",
            body: b"",
        },
    );
    assert_eq!(info.rspauth.as_deref(), Some(expected.as_str()));
    assert_eq!(info.cnonce, cr.cnonce);
    assert_eq!(info.nc, cr.nc);
    assert_eq!(info.qop.as_deref(), Some("auth"));
    let next = info
        .nextnonce
        .clone()
        .expect("one-time mode sends nextnonce");
    // The nonce cannot be used again, even with a higher nc.
    let again = c.authorize(REALM, &REQ).unwrap();
    assert!(matches!(
        s.verify(t(2), &again, &REQ, &users),
        Outcome::Stale
    ));
    // The next nonce works.
    let mut ch = s.challenges(t(2), false);
    for x in &mut ch {
        x.nonce = Some(next.clone());
    }
    let cr = c.respond(&ch, REALM, &REQ).unwrap();
    assert!(authenticated(&s.verify(t(3), &cr, &REQ, &users)));
}

#[test]
fn rfc_2069_form_is_accepted_once_when_allowed() {
    // GB28181 cameras answer without qop.
    let mut users = MemoryStore::new();
    users.insert_password("34020000001180870005", "3402000000", "12345678");
    let req = DigestRequest::new("REGISTER", "sip:34020000002000000001@3402000000", b"");
    let mut c = DigestClient::with_random(DefaultRandom::from_seed([4; 32]));
    c.add_account(Account::new(
        "3402000000",
        "34020000001180870005",
        "12345678",
    ));
    let mut s = server(
        ServerConfig::new("3402000000")
            .algorithms(&[Algorithm::Md5])
            .qop(&[]),
        1,
    );
    let ch = wire(&s.challenges(t(0), false));
    assert!(!ch[0].to_string().contains("qop"));
    let cr = reparse(&c.respond(&ch, "3402000000", &req).unwrap());
    assert!(cr.qop.is_none() && cr.nc.is_none() && cr.cnonce.is_none());
    assert!(authenticated(&s.verify(t(1), &cr, &req, &users)));
    assert!(matches!(s.verify(t(2), &cr, &req, &users), Outcome::Stale));

    // Offered qop but client omitted it: refused unless allowed.
    let mut strict = server(
        ServerConfig::new("3402000000").algorithms(&[Algorithm::Md5]),
        3,
    );
    let mut no_qop: Vec<_> = wire(&strict.challenges(t(0), false));
    no_qop[0].qop.clear();
    let cr = c.respond(&no_qop, "3402000000", &req).unwrap();
    assert!(matches!(
        strict.verify(t(1), &cr, &req, &users),
        Outcome::Rejected(Rejection::QopNotAllowed)
    ));
    let mut lenient = server(
        ServerConfig::new("3402000000")
            .algorithms(&[Algorithm::Md5])
            .allow_missing_qop(true),
        2,
    );
    let mut no_qop: Vec<_> = wire(&lenient.challenges(t(0), false));
    no_qop[0].qop.clear();
    let cr = c.respond(&no_qop, "3402000000", &req).unwrap();
    assert!(authenticated(&lenient.verify(t(1), &cr, &req, &users)));
}

#[test]
fn checks_each_parameter() {
    let config = ServerConfig::new(REALM).opaque("xyz");
    let (mut s, mut c, users) = (server(config, 1), client(), store());
    let cr = c
        .respond(&wire(&s.challenges(t(0), false)), REALM, &REQ)
        .unwrap();
    assert_eq!(cr.opaque.as_deref(), Some("xyz"));
    let reject = |s: &mut DigestServer, cr: &Credentials<'_>, req: &DigestRequest<'_>| match s
        .verify(t(1), cr, req, &users)
    {
        Outcome::Rejected(r) => r,
        o => panic!("{o:?}"),
    };
    let with = |f: &dyn Fn(&mut Credentials<'static>)| {
        let mut x = cr.clone();
        f(&mut x);
        x
    };
    use Rejection as R;
    let cases: Vec<(Credentials<'static>, Rejection)> = vec![
        (with(&|x| x.scheme = "Basic".into()), R::NotDigest),
        (with(&|x| x.username = None), R::MissingParam("username")),
        (with(&|x| x.response = None), R::MissingParam("response")),
        (with(&|x| x.nc = None), R::MissingParam("nc")),
        (with(&|x| x.cnonce = None), R::MissingParam("cnonce")),
        (
            with(&|x| x.nc = Some(sip_core::auth::NonceCount(0))),
            R::BadNonceCount,
        ),
        (with(&|x| x.userhash = true), R::UserhashNotSupported),
        (
            with(&|x| x.realm = Some("EXAMPLE.com".into())),
            R::RealmMismatch,
        ),
        (
            with(&|x| x.algorithm = Some("SHA-512-256".into())),
            R::AlgorithmNotAllowed,
        ),
        (
            with(&|x| x.algorithm = Some("AKAv1-MD5".into())),
            R::AlgorithmNotAllowed,
        ),
        (
            with(&|x| x.qop = Some("auth-conf".into())),
            R::QopNotAllowed,
        ),
        (with(&|x| x.qop = None), R::QopNotAllowed),
        (with(&|x| x.opaque = None), R::OpaqueMismatch),
        (
            with(&|x| x.uri = Some("sip:example.org".into())),
            R::UriMismatch,
        ),
        (with(&|x| x.nonce = Some("00".into())), R::ForgedNonce),
        (
            with(&|x| x.username = Some("mallory".into())),
            R::UnknownUser,
        ),
        (
            with(&|x| x.response = Some("0".repeat(64).into())),
            R::WrongResponse,
        ),
        (
            with(&|x| x.response = x.response.as_deref().map(|r| r.to_uppercase().into())),
            R::WrongResponse,
        ),
    ];
    for (bad, why) in cases {
        assert_eq!(reject(&mut s, &bad, &REQ), why, "{bad}");
        assert_eq!(
            why.is_malformed(),
            matches!(why, R::MissingParam(_) | R::BadNonceCount)
        );
    }
    let other_method = DigestRequest::new("INVITE", REQ.uri, b"");
    assert_eq!(reject(&mut s, &cr, &other_method), R::WrongResponse);
    // None of the failures burnt the nonce count.
    assert!(authenticated(&s.verify(t(1), &cr, &REQ, &users)));
}

#[test]
fn auth_int_covers_the_body() {
    let config = ServerConfig::new(REALM).qop(&[Qop::AuthInt]);
    let (mut s, mut c, users) = (server(config, 1), client(), store());
    let req = DigestRequest::new("MESSAGE", "sip:bob@example.com", b"Watson, come here.");
    let cr = c
        .respond(&wire(&s.challenges(t(0), false)), REALM, &req)
        .unwrap();
    assert_eq!(cr.qop.as_deref(), Some("auth-int"));
    let tampered = DigestRequest::new("MESSAGE", "sip:bob@example.com", b"Watson, go away.");
    assert!(matches!(
        s.verify(t(1), &cr, &tampered, &users),
        Outcome::Rejected(Rejection::WrongResponse)
    ));
    assert!(authenticated(&s.verify(t(1), &cr, &req, &users)));
}

#[test]
fn every_algorithm_verifies() {
    for a in Algorithm::ALL {
        let config = ServerConfig::new(REALM).algorithms(&[a]);
        let (mut s, mut c, users) = (server(config, 1), client(), store());
        let cr = reparse(
            &c.respond(&wire(&s.challenges(t(0), false)), REALM, &REQ)
                .unwrap(),
        );
        assert_eq!(cr.algorithm(), Ok(a));
        let Outcome::Authenticated(who) = s.verify(t(1), &cr, &REQ, &users) else {
            panic!("{a}")
        };
        assert_eq!((who.username.as_str(), who.algorithm), ("alice", a));
        let cr2 = c.authorize(REALM, &REQ).unwrap();
        if a.is_session() {
            assert_eq!(cr2.cnonce, cr.cnonce, "-sess keeps its cnonce");
        }
        assert!(authenticated(&s.verify(t(2), &cr2, &REQ, &users)), "{a}");
    }
}

#[test]
fn a_flood_of_forged_nonces_touches_no_table() {
    let config = ServerConfig::new(REALM).max_tracked_nonces(64);
    let (mut s, mut c, users) = (server(config, 1), client(), store());
    let genuine = c
        .respond(&wire(&s.challenges(t(0), false)), REALM, &REQ)
        .unwrap();
    let mut n = genuine.nonce.as_deref().unwrap().as_bytes().to_vec();
    let now = t(1);
    // Each one costs a digest now (a right digest on a foreign nonce is stale, not forged).
    for i in 0..50_000u64 {
        // Rewrite the salt (characters 16..32) and the key id (32..34): one nonce in 256
        // carries this server's key id and costs an HMAC; the others are refused on the id.
        let hex = |x: u64| b"0123456789abcdef"[(x & 0xf) as usize];
        for (k, d) in n[16..32].iter_mut().enumerate() {
            *d = hex(i >> (60 - 4 * k));
        }
        n[32] = hex(i >> 4);
        n[33] = hex(i);
        let forged = Credentials {
            nonce: Some(std::str::from_utf8(&n).unwrap().into()),
            ..borrowed(&genuine)
        };
        let o = s.verify(now, &forged, &REQ, &users);
        assert!(matches!(o, Outcome::Rejected(Rejection::ForgedNonce)));
    }
    assert_eq!(s.tracked_nonces(), 0);
    assert!(authenticated(&s.verify(t(1), &genuine, &REQ, &users)));
}

/// A copy of `c` that borrows its strings (no allocation).
fn borrowed<'a>(c: &'a Credentials<'_>) -> Credentials<'a> {
    let b = |v: &'a Option<std::borrow::Cow<'_, str>>| v.as_deref().map(Into::into);
    Credentials {
        scheme: c.scheme.as_ref().into(),
        username: b(&c.username),
        realm: b(&c.realm),
        nonce: b(&c.nonce),
        uri: b(&c.uri),
        response: b(&c.response),
        algorithm: b(&c.algorithm),
        cnonce: b(&c.cnonce),
        opaque: b(&c.opaque),
        qop: b(&c.qop),
        nc: c.nc,
        userhash: c.userhash,
        other: Vec::new(),
    }
}

#[test]
fn table_cap_holds_and_evicted_nonces_do_not_become_replayable() {
    let config = ServerConfig::new(REALM).max_tracked_nonces(16);
    let (mut s, mut c, users) = (server(config, 1), client(), store());
    let mut used = Vec::new();
    for i in 0..100 {
        let cr = c
            .respond(&wire(&s.challenges(t(i), false)), REALM, &REQ)
            .unwrap();
        assert!(authenticated(&s.verify(t(i), &cr, &REQ, &users)));
        assert!(s.tracked_nonces() <= 16);
        used.push(cr);
    }
    for cr in &used[..84] {
        assert!(matches!(s.verify(t(100), cr, &REQ, &users), Outcome::Stale));
    }
    for cr in &used[84..] {
        assert!(matches!(
            s.verify(t(100), cr, &REQ, &users),
            Outcome::Rejected(Rejection::Replay)
        ));
    }
    // Past their lifetime, tracked nonces are dropped as new ones come.
    let cr = c
        .respond(&wire(&s.challenges(t(1000), false)), REALM, &REQ)
        .unwrap();
    assert!(authenticated(&s.verify(t(1000), &cr, &REQ, &users)));
    assert_eq!(s.tracked_nonces(), 1);
}
