//! One TCP or TLS connection: a reader task that frames, answers keep-alives and enforces the
//! timeouts, and a writer task that drains the connection's [`WriteQueue`], so that a peer
//! that does not read holds up no one but itself.
//!
//! An idle connection holds no read buffer: reads go through one 64 KiB buffer per worker
//! thread and only the unframed tail of a message is kept (in the [`Framer`]), which is
//! replaced by an empty one whenever it has been drained.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Poll};
use std::time::Duration;

use sip_core::framer::{Frame, Framer};
use sip_core::{Error, Flow};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::{sleep_until, Instant};
use tokio_rustls::TlsStream;
use tracing::{debug, info, trace, warn};

use crate::error::SendError;
use crate::event::{CloseReason, TransportEvent};
use crate::inbound::{process_message, Inbound};
use crate::layer::Shared;
use crate::queue::{coalesce, Item, Notice, Refused, WriteQueue};
use crate::stats::Counters;

/// The read half of a connection.
pub(crate) enum Reader {
    Tcp(OwnedReadHalf),
    Tls(ReadHalf<TlsStream<TcpStream>>),
}

impl Reader {
    fn poll_read(
        &mut self,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self {
            Reader::Tcp(r) => Pin::new(r).poll_read(cx, buf),
            Reader::Tls(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

/// The write half of a connection.
pub(crate) enum Writer {
    Tcp(OwnedWriteHalf),
    Tls(WriteHalf<TlsStream<TcpStream>>),
}

impl Writer {
    async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Writer::Tcp(w) => w.write_all(data).await,
            Writer::Tls(w) => {
                w.write_all(data).await?;
                w.flush().await
            }
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Writer::Tcp(w) => w.shutdown().await,
            Writer::Tls(w) => w.shutdown().await,
        }
    }
}

/// A registered connection, shared by its reader task, its writer task, the registry and
/// senders. Senders only queue ([`Conn::enqueue`]); the writer task owns the socket's write half.
pub(crate) struct Conn {
    pub(crate) flow: Flow,
    /// Whether we opened it (a client flow: pings, pongs expected).
    pub(crate) outbound: bool,
    /// For a connection we opened: the name it was opened for (for TLS, the name its
    /// certificate was verified against). `None` for accepted connections, whose peer proved
    /// no name, and for connections opened to a bare address.
    pub(crate) server_name: Option<String>,
    pub(crate) queue: Arc<WriteQueue>,
    pub(crate) close: Notify,
    close_reason: Mutex<Option<CloseReason>>,
    created: Instant,
    /// Milliseconds from `created` to the last read or write.
    last_activity_ms: AtomicU64,
}

impl Conn {
    pub(crate) fn new(
        flow: Flow,
        outbound: bool,
        server_name: Option<String>,
        queue: Arc<WriteQueue>,
    ) -> Conn {
        Conn {
            flow,
            outbound,
            server_name,
            queue,
            close: Notify::new(),
            close_reason: Mutex::new(None),
            created: Instant::now(),
            last_activity_ms: AtomicU64::new(0),
        }
    }

    pub(crate) fn touch(&self) {
        let ms = self.created.elapsed().as_millis().min(u128::from(u64::MAX)) as u64;
        self.last_activity_ms.fetch_max(ms, Ordering::Relaxed);
    }

    pub(crate) fn last_activity(&self) -> Instant {
        self.created + Duration::from_millis(self.last_activity_ms.load(Ordering::Relaxed))
    }

    /// Asks the reader task to close the connection (the first reason wins).
    pub(crate) fn request_close(&self, reason: CloseReason) {
        if let Ok(mut r) = self.close_reason.lock() {
            r.get_or_insert(reason);
        }
        self.close.notify_one();
    }

    pub(crate) fn take_close_reason(&self) -> CloseReason {
        self.close_reason
            .lock()
            .ok()
            .and_then(|mut r| r.take())
            .unwrap_or(CloseReason::Local)
    }

    /// Queues one whole message (or keep-alive) for the writer task; never waits. A queue
    /// that would pass its byte budget means the peer is not reading: the connection is
    /// closed ([`CloseReason::QueueFull`]) and counted, and nobody else is held up.
    pub(crate) fn enqueue(&self, stats: &Counters, item: Item) -> Result<(), SendError> {
        match self.queue.push(item) {
            Ok(()) => Ok(()),
            Err((Refused::Full, _)) => {
                Counters::bump(&stats.queue_full_closes);
                warn!(flow = %self.flow, queued = self.queue.queued_bytes(), "peer not reading: write queue full, closing the flow");
                self.request_close(CloseReason::QueueFull);
                Err(SendError::QueueFull(self.flow))
            }
            Err((Refused::Closed, _)) => Err(SendError::FlowClosed(self.flow)),
        }
    }
}

/// Tells whoever waits on these messages that they were not sent.
pub(crate) async fn fail_items(
    events: &mpsc::Sender<TransportEvent>,
    items: Vec<Item>,
    error: impl Fn() -> SendError,
) {
    for item in items {
        match item.notice {
            Notice::None => {}
            Notice::Tag(tag) => {
                deliver_wait(
                    events,
                    TransportEvent::SendFailed {
                        tag,
                        error: error(),
                    },
                )
                .await;
            }
            Notice::Done(tx) => {
                let _ = tx.send(Err(error()));
            }
        }
    }
}

/// The writer task of one connection: drains its queue in batches, each written within the
/// write timeout. A failed or timed-out write closes the connection; what was still queued is
/// reported failed.
async fn write_loop(shared: Arc<Shared>, conn: Arc<Conn>, mut writer: Writer) {
    let flow = conn.flow;
    let mut batch = Vec::new();
    while conn.queue.next_batch(&mut batch, 65_536).await {
        let data = coalesce(&batch);
        let written = tokio::select! {
            r = tokio::time::timeout(shared.cfg.write_timeout, writer.write_all(&data)) => Some(r),
            _ = conn.queue.closed() => None,
        };
        match written {
            Some(Ok(Ok(()))) => {
                conn.touch();
                for item in batch.drain(..) {
                    shared.stats.sent(flow.transport, item.data.len());
                    trace!(%flow, size = item.data.len(), "sent");
                    if let Notice::Done(tx) = item.notice {
                        let _ = tx.send(Ok(flow));
                    }
                }
            }
            Some(Ok(Err(e))) => {
                conn.request_close(CloseReason::Io(e.kind()));
                break;
            }
            Some(Err(_)) => {
                Counters::bump(&shared.stats.write_timeouts);
                conn.request_close(CloseReason::WriteTimeout);
                break;
            }
            None => break,
        }
    }
    // Whatever is left (the batch in hand, the rest of the queue) was not sent.
    batch.extend(conn.queue.close());
    if !batch.is_empty() {
        Counters::add(&shared.stats.send_errors, batch.len() as u64);
    }
    fail_items(&shared.events, batch, || SendError::FlowClosed(flow)).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), writer.shutdown()).await;
}

