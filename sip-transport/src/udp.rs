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

/// Datagrams read per system call (`recvmmsg`), each into a buffer of its own.
const BATCH: usize = 16;

/// The buffer of one datagram: the largest UDP payload (a GRO batch is no larger).
const SLOT: usize = 65_536;

/// The receive loop of one socket: every datagram that is ready is read (in batches, one
/// `recvmmsg` for up to [`BATCH`] of them, through `quinn-udp`) before the loop waits for
/// readiness again.
pub(crate) async fn receive(shared: Arc<Shared>, sock: Arc<UdpSocket>, local: SocketAddr) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut rx = Receiver::new(&shared, &sock);
    let batch = match &rx.state {
        Some(_) => BATCH,
        None => 1,
    };
    let mut bufs = vec![0u8; batch * SLOT];
    let mut metas = vec![quinn_udp::RecvMeta::default(); batch];
    loop {
        tokio::select! {
            r = sock.readable() => if let Err(e) = r {
                trace!(%local, error = %e, "udp readiness error");
                continue;
            },
            _ = shutdown.changed() => return,
        }
        // Everything ready now, batch after batch, then back to waiting.
        loop {
            let got = sock.try_io(tokio::io::Interest::READABLE, || {
                rx.read(&sock, &mut bufs, &mut metas)
            });
            let n = match got {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    // ICMP errors reported on the socket, or ENOBUFS: keep serving.
                    trace!(%local, error = %e, "udp receive error");
                    continue;
                }
            };
            for (meta, buf) in metas.iter().zip(bufs.chunks(SLOT)).take(n) {
                let data = buf.get(..meta.len).unwrap_or_default();
                // With GRO several datagrams of one source share a buffer, `stride` apart.
                let stride = meta.stride.max(1);
                for datagram in data.chunks(stride) {
                    let flow = Flow {
                        transport: Transport::Udp,
                        local,
                        remote: meta.addr,
                    };
                    if !rx.datagram(datagram, flow, &sock).await {
                        crate::udp_batch::flush(&shared);
                        return;
                    }
                }
            }
            // What inline handlers sent for this batch: one sendmmsg.
            crate::udp_batch::flush(&shared);
            // Fair to the other tasks of a single-threaded runtime under a flood.
            tokio::task::consume_budget().await;
        }
    }
}

/// The per-socket state of the receive loop.
struct Receiver {
    shared: Arc<Shared>,
    /// `None` when the socket could not be set up for `recvmmsg`: one `recvfrom` at a time.
    state: Option<quinn_udp::UdpSocketState>,
    slab: BytesMut,
    /// What an inline handler answers through (it does not keep the layer alive).
    inline: Option<(Arc<dyn crate::InlineHandler>, crate::TransportHandle)>,
}

impl Receiver {
    fn new(shared: &Arc<Shared>, sock: &UdpSocket) -> Receiver {
        Receiver {
            shared: shared.clone(),
            state: batch_state(sock),
            slab: BytesMut::new(),
            inline: shared
                .inline
                .clone()
                .map(|h| (h, crate::TransportHandle::unowned(shared.clone()))),
        }
    }

