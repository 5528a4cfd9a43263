//! The image routes of the API (`/v1/images...`, see `docs/api.md`). An image's name
//! may hold slashes and a port (`127.0.0.1:5000/tools/x:1`): it is the rest of the
//! path, percent-decoded. `load` and `import` bodies go to a file in the store's
//! `uploads` as they arrive (never all in memory), up to [`MAX_IMAGE_BODY`], and are
//! read from there (`tmp` is the store's writers', cleared when one starts).

use super::image_actions::ImageError;
use super::project::OpError;
use super::server::{error, json, operation, parse, query, read_body, truthy, Body};
use super::Engine;
use crate::api::{self, Lines};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

/// The largest archive `load` or `import` takes.
pub const MAX_IMAGE_BODY: u64 = 64 << 30;

pub(super) async fn handle(engine: Arc<Engine>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let q = query(req.uri().query());
    let rest = path.strip_prefix("/v1/images").unwrap_or("");
    match (&method, rest) {
        (&Method::POST, "/load") => return load(engine, req).await,
        (&Method::POST, "/import") => return import(engine, q, req).await,
        _ => {}
    }
    let body = match read_body(req.into_body()).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    match (&method, rest) {
        (&Method::GET, "" | "/") => match engine.image_list() {
            Ok(l) => json(StatusCode::OK, &l),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        },
        (&Method::POST, "/pull") => match parse::<api::PullRequest>(&body) {
            Ok(r) => operation(engine, move |e, out| async move {
                e.pull(&r.reference, r.policy.as_deref(), r.auth.as_ref(), &out)
                    .await
                    .map_err(OpError::from)
            }),
            Err(resp) => resp,
        },
        (&Method::POST, "/prune") if truthy(&q, "build_cache") => {
            let engine = engine.clone();
            let freed =
                tokio::task::spawn_blocking(move || super::build::cache::Cache::open(&engine.store).map(|c| c.prune()))
                    .await;
            match freed {
                Ok(Ok(n)) => json(
                    StatusCode::OK,
                    &Lines {
                        lines: vec![format!("Total:\t{}", human_bytes(n))],
                    },
                ),
                Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("build cache: {e}")),
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            }
        }
        (&Method::POST, "/prune") => lines(engine.image_prune(truthy(&q, "all")).await),
        (&Method::GET, r) if r.ends_with("/json") => {
            let name = name_of(&r[..r.len() - "/json".len()]);
            match engine.image_inspect(&name) {
                Ok(Some(v)) => json(StatusCode::OK, &v),
                Ok(None) => error(StatusCode::NOT_FOUND, format!("No such image: {name}")),
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            }
        }
        (&Method::DELETE, r) if r.len() > 1 => lines(engine.image_remove(name_of(r)).await),
        _ => error(StatusCode::NOT_FOUND, format!("no route for {method} {path}")),
    }
}

/// `/NAME` of a path, percent-decoded.
fn name_of(rest: &str) -> String {
    let raw = rest.strip_prefix('/').unwrap_or(rest);
    query(Some(&format!("n={raw}"))).remove("n").unwrap_or_default()
}

/// Bytes as Docker prints reclaimed space (`1.2MB`, decimal units).
fn human_bytes(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n}B")
    } else {
        format!("{v:.3}{}", units[i]).replace(".000", "")
    }
}

fn lines(r: Result<Vec<String>, ImageError>) -> Response<Body> {
    match r {
        Ok(lines) => json(StatusCode::OK, &Lines { lines }),
        Err(e @ ImageError::Store(images::store::StoreError::NotFound(_))) => {
            error(StatusCode::NOT_FOUND, e.to_string())
        }
        Err(e) => error(StatusCode::CONFLICT, e.to_string()),
    }
}

/// Where bodies wait to be read; emptied when the engine starts.
pub fn uploads(store_root: &std::path::Path) -> PathBuf {
    store_root.join("uploads")
}

/// The body, written to a new file of the store's `uploads`; removed again on any failure.
async fn to_file(engine: &Engine, body: Incoming) -> Result<PathBuf, Response<Body>> {
    let dir = uploads(engine.store.root());
    let path = dir.join(format!("api-{}", super::random_hex(16)));
    let fail = |status, m: String| error(status, m);
    let mut f = std::fs::create_dir_all(&dir)
        .and_then(|_| std::fs::OpenOptions::new().write(true).create_new(true).open(&path))
        .map_err(|e| fail(StatusCode::INTERNAL_SERVER_ERROR, format!("{}: {e}", path.display())))?;
    let mut body = body;
    let mut total: u64 = 0;
    let res = loop {
        match body.frame().await {
            None => break Ok(()),
            Some(Err(e)) => {
                break Err(fail(
                    StatusCode::BAD_REQUEST,
                    format!("the archive did not arrive whole: {e}"),
                ))
            }
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else { continue };
                total += data.len() as u64;
                if total > MAX_IMAGE_BODY {
                    break Err(fail(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("archive larger than {} GiB", MAX_IMAGE_BODY >> 30),
                    ));
                }
                // A blocking write of one frame: small, and on the store's own disk.
                if let Err(e) = f.write_all(&data) {
                    break Err(fail(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("{}: {e}", path.display()),
                    ));
                }
            }
        }
    };
    match res {
        Ok(()) => Ok(path),
        Err(resp) => {
            let _ = std::fs::remove_file(&path);
            Err(resp)
        }
    }
}

/// `POST /v1/images/load`: a `docker save` or OCI archive (a layout directory arrives
/// as its tar).
async fn load(engine: Arc<Engine>, req: Request<Incoming>) -> Response<Body> {
    let path = match to_file(&engine, req.into_body()).await {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    let res = engine.image_load(path.clone()).await;
    let _ = std::fs::remove_file(&path);
    match res {
        Ok(lines) => json(StatusCode::OK, &Lines { lines }),
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// `POST /v1/images/import?tag=NAME&change=...`: a root filesystem tarball.
async fn import(
    engine: Arc<Engine>,
    q: std::collections::HashMap<String, String>,
    req: Request<Incoming>,
) -> Response<Body> {
    // Every `change=`, in order (the parsed query keeps one value per key).
    let changes: Vec<String> = req
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|kv| kv.starts_with("change="))
        .filter_map(|kv| query(Some(kv)).remove("change"))
        .collect();
    let tag = q.get("tag").cloned().filter(|t| !t.is_empty());
    let path = match to_file(&engine, req.into_body()).await {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    let res = engine.image_import(path.clone(), tag, changes).await;
    let _ = std::fs::remove_file(&path);
    match res {
        Ok(id) => json(StatusCode::OK, &serde_json::json!({ "id": id })),
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}
