//! One connection to a source broker, plain TCP or TLS, with many requests in flight.
//!
//! Kafka brokers answer requests on a connection in the order they were sent, each
//! response tagged with the request's correlation id. A writer task sends frames and a
//! reader task routes each response frame back to its caller, so several fetches can be
//! outstanding at once and a long round trip does not cap throughput.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use shadowlink_protocol::frame::{FrameError, DEFAULT_MAX_FRAME_BYTES};
use shadowlink_protocol::receive::ReceiveBuffer;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Notify};

use super::SourceError;
use crate::tls::{BoxStream, ClientTls};

/// Why a connection stopped serving requests. Every request in flight on it fails with
/// the same reason.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LostReason {
    #[error("connection closed")]
    Closed,
    #[error("connection closed before the response arrived")]
    ClosedBeforeResponse,
    #[error("the broker closed the connection")]
    ClosedByBroker,
    #[error("write failed: {0}")]
    Write(#[source] Arc<io::Error>),
    #[error("read failed: {0}")]
    Read(#[source] Arc<io::Error>),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("response frame shorter than a correlation id")]
    ShortFrame,
    /// Responses come back in order; one nobody waits for means the stream is out of
    /// sync, and only a new connection can fix that.
    #[error("response for unknown correlation id {0}")]
    UnknownCorrelationId(i32),
    #[error("closed after a request went unanswered")]
    Abandoned,
}

type Reply = oneshot::Sender<Result<Bytes, SourceError>>;
type Pending = Arc<Mutex<Option<HashMap<i32, Reply>>>>;

/// A live connection. Cloning shares it.
#[derive(Clone)]
pub struct Connection {
    addr: String,
    next_correlation_id: Arc<AtomicI32>,
    outgoing: mpsc::Sender<(i32, Bytes, Reply)>,
    /// Set once the reader stopped, for whatever reason.
    closed: Arc<AtomicBool>,
    /// Wakes the reader to give the socket up, which a silent peer never does.
    abandon: Arc<Notify>,
}

impl Connection {
    /// Connects to `addr` (host:port), over TLS when `tls` is given, and starts the
    /// reader and writer tasks. A failed handshake is a connect error naming its cause.
    pub async fn connect(addr: &str, tls: Option<&ClientTls>) -> Result<Connection, SourceError> {
        let connect_error = |e| SourceError::Connect {
            addr: addr.to_string(),
            source: Arc::new(e),
        };
        let stream = TcpStream::connect(addr).await.map_err(connect_error)?;
        let _ = stream.set_nodelay(true);
        let stream: BoxStream = match tls {
            Some(tls) => tls.connect(addr, stream).await.map_err(connect_error)?,
            None => Box::new(stream),
        };
        let (read, write) = tokio::io::split(stream);
        let pending: Pending = Arc::new(Mutex::new(Some(HashMap::new())));
        let (tx, rx) = mpsc::channel(64);
        let closed = Arc::new(AtomicBool::new(false));
        let abandon = Arc::new(Notify::new());
        tokio::spawn(write_loop(write, rx, pending.clone(), addr.to_string()));
        let reader = Reader {
            pending,
            addr: addr.to_string(),
            closed: closed.clone(),
            abandon: abandon.clone(),
        };
        tokio::spawn(reader.run(read));
        Ok(Connection {
            addr: addr.to_string(),
            next_correlation_id: Arc::new(AtomicI32::new(1)),
            outgoing: tx,
            closed,
            abandon,
        })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether the connection has failed; a failed connection must be replaced.
    pub fn is_closed(&self) -> bool {
        self.outgoing.is_closed() || self.closed.load(Ordering::Acquire)
    }

    /// Gives the connection up: requests in flight fail, and the socket is released
    /// once the last clone is dropped.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.abandon.notify_one();
    }

    /// Allocates the correlation id the next request frame must carry.
    pub fn next_correlation_id(&self) -> i32 {
        self.next_correlation_id
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                Some(if c == i32::MAX { 1 } else { c + 1 })
            })
            .unwrap_or(1)
    }

    /// Sends a complete request frame (size prefix included) carrying `correlation_id`
    /// and waits for the response frame (without its size prefix).
    pub async fn round_trip(
        &self,
        correlation_id: i32,
        frame: Bytes,
    ) -> Result<Bytes, SourceError> {
        let (reply, response) = oneshot::channel();
        self.outgoing
            .send((correlation_id, frame, reply))
            .await
            .map_err(|_| self.lost(LostReason::Closed))?;
        response
            .await
            .map_err(|_| self.lost(LostReason::ClosedBeforeResponse))?
    }

    fn lost(&self, reason: LostReason) -> SourceError {
        SourceError::ConnectionLost {
            addr: self.addr.clone(),
            reason,
        }
    }
}

