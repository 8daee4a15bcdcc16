//! The node-wide budget for request bytes held in memory (Kafka's
//! `queued.max.request.bytes`).
//!
//! Every connection's read buffer is covered by a [`Reservation`] taken before the
//! buffer grows; once the budget is spent, connections wait to read instead of
//! allocating. Buffers grow with the bytes that arrived, never to the size a frame
//! claims, so idle or stalled clients hold next to nothing of it.

use std::sync::Arc;

use bytes::BytesMut;
use shadowlink_protocol::frame::{frame_len, split_frame, FrameError, SIZE_PREFIX_LEN};
use tokio::sync::Semaphore;

/// The buffer a connection starts reading into: most requests (Metadata, Fetch,
/// heartbeats) fit, and 10,000 idle connections hold 10 MiB of the budget.
const FIRST_READ: usize = 1024;

/// Bytes of request buffers the node may hold at once.
#[derive(Clone)]
pub struct RequestBudget {
    bytes: Arc<Semaphore>,
}

impl RequestBudget {
    pub fn new(bytes: usize) -> RequestBudget {
        crate::metrics::request_budget(bytes);
        RequestBudget {
            bytes: Arc::new(Semaphore::new(bytes.min(Semaphore::MAX_PERMITS))),
        }
    }

    /// A reservation of nothing yet.
    pub fn empty(&self) -> Reservation {
        Reservation {
            budget: self.bytes.clone(),
            bytes: 0,
        }
    }
}

/// Bytes held against the budget, given back when dropped.
pub struct Reservation {
    budget: Arc<Semaphore>,
    bytes: usize,
}

impl Reservation {
    /// Holds `more` bytes more, waiting while the budget lacks them. Waiters are served
    /// in order, so a large request is not starved by a stream of small ones.
    async fn grow(&mut self, more: usize) {
        let mut left = more;
        while left > 0 {
            let step = u32::try_from(left).unwrap_or(u32::MAX);
            // The semaphore is never closed, so acquiring fails only if that changes.
            let Ok(permit) = self.budget.acquire_many(step).await else {
                return;
            };
            permit.forget();
            self.bytes += step as usize;
            left -= step as usize;
            crate::metrics::request_bytes_reserved().add(i64::from(step));
        }
    }

    /// Gives back all but `keep` bytes.
    fn shrink_to(&mut self, keep: usize) {
        let freed = self.bytes.saturating_sub(keep);
        if freed > 0 {
            self.budget.add_permits(freed);
            self.bytes -= freed;
            crate::metrics::request_bytes_reserved().sub(freed as i64);
        }
    }

    /// Moves `bytes` of this reservation into a new one.
    fn split(&mut self, bytes: usize) -> Reservation {
        let bytes = bytes.min(self.bytes);
        self.bytes -= bytes;
        Reservation {
            budget: self.budget.clone(),
            bytes,
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.shrink_to(0);
    }
}

/// A connection's read buffer, its capacity always covered by its reservation.
pub struct FrameBuffer {
    buf: BytesMut,
    reserved: Reservation,
    max_frame_bytes: usize,
}

impl FrameBuffer {
    pub fn new(budget: &RequestBudget, max_frame_bytes: usize) -> FrameBuffer {
        FrameBuffer {
            buf: BytesMut::new(),
            reserved: budget.empty(),
            max_frame_bytes,
        }
    }

    /// Lowers or restores the largest frame accepted: a listener with SASL takes only
    /// small frames before the client has authenticated.
    pub fn set_max_frame_bytes(&mut self, max_frame_bytes: usize) {
        self.max_frame_bytes = max_frame_bytes;
    }

    /// The next complete frame, with the reservation of its bytes: they stay counted
    /// until the caller has answered the request and drops both.
    pub fn split(&mut self) -> Result<Option<(bytes::Bytes, Reservation)>, FrameError> {
        match frame_len(&self.buf, self.max_frame_bytes)? {
            Some(total) if self.buf.len() >= total => {}
            _ => return Ok(None),
        }
        let Some(frame) = split_frame(&mut self.buf, self.max_frame_bytes)? else {
            return Ok(None);
        };
        let held = self.reserved.bytes.saturating_sub(self.buf.capacity());
        Ok(Some((frame, self.reserved.split(held))))
    }

