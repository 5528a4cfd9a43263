//! The engine's API types, shared by the server (`daemon::server`) and the CLI's client.
//! HTTP/1.1 with JSON bodies over a Unix socket, versioned under `/v1`; streams are
//! newline-delimited JSON. `docs/api.md` documents every route.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const API_VERSION: &str = "v1";

/// The engine's socket's file name, in its runtime directory.
pub const SOCKET: &str = "rcompose.sock";
pub const DEFAULT_ROOT: &str = "/var/lib/rcompose";
pub const DEFAULT_RUN: &str = "/run/rcompose";

/// Where the engine keeps its state and where its API listens: `RCOMPOSE_ROOT` and
/// `RCOMPOSE_RUN`, else the defaults (a root of one's own runs under it).
pub fn paths() -> (std::path::PathBuf, std::path::PathBuf) {
    use std::path::{Path, PathBuf};
    let root = std::env::var_os("RCOMPOSE_ROOT")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT));
    let run = std::env::var_os("RCOMPOSE_RUN")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            if root == Path::new(DEFAULT_ROOT) {
                PathBuf::from(DEFAULT_RUN)
            } else {
                root.join("run")
            }
        });
    (root, run)
}

/// What kind of failure an error answer reports, so that a client matches kinds and
/// never message texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// No such container, project, image or route.
    NotFound,
    /// The container does not run (attach, exec, top, cp).
    NotRunning,
    /// The state forbids it (a name taken, a container in use).
    Conflict,
    /// The request is malformed or names something invalid.
    Invalid,
    /// A body over the engine's limit.
    TooLarge,
    /// The engine failed.
    Internal,
}

/// An error answer's body: `{"kind": ..., "message": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

/// `POST /v1/projects/{name}/up`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct UpRequest {
    /// The loaded, normalized Compose model (as `rcompose config --format json`).
    pub project: serde_json::Value,
    pub working_dir: String,
    pub config_files: Vec<String>,
    /// Services named on the command line (empty: all).
    pub services: Vec<String>,
    pub no_deps: bool,
    pub force_recreate: bool,
    pub no_recreate: bool,
    pub always_recreate_deps: bool,
    pub remove_orphans: bool,
    pub no_start: bool,
    pub renew_anon_volumes: bool,
    /// `--scale SERVICE=N`.
    pub scale: BTreeMap<String, u32>,
    /// Seconds to wait for a container to stop when recreating it.
    pub timeout: Option<u64>,
    /// Wait for running (and healthy, where a health check exists).
    pub wait: bool,
    pub wait_timeout: Option<u64>,
    /// Contents of secrets and configs whose source is an environment variable
    /// (`secret:NAME`, `config:NAME`), taken from the CLI's project environment.
    pub file_values: BTreeMap<String, String>,
    /// `--pull`: `always`, `missing` or `never` for every service, over each one's
    /// `pull_policy` (`missing` when it has none).
    pub pull: Option<String>,
    /// `--quiet-pull`: no pull progress in the stream.
    pub quiet_pull: bool,
    /// Credentials by registry host, as the client's Docker configuration has them.
    pub auths: BTreeMap<String, Credentials>,
    /// `--build`: build every selected service that has `build:` first.
    pub build: bool,
    /// `--no-build`: never build (a missing image is an error).
    pub no_build: bool,
}

/// `POST /v1/projects/{name}/build`: the services' images built from their `build:`
/// sections; the stream carries `build` events, then `done` or `error`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct BuildRequest {
    pub project: serde_json::Value,
    pub working_dir: String,
    /// Services named (empty: every service with `build:`).
    pub services: Vec<String>,
    /// `--with-dependencies`: the named services' dependencies too.
    pub with_dependencies: bool,
    /// `--build-arg KEY=VALUE`, over the services' `args`.
    pub build_args: BTreeMap<String, String>,
    pub no_cache: bool,
    /// `--pull`: base images pulled even when present.
    pub pull: bool,
    /// Secrets' values whose source is an environment variable (`secret:NAME`).
    pub file_values: BTreeMap<String, String>,
    pub auths: BTreeMap<String, Credentials>,
}

/// What a build reports as it goes (`{"build": {...}}` lines of a stream), as
/// BuildKit's progress has it: numbered vertices, their output, `CACHED`, `DONE`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum BuildEvent {
    /// A step started: `[build 2/4] RUN make`.
    Step {
        id: u32,
        name: String,
    },
    Cached {
        id: u32,
    },
    /// A line of the step's output, `elapsed` seconds after it started.
    Log {
        id: u32,
        elapsed: f64,
        line: String,
    },
    Done {
        id: u32,
        secs: f64,
    },
    Error {
        id: u32,
        message: String,
    },
    /// A service's image was built and stored.
    Image {
        service: String,
        id: String,
        tags: Vec<String>,
    },
}

