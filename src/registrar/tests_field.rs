//! Field conditions (issue 11): SIPp's digest `uri`, retransmissions on lossy links, devices
//! behind one NAT, §10.3 step 5.

use std::sync::Arc;
use std::time::Duration;

use sip_auth::{Account, DefaultRandom, DigestClient, DigestRequest, MemoryStore, UriCheck};
use sip_core::auth::Challenge;
use sip_core::{Flow, HeaderName, Message, Transport};

use super::tests::{answer, digest_registrar, flow, send, t0, Req, UDP};
use super::*;

/// Answers `challenge_resp` the way SIPp's `[authentication]` does: the digest `uri` is
/// `digest_uri`, whatever the Request-URI.
fn answer_with_uri(
    client: &mut DigestClient,
    challenge_resp: &Message,
    req: &Req,
    digest_uri: &str,
) -> Message {
    let challenges: Vec<Challenge<'_>> = challenge_resp
        .header_lines(HeaderName::WwwAuthenticate)
        .map(|v| Challenge::parse(std::str::from_utf8(v).unwrap()).unwrap())
        .collect();
    let request = DigestRequest::new("REGISTER", digest_uri, b"");
    let auth = client
        .respond(&challenges, "example.com", &request)
        .unwrap()
        .to_string();
    let mut m = req.build();
    m.append_header("Authorization", &auth).unwrap();
    Message::parse(m.to_bytes()).unwrap()
}

fn users(names: &[&str]) -> Arc<MemoryStore> {
    let mut users = MemoryStore::new();
    for n in names {
        users.insert_password(n, "example.com", "secret");
    }
    Arc::new(users)
}

fn registrar_with(f: impl FnOnce(&mut RegistrarConfig)) -> Registrar {
    let mut cfg = RegistrarConfig::new("example.com");
    cfg.auth = AuthMode::Digest(users(&["alice", "bob"]));
    f(&mut cfg);
    Registrar::open(cfg)
}

fn client(user: &str, password: &str, seed: u8) -> DigestClient {
    let mut c = DigestClient::with_random(DefaultRandom::from_seed([seed; 32]));
    c.add_account(Account::new("example.com", user, password));
    c
}

