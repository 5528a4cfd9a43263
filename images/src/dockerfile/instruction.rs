//! Instructions as typed steps: flags checked against each instruction's own, exec
//! and shell forms told apart. Values stay as written: variables are expanded when the
//! step is built, with the variables of that point of the stage.

use super::expand;
use super::lex::{Heredoc, Raw};
use super::DockerfileError;

/// A command as written: `["exec", "form"]` or a shell string.
#[derive(Debug, Clone, PartialEq)]
pub enum Form {
    Exec(Vec<String>),
    Shell(String),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct CopyArgs {
    /// Sources then destination, as written (unexpanded).
    pub sources: Vec<String>,
    pub dest: String,
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    pub exclude: Vec<String>,
    pub checksum: Option<String>,
    pub keep_git_dir: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Health {
    /// `None`: `HEALTHCHECK NONE`.
    pub test: Option<Form>,
    pub interval: Option<u64>,
    pub timeout: Option<u64>,
    pub start_period: Option<u64>,
    pub start_interval: Option<u64>,
    pub retries: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Instruction {
    From {
        image: String,
        name: Option<String>,
        platform: Option<String>,
    },
    Run {
        form: Form,
        mounts: Vec<String>,
        network: Option<String>,
        security: Option<String>,
    },
    Copy(CopyArgs),
    Add(CopyArgs),
    /// Raw `key=value` words (or one legacy `key value` pair).
    Env(Vec<(String, String)>),
    Arg(Vec<(String, Option<String>)>),
    Label(Vec<(String, String)>),
    Expose(String),
    User(String),
    Workdir(String),
    Volume(Vec<String>),
    Entrypoint(Form),
    Cmd(Form),
    Shell(Vec<String>),
    StopSignal(String),
    Healthcheck(Health),
    /// The trigger as written (an instruction of its own).
    Onbuild(String),
    Maintainer(String),
}

/// One instruction of the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub line: usize,
    pub keyword: String,
    /// `rest` as written: what the history's `created_by` shows.
    pub text: String,
    pub instruction: Instruction,
    pub heredocs: Vec<Heredoc>,
}

fn err(line: usize, message: impl Into<String>) -> DockerfileError {
    DockerfileError::Syntax {
        line,
        message: message.into(),
    }
}

/// `--name=value` and `--name` flags at the start of `rest`, and what follows them.
fn flags(rest: &str) -> (Vec<(String, Option<String>)>, &str) {
    let mut out = Vec::new();
    let mut s = rest.trim_start();
    while let Some(after) = s.strip_prefix("--") {
        let end = after.find(char::is_whitespace).unwrap_or(after.len());
        let word = &after[..end];
        if word.is_empty() {
            break;
        }
        match word.split_once('=') {
            Some((k, v)) => out.push((k.to_string(), Some(v.to_string()))),
            None => out.push((word.to_string(), None)),
        }
        s = after[end..].trim_start();
    }
    (out, s)
}

struct Flags {
    line: usize,
    keyword: String,
    list: Vec<(String, Option<String>)>,
}

impl Flags {
    fn check(&self, allowed: &[&str]) -> Result<(), DockerfileError> {
        match self.list.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
            Some((k, _)) => Err(err(self.line, format!("unknown flag: {k}"))),
            None => Ok(()),
        }
    }
    fn value(&self, name: &str) -> Result<Option<String>, DockerfileError> {
        match self.list.iter().rev().find(|(k, _)| k == name) {
            Some((_, Some(v))) => Ok(Some(v.clone())),
            Some((_, None)) => Err(err(self.line, format!("{} --{name} needs a value", self.keyword))),
            None => Ok(None),
        }
    }
    fn all(&self, name: &str) -> Result<Vec<String>, DockerfileError> {
        self.list
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| {
                v.clone()
                    .ok_or_else(|| err(self.line, format!("{} --{name} needs a value", self.keyword)))
            })
            .collect()
    }
    fn bool(&self, name: &str) -> Result<bool, DockerfileError> {
        match self.list.iter().rev().find(|(k, _)| k == name) {
            None => Ok(false),
            Some((_, None)) => Ok(true),
            Some((_, Some(v))) => match v.as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(err(
                    self.line,
                    format!("{} --{name}: expected true or false, got {v:?}", self.keyword),
                )),
            },
        }
    }
}

