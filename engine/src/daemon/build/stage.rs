//! A stage as it is built: its layers and image config so far, its variables (the
//! stage's `ARG`s and the config's `ENV`), its shell and its cache key. The metadata
//! instructions change only this; the filesystem ones (`exec`) add layers to it.

use super::BuildError;
use images::config::{ContainerConfig, HealthConfig, ImageConfigFile};
use images::dockerfile::expand::{self, Vars};
use images::dockerfile::{Form, Health, Instruction, Step};
use images::store::LayerRecord;
use std::collections::BTreeMap;

/// The build args that are Docker's own: usable without `ARG`, never in the history.
pub const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

#[derive(Debug, Clone)]
pub struct StageState {
    pub layers: Vec<LayerRecord>,
    pub config: ImageConfigFile,
    /// The stage's declared args with their values (`None`: declared, unset), in order.
    pub args: Vec<(String, Option<String>)>,
    pub key: String,
    /// Whether `CMD` was set in this stage (an `ENTRYPOINT` resets only an inherited one).
    pub cmd_set: bool,
}

pub const DEFAULT_SHELL: &[&str] = &["/bin/sh", "-c"];
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl StageState {
    pub fn shell(&self) -> Vec<String> {
        self.config
            .config
            .shell
            .clone()
            .unwrap_or_else(|| DEFAULT_SHELL.iter().map(|s| s.to_string()).collect())
    }

    /// The config's environment as a map.
    pub fn env(&self) -> Vec<(String, String)> {
        self.config
            .config
            .env
            .iter()
            .flatten()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv.clone(), String::new()),
            })
            .collect()
    }

    /// What expansion sees: the args, then `ENV` over them.
    pub fn vars(&self) -> Vars {
        let mut v: Vars = self
            .args
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect();
        v.extend(self.env());
        v
    }

    /// The args a `RUN` sees beside the config's environment (those the env does not
    /// set), as `KEY=VALUE`, in declaration order.
    pub fn run_args(&self) -> Vec<String> {
        let env = self.env();
        self.args
            .iter()
            .filter(|(k, v)| v.is_some() && !env.iter().any(|(e, _)| e == k))
            .map(|(k, v)| format!("{k}={}", v.clone().unwrap_or_default()))
            .collect()
    }

    fn set_env(&mut self, k: &str, v: &str) {
        let env = self.config.config.env.get_or_insert_with(Vec::new);
        let prefix = format!("{k}=");
        let kv = format!("{k}={v}");
        match env.iter_mut().find(|e| e.starts_with(&prefix) || e.as_str() == k) {
            Some(e) => *e = kv,
            None => env.push(kv),
        }
    }

    /// The `|N k=v ...` of a `RUN`'s history text: every arg declared so far, in
    /// order, with the value the step sees (an `ENV` of the same name wins; unset is
    /// empty), as BuildKit's `runCommandString` writes it.
    pub fn history_args(&self) -> Vec<String> {
        let env = self.env();
        self.args
            .iter()
            .map(|(k, v)| {
                let val = env
                    .iter()
                    .find(|(e, _)| e == k)
                    .map(|(_, v)| v.clone())
                    .or_else(|| v.clone())
                    .unwrap_or_default();
                format!("{k}={val}")
            })
            .collect()
    }

    /// Records a history entry as BuildKit writes it. Only a layer has a time of its
    /// own; the others get theirs when the image is written (see `fill_times`).
    pub fn history(&mut self, created: Option<&str>, created_by: String, empty_layer: bool) {
        let mut h = serde_json::json!({
            "created_by": created_by,
            "comment": "buildkit.dockerfile.v0",
        });
        if let Some(t) = created {
            h["created"] = serde_json::Value::String(t.to_string());
        }
        if empty_layer {
            h["empty_layer"] = serde_json::Value::Bool(true);
        }
        self.config.history.push(h);
    }
}

fn exp(step: &Step, s: &str, vars: &Vars, escape: char) -> Result<String, BuildError> {
    expand::word(s, vars, escape).map_err(|e| BuildError::at(step, e.to_string()))
}

/// A shell-form command with the stage's shell, or an exec form as written.
pub fn command(form: &Form, shell: &[String]) -> Vec<String> {
    match form {
        Form::Exec(v) => v.clone(),
        Form::Shell(s) => shell.iter().cloned().chain([s.clone()]).collect(),
    }
}

fn go_list(v: &[String]) -> String {
    format!("[{}]", v.join(" "))
}

fn json_list(v: &[String]) -> String {
    let quoted: Vec<String> = v.iter().map(|s| serde_json::to_string(s).unwrap_or_default()).collect();
    format!("[{}]", quoted.join(" "))
}

