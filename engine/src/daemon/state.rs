//! What the engine knows of each container, kept on disk before it is acted on: a
//! `record.json` beside the runtime's own files in `<root>/containers/<id>/`. A restarted
//! engine reads these back and adopts what still runs.

use crate::api::{ContainerSummary, PortSummary};
use compose::model::Service;
use conventions::durations::{human_duration, now};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A container's record that could not be written (a full disk, a broken state root).
#[derive(Debug, thiserror::Error)]
#[error("container {name}: could not record its state: {source}")]
pub struct RecordError {
    pub name: String,
    pub source: std::io::Error,
}

/// A project or service the engine was sent that it cannot take.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// Where in the model, and the loader's words.
    #[error("{}", if .path.is_empty() { .message.clone() } else { format!("{}: {}", .path, .message) })]
    Model { path: String, message: String },
    #[error("invalid project name {0:?}: must contain only characters from [a-z0-9_-] and start with [a-z0-9]")]
    ProjectName(String),
    #[error("{key}: {message}")]
    Name { key: String, message: String },
    #[error("no service")]
    NoService,
}

/// A container's network attachment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetAttach {
    /// The Compose key (`default`, `back`).
    pub key: String,
    /// The network's full name (`p_default`).
    pub network: String,
    pub aliases: Vec<String>,
    pub ipv4_address: Option<String>,
    /// Assigned when the container first starts; kept until it is removed.
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub internal: bool,
    /// `ipv6_address`, and the IPv6 address assigned on a network with `enable_ipv6`.
    #[serde(default)]
    pub ipv6_address: Option<String>,
    #[serde(default)]
    pub ip6: Option<String>,
}

/// A published port as bound.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PortBinding {
    pub host_ip: String,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub name: String,
    pub project: String,
    pub service: String,
    pub number: u32,
    pub image: String,
    /// The image ID the container was created from.
    pub image_id: String,
    pub config_hash: String,
    pub labels: BTreeMap<String, String>,
    /// Unix seconds.
    pub created: i64,
    /// The service as it was when the container was created: decoded once, when the
    /// engine received the project (or read the record back from disk).
    #[serde(rename = "service_json", with = "service_model")]
    pub model: Service,
    pub networks: Vec<NetAttach>,
    /// `none`, `host`, or empty for bridge networks.
    #[serde(default)]
    pub network_mode: String,
    #[serde(default)]
    pub ports: Vec<PortBinding>,
    /// Secrets and configs: (file in the container's directory, target in the container).
    #[serde(default)]
    pub files: Vec<(PathBuf, String)>,
    /// Compose volume key -> the volume's full name.
    #[serde(default)]
    pub volumes: BTreeMap<String, String>,
    /// Whether the user wants it running: `stop` clears it, so restart policies and
    /// `unless-stopped` leave it alone.
    pub desired_running: bool,
    #[serde(default)]
    pub started_at: Option<i64>,
    #[serde(default)]
    pub finished_at: Option<i64>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub oom_killed: bool,
    #[serde(default)]
    pub restart_count: u32,
    /// Automatic restarts counted against `max_attempts` (reset by a run longer than
    /// `deploy.restart_policy.window`).
    #[serde(default)]
    pub attempts: u32,
    /// A `run` container: never converged by `up`, reachable by its service name only
    /// with `--use-aliases`.
    #[serde(default)]
    pub oneoff: bool,
    #[serde(default)]
    pub use_aliases: bool,
    /// A `run` with its client attached: its input ends with the client's (`-i`), and
    /// its first output is kept until the client attaches.
    #[serde(default)]
    pub attached_run: bool,
    /// The `run` client's terminal size (rows, columns), for the container's.
    #[serde(default)]
    pub console_size: Option<(u16, u16)>,
    /// `userns_mode: auto`: the host IDs the container's 0.. map to, kept for its life
    /// (its upper layer's files are owned by them).
    #[serde(default)]
    pub userns: Option<runtime::spec::IdMap>,
}

impl Record {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("record.json")
    }

    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        let data = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        images::store::write_atomic(&Self::path(dir), &data).map_err(|e| std::io::Error::other(e.to_string()))
    }

    pub fn load(dir: &Path) -> Option<Record> {
        serde_json::from_slice(&std::fs::read(Self::path(dir)).ok()?).ok()
    }

    pub fn command_line(&self) -> String {
        let svc = &self.model;
        let args: Vec<String> = svc
            .entrypoint
            .iter()
            .flatten()
            .chain(svc.command.iter().flatten())
            .cloned()
            .collect();
        shell_words_join(&args)
    }
}

