//! The API server: HTTP/1.1 (hyper) on the engine's Unix socket, JSON bodies, streams
//! as newline-delimited JSON. Routes are listed in `docs/api.md`. An operation runs as
//! its own task, so a client that goes away mid-`up` does not leave it half done.

use super::project::{OpError, Out};
use super::Engine;
use crate::api::{self, ApiError, ErrorKind, StreamMsg};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

pub(super) type Body = BoxBody<Bytes, Infallible>;

pub async fn serve(listener: tokio::net::UnixListener, engine: Arc<Engine>) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let engine = engine.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(engine.clone(), req));
            let io = hyper_util::rt::TokioIo::new(stream);
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!("API connection: {e}");
            }
        });
    }
}

pub(super) fn json<T: serde::Serialize>(status: StatusCode, v: &T) -> Response<Body> {
    let body = serde_json::to_vec(v).unwrap_or_default();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)).boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

/// An error answer of the kind its status says.
pub(super) fn error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    let kind = match status {
        StatusCode::NOT_FOUND => ErrorKind::NotFound,
        StatusCode::CONFLICT => ErrorKind::Conflict,
        StatusCode::BAD_REQUEST => ErrorKind::Invalid,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorKind::TooLarge,
        _ => ErrorKind::Internal,
    };
    error_of(status, kind, message)
}

pub(super) fn error_of(status: StatusCode, kind: ErrorKind, message: impl Into<String>) -> Response<Body> {
    json(
        status,
        &ApiError {
            kind,
            message: message.into(),
        },
    )
}

