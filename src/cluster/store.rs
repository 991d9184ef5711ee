//! [`RedisLocationStore`]: the registrar's [`LocationStore`] in Redis, shared by every node of
//! a cluster.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Value;
use sip_core::Flow;
use smallvec::SmallVec;
use tokio::sync::broadcast;

use super::codec::{self, Stored};
use super::lua::Scripts;
use crate::registrar::{
    Binding, BindingChange, BindingChanges, Bindings, LocationStore, Lost, RegisterChange,
    RegisterError, StoreLimits,
};

/// Configuration of a [`RedisLocationStore`].
#[derive(Debug, Clone)]
pub struct RedisStoreConfig {
    /// `redis://HOST:PORT/DB` (the `redis` crate's URL syntax).
    pub url: String,
    /// This node's name (letters, digits, `-`, `_`, `.`): recorded in the bindings whose flow
    /// it holds.
    pub node: String,
    /// The SIP URI other nodes forward to for the bindings this node holds, e.g.
    /// `sip:10.0.0.2:5060` (published in the heartbeat).
    pub node_uri: String,
    /// Prefix of every key and of the event channel (default `sip:`).
    pub prefix: String,
    /// Caps on bindings: per AOR, in total, and the bytes they take in Redis (`max_bytes`,
    /// measured as the Lua scripts' module doc says), each enforced inside the REGISTER
    /// script, so nodes registering at once cannot overshoot them together.
    pub limits: StoreLimits,
    /// How often the heartbeat is refreshed (default 1 s); it lapses after three intervals,
    /// and the other nodes then remove the bindings this node held.
    pub heartbeat: Duration,
    /// Longest wait for Redis, connecting or answering (default 1 s). Past it the operation
    /// fails ([`RegisterError::Unavailable`]: the registrar answers 503).
    pub timeout: Duration,
    /// Hear every registration of the cluster (added, refreshed, removed), not only bindings
    /// going offline (expired, lost), which are always heard (default true). Each event heard
    /// costs the node a decode: a busy node that does not use them turns this off.
    pub registration_events: bool,
}

impl RedisStoreConfig {
    /// Defaults for a node named `node`, reached at `node_uri`, on Redis at `url`.
    pub fn new(
        url: impl Into<String>,
        node: impl Into<String>,
        node_uri: impl Into<String>,
    ) -> RedisStoreConfig {
        RedisStoreConfig {
            url: url.into(),
            node: node.into(),
            node_uri: node_uri.into(),
            prefix: "sip:".into(),
            limits: StoreLimits::default(),
            heartbeat: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            registration_events: true,
        }
    }
}

/// Why a [`RedisLocationStore`] could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisStoreError {
    /// The URL or the configuration is wrong.
    #[error("redis store configuration: {0}")]
    Config(String),
    /// Redis refused or failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// What happened to a binding anywhere in the cluster, heard over Redis pub/sub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterEvent {
    /// What happened.
    pub kind: ClusterEventKind,
    /// The address-of-record.
    pub aor: String,
    /// The binding (its expiry on this node's clock, approximately).
    pub binding: Binding,
    /// The node that registered it.
    pub node: String,
}

/// Kinds of [`ClusterEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterEventKind {
    /// A new binding.
    Added,
    /// A binding refreshed.
    Refreshed,
    /// Removed by its client (expires 0, `*`).
    Removed,
    /// Expired.
    Expired,
    /// Lost: its flow closed, or the node holding it died ("user offline").
    Lost,
}

/// Who can reach a binding, as [`RedisLocationStore::lookup_routes`] tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// Any node: the binding is not bound to a flow.
    Anyone,
    /// This node: it holds the binding's flow.
    Here,
    /// Only the named node, reached at this SIP URI.
    Node {
        /// Its name.
        name: String,
        /// Its URI from its heartbeat.
        uri: String,
    },
    /// Only a node whose heartbeat lapsed: unreachable until the binding is removed.
    Dead(String),
}