/// The next request on the client's current nonce (next nc).
fn authorize(c: &mut DigestClient, req: Req) -> Message {
    let auth = c
        .authorize(
            "example.com",
            &DigestRequest::new("REGISTER", "sip:example.com", b""),
        )
        .unwrap()
        .to_string();
    let mut m = req.build();
    m.append_header("Authorization", &auth).unwrap();
    Message::parse(m.to_bytes()).unwrap()
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Issue 11, case 1: `REGISTER sip:example.com` answered with `uri="sip:127.0.0.1:5060"`.
#[tokio::test]
async fn sipp_digest_uri_is_accepted_by_default_and_refused_when_strict() {
    let (now, wall) = t0();
    let relaxed = digest_registrar();
    assert_eq!(relaxed.config().uri_check, UriCheck::Relaxed);
    let ch = send(&relaxed, &Req::new("alice").build(), now, wall).await;
    let mut c = client("alice", "secret", 1);
    let m = answer_with_uri(
        &mut c,
        &ch,
        &Req::new("alice").cseq(2),
        "sip:127.0.0.1:5060",
    );
    assert_eq!(send(&relaxed, &m, now, wall).await.status(), Some(200));

    let strict = registrar_with(|c| c.uri_check = UriCheck::Strict);
    let ch = send(&strict, &Req::new("alice").build(), now, wall).await;
    let mut c = client("alice", "secret", 2);
    let m = answer_with_uri(
        &mut c,
        &ch,
        &Req::new("alice").cseq(2),
        "sip:127.0.0.1:5060",
    );
    let resp = send(&strict, &m, now, wall).await;
    assert_eq!(resp.status(), Some(401));
    // A policy mismatch is answered but proves nothing about the password.
    assert_eq!(strict.counters().auth_failures, 1);
    // Strict compares by URI equivalence: the case of the host does not matter.
    let mut c = client("alice", "secret", 3);
    let m = answer_with_uri(&mut c, &resp, &Req::new("alice").cseq(3), "sip:Example.COM");
    assert_eq!(send(&strict, &m, now, wall).await.status(), Some(200));
}

/// A retransmission of any answered request gets the same response, byte for byte, with no
/// authentication and no failure counted: a query (no Contact), a 423, an unregister.
#[tokio::test]
async fn retransmissions_get_the_same_answer_and_count_nothing() {
    let r = digest_registrar();
    let (now, wall) = t0();
    let mut c = client("alice", "secret", 4);
    let ch = send(&r, &Req::new("alice").build(), now, wall).await;
    let reg = answer(&mut c, &ch, &Req::new("alice").cseq(2));
    let first = send(&r, &reg, now, wall).await;
    assert_eq!(first.status(), Some(200));
    let query = authorize(&mut c, Req::new("alice").cseq(3).contacts(&[]));
    let too_brief = authorize(&mut c, Req::new("alice").cseq(4).header("Expires: 5"));
    let unreg = authorize(&mut c, Req::new("alice").cseq(5).header("Expires: 0"));
    for (m, status) in [(&reg, 200), (&query, 200), (&too_brief, 423), (&unreg, 200)] {
        let answered = send(&r, m, now, wall).await;
        assert_eq!(answered.status(), Some(status));
        for k in 1..=3u64 {
            let again = send(&r, m, now + Duration::from_millis(500 * k), wall).await;
            assert_eq!(again.to_bytes(), answered.to_bytes());
        }
    }
    let c = r.counters();
    assert_eq!(c.auth_failures, 0);
    assert_eq!(c.retransmissions, 13);
    assert_eq!(c.throttled, 0);
    assert_eq!(r.store().counts().await, (0, 0));
    // The same credentials on another request are a true replay: refused and counted.
    let mut replay = Req::new("alice").cseq(9).build();
    let auth = query.header(HeaderName::Authorization).unwrap().to_owned();
    replay.append_header("Authorization", &auth).unwrap();
    let replay = Message::parse(replay.to_bytes()).unwrap();
    assert_eq!(send(&r, &replay, now, wall).await.status(), Some(401));
    assert_eq!(r.counters().auth_failures, 1);
}

/// Workers racing on a request and its retransmissions: one authentication, one binding
/// change, the same answer everywhere, nothing counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_workers_answer_retransmissions_alike() {
    for round in 0..20u8 {
        let r = Arc::new(digest_registrar());
        let mut events = r.events();
        let (now, wall) = t0();
        let mut c = client("alice", "secret", round);
        let ch = send(&r, &Req::new("alice").build(), now, wall).await;
        let reg = Arc::new(answer(&mut c, &ch, &Req::new("alice").cseq(2)));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (r, reg) = (r.clone(), reg.clone());
            tasks.push(tokio::spawn(async move {
                r.handle(&reg, flow(Transport::Udp, UDP), now, wall)
                    .await
                    .unwrap()
                    .to_bytes()
            }));
        }
        let mut answers = Vec::new();
        for t in tasks {
            answers.push(t.await.unwrap());
        }
        assert!(answers.iter().all(|a| *a == answers[0]), "round {round}");
        assert!(answers[0].starts_with(b"SIP/2.0 200"));
        let counters = r.counters();
        assert_eq!(counters.auth_failures, 0);
        assert_eq!(counters.retransmissions, 7);
        assert!(matches!(
            events.try_recv(),
            Ok(RegistrarEvent::Registered { .. })
        ));
        assert!(events.try_recv().is_err(), "one binding change only");
    }
}

