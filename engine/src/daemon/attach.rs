//! `attach` through the API: the client's upgraded connection joined to the attach
//! socket that the container's init serves (see `runtime::attach`). Both sides speak
//! `api::frames`, so frames pass through as they are. When the init closes the socket
//! (the workload has ended), the container's exit code follows as the last frame, once
//! its exit is recorded; when the client goes (detach keys), the attachment ends.

use super::{Ctr, Engine};
use crate::api::frames;
use runtime::attach::{path_in, SOCKET};
use std::os::unix::io::AsRawFd;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// Why an attachment cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// Docker's words for attaching to a container that does not run.
    #[error("You cannot attach to a stopped container, start it first")]
    NotRunning,
    #[error("{}: {source}", .dir.display())]
    Dir {
        dir: std::path::PathBuf,
        source: std::io::Error,
    },
}

impl Engine {
    /// Connects to the container's attach socket; an error when it does not run.
    pub async fn attach_connect(&self, ctr: &Ctr) -> Result<UnixStream, AttachError> {
        if ctr.live().is_none() {
            return Err(AttachError::NotRunning);
        }
        // Through a descriptor of its directory: a socket's path must fit 108 bytes.
        let dir = std::fs::File::open(&ctr.dir).map_err(|source| AttachError::Dir {
            dir: ctr.dir.clone(),
            source,
        })?;
        let sock = UnixStream::connect(path_in(dir.as_raw_fd(), SOCKET)).await;
        drop(dir);
        sock.map_err(|_| AttachError::NotRunning)
    }

    /// Carries an attachment on the upgraded connection `io` until the workload ends or
    /// the client goes. `restarts` is the container's restart count from before the
    /// socket was connected, when it was running.
    pub async fn attach_stream<IO>(self: Arc<Self>, ctr: Arc<Ctr>, sock: UnixStream, restarts: u32, io: IO)
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let (mut crd, mut cwr) = tokio::io::split(io);
        let (mut srd, mut swr) = sock.into_split();
        // Ends when the client does; input the init no longer takes (it has closed the
        // socket as the workload ended) is dropped, while the exit code is awaited.
        let input = async {
            let mut buf = vec![0u8; 16 * 1024];
            let mut open = true;
            loop {
                match crd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if open && swr.write_all(&buf[..n]).await.is_err() {
                            open = false;
                        }
                    }
                }
            }
        };
        let output = async {
            let _ = tokio::io::copy(&mut srd, &mut cwr).await;
            let code = self.exit_after(&ctr, restarts).await;
            let _ = frames::write(&mut cwr, frames::EXIT, &code.to_be_bytes()).await;
            let _ = cwr.shutdown().await;
        };
        tokio::select! {
            _ = output => {}
            _ = input => tracing::debug!("attach: the client has gone"),
        }
    }

    /// The exit code of the running container's next exit, once recorded (a start
    /// clears `finished_at`; a restart by policy counts).
    async fn exit_after(&self, ctr: &Ctr, restarts: u32) -> i32 {
        let mut changes = self.watch_changes();
        loop {
            let rec = ctr.rec();
            if rec.finished_at.is_some() || rec.restart_count != restarts {
                return rec.exit_code.unwrap_or(0);
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), changes.changed()).await;
        }
    }
}
