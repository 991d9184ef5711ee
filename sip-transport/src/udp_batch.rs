//! Batched UDP sends (`sendmmsg`) for what inline handlers answer while a receive loop works
//! through a batch of datagrams.
//!
//! A receive loop reads up to 16 datagrams with one `recvmmsg`; an inline handler (the
//! registrar's, the dispatcher's) answers or forwards each of them at once. Without batching,
//! each of those is a `sendto` of its own: at 20 000 REGISTER/s, about 13 of them for every
//! `recvmmsg`. Here the receive loop opens a batch on its thread while a handler runs; a
//! datagram sent through the [`TransportHandle`](crate::TransportHandle) with nobody waiting
//! for the result is kept, and the loop flushes the batch with `sendmmsg` (one system call
//! per socket and up to [`MAX`] datagrams) when its `recvmmsg` batch is done, or before it
//! waits for anything. The handler never waits: a socket whose send buffer is full gets the
//! rest from a task of its own, as a single send does.

use std::cell::RefCell;
use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tracing::{debug, trace};

use crate::layer::Shared;
use crate::stats::Counters;
use sip_core::{HeaderName, Message, Target, Transport};

/// Datagrams per `sendmmsg`.
pub(crate) const MAX: usize = 32;

#[derive(Default)]
struct Batch {
    /// Collecting (an inline handler is running on this thread).
    open: bool,
    items: Vec<(Arc<UdpSocket>, Bytes, SocketAddr)>,
    /// The request the running handler was given: where its top Via value is (address and
    /// length), and where its responses go, as the receive path computed when it stamped
    /// that Via.
    reply: Option<(usize, usize, Target)>,
}

thread_local! {
    static BATCH: RefCell<Batch> = RefCell::new(Batch::default());
}

/// Starts collecting the sends of this thread (around an inline handler's run), for a handler
/// given `request`, whose responses go to `reply` (when known).
pub(crate) fn open(request: &Message, reply: Option<Target>) {
    let reply = reply.and_then(|t| {
        let via = request.header_bytes(HeaderName::Via)?;
        Some((via.as_ptr() as usize, via.len(), t))
    });
    BATCH.with(|b| {
        if let Ok(mut b) = b.try_borrow_mut() {
            b.open = true;
            b.reply = reply;
        }
    });
}

/// Stops collecting; what was collected waits for [`flush`].
pub(crate) fn close() {
    BATCH.with(|b| {
        if let Ok(mut b) = b.try_borrow_mut() {
            b.open = false;
            b.reply = None;
        }
    });
}

/// Where a response to `request` goes, when `request` is the one the running inline handler
/// was given, with its top Via as received and stamped (the same line at the same place: a
/// copy or an edited Via does not match, and its destination is read from it as usual).
pub(crate) fn reply_to(request: &Message) -> Option<Target> {
    BATCH.with(|b| {
        let b = b.try_borrow().ok()?;
        let (at, len, target) = b.reply.as_ref()?;
        let via = request.header_bytes(HeaderName::Via)?;
        (via.as_ptr() as usize == *at && via.len() == *len).then(|| target.clone())
    })
}

/// Keeps `data` for `to` when a batch is open on this thread (`false`: send it now).
pub(crate) fn offer(sock: &Arc<UdpSocket>, data: &Bytes, to: SocketAddr) -> bool {
    BATCH.with(|b| match b.try_borrow_mut() {
        Ok(mut b) if b.open => {
            b.items.push((sock.clone(), data.clone(), to));
            true
        }
        _ => false,
    })
}

/// Sends what was collected on this thread: one `sendmmsg` per run of datagrams for one
/// socket, up to [`MAX`] each.
pub(crate) fn flush(shared: &Arc<Shared>) {
    let items = BATCH.with(|b| match b.try_borrow_mut() {
        Ok(mut b) if !b.items.is_empty() => std::mem::take(&mut b.items),
        _ => Vec::new(),
    });
    if items.is_empty() {
        return;
    }
    let mut start = 0;
    while start < items.len() {
        let sock = &items[start].0;
        let mut end = start + 1;
        while end < items.len() && end - start < MAX && Arc::ptr_eq(&items[end].0, sock) {
            end += 1;
        }
        let sent = send_run(shared, &items[start..end]);
        start += sent;
    }
    // Give the allocation back for the next batch.
    BATCH.with(|b| {
        if let Ok(mut b) = b.try_borrow_mut() {
            if b.items.capacity() == 0 {
                let mut items = items;
                items.clear();
                b.items = items;
            }
        }
    });
}