/// A JSON array of strings, when `rest` is one.
fn json_array(rest: &str) -> Option<Vec<String>> {
    if !rest.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(rest).ok()
}

fn form(rest: &str) -> Form {
    match json_array(rest) {
        Some(v) => Form::Exec(v),
        None => Form::Shell(rest.to_string()),
    }
}

/// Turns a raw instruction into a step.
pub fn step(raw: &Raw, escape: char) -> Result<Step, DockerfileError> {
    let line = raw.line;
    let (list, body) = flags(&raw.rest);
    let f = Flags {
        line,
        keyword: raw.keyword.clone(),
        list,
    };
    let none: &[&str] = &[];
    let instruction = match raw.keyword.as_str() {
        "FROM" => {
            f.check(&["platform"])?;
            let w: Vec<&str> = body.split_whitespace().collect();
            let (image, name) = match w.as_slice() {
                [image] => (image.to_string(), None),
                [image, as_, name] if as_.eq_ignore_ascii_case("as") => {
                    (image.to_string(), Some(name.to_ascii_lowercase()))
                }
                _ => {
                    return Err(err(
                        line,
                        "FROM requires either one argument, or three: FROM <source> [AS <name>]",
                    ))
                }
            };
            Instruction::From {
                image,
                name,
                platform: f.value("platform")?,
            }
        }
        "RUN" => {
            f.check(&["mount", "network", "security"])?;
            need(line, "RUN", body)?;
            Instruction::Run {
                form: form(body),
                mounts: f.all("mount")?,
                network: f.value("network")?,
                security: f.value("security")?,
            }
        }
        "COPY" => {
            f.check(&["from", "chown", "chmod", "link", "parents", "exclude"])?;
            Instruction::Copy(copy_args(&f, body, escape)?)
        }
        "ADD" => {
            f.check(&["chown", "chmod", "link", "checksum", "keep-git-dir", "exclude"])?;
            Instruction::Add(copy_args(&f, body, escape)?)
        }
        "ENV" => {
            f.check(none)?;
            Instruction::Env(pairs(line, "ENV", body, escape)?)
        }
        "LABEL" => {
            f.check(none)?;
            Instruction::Label(pairs(line, "LABEL", body, escape)?)
        }
        "ARG" => {
            f.check(none)?;
            let words = expand::split_raw(body, escape).map_err(|e| err(line, e.to_string()))?;
            if words.is_empty() {
                return Err(err(line, "ARG requires at least one argument"));
            }
            Instruction::Arg(
                words
                    .into_iter()
                    .map(|w| match w.split_once('=') {
                        Some((k, v)) => (k.to_string(), Some(v.to_string())),
                        None => (w, None),
                    })
                    .collect(),
            )
        }
        "EXPOSE" => {
            f.check(none)?;
            Instruction::Expose(need(line, "EXPOSE", body)?.to_string())
        }
        "USER" => {
            f.check(none)?;
            Instruction::User(need(line, "USER", body)?.to_string())
        }
        "WORKDIR" => {
            f.check(none)?;
            Instruction::Workdir(need(line, "WORKDIR", body)?.to_string())
        }
        "VOLUME" => {
            f.check(none)?;
            need(line, "VOLUME", body)?;
            Instruction::Volume(json_array(body).unwrap_or_else(|| vec![body.to_string()]))
        }
        "ENTRYPOINT" => {
            f.check(none)?;
            Instruction::Entrypoint(form(body))
        }
        "CMD" => {
            f.check(none)?;
            Instruction::Cmd(form(body))
        }
        "SHELL" => {
            f.check(none)?;
            match json_array(body) {
                Some(v) if !v.is_empty() => Instruction::Shell(v),
                _ => return Err(err(line, "SHELL requires the arguments to be in JSON form")),
            }
        }
        "STOPSIGNAL" => {
            f.check(none)?;
            Instruction::StopSignal(need(line, "STOPSIGNAL", body)?.to_string())
        }
        "HEALTHCHECK" => {
            f.check(&["interval", "timeout", "start-period", "start-interval", "retries"])?;
            Instruction::Healthcheck(health(&f, body)?)
        }
        "ONBUILD" => {
            f.check(none)?;
            let inner = need(line, "ONBUILD", body)?;
            let kw = inner.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
            if ["ONBUILD", "FROM", "MAINTAINER"].contains(&kw.as_str()) {
                return Err(err(line, format!("{kw} isn't allowed as an ONBUILD trigger")));
            }
            Instruction::Onbuild(inner.to_string())
        }
        "MAINTAINER" => {
            f.check(none)?;
            Instruction::Maintainer(need(line, "MAINTAINER", body)?.to_string())
        }
        other => {
            return Err(DockerfileError::Unknown {
                line,
                keyword: other.to_string(),
            })
        }
    };
    Ok(Step {
        line,
        keyword: raw.keyword.clone(),
        text: raw.rest.clone(),
        instruction,
        heredocs: raw.heredocs.clone(),
    })
}