/// 300 devices behind one address: unanswered challenges, stale nonces and retransmissions
/// never count; one device guessing blocks only itself after 10; the source after 100.
#[tokio::test]
async fn one_nat_many_devices_and_a_guesser() {
    let names: Vec<&'static str> = (0..300).map(|i| leak(format!("cam{i}"))).collect();
    let mut cfg = RegistrarConfig::new("example.com");
    cfg.auth = AuthMode::Digest(users(&names));
    let r = Registrar::open(cfg);
    let (now, wall) = t0();
    let later = wall + Duration::from_secs(3600);
    for (i, name) in names.iter().enumerate() {
        let call_id = leak(format!("c{i}"));
        let req = |cseq| Req::new(name).call_id(call_id).cseq(cseq);
        let ch = send(&r, &req(1).build(), now, wall).await;
        assert_eq!(
            send(&r, &req(1).build(), now, wall).await.status(),
            Some(401)
        );
        let mut c = client(name, "secret", 7);
        let m = answer(&mut c, &ch, &req(2));
        assert_eq!(send(&r, &m, now, wall).await.status(), Some(200));
        assert_eq!(send(&r, &m, now, wall).await.status(), Some(200));
        // An hour later the nonce is stale: a challenge, not a failure.
        let m = authorize(&mut c, req(3));
        assert_eq!(send(&r, &m, now, later).await.status(), Some(401));
    }
    let counters = r.counters();
    assert_eq!((counters.auth_failures, counters.throttled), (0, 0));
    assert_eq!(counters.accepted, 300);

    // cam0 guesses: 10 failures block cam0 from this address, and nobody else.
    let mut guess = client("cam0", "guess", 8);
    let mut statuses = Vec::new();
    for i in 0..11u32 {
        let ch = send(
            &r,
            &Req::new("cam0").call_id("g").cseq(10 + 2 * i).build(),
            now,
            later,
        )
        .await;
        let m = answer(
            &mut guess,
            &ch,
            &Req::new("cam0").call_id("g").cseq(11 + 2 * i),
        );
        statuses.push(send(&r, &m, now, later).await.status());
    }
    assert_eq!(&statuses[..10], &[Some(401); 10]);
    assert_eq!(statuses[10], Some(403));
    let ch = send(&r, &Req::new("cam1").call_id("h").build(), now, later).await;
    let mut c = client("cam1", "secret", 9);
    let m = answer(&mut c, &ch, &Req::new("cam1").call_id("h").cseq(2));
    assert_eq!(send(&r, &m, now, later).await.status(), Some(200));

    // Usernames tried from one source: blocked at 100 failures, then even cam1 is refused.
    let mut n = 10;
    for (i, name) in names.iter().enumerate().skip(2) {
        let call_id = leak(format!("e{i}"));
        let ch = send(&r, &Req::new(name).call_id(call_id).build(), now, later).await;
        if ch.status() == Some(403) {
            break;
        }
        let mut wrong = client(name, "guess", 10);
        let m = answer(&mut wrong, &ch, &Req::new(name).call_id(call_id).cseq(2));
        let status = send(&r, &m, now, later).await.status();
        n += 1;
        assert_eq!(status, Some(401), "failure {n}");
    }
    assert_eq!(n, 100);
    let ch = send(&r, &Req::new("cam1").call_id("i").build(), now, later).await;
    assert_eq!(ch.status(), Some(403));
}

/// RFC 3261 §10.3 step 5: the To domain must be served; a user binds only their own AOR
/// unless the policy hook allows another.
#[tokio::test]
async fn to_domain_and_third_party_registration() {
    let (now, wall) = t0();
    let r = registrar_with(|c| c.domains = vec!["example.com".into()]);
    let foreign = Req::new("alice").header("X-Note: to elsewhere");
    let mut m = foreign.build().to_bytes().to_vec();
    let text = String::from_utf8(m.clone()).unwrap();
    m = text
        .replace("To: <sip:alice@example.com>", "To: <sip:alice@example.org>")
        .into_bytes();
    let m = Message::parse(m).unwrap();
    let resp = send(&r, &m, now, wall).await;
    assert_eq!(resp.status(), Some(404));
    assert!(r
        .stateless_challenge(&m, flow(Transport::Udp, UDP), wall)
        .is_none());

    // alice binds bob's AOR: refused by default.
    let ch = send(&r, &Req::new("bob").build(), now, wall).await;
    let mut c = client("alice", "secret", 11);
    let m = answer(&mut c, &ch, &Req::new("bob").cseq(2));
    assert_eq!(send(&r, &m, now, wall).await.status(), Some(403));
    // Allowed by the hook (alice registers on bob's behalf).
    let allow: ThirdPartyPolicy =
        Arc::new(|user, aor| user == "alice" && aor == "sip:bob@example.com");
    let r = registrar_with(|c| c.third_party = Some(allow));
    let ch = send(&r, &Req::new("bob").build(), now, wall).await;
    let m = answer(&mut c, &ch, &Req::new("bob").cseq(2));
    assert_eq!(send(&r, &m, now, wall).await.status(), Some(200));
    let ch = send(&r, &Req::new("alice").call_id("x").build(), now, wall).await;
    let mut b = client("bob", "secret", 12);
    let m = answer(&mut b, &ch, &Req::new("alice").call_id("x").cseq(2));
    assert_eq!(send(&r, &m, now, wall).await.status(), Some(403));
}