/// Redis-backed location store. Every REGISTER is one Lua script run atomically on the Redis
/// server (the §10.3 rules, ordering, replace, remove, caps, expiry in the server's clock,
/// events published), so any number of nodes can share it without losing or keeping stale
/// bindings.
///
/// Bindings whose flow only one node holds (TCP/TLS/WebSocket, outbound, UDP behind NAT)
/// record that node; [`lookup_routes`](Self::lookup_routes) says which node to forward to.
/// Each node refreshes a heartbeat key ([`spawn_heartbeat`](Self::spawn_heartbeat)); when one
/// lapses, the next [`sweep`](LocationStore::sweep) of any survivor removes that node's
/// flow-bound bindings.
///
/// Redis being down makes every operation fail within [`RedisStoreConfig::timeout`]
/// (REGISTER: [`RegisterError::Unavailable`]); the connection manager reconnects by itself.
pub struct RedisLocationStore {
    conn: ConnectionManager,
    scripts: Arc<Scripts>,
    config: RedisStoreConfig,
    events: broadcast::Sender<ClusterEvent>,
    /// Added to the server's clock by every script (tests move time forward with it).
    skew_ms: AtomicI64,
    /// Kept so that the event subscription lives as long as the store.
    _subscriber: ConnectionManager,
}

impl std::fmt::Debug for RedisLocationStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLocationStore")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn valid_node_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn manager_config(config: &RedisStoreConfig) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(config.timeout))
        .set_response_timeout(Some(config.timeout))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500))
}

impl RedisLocationStore {
    /// A store on the Redis at `config.url`. Connections are made lazily: the store is
    /// returned even while Redis is down, and works once it is up. Call it within a tokio
    /// runtime (it spawns the task that subscribes to the event channels).
    pub fn open(config: RedisStoreConfig) -> Result<RedisLocationStore, RedisStoreError> {
        if !valid_node_name(&config.node) {
            return Err(RedisStoreError::Config(format!(
                "node name {:?}: use letters, digits, '-', '_', '.'",
                config.node
            )));
        }
        let client = redis::Client::open(config.url.as_str())?;
        let conn =
            ConnectionManager::new_lazy_with_config(client.clone(), manager_config(&config))?;
        let (events, _) = broadcast::channel(1024);
        // Pub/sub on its own connection, RESP3 so that messages arrive as pushes; the manager
        // subscribes again after every reconnection.
        let info = client.get_connection_info().clone();
        let resp3 = info
            .redis_settings()
            .clone()
            .set_protocol(redis::ProtocolVersion::RESP3);
        let sub_client = redis::Client::open(info.set_redis_settings(resp3))?;
        let tx = events.clone();
        let prefix = config.prefix.clone();
        let sub_config = manager_config(&config)
            .set_push_sender(move |push: redis::PushInfo| {
                if let Some(ev) = parse_push(&push, &prefix) {
                    // No receiver is fine: events are a convenience.
                    let _ = tx.send(ev);
                }
                Ok::<(), redis::aio::SendError>(())
            })
            .set_automatic_resubscription();
        let subscriber = ConnectionManager::new_lazy_with_config(sub_client, sub_config)?;
        let store = RedisLocationStore {
            conn,
            scripts: Arc::new(Scripts::new()),
            config,
            events,
            skew_ms: AtomicI64::new(0),
            _subscriber: subscriber.clone(),
        };
        store.spawn_subscribe(subscriber);
        Ok(store)
    }