/// Fails every outstanding request and refuses new ones.
fn fail_all(pending: &Pending, addr: &str, reason: &LostReason) {
    let drained = pending.lock().map(|mut p| p.take()).unwrap_or(None);
    for (_, reply) in drained.into_iter().flatten() {
        let _ = reply.send(Err(SourceError::ConnectionLost {
            addr: addr.to_string(),
            reason: reason.clone(),
        }));
    }
}

async fn write_loop(
    mut write: WriteHalf<BoxStream>,
    mut rx: mpsc::Receiver<(i32, Bytes, Reply)>,
    pending: Pending,
    addr: String,
) {
    while let Some((correlation_id, frame, reply)) = rx.recv().await {
        {
            let mut guard = match pending.lock() {
                Ok(g) => g,
                Err(_) => break,
            };
            let Some(map) = guard.as_mut() else {
                let _ = reply.send(Err(SourceError::ConnectionLost {
                    addr: addr.clone(),
                    reason: LostReason::Closed,
                }));
                break;
            };
            map.insert(correlation_id, reply);
        }
        if let Err(e) = write.write_all(&frame).await {
            fail_all(&pending, &addr, &LostReason::Write(Arc::new(e)));
            break;
        }
    }
    rx.close();
    // Every handle is gone (or writing failed): closing the sending side lets the
    // broker close too, which ends the reader, instead of the socket idling open.
    let _ = write.shutdown().await;
}

/// The reading side of a connection: routes response frames to their callers.
struct Reader {
    pending: Pending,
    addr: String,
    closed: Arc<AtomicBool>,
    abandon: Arc<Notify>,
}

impl Reader {
    /// Responses are received into reused buffers: a fetch response's record sets are
    /// handed on as slices of the buffer it was read into, and the buffer takes a later
    /// response once they are written, so no response costs freshly zeroed pages.
    async fn run(self, mut read: ReadHalf<BoxStream>) {
        let mut buf = ReceiveBuffer::new(DEFAULT_MAX_FRAME_BYTES);
        let reason = loop {
            match buf.next_frame() {
                Ok(Some(frame)) => {
                    if let Err(reason) = deliver(&self.pending, frame) {
                        break reason;
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => break LostReason::Frame(e),
            }
            let mut target = match buf.read_buf() {
                Ok(target) => target,
                Err(e) => break LostReason::Frame(e),
            };
            let read = tokio::select! {
                read = read.read_buf(&mut target) => read,
                _ = self.abandon.notified() => break LostReason::Abandoned,
            };
            match read {
                Ok(0) => break LostReason::ClosedByBroker,
                Ok(_) => {}
                Err(e) => break LostReason::Read(Arc::new(e)),
            }
        };
        self.closed.store(true, Ordering::Release);
        tracing::debug!(broker = %self.addr, %reason, "source connection closed");
        fail_all(&self.pending, &self.addr, &reason);
    }
}

fn deliver(pending: &Pending, frame: Bytes) -> Result<(), LostReason> {
    let Some(id) = frame.get(..4) else {
        return Err(LostReason::ShortFrame);
    };
    let correlation_id = i32::from_be_bytes([id[0], id[1], id[2], id[3]]);
    let reply = pending
        .lock()
        .ok()
        .and_then(|mut p| p.as_mut().and_then(|m| m.remove(&correlation_id)));
    match reply {
        Some(reply) => {
            let _ = reply.send(Ok(frame));
            Ok(())
        }
        None => Err(LostReason::UnknownCorrelationId(correlation_id)),
    }
}
