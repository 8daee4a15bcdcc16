//! What one machine allows for a node → node mirror, without any protocol: the bytes of a
//! file in the page cache sent over loopback TCP by one thread and written to a new file
//! by another, beside a plain sequential write of the same bytes, in the same run and the
//! same memory state.
//!
//! - `plain_write`: 1 MiB `pwrite`s of one hot buffer to a new file (the baseline the
//!   mirror goals are stated against).
//! - `copy`: the shape a node has. The sender writes from memory (a node serves Fetch
//!   from mapped segments), the receiver `read`s into a buffer, checks CRC-32C and
//!   `write`s it to the file: one copy on the sending side, two on the receiving one.
//! - `sendfile_copy`: the same receiver behind a `sendfile` sender, which tells how much
//!   of `copy`'s cost is the sending side's.
//! - `zero_copy`: the kernel's best. The sender `sendfile`s, the receiver `splice`s the
//!   socket through a pipe into the file, checking nothing: one copy in all, into the
//!   page cache.
//!
//! On a virtual machine whose balloon reports free pages to the host, memory freed a few
//! seconds ago must be faulted in from the host again, and a page-cache write slows by
//! up to five times. So each variant runs in two states: `warm`, right after writing and
//! deleting a scratch file a quarter larger than the bytes (the pages it freed are still
//! the guest's), and `cold`, after the same write and delete and a pause long enough for
//! the freed pages to be reported.
//!
//! `cargo run --release -p shadowlink-benches --bin transfer_bound -- [--mib 1024]
//! [--rounds 3] [--dir /tmp]`

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use rustix::pipe::SpliceFlags;
use shadowlink_benches::{free_recently, load_average, print_command_and_machine};

const CHUNK: usize = 1 << 20;
/// Longer than the kernel's page-reporting delay (two seconds).
const COLD_PAUSE: Duration = Duration::from_secs(4);

#[derive(clap::Parser)]
struct Args {
    /// Bytes moved by each variant, in MiB.
    #[arg(long, default_value_t = 1024)]
    mib: usize,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Where the files go (the same file system as a node's data directory).
    #[arg(long, default_value = "/tmp")]
    dir: PathBuf,
}

#[derive(Clone, Copy, PartialEq)]
enum Variant {
    PlainWrite,
    Copy,
    SendfileCopy,
    ZeroCopy,
}

impl Variant {
    /// The sender `sendfile`s from the page cache rather than writing from memory.
    fn sends_file(self) -> bool {
        matches!(self, Variant::SendfileCopy | Variant::ZeroCopy)
    }
}

/// In the order of the table's columns.
const VARIANTS: [Variant; 4] = [
    Variant::PlainWrite,
    Variant::Copy,
    Variant::SendfileCopy,
    Variant::ZeroCopy,
];

fn main() -> Result<()> {
    let args: Args = clap::Parser::parse();
    print_command_and_machine();
    let dir = tempfile::tempdir_in(&args.dir)?;
    let bytes = args.mib * CHUNK;
    let source = source_file(dir.path(), bytes)?;
    println!("| round | memory | plain_write | copy | ratio | sendfile_copy | ratio | zero_copy | ratio | load |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for round in 1..=args.rounds {
        for (state, pause) in [("warm", None), ("cold", Some(COLD_PAUSE))] {
            let mut rates = Vec::new();
            for variant in VARIANTS {
                free_recently(dir.path(), bytes as u64)?;
                if let Some(pause) = pause {
                    std::thread::sleep(pause);
                }
                let took = run(variant, dir.path(), &source, bytes)?;
                rates.push(bytes as f64 / took.as_secs_f64());
            }
            let plain = rates[0];
            let mut row = format!("| {round} | {state} | {:.2} GB/s |", plain / 1e9);
            for rate in &rates[1..] {
                row += &format!(" {:.2} GB/s | {:.2} |", rate / 1e9, rate / plain);
            }
            println!("{row} {} |", load_average());
        }
    }
    Ok(())
}

/// A file of `bytes` in the page cache, read once so that it is.
fn source_file(dir: &Path, bytes: usize) -> Result<PathBuf> {
    let path = dir.join("source");
    let chunk: Vec<u8> = (0..CHUNK).map(|i| (i * 7 + i / 251) as u8).collect();
    let file = File::create(&path)?;
    for at in (0..bytes).step_by(CHUNK) {
        file.write_all_at(&chunk, at as u64)?;
    }
    let mut sink = vec![0u8; CHUNK];
    let mut file = File::open(&path)?;
    while file.read(&mut sink)? > 0 {}
    Ok(path)
}

fn run(variant: Variant, dir: &Path, source: &Path, bytes: usize) -> Result<Duration> {
    match variant {
        Variant::PlainWrite => plain_write(dir, bytes),
        _ => transfer(variant, dir, source, bytes),
    }
}

fn plain_write(dir: &Path, bytes: usize) -> Result<Duration> {
    let path = dir.join("plain");
    let chunk = vec![0x5au8; CHUNK];
    let file = File::create(&path)?;
    let started = Instant::now();
    for at in (0..bytes).step_by(CHUNK) {
        file.write_all_at(&chunk, at as u64)?;
    }
    let took = started.elapsed();
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(took)
}

/// Moves the source file over loopback into a new file; timed from the receiver's
/// first read to its last write.
fn transfer(variant: Variant, dir: &Path, source: &Path, bytes: usize) -> Result<Duration> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let file = File::open(source)?;
    let in_memory = match variant.sends_file() {
        true => Vec::new(),
        false => std::fs::read(source)?,
    };
    let sender = std::thread::spawn(move || -> Result<()> {
        let socket = TcpStream::connect(addr)?;
        match variant.sends_file() {
            true => send_file(&socket, &file, bytes),
            false => send_from_memory(socket, &in_memory),
        }
    });
    let (socket, _) = listener.accept()?;
    let path = dir.join("mirror");
    let out = File::create(&path)?;
    let started = Instant::now();
    match variant {
        Variant::ZeroCopy => receive_spliced(&socket, &out, bytes)?,
        _ => receive_copied(socket, &out, bytes)?,
    }
    let took = started.elapsed();
    sender.join().expect("the sender does not panic")?;
    drop(out);
    std::fs::remove_file(&path)?;
    Ok(took)
}

