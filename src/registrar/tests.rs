//! The rules of RFC 3261 §10.3 (and RFC 3327, RFC 5626, GB28181), one test each.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sip_auth::{Account, DefaultRandom, DigestClient, DigestRequest, MemoryStore};
use sip_core::auth::Challenge;
use sip_core::{Flow, HeaderName, Message, Transport};

use super::*;

pub(super) fn flow(transport: Transport, port: u16) -> Flow {
    Flow {
        transport,
        local: "127.0.0.1:5060".parse().unwrap(),
        remote: format!("127.0.0.1:{port}").parse().unwrap(),
    }
}

pub(super) const UDP: u16 = 40000;

pub(super) struct Req {
    pub(super) user: &'static str,
    pub(super) call_id: &'static str,
    pub(super) cseq: u32,
    pub(super) contacts: Vec<String>,
    pub(super) extra: Vec<String>,
    pub(super) ruri: &'static str,
}

impl Req {
    pub(super) fn new(user: &'static str) -> Req {
        Req {
            user,
            call_id: "call-1",
            cseq: 1,
            contacts: vec![format!("<sip:{user}@127.0.0.1:{UDP}>")],
            extra: vec![],
            ruri: "sip:example.com",
        }
    }
    pub(super) fn cseq(mut self, n: u32) -> Req {
        self.cseq = n;
        self
    }
    pub(super) fn call_id(mut self, c: &'static str) -> Req {
        self.call_id = c;
        self
    }
    pub(super) fn contacts(mut self, c: &[&str]) -> Req {
        self.contacts = c.iter().map(|s| s.to_string()).collect();
        self
    }
    pub(super) fn header(mut self, h: &str) -> Req {
        self.extra.push(h.to_owned());
        self
    }
    pub(super) fn ruri(mut self, r: &'static str) -> Req {
        self.ruri = r;
        self
    }
    pub(super) fn build(&self) -> Message {
        let mut s = format!(
            "REGISTER {} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{UDP};branch=z9hG4bK{u}{}{}{}\r\n\
             Max-Forwards: 70\r\nTo: <sip:{u}@example.com>\r\nFrom: <sip:{u}@example.com>;tag=ft\r\n\
             Call-ID: {}\r\nCSeq: {} REGISTER\r\n",
            self.ruri,
            self.call_id,
            self.cseq,
            self.extra.len() + self.contacts.len(),
            self.call_id,
            self.cseq,
            u = self.user
        );
        for c in &self.contacts {
            s += &format!("Contact: {c}\r\n");
        }
        for h in &self.extra {
            s += &format!("{h}\r\n");
        }
        s += "Content-Length: 0\r\n\r\n";
        Message::parse(s.into_bytes()).unwrap()
    }
}

pub(super) fn t0() -> (Instant, SystemTime) {
    (
        Instant::now(),
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    )
}

pub(super) async fn send<S: LocationStore>(
    r: &Registrar<S>,
    m: &Message,
    now: Instant,
    wall: SystemTime,
) -> Message {
    r.handle(m, flow(Transport::Udp, UDP), now, wall)
        .await
        .unwrap()
}

pub(super) fn contact_expires(resp: &Message) -> Vec<(String, u32)> {
    resp.contacts()
        .map(|c| {
            let c = c.unwrap();
            let a = c.addr().unwrap();
            (a.uri_str().to_owned(), a.expires().unwrap())
        })
        .collect()
}

#[tokio::test]
async fn register_lists_bindings_with_remaining_expires() {
    let r = Registrar::open(RegistrarConfig::new("example.com"));
    let (now, wall) = t0();
    let resp = send(
        &r,
        &Req::new("alice").header("Expires: 600").build(),
        now,
        wall,
    )
    .await;
    assert_eq!(resp.status(), Some(200));
    assert_eq!(
        contact_expires(&resp),
        [(format!("sip:alice@127.0.0.1:{UDP}"), 600)]
    );
    assert!(resp.header(HeaderName::Date).unwrap().ends_with("GMT"));
    // 100 s later, a query (no Contact) shows 500 s left (§10.2.3).
    let q = Req::new("alice").cseq(2).contacts(&[]).build();
    let resp = send(&r, &q, now + Duration::from_secs(100), wall).await;
    assert_eq!(contact_expires(&resp)[0].1, 500);
    assert_eq!(r.counters().accepted, 2);
}

