//! The CLI's side of the engine API: HTTP/1.1 over the engine's Unix socket (hyper's
//! client), and starting the engine on demand when no engine answers.

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use engine::api::{ApiError, ErrorKind};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct Client {
    socket: PathBuf,
}

/// A streamed response, read line by line.
pub struct Lines {
    body: Incoming,
    buf: Vec<u8>,
    done: bool,
}

impl Lines {
    /// The next line of newline-delimited JSON, decoded; `None` at the end.
    pub async fn next<T: serde::de::DeserializeOwned>(&mut self) -> Result<Option<T>> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                if line.iter().all(|b| b.is_ascii_whitespace()) {
                    continue;
                }
                return Ok(Some(
                    serde_json::from_slice(&line).context("the engine sent a line that is not JSON")?,
                ));
            }
            if self.done {
                return Ok(None);
            }
            match self.body.frame().await {
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        self.buf.extend_from_slice(&d);
                    }
                }
                Some(Err(e)) => bail!("reading from the engine: {e}"),
                None => {
                    self.done = true;
                    if !self.buf.is_empty() {
                        self.buf.push(b'\n');
                    }
                }
            }
        }
    }
}

impl Client {
    async fn send(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Response<Incoming>> {
        self.request(method, path, body, false).await
    }

    /// One request on a connection of its own (which may be upgraded afterwards); an
    /// answer other than success (or `101` when `upgrade`) is the engine's message.
    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        upgrade: bool,
    ) -> Result<Response<Incoming>> {
        let body = Full::new(Bytes::from(body.unwrap_or_default()))
            .map_err(|never| match never {})
            .boxed();
        self.request_body(method, path, body, upgrade).await
    }