fn send_from_memory(mut socket: TcpStream, data: &[u8]) -> Result<()> {
    for chunk in data.chunks(CHUNK) {
        socket.write_all(chunk)?;
    }
    Ok(())
}

fn send_file(socket: &TcpStream, file: &File, bytes: usize) -> Result<()> {
    let mut offset = 0u64;
    while (offset as usize) < bytes {
        let left = bytes - offset as usize;
        let n = rustix::fs::sendfile(socket, file, Some(&mut offset), left.min(CHUNK))?;
        ensure!(n > 0, "sendfile sent nothing");
    }
    Ok(())
}

fn receive_copied(mut socket: TcpStream, out: &File, bytes: usize) -> Result<()> {
    let mut buffer = vec![0u8; CHUNK];
    let (mut got, mut crc) = (0, 0u32);
    while got < bytes {
        let n = socket.read(&mut buffer)?;
        ensure!(n > 0, "the sender closed early");
        crc ^= shadowlink_protocol::batch::crc32c(&buffer[..n]);
        (&*out).write_all(&buffer[..n])?;
        got += n;
    }
    std::hint::black_box(crc);
    Ok(())
}

fn receive_spliced(socket: &TcpStream, out: &File, bytes: usize) -> Result<()> {
    let (from_pipe, to_pipe) = rustix::pipe::pipe()?;
    // A bigger pipe moves more per splice.
    rustix::pipe::fcntl_setpipe_size(&to_pipe, CHUNK)?;
    let splice = |from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize| -> Result<usize> {
        let n = rustix::pipe::splice(from, None, to, None, len, SpliceFlags::MOVE)?;
        ensure!(n > 0, "splice moved nothing: the sender closed early");
        Ok(n)
    };
    let mut got = 0;
    while got < bytes {
        let mut in_pipe = splice(socket.as_fd(), to_pipe.as_fd(), CHUNK.min(bytes - got))?;
        got += in_pipe;
        while in_pipe > 0 {
            in_pipe -= splice(from_pipe.as_fd(), out.as_fd(), in_pipe)?;
        }
    }
    Ok(())
}
