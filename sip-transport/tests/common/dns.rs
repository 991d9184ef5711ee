//! A small authoritative DNS server for tests, on a loopback UDP socket, answering from zone
//! data the test writes (no network). Built on hickory-proto's message codec. It counts the
//! queries per (name, type), so tests can tell a cached answer from a fresh one.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, NAPTR, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;

/// The zone a [`TestDns`] serves; every record has the TTL it was added with.
#[derive(Default, Clone)]
pub struct Zone {
    records: Vec<Record>,
    /// The SOA minimum: how long a negative answer may be cached (RFC 2308).
    pub negative_ttl: u32,
}

fn name(s: &str) -> Name {
    Name::from_str(s).unwrap()
}

impl Zone {
    pub fn new() -> Zone {
        Zone {
            records: Vec::new(),
            negative_ttl: 300,
        }
    }

    fn add(&mut self, owner: &str, ttl: u32, data: RData) -> &mut Zone {
        self.records
            .push(Record::from_rdata(name(owner), ttl, data));
        self
    }

    /// An A or AAAA record.
    pub fn addr(&mut self, owner: &str, ip: &str) -> &mut Zone {
        let data = match ip.parse::<IpAddr>().unwrap() {
            IpAddr::V4(a) => RData::A(A(a)),
            IpAddr::V6(a) => RData::AAAA(AAAA(a)),
        };
        self.add(owner, 300, data)
    }

    /// An SRV record.
    pub fn srv(
        &mut self,
        owner: &str,
        prio: u16,
        weight: u16,
        port: u16,
        target: &str,
    ) -> &mut Zone {
        self.add(
            owner,
            300,
            RData::SRV(SRV::new(prio, weight, port, name(target))),
        )
    }

    /// A NAPTR record with flag `s` (RFC 3263 §4.1).
    pub fn naptr(
        &mut self,
        owner: &str,
        order: u16,
        pref: u16,
        service: &str,
        repl: &str,
    ) -> &mut Zone {
        let data = NAPTR::new(
            order,
            pref,
            b"s".to_vec().into_boxed_slice(),
            service.as_bytes().to_vec().into_boxed_slice(),
            Vec::new().into_boxed_slice(),
            name(repl),
        );
        self.add(owner, 300, RData::NAPTR(data))
    }
}

/// The running server: its address and the queries it has seen.
#[derive(Clone)]
pub struct TestDns {
    pub addr: SocketAddr,
    queries: Arc<Mutex<HashMap<(String, RecordType), usize>>>,
}

impl TestDns {
    /// Binds 127.0.0.1:0 and serves `zone` until the runtime ends.
    pub async fn start(zone: Zone) -> TestDns {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let queries = Arc::new(Mutex::new(HashMap::new()));
        let q = queries.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let reply = answer(&zone, &query, &q);
                if let Ok(bytes) = reply.to_vec() {
                    let _ = sock.send_to(&bytes, from).await;
                }
            }
        });
        TestDns { addr, queries }
    }

    /// How many queries for `name` (lower case, fully qualified) and `rtype` arrived.
    pub fn queries(&self, name: &str, rtype: RecordType) -> usize {
        let q = self.queries.lock().unwrap();
        q.get(&(name.to_owned(), rtype)).copied().unwrap_or(0)
    }
}

fn answer(
    zone: &Zone,
    query: &Message,
    seen: &Mutex<HashMap<(String, RecordType), usize>>,
) -> Message {
    let mut reply = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
    reply.metadata.authoritative = true;
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    let Some(q) = query.queries.first() else {
        reply.metadata.response_code = ResponseCode::FormErr;
        return reply;
    };
    reply.add_query(q.clone());
    let qname = q.name().to_ascii().to_ascii_lowercase();
    *seen
        .lock()
        .unwrap()
        .entry((qname.clone(), q.query_type()))
        .or_default() += 1;
    let owned: Vec<&Record> = zone
        .records
        .iter()
        .filter(|r| r.name.to_ascii().eq_ignore_ascii_case(&qname))
        .collect();
    let matching: Vec<Record> = owned
        .iter()
        .filter(|r| r.record_type() == q.query_type())
        .map(|r| (*r).clone())
        .collect();
    if matching.is_empty() {
        // RFC 2308: NXDOMAIN or NODATA, with the SOA whose minimum bounds negative caching.
        if owned.is_empty() {
            reply.metadata.response_code = ResponseCode::NXDomain;
        }
        let soa = SOA::new(
            name("ns.test."),
            name("admin.test."),
            1,
            3600,
            600,
            86400,
            zone.negative_ttl,
        );
        let apex = q.name().base_name();
        reply.add_authority(Record::from_rdata(apex, zone.negative_ttl, RData::SOA(soa)));
    } else {
        reply.add_answers(matching);
    }
    reply
}