thread_local! {
    static READ_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; 65_536].into_boxed_slice());
}

/// Reads what the socket has into the framer, at most `room` bytes. `Ok(0)` is end of stream.
async fn read_into(
    reader: &mut Reader,
    framer: &mut Framer,
    room: usize,
) -> Result<usize, CloseReason> {
    if room == 0 {
        return Err(CloseReason::BufferLimit);
    }
    poll_fn(|cx| {
        READ_BUF.with(|cell| {
            let mut fallback;
            let mut borrowed = cell.try_borrow_mut();
            let buf: &mut [u8] = match borrowed.as_mut() {
                Ok(b) => b,
                Err(_) => {
                    fallback = vec![0u8; 4096];
                    &mut fallback
                }
            };
            let len = buf.len().min(room);
            let mut rb = ReadBuf::new(buf.get_mut(..len).unwrap_or_default());
            match ready!(reader.poll_read(cx, &mut rb)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Poll::Ready(Ok(0)),
                Err(e) => return Poll::Ready(Err(CloseReason::Io(e.kind()))),
            }
            let got = rb.filled();
            if !got.is_empty() {
                if let Err(e) = framer.push(got) {
                    return Poll::Ready(Err(CloseReason::Protocol(e)));
                }
            }
            Poll::Ready(Ok(got.len()))
        })
    })
    .await
}

fn new_framer(shared: &Shared, outbound: bool) -> Framer {
    let f = Framer::new(shared.cfg.limits);
    if outbound {
        f.with_pongs()
    } else {
        f
    }
}

/// A future that completes an event delivery the channel could not take at once. Boxed, so
/// that the long-lived connection task does not reserve room for an event (a whole message)
/// in its own state: an idle connection stays small.
pub(crate) type Pending<'a> = Pin<Box<dyn Future<Output = bool> + Send + 'a>>;

