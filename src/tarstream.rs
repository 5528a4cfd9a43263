//! A tar stream made on a thread of its own and sent to the engine as it is made (`cp`
//! into a container, `watch`'s syncs), so that a large tree is never held in memory.

use bytes::Bytes;
use std::io::Write;
use tokio::sync::mpsc;

/// What the tar builder writes into: 64 KiB chunks handed to the request body.
pub struct ChunkWriter {
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
}

const CHUNK: usize = 64 * 1024;

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the engine stopped reading"))
    }
}

/// A stream's chunks, and the thread making them.
pub type Stream = (mpsc::Receiver<Bytes>, std::thread::JoinHandle<std::io::Result<()>>);

/// Runs `build` on a new thread with a tar builder; returns the stream of its output
/// and the thread, whose result says whether the stream was made whole.
pub fn spawn(build: impl FnOnce(&mut tar::Builder<ChunkWriter>) -> std::io::Result<()> + Send + 'static) -> Stream {
    let (tx, rx) = mpsc::channel(8);
    let worker = std::thread::spawn(move || {
        let mut b = tar::Builder::new(ChunkWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        });
        build(&mut b)?;
        let mut w = b.into_inner()?;
        w.flush()
    });
    (rx, worker)
}

/// A stream already made (`cp - SERVICE:PATH` reads one from standard input), passed on
/// as it is read.
pub fn spawn_copy(mut from: impl std::io::Read + Send + 'static) -> Stream {
    let (tx, rx) = mpsc::channel(8);
    let worker = std::thread::spawn(move || {
        let mut w = ChunkWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        };
        std::io::copy(&mut from, &mut w)?;
        w.flush()
    });
    (rx, worker)
}

/// Waits for the builder thread (after its stream was sent).
pub async fn finish(worker: std::thread::JoinHandle<std::io::Result<()>>) -> anyhow::Result<()> {
    match tokio::task::spawn_blocking(move || worker.join()).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(e))) => Err(anyhow::anyhow!("{e}")),
        _ => Err(anyhow::anyhow!("the archive could not be made")),
    }
}

/// The other way (`cp SERVICE:PATH DEST`): a response body's chunks read on a thread of
/// its own as a `Read`, so that the archive is unpacked as it arrives and never held.
pub struct ChunkReader {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
    cur: Bytes,
}

impl ChunkReader {
    pub fn new(rx: mpsc::Receiver<std::io::Result<Bytes>>) -> ChunkReader {
        ChunkReader { rx, cur: Bytes::new() }
    }
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.cur = chunk?,
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len());
        out[..n].copy_from_slice(&self.cur.split_to(n));
        Ok(n)
    }
}