#[tokio::test]
async fn expires_precedence_contact_param_then_header_then_default() {
    let r = Registrar::open(RegistrarConfig::new("example.com"));
    let (now, wall) = t0();
    let m = Req::new("bob")
        .contacts(&["<sip:bob@10.0.0.1>;expires=120", "<sip:bob@10.0.0.2>"])
        .header("Expires: 300")
        .build();
    let resp = send(&r, &m, now, wall).await;
    let mut got = contact_expires(&resp);
    got.sort();
    assert_eq!(
        got,
        [
            ("sip:bob@10.0.0.1".into(), 120),
            ("sip:bob@10.0.0.2".into(), 300)
        ]
    );
    let resp = send(&r, &Req::new("carol").build(), now, wall).await;
    assert_eq!(contact_expires(&resp)[0].1, 3600);
    // Longer than the maximum is shortened to it.
    let resp = send(
        &r,
        &Req::new("dave").header("Expires: 999999").build(),
        now,
        wall,
    )
    .await;
    assert_eq!(contact_expires(&resp)[0].1, 86_400);
}

#[tokio::test]
async fn too_brief_gets_423_with_min_expires() {
    let r = Registrar::open(RegistrarConfig::new("example.com"));
    let (now, wall) = t0();
    let resp = send(&r, &Req::new("a").header("Expires: 30").build(), now, wall).await;
    assert_eq!(resp.status(), Some(423));
    assert_eq!(resp.header(HeaderName::MinExpires), Some("60"));
    assert_eq!(r.store().counts().await, (0, 0));
}

#[tokio::test]
async fn star_removes_all_and_needs_expires_zero() {
    let r = Registrar::open(RegistrarConfig::new("example.com"));
    let (now, wall) = t0();
    let m = Req::new("a")
        .contacts(&["<sip:a@10.0.0.1>", "<sip:a@10.0.0.2>"])
        .build();
    send(&r, &m, now, wall).await;
    assert_eq!(r.store().counts().await, (1, 2));
    let bad = Req::new("a").cseq(2).contacts(&["*"]).build();
    assert_eq!(send(&r, &bad, now, wall).await.status(), Some(400));
    let bad = Req::new("a")
        .cseq(3)
        .contacts(&["*", "<sip:a@10.0.0.3>"])
        .header("Expires: 0")
        .build();
    assert_eq!(send(&r, &bad, now, wall).await.status(), Some(400));
    let star = Req::new("a")
        .cseq(4)
        .contacts(&["*"])
        .header("Expires: 0")
        .build();
    let resp = send(&r, &star, now, wall).await;
    assert_eq!(resp.status(), Some(200));
    assert_eq!(resp.contacts().count(), 0);
    assert_eq!(r.store().counts().await, (0, 0));
}

#[tokio::test]
async fn unregister_one_contact() {
    let r = Registrar::open(RegistrarConfig::new("example.com"));
    let (now, wall) = t0();
    let mut events = r.events();
    send(
        &r,
        &Req::new("a")
            .contacts(&["<sip:a@10.0.0.1>", "<sip:a@10.0.0.2>"])
            .build(),
        now,
        wall,
    )
    .await;
    let m = Req::new("a")
        .cseq(2)
        .contacts(&["<sip:a@10.0.0.1>;expires=0"])
        .build();
    let resp = send(&r, &m, now, wall).await;
    assert_eq!(contact_expires(&resp).len(), 1);
    assert!(matches!(
        events.try_recv(),
        Ok(RegistrarEvent::Registered { .. })
    ));
    assert!(matches!(
        events.try_recv(),
        Ok(RegistrarEvent::Registered { .. })
    ));
    assert!(matches!(
        events.try_recv(),
        Ok(RegistrarEvent::Unregistered { .. })
    ));
}