/// Hands an event to the channel: at once when there is room, otherwise as a future that
/// waits for room (back-pressure). `Err(())`: the receiver is gone.
pub(crate) fn deliver(
    tx: &mpsc::Sender<TransportEvent>,
    ev: TransportEvent,
) -> Result<Option<Pending<'_>>, ()> {
    match tx.try_send(ev) {
        Ok(()) => Ok(None),
        Err(mpsc::error::TrySendError::Full(ev)) => {
            Ok(Some(Box::pin(async move { tx.send(ev).await.is_ok() })))
        }
        Err(mpsc::error::TrySendError::Closed(_)) => Err(()),
    }
}

/// Delivers an event, waiting for room; `false` when the receiver is gone.
pub(crate) async fn deliver_wait(tx: &mpsc::Sender<TransportEvent>, ev: TransportEvent) -> bool {
    match deliver(tx, ev) {
        Ok(None) => true,
        Ok(Some(wait)) => wait.await,
        Err(()) => false,
    }
}

/// Registers a connection and spawns its writer task and its reader task, which reports it
/// opened, reads until it closes, unregisters it and reports it closed.
pub(crate) fn start(shared: Arc<Shared>, conn: Arc<Conn>, reader: Reader, writer: Writer) {
    if let Ok(mut reg) = shared.registry.lock() {
        reg.insert(conn.clone());
    }
    Counters::bump(&shared.stats.connections_opened);
    let writing = tokio::spawn(write_loop(shared.clone(), conn.clone(), writer));
    let mut shutdown = shared.shutdown.subscribe();
    tokio::spawn(async move {
        let flow = conn.flow;
        info!(%flow, outbound = conn.outbound, "flow opened");
        let opened = TransportEvent::FlowOpened {
            flow,
            outbound: conn.outbound,
        };
        deliver_wait(&shared.events, opened).await;
        let reason = read_loop(&shared, &conn, reader, &mut shutdown).await;
        if let Ok(mut reg) = shared.registry.lock() {
            reg.remove(&conn);
        }
        // The writer fails what is still queued and shuts the write half down; the flow is
        // reported closed after that, so that no send failure for it comes later.
        conn.queue.shut();
        let _ = writing.await;
        Counters::bump(&shared.stats.connections_closed);
        if reason == CloseReason::KeepAliveTimeout {
            Counters::bump(&shared.stats.keepalive_failures);
        }
        info!(%flow, %reason, "flow closed");
        deliver_wait(&shared.events, TransportEvent::FlowClosed { flow, reason }).await;
    });
}

/// What the reader task does after one frame; computed synchronously so that no message is
/// held across an await.
enum Step<'a> {
    Next,
    Pong,
    Write(bytes::Bytes),
    Wait(Pending<'a>),
    Close(CloseReason),
}

fn on_frame<'a>(
    shared: &'a Shared,
    flow: &Flow,
    frame: sip_core::Result<Option<Frame>>,
    completed: &mut bool,
    pong_due: &mut Option<Instant>,
) -> Option<Step<'a>> {
    let stats = &shared.stats;
    let step = match frame {
        Ok(None) => return None,
        Ok(Some(Frame::Ping)) => {
            Counters::bump(&stats.pings_received);
            Step::Pong
        }
        Ok(Some(Frame::Pong)) => {
            Counters::bump(&stats.pongs_received);
            *pong_due = None;
            Step::Next
        }
        Ok(Some(Frame::Message(msg))) => {
            *completed = true;
            stats.message_in(flow.transport);
            match process_message(msg, flow, &shared.cfg, stats) {
                Inbound::Deliver(msg, _) => {
                    debug!(%flow, size = msg.source().len(), "message received");
                    let ev = TransportEvent::Message {
                        msg,
                        flow: *flow,
                        reply: None,
                    };
                    match deliver(&shared.events, ev) {
                        Ok(None) => Step::Next,
                        Ok(Some(wait)) => Step::Wait(wait),
                        Err(()) => Step::Close(CloseReason::Shutdown),
                    }
                }
                Inbound::Answer(resp) => Step::Write(resp),
                Inbound::Drop => Step::Next,
            }
        }
        Err(e) => {
            Counters::bump(&stats.parse_failures);
            if let Error::MessageTooLarge { .. } = e {
                Counters::bump(&stats.oversized);
            }
            debug!(%flow, error = %e, "stream cannot be framed");
            Step::Close(CloseReason::Protocol(e))
        }
    };
    Some(step)
}

