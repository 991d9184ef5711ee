//! The Redis store against a real `redis-server` started on a loopback port in a temporary
//! directory (skipped, with a message, where the binary is missing; CI installs it and sets
//! `CI`, and there a missing binary fails the test).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sip_core::{Flow, Message, Transport};

use super::*;
use crate::registrar::{
    BindingChange, ContactUpdate, LocationStore, MemoryLocationStore, RegisterChange,
    RegisterError, Registrar, RegistrarConfig, StoreLimits,
};

/// A private redis-server, stopped when dropped.
struct RedisServer {
    port: u16,
    dir: std::path::PathBuf,
    child: Option<Child>,
}

impl RedisServer {
    fn start() -> Option<RedisServer> {
        let found = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok();
        if !found {
            assert!(
                std::env::var_os("CI").is_none(),
                "redis-server is missing: .ci/run installs it (apt-get install redis-server)"
            );
            eprintln!("SKIPPED: redis-server not installed (apt-get install redis-server)");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let dir = std::env::temp_dir().join(format!("sip-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut s = RedisServer {
            port,
            dir,
            child: None,
        };
        s.spawn();
        Some(s)
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        // Ready when it accepts connections (an external process: polled, bounded).
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn store(r: &RedisServer, node: &str, limits: StoreLimits) -> RedisLocationStore {
    let mut c = RedisStoreConfig::new(r.url(), node, format!("sip:{node}.invalid:5060"));
    c.limits = limits;
    RedisLocationStore::open(c).expect("store")
}

fn flow(transport: Transport, port: u16) -> Flow {
    Flow {
        transport,
        local: "192.0.2.1:5060".parse().unwrap(),
        remote: format!("198.51.100.7:{port}").parse().unwrap(),
    }
}

fn change(call_id: &str, cseq: u32, contacts: &[(&str, u32)], f: Flow) -> RegisterChange {
    RegisterChange {
        call_id: call_id.into(),
        cseq,
        remove_all: false,
        contacts: contacts
            .iter()
            .map(|(c, e)| ContactUpdate {
                contact: (*c).into(),
                expires: *e,
                q: 1000,
                instance: None,
                reg_id: None,
            })
            .collect(),
        flow: f,
        path: vec![],
    }
}

const AOR: &str = "sip:bob@example.com";

fn udp() -> Flow {
    flow(Transport::Udp, 5060)
}

#[tokio::test]
async fn concurrent_registers_from_two_nodes_lose_nothing() {
    let Some(r) = RedisServer::start() else {
        return;
    };
    let limits = StoreLimits {
        max_bindings_per_aor: 500,
        ..StoreLimits::default()
    };
    let a = Arc::new(store(&r, "a", limits));
    let b = Arc::new(store(&r, "b", limits));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100u32 {
        for (n, s) in [("a", a.clone()), ("b", b.clone())] {
            tasks.spawn(async move {
                let contact = format!("sip:{n}{i}@198.51.100.7:5060");
                let ch = change(&format!("{n}{i}"), 1, &[(&contact, 300)], udp());
                s.register(AOR, ch, Instant::now()).await
            });
        }
    }
    while let Some(r) = tasks.join_next().await {
        let (_, changes) = r.unwrap().expect("registered");
        assert!(matches!(changes.as_slice(), [BindingChange::Added(_)]));
    }
    assert_eq!(a.lookup(AOR, Instant::now()).await.len(), 200);
    assert_eq!(b.counts().await, (1, 200));

    // One contact refreshed by both nodes at once with one Call-ID: every CSeq applied once,
    // the binding ends with the highest, and the lower ones that arrive late are refused.
    let mut tasks = tokio::task::JoinSet::new();
    for cseq in 1..=40u32 {
        let s = if cseq % 2 == 0 { a.clone() } else { b.clone() };
        tasks.spawn(async move {
            let ch = change("shared", cseq, &[("sip:shared@198.51.100.7", 300)], udp());
            s.register(AOR, ch, Instant::now()).await
        });
    }
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            Ok(_) | Err(RegisterError::OutOfOrder { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    let all = a.lookup(AOR, Instant::now()).await;
    assert_eq!(all.len(), 201);
    let shared = all.iter().find(|x| x.call_id.as_ref() == "shared").unwrap();
    assert_eq!(shared.cseq, 40);
    let late = change("shared", 39, &[("sip:shared@198.51.100.7", 0)], udp());
    assert_eq!(
        b.register(AOR, late, Instant::now()).await,
        Err(RegisterError::OutOfOrder { have: 40, got: 39 })
    );
}

/// The Redis store and the in-memory one give the same answers to the same REGISTERs
/// (apply_register's rules in Lua).
#[tokio::test]
async fn same_rules_as_the_memory_store() {
    let Some(r) = RedisServer::start() else {
        return;
    };
    let limits = StoreLimits {
        max_bindings_per_aor: 3,
        ..StoreLimits::default()
    };
    let redis = store(&r, "a", limits);
    let mem = MemoryLocationStore::new(limits);
    let steps: Vec<RegisterChange> = vec![
        change("c1", 1, &[("sip:x@h", 60), ("sip:y@h", 60)], udp()),
        change("c1", 1, &[("sip:x@h", 0)], udp()),
        change("c1", 0, &[("sip:x@h", 0)], udp()),
        change("c2", 1, &[("sip:X@H;transport=UDP", 30)], udp()),
        change("c3", 1, &[("sip:z@h", 60), ("sip:w@h", 60)], udp()),
        change("c3", 2, &[("sip:z@h", 60)], udp()),
        change("c1", 2, &[("sip:y@h", 0)], udp()),
        change("c2", 5, &[("sip:x@h;transport=udp", 0)], udp()),
        RegisterChange {
            remove_all: true,
            ..change("c9", 1, &[], udp())
        },
    ];
    for (i, step) in steps.into_iter().enumerate() {
        let now = Instant::now();
        let a = redis.register(AOR, step.clone(), now).await;
        let b = mem.register(AOR, step, now).await;
        let shape = |r: &Result<
            (crate::registrar::Bindings, crate::registrar::BindingChanges),
            RegisterError,
        >| {
            r.as_ref()
                .map(|(bs, chs)| {
                    let mut c: Vec<String> = bs.iter().map(|b| b.contact.to_string()).collect();
                    c.sort();
                    let k: Vec<&str> = chs
                        .iter()
                        .map(|c| match c {
                            BindingChange::Added(_) => "A",
                            BindingChange::Refreshed(_) => "F",
                            BindingChange::Removed(_) => "R",
                        })
                        .collect();
                    (c, k)
                })
                .map_err(Clone::clone)
        };
        assert_eq!(shape(&a), shape(&b), "step {i}");
    }
    assert_eq!(redis.counts().await, (0, 0));
}

#[tokio::test]
async fn bindings_expire_in_redis_time_and_every_node_hears() {
    let Some(r) = RedisServer::start() else {
        return;
    };
    let a = store(&r, "a", StoreLimits::default());
    let b = store(&r, "b", StoreLimits::default());
    let mut events = b.events();
    // The subscription is made in the background: wait for it to carry an event.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut n = 0;
    loop {
        n += 1;
        let ch = change("e", n, &[("sip:probe@198.51.100.7", 60)], udp());
        a.register("sip:probe@example.com", ch, Instant::now())
            .await
            .unwrap();
        if let Ok(Ok(ev)) = tokio::time::timeout(Duration::from_millis(200), events.recv()).await {
            assert_eq!(ev.aor, "sip:probe@example.com");
            assert_eq!(ev.node, "a");
            break;
        }
        assert!(Instant::now() < deadline, "no event over pub/sub");
    }
    let ch = change("e", 100, &[("sip:probe@198.51.100.7", 0)], udp());
    a.register("sip:probe@example.com", ch, Instant::now())
        .await
        .unwrap();
    // Events come in order: the probe's removal is the last before ours.
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .unwrap()
            .unwrap();
        if ev.kind == ClusterEventKind::Removed && ev.aor == "sip:probe@example.com" {
            break;
        }
    }

    let now = Instant::now();
    a.register(
        AOR,
        change("c", 1, &[("sip:bob@198.51.100.7", 60)], udp()),
        now,
    )
    .await
    .unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ev.kind, ClusterEventKind::Added);
    let left = b.lookup(AOR, now).await[0].remaining(now);
    assert!((58..=60).contains(&left), "{left}");
    // Time moves on the stores' clock (the skew added to Redis TIME): nothing is due at 59 s.
    a.advance_clock(Duration::from_secs(59));
    b.advance_clock(Duration::from_secs(59));
    assert!(b.sweep(Instant::now()).await.is_empty());
    assert_eq!(a.lookup(AOR, Instant::now()).await.len(), 1);
    a.advance_clock(Duration::from_secs(2));
    b.advance_clock(Duration::from_secs(2));
    assert!(a.lookup(AOR, Instant::now()).await.is_empty());
    let lost = b.sweep(Instant::now()).await;
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].aor, AOR);
    // Swept once, by one node.
    assert!(a.sweep(Instant::now()).await.is_empty());
    assert_eq!(a.counts().await, (0, 0));
    let ev = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ev.kind, ClusterEventKind::Expired);
}

#[tokio::test]
async fn a_dead_nodes_flow_bindings_are_removed_by_the_survivors() {
    let Some(r) = RedisServer::start() else {
        return;
    };
    let a = store(&r, "a", StoreLimits::default());
    let b = store(&r, "b", StoreLimits::default());
    a.heartbeat().await.unwrap();
    b.heartbeat().await.unwrap();
    let tcp = flow(Transport::Tcp, 40000);
    let now = Instant::now();
    a.register(
        AOR,
        change(
            "t",
            1,
            &[("sip:bob@198.51.100.7:40000;transport=tcp", 600)],
            tcp,
        ),
        now,
    )
    .await
    .unwrap();
    a.register(
        AOR,
        change("u", 1, &[("sip:bob@198.51.100.7:5060", 600)], udp()),
        now,
    )
    .await
    .unwrap();
    let routes = b.lookup_routes(AOR, now).await.unwrap();
    assert!(routes.contains(&(routes[0].0.clone(), routes[0].1.clone())));
    let owners: Vec<&Owner> = routes.iter().map(|(_, o)| o).collect();
    assert!(owners.contains(&&Owner::Anyone));
    assert!(owners.contains(&&Owner::Node {
        name: "a".into(),
        uri: "sip:a.invalid:5060".into()
    }));
    let mine: Vec<Owner> = a
        .lookup_routes(AOR, now)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, o)| o)
        .collect();
    assert!(mine.contains(&Owner::Here));

    // A sweep while "a" is alive removes nothing.
    assert!(b.sweep(Instant::now()).await.is_empty());
    // "a" dies: its heartbeat lapses (here: the key goes, as its TTL would make it go).
    let client = redis::Client::open(r.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("DEL")
        .arg("sip:node:a")
        .query_async(&mut c)
        .await
        .unwrap();
    let owners: Vec<Owner> = b
        .lookup_routes(AOR, now)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, o)| o)
        .collect();
    assert!(owners.contains(&Owner::Dead("a".into())));
    let lost = b.sweep(Instant::now()).await;
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert!(lost[0].binding.flow.transport == Transport::Tcp);
    // The UDP binding any node can reach stays.
    let left = b.lookup(AOR, Instant::now()).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].flow.transport, Transport::Udp);
    assert_eq!(b.counts().await, (1, 1));
}