#[tokio::test]
async fn call_id_cseq_ordering() {
    let r = Registrar::open(RegistrarConfig::new("example.com"));
    let (now, wall) = t0();
    send(&r, &Req::new("a").cseq(10).build(), now, wall).await;
    // Same Call-ID, older or equal CSeq: refused, binding unchanged.
    let old = Req::new("a").cseq(9).header("Expires: 0").build();
    assert_eq!(send(&r, &old, now, wall).await.status(), Some(500));
    assert_eq!(r.store().counts().await, (1, 1));
    // A new Call-ID (the UA rebooted) replaces the binding whatever its CSeq.
    let other = Req::new("a")
        .call_id("call-2")
        .cseq(1)
        .header("Expires: 100")
        .build();
    let resp = send(&r, &other, now, wall).await;
    assert_eq!(resp.status(), Some(200));
    assert_eq!(contact_expires(&resp)[0].1, 100);
    assert_eq!(
        &*r.store().lookup("sip:a@example.com", now).await[0].call_id,
        "call-2"
    );
}

#[tokio::test]
async fn q_values_order_and_caps() {
    let mut cfg = RegistrarConfig::new("example.com");
    cfg.limits = StoreLimits {
        max_bindings_per_aor: 2,
        max_bindings: 3,
        ..StoreLimits::default()
    };
    let r = Registrar::open(cfg);
    let (now, wall) = t0();
    let m = Req::new("a")
        .contacts(&["<sip:a@10.0.0.1>;q=0.1", "<sip:a@10.0.0.2>;q=0.9"])
        .build();
    let resp = send(&r, &m, now, wall).await;
    let first = resp.contacts().next().unwrap().unwrap();
    assert_eq!(first.addr().unwrap().uri_str(), "sip:a@10.0.0.2");
    assert_eq!(first.q(), Some(900));
    let third = Req::new("a")
        .cseq(2)
        .contacts(&["<sip:a@10.0.0.3>"])
        .build();
    let resp = send(&r, &third, now, wall).await;
    assert_eq!(resp.status(), Some(503));
    assert!(resp.has(HeaderName::RetryAfter));
    send(&r, &Req::new("b").build(), now, wall).await;
    let full = send(&r, &Req::new("c").build(), now, wall).await;
    assert_eq!(full.status(), Some(503));
}

#[tokio::test]
async fn domain_check_and_require() {
    let mut cfg = RegistrarConfig::new("example.com");
    cfg.domains = vec!["example.com".into()];
    let r = Registrar::open(cfg);
    let (now, wall) = t0();
    let resp = send(
        &r,
        &Req::new("a").ruri("sip:other.example.net").build(),
        now,
        wall,
    )
    .await;
    assert_eq!(resp.status(), Some(404));
    let m = Req::new("a")
        .cseq(2)
        .header("Require: path, frobnicate")
        .build();
    let resp = send(&r, &m, now, wall).await;
    assert_eq!(resp.status(), Some(420));
    assert_eq!(resp.header(HeaderName::Unsupported), Some("frobnicate"));
    let resp = send(
        &r,
        &Req::new("a").cseq(3).ruri("tel:+1234").build(),
        now,
        wall,
    )
    .await;
    assert_eq!(resp.status(), Some(404));
}