    async fn request_body(
        &self,
        method: Method,
        path: &str,
        body: BoxBody<Bytes, std::io::Error>,
        upgrade: bool,
    ) -> Result<Response<Incoming>> {
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .with_context(|| format!("connecting to the engine at {}", self.socket.display()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .context("talking to the engine")?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://rcompose{path}"))
            .header("host", "rcompose")
            .header("content-type", "application/json");
        if upgrade {
            req = req.header("connection", "upgrade").header("upgrade", "rcompose-exec");
        }
        let req = req.body(body)?;
        let resp = sender.send_request(req).await.context("talking to the engine")?;
        let ok = if upgrade {
            resp.status() == hyper::StatusCode::SWITCHING_PROTOCOLS
        } else {
            resp.status().is_success()
        };
        if !ok {
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let err = serde_json::from_slice::<ApiError>(&body).unwrap_or_else(|_| ApiError {
                kind: ErrorKind::Internal,
                message: format!("the engine answered {status}"),
            });
            return Err(err.into());
        }
        Ok(resp)
    }

    pub async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        let resp = self.send(Method::GET, path, None).await?;
        let body = resp.into_body().collect().await?.to_bytes();
        serde_json::from_slice(&body).context("the engine's answer is not what was expected")
    }

    pub async fn stream(&self, method: Method, path: &str, body: Option<&impl serde::Serialize>) -> Result<Lines> {
        let body = body.map(serde_json::to_vec).transpose()?;
        let resp = self.send(method, path, body).await?;
        Ok(Lines {
            body: resp.into_body(),
            buf: Vec::new(),
            done: false,
        })
    }

    /// A request answered `101 Switching Protocols`: the raw connection afterwards.
    pub async fn upgrade(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>> {
        let resp = self
            .request(Method::POST, path, Some(serde_json::to_vec(body)?), true)
            .await?;
        let up = hyper::upgrade::on(resp).await.context("upgrading the connection")?;
        Ok(hyper_util::rt::TokioIo::new(up))
    }

    pub async fn post_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<T> {
        let resp = self.send(Method::POST, path, Some(serde_json::to_vec(body)?)).await?;
        let body = resp.into_body().collect().await?.to_bytes();
        serde_json::from_slice(&body).context("the engine's answer is not what was expected")
    }

    /// A raw body (a tar stream), its chunks as they arrive (at most a few held at
    /// once): a large one is never read whole.
    pub async fn get_stream(&self, path: &str) -> Result<tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>> {
        let resp = self.send(Method::GET, path, None).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tokio::spawn(async move {
            let mut body = resp.into_body();
            while let Some(frame) = body.frame().await {
                let item = match frame {
                    Ok(f) => match f.into_data() {
                        Ok(b) => Ok(b),
                        Err(_) => continue,
                    },
                    Err(e) => Err(std::io::Error::other(e)),
                };
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(rx)
    }

    /// A raw body sent as it is produced, chunk by chunk (a tar stream), so that a large
    /// one is never held whole.
    pub async fn put_stream(&self, path: &str, chunks: tokio::sync::mpsc::Receiver<Bytes>) -> Result<()> {
        self.upload::<serde_json::Value>(Method::PUT, path, chunks).await?;
        Ok(())
    }

    /// As [`Client::put_stream`], with any method; the engine's JSON answer.
    pub async fn upload<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        chunks: tokio::sync::mpsc::Receiver<Bytes>,
    ) -> Result<T> {
        let stream = futures_util::stream::unfold(chunks, |mut rx| async move {
            rx.recv()
                .await
                .map(|b| (Ok::<_, std::io::Error>(hyper::body::Frame::data(b)), rx))
        });
        let body = http_body_util::StreamBody::new(stream).boxed();
        let resp = self.request_body(method, path, body, false).await?;
        let body = resp.into_body().collect().await?.to_bytes();
        serde_json::from_slice(&body).context("the engine's answer is not what was expected")
    }

    pub async fn delete<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        let resp = self.send(Method::DELETE, path, None).await?;
        let body = resp.into_body().collect().await?.to_bytes();
        serde_json::from_slice(&body).context("the engine's answer is not what was expected")
    }

    async fn ping(&self) -> bool {
        self.get::<serde_json::Value>("/v1/version").await.is_ok()
    }
}

/// Connects to the engine of the state root, starting it if none answers.
pub async fn connect() -> Result<Client> {
    let (root, run) = engine::api::paths();
    let client = Client {
        socket: run.join(engine::api::SOCKET),
    };
    if client.ping().await {
        return Ok(client);
    }
    if std::env::var_os("RCOMPOSE_NO_AUTOSTART").is_some_and(|v| !v.is_empty() && v != "0") {
        bail!(
            "no engine answers at {} (RCOMPOSE_NO_AUTOSTART is set; start one with `rcompose daemon`)",
            client.socket.display()
        );
    }
    start_engine(&root, &run)?;
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if client.ping().await {
            return Ok(client);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = std::fs::read_to_string(root.join("engine.log")).unwrap_or_default();
    let last = log
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no log written");
    Err(anyhow!(
        "the engine did not start (see {}): {last}",
        root.join("engine.log").display()
    ))
}

/// Starts `rcompose daemon` detached: its own session, output to `<root>/engine.log`.
fn start_engine(root: &Path, run: &Path) -> Result<()> {
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    std::fs::create_dir_all(run).with_context(|| format!("creating {}", run.display()))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join("engine.log"))
        .with_context(|| format!("opening {}", root.join("engine.log").display()))?;
    let exe = std::env::current_exe().context("finding the rcompose binary")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("daemon")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid and close_range are async-signal-safe; nothing else runs between
    // fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            // The caller's shell's descriptors are not the engine's to keep.
            safefs::fds::cloexec_from(3)
        });
    }
    cmd.spawn().context("starting the engine")?;
    Ok(())
}

/// The CLI's async runtime: two workers are plenty for one client.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// A container path as a query value: percent-encoded but for `/._-` and alphanumerics.
pub(crate) fn query_escape(p: &str) -> String {
    p.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"/._-".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The kind of the engine's error answer `e` is, if it is one.
pub fn error_kind(e: &anyhow::Error) -> Option<ErrorKind> {
    e.downcast_ref::<ApiError>().map(|a| a.kind)
}