async fn read_loop(
    shared: &Shared,
    conn: &Conn,
    mut reader: Reader,
    shutdown: &mut watch::Receiver<bool>,
) -> CloseReason {
    let cfg = &shared.cfg;
    let stats = &shared.stats;
    let flow = conn.flow;
    let mut framer = new_framer(shared, conn.outbound);
    // When the first byte of the incomplete message now buffered arrived.
    let mut partial_since: Option<Instant> = None;
    let interval = if conn.outbound {
        cfg.keepalive_interval
    } else {
        None
    };
    let mut next_ping = interval.map(|i| Instant::now() + i);
    let mut pong_due: Option<Instant> = None;
    if *shutdown.borrow() {
        return CloseReason::Shutdown;
    }
    loop {
        let idle_at = cfg.idle_timeout.map(|t| conn.last_activity() + t);
        let message_at = partial_since.map(|t| t + cfg.message_timeout);
        let deadline = [idle_at, message_at, next_ping, pong_due]
            .into_iter()
            .flatten()
            .min();
        let room = cfg.max_buffered_bytes.saturating_sub(framer.buffered());
        let woke = tokio::select! {
            r = read_into(&mut reader, &mut framer, room) => Wake::Read(r),
            _ = sleep_or_never(deadline) => Wake::Timer,
            _ = conn.close.notified() => return conn.take_close_reason(),
            _ = shutdown.changed() => return CloseReason::Shutdown,
        };
        match woke {
            Wake::Read(Ok(0)) => return CloseReason::PeerClosed,
            Wake::Read(Ok(n)) => {
                stats.bytes_in(flow.transport, n);
                conn.touch();
            }
            Wake::Read(Err(reason)) => {
                if let CloseReason::Protocol(Error::MessageTooLarge { .. })
                | CloseReason::BufferLimit = reason
                {
                    Counters::bump(&stats.oversized);
                }
                return reason;
            }
            Wake::Timer => {
                let now = Instant::now();
                if pong_due.is_some_and(|d| d <= now) {
                    return CloseReason::KeepAliveTimeout;
                }
                if message_at.is_some_and(|d| d <= now) {
                    return CloseReason::MessageTimeout;
                }
                if cfg
                    .idle_timeout
                    .is_some_and(|t| conn.last_activity() + t <= now)
                {
                    return CloseReason::IdleTimeout;
                }
                if next_ping.is_some_and(|d| d <= now) {
                    if conn.enqueue(stats, keepalive(b"\r\n\r\n")).is_err() {
                        return conn.take_close_reason();
                    }
                    Counters::bump(&stats.pings_sent);
                    pong_due.get_or_insert(now + cfg.keepalive_timeout);
                    next_ping = interval.map(|i| now + i);
                }
                continue;
            }
        }
        let mut completed = false;
        while let Some(step) = on_frame(
            shared,
            &flow,
            framer.next_frame(),
            &mut completed,
            &mut pong_due,
        ) {
            match step {
                Step::Next => {}
                Step::Pong => {
                    if conn.enqueue(stats, keepalive(b"\r\n")).is_err() {
                        return conn.take_close_reason();
                    }
                    Counters::bump(&stats.pongs_sent);
                }
                Step::Write(resp) => {
                    let item = Item {
                        data: resp,
                        notice: Notice::None,
                    };
                    if conn.enqueue(stats, item).is_err() {
                        return conn.take_close_reason();
                    }
                }
                Step::Wait(wait) => {
                    if !wait.await {
                        return CloseReason::Shutdown;
                    }
                }
                Step::Close(reason) => return reason,
            }
        }
        if framer.buffered() == 0 {
            // Drop the drained buffer: an idle connection keeps no allocation.
            framer = new_framer(shared, conn.outbound);
            partial_since = None;
        } else if completed || partial_since.is_none() {
            partial_since = Some(Instant::now());
        }
    }
}

fn keepalive(bytes: &'static [u8]) -> Item {
    Item {
        data: bytes::Bytes::from_static(bytes),
        notice: Notice::None,
    }
}

enum Wake {
    Read(Result<usize, CloseReason>),
    Timer,
}

async fn sleep_or_never(deadline: Option<Instant>) {
    match deadline {
        Some(d) => sleep_until(d).await,
        None => std::future::pending().await,
    }
}