#[tokio::test]
async fn path_and_outbound_are_kept_with_the_binding() {
    let r = Registrar::open(RegistrarConfig::new("example.com"));
    let (now, wall) = t0();
    let m = Req::new("a")
        .contacts(&["<sip:a@192.0.2.15:49320;transport=tcp>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-00c0ffee0001>\";reg-id=1"])
        .header("Path: <sip:edge.example.com;lr;ob>")
        .header("Supported: path, outbound")
        .build();
    let tcp = flow(Transport::Tcp, 49320);
    let resp = r.handle(&m, tcp, now, wall).await.unwrap();
    assert_eq!(resp.status(), Some(200));
    assert_eq!(
        resp.header(HeaderName::Path),
        Some("<sip:edge.example.com;lr;ob>")
    );
    assert_eq!(resp.header(HeaderName::Require), Some("outbound"));
    let c = resp.contacts().next().unwrap().unwrap();
    assert_eq!(c.reg_id(), Some(1));
    let b = &r.store().lookup("sip:a@example.com", now).await[0];
    assert_eq!(b.flow, tcp);
    assert_eq!(&*b.path()[0], "<sip:edge.example.com;lr;ob>");
    assert!(b.is_outbound());
    // The flow closes: the binding goes, and the application hears it.
    let mut events = r.events();
    assert_eq!(r.flow_closed(tcp).await, 1);
    assert_eq!(r.store().counts().await, (0, 0));
    assert!(matches!(
        events.try_recv(),
        Ok(RegistrarEvent::Offline { .. })
    ));
}

#[tokio::test]
async fn expiry_sweep_reports_expired() {
    let r = Registrar::open(RegistrarConfig::new("example.com"));
    let (now, wall) = t0();
    send(&r, &Req::new("a").header("Expires: 60").build(), now, wall).await;
    let mut events = r.events();
    assert_eq!(r.sweep(now + Duration::from_secs(59)).await, 0);
    assert_eq!(r.sweep(now + Duration::from_secs(61)).await, 1);
    assert!(matches!(
        events.try_recv(),
        Ok(RegistrarEvent::Expired { .. })
    ));
}

pub(super) fn digest_registrar() -> Registrar {
    let mut users = MemoryStore::new();
    users.insert_password("alice", "example.com", "secret");
    let mut cfg = RegistrarConfig::new("example.com");
    cfg.auth = AuthMode::Digest(Arc::new(users));
    Registrar::open(cfg)
}

pub(super) fn answer(client: &mut DigestClient, challenge_resp: &Message, req: &Req) -> Message {
    let challenges: Vec<Challenge<'_>> = challenge_resp
        .header_lines(HeaderName::WwwAuthenticate)
        .map(|v| Challenge::parse(std::str::from_utf8(v).unwrap()).unwrap())
        .collect();
    let request = DigestRequest::new("REGISTER", req.ruri, b"");
    let auth = client
        .respond(&challenges, "example.com", &request)
        .unwrap()
        .to_string();
    let mut m = req.build();
    m.append_header("Authorization", &auth).unwrap();
    Message::parse(m.to_bytes()).unwrap()
}

#[tokio::test]
async fn digest_challenge_then_accept() {
    let r = digest_registrar();
    let (now, wall) = t0();
    let first = Req::new("alice");
    let resp = send(&r, &first.build(), now, wall).await;
    assert_eq!(resp.status(), Some(401));
    let algs: Vec<String> = resp
        .header_lines(HeaderName::WwwAuthenticate)
        .map(|v| {
            Challenge::parse(std::str::from_utf8(v).unwrap())
                .unwrap()
                .algorithm
                .unwrap()
                .into_owned()
        })
        .collect();
    assert_eq!(algs, ["SHA-256", "MD5"]);
    let mut client = DigestClient::with_random(DefaultRandom::from_seed([3; 32]));
    client.add_account(Account::new("example.com", "alice", "secret"));
    let second = Req::new("alice").cseq(2);
    let authed = answer(&mut client, &resp, &second);
    let ok = send(&r, &authed, now, wall).await;
    assert_eq!(ok.status(), Some(200));
    assert_eq!(r.counters().auth_failures, 0);
    // The identical request again (a retransmission reaching a registrar that answers REGISTER
    // without server transactions): the same 200, nothing counted.
    let again = send(&r, &authed, now, wall).await;
    assert_eq!(again.status(), Some(200));
    assert_eq!(r.counters().auth_failures, 0);
    // The same Authorization on another request is a replay: refused and counted.
    let mut replay = Req::new("alice").cseq(3).build();
    let auth = authed.header(HeaderName::Authorization).unwrap().to_owned();
    replay.append_header("Authorization", &auth).unwrap();
    let replay = Message::parse(replay.to_bytes()).unwrap();
    let resp = send(&r, &replay, now, wall).await;
    assert_eq!(resp.status(), Some(401));
    assert_eq!(r.counters().auth_failures, 1);
}

