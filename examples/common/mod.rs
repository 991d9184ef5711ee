//! Shared by the example binaries (not an example itself).

/// Logs through `tracing` to stderr at `RUST_LOG` (default `info`).
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
}

/// The listener flags the `registrar` and `proxy` examples share: `--udp`, `--tcp`, `--tls`,
/// `--ws`, `--wss` (with `--cert`/`--key`) and `--dns`.
#[allow(dead_code)] // not every example that includes this module listens
pub struct Listeners<'a> {
    pub udp: &'a [std::net::SocketAddr],
    pub tcp: &'a [std::net::SocketAddr],
    pub tls: Option<std::net::SocketAddr>,
    pub ws: &'a [std::net::SocketAddr],
    pub wss: Option<std::net::SocketAddr>,
    pub dns: Option<std::net::SocketAddr>,
    pub cert: Option<&'a str>,
    pub key: Option<&'a str>,
}

#[allow(dead_code)]
impl Listeners<'_> {
    /// Adds every listener (and the nameserver) to an Endpoint builder.
    pub fn apply(
        &self,
        mut builder: sip_stack::endpoint::EndpointBuilder,
    ) -> Result<sip_stack::endpoint::EndpointBuilder, Box<dyn std::error::Error>> {
        for a in self.udp {
            builder = builder.udp(*a);
        }
        for a in self.tcp {
            builder = builder.tcp(*a);
        }
        if let Some(addr) = self.tls {
            builder = builder.tls(addr, self.tls_config()?);
        }
        #[cfg(feature = "ws")]
        for a in self.ws {
            builder = builder.ws(*a);
        }
        #[cfg(feature = "ws")]
        if let Some(addr) = self.wss {
            builder = builder.wss(addr, self.tls_config()?);
        }
        #[cfg(not(feature = "ws"))]
        if !self.ws.is_empty() || self.wss.is_some() {
            return Err("--ws/--wss: built without the ws feature".into());
        }
        #[cfg(feature = "dns")]
        if let Some(ns) = self.dns {
            builder = builder.dns(ns);
        }
        #[cfg(not(feature = "dns"))]
        if self.dns.is_some() {
            return Err("--dns: built without the dns feature".into());
        }
        Ok(builder)
    }

    /// The certificate and key of `--tls`/`--wss`.
    fn tls_config(&self) -> Result<sip_transport::TlsServerConfig, Box<dyn std::error::Error>> {
        let (Some(cert), Some(key)) = (self.cert, self.key) else {
            return Err("--tls and --wss need --cert and --key".into());
        };
        let cert = std::fs::read(cert).map_err(|e| format!("{cert}: {e}"))?;
        let key = std::fs::read(key).map_err(|e| format!("{key}: {e}"))?;
        Ok(sip_transport::TlsServerConfig::from_pem(&cert, &key)?)
    }
}

/// The Redis location store of a cluster node (`--location URL --node NAME`): the node is
/// reached by the other nodes at its first UDP listener (else its first TCP one).
#[allow(dead_code)]
pub fn cluster_store(
    url: &str,
    node: &str,
    udp: &[std::net::SocketAddr],
    tcp: &[std::net::SocketAddr],
    limits: sip_stack::registrar::StoreLimits,
) -> Result<sip_stack::cluster::RedisLocationStore, Box<dyn std::error::Error>> {
    let uri = match (udp.first(), tcp.first()) {
        (Some(a), _) => format!("sip:{a}"),
        (None, Some(a)) => format!("sip:{a};transport=tcp"),
        (None, None) => return Err("--location needs a --udp or --tcp listener".into()),
    };
    let mut config = sip_stack::cluster::RedisStoreConfig::new(url, node, uri);
    config.limits = limits;
    // Only "user offline" is logged at info level: the node need not decode every REGISTER
    // of the cluster (RUST_LOG=debug hears them all).
    config.registration_events = tracing::enabled!(tracing::Level::DEBUG);
    let store = sip_stack::cluster::RedisLocationStore::open(config)?;
    tracing::info!(%url, %node, "location store in Redis");
    Ok(store)
}

/// Logs the registration events of every node of the cluster.
#[allow(dead_code)]
pub async fn log_cluster_events(
    mut events: tokio::sync::broadcast::Receiver<sip_stack::cluster::ClusterEvent>,
) {
    use sip_stack::cluster::ClusterEventKind;
    loop {
        match events.recv().await {
            Ok(e) => match e.kind {
                ClusterEventKind::Expired | ClusterEventKind::Lost => {
                    tracing::info!(aor = %e.aor, contact = %e.binding.contact, node = %e.node, kind = ?e.kind, "cluster: user offline")
                }
                _ => {
                    tracing::debug!(aor = %e.aor, contact = %e.binding.contact, node = %e.node, kind = ?e.kind, "cluster: registration")
                }
            },
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "cluster events: fell behind")
            }
            Err(_) => return,
        }
    }
}