/// Applies a metadata instruction; `global` is what an `ARG` without a value takes
/// from the global scope, `build_args` what the user passed. Returns the history's
/// `created_by`.
pub fn apply(
    st: &mut StageState,
    step: &Step,
    escape: char,
    global: &BTreeMap<String, String>,
    build_args: &BTreeMap<String, String>,
) -> Result<String, BuildError> {
    let vars = st.vars();
    let c = &mut st.config.config;
    let by = match &step.instruction {
        Instruction::Env(pairs) => {
            let mut done = Vec::new();
            for (k, v) in pairs {
                let k = exp(step, k, &vars, escape)?;
                let v = exp(step, v, &vars, escape)?;
                done.push((k, v));
            }
            for (k, v) in &done {
                st.set_env(k, v);
            }
            let shown: Vec<String> = done.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("ENV {}", shown.join(" "))
        }
        Instruction::Label(pairs) => {
            let mut shown = Vec::new();
            for (k, v) in pairs {
                let k = exp(step, k, &vars, escape)?;
                let v = exp(step, v, &vars, escape)?;
                shown.push(format!("{k}={v}"));
                c.labels.get_or_insert_with(BTreeMap::new).insert(k, v);
            }
            format!("LABEL {}", shown.join(" "))
        }
        Instruction::Arg(list) => {
            let mut shown = Vec::new();
            for (k, default) in list {
                // The value in effect, as current BuildKit writes it: the build arg,
                // else the expanded default, else the global one.
                let value = match (build_args.get(k), default) {
                    (Some(v), _) => Some(v.clone()),
                    (None, Some(d)) => Some(exp(step, d, &st.vars(), escape)?),
                    (None, None) => global.get(k).cloned(),
                };
                shown.push(match &value {
                    Some(v) => format!("{k}={v}"),
                    None => k.clone(),
                });
                // Declared again: it keeps its place with the new value.
                match st.args.iter_mut().find(|(n, _)| n == k) {
                    Some(a) => a.1 = value,
                    None => st.args.push((k.clone(), value)),
                }
            }
            format!("ARG {}", shown.join(" "))
        }
        Instruction::Expose(text) => {
            let ports = expand::words(text, &vars, escape).map_err(|e| BuildError::at(step, e.to_string()))?;
            let map = c.exposed_ports.get_or_insert_with(BTreeMap::new);
            for p in &ports {
                let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
                let ok = port.split('-').all(|n| n.parse::<u16>().is_ok());
                if !ok || !["tcp", "udp", "sctp"].contains(&proto.to_ascii_lowercase().as_str()) {
                    return Err(BuildError::at(step, format!("invalid containerPort: {p}")));
                }
                map.insert(format!("{port}/{}", proto.to_ascii_lowercase()), serde_json::json!({}));
            }
            // The words sorted as written, each with its protocol, duplicates kept.
            let mut sorted = ports.clone();
            sorted.sort();
            let shown: Vec<String> = sorted
                .iter()
                .map(|p| match p.split_once('/') {
                    Some((port, proto)) => format!("{port}/{}", proto.to_ascii_lowercase()),
                    None => format!("{p}/tcp"),
                })
                .collect();
            format!("EXPOSE [{}]", shown.join(" "))
        }
        Instruction::User(u) => {
            let u = exp(step, u, &vars, escape)?;
            c.user = Some(u.clone());
            format!("USER {u}")
        }
        Instruction::Volume(list) => {
            let mut all = Vec::new();
            for v in list {
                all.extend(expand::words(v, &vars, escape).map_err(|e| BuildError::at(step, e.to_string()))?);
            }
            let map = c.volumes.get_or_insert_with(BTreeMap::new);
            for v in &all {
                map.insert(v.clone(), serde_json::json!({}));
            }
            format!("VOLUME {}", go_list(&all))
        }
        Instruction::Entrypoint(f) => {
            let shell = st.shell();
            let c = &mut st.config.config;
            c.entrypoint = Some(command(f, &shell));
            if !st.cmd_set {
                c.cmd = None;
            }
            format!("ENTRYPOINT {}", json_list(c.entrypoint.as_deref().unwrap_or_default()))
        }
        Instruction::Cmd(f) => {
            let shell = st.shell();
            let c = &mut st.config.config;
            c.cmd = Some(command(f, &shell));
            c.args_escaped = Some(true);
            st.cmd_set = true;
            format!("CMD {}", json_list(c.cmd.as_deref().unwrap_or_default()))
        }
        Instruction::Shell(v) => {
            c.shell = Some(v.clone());
            format!("SHELL {}", go_list(v))
        }
        Instruction::StopSignal(s) => {
            let s = exp(step, s, &vars, escape)?;
            if conventions::signals::number(&s).is_none() {
                return Err(BuildError::at(step, format!("Invalid signal: {s}")));
            }
            c.stop_signal = Some(s.clone());
            format!("STOPSIGNAL {s}")
        }
        Instruction::Healthcheck(h) => {
            c.healthcheck = Some(health(h));
            format!("HEALTHCHECK {}", health_text(h))
        }
        Instruction::Onbuild(t) => {
            c.on_build.get_or_insert_with(Vec::new).push(t.clone());
            format!("ONBUILD {t}")
        }
        Instruction::Maintainer(m) => {
            st.config.author = Some(m.clone());
            format!("MAINTAINER {m}")
        }
        Instruction::Workdir(_)
        | Instruction::Run { .. }
        | Instruction::Copy(_)
        | Instruction::Add(_)
        | Instruction::From { .. } => return Err(BuildError::at(step, "not a metadata instruction".into())),
    };
    if metadata_size(st) > MAX_METADATA {
        return Err(BuildError::at(
            step,
            format!(
                "the stage's environment, labels and build args exceed {} MiB",
                MAX_METADATA >> 20
            ),
        ));
    }
    Ok(by)
}

