//! TCP and TLS: listeners that accept within the connection limits, and client connections
//! opened on demand.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;
use sip_core::{Flow, Target, Transport};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsStream};
use tracing::{debug, warn};

use crate::conn::{self, Conn, Reader, Writer};
use crate::error::SendError;
use crate::layer::Shared;
use crate::queue::WriteQueue;
use crate::registry::{pending_key, PendingKey, Registry};
use crate::stats::Counters;

/// Binds a listening socket (backlog 4096; IPv6 sockets are IPv6 only).
pub(crate) fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(4096)?;
    TcpListener::from_std(s.into())
}

fn split_tcp(tcp: TcpStream) -> (Reader, Writer) {
    let (r, w) = tcp.into_split();
    (Reader::Tcp(r), Writer::Tcp(w))
}

fn split_tls(tls: TlsStream<TcpStream>) -> (Reader, Writer) {
    let (r, w) = tokio::io::split(tls);
    (Reader::Tls(r), Writer::Tls(w))
}

/// Accepts connections until shutdown; `tls` makes it a TLS listener.
pub(crate) async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
) {
    let mut shutdown = shared.shutdown.subscribe();
    let transport = if tls.is_some() {
        Transport::Tls
    } else {
        Transport::Tcp
    };
    let listen_addr = listener.local_addr().ok();
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before accept: back off
                    // briefly rather than spin.
                    warn!(?listen_addr, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let reserved = shared
            .registry
            .lock()
            .map_err(|_| None)
            .and_then(|mut r| r.reserve(Some(peer.ip()), &shared.cfg).map_err(Some));
        if let Err(why) = reserved {
            Counters::bump(&shared.stats.refused_connections);
            match why {
                Some(why) => warn!(%transport, %peer, ?listen_addr, "connection refused: {why}"),
                None => warn!(%transport, %peer, "connection refused: registry unavailable"),
            }
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let local = match stream.local_addr() {
            Ok(a) => a,
            Err(_) => {
                release(&shared, Some(peer));
                continue;
            }
        };
        let flow = Flow {
            transport,
            local,
            remote: peer,
        };
        match &tls {
            None => {
                let (r, w) = split_tcp(stream);
                let conn = Conn::new(flow, false, None, new_queue(&shared));
                conn::start(shared.clone(), Arc::new(conn), r, w);
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let shared = shared.clone();
                tokio::spawn(async move {
                    let hs =
                        tokio::time::timeout(shared.cfg.handshake_timeout, acceptor.accept(stream))
                            .await;
                    match hs {
                        Ok(Ok(tls)) => {
                            let (r, w) = split_tls(TlsStream::Server(tls));
                            let conn = Conn::new(flow, false, None, new_queue(&shared));
                            conn::start(shared.clone(), Arc::new(conn), r, w);
                        }
                        Ok(Err(e)) => {
                            release(&shared, Some(peer));
                            Counters::bump(&shared.stats.refused_connections);
                            debug!(%flow, error = %e, "TLS handshake failed");
                        }
                        Err(_) => {
                            release(&shared, Some(peer));
                            Counters::bump(&shared.stats.refused_connections);
                            debug!(%flow, "TLS handshake timed out");
                        }
                    }
                });
            }
        }
    }
}

fn release(shared: &Shared, inbound_peer: Option<SocketAddr>) {
    if let Ok(mut r) = shared.registry.lock() {
        r.release(inbound_peer.map(|p| p.ip()));
    }
}

fn new_queue(shared: &Shared) -> Arc<WriteQueue> {
    Arc::new(WriteQueue::new(shared.cfg.write_queue_bytes))
}

/// What opening a connection needs, checked before anything is queued for it.
pub(crate) struct Plan {
    pub(crate) connector: Option<tokio_rustls::TlsConnector>,
    pub(crate) server_name: ServerName<'static>,
}

/// Checks that a connection to `target` can be attempted (TLS configured, a valid server name).
pub(crate) fn plan(shared: &Shared, target: &Target) -> Result<Plan, SendError> {
    let connector = match target.transport {
        Transport::Tls => Some(match &shared.tls_client {
            Some(c) => tokio_rustls::TlsConnector::from(c.inner.clone()),
            None => return Err(SendError::TlsNotConfigured),
        }),
        #[cfg(feature = "ws")]
        Transport::Wss => Some(match &shared.tls_client {
            Some(c) => tokio_rustls::TlsConnector::from(c.inner.clone()),
            None => return Err(SendError::TlsNotConfigured),
        }),
        #[cfg(not(feature = "ws"))]
        Transport::Ws | Transport::Wss => {
            return Err(SendError::NoTransport {
                transport: target.transport,
                addr: target.addr,
            })
        }
        #[cfg(feature = "ws")]
        Transport::Ws => None,
        Transport::Udp | Transport::Tcp => None,
    };
    let server_name = match &target.server_name {
        Some(n) => {
            ServerName::try_from(n.clone()).map_err(|_| SendError::InvalidServerName(n.clone()))?
        }
        None => ServerName::IpAddress(target.addr.ip().into()),
    };
    Ok(Plan {
        connector,
        server_name,
    })
}

/// Takes an outbound slot and a queue for a new connection to `target` and starts opening it;
/// what is queued meanwhile is written once it is open. The caller holds the registry.
pub(crate) fn begin_connect(
    shared: &Arc<Shared>,
    registry: &mut Registry,
    target: &Target,
    plan: Plan,
) -> Result<Arc<WriteQueue>, SendError> {
    if let Err(why) = registry.reserve(None, &shared.cfg) {
        Counters::bump(&shared.stats.outbound_refused);
        warn!(%target, "connection not opened: {why}");
        return Err(SendError::ConnectionLimit(
            shared.cfg.max_outbound_connections,
        ));
    }
    let queue = new_queue(shared);
    let key = pending_key(target);
    registry.insert_pending(key.clone(), queue.clone());
    #[cfg(feature = "ws")]
    if target.transport.is_websocket() {
        let opening = crate::ws::open(shared.clone(), target.clone(), key, plan, queue.clone());
        tokio::spawn(opening);
        return Ok(queue);
    }
    tokio::spawn(open(
        shared.clone(),
        target.clone(),
        key,
        plan,
        queue.clone(),
    ));
    Ok(queue)
}

/// Opens the connection, then registers it (its writer drains the queue), or reports every
/// queued message failed.
async fn open(
    shared: Arc<Shared>,
    target: Target,
    key: PendingKey,
    plan: Plan,
    queue: Arc<WriteQueue>,
) {
    let addr = target.addr;
    let mut shutdown = shared.shutdown.subscribe();
    let connecting = tokio::time::timeout(shared.cfg.connect_timeout, async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| SendError::Connect { addr, source })?;
        let _ = tcp.set_nodelay(true);
        let local = tcp
            .local_addr()
            .map_err(|source| SendError::Connect { addr, source })?;
        let halves = match plan.connector {
            None => split_tcp(tcp),
            Some(c) => {
                let tls = c
                    .connect(plan.server_name, tcp)
                    .await
                    .map_err(|source| SendError::TlsHandshake { addr, source })?;
                split_tls(TlsStream::Client(tls))
            }
        };
        Ok::<_, SendError>((local, halves))
    });
    let opened = tokio::select! {
        r = connecting => r.unwrap_or(Err(SendError::ConnectTimeout(addr))),
        _ = shutdown.wait_for(|down| *down) => Err(SendError::Shutdown),
    };
    let started = match opened {
        Ok((local, (reader, writer))) => {
            let flow = Flow {
                transport: target.transport,
                local,
                remote: addr,
            };
            let conn = Arc::new(Conn::new(
                flow,
                true,
                target.server_name.clone(),
                queue.clone(),
            ));
            // Registered before the pending entry goes, so that no send finds neither.
            conn::start(shared.clone(), conn, reader, writer);
            if let Ok(mut r) = shared.registry.lock() {
                r.remove_pending(&key);
            }
            Ok(())
        }
        Err(e) => {
            if let Ok(mut r) = shared.registry.lock() {
                r.remove_pending(&key);
                r.release(None);
            }
            Err(e)
        }
    };
    if let Err(e) = started {
        debug!(%target, error = %e, "connection failed");
        let lost = queue.close();
        Counters::add(&shared.stats.send_errors, lost.len() as u64);
        conn::fail_items(&shared.events, lost, || e.duplicate()).await;
    }
}