/// SIPp 3.6 (and some phones and cameras) read only the first WWW-Authenticate and refuse
/// anything but MD5: a registrar configured with MD5 alone challenges with MD5 only, and the
/// MD5 answer is accepted.
#[tokio::test]
async fn digest_md5_only_for_first_challenge_clients() {
    let mut users = MemoryStore::new();
    users.insert_password("alice", "example.com", "secret");
    let mut cfg = RegistrarConfig::new("example.com");
    cfg.auth = AuthMode::Digest(Arc::new(users));
    cfg.algorithms = vec![sip_core::auth::Algorithm::Md5];
    let r = Registrar::open(cfg);
    let (now, wall) = t0();
    let resp = send(&r, &Req::new("alice").build(), now, wall).await;
    assert_eq!(resp.status(), Some(401));
    let lines: Vec<&[u8]> = resp.header_lines(HeaderName::WwwAuthenticate).collect();
    assert_eq!(lines.len(), 1);
    let ch = Challenge::parse(std::str::from_utf8(lines[0]).unwrap()).unwrap();
    assert_eq!(ch.algorithm.as_deref(), Some("MD5"));
    let mut client = DigestClient::with_random(DefaultRandom::from_seed([5; 32]));
    client.add_account(Account::new("example.com", "alice", "secret"));
    let authed = answer(&mut client, &resp, &Req::new("alice").cseq(2));
    assert_eq!(send(&r, &authed, now, wall).await.status(), Some(200));
}

#[tokio::test]
async fn digest_user_may_register_only_own_aor() {
    let r = digest_registrar();
    let (now, wall) = t0();
    let resp = send(&r, &Req::new("mallory").build(), now, wall).await;
    let mut client = DigestClient::with_random(DefaultRandom::from_seed([4; 32]));
    client.add_account(Account::new("example.com", "alice", "secret"));
    let m = answer(&mut client, &resp, &Req::new("mallory").cseq(2));
    assert_eq!(send(&r, &m, now, wall).await.status(), Some(403));
}

#[tokio::test]
async fn stale_nonce_gets_stale_challenge() {
    let r = digest_registrar();
    let (now, wall) = t0();
    let resp = send(&r, &Req::new("alice").build(), now, wall).await;
    let mut client = DigestClient::with_random(DefaultRandom::from_seed([5; 32]));
    client.add_account(Account::new("example.com", "alice", "secret"));
    let m = answer(&mut client, &resp, &Req::new("alice").cseq(2));
    let later = wall + Duration::from_secs(3600);
    let resp = send(&r, &m, now, later).await;
    assert_eq!(resp.status(), Some(401));
    let stale = resp.header_lines(HeaderName::WwwAuthenticate).all(|v| {
        Challenge::parse(std::str::from_utf8(v).unwrap())
            .unwrap()
            .stale
    });
    assert!(stale);
    assert_eq!(r.counters().auth_failures, 0);
}

