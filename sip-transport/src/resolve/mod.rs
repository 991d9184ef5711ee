//! RFC 3263 "Locating SIP Servers": from a SIP or SIPS URI to the ordered list of
//! [`Target`]s to try, over the async resolver of hickory-dns (behind the `dns` feature).
//!
//! - §4.1 transport: a `transport` parameter decides; else a numeric host or an explicit port
//!   means UDP (`sip:`) or TLS (`sips:`); else NAPTR records (`SIP+D2U`, `SIP+D2T`,
//!   `SIPS+D2T`, and RFC 7118's `SIP+D2W`/`SIPS+D2W`) in ORDER and PREFERENCE; else SRV
//!   queries for each supported transport; else UDP (`sip:`) or TLS (`sips:`).
//! - §4.2 port and address: SRV records in PRIORITY with RFC 2782 WEIGHTs, each target's A and
//!   AAAA records; an explicit port skips SRV; a numeric host skips DNS.
//! - §4.3 failover: the caller tries the list in order; [`Resolver::mark_down`] keeps a failed
//!   target behind the others for [`ResolverConfig::down_for`].
//! - §5 server use: [`Resolver::resolve_sent_by`] for a response to a Via sent-by name.
//!
//! Answers are cached by hickory-dns for their TTL, negative answers (NXDOMAIN, no data) for
//! the SOA's negative TTL (RFC 2308), in a cache bounded by [`ResolverConfig::cache_size`]. A
//! resolver that fails or times out gives a [`ResolveError`]; a proxy answers it 503
//! ([`ResolveError::response_status`]).

mod down;
mod respond;
mod select;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig as DnsConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::TokioResolver;
use sip_core::random::{OsRandom, RandomSource, SeededRandom};
use sip_core::uri::Uri;
use sip_core::{Target, Transport};
use tokio::time::Instant;
use tracing::debug;

use down::DownList;
use select::{HostKind, Naptr, Srv};

/// What went wrong locating a server (RFC 3263).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// The URI is not a `sip:` or `sips:` URI.
    #[error("not a SIP URI: {0}")]
    NotSip(String),
    /// The URI could not be parsed.
    #[error("invalid URI: {0}")]
    InvalidUri(String),
    /// A `transport` parameter names a transport this stack does not have.
    #[error("unsupported transport {0:?}")]
    UnsupportedTransport(String),
    /// A name that cannot be a DNS name.
    #[error("invalid host name {0:?}")]
    InvalidName(String),
    /// DNS answered, but no usable record leads to an address.
    #[error("no server found for {0}")]
    NotFound(String),
    /// The nameservers did not answer in time.
    #[error("DNS lookup of {0} timed out")]
    Timeout(String),
    /// The lookup failed otherwise (nameserver error, unreachable, refused).
    #[error("DNS lookup of {name} failed: {reason}")]
    Lookup {
        /// The name looked up.
        name: String,
        /// What the resolver reported.
        reason: String,
    },
    /// The resolver could not be set up (no system configuration).
    #[error("resolver configuration: {0}")]
    Config(String),
}

impl ResolveError {
    /// The status a proxy answers a request it cannot forward for this reason: 416 for a URI
    /// scheme it cannot route, 503 otherwise (RFC 3263 §4.3: no server could be reached).
    pub fn response_status(&self) -> u16 {
        match self {
            ResolveError::NotSip(_) => 416,
            _ => 503,
        }
    }
}

/// How the [`Resolver`] finds and caches answers.
#[derive(Debug, Clone)]
pub struct ResolverConfig {
    /// The nameservers to ask (`None`: the system's, from `/etc/resolv.conf`). When given, only
    /// these are asked and the hosts file is not read.
    pub nameservers: Option<Vec<SocketAddr>>,
    /// How long one query waits for an answer.
    pub timeout: Duration,
    /// How many times a query is tried.
    pub attempts: usize,
    /// The most answers kept in the cache (each for its TTL).
    pub cache_size: u64,
    /// The longest a negative answer is kept, whatever its SOA says.
    pub negative_max_ttl: Duration,
    /// How long a failed target stays behind the others (RFC 3263 §4.3).
    pub down_for: Duration,
    /// The most failed targets remembered.
    pub max_down: usize,
    /// The transports this client can use, in order of preference for SRV queries when a
    /// domain has no NAPTR records (RFC 3263 §4.1).
    pub transports: Vec<Transport>,
    /// A seed for the SRV weight choice (`None`: from the OS); for deterministic tests.
    pub seed: Option<u64>,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        ResolverConfig {
            nameservers: None,
            timeout: Duration::from_secs(2),
            attempts: 2,
            cache_size: 1024,
            negative_max_ttl: Duration::from_secs(300),
            down_for: Duration::from_secs(60),
            max_down: 1024,
            transports: vec![Transport::Udp, Transport::Tcp, Transport::Tls],
            seed: None,
        }
    }
}