    /// Subscribes to the event channel, retrying until Redis answers (the manager then keeps
    /// the subscription across reconnections).
    fn spawn_subscribe(&self, mut sub: ConnectionManager) {
        let p = &self.config.prefix;
        let mut channel = vec![format!("{p}offline")];
        if self.config.registration_events {
            channel.push(format!("{p}events"));
        }
        tokio::spawn(async move {
            let mut wait = Duration::from_millis(50);
            while let Err(e) = sub.subscribe(&channel).await {
                tracing::warn!(error = %e, "redis: cannot subscribe to registration events yet");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            tracing::debug!(?channel, "subscribed to cluster registration events");
        });
    }

    /// The configuration.
    pub fn config(&self) -> &RedisStoreConfig {
        &self.config
    }

    /// Registration events of every node (added, refreshed, removed, expired, lost; only the
    /// last two without [`RedisStoreConfig::registration_events`]).
    pub fn events(&self) -> broadcast::Receiver<ClusterEvent> {
        self.events.subscribe()
    }

    /// Moves the store's clock (what the scripts add to Redis `TIME`) forward, for tests of
    /// expiry without waiting.
    pub fn advance_clock(&self, by: Duration) {
        self.skew_ms
            .fetch_add(by.as_millis() as i64, Ordering::Relaxed);
    }

    fn skew(&self) -> i64 {
        self.skew_ms.load(Ordering::Relaxed)
    }

    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Refreshes this node's heartbeat once (its URI, with a TTL of three intervals).
    pub async fn heartbeat(&self) -> Result<(), RedisStoreError> {
        let p = &self.config.prefix;
        let ttl = (self.config.heartbeat * 3).as_millis() as u64;
        let mut conn = self.conn();
        redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(format!("{p}node:{}", self.config.node))
            .arg(&self.config.node_uri)
            .arg("PX")
            .arg(ttl)
            .ignore()
            .cmd("SADD")
            .arg(format!("{p}nodes"))
            .arg(&self.config.node)
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    /// Refreshes the heartbeat every [`RedisStoreConfig::heartbeat`] (failures are logged; the
    /// next tick tries again). Abort the task to stop: the heartbeat then lapses, as it does
    /// when the node dies.
    pub fn spawn_heartbeat(&self) -> tokio::task::JoinHandle<()> {
        let beat = RedisLocationStore {
            conn: self.conn.clone(),
            scripts: self.scripts.clone(),
            config: self.config.clone(),
            events: self.events.clone(),
            skew_ms: AtomicI64::new(0),
            _subscriber: self._subscriber.clone(),
        };
        let every = self.config.heartbeat;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = beat.heartbeat().await {
                    tracing::warn!(error = %e, "redis: heartbeat failed");
                }
            }
        })
    }

    /// The live bindings of an AOR, each with the node that can reach it. Unlike
    /// [`LocationStore::lookup`], a Redis failure is an error (a proxy answers 503).
    pub async fn lookup_routes(
        &self,
        aor: &str,
        now: Instant,
    ) -> Result<Vec<(Binding, Owner)>, RedisStoreError> {
        Ok(self
            .lookup_stored(aor, now)
            .await?
            .into_iter()
            .map(|(s, o)| (s.binding, o))
            .collect())
    }

    async fn lookup_stored(
        &self,
        aor: &str,
        now: Instant,
    ) -> Result<Vec<(Stored, Owner)>, RedisStoreError> {
        let mut conn = self.conn();
        let v: Vec<Value> = self
            .scripts
            .lookup
            .arg(&self.config.prefix)
            .arg(self.skew())
            .arg(aor)
            .arg(&self.config.node)
            .invoke_async(&mut conn)
            .await?;
        let redis_now = int_at(&v, 0);
        let mut out = Vec::new();
        for pair in v.get(1..).unwrap_or_default().chunks(2) {
            let [value, route] = pair else { continue };
            let Some(s) = decode_value(value, redis_now, now) else {
                continue;
            };
            let route = bytes(route).unwrap_or_default();
            let owner = match route {
                b"" => Owner::Anyone,
                b"+" => Owner::Here,
                b"-" => Owner::Dead(s.node.clone()),
                uri => Owner::Node {
                    name: s.node.clone(),
                    uri: String::from_utf8_lossy(uri).into_owned(),
                },
            };
            out.push((s, owner));
        }
        out.sort_by_key(|(s, _)| std::cmp::Reverse(s.binding.q));
        Ok(out)
    }

    /// Bytes Redis uses in all (`INFO memory`), for operators.
    pub async fn redis_memory(&self) -> Result<u64, RedisStoreError> {
        let mut conn = self.conn();
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut conn)
            .await?;
        Ok(info
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0))
    }

    async fn try_register(
        &self,
        aor: &str,
        change: &RegisterChange,
        now: Instant,
    ) -> Result<Result<(Bindings, BindingChanges), RegisterError>, redis::RedisError> {
        let limits = &self.config.limits;
        // EVALSHA built as one command (the arguments packed into one buffer), the script
        // loaded once when Redis does not know it (first use, or Redis restarted).
        let script = &self.scripts.register;
        let flow_key = codec::flow_key(&change.flow);
        let room: usize = change
            .contacts
            .iter()
            .map(|c| 2 * c.contact.len() + 40)
            .sum::<usize>()
            + aor.len()
            + 3 * change.call_id.len()
            + 2 * flow_key.len()
            + self.config.prefix.len()
            + 160;
        let mut cmd = redis::Cmd::with_capacity(11 + 3 * change.contacts.len(), room);
        cmd.arg("EVALSHA")
            .arg(script.get_hash())
            .arg(0)
            .arg(&self.config.prefix)
            .arg(self.skew())
            .arg(aor)
            .arg(&*change.call_id)
            .arg(change.cseq)
            .arg(u8::from(change.remove_all))
            .arg(limits.max_bindings_per_aor)
            .arg(limits.max_bindings)
            .arg(change.contacts.len());
        for c in &change.contacts {
            cmd.arg(codec::binding_id(c))
                .arg(c.expires)
                .arg(codec::tail(change, c, &self.config.node, &flow_key));
        }
        cmd.arg(limits.max_bytes);
        let mut conn = self.conn();
        let reply: Value = match cmd.query_async(&mut conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                script.load_async(&mut conn).await?;
                cmd.query_async(&mut conn).await?
            }
            r => r?,
        };
        Ok(parse_register_reply(
            bytes(&reply).unwrap_or_default(),
            change,
            &flow_key,
            now,
        ))
    }

    fn lost(v: &[Value], stride: usize, now: Instant) -> Vec<Lost> {
        let redis_now = int_at(v, 0);
        v.get(1..)
            .unwrap_or_default()
            .chunks(stride)
            .filter_map(|c| {
                let (aor, value) = (&c[stride - 2], &c[stride - 1]);
                Some(Lost {
                    aor: String::from_utf8_lossy(bytes(aor)?).into_owned(),
                    binding: decode_value(value, redis_now, now)?.binding,
                })
            })
            .collect()
    }
}

fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn int_at(v: &[Value], i: usize) -> u64 {
    match v.get(i) {
        Some(Value::Int(n)) => (*n).max(0) as u64,
        Some(x) => bytes(x)
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        None => 0,
    }
}

/// The REGISTER script's answer (one string, see [`super::lua`]) as the store's result. The
/// bindings are decoded once: a change that added or refreshed a binding shares the decoded
/// binding of the list after.
fn parse_register_reply(
    reply: &[u8],
    change: &RegisterChange,
    flow_key: &str,
    now: Instant,
) -> Result<(Bindings, BindingChanges), RegisterError> {
    let mut rest = Some(reply);
    let mut parts = std::iter::from_fn(|| {
        let r = rest?;
        match memchr::memchr(codec::REPLY_SEP, r) {
            Some(at) => {
                rest = Some(&r[at + 1..]);
                Some(&r[..at])
            }
            None => rest.take(),
        }
    });
    let status = parts.next().unwrap_or_default();
    let number = |p: Option<&[u8]>| -> u64 {
        p.and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };
    let redis_now = number(parts.next());
    let decode_all = |vals: &mut dyn Iterator<Item = &[u8]>| -> Bindings {
        let mut b: Bindings = vals
            .filter_map(|x| codec::decode_binding(x, redis_now, now, change, flow_key))
            .collect();
        b.sort_by_key(|b| std::cmp::Reverse(b.q));
        b
    };
    match status {
        b"ok" => {
            let n = number(parts.next()) as usize;
            let mut pairs: SmallVec<[(&[u8], &[u8]); 2]> = SmallVec::new();
            for _ in 0..n {
                let (Some(kind), Some(value)) = (parts.next(), parts.next()) else {
                    break;
                };
                pairs.push((kind, value));
            }
            let after: SmallVec<[(&[u8], Binding); 2]> = parts
                .filter_map(|v| {
                    Some((
                        v,
                        codec::decode_binding(v, redis_now, now, change, flow_key)?,
                    ))
                })
                .collect();
            let changes = pairs
                .iter()
                .filter_map(|&(kind, value)| {
                    let b = match after.iter().find(|(v, _)| *v == value) {
                        Some((_, b)) if kind != b"R" => b.clone(),
                        _ => codec::decode_binding(value, redis_now, now, change, flow_key)?,
                    };
                    Some(match kind {
                        b"A" => BindingChange::Added(b),
                        b"F" => BindingChange::Refreshed(b),
                        _ => BindingChange::Removed(b),
                    })
                })
                .collect();
            let mut bindings: Bindings = after.into_iter().map(|(_, b)| b).collect();
            bindings.sort_by_key(|b| std::cmp::Reverse(b.q));
            Ok((bindings, changes))
        }
        b"dup" => Ok((decode_all(&mut parts), BindingChanges::new())),
        b"ooo" => Err(RegisterError::OutOfOrder {
            have: number(parts.next()) as u32,
            got: change.cseq,
        }),
        b"aor_full" => Err(RegisterError::TooManyForAor),
        b"full" => Err(RegisterError::StoreFull),
        other => Err(RegisterError::Unavailable(format!(
            "unexpected script answer {:?}",
            String::from_utf8_lossy(other)
        ))),
    }
}