#[tokio::test]
async fn wrong_password_is_throttled_after_ten_failures() {
    let r = digest_registrar();
    let (now, wall) = t0();
    let mut client = DigestClient::with_random(DefaultRandom::from_seed([6; 32]));
    client.add_account(Account::new("example.com", "alice", "wrong"));
    let mut statuses = Vec::new();
    for i in 0..12u32 {
        let resp = send(&r, &Req::new("alice").cseq(100 + 2 * i).build(), now, wall).await;
        if resp.status() != Some(401) {
            statuses.push(resp.status());
            continue;
        }
        let m = answer(&mut client, &resp, &Req::new("alice").cseq(101 + 2 * i));
        statuses.push(send(&r, &m, now, wall).await.status());
    }
    assert_eq!(&statuses[..10], &[Some(401); 10]);
    assert_eq!(statuses[10], Some(403));
    assert_eq!(statuses[11], Some(403));
    assert_eq!(r.counters().auth_failures, 10);
    assert!(r.counters().throttled >= 2);
    // After the window, the source may try again (and the right password works).
    let later = wall + Duration::from_secs(301);
    let resp = send(&r, &Req::new("alice").cseq(500).build(), now, later).await;
    assert_eq!(resp.status(), Some(401));
}

#[tokio::test]
async fn gb28181_camera_registers_and_keeps_alive_with_defaults() {
    let r = Registrar::open(RegistrarConfig::new("3402000000"));
    let (now, wall) = t0();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/devices");
    for n in 1..=4 {
        let m =
            Message::parse(std::fs::read(dir.join(format!("gb28181_register_{n}.sip"))).unwrap())
                .unwrap();
        let resp = r
            .handle(&m, flow(Transport::Udp, 15060 + n), now, wall)
            .await
            .unwrap();
        assert_eq!(resp.status(), Some(200), "camera {n}");
        let expires = contact_expires(&resp)[0].1;
        assert_eq!(
            expires,
            m.expires().unwrap().unwrap().min(86_400),
            "camera {n}"
        );
    }
    let keepalive =
        Message::parse(std::fs::read(dir.join("gb28181_keepalive.sip")).unwrap()).unwrap();
    assert!(is_gb28181_keepalive(&keepalive));
    let mut events = r.events();
    let resp = r
        .handle(&keepalive, flow(Transport::Udp, 15061), now, wall)
        .await
        .unwrap();
    assert_eq!(resp.status(), Some(200));
    assert!(matches!(
        events.try_recv(),
        Ok(RegistrarEvent::Alive { .. })
    ));
    assert_eq!(r.counters().keepalives, 1);
}

#[tokio::test]
async fn other_methods() {
    let r = Registrar::open(RegistrarConfig::new("example.com"));
    let (now, wall) = t0();
    let opt = Message::parse(
        &b"OPTIONS sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKo\r\n\
To: <sip:example.com>\r\nFrom: <sip:x@example.com>;tag=1\r\nCall-ID: o\r\nCSeq: 1 OPTIONS\r\n\
Content-Length: 0\r\n\r\n"[..],
    )
    .unwrap();
    assert_eq!(send(&r, &opt, now, wall).await.status(), Some(200));
    let inv = String::from_utf8(opt.to_bytes().to_vec())
        .unwrap()
        .replace("OPTIONS", "INVITE");
    let inv = Message::parse(inv.into_bytes()).unwrap();
    let resp = send(&r, &inv, now, wall).await;
    assert_eq!(resp.status(), Some(405));
    assert!(resp.has(HeaderName::Allow));
}