/// A newline-delimited JSON stream from a channel.
pub(super) fn ndjson<T: serde::Serialize + Send + 'static>(rx: tokio::sync::mpsc::Receiver<T>) -> Response<Body> {
    let s = tokio_stream(rx).map(|m| {
        let mut line = serde_json::to_vec(&m).unwrap_or_default();
        line.push(b'\n');
        Ok::<_, Infallible>(Frame::data(Bytes::from(line)))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/x-ndjson")
        .body(BodyExt::boxed(StreamBody::new(s)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

fn tokio_stream<T: Send + 'static>(rx: tokio::sync::mpsc::Receiver<T>) -> impl futures_util::Stream<Item = T> + Send {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) })
}

/// Runs an operation as its own task and streams its progress, then `done`/`error`.
pub(super) fn operation<F, Fut>(engine: Arc<Engine>, op: F) -> Response<Body>
where
    F: FnOnce(Arc<Engine>, Out) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), OpError>> + Send + 'static,
{
    let (utx, mut urx) = tokio::sync::mpsc::unbounded_channel::<StreamMsg>();
    let (tx, rx) = tokio::sync::mpsc::channel::<StreamMsg>(64);
    tokio::spawn(async move {
        let out = Out(utx.clone());
        let end = match op(engine, out).await {
            Ok(()) => StreamMsg::Done { exit_code: 0 },
            Err(e) => StreamMsg::Error {
                message: e.message,
                exit_code: e.exit_code,
            },
        };
        let _ = utx.send(end);
    });
    // Ends when the client goes (its answer's body dropped), even while the operation
    // says nothing: dropping `urx` is what tells a running build it is cancelled.
    tokio::spawn(async move {
        loop {
            let m = tokio::select! {
                m = urx.recv() => m,
                _ = tx.closed() => None,
            };
            let Some(m) = m else { break };
            let last = matches!(m, StreamMsg::Done { .. } | StreamMsg::Error { .. });
            if tx.send(m).await.is_err() || last {
                break;
            }
        }
    });
    ndjson(rx)
}

pub(super) fn query(q: Option<&str>) -> HashMap<String, String> {
    q.unwrap_or_default()
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(super) fn truthy(q: &HashMap<String, String>, k: &str) -> bool {
    q.get(k).is_some_and(|v| v == "1" || v == "true")
}

pub(super) fn parse<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, Response<Body>> {
    if body.is_empty() {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid request body: {e}")))
}

/// `GET /v1/containers/{id}/archive`: the path as a tar stream, or Docker's message.
async fn archive_out(ctr: &super::Ctr, path: String, follow: bool) -> Response<Body> {
    let Some(c) = ctr.live() else {
        return error_of(
            StatusCode::CONFLICT,
            ErrorKind::NotRunning,
            format!("container {} is not running", ctr.rec().name),
        );
    };
    let (r, w) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let _worker = super::copy::read_out(c.clone(), ctr.rec().name, path, follow, tx, std::fs::File::from(w));
    match tokio::task::spawn_blocking(move || rx.recv()).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => return error(StatusCode::NOT_FOUND, e),
        _ => return error(StatusCode::INTERNAL_SERVER_ERROR, "the copy failed"),
    }
    let file = tokio::fs::File::from_std(std::fs::File::from(r));
    let s = futures_util::stream::unfold(file, |mut f| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 64 * 1024];
        match f.read(&mut buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, Infallible>(Frame::data(Bytes::from(buf))), f))
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/x-tar")
        .body(BodyExt::boxed(StreamBody::new(s)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

/// The most a request body held in memory may be: a project's model (a Compose file
/// is read up to 32 MiB, its env files and configs besides), with room to spare.
pub const MAX_BODY: usize = 64 << 20;

/// A whole request body, refused with 413 past [`MAX_BODY`] (before it is all read).
pub(super) async fn read_body(body: Incoming) -> Result<Bytes, Response<Body>> {
    match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than {} MiB", MAX_BODY >> 20),
        )),
        Err(e) => Err(error(StatusCode::BAD_REQUEST, e.to_string())),
    }
}

/// A request body as a blocking reader, chunk by chunk as it arrives: what `archive_in`
/// unpacks, so that a large tree is never held in memory.
struct BodyReader {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    chunk: Bytes,
}

impl std::io::Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(c) => self.chunk = c,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

/// `PUT /v1/containers/{id}/archive?path=DEST[&owners=1][&whiteouts=1][&mkdir=1]`: a tar
/// stream unpacked into the running container as it arrives (`cp` into a container, and
/// `watch`'s syncs, whose deletions are whiteout entries).
async fn archive_in(engine: Arc<Engine>, id: &str, req: Request<Incoming>) -> Response<Body> {
    let q = query(req.uri().query());
    let Some(ctr) = engine.container(id) else {
        return error(StatusCode::NOT_FOUND, format!("No such container: {id}"));
    };
    let Some(c) = ctr.live() else {
        return error_of(
            StatusCode::CONFLICT,
            ErrorKind::NotRunning,
            format!("container {id} is not running"),
        );
    };
    let how = safefs::archive::Unpack {
        owners: truthy(&q, "owners"),
        whiteouts: truthy(&q, "whiteouts"),
        mkdir: truthy(&q, "mkdir"),
        userns: ctr.rec().userns,
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let dest = q.get("path").cloned().unwrap_or_default();
    let worker = super::copy::write_in(
        c.clone(),
        dest,
        how,
        BodyReader {
            rx,
            chunk: Bytes::new(),
        },
    );
    let mut body = req.into_body();
    let mut broken = None;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Ok(data) = f.into_data() {
                    // The unpacker stopped early (an error it will report): drain no more.
                    if tx.send(data).await.is_err() {
                        break;
                    }
                }
            }
            Err(e) => {
                broken = Some(e.to_string());
                break;
            }
        }
    }
    drop(tx);
    let done = tokio::task::spawn_blocking(move || worker.join()).await;
    match (done, broken) {
        (_, Some(e)) => error(
            StatusCode::BAD_REQUEST,
            format!("the archive did not arrive whole: {e}"),
        ),
        (Ok(Ok(Ok(()))), None) => json(StatusCode::OK, &serde_json::json!({})),
        (Ok(Ok(Err(e))), None) => error(StatusCode::BAD_REQUEST, e.to_string()),
        _ => error(StatusCode::INTERNAL_SERVER_ERROR, "the copy failed"),
    }
}

