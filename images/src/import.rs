//! `rcompose image import SOURCE NAME[:TAG]`: an image of one layer from a root
//! filesystem directory or tarball, as `docker import`, with `--change` instructions
//! (CMD, ENTRYPOINT, ENV, WORKDIR, USER, EXPOSE, LABEL, STOPSIGNAL, VOLUME).

use super::config::{host_platform, ContainerConfig, ImageConfigFile, RootFs};
use super::digest::HashWriter;
use super::manifest::Manifest;
use super::media;
use super::reference::ImageRef;
use super::store::{ImageRecord, Store, StoreError};
use super::unpack;
use std::fs;
use std::io::{self, Write};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid --change {change:?}: {reason}")]
    Change { change: String, reason: String },
}

/// A JSON array (`["a","b"]`) or shell form (`a b`, run by `/bin/sh -c`).
fn exec_form(rest: &str) -> Result<Vec<String>, String> {
    let t = rest.trim();
    if t.starts_with('[') {
        serde_json::from_str(t).map_err(|e| format!("not a JSON array of strings: {e}"))
    } else if t.is_empty() {
        Err("needs a command".into())
    } else {
        Ok(vec!["/bin/sh".into(), "-c".into(), t.into()])
    }
}

/// `K=V K2="v 2"`, or the legacy `K V` form.
fn pairs(rest: &str) -> Result<Vec<(String, String)>, String> {
    let words = compose_words(rest)?;
    if words.is_empty() || words.iter().any(|w| w.starts_with('=')) {
        return Err("needs KEY=VALUE".into());
    }
    if words.len() >= 2 && !words[0].contains('=') {
        return Ok(vec![(words[0].clone(), words[1..].join(" "))]);
    }
    words
        .into_iter()
        .map(|w| {
            w.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| format!("{w:?} is not KEY=VALUE"))
        })
        .collect()
}

fn compose_words(s: &str) -> Result<Vec<String>, String> {
    // Quotes group words as a shell would; no expansion.
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote = None;
    let mut any = false;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                any = true;
            }
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (None, c) => cur.push(c),
        }
    }
    if quote.is_some() {
        return Err("unclosed quote".into());
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

/// Applies Dockerfile-style instructions to an image configuration.
pub fn apply_changes(cfg: &mut ContainerConfig, changes: &[String]) -> Result<(), ImportError> {
    for change in changes {
        let err = |reason: String| ImportError::Change {
            change: change.clone(),
            reason,
        };
        let (instr, rest) = change
            .trim()
            .split_once(char::is_whitespace)
            .unwrap_or((change.trim(), ""));
        match instr.to_ascii_uppercase().as_str() {
            "CMD" => cfg.cmd = Some(exec_form(rest).map_err(err)?),
            "ENTRYPOINT" => cfg.entrypoint = Some(exec_form(rest).map_err(err)?),
            "ENV" => {
                let env = cfg.env.get_or_insert_with(Vec::new);
                for (k, v) in pairs(rest).map_err(err)? {
                    env.retain(|e| e.split('=').next() != Some(k.as_str()));
                    env.push(format!("{k}={v}"));
                }
            }
            "LABEL" => {
                let labels = cfg.labels.get_or_insert_with(Default::default);
                labels.extend(pairs(rest).map_err(err)?);
            }
            "WORKDIR" if !rest.trim().is_empty() => cfg.working_dir = Some(rest.trim().to_string()),
            "USER" if !rest.trim().is_empty() => cfg.user = Some(rest.trim().to_string()),
            "STOPSIGNAL" if !rest.trim().is_empty() => cfg.stop_signal = Some(rest.trim().to_string()),
            "EXPOSE" => {
                let ports = cfg.exposed_ports.get_or_insert_with(Default::default);
                for p in rest.split_whitespace() {
                    let (num, proto) = p.split_once('/').unwrap_or((p, "tcp"));
                    if num.parse::<u16>().is_err() || !matches!(proto, "tcp" | "udp" | "sctp") {
                        return Err(err(format!("invalid port {p:?}")));
                    }
                    ports.insert(format!("{num}/{proto}"), serde_json::json!({}));
                }
            }
            "VOLUME" => {
                let vols = cfg.volumes.get_or_insert_with(Default::default);
                let list = if rest.trim().starts_with('[') { exec_form(rest).map_err(err)? } else { rest.split_whitespace().map(String::from).collect() };
                for v in list {
                    vols.insert(v, serde_json::json!({}));
                }
            }
            other => return Err(err(format!("unsupported or empty instruction {other:?} (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR)"))),
        }
    }
    Ok(())
}

/// RFC 3339 UTC time of now (seconds), as image configs carry it.
pub fn rfc3339_now() -> String {
    conventions::timefmt::rfc3339(false)
}

/// Writes `dir` as an uncompressed tar, entries sorted so the same tree gives the same
/// layer; ownership, modes, times and symlinks kept; never follows a symlink.
fn tar_dir(dir: &Path, out: impl Write) -> io::Result<()> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    b.mode(tar::HeaderMode::Complete);
    fn walk(b: &mut tar::Builder<impl Write>, root: &Path, rel: &Path) -> io::Result<()> {
        let mut names: Vec<_> = fs::read_dir(root.join(rel))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort();
        for n in names {
            let r = rel.join(&n);
            let full = root.join(&r);
            let meta = fs::symlink_metadata(&full)?;
            if meta.is_dir() {
                b.append_dir(&r, &full)?;
                walk(b, root, &r)?;
            } else {
                b.append_path_with_name(&full, &r)?;
            }
        }
        Ok(())
    }
    walk(&mut b, dir, Path::new(""))?;
    b.into_inner()?.flush()
}