fn need<'a>(line: usize, kw: &str, body: &'a str) -> Result<&'a str, DockerfileError> {
    if body.trim().is_empty() {
        Err(err(line, format!("{kw} requires at least one argument")))
    } else {
        Ok(body)
    }
}

fn copy_args(f: &Flags, body: &str, escape: char) -> Result<CopyArgs, DockerfileError> {
    let mut all = match json_array(body) {
        Some(v) => v,
        None => expand::split_raw(body, escape).map_err(|e| err(f.line, e.to_string()))?,
    };
    if all.len() < 2 {
        return Err(err(
            f.line,
            format!(
                "{} requires at least two arguments, but only one was provided. Destination could not be determined",
                f.keyword
            ),
        ));
    }
    let dest = all.pop().unwrap_or_default();
    Ok(CopyArgs {
        sources: all,
        dest,
        from: f.value("from")?,
        chown: f.value("chown")?,
        chmod: f.value("chmod")?,
        link: f.bool("link")?,
        parents: f.bool("parents")?,
        exclude: f.all("exclude")?,
        checksum: f.value("checksum")?,
        keep_git_dir: f.bool("keep-git-dir")?,
    })
}

/// `k=v k2=v2` pairs, or the legacy single `key value`.
fn pairs(line: usize, kw: &str, body: &str, escape: char) -> Result<Vec<(String, String)>, DockerfileError> {
    let words = expand::split_raw(body, escape).map_err(|e| err(line, e.to_string()))?;
    if words.is_empty() {
        return Err(err(line, format!("{kw} requires at least one argument")));
    }
    if !words[0].contains('=') {
        // `ENV key value with spaces`: one pair, the value the rest of the line.
        let key = words[0].clone();
        let value = body.trim_start()[key.len()..].trim().to_string();
        if value.is_empty() && kw == "ENV" {
            return Err(err(line, "ENV must have two arguments"));
        }
        return Ok(vec![(key, value)]);
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some(("", _)) => Err(err(line, format!("{kw} names can not be blank"))),
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => Err(err(line, format!("{kw}: {w:?} is not of the form key=value"))),
        })
        .collect()
}

fn health(f: &Flags, body: &str) -> Result<Health, DockerfileError> {
    let (kw, rest) = match body.find(char::is_whitespace) {
        Some(n) => (&body[..n], body[n..].trim()),
        None => (body, ""),
    };
    let dur = |name: &str| -> Result<Option<u64>, DockerfileError> {
        f.value(name)?
            .map(|v| {
                go_duration(&v).ok_or_else(|| err(f.line, format!("HEALTHCHECK --{name}: invalid duration {v:?}")))
            })
            .transpose()
    };
    match kw.to_ascii_uppercase().as_str() {
        "NONE" if rest.is_empty() && f.list.is_empty() => Ok(Health::default()),
        "NONE" => Err(err(f.line, "HEALTHCHECK NONE takes no arguments")),
        "CMD" if !rest.is_empty() => Ok(Health {
            test: Some(form(rest)),
            interval: dur("interval")?,
            timeout: dur("timeout")?,
            start_period: dur("start-period")?,
            start_interval: dur("start-interval")?,
            retries: f
                .value("retries")?
                .map(|v| {
                    v.parse::<u64>()
                        .map_err(|_| err(f.line, format!("HEALTHCHECK --retries: invalid number {v:?}")))
                })
                .transpose()?,
        }),
        _ => Err(err(f.line, "HEALTHCHECK requires CMD <command> or NONE")),
    }
}