/// `POST /v1/containers/{id}/exec`: checked, then answered `101` and carried on over
/// the upgraded connection (or started and left, with `detach`).
async fn exec(engine: Arc<Engine>, id: &str, mut req: Request<Incoming>) -> Response<Body> {
    let upgrade = hyper::upgrade::on(&mut req);
    let body = match read_body(req.into_body()).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let r: api::ExecRequest = match parse(&body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let Some(ctr) = engine.container(id) else {
        return error(StatusCode::NOT_FOUND, format!("No such container: {id}"));
    };
    if ctr.live().is_none() {
        return error_of(
            StatusCode::CONFLICT,
            ErrorKind::NotRunning,
            format!("container {} is not running", ctr.rec().name),
        );
    }
    if r.detach {
        return match engine.exec_detached(&ctr, &r) {
            Ok(()) => json(StatusCode::OK, &serde_json::json!({})),
            Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
        };
    }
    tokio::spawn(async move {
        match upgrade.await {
            Ok(up) => engine.exec_stream(ctr, r, hyper_util::rt::TokioIo::new(up)).await,
            Err(e) => tracing::warn!("exec: the connection was not upgraded: {e}"),
        }
    });
    switching("rcompose-exec")
}

/// `POST /v1/containers/{id}/attach`: the container's attach socket connected, then
/// answered `101` and joined to the upgraded connection.
async fn attach(engine: Arc<Engine>, id: &str, mut req: Request<Incoming>) -> Response<Body> {
    let upgrade = hyper::upgrade::on(&mut req);
    let Some(ctr) = engine.container(id) else {
        return error(StatusCode::NOT_FOUND, format!("No such container: {id}"));
    };
    let restarts = ctr.rec().restart_count;
    let sock = match engine.attach_connect(&ctr).await {
        Ok(s) => s,
        Err(e @ super::attach::AttachError::NotRunning) => {
            return error_of(StatusCode::CONFLICT, ErrorKind::NotRunning, e.to_string())
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    tokio::spawn(async move {
        match upgrade.await {
            Ok(up) => {
                engine
                    .attach_stream(ctr, sock, restarts, hyper_util::rt::TokioIo::new(up))
                    .await
            }
            Err(e) => tracing::warn!("attach: the connection was not upgraded: {e}"),
        }
    });
    switching("rcompose-attach")
}

fn switching(protocol: &'static str) -> Response<Body> {
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "upgrade")
        .header("upgrade", protocol)
        .body(Full::new(Bytes::new()).boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

async fn handle(engine: Arc<Engine>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    {
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        if let (&Method::POST, ["v1", "containers", id, "exec"]) = (&method, segs.as_slice()) {
            let id = id.to_string();
            return Ok(exec(engine, &id, req).await);
        }
        if let (&Method::POST, ["v1", "containers", id, "attach"]) = (&method, segs.as_slice()) {
            let id = id.to_string();
            return Ok(attach(engine, &id, req).await);
        }
        if let (&Method::PUT, ["v1", "containers", id, "archive"]) = (&method, segs.as_slice()) {
            let id = id.to_string();
            return Ok(archive_in(engine, &id, req).await);
        }
    }
    if path.starts_with("/v1/images") {
        return Ok(super::image_routes::handle(engine, req).await);
    }
    let q = query(req.uri().query());
    let body = match read_body(req.into_body()).await {
        Ok(b) => b,
        Err(resp) => return Ok(resp),
    };
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let resp = match (&method, segs.as_slice()) {
        (&Method::GET, ["v1", "version"]) => json(
            StatusCode::OK,
            &serde_json::json!({
                "version": env!("CARGO_PKG_VERSION"),
                "api": api::API_VERSION,
                "pid": std::process::id(),
                "root": engine.root,
            }),
        ),
        (&Method::GET, ["v1", "projects"]) => json(StatusCode::OK, &engine.projects()),
        (&Method::GET, ["v1", "containers"]) => json(
            StatusCode::OK,
            &engine.summaries(q.get("project").map(String::as_str), truthy(&q, "all")),
        ),
        (&Method::GET, ["v1", "containers", id, "logs"]) => match engine.container(id) {
            None => error(StatusCode::NOT_FOUND, format!("No such container: {id}")),
            Some(ctr) => {
                let lq = super::logs::Query {
                    follow: truthy(&q, "follow"),
                    tail: q.get("tail").and_then(|t| t.parse().ok()),
                    since: q.get("since").cloned().filter(|s| !s.is_empty()),
                    until: q.get("until").cloned().filter(|s| !s.is_empty()),
                };
                let (tx, rx) = tokio::sync::mpsc::channel(256);
                tokio::task::spawn_blocking(move || super::logs::stream(ctr, lq, tx));
                ndjson(rx)
            }
        },
        (&Method::GET, ["v1", "containers", id, "top"]) => match engine.container(id) {
            None => error(StatusCode::NOT_FOUND, format!("No such container: {id}")),
            Some(ctr) => match super::top::rows(&ctr) {
                Some(rows) => json(StatusCode::OK, &rows),
                None => error_of(
                    StatusCode::CONFLICT,
                    ErrorKind::NotRunning,
                    format!("container {id} is not running"),
                ),
            },
        },
        (&Method::POST, ["v1", "containers", id, "kill"]) => match engine.container(id) {
            None => error(StatusCode::NOT_FOUND, format!("No such container: {id}")),
            Some(ctr) => {
                let name = q.get("signal").map(String::as_str).unwrap_or("SIGKILL");
                match conventions::signals::number(name) {
                    None => error(StatusCode::BAD_REQUEST, format!("invalid signal {name:?}")),
                    Some(_) if ctr.live().is_none() => error_of(
                        StatusCode::CONFLICT,
                        ErrorKind::NotRunning,
                        format!("container {} is not running", ctr.rec().name),
                    ),
                    Some(sig) => match engine.kill(&ctr, sig) {
                        Ok(()) => json(StatusCode::OK, &serde_json::json!({})),
                        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                    },
                }
            }
        },
        (&Method::GET, ["v1", "containers", id, "archive"]) => match engine.container(id) {
            None => error(StatusCode::NOT_FOUND, format!("No such container: {id}")),
            Some(ctr) => archive_out(&ctr, q.get("path").cloned().unwrap_or_default(), truthy(&q, "follow")).await,
        },
        (&Method::GET, ["v1", "containers", id, "stats"]) => match engine.container(id) {
            None => error(StatusCode::NOT_FOUND, format!("No such container: {id}")),
            Some(ctr) => match super::top::sample(&ctr) {
                Some(s) => json(StatusCode::OK, &s),
                None => error_of(
                    StatusCode::CONFLICT,
                    ErrorKind::NotRunning,
                    format!("container {id} is not running"),
                ),
            },
        },
        (&Method::GET, ["v1", "events"]) => {
            let project = q.get("project").cloned();
            let mut sub = engine.subscribe();
            let (tx, rx) = tokio::sync::mpsc::channel(256);
            tokio::spawn(async move {
                loop {
                    match sub.recv().await {
                        Ok(ev) => {
                            if project.as_ref().is_some_and(|p| *p != ev.project) {
                                continue;
                            }
                            if tx.send(ev).await.is_err() {
                                break;
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(_) => break,
                    }
                }
            });
            ndjson(rx)
        }
        (&Method::POST, ["v1", "projects", _name, "up"]) => match parse::<api::UpRequest>(&body) {
            Ok(r) => operation(engine, move |e, out| async move { e.up(r, out).await }),
            Err(resp) => resp,
        },
        (&Method::POST, ["v1", "projects", _name, "build"]) => match parse::<api::BuildRequest>(&body) {
            Ok(r) => operation(engine, move |e, out| async move { e.build_project(r, out).await }),
            Err(resp) => resp,
        },
        (&Method::POST, ["v1", "projects", _name, "run"]) => match parse::<api::RunRequest>(&body) {
            Ok(r) => operation(engine, move |e, out| async move { e.run(r, out).await }),
            Err(resp) => resp,
        },
        (&Method::DELETE, ["v1", "containers", id]) => match engine.container(id) {
            None => error(StatusCode::NOT_FOUND, format!("No such container: {id}")),
            Some(ctr) => {
                let _op = ctr.op.lock().await;
                match engine.remove(&ctr).await {
                    Ok(()) => json(StatusCode::OK, &serde_json::json!({})),
                    Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                }
            }
        },
        (&Method::POST, ["v1", "projects", name, "down"]) => match parse::<api::DownRequest>(&body) {
            Ok(r) => {
                let name = name.to_string();
                operation(engine, move |e, out| async move { e.down(&name, r, out).await })
            }
            Err(resp) => resp,
        },
        (&Method::POST, ["v1", "projects", name, verb])
            if matches!(
                *verb,
                "start" | "stop" | "restart" | "kill" | "rm" | "pause" | "unpause"
            ) =>
        {
            match parse::<api::ActionRequest>(&body) {
                Ok(r) => {
                    let (name, verb) = (name.to_string(), verb.to_string());
                    operation(
                        engine,
                        move |e, out| async move { e.action(&name, &verb, r, out).await },
                    )
                }
                Err(resp) => resp,
            }
        }
        _ => error(StatusCode::NOT_FOUND, format!("no route for {method} {path}")),
    };
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings() {
        let q = query(Some("project=my%20app&all=1&tail=&x+y=a+b&bad=%zz&end=%4"));
        assert_eq!(q["project"], "my app");
        assert!(truthy(&q, "all"));
        assert_eq!(q["tail"], "");
        assert_eq!(q["x y"], "a b");
        assert_eq!(q["bad"], "%zz");
        assert_eq!(q["end"], "%4");
    }
}