fn decode_value(v: &Value, redis_now: u64, now: Instant) -> Option<Stored> {
    codec::decode(bytes(v)?, redis_now, now)
}

/// A message of the event channel as a [`ClusterEvent`].
fn parse_push(push: &redis::PushInfo, prefix: &str) -> Option<ClusterEvent> {
    if push.kind != redis::PushKind::Message {
        return None;
    }
    let [channel, payload] = push.data.as_slice() else {
        return None;
    };
    let channel = bytes(channel)?;
    let ours = |name: &str| {
        channel.len() == prefix.len() + name.len()
            && channel.starts_with(prefix.as_bytes())
            && channel.ends_with(name.as_bytes())
    };
    if !ours("events") && !ours("offline") {
        return None;
    }
    let payload = bytes(payload)?;
    let text = std::str::from_utf8(payload).ok()?;
    let (kind, rest) = text.split_once('\n')?;
    let (aor, value) = rest.split_once('\n')?;
    let kind = match kind {
        "A" => ClusterEventKind::Added,
        "F" => ClusterEventKind::Refreshed,
        "R" => ClusterEventKind::Removed,
        "E" => ClusterEventKind::Expired,
        _ => ClusterEventKind::Lost,
    };
    // The expiry is placed relative to the local clock as of the event: the local clock and
    // the server's are close enough for an event.
    let wall_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let s = codec::decode(value.as_bytes(), wall_ms, Instant::now())?;
    Some(ClusterEvent {
        kind,
        aor: aor.to_owned(),
        binding: s.binding,
        node: s.node,
    })
}

impl LocationStore for RedisLocationStore {
    async fn lookup(&self, aor: &str, now: Instant) -> Vec<Binding> {
        match self.lookup_routes(aor, now).await {
            Ok(v) => v.into_iter().map(|(b, _)| b).collect(),
            Err(e) => {
                tracing::warn!(%aor, error = %e, "redis: lookup failed");
                Vec::new()
            }
        }
    }