    /// Makes room for the next read, reserving it first: up to the end of the frame
    /// under way, doubling what is buffered at most, so memory follows the bytes that
    /// arrived and not the size the frame claims.
    pub async fn make_room(&mut self) -> Result<&mut BytesMut, FrameError> {
        if self.buf.capacity() > self.buf.len() {
            return Ok(&mut self.buf);
        }
        let len = self.buf.len();
        let needed = match frame_len(&self.buf, self.max_frame_bytes)? {
            Some(total) => total - len,
            None => SIZE_PREFIX_LEN - len,
        };
        let grow = if len == 0 {
            FIRST_READ
        } else {
            needed.min(len.max(FIRST_READ))
        };
        let capacity = len + grow;
        self.reserved
            .grow(capacity.saturating_sub(self.reserved.bytes))
            .await;
        // An exact allocation, the buffered bytes copied once: `BytesMut::reserve` may
        // allocate more than asked, beyond what was reserved.
        let mut grown = BytesMut::with_capacity(capacity);
        grown.extend_from_slice(&self.buf);
        self.buf = grown;
        Ok(&mut self.buf)
    }

    /// Whether no byte of a next frame has arrived.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Gives the buffer and its reservation back while nothing is buffered, so an idle
    /// connection holds no budget.
    pub fn release_if_empty(&mut self) {
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
            self.reserved.shrink_to(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_claimed_frame_is_buffered_as_it_arrives_and_released_when_answered() {
        let budget = RequestBudget::new(1 << 20);
        let mut buf = FrameBuffer::new(&budget, 1 << 30);
        let room = buf.make_room().await.unwrap();
        assert_eq!(room.capacity(), FIRST_READ);
        room.extend_from_slice(&(100u32 << 20).to_be_bytes());
        room.extend_from_slice(&[7; 16]);
        // A 100 MiB claim grows the buffer by what arrived, not by the claim.
        assert!(buf.split().unwrap().is_none());
        assert_eq!(buf.reserved.bytes, FIRST_READ);
        let mut small = FrameBuffer::new(&budget, 1 << 30);
        let room = small.make_room().await.unwrap();
        room.extend_from_slice(&[0, 0, 0, 3, 1, 2, 3, 0, 0]);
        let (frame, held) = small.split().unwrap().unwrap();
        assert_eq!(&frame[..], &[1, 2, 3]);
        assert_eq!(held.bytes + small.reserved.bytes, FIRST_READ);
        drop((frame, held));
        assert!(!small.is_empty());
        small.release_if_empty();
        assert_eq!(small.reserved.bytes, FIRST_READ - 7);
    }

    #[tokio::test]
    async fn growth_doubles_up_to_the_frame_end() {
        let budget = RequestBudget::new(1 << 20);
        let mut buf = FrameBuffer::new(&budget, 1 << 20);
        let mut capacities = Vec::new();
        let total = 10_000;
        while buf.buf.len() < total {
            let room = buf.make_room().await.unwrap();
            capacities.push(room.capacity());
            let fill = room.capacity() - room.len();
            let mut bytes = vec![0u8; fill];
            if room.is_empty() {
                bytes[..4].copy_from_slice(&(total as u32 - 4).to_be_bytes());
            }
            room.extend_from_slice(&bytes);
        }
        assert_eq!(capacities, [1024, 2048, 4096, 8192, 10_000]);
        assert_eq!(buf.reserved.bytes, total);
        assert!(buf.split().unwrap().is_some());
    }

    #[tokio::test]
    async fn over_budget_a_read_waits_until_bytes_are_given_back() {
        let budget = RequestBudget::new(1536);
        let mut first = FrameBuffer::new(&budget, 1 << 20);
        first.make_room().await.unwrap();
        let mut second = FrameBuffer::new(&budget, 1 << 20);
        let waiting = tokio::time::timeout(Duration::from_millis(50), second.make_room()).await;
        assert!(
            waiting.is_err(),
            "the second buffer was allocated over budget"
        );
        assert_eq!(budget.bytes.available_permits(), 512);
        first.release_if_empty();
        assert_eq!(second.make_room().await.unwrap().capacity(), FIRST_READ);
        drop(second);
        assert_eq!(budget.bytes.available_permits(), 1536);
    }
}
