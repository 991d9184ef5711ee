//! UDP: one or more sockets per address (SO_REUSEPORT), each with its own receive task.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use sip_core::{Flow, Transport};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tracing::{debug, trace};

use crate::event::TransportEvent;
use crate::inbound::{process_datagram, Inbound};
use crate::layer::Shared;
use crate::stats::Counters;

/// The sockets bound to one UDP address. They share the local address, so a peer (and any NAT
/// on the way) sees the same source whichever of them sends.
pub(crate) struct UdpGroup {
    pub(crate) local: SocketAddr,
    pub(crate) sockets: Vec<Arc<UdpSocket>>,
}

impl UdpGroup {
    /// Binds `n` sockets to `addr` (with SO_REUSEPORT when `n > 1` or `reuse_port`; a port 0 is
    /// chosen once by the first socket and shared by the others).
    pub(crate) fn bind(
        addr: SocketAddr,
        n: usize,
        reuse_port: bool,
        recv_buffer: Option<usize>,
    ) -> io::Result<UdpGroup> {
        let n = n.max(1);
        let mut sockets = Vec::with_capacity(n);
        let mut local = addr;
        for _ in 0..n {
            let s = Socket::new(Domain::for_address(local), Type::DGRAM, Some(Protocol::UDP))?;
            if local.is_ipv6() {
                s.set_only_v6(true)?;
            }
            if n > 1 || reuse_port {
                #[cfg(unix)]
                s.set_reuse_port(true)?;
            }
            if let Some(size) = recv_buffer {
                s.set_recv_buffer_size(size)?;
            }
            s.set_nonblocking(true)?;
            s.bind(&local.into())?;
            let std: std::net::UdpSocket = s.into();
            let sock = UdpSocket::from_std(std)?;
            local = sock.local_addr()?;
            sockets.push(Arc::new(sock));
        }
        Ok(UdpGroup { local, sockets })
    }

    /// The socket a datagram to `peer` is sent from: always the same one for a peer.
    pub(crate) fn pick(&self, peer: SocketAddr) -> Option<&Arc<UdpSocket>> {
        let n = self.sockets.len();
        if n <= 1 {
            return self.sockets.first();
        }
        let ip_bits: u64 = match peer.ip() {
            std::net::IpAddr::V4(a) => u64::from(u32::from(a)),
            std::net::IpAddr::V6(a) => {
                let v = u128::from(a);
                (v as u64) ^ ((v >> 64) as u64)
            }
        };
        let h =
            (ip_bits ^ u64::from(peer.port()).rotate_left(32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.sockets.get((h >> 32) as usize % n)
    }
}

/// The receive loop of one socket.
pub(crate) async fn receive(shared: Arc<Shared>, sock: Arc<UdpSocket>, local: SocketAddr) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut buf = vec![0u8; 65_536];
    let slab_size = shared.cfg.udp_receive_slab;
    let mut slab = BytesMut::new();
    // What an inline handler answers through (it does not keep the layer alive).
    let inline = shared
        .inline
        .clone()
        .map(|h| (h, crate::TransportHandle::unowned(shared.clone())));
    loop {
        let (n, remote) = tokio::select! {
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    // ICMP errors reported on the socket, or ENOBUFS: keep serving.
                    trace!(%local, error = %e, "udp receive error");
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let flow = Flow {
            transport: Transport::Udp,
            local,
            remote,
        };
        let datagram = buf.get(..n).unwrap_or_default();
        let data = if slab_size == 0 {
            Bytes::copy_from_slice(datagram)
        } else {
            if slab.capacity() < n {
                slab = BytesMut::with_capacity(slab_size.max(n));
            }
            slab.extend_from_slice(datagram);
            slab.split().freeze()
        };
        shared.stats.bytes_in(Transport::Udp, n);
        match process_datagram(data, &flow, &shared.cfg, &shared.stats) {
            Inbound::Deliver(msg) => {
                debug!(%flow, size = n, "message received");
                let msg = match &inline {
                    Some((handler, transport)) if msg.is_request() => {
                        match handler.request(msg, flow, transport) {
                            Some(msg) => msg,
                            None => {
                                Counters::bump(&shared.stats.inline_taken);
                                continue;
                            }
                        }
                    }
                    _ => msg,
                };
                if shared
                    .events
                    .send(TransportEvent::Message { msg, flow })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Inbound::Answer(resp) => match sock.send_to(&resp, remote).await {
                Ok(_) => shared.stats.sent(Transport::Udp, resp.len()),
                Err(e) => {
                    Counters::bump(&shared.stats.send_errors);
                    debug!(%flow, error = %e, "error response not sent");
                }
            },
            Inbound::Drop => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel spreads datagrams from different sources over every socket of the group,
    /// and each socket receives what it is given.
    #[tokio::test]
    async fn every_reuseport_socket_receives() {
        let g = UdpGroup::bind("127.0.0.1:0".parse().unwrap(), 4, false, None).unwrap();
        assert!(g.sockets.iter().all(|s| s.local_addr().unwrap() == g.local));
        let mut clients = Vec::new();
        for _ in 0..256 {
            let c = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            c.send_to(b"x", g.local).await.unwrap();
            clients.push(c);
        }
        let mut counts = [0usize; 4];
        let mut total = 0;
        let mut buf = [0u8; 16];
        while total < clients.len() {
            let mut progressed = false;
            for (i, s) in g.sockets.iter().enumerate() {
                while s.try_recv_from(&mut buf).is_ok() {
                    counts[i] += 1;
                    total += 1;
                    progressed = true;
                }
            }
            if !progressed {
                let readable = g.sockets.iter().map(|s| Box::pin(s.readable()));
                let wait = futures_select(readable.collect());
                tokio::time::timeout(std::time::Duration::from_secs(5), wait)
                    .await
                    .expect("datagrams lost");
            }
        }
        assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
        assert_eq!(
            g.pick(clients[0].local_addr().unwrap()).map(Arc::as_ptr),
            g.pick(clients[0].local_addr().unwrap()).map(Arc::as_ptr)
        );
    }

    async fn futures_select<F: std::future::Future + Unpin>(mut fs: Vec<F>) {
        std::future::poll_fn(|cx| {
            for f in fs.iter_mut() {
                if std::pin::Pin::new(f).poll(cx).is_ready() {
                    return std::task::Poll::Ready(());
                }
            }
            std::task::Poll::Pending
        })
        .await
    }
}
