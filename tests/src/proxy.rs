//! A fault-injecting TCP proxy: what a long network path does to a connection, on cue.
//!
//! The proxy forwards every connection it accepts to one upstream address, and the test
//! changes its [`Faults`] while traffic flows: latency and jitter, a bandwidth cap,
//! connections reset in the middle of a response, a black hole (nothing forwarded, no
//! FIN, no RST, as a partitioned network looks to both ends), refused connections, and a
//! byte flipped in what the server sends. It runs on its own tokio runtime, so blocking
//! tests drive it from plain threads.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::watch;

/// Where to flip a byte of the server→client stream, once: the first connection to
/// carry it has that byte inverted, and the fault disarms itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Flip {
    /// The byte at this position of a connection's server→client stream (0 is the first
    /// byte the server sends on it).
    At(u64),
    /// The first byte of the first occurrence of this pattern within one read: a test
    /// aims at a record value it wrote, without knowing the framing around it.
    Pattern(Vec<u8>),
}

/// The faults in force. The default forwards everything at once and untouched.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Added before each chunk is forwarded, in both directions.
    pub latency: Duration,
    /// Up to this much more, drawn per chunk.
    pub jitter: Duration,
    /// Bytes per second per direction of each connection; `None` is unlimited.
    pub bandwidth: Option<u64>,
    /// Reset (RST) each connection once this many server→client bytes have passed it,
    /// cutting the chunk that crosses the mark, so the client sees a response break off.
    pub reset_after: Option<u64>,
    /// Forward nothing and keep every socket open: bytes wait in the kernel's buffers
    /// and flow again when the hole closes, as after a healed partition.
    pub black_hole: bool,
    /// Reset every new connection as soon as it is accepted.
    pub refuse: bool,
    pub flip: Option<Flip>,
}

struct Control {
    faults: watch::Sender<Faults>,
    /// Bumped to reset every open connection.
    resets: watch::Sender<u64>,
    accepted: AtomicU64,
    cut: AtomicU64,
    flipped: AtomicU64,
    rng: Mutex<u64>,
}

impl Control {
    fn faults(&self) -> Faults {
        self.faults.borrow().clone()
    }

    /// A pseudo-random duration below `max` (splitmix64; no cryptography needed).
    fn jitter(&self, max: Duration) -> Duration {
        if max.is_zero() {
            return Duration::ZERO;
        }
        let mut state = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        max.mul_f64((z >> 11) as f64 / (1u64 << 53) as f64)
    }
}