/// Sends a run of datagrams of one socket; returns how many it dealt with (at least one).
fn send_run(shared: &Arc<Shared>, run: &[(Arc<UdpSocket>, Bytes, SocketAddr)]) -> usize {
    let sock = &run[0].0;
    let n = run.len().min(MAX);
    let r = if n == 1 {
        // One datagram: a plain send.
        sock.try_send_to(&run[0].1, run[0].2).map(|_| 1)
    } else {
        send_mmsg(sock, &run[..n])
    };
    match r {
        Ok(sent) if sent > 0 => {
            for (_, data, to) in &run[..sent] {
                shared.stats.sent(Transport::Udp, data.len());
                trace!(remote = %to, size = data.len(), "sent");
            }
            sent
        }
        Ok(_) => 0,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            // The send buffer is full: the rest goes from a task, in order, as a single
            // send's would.
            Counters::bump(&shared.stats.udp_sends_deferred);
            let rest: Vec<(Bytes, SocketAddr)> =
                run[..n].iter().map(|(_, d, t)| (d.clone(), *t)).collect();
            let (sock, shared) = (sock.clone(), shared.clone());
            tokio::spawn(async move {
                for (data, to) in rest {
                    match sock.send_to(&data, to).await {
                        Ok(_) => shared.stats.sent(Transport::Udp, data.len()),
                        Err(error) => {
                            Counters::bump(&shared.stats.send_errors);
                            debug!(remote = %to, %error, "datagram not sent");
                        }
                    }
                }
            });
            n
        }
        Err(e) => {
            // This datagram failed (the kernel reports the first one of the call): count
            // it and go on with the next.
            Counters::bump(&shared.stats.send_errors);
            debug!(remote = %run[0].2, error = %e, "datagram not sent");
            1
        }
    }
}

/// One `sendmmsg` for `run` (at most [`MAX`]): how many were sent.
fn send_mmsg(sock: &UdpSocket, run: &[(Arc<UdpSocket>, Bytes, SocketAddr)]) -> io::Result<usize> {
    let n = run.len().min(MAX);
    let mut addrs = [const { MaybeUninit::<libc::sockaddr_storage>::uninit() }; MAX];
    let mut iovs = [const { MaybeUninit::<libc::iovec>::uninit() }; MAX];
    let mut hdrs = [const { MaybeUninit::<libc::mmsghdr>::uninit() }; MAX];
    for (i, (_, data, to)) in run[..n].iter().enumerate() {
        // SAFETY: all-zero is a valid sockaddr_storage and mmsghdr.
        let addr = addrs[i].write(unsafe { std::mem::zeroed() });
        let len = write_addr(addr, *to);
        let iov = iovs[i].write(libc::iovec {
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        });
        let hdr = hdrs[i].write(unsafe { std::mem::zeroed() });
        hdr.msg_hdr.msg_name = addr as *mut libc::sockaddr_storage as *mut libc::c_void;
        hdr.msg_hdr.msg_namelen = len;
        hdr.msg_hdr.msg_iov = iov;
        hdr.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: the first `n` headers are initialised and point at initialised addresses and
    // iovecs that outlive the call, each iovec at a datagram `run` holds; the kernel reads
    // them and writes only each header's `msg_len`.
    let r = unsafe {
        libc::sendmmsg(
            sock.as_raw_fd(),
            hdrs.as_mut_ptr() as *mut libc::mmsghdr,
            n as libc::c_uint,
            0,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Writes `addr` as a C socket address; returns its length.
fn write_addr(out: &mut libc::sockaddr_storage, addr: SocketAddr) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr.
            let sin =
                unsafe { &mut *(out as *mut libc::sockaddr_storage as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from_ne_bytes(a.ip().octets()),
            };
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above.
            let sin6 =
                unsafe { &mut *(out as *mut libc::sockaddr_storage as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            sin6.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}