impl ResolverConfig {
    /// The default configuration asking only `nameserver` (as `--dns ADDR:PORT` does).
    pub fn with_nameserver(nameserver: SocketAddr) -> ResolverConfig {
        ResolverConfig {
            nameservers: Some(vec![nameserver]),
            ..ResolverConfig::default()
        }
    }
}

/// The RFC 3263 resolver: cheap to clone, shared by every transaction.
#[derive(Clone)]
pub struct Resolver {
    inner: Arc<Inner>,
}

struct Inner {
    dns: TokioResolver,
    cfg: ResolverConfig,
    down: Mutex<DownList>,
    rng: Mutex<Box<dyn RandomSource + Send>>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("config", &self.inner.cfg)
            .finish_non_exhaustive()
    }
}

impl Resolver {
    /// A resolver with this configuration; must be called inside a tokio runtime.
    pub fn new(cfg: ResolverConfig) -> Result<Resolver, ResolveError> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = match &cfg.nameservers {
            Some(servers) => {
                let mut dns = DnsConfig::from_name_servers(Vec::new());
                for s in servers {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = s.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = s.port();
                    let mut ns = NameServerConfig::udp(s.ip());
                    ns.connections = vec![udp, tcp];
                    dns.add_name_server(ns);
                }
                let mut b = TokioResolver::builder_with_config(dns, provider);
                b.options_mut().use_hosts_file = ResolveHosts::Never;
                b
            }
            None => TokioResolver::builder(provider).map_err(|e| {
                ResolveError::Config(format!("no system resolver configuration: {e}"))
            })?,
        };
        let opts = builder.options_mut();
        opts.timeout = cfg.timeout;
        opts.attempts = cfg.attempts.max(1);
        opts.cache_size = cfg.cache_size;
        opts.negative_max_ttl = Some(cfg.negative_max_ttl);
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        opts.try_tcp_on_error = true;
        let dns = builder
            .build()
            .map_err(|e| ResolveError::Config(e.to_string()))?;
        let rng: Box<dyn RandomSource + Send> = match cfg.seed {
            Some(s) => Box::new(SeededRandom::new(s)),
            None => Box::new(OsRandom),
        };
        Ok(Resolver {
            inner: Arc::new(Inner {
                dns,
                down: Mutex::new(DownList::new(cfg.down_for, cfg.max_down)),
                cfg,
                rng: Mutex::new(rng),
            }),
        })
    }

    /// A resolver asking the system's nameservers with the default configuration.
    pub fn system() -> Result<Resolver, ResolveError> {
        Resolver::new(ResolverConfig::default())
    }

    /// The configuration.
    pub fn config(&self) -> &ResolverConfig {
        &self.inner.cfg
    }

    /// RFC 3263 §4: the targets for a request to `uri`, in the order to try them; targets
    /// marked down ([`Resolver::mark_down`]) come last. Never empty on success.
    pub async fn resolve(&self, uri: &Uri<'_>) -> Result<Vec<Target>, ResolveError> {
        let plan = select::plan(uri)?;
        let name = match &plan.host {
            HostKind::Ip(ip) => {
                let t = plan
                    .transport
                    .unwrap_or(select::default_transport(plan.secure));
                let port = plan.port.unwrap_or(t.default_port());
                return Ok(vec![Target::new(t, SocketAddr::new(*ip, port))]);
            }
            HostKind::Name(n) => n.clone(),
        };
        let targets = match (plan.transport, plan.port) {
            (Some(t), Some(port)) => self.addresses(&name, t, port, &name).await?,
            (Some(t), None) => self.by_srv_or_address(&name, t, &name).await?,
            (None, _) => self.by_naptr(&name, plan.secure).await?,
        };
        let targets = dedup(targets);
        if targets.is_empty() {
            return Err(ResolveError::NotFound(uri.as_str().to_owned()));
        }
        debug!(uri = uri.as_str(), ?targets, "RFC 3263 targets");
        Ok(self.reorder(targets))
    }

    /// Parses `uri` and resolves it ([`Resolver::resolve`]).
    pub async fn resolve_str(&self, uri: &str) -> Result<Vec<Target>, ResolveError> {
        let u = Uri::parse(uri).map_err(|e| ResolveError::InvalidUri(format!("{uri}: {e}")))?;
        self.resolve(&u).await
    }

    /// RFC 3263 §5: where to send a response whose top Via has a sent-by host name and no
    /// `received`: with a port, that name's addresses; without, its SRV records for the
    /// Via's transport, then its addresses with the transport's default port.
    pub async fn resolve_sent_by(
        &self,
        transport: Transport,
        host: &str,
        port: Option<u16>,
    ) -> Result<Vec<Target>, ResolveError> {
        if let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            let p = port.unwrap_or(transport.default_port());
            return Ok(vec![Target::new(transport, SocketAddr::new(ip, p))]);
        }
        let mut name = host.to_ascii_lowercase();
        if !name.ends_with('.') {
            name.push('.');
        }
        let targets = match port {
            Some(p) => self.addresses(&name, transport, p, &name).await?,
            None => self.by_srv_or_address(&name, transport, &name).await?,
        };
        if targets.is_empty() {
            return Err(ResolveError::NotFound(host.to_owned()));
        }
        Ok(self.reorder(dedup(targets)))
    }

    /// RFC 3263 §4.3: a target failed (transport error, or Timer B/F): later resolutions put
    /// it behind the others until [`ResolverConfig::down_for`] has passed.
    pub fn mark_down(&self, target: &Target) {
        if let Ok(mut d) = self.inner.down.lock() {
            d.mark(target, Instant::now());
        }
        debug!(%target, "target marked down (RFC 3263 §4.3)");
    }

    /// Whether a target is marked down now.
    pub fn is_down(&self, target: &Target) -> bool {
        self.inner
            .down
            .lock()
            .is_ok_and(|d| d.is_down(target, Instant::now()))
    }

    fn reorder(&self, targets: Vec<Target>) -> Vec<Target> {
        match self.inner.down.lock() {
            Ok(d) => d.reorder(targets, Instant::now()),
            Err(_) => targets,
        }
    }

    /// §4.1 with no transport fixed: NAPTR, else SRV per supported transport, else A/AAAA
    /// with the default transport and port.
    async fn by_naptr(&self, name: &str, secure: bool) -> Result<Vec<Target>, ResolveError> {
        let supported = &self.inner.cfg.transports;
        let naptrs = select::usable_naptrs(self.naptr(name).await?, secure, supported);
        let mut out = Vec::new();
        for (t, replacement) in &naptrs {
            let srvs = self.srv(replacement).await?;
            out.extend(self.srv_targets(srvs, *t, name).await?);
        }
        if !naptrs.is_empty() {
            // §4.1: once NAPTR records name services, they decide; SRV fallback is only for
            // a domain without any.
            return Ok(out);
        }
        for t in select::srv_fallback(secure, supported) {
            let srvs = self
                .srv(&format!("{}.{name}", select::srv_prefix(t)))
                .await?;
            out.extend(self.srv_targets(srvs, t, name).await?);
        }
        if out.is_empty() {
            let t = select::default_transport(secure);
            out = self.addresses(name, t, t.default_port(), name).await?;
        }
        Ok(out)
    }

    /// §4.2 with the transport known and no port: SRV for that transport, else A/AAAA with its
    /// default port.
    async fn by_srv_or_address(
        &self,
        name: &str,
        t: Transport,
        domain: &str,
    ) -> Result<Vec<Target>, ResolveError> {
        let srvs = self
            .srv(&format!("{}.{name}", select::srv_prefix(t)))
            .await?;
        let out = self.srv_targets(srvs, t, domain).await?;
        if !out.is_empty() {
            return Ok(out);
        }
        self.addresses(name, t, t.default_port(), domain).await
    }

    /// SRV records ordered by RFC 2782, each target's addresses in turn.
    async fn srv_targets(
        &self,
        srvs: Vec<Srv>,
        t: Transport,
        domain: &str,
    ) -> Result<Vec<Target>, ResolveError> {
        let ordered = match self.inner.rng.lock() {
            Ok(mut rng) => select::order_srv(srvs, rng.as_mut()),
            Err(_) => return Err(ResolveError::Config("random source poisoned".into())),
        };
        let mut out = Vec::new();
        for s in ordered {
            out.extend(self.addresses(&s.target, t, s.port, domain).await?);
        }
        Ok(out)
    }

    /// A and AAAA records of `name` as targets. `domain` is the SIP domain, the name a TLS
    /// certificate must match (RFC 5922 §4).
    async fn addresses(
        &self,
        name: &str,
        t: Transport,
        port: u16,
        domain: &str,
    ) -> Result<Vec<Target>, ResolveError> {
        let n = dns_name(name)?;
        let ips: Vec<IpAddr> = match self.inner.dns.lookup_ip(n).await {
            Ok(l) => l.iter().collect(),
            Err(e) => empty_if_no_records(name, e)?,
        };
        let server_name = select::is_secure(t).then(|| domain.trim_end_matches('.').to_owned());
        Ok(ips
            .into_iter()
            .map(|ip| Target {
                transport: t,
                addr: SocketAddr::new(ip, port),
                server_name: server_name.clone(),
            })
            .collect())
    }

    async fn naptr(&self, name: &str) -> Result<Vec<Naptr>, ResolveError> {
        let n = dns_name(name)?;
        let lookup = match self.inner.dns.lookup(n, RecordType::NAPTR).await {
            Ok(l) => l,
            Err(e) => return empty_if_no_records(name, e),
        };
        Ok(lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::NAPTR(n) => Some(Naptr {
                    order: n.order,
                    preference: n.preference,
                    flags: n.flags.to_vec(),
                    service: n.services.to_vec(),
                    replacement: n.replacement.to_ascii().to_ascii_lowercase(),
                }),
                _ => None,
            })
            .collect())
    }

    async fn srv(&self, name: &str) -> Result<Vec<Srv>, ResolveError> {
        let n = dns_name(name)?;
        let lookup = match self.inner.dns.lookup(n, RecordType::SRV).await {
            Ok(l) => l,
            Err(e) => return empty_if_no_records(name, e),
        };
        Ok(lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(s) => Some(Srv {
                    priority: s.priority,
                    weight: s.weight,
                    port: s.port,
                    target: s.target.to_ascii().to_ascii_lowercase(),
                }),
                _ => None,
            })
            .collect())
    }
}