#[tokio::test]
async fn a_closed_flow_removes_its_bindings() {
    let Some(r) = RedisServer::start() else {
        return;
    };
    let a = store(&r, "a", StoreLimits::default());
    let tcp = flow(Transport::Tcp, 40001);
    let now = Instant::now();
    a.register(
        AOR,
        change(
            "t",
            1,
            &[("sip:bob@198.51.100.7:40001;transport=tcp", 600)],
            tcp,
        ),
        now,
    )
    .await
    .unwrap();
    a.register(
        "sip:al@example.com",
        change(
            "t2",
            1,
            &[("sip:al@198.51.100.7:40002;transport=tcp", 600)],
            flow(Transport::Tcp, 40002),
        ),
        now,
    )
    .await
    .unwrap();
    let lost = a.flow_closed(tcp).await;
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].aor, AOR);
    assert!(a.lookup(AOR, now).await.is_empty());
    assert_eq!(a.lookup("sip:al@example.com", now).await.len(), 1);
    assert_eq!(a.counts().await, (1, 1));
    // Each node lists (and probes) the bindings registered through it.
    let b = store(&r, "b", StoreLimits::default());
    assert_eq!(a.all(now).await.len(), 1);
    assert!(b.all(now).await.is_empty());
    assert_eq!(
        a.set_offline("sip:al@example.com", flow(Transport::Tcp, 40002), true)
            .await,
        1
    );
    assert!(a.lookup("sip:al@example.com", now).await[0].offline);
}

