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
                conn::start(shared.clone(), Arc::new(Conn::new(flow, false, w)), r);
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
                            conn::start(shared.clone(), Arc::new(Conn::new(flow, false, w)), r);
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

/// Opens a connection to a TCP or TLS target and registers it as a client flow.
pub(crate) async fn connect(shared: &Arc<Shared>, target: &Target) -> Result<Arc<Conn>, SendError> {
    let connector = match target.transport {
        Transport::Tls => Some(match &shared.tls_client {
            Some(c) => tokio_rustls::TlsConnector::from(c.inner.clone()),
            None => return Err(SendError::TlsNotConfigured),
        }),
        _ => None,
    };
    let server_name = match &target.server_name {
        Some(n) => {
            ServerName::try_from(n.clone()).map_err(|_| SendError::InvalidServerName(n.clone()))?
        }
        None => ServerName::IpAddress(target.addr.ip().into()),
    };
    let reserved = shared
        .registry
        .lock()
        .map_err(|_| SendError::Shutdown)?
        .reserve(None, &shared.cfg);
    if reserved.is_err() {
        Counters::bump(&shared.stats.refused_connections);
        warn!(%target, limit = shared.cfg.max_connections, "connection not opened: limit reached");
        return Err(SendError::ConnectionLimit(shared.cfg.max_connections));
    }
    let addr = target.addr;
    let opened = tokio::time::timeout(shared.cfg.connect_timeout, async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| SendError::Connect { addr, source })?;
        let _ = tcp.set_nodelay(true);
        let local = tcp
            .local_addr()
            .map_err(|source| SendError::Connect { addr, source })?;
        let halves = match connector {
            None => split_tcp(tcp),
            Some(c) => {
                let tls = c
                    .connect(server_name, tcp)
                    .await
                    .map_err(|source| SendError::TlsHandshake { addr, source })?;
                split_tls(TlsStream::Client(tls))
            }
        };
        Ok::<_, SendError>((local, halves))
    })
    .await
    .unwrap_or(Err(SendError::ConnectTimeout(addr)));
    let (local, (reader, writer)) = match opened {
        Ok(x) => x,
        Err(e) => {
            release(shared, None);
            debug!(%target, error = %e, "connection failed");
            return Err(e);
        }
    };
    let flow = Flow {
        transport: target.transport,
        local,
        remote: addr,
    };
    let conn = Arc::new(Conn::new(flow, true, writer));
    conn::start(shared.clone(), conn.clone(), reader);
    Ok(conn)
}