/// A response's top Via sent-by when it is a name (RFC 3263 §5).
#[derive(Debug, Clone)]
pub(crate) struct SentBy {
    pub(crate) transport: Transport,
    pub(crate) host: String,
    pub(crate) port: Option<u16>,
}

/// The top Via's sent-by of a response, when it is a domain name and no `received` says the
/// address (then RFC 3263 §5 applies).
pub(crate) fn sent_by_name(msg: &sip_core::Message) -> Option<SentBy> {
    let via = msg.via().ok()?;
    let transport = Transport::from_name(via.transport())?;
    if transport.is_websocket() || via.received_addr().is_some() {
        return None;
    }
    match via.sent_by_host() {
        sip_core::uri::Host::Domain(d) => Some(SentBy {
            transport,
            host: (*d).to_owned(),
            port: via.sent_by_port(),
        }),
        _ => None,
    }
}

fn dns_name(name: &str) -> Result<Name, ResolveError> {
    Name::from_ascii(name).map_err(|_| ResolveError::InvalidName(name.to_owned()))
}

/// NXDOMAIN and "no data" are answers (nothing there); anything else is a failure.
fn empty_if_no_records<T>(name: &str, e: NetError) -> Result<Vec<T>, ResolveError> {
    match e {
        NetError::Dns(DnsError::NoRecordsFound(_)) => Ok(Vec::new()),
        NetError::Timeout => Err(ResolveError::Timeout(name.to_owned())),
        other => Err(ResolveError::Lookup {
            name: name.to_owned(),
            reason: other.to_string(),
        }),
    }
}

fn dedup(targets: Vec<Target>) -> Vec<Target> {
    let mut out: Vec<Target> = Vec::with_capacity(targets.len());
    for t in targets {
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}