/// A registry login: what the client read from its `~/.docker/config.json` (the engine
/// never reads a user's configuration), as Docker's `X-Registry-Auth` carries it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// `POST /v1/images/pull`: one image, answered with a stream of `pull` lines.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PullRequest {
    pub reference: String,
    /// `missing`: nothing is pulled when the image is present; `always` (the default).
    pub policy: Option<String>,
    pub auth: Option<Credentials>,
}

/// What a pull reports as it goes (`{"pull": {...}}` lines of a stream).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum PullEvent {
    /// The manifest for this platform is known.
    Resolved {
        image: String,
        manifest: String,
    },
    LayerExists {
        layer: String,
    },
    /// Bytes of a layer received so far.
    LayerProgress {
        layer: String,
        done: u64,
        total: u64,
    },
    LayerDownloaded {
        layer: String,
        size: u64,
    },
    /// `image` in full (`docker.io/library/busybox:latest`), `display` as Docker shows it
    /// (`busybox:latest`).
    Done {
        image: String,
        display: String,
        manifest: String,
    },
    /// `policy: missing` and the image is there: nothing was pulled.
    Present {
        image: String,
    },
}

/// An image of the store, as `image ls` shows it (`GET /v1/images`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageSummary {
    /// The config digest (`sha256:...`), Docker's image ID.
    pub id: String,
    /// Every name it is tagged with (`docker.io/library/busybox:latest`).
    pub tags: Vec<String>,
    /// The same names as Docker shows them: (repository, tag), `busybox`, `latest`.
    pub names: Vec<(String, String)>,
    /// Unix seconds: the config's `created`, else when it was stored.
    pub created: u64,
    pub size: u64,
}

/// `image rm`, `image prune`, `image load`: what was done, one line each, as Docker
/// prints it (`Untagged: ...`, `Deleted: ...`, `Loaded image: ...`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Lines {
    pub lines: Vec<String>,
}

/// `POST /v1/projects/{name}/run`: a one-off container of a service, created and
/// started (after its dependencies, unless `no_deps`); the stream ends with `done`,
/// preceded by a `created` message naming the container.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RunRequest {
    pub project: serde_json::Value,
    pub working_dir: String,
    pub config_files: Vec<String>,
    pub service: String,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    /// `KEY=VALUE` (or `KEY` to take it from nowhere: unset).
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    /// Extra volumes in the long syntax (as the model has them).
    pub volumes: Vec<serde_json::Value>,
    /// Ports to publish in the long syntax; with `service_ports` the service's own.
    pub ports: Vec<serde_json::Value>,
    pub service_ports: bool,
    pub use_aliases: bool,
    pub name: Option<String>,
    pub no_deps: bool,
    pub file_values: BTreeMap<String, String>,
    /// As `up`'s: the pull policy over the services', and the credentials.
    pub pull: Option<String>,
    pub quiet_pull: bool,
    pub auths: BTreeMap<String, Credentials>,
    /// `--build`: the service's image (and its dependencies') built first.
    pub build: bool,
    /// A terminal for the container (`-t`, or standard input is one).
    pub tty: bool,
    /// Standard input kept open (`-i`).
    pub interactive: bool,
    /// `-d`: no client attaches.
    pub detach: bool,
    /// The client's terminal size, with `tty`.
    pub rows: u16,
    pub cols: u16,
}

/// `POST /v1/projects/{name}/down`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DownRequest {
    /// The model, when the CLI found one: its networks and volumes are removed too.
    pub project: Option<serde_json::Value>,
    pub volumes: bool,
    pub remove_orphans: bool,
    pub timeout: Option<u64>,
    /// `--rmi all|local`: the services' images removed afterwards.
    pub rmi: Option<String>,
}

/// `POST /v1/projects/{name}/{start|stop|restart|kill|rm|pause|unpause}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ActionRequest {
    pub services: Vec<String>,
    pub timeout: Option<u64>,
    /// `kill -s`.
    pub signal: Option<String>,
    /// `rm -v`: anonymous volumes too.
    pub volumes: bool,
    /// `rm -s`: stop first.
    pub stop: bool,
    /// The model, for `start`/`restart` ordering; optional.
    pub project: Option<serde_json::Value>,
}