    async fn register(
        &self,
        aor: &str,
        change: RegisterChange,
        now: Instant,
    ) -> Result<(Bindings, BindingChanges), RegisterError> {
        match self.try_register(aor, &change, now).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(%aor, error = %e, "redis: REGISTER not applied");
                Err(RegisterError::Unavailable(e.to_string()))
            }
        }
    }

    async fn sweep(&self, now: Instant) -> Vec<Lost> {
        let mut conn = self.conn();
        let r: Result<Vec<Value>, _> = self
            .scripts
            .sweep
            .arg(&self.config.prefix)
            .arg(self.skew())
            .arg(1000)
            .arg(&self.config.node)
            .invoke_async(&mut conn)
            .await;
        match r {
            Ok(v) => Self::lost(&v, 3, now),
            Err(e) => {
                tracing::warn!(error = %e, "redis: sweep failed");
                Vec::new()
            }
        }
    }

    async fn flow_closed(&self, flow: Flow) -> Vec<Lost> {
        let mut conn = self.conn();
        let r: Result<Vec<Value>, _> = self
            .scripts
            .flow_closed
            .arg(&self.config.prefix)
            .arg(self.skew())
            .arg(&self.config.node)
            .arg(codec::flow_key(&flow))
            .invoke_async(&mut conn)
            .await;
        match r {
            Ok(v) => Self::lost(&v, 2, Instant::now()),
            Err(e) => {
                tracing::warn!(%flow, error = %e, "redis: flow close not recorded");
                Vec::new()
            }
        }
    }

    async fn set_offline(&self, aor: &str, flow: Flow, offline: bool) -> usize {
        let mut conn = self.conn();
        let r: Result<usize, _> = self
            .scripts
            .set_offline
            .arg(&self.config.prefix)
            .arg(self.skew())
            .arg(aor)
            .arg(&self.config.node)
            .arg(codec::flow_key(&flow))
            .arg(u8::from(offline))
            .invoke_async(&mut conn)
            .await;
        r.unwrap_or_else(|e| {
            tracing::warn!(%aor, error = %e, "redis: offline mark not recorded");
            0
        })
    }

    /// The bindings registered through this node (their flows are this node's: the
    /// registrar's keep-alive prober probes them; each node probes its own).
    async fn all(&self, now: Instant) -> Vec<(String, Binding)> {
        let mut conn = self.conn();
        let pattern = format!("{}aor:*", self.config.prefix);
        let keys: Vec<String> = {
            let mut out = Vec::new();
            let mut cursor: u64 = 0;
            loop {
                let r: Result<(u64, Vec<String>), _> = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut conn)
                    .await;
                let Ok((next, batch)) = r else { break };
                out.extend(batch);
                if next == 0 || out.len() >= self.config.limits.max_bindings {
                    break;
                }
                cursor = next;
            }
            out
        };
        let strip = format!("{}aor:", self.config.prefix);
        let mut out = Vec::new();
        for key in keys {
            let aor = key.strip_prefix(&strip).unwrap_or(&key).to_owned();
            for (s, _) in self.lookup_stored(&aor, now).await.unwrap_or_default() {
                if s.node == self.config.node {
                    out.push((aor.clone(), s.binding));
                }
            }
        }
        out
    }

    async fn bytes(&self) -> Option<usize> {
        let mut conn = self.conn();
        let r: Result<Option<i64>, _> = redis::cmd("HGET")
            .arg(format!("{}stats", self.config.prefix))
            .arg("bytes")
            .query_async(&mut conn)
            .await;
        r.ok().map(|b| b.unwrap_or(0).max(0) as usize)
    }

    async fn counts(&self) -> (usize, usize) {
        let mut conn = self.conn();
        let r: Result<(Option<i64>, Option<i64>), _> = redis::cmd("HMGET")
            .arg(format!("{}stats", self.config.prefix))
            .arg("aors")
            .arg("bindings")
            .query_async(&mut conn)
            .await;
        match r {
            Ok((a, b)) => (
                a.unwrap_or(0).max(0) as usize,
                b.unwrap_or(0).max(0) as usize,
            ),
            Err(_) => (0, 0),
        }
    }
}