/// A Go duration (`1m30s`, `500ms`) in nanoseconds.
pub fn go_duration(s: &str) -> Option<u64> {
    if s == "0" {
        return Some(0);
    }
    let mut total: f64 = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += num * mult;
        rest = &rest[u..];
    }
    Some(total as u64)
}

#[cfg(test)]
mod tests {
    use super::super::lex::lex;
    use super::*;

    fn steps(text: &str) -> Result<Vec<Step>, DockerfileError> {
        let (d, raws) = lex(text)?;
        raws.iter().map(|r| step(r, d.escape)).collect()
    }

    #[test]
    fn instructions_and_forms() {
        let s = steps(
            "FROM --platform=linux/amd64 busybox AS Build\nRUN --mount=type=cache,target=/c --network=none make\nCMD [\"a\", \"b\"]\nENTRYPOINT run it\nENV A=1 B=\"x y\"\nENV legacy value with spaces\nCOPY --from=build --chown=1:2 --link a b /dst/\nHEALTHCHECK --interval=1m30s --retries=3 CMD true\nHEALTHCHECK NONE\nARG X Y=2\n",
        )
        .unwrap();
        assert_eq!(
            s[0].instruction,
            Instruction::From {
                image: "busybox".into(),
                name: Some("build".into()),
                platform: Some("linux/amd64".into())
            }
        );
        let Instruction::Run { mounts, network, .. } = &s[1].instruction else {
            panic!()
        };
        assert_eq!((mounts.len(), network.as_deref()), (1, Some("none")));
        assert_eq!(
            s[2].instruction,
            Instruction::Cmd(Form::Exec(vec!["a".into(), "b".into()]))
        );
        assert_eq!(s[3].instruction, Instruction::Entrypoint(Form::Shell("run it".into())));
        assert_eq!(
            s[4].instruction,
            Instruction::Env(vec![("A".into(), "1".into()), ("B".into(), "\"x y\"".into())])
        );
        assert_eq!(
            s[5].instruction,
            Instruction::Env(vec![("legacy".into(), "value with spaces".into())])
        );
        let Instruction::Copy(c) = &s[6].instruction else {
            panic!()
        };
        assert_eq!(
            (c.sources.len(), c.dest.as_str(), c.link, c.chown.as_deref()),
            (2, "/dst/", true, Some("1:2"))
        );
        let Instruction::Healthcheck(h) = &s[7].instruction else {
            panic!()
        };
        assert_eq!((h.interval, h.retries), (Some(90_000_000_000), Some(3)));
        assert_eq!(s[8].instruction, Instruction::Healthcheck(Health::default()));
        assert_eq!(
            s[9].instruction,
            Instruction::Arg(vec![("X".into(), None), ("Y".into(), Some("2".into()))])
        );
    }

    #[test]
    fn bad_instructions_name_their_line() {
        for (text, want) in [
            ("FROM a\nFOO bar", "line 2: unknown instruction: FOO"),
            ("FROM a\nCOPY --chmod=644 --bogus x /", "line 2: unknown flag: bogus"),
            ("FROM a\nCOPY x", "line 2: COPY requires at least two arguments, but only one was provided. Destination could not be determined"),
            ("FROM a b", "line 1: FROM requires either one argument, or three: FROM <source> [AS <name>]"),
            ("FROM a\nSHELL sh -c", "line 2: SHELL requires the arguments to be in JSON form"),
            ("FROM a\nONBUILD FROM b", "line 2: FROM isn't allowed as an ONBUILD trigger"),
            ("FROM a\nHEALTHCHECK --interval=x CMD true", "line 2: HEALTHCHECK --interval: invalid duration \"x\""),
        ] {
            assert_eq!(steps(text).unwrap_err().to_string(), want, "{text}");
        }
    }
}