    /// Reads what is ready: the number of buffers filled (`WouldBlock` when none).
    fn read(
        &self,
        sock: &UdpSocket,
        bufs: &mut [u8],
        metas: &mut [quinn_udp::RecvMeta],
    ) -> io::Result<usize> {
        match &self.state {
            Some(state) => {
                let mut it = bufs.chunks_mut(SLOT).map(io::IoSliceMut::new);
                let mut slices: [io::IoSliceMut<'_>; BATCH] = std::array::from_fn(|_| {
                    it.next().unwrap_or_else(|| io::IoSliceMut::new(&mut []))
                });
                let k = metas.len().min(BATCH);
                state.recv(sock.into(), &mut slices[..k], &mut metas[..k])
            }
            None => {
                let buf = bufs.get_mut(..SLOT).ok_or(io::ErrorKind::InvalidInput)?;
                let (n, addr) = sock.try_recv_from(buf)?;
                let meta = metas.first_mut().ok_or(io::ErrorKind::InvalidInput)?;
                meta.addr = addr;
                meta.len = n;
                meta.stride = n;
                Ok(1)
            }
        }
    }

    /// One datagram: checked, parsed, offered to the inline handler, then delivered or
    /// answered. `false` when the layer is gone.
    async fn datagram(&mut self, datagram: &[u8], flow: Flow, sock: &UdpSocket) -> bool {
        let shared = &self.shared;
        let n = datagram.len();
        let slab_size = shared.cfg.udp_receive_slab;
        let data = if slab_size == 0 {
            Bytes::copy_from_slice(datagram)
        } else {
            if self.slab.capacity() < n {
                self.slab = BytesMut::with_capacity(slab_size.max(n));
            }
            self.slab.extend_from_slice(datagram);
            self.slab.split().freeze()
        };
        shared.stats.bytes_in(Transport::Udp, n);
        match process_datagram(data, &flow, &shared.cfg, &shared.stats) {
            Inbound::Deliver(msg, reply) => {
                debug!(%flow, size = n, "message received");
                let msg = match &self.inline {
                    Some((handler, transport)) => {
                        // Its sends wait for the end of the batch (one sendmmsg).
                        crate::udp_batch::open(&msg, reply.clone());
                        let passed = if msg.is_request() {
                            handler.request(msg, flow, transport)
                        } else {
                            handler.response(msg, flow, transport)
                        };
                        crate::udp_batch::close();
                        match passed {
                            Some(msg) => msg,
                            None => {
                                Counters::bump(&shared.stats.inline_taken);
                                return true;
                            }
                        }
                    }
                    None => msg,
                };
                // Nothing collected waits while this task might.
                crate::udp_batch::flush(shared);
                shared
                    .events
                    .send(TransportEvent::Message { msg, flow, reply })
                    .await
                    .is_ok()
            }
            Inbound::Answer(resp) => {
                crate::udp_batch::flush(shared);
                match sock.send_to(&resp, flow.remote).await {
                    Ok(_) => shared.stats.sent(Transport::Udp, resp.len()),
                    Err(e) => {
                        Counters::bump(&shared.stats.send_errors);
                        debug!(%flow, error = %e, "error response not sent");
                    }
                }
                true
            }
            Inbound::Drop => true,
        }
    }
}

/// Sets `sock` up for batched receiving. `quinn-udp` configures a socket for QUIC; what QUIC
/// wants and SIP does not is undone: SIP over UDP relies on the kernel fragmenting datagrams
/// larger than the path MTU (quinn forbids it), and reads no ToS, destination address or
/// timestamp per datagram. UDP GRO stays on (datagrams of one source may share a buffer, split
/// by `stride`). `None` (one datagram per call) when the socket cannot be set up.
fn batch_state(sock: &UdpSocket) -> Option<quinn_udp::UdpSocketState> {
    use std::os::fd::AsRawFd;
    let fd = sock.as_raw_fd();
    let v4 = sock.local_addr().ok()?.is_ipv4();
    let saved = [
        (libc::IPPROTO_IP, libc::IP_MTU_DISCOVER),
        (libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER),
    ]
    .map(|(level, name)| (level, name, get_int(fd, level, name)));
    let state = match quinn_udp::UdpSocketState::new(sock.into()) {
        Ok(s) => s,
        Err(e) => {
            debug!(error = %e, "recvmmsg set-up failed: one datagram per call");
            return None;
        }
    };
    for (level, name, value) in saved {
        if let Some(v) = value {
            set_int(fd, level, name, v);
        }
    }
    if v4 {
        set_int(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 0);
    }
    set_int(fd, libc::IPPROTO_IP, libc::IP_RECVTOS, 0);
    set_int(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 0);
    Some(state)
}

fn get_int(fd: std::os::fd::RawFd, level: libc::c_int, name: libc::c_int) -> Option<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are valid for writes of the sizes given, and `fd` is an open socket.
    let r = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (r == 0).then_some(v)
}

fn set_int(fd: std::os::fd::RawFd, level: libc::c_int, name: libc::c_int, v: libc::c_int) {
    // SAFETY: `v` is a valid c_int for the duration of the call, and `fd` is an open socket.
    let _ = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// quinn-udp forbids fragmentation and asks for per-datagram ancillary data; SIP needs
    /// the kernel's default fragmentation (a 2 KB response over Ethernet) and reads none.
    #[tokio::test]
    async fn batch_setup_keeps_the_kernels_fragmentation() {
        use std::os::fd::AsRawFd;
        let fresh = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let default = get_int(fresh.as_raw_fd(), libc::IPPROTO_IP, libc::IP_MTU_DISCOVER);
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        assert!(batch_state(&sock).is_some());
        let fd = sock.as_raw_fd();
        assert_eq!(
            get_int(fd, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER),
            default
        );
        assert_eq!(get_int(fd, libc::IPPROTO_IP, libc::IP_PKTINFO), Some(0));
        assert_eq!(get_int(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS), Some(0));
    }

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