/// One line of a progress stream: `{"kind":"Container","name":"p-web-1","status":"Started"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub kind: String,
    pub name: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A message of an operation's stream: progress lines, then `done` or `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamMsg {
    Progress(Progress),
    Warning(String),
    /// `run`: the one-off container made.
    Created(String),
    /// `up`: the services it acts on (the ones named, with their dependencies).
    Services(Vec<String>),
    /// An image pull's progress (`POST /v1/images/pull`, or `up` pulling).
    Pull(PullEvent),
    /// A build's progress (`build`, or `up` building).
    Build(BuildEvent),
    Error {
        message: String,
        exit_code: i32,
    },
    Done {
        exit_code: i32,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PortSummary {
    #[serde(rename = "URL")]
    pub url: String,
    #[serde(rename = "TargetPort")]
    pub target_port: u16,
    #[serde(rename = "PublishedPort")]
    pub published_port: u16,
    #[serde(rename = "Protocol")]
    pub protocol: String,
}

/// `GET /v1/containers`: fields named as `docker compose ps --format json` names them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerSummary {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub image: String,
    pub command: String,
    pub project: String,
    pub service: String,
    /// Unix seconds.
    pub created: i64,
    /// `created`, `running`, `paused`, `restarting`, `exited`.
    pub state: String,
    /// `Up 3 seconds (healthy)`, `Exited (0) 2 seconds ago`.
    pub status: String,
    /// `starting`, `healthy`, `unhealthy`, or empty.
    pub health: String,
    pub exit_code: i32,
    pub publishers: Vec<PortSummary>,
    pub labels: BTreeMap<String, String>,
    pub networks: Vec<String>,
    #[serde(default)]
    pub number: u32,
    #[serde(default)]
    pub restart_count: u32,
    /// The main process has a terminal (`tty`), and takes attached input (`stdin_open`).
    #[serde(default)]
    pub tty: bool,
    #[serde(default)]
    pub stdin_open: bool,
}

/// `GET /v1/projects`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProjectSummary {
    pub name: String,
    /// `running(2), exited(1)`.
    pub status: String,
    pub config_files: String,
}

/// One line of `GET /v1/containers/{id}/logs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    pub container: String,
    pub service: String,
    pub number: u32,
    pub stream: String,
    pub time: String,
    pub log: String,
}

/// One line of `GET /v1/events`, as `docker compose events --json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub time: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub action: String,
    pub id: String,
    pub service: String,
    pub project: String,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// `POST /v1/containers/{id}/exec`. Unless `detach`, the request asks for an upgrade
/// (`Connection: Upgrade`, `Upgrade: rcompose-exec`); after `101 Switching Protocols`
/// both sides speak [`frames`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ExecRequest {
    pub cmd: Vec<String>,
    /// `KEY=VALUE`, over the container's environment.
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub tty: bool,
    pub privileged: bool,
    pub detach: bool,
    /// The terminal's size when `tty`.
    pub rows: u16,
    pub cols: u16,
}

/// The exec stream: `[kind: u8][length: u32, big-endian][payload]`.
pub mod frames {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Client to engine: bytes for the process's standard input.
    pub const STDIN: u8 = 0;
    /// Client to engine: standard input has ended.
    pub const STDIN_EOF: u8 = 5;
    /// Client to engine: the terminal was resized (rows and columns, u16 each).
    pub const RESIZE: u8 = 6;
    /// Engine to client: output.
    pub const STDOUT: u8 = 1;
    pub const STDERR: u8 = 2;
    /// Engine to client: the process ended with this code (i32); the last frame.
    pub const EXIT: u8 = 3;
    /// Engine to client: the process could not be run (a message).
    pub const ERROR: u8 = 4;

    /// The largest frame accepted; a longer one is a broken peer.
    const MAX: u32 = 1 << 20;

    pub async fn write(w: &mut (impl AsyncWriteExt + Unpin), kind: u8, payload: &[u8]) -> std::io::Result<()> {
        let mut head = [0u8; 5];
        head[0] = kind;
        head[1..].copy_from_slice(&(payload.len() as u32).to_be_bytes());
        w.write_all(&head).await?;
        w.write_all(payload).await?;
        w.flush().await
    }

    /// The next frame, `None` at a clean end of the stream.
    pub async fn read(r: &mut (impl AsyncReadExt + Unpin)) -> std::io::Result<Option<(u8, Vec<u8>)>> {
        let mut head = [0u8; 5];
        match r.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
        if len > MAX {
            return Err(std::io::Error::other(format!("exec frame of {len} bytes refused")));
        }
        let mut payload = vec![0u8; len as usize];
        r.read_exact(&mut payload).await?;
        Ok(Some((head[0], payload)))
    }
}

/// `GET /v1/containers/{id}/stats`: one sample of a running container's counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsSample {
    /// CPU time used, nanoseconds.
    pub cpu_ns: u64,
    /// When the sample was taken (monotonic, nanoseconds).
    pub at_ns: u64,
    pub mem_usage: u64,
    /// The cgroup's limit, else the host's memory.
    pub mem_limit: u64,
    pub net_rx: u64,
    pub net_tx: u64,
    pub block_read: u64,
    pub block_write: u64,
    pub pids: u64,
}