/// Imports a directory or a (possibly compressed) tarball as a one-layer image.
pub fn import(
    store: &Store,
    source: &Path,
    tag: Option<&ImageRef>,
    changes: &[String],
) -> Result<ImageRecord, ImportError> {
    let mut cfg = ContainerConfig::default();
    apply_changes(&mut cfg, changes)?;
    let _lock = store.lock()?;
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ImportError::Io { path, source }
    };
    // The layer is kept uncompressed, so its blob digest is its diff ID.
    let tmp = store
        .root()
        .join("tmp")
        .join(format!("import-{}.tar", std::process::id()));
    let res = (|| {
        let f = fs::File::create(&tmp).map_err(io_err(&tmp))?;
        let mut w = HashWriter::new(io::BufWriter::new(f));
        if source.is_dir() {
            tar_dir(source, &mut w).map_err(io_err(source))?;
        } else {
            let f = fs::File::open(source).map_err(io_err(source))?;
            let mut r = unpack::decompress(f).map_err(|e| ImportError::Io {
                path: source.to_path_buf(),
                source: io::Error::other(e.to_string()),
            })?;
            io::copy(&mut r, &mut w).map_err(io_err(source))?;
        }
        let (buf, digest, size) = w.finish();
        buf.into_inner()
            .map_err(|e| io_err(&tmp)(e.into_error()))?
            .sync_all()
            .map_err(io_err(&tmp))?;
        let (blob, _) = store.put_blob_from(
            fs::File::open(&tmp).map_err(io_err(&tmp))?,
            Some(&digest),
            "imported layer",
        )?;
        let (os, arch, variant) = host_platform();
        let image_cfg = ImageConfigFile {
            author: None,
            created: Some(rfc3339_now()),
            architecture: arch.into(),
            os: os.into(),
            variant: variant.map(Into::into),
            config: cfg,
            rootfs: RootFs {
                kind: "layers".into(),
                diff_ids: vec![blob.to_string()],
            },
            history: vec![
                serde_json::json!({"created": rfc3339_now(), "comment": "Imported from ".to_string() + &source.display().to_string()}),
            ],
        };
        let cbytes = serde_json::to_vec(&image_cfg).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let config = store.put_blob(&cbytes, None)?;
        let layers = [(blob.clone(), media::OCI_LAYER.to_string(), size)];
        let m = Manifest::oci(&config, cbytes.len() as u64, &layers);
        let mbytes = serde_json::to_vec(&m).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let manifest = store.put_blob(&mbytes, None)?;
        Ok(store.commit(
            &manifest,
            &config,
            &[(blob, media::OCI_LAYER.into(), size)],
            tag.map(std::slice::from_ref).unwrap_or_default(),
        )?)
    })();
    let _ = fs::remove_file(&tmp);
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes() {
        let mut c = ContainerConfig::default();
        apply_changes(
            &mut c,
            &[
                "CMD [\"sh\", \"-c\", \"echo hi\"]".into(),
                "ENTRYPOINT /init".into(),
                "ENV A=1 B=\"two words\"".into(),
                "ENV A 3".into(),
                "WORKDIR /app".into(),
                "USER 1000:1000".into(),
                "EXPOSE 80 53/udp".into(),
                "LABEL org.x=y".into(),
            ],
        )
        .unwrap();
        assert_eq!(c.cmd, Some(vec!["sh".into(), "-c".into(), "echo hi".into()]));
        assert_eq!(c.entrypoint, Some(vec!["/bin/sh".into(), "-c".into(), "/init".into()]));
        assert_eq!(c.env, Some(vec!["B=two words".into(), "A=3".into()]));
        assert_eq!(c.working_dir.as_deref(), Some("/app"));
        assert_eq!(c.user.as_deref(), Some("1000:1000"));
        assert_eq!(
            c.exposed_ports.unwrap().keys().cloned().collect::<Vec<_>>(),
            vec!["53/udp".to_string(), "80/tcp".to_string()]
        );
        for bad in ["RUN make", "EXPOSE http", "CMD [broken", "ENV =", "WORKDIR"] {
            assert!(
                apply_changes(&mut ContainerConfig::default(), &[bad.into()]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn rfc3339_shape() {
        let t = rfc3339_now();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'));
    }
}