fn shell_words_join(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c)) {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The record's service on disk: the model's JSON, read back through the loader's
/// decoder (the one that knows the short syntaxes), once per engine start.
mod service_model {
    use compose::model::Service;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(svc: &Service, s: S) -> Result<S::Ok, S::Error> {
        svc.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Service, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        super::service_from_json(&v).map_err(serde::de::Error::custom)
    }
}

fn model(e: impl std::fmt::Display) -> DecodeError {
    DecodeError::Model {
        path: String::new(),
        message: e.to_string(),
    }
}

/// Decodes one service of the model from its JSON (as the CLI sent it).
pub fn service_from_json(v: &serde_json::Value) -> Result<Service, DecodeError> {
    let doc = serde_json::json!({ "services": { "s": v } });
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::to_value(&doc).map_err(model)?;
    let mut p = compose::decode(&yaml).map_err(|(path, message)| DecodeError::Model { path, message })?;
    p.services.shift_remove("s").ok_or(DecodeError::NoService)
}

/// `dir/name` for a name the engine keeps a file or directory of, when the name is one
/// plain file name. Anything else (`..`, a `/`, empty) gives a path with a NUL byte,
/// which every system call refuses: a name that slipped past the checks can make
/// nothing happen on disk, least of all outside `dir`.
pub fn child(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\0'])
        && name.len() <= compose::names::MAX;
    if plain {
        dir.join(name)
    } else {
        dir.join("\0refused")
    }
}

/// Decodes a whole project from its JSON.
/// Every name in it is checked as the loader checks it: an API client need not have
/// used the loader, and names become paths in the engine's state.
pub fn project_from_json(v: &serde_json::Value) -> Result<compose::Project, DecodeError> {
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::to_value(v).map_err(model)?;
    let p = compose::decode(&yaml).map_err(|(path, message)| DecodeError::Model { path, message })?;
    if let Some(name) = &p.name {
        if !compose::loader::valid_project_name(name) {
            return Err(DecodeError::ProjectName(name.clone()));
        }
    }
    compose::names::check(&p).map_err(|(key, message)| DecodeError::Name { key, message })?;
    let mut p = p;
    // A service that builds runs the image its build makes, named as Compose names it.
    super::build::service::name_images(&mut p);
    Ok(p)
}

/// The state a container is in, as Docker names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Created,
    Running,
    Paused,
    Restarting,
    Exited,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Created => "created",
            State::Running => "running",
            State::Paused => "paused",
            State::Restarting => "restarting",
            State::Exited => "exited",
        }
    }
}

/// `ps`'s STATUS column.
pub fn status_text(rec: &Record, state: State, health: &str, now: i64) -> String {
    let h = if health.is_empty() {
        String::new()
    } else if health == "starting" {
        " (health: starting)".into()
    } else {
        format!(" ({health})")
    };
    match state {
        State::Running => format!("Up {}{h}", human_duration(now - rec.started_at.unwrap_or(now))),
        State::Paused => format!("Up {} (Paused)", human_duration(now - rec.started_at.unwrap_or(now))),
        State::Restarting => format!(
            "Restarting ({}) {} ago",
            rec.exit_code.unwrap_or(0),
            human_duration(now - rec.finished_at.unwrap_or(now))
        ),
        State::Exited => format!(
            "Exited ({}) {} ago",
            rec.exit_code.unwrap_or(0),
            human_duration(now - rec.finished_at.unwrap_or(now))
        ),
        State::Created => "Created".into(),
    }
}

pub fn summary(rec: &Record, state: State, health: &str) -> ContainerSummary {
    ContainerSummary {
        id: rec.id.clone(),
        name: rec.name.clone(),
        image: rec.image.clone(),
        command: rec.command_line(),
        project: rec.project.clone(),
        service: rec.service.clone(),
        created: rec.created,
        state: state.as_str().into(),
        status: status_text(rec, state, health, now()),
        health: health.into(),
        exit_code: rec.exit_code.unwrap_or(0),
        publishers: rec
            .ports
            .iter()
            .map(|p| PortSummary {
                url: p.host_ip.clone(),
                target_port: p.container_port,
                published_port: p.host_port,
                protocol: p.protocol.clone(),
            })
            .collect(),
        labels: rec.labels.clone(),
        networks: rec.networks.iter().map(|n| n.network.clone()).collect(),
        number: rec.number,
        restart_count: rec.restart_count,
        tty: rec.model.tty == Some(true),
        stdin_open: rec.model.stdin_open == Some(true),
    }
}

/// A service from the YAML of its keys (tests).
#[cfg(test)]
pub(crate) fn test_service(keys: &str) -> compose::model::Service {
    let doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&format!("services:\n  s:\n    image: x\n{keys}")).expect("test YAML");
    compose::decode(&doc)
        .expect("test service")
        .services
        .shift_remove("s")
        .expect("service s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_column() {
        let rec = Record {
            started_at: Some(100),
            finished_at: Some(200),
            exit_code: Some(3),
            ..Default::default()
        };
        assert_eq!(
            status_text(&rec, State::Running, "healthy", 105),
            "Up 5 seconds (healthy)"
        );
        assert_eq!(
            status_text(&rec, State::Running, "starting", 105),
            "Up 5 seconds (health: starting)"
        );
        assert_eq!(status_text(&rec, State::Exited, "", 230), "Exited (3) 30 seconds ago");
        assert_eq!(status_text(&rec, State::Created, "", 230), "Created");
    }

    #[test]
    fn a_service_round_trips_through_json() {
        let doc: serde_yaml_ng::Value =
            serde_yaml_ng::from_str("services:\n  s:\n    image: x\n    command: [sh, -c, 'echo hi']\n    healthcheck: {test: [CMD, true], interval: 2s}\n    ports: ['8080:80/udp']\n    depends_on: {db: {condition: service_healthy}}\n").unwrap();
        let p = compose::decode(&doc).unwrap();
        let s = &p.services["s"];
        let back = service_from_json(&serde_json::to_value(s).unwrap()).unwrap();
        assert_eq!(&back, s);
        let rec = Record {
            model: s.clone(),
            ..Default::default()
        };
        let on_disk: Record = serde_json::from_slice(&serde_json::to_vec(&rec).unwrap()).unwrap();
        assert_eq!(on_disk.model, *s);
        assert_eq!(rec.command_line(), "sh -c 'echo hi'");
    }
}