fn register_request(cseq: u32) -> Message {
    Message::parse(
        format!(
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKr{cseq}\r\n\
             To: <sip:bob@example.com>\r\nFrom: <sip:bob@example.com>;tag=1\r\n\
             Call-ID: restart\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:bob@198.51.100.7>\r\n\
             Expires: 600\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes(),
    )
    .unwrap()
}

#[tokio::test]
async fn redis_restarted_mid_run_is_a_503_then_recovers() {
    let Some(mut r) = RedisServer::start() else {
        return;
    };
    let s = store(&r, "a", StoreLimits::default());
    let mut config = RegistrarConfig::new("example.com");
    config.response_cache = 0;
    let reg = Registrar::with_store(config, s);
    let ok = reg
        .handle(
            &register_request(1),
            udp(),
            Instant::now(),
            SystemTime::now(),
        )
        .await
        .unwrap();
    assert_eq!(ok.status(), Some(200));

    r.stop();
    let down = reg
        .handle(
            &register_request(2),
            udp(),
            Instant::now(),
            SystemTime::now(),
        )
        .await
        .unwrap();
    assert_eq!(down.status(), Some(503));
    assert!(down.header(sip_core::HeaderName::RetryAfter).is_some());

    // Back (empty: no persistence): the node reconnects by itself.
    r.spawn();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut cseq = 3;
    loop {
        let resp = reg
            .handle(
                &register_request(cseq),
                udp(),
                Instant::now(),
                SystemTime::now(),
            )
            .await
            .unwrap();
        if resp.status() == Some(200) {
            break;
        }
        assert_eq!(resp.status(), Some(503));
        assert!(
            Instant::now() < deadline,
            "no recovery after redis came back"
        );
        cseq += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(reg.store().lookup(AOR, Instant::now()).await.len(), 1);
}

/// `max_bytes` holds across nodes, inside the REGISTER script: growth past it is refused as the
/// memory store refuses it (StoreFull, which the registrar answers 503 Too Many
/// Registrations), refreshes and removals are applied, and every way a binding goes (removed,
/// expired, swept, flow closed) gives its bytes back exactly.
#[tokio::test]
async fn max_bytes_is_enforced_by_the_script() {
    let Some(r) = RedisServer::start() else {
        return;
    };
    let long = format!("sip:{}@198.51.100.7", "u".repeat(900));
    let now = Instant::now();
    // What one such AOR takes, measured by an uncapped store (a node name as long as the
    // others': it is part of the stored value).
    let probe = store(&r, "p", StoreLimits::default());
    let ch = change("p", 1, &[(&long, 60)], udp());
    probe.register("sip:p@example.com", ch, now).await.unwrap();
    let big = probe.bytes().await.expect("bytes counted");
    assert!(big > 900 + long.len(), "{big}");
    let ch = change("p", 2, &[(&long, 0)], udp());
    probe.register("sip:p@example.com", ch, now).await.unwrap();
    assert_eq!(probe.bytes().await, Some(0));

    // Room for one big AOR and a small one, shared by two nodes.
    let limits = StoreLimits {
        max_bytes: big + 400,
        ..StoreLimits::default()
    };
    let a = store(&r, "a", limits);
    let b = store(&r, "b", limits);
    let ch = change("c", 1, &[(&long, 60)], udp());
    a.register("sip:a@example.com", ch, now).await.unwrap();
    let ch = change("d", 1, &[(&long, 60)], udp());
    assert_eq!(
        b.register("sip:b@example.com", ch, now).await,
        Err(RegisterError::StoreFull)
    );
    // A refresh of the same size is applied.
    let ch = change("c", 2, &[(&long, 120)], udp());
    b.register("sip:a@example.com", ch, now).await.unwrap();
    assert_eq!(a.bytes().await, Some(big));

    // The registrar answers the cap as it does for the memory store (a contact within the
    // registrar's per-field limit, past what is left of the budget).
    let carol = format!("sip:{}@198.51.100.7", "c".repeat(430));
    let mut config = RegistrarConfig::new("example.com");
    config.response_cache = 0;
    let reg = Registrar::with_store(config, store(&r, "c", limits));
    let refused = Message::parse(
        format!(
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKbig\r\n\
             To: <sip:carol@example.com>\r\nFrom: <sip:carol@example.com>;tag=1\r\n\
             Call-ID: big\r\nCSeq: 1 REGISTER\r\nContact: <{carol}>\r\n\
             Expires: 600\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes(),
    )
    .unwrap();
    let resp = reg
        .handle(&refused, udp(), Instant::now(), SystemTime::now())
        .await
        .unwrap();
    assert_eq!(resp.status(), Some(503));
    assert_eq!(resp.reason(), Some("Too Many Registrations"));
    assert!(resp.header(sip_core::HeaderName::RetryAfter).is_some());

    // Expiry (a short binding, swept in Redis time), a closed flow, and a removal each give
    // the bytes back.
    let ch = change("e", 1, &[("sip:e@198.51.100.7", 1)], udp());
    a.register("sip:e@example.com", ch, now).await.unwrap();
    assert!(a.bytes().await.unwrap() > big);
    a.advance_clock(Duration::from_secs(2));
    assert_eq!(a.sweep(Instant::now()).await.len(), 1);
    assert_eq!(a.bytes().await, Some(big));
    let tcp = flow(Transport::Tcp, 7000);
    let ch = change("t", 1, &[("sip:t@198.51.100.7;transport=tcp", 60)], tcp);
    b.register("sip:t@example.com", ch, now).await.unwrap();
    assert!(b.bytes().await.unwrap() > big);
    b.flow_closed(tcp).await;
    assert_eq!(b.bytes().await, Some(big));
    let ch = change("c", 3, &[(&long, 0)], udp());
    a.register("sip:a@example.com", ch, now).await.unwrap();
    assert_eq!(a.bytes().await, Some(0));
    // Now the other one fits.
    let ch = change("d", 2, &[(&long, 60)], udp());
    b.register("sip:b@example.com", ch, now).await.unwrap();
}