fn gb_message(from_user: &str, cseq: u32, content_type: &str, body: &str) -> Message {
    Message::parse(
        format!(
            "MESSAGE sip:34020000002000000001@example.com SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:{UDP};branch=z9hG4bKka{from_user}{cseq}\r\n\
             From: <sip:{from_user}@example.com>;tag=k1\r\n\
             To: <sip:34020000002000000001@example.com>\r\nCall-ID: ka-{from_user}\r\n\
             CSeq: {cseq} MESSAGE\r\nMax-Forwards: 70\r\nContent-Type: {content_type}\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
    .unwrap()
}

const KEEPALIVE: &str = "<?xml version=\"1.0\"?>\r\n<Notify>\r\n<CmdType>Keepalive</CmdType>\r\n\
<SN>1</SN>\r\n<DeviceID>alice</DeviceID>\r\n<Status>OK</Status>\r\n</Notify>\r\n";

/// A MESSAGE the registrar does not understand gets 415 with Accept and Allow; in digest
/// mode a keepalive from an AOR without a binding on that flow or source is challenged, and
/// with a binding (or good credentials) it is accepted as liveness.
#[tokio::test]
async fn message_415_and_keepalive_challenged_without_binding() {
    let r = digest_registrar();
    let (now, wall) = t0();
    let mut events = r.events();
    let text = gb_message("alice", 1, "text/plain", "hello");
    let resp = send(&r, &text, now, wall).await;
    assert_eq!(resp.status(), Some(415));
    assert_eq!(
        resp.header(HeaderName::Accept),
        Some("Application/MANSCDP+xml")
    );
    assert!(resp.header(HeaderName::Allow).unwrap().contains("MESSAGE"));

    // No binding: a spoofable keepalive is challenged, no Alive event.
    let ka = gb_message("alice", 2, "Application/MANSCDP+xml", KEEPALIVE);
    let ch = send(&r, &ka, now, wall).await;
    assert_eq!(ch.status(), Some(401));
    assert!(events.try_recv().is_err());
    // Answered with credentials (the digest covers method MESSAGE): accepted.
    let challenges: Vec<Challenge<'_>> = ch
        .header_lines(HeaderName::WwwAuthenticate)
        .map(|v| Challenge::parse(std::str::from_utf8(v).unwrap()).unwrap())
        .collect();
    let mut c = client("alice", "secret", 20);
    let auth = c
        .respond(
            &challenges,
            "example.com",
            &DigestRequest::new(
                "MESSAGE",
                "sip:34020000002000000001@example.com",
                KEEPALIVE.as_bytes(),
            ),
        )
        .unwrap()
        .to_string();
    let mut authed = gb_message("alice", 3, "Application/MANSCDP+xml", KEEPALIVE);
    authed.append_header("Authorization", &auth).unwrap();
    let authed = Message::parse(authed.to_bytes()).unwrap();
    assert_eq!(send(&r, &authed, now, wall).await.status(), Some(200));
    assert!(matches!(
        events.try_recv(),
        Ok(RegistrarEvent::Alive { .. })
    ));

    // With a binding from this source: no challenge.
    let ch = send(&r, &Req::new("alice").call_id("reg").build(), now, wall).await;
    let m = answer(&mut c, &ch, &Req::new("alice").call_id("reg").cseq(2));
    assert_eq!(send(&r, &m, now, wall).await.status(), Some(200));
    let _ = events.try_recv();
    let ka = gb_message("alice", 4, "Application/MANSCDP+xml", KEEPALIVE);
    assert_eq!(send(&r, &ka, now, wall).await.status(), Some(200));
    assert!(matches!(
        events.try_recv(),
        Ok(RegistrarEvent::Alive { .. })
    ));
    // From another address it is challenged again.
    let ka = gb_message("alice", 5, "Application/MANSCDP+xml", KEEPALIVE);
    let elsewhere = Flow {
        remote: "192.0.2.9:5060".parse().unwrap(),
        ..flow(Transport::Udp, UDP)
    };
    let resp = r.handle(&ka, elsewhere, now, wall).await.unwrap();
    assert_eq!(resp.status(), Some(401));
    assert_eq!(r.counters().auth_failures, 0);
}

/// Per-field limits answer 400/413 with the field's name; the store's bytes are reported.
#[tokio::test]
async fn field_limits_and_bytes_per_binding() {
    let r = Registrar::open(RegistrarConfig::new("example.com"));
    let (now, wall) = t0();
    assert_eq!(r.memory().await.bytes_per_binding, None);
    let ok = send(&r, &Req::new("alice").build(), now, wall).await;
    assert_eq!(ok.status(), Some(200));
    let mem = r.memory().await;
    assert_eq!((mem.aors, mem.bindings), (1, 1));
    let per = mem.bytes_per_binding.unwrap();
    assert!(per > std::mem::size_of::<Binding>() && per < 512, "{per}");

    let long = leak(format!("<sip:bob@127.0.0.1;x={}>", "y".repeat(600)));
    let resp = send(&r, &Req::new("bob").contacts(&[long]).build(), now, wall).await;
    assert_eq!(resp.status(), Some(400));
    assert_eq!(resp.reason(), Some("Contact Too Long"));
    let many: Vec<&str> = (0..17)
        .map(|i| leak(format!("<sip:carol@10.0.0.{i}>")))
        .collect();
    let resp = send(&r, &Req::new("carol").contacts(&many).build(), now, wall).await;
    assert_eq!(resp.status(), Some(413));
    let call_id = leak("c".repeat(300));
    let resp = send(&r, &Req::new("dave").call_id(call_id).build(), now, wall).await;
    assert_eq!(resp.status(), Some(400));
    assert_eq!(resp.reason(), Some("Call-ID Too Long"));
    assert_eq!(r.memory().await.bindings, 1);
}

/// After a restart (a new nonce key), devices answer with nonces the registrar no longer
/// recognises: with the right password that is stale, not a forged nonce, and 300 devices
/// behind one address are not blocked for it.
#[tokio::test]
async fn nonces_from_before_a_restart_are_stale_not_forged() {
    let names: Vec<&'static str> = (0..150).map(|i| leak(format!("cam{i}"))).collect();
    let open = |names: &[&str]| {
        let mut cfg = RegistrarConfig::new("example.com");
        cfg.auth = AuthMode::Digest(users(names));
        Registrar::open(cfg)
    };
    let (before, after) = (open(&names), open(&names));
    let (now, wall) = t0();
    for (i, name) in names.iter().enumerate() {
        let call_id = leak(format!("r{i}"));
        let ch = send(&before, &Req::new(name).call_id(call_id).build(), now, wall).await;
        let mut c = client(name, "secret", 30);
        let m = answer(&mut c, &ch, &Req::new(name).call_id(call_id).cseq(2));
        assert_eq!(send(&before, &m, now, wall).await.status(), Some(200));
        // The refresh reaches the restarted registrar.
        let refresh = authorize(&mut c, Req::new(name).call_id(call_id).cseq(3));
        let resp = send(&after, &refresh, now, wall).await;
        assert_eq!(resp.status(), Some(401), "{name}");
        assert!(resp.header_lines(HeaderName::WwwAuthenticate).all(|v| {
            Challenge::parse(std::str::from_utf8(v).unwrap())
                .unwrap()
                .stale
        }));
        let m = answer(&mut c, &resp, &Req::new(name).call_id(call_id).cseq(4));
        assert_eq!(send(&after, &m, now, wall).await.status(), Some(200));
    }
    let c = after.counters();
    assert_eq!((c.auth_failures, c.throttled, c.accepted), (0, 0, 150));
}