#[test]
fn http_date_is_rfc1123() {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    assert_eq!(http_date(t), "Tue, 14 Nov 2023 22:13:20 GMT");
    assert_eq!(
        http_date(SystemTime::UNIX_EPOCH),
        "Thu, 01 Jan 1970 00:00:00 GMT"
    );
    // A leap day, the last second of a century, and back to an earlier second (the per-thread
    // cache must follow the clock both ways).
    let at = |s: u64| http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(s));
    assert_eq!(at(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
    assert_eq!(at(4_102_444_799), "Thu, 31 Dec 2099 23:59:59 GMT");
    assert_eq!(at(1_700_000_000), "Tue, 14 Nov 2023 22:13:20 GMT");
    assert_eq!(at(1_700_000_000), "Tue, 14 Nov 2023 22:13:20 GMT");
}

#[test]
fn canonical_aor_lowercases_scheme_and_host_only() {
    let aor = |s: &str| canonical_aor(&sip_core::uri::AnyUri::parse(s).unwrap());
    assert_eq!(
        aor("sip:Alice@Example.COM:5070;transport=tcp").as_deref(),
        Some("sip:Alice@example.com")
    );
    assert_eq!(
        aor("sips:bob@192.0.2.1").as_deref(),
        Some("sips:bob@192.0.2.1")
    );
    assert_eq!(
        aor("sip:bob@[2001:db8::1]").as_deref(),
        Some("sip:bob@[2001:db8::1]")
    );
    assert_eq!(aor("sip:example.com"), None);
}

#[tokio::test]
async fn stateless_challenge_only_for_requests_without_credentials() {
    let r = digest_registrar();
    let (now, wall) = t0();
    let udp = flow(Transport::Udp, UDP);
    // No credentials: a 401 with no state kept.
    let first = Req::new("alice").build();
    let ch = r.stateless_challenge(&first, udp, wall).unwrap();
    assert_eq!(ch.status(), Some(401));
    assert_eq!(r.counters().challenges, 1);
    assert_eq!(r.store().counts().await, (0, 0));
    // Answered: not stateless; the full path accepts it.
    let mut client = DigestClient::with_random(DefaultRandom::from_seed([9; 32]));
    client.add_account(Account::new("example.com", "alice", "secret"));
    let authed = answer(&mut client, &ch, &Req::new("alice").cseq(2));
    assert!(r.stateless_challenge(&authed, udp, wall).is_none());
    assert_eq!(
        r.handle(&authed, udp, now, wall).await.unwrap().status(),
        Some(200)
    );
    // Other methods, unsupported Require and open registrars: never stateless.
    assert!(r
        .stateless_challenge(
            &Req::new("a").header("Require: frobnicate").build(),
            udp,
            wall
        )
        .is_none());
    let open = Registrar::open(RegistrarConfig::new("example.com"));
    assert!(open
        .stateless_challenge(&Req::new("a").build(), udp, wall)
        .is_none());
}

#[tokio::test]
async fn retransmitted_unregister_is_answered_again() {
    let r = digest_registrar();
    let (now, wall) = t0();
    let mut client = DigestClient::with_random(DefaultRandom::from_seed([11; 32]));
    client.add_account(Account::new("example.com", "alice", "secret"));
    let ch = send(&r, &Req::new("alice").build(), now, wall).await;
    let reg = answer(&mut client, &ch, &Req::new("alice").cseq(2));
    assert_eq!(send(&r, &reg, now, wall).await.status(), Some(200));
    // Unregister (digest answered with the next nc on the same nonce).
    let request = DigestRequest::new("REGISTER", "sip:example.com", b"");
    let auth = client
        .authorize("example.com", &request)
        .unwrap()
        .to_string();
    let mut unreg = Req::new("alice").cseq(3).header("Expires: 0").build();
    unreg.append_header("Authorization", &auth).unwrap();
    let unreg = Message::parse(unreg.to_bytes()).unwrap();
    let resp = send(&r, &unreg, now, wall).await;
    assert_eq!(resp.status(), Some(200));
    assert_eq!(r.store().counts().await, (0, 0));
    // Its 200 was lost: the identical request again gets 200, not a replay challenge.
    let again = send(&r, &unreg, now + Duration::from_secs(1), wall).await;
    assert_eq!(again.status(), Some(200));
    assert_eq!(r.counters().auth_failures, 0);
    // After 64·T1 it is forgotten: then it is a replay.
    let late = send(&r, &unreg, now + Duration::from_secs(40), wall).await;
    assert_eq!(late.status(), Some(401));
    assert_eq!(r.counters().auth_failures, 1);
}