/// The most a stage's variables and labels may hold together: each word is limited
/// on its own, and this stops a Dockerfile of many of them.
const MAX_METADATA: usize = 16 << 20;

fn metadata_size(st: &StageState) -> usize {
    let c = &st.config.config;
    let env: usize = c.env.iter().flatten().map(String::len).sum();
    let labels: usize = c.labels.iter().flatten().map(|(k, v)| k.len() + v.len()).sum();
    let args: usize = st
        .args
        .iter()
        .map(|(k, v)| k.len() + v.as_ref().map_or(0, String::len))
        .sum();
    env + labels + args
}

fn health(h: &Health) -> HealthConfig {
    let test = match &h.test {
        None => vec!["NONE".to_string()],
        Some(Form::Exec(v)) => std::iter::once("CMD".to_string()).chain(v.iter().cloned()).collect(),
        Some(Form::Shell(s)) => vec!["CMD-SHELL".to_string(), s.clone()],
    };
    HealthConfig {
        test: Some(test),
        interval: h.interval,
        timeout: h.timeout,
        start_period: h.start_period,
        start_interval: h.start_interval,
        retries: h.retries,
    }
}

/// Go's `%+v` of the health config, as current BuildKit writes it.
fn health_text(h: &Health) -> String {
    let c = health(h);
    let d = |v: Option<u64>| conventions::durations::go_duration(v.unwrap_or(0));
    format!(
        "{{Test:[{}] Interval:{} Timeout:{} StartPeriod:{} StartInterval:{} Retries:{}}}",
        c.test.unwrap_or_default().join(" "),
        d(c.interval),
        d(c.timeout),
        d(c.start_period),
        d(c.start_interval),
        c.retries.unwrap_or(0)
    )
}

/// `WORKDIR`'s directory: absolute, or relative to the one before.
pub fn workdir(st: &StageState, step: &Step, raw: &str, escape: char) -> Result<String, BuildError> {
    let w = exp(step, raw, &st.vars(), escape)?;
    let base = st.config.config.working_dir.clone().unwrap_or_else(|| "/".into());
    let joined = if w.starts_with('/') {
        w
    } else {
        format!("{}/{w}", base.trim_end_matches('/'))
    };
    Ok(clean_abs(&joined))
}

/// An absolute path cleaned as Go's `path.Clean` does.
pub fn clean_abs(p: &str) -> String {
    format!("/{}", images::context::ignore::clean(p))
}

/// A fresh config for a stage on `base` (its `ONBUILD`s taken out: they run now, and go
/// no further).
pub fn from_base(mut base: ImageConfigFile) -> (ImageConfigFile, Vec<String>) {
    let triggers = base.config.on_build.take().unwrap_or_default();
    if base.config.env.is_none() {
        base.config.env = Some(vec![format!("PATH={DEFAULT_PATH}")]);
    }
    (base, triggers)
}

/// The config of `FROM scratch`.
pub fn scratch() -> ImageConfigFile {
    let (os, arch, variant) = images::config::host_platform();
    ImageConfigFile {
        architecture: arch.into(),
        os: os.into(),
        variant: variant.map(Into::into),
        config: ContainerConfig {
            env: Some(vec![format!("PATH={DEFAULT_PATH}")]),
            ..Default::default()
        },
        rootfs: images::config::RootFs {
            kind: "layers".into(),
            diff_ids: Vec::new(),
        },
        ..Default::default()
    }
}