/// A running proxy; dropping it stops the runtime and closes every connection.
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    control: Arc<Control>,
    _runtime: Runtime,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream`, which need not be
    /// listening yet: each accepted connection dials it anew.
    pub fn start(upstream: SocketAddr) -> Result<Proxy> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("a runtime for the proxy")?;
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        let control = Arc::new(Control {
            faults: watch::channel(Faults::default()).0,
            resets: watch::channel(0).0,
            accepted: AtomicU64::new(0),
            cut: AtomicU64::new(0),
            flipped: AtomicU64::new(0),
            rng: Mutex::new(u64::from(addr.port())),
        });
        runtime.spawn(accept_loop(listener, upstream, control.clone()));
        Ok(Proxy {
            addr,
            control,
            _runtime: runtime,
        })
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        self.control.faults()
    }

    /// Replaces the faults in force; open connections follow from their next chunk.
    pub fn set(&self, faults: Faults) {
        self.control.faults.send_replace(faults);
    }

    /// Changes some of the faults in force.
    pub fn update(&self, change: impl FnOnce(&mut Faults)) {
        self.control.faults.send_modify(change);
    }

    /// Back to forwarding everything untouched.
    pub fn heal(&self) {
        self.set(Faults::default());
    }

    /// Resets every open connection now.
    pub fn reset_all(&self) {
        self.control.resets.send_modify(|n| *n += 1);
    }

    /// Connections accepted so far, refused ones included.
    pub fn accepted(&self) -> u64 {
        self.control.accepted.load(Ordering::Relaxed)
    }

    /// Connections reset in the middle of a response so far ([`Faults::reset_after`]).
    pub fn cut(&self) -> u64 {
        self.control.cut.load(Ordering::Relaxed)
    }

    /// Bytes flipped so far.
    pub fn flipped(&self) -> u64 {
        self.control.flipped.load(Ordering::Relaxed)
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, control: Arc<Control>) {
    while let Ok((client, _)) = listener.accept().await {
        control.accepted.fetch_add(1, Ordering::Relaxed);
        // SO_LINGER 0: closing sends RST, never FIN, so every cut is abrupt.
        let _ = client.set_zero_linger();
        if control.faults().refuse {
            drop(client);
            continue;
        }
        tokio::spawn(serve(client, upstream, control.clone()));
    }
}

/// Which way a pump forwards.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    ClientToServer,
    ServerToClient,
}

async fn serve(client: TcpStream, upstream: SocketAddr, control: Arc<Control>) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = server.set_zero_linger();
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    // Halves from `tokio::io::split` do not shut down on drop: the sockets close once,
    // with RST, when the connection ends for any reason.
    let (client_read, client_write) = tokio::io::split(client);
    let (server_read, server_write) = tokio::io::split(server);
    let mut resets = control.resets.subscribe();
    let up = pump(
        client_read,
        server_write,
        Direction::ClientToServer,
        &control,
    );
    let down = pump(
        server_read,
        client_write,
        Direction::ServerToClient,
        &control,
    );
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = resets.changed() => {}
    }
}

/// Forwards one direction until either side closes or a fault cuts the connection.
async fn pump(
    mut from: ReadHalf<TcpStream>,
    mut to: WriteHalf<TcpStream>,
    direction: Direction,
    control: &Control,
) {
    let mut faults = control.faults.subscribe();
    let mut buf = vec![0u8; 16 * 1024];
    let mut position: u64 = 0;
    loop {
        if wait_while_black_holed(&mut faults).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let chunk = &mut buf[..n];
        if wait_while_black_holed(&mut faults).await.is_err() {
            return;
        }
        let now = control.faults();
        let delay = now.latency + control.jitter(now.jitter);
        let paced = now
            .bandwidth
            .map(|rate| Duration::from_secs_f64(n as f64 / rate.max(1) as f64))
            .unwrap_or_default();
        if !(delay + paced).is_zero() {
            tokio::time::sleep(delay + paced).await;
        }
        let mut send = n;
        let mut cut = false;
        if direction == Direction::ServerToClient {
            flip(control, chunk, position);
            if let Some(limit) = now.reset_after {
                if position + n as u64 >= limit {
                    send = limit.saturating_sub(position).min(n as u64 - 1) as usize;
                    cut = true;
                }
            }
        }
        if to.write_all(&chunk[..send]).await.is_err() {
            return;
        }
        position += send as u64;
        if cut {
            let _ = to.flush().await;
            control.cut.fetch_add(1, Ordering::Relaxed);
            return;
        }
    }
}

/// Returns once the black hole is closed; an error when the proxy is gone.
async fn wait_while_black_holed(faults: &mut watch::Receiver<Faults>) -> Result<(), ()> {
    faults
        .wait_for(|f| !f.black_hole)
        .await
        .map(|_| ())
        .map_err(|_| ())
}

/// Applies an armed [`Flip`] to `chunk`, which starts at `position` of its stream.
fn flip(control: &Control, chunk: &mut [u8], position: u64) {
    let mut hit = false;
    control.faults.send_if_modified(|f| {
        let at = match &f.flip {
            Some(Flip::At(at)) if (position..position + chunk.len() as u64).contains(at) => {
                Some((at - position) as usize)
            }
            Some(Flip::Pattern(p)) if !p.is_empty() => {
                chunk.windows(p.len()).position(|w| w == p.as_slice())
            }
            _ => None,
        };
        let Some(i) = at else {
            return false;
        };
        chunk[i] ^= 0xff;
        f.flip = None;
        hit = true;
        true
    });
    if hit {
        control.flipped.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream as StdStream;
    use std::time::Instant;

    use super::*;

    /// A server that sends `payload` to every connection, then waits for the client.
    fn server(payload: Vec<u8>) -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let payload = payload.clone();
                std::thread::spawn(move || {
                    let _ = stream.write_all(&payload);
                    let mut rest = Vec::new();
                    let _ = stream.read_to_end(&mut rest);
                });
            }
        });
        addr
    }

    fn read_some(addr: SocketAddr, want: usize) -> std::io::Result<Vec<u8>> {
        let mut stream = StdStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut got = vec![0; want];
        stream.read_exact(&mut got)?;
        Ok(got)
    }

    fn payload() -> Vec<u8> {
        (0..100_000u32).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn forwards_untouched_by_default_and_flips_one_byte_when_armed() {
        let data = payload();
        let proxy = Proxy::start(server(data.clone())).unwrap();
        assert_eq!(read_some(proxy.addr, data.len()).unwrap(), data);
        proxy.update(|f| f.flip = Some(Flip::At(70_000)));
        let got = read_some(proxy.addr, data.len()).unwrap();
        let differ: Vec<usize> = (0..data.len()).filter(|&i| got[i] != data[i]).collect();
        assert_eq!(differ, vec![70_000]);
        assert_eq!(got[70_000], !data[70_000]);
        // One shot: the next connection is clean again.
        assert_eq!(read_some(proxy.addr, data.len()).unwrap(), data);
        assert_eq!(proxy.flipped(), 1);
    }

    #[test]
    fn resets_mid_stream_and_refuses_when_told() {
        let data = payload();
        let proxy = Proxy::start(server(data.clone())).unwrap();
        proxy.update(|f| f.reset_after = Some(1000));
        let mut stream = StdStream::connect(proxy.addr).unwrap();
        let mut got = Vec::new();
        let error = stream.read_to_end(&mut got).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset);
        assert!(got.len() <= 1000 && data.starts_with(&got));
        assert_eq!(proxy.cut(), 1);
        proxy.set(Faults {
            refuse: true,
            ..Faults::default()
        });
        assert!(read_some(proxy.addr, 1).is_err());
    }

    #[test]
    fn a_black_hole_holds_bytes_until_it_closes() {
        let data = payload();
        let proxy = Proxy::start(server(data.clone())).unwrap();
        proxy.update(|f| f.black_hole = true);
        let mut stream = StdStream::connect(proxy.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut one = [0u8; 1];
        let silent = stream.read(&mut one).unwrap_err();
        assert!(matches!(
            silent.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ));
        proxy.heal();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut got = vec![0; data.len()];
        stream.read_exact(&mut got).unwrap();
        assert_eq!(got, data);
    }

    #[test]
    fn latency_and_bandwidth_slow_the_stream() {
        let data = payload();
        let proxy = Proxy::start(server(data.clone())).unwrap();
        proxy.update(|f| {
            f.latency = Duration::from_millis(50);
            f.bandwidth = Some(200_000);
        });
        let started = Instant::now();
        assert_eq!(read_some(proxy.addr, data.len()).unwrap(), data);
        // 100 kB at 200 kB/s is half a second, plus 50 ms per chunk.
        assert!(started.elapsed() >= Duration::from_millis(500));
    }
}
