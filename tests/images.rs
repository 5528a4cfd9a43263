//! End to end: images through the built binary. A real registry on loopback (Debian's
//! `docker-registry`, on a random port) loaded by a standard tool (`skopeo`), `docker
//! save` and OCI archives made here, a busybox root filesystem imported. Each test has
//! its own RCOMPOSE_ROOT. Needs root (layer ownership, device whiteouts).

use flate2::write::GzEncoder;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let r = unsafe { libc::geteuid() } == 0;
    if !r {
        eprintln!("skipped: image tests need root");
    }
    r
}

fn have(tool: &str) -> bool {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{tool} is not installed (.ci/run installs it)");
        }
        eprintln!("skipped: {tool} is not installed");
    }
    ok
}

fn sha(b: &[u8]) -> String {
    format!(
        "sha256:{}",
        Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect::<String>()
    )
}

struct Env {
    state: tempfile::TempDir,
}

/// The engine the CLI started for this test's root goes with the test (and what it
/// left: its cgroups, none of them a container's).
impl Drop for Env {
    fn drop(&mut self) {
        let pid = std::fs::read_to_string(self.state.path().join("run/rcompose.pid")).unwrap_or_default();
        if let Ok(pid) = pid.trim().parse::<i32>() {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while Path::new(&format!("/proc/{pid}")).exists() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}

impl Env {
    fn new() -> Env {
        Env {
            state: tempfile::tempdir().unwrap(),
        }
    }
    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_rcompose"))
            .args(args)
            .env("RCOMPOSE_ROOT", self.state.path())
            .env("HOME", self.state.path())
            .output()
            .unwrap()
    }
    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "{args:?} failed: {}{}",
            String::from_utf8_lossy(&o.stderr),
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8(o.stdout).unwrap()
    }
    fn err(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            !o.status.success(),
            "{args:?} should fail: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8(o.stderr).unwrap()
    }
    /// Every file of the store, with its content digest: to show a failure changed nothing
    /// (the engine's log and run state aside).
    fn snapshot(&self) -> Vec<(PathBuf, String)> {
        let mut out = Vec::new();
        fn walk(p: &Path, base: &Path, out: &mut Vec<(PathBuf, String)>) {
            let Ok(rd) = std::fs::read_dir(p) else { return };
            for e in rd.flatten() {
                let path = e.path();
                let m = std::fs::symlink_metadata(&path).unwrap();
                if m.is_dir() {
                    walk(&path, base, out);
                } else if !path.to_string_lossy().contains("/tmp/")
                    && !path.ends_with(".lock")
                    // The engine's own files (its log, socket, pid, networks' state).
                    && !["engine.log", "engine.lock", "run", "networks"]
                        .iter()
                        .any(|own| path.strip_prefix(base).is_ok_and(|r| r.starts_with(own)))
                {
                    out.push((
                        path.strip_prefix(base).unwrap().to_path_buf(),
                        sha(&std::fs::read(&path).unwrap_or_default()),
                    ));
                }
            }
        }
        walk(self.state.path(), self.state.path(), &mut out);
        out.sort();
        out
    }
}

/// A small root filesystem: busybox (from busybox-static) and a few files.
fn rootfs(dir: &Path, marker: &str) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", dir.join("bin/sh")).unwrap();
    std::fs::write(dir.join("etc/marker"), marker).unwrap();
}

/// A gzip-compressed layer tar of `files` (path, content); returns (blob, diff_id).
fn layer(files: &[(&str, &[u8])]) -> (Vec<u8>, String) {
    let mut b = tar::Builder::new(Vec::new());
    for (p, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        h.set_cksum();
        b.append_data(&mut h, p, *data).unwrap();
    }
    let raw = b.into_inner().unwrap();
    let diff = sha(&raw);
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    (gz.finish().unwrap(), diff)
}

/// Writes an OCI layout with one image per (arch, marker); several make an index of
/// platforms. Returns the digest of what `index.json` points at.
fn oci_layout(dir: &Path, images: &[(&str, &str)], multi: bool) -> String {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let put = |b: &[u8]| {
        let d = sha(b);
        std::fs::write(dir.join("blobs/sha256").join(&d[7..]), b).unwrap();
        d
    };
    let busybox = std::fs::read("/bin/busybox").unwrap();
    let mut manifests = Vec::new();
    for (arch, marker) in images {
        let (blob, diff) = layer(&[("bin/busybox", &busybox), ("etc/marker", marker.as_bytes())]);
        let ld = put(&blob);
        let cfg = serde_json::to_vec(&json!({"architecture": arch, "os": "linux", "config": {"Cmd": ["/bin/busybox", "cat", "/etc/marker"]}, "rootfs": {"type": "layers", "diff_ids": [diff]}})).unwrap();
        let cd = put(&cfg);
        let m = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cfg.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": blob.len()}]})).unwrap();
        let md = put(&m);
        manifests.push(json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": m.len(), "platform": {"architecture": arch, "os": "linux"}}));
    }
    let top = if multi {
        let idx = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests})).unwrap();
        let d = put(&idx);
        json!({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": d, "size": idx.len()})
    } else {
        manifests[0].clone()
    };
    let digest = top["digest"].as_str().unwrap().to_string();
    let mut top = top;
    top["annotations"] = json!({"org.opencontainers.image.ref.name": "latest"});
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [top]})).unwrap(),
    )
    .unwrap();
    digest
}

/// A registry on 127.0.0.1, killed (and its storage removed) on drop.
struct Registry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Registry {
        Registry::start_with("")
    }

    /// `extra` is appended to the registry's configuration (e.g. an auth section).
    fn start_with(extra: &str) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = dir.path().join("config.yml");
        std::fs::write(&cfg, format!("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{extra}", dir.path().join("data").display())).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Owned at once, so that a failure below still kills it (Drop).
        let reg = Registry { child, port, dir };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return reg;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("registry did not start");
    }
    fn push(&self, layout: &Path, name: &str, all: bool) {
        self.push_as(layout, name, all, None)
    }

    fn push_as(&self, layout: &Path, name: &str, all: bool, creds: Option<&str>) {
        let mut c = Command::new("skopeo");
        c.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if let Some(cr) = creds {
            c.arg(format!("--dest-creds={cr}"));
        }
        if all {
            c.arg("--all");
        }
        let o = c
            .arg(format!("oci:{}:latest", layout.display()))
            .arg(format!("docker://127.0.0.1:{}/{name}", self.port))
            .output()
            .unwrap();
        assert!(o.status.success(), "skopeo: {}", String::from_utf8_lossy(&o.stderr));
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn pull_from_a_registry_checks_digests_and_selects_the_platform() {
    if !root() || !have("docker-registry") || !have("skopeo") {
        return;
    }
    let reg = Registry::start();
    let src = tempfile::tempdir().unwrap();
    let arch = if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "amd64"
    };
    let other = if arch == "amd64" { "arm64" } else { "amd64" };
    let single = oci_layout(&src.path().join("single"), &[(arch, "single")], false);
    reg.push(&src.path().join("single"), "tools/single:1.0", false);
    oci_layout(
        &src.path().join("multi"),
        &[(other, "wrong platform"), (arch, "host platform")],
        true,
    );
    reg.push(&src.path().join("multi"), "tools/multi:latest", true);

    let e = Env::new();
    let name = format!("127.0.0.1:{}/tools/single:1.0", reg.port);
    e.ok(&["image", "pull", &name]);
    let inspect: serde_json::Value = serde_json::from_str(&e.ok(&["image", "inspect", &name])).unwrap();
    assert_eq!(
        inspect[0]["RepoDigests"][0],
        format!("127.0.0.1:{}/tools/single@{single}", reg.port)
    );
    // The unpacked layer is the pushed content.
    let layers = e.state.path().join("images/layers/sha256");
    let dirs: Vec<PathBuf> = std::fs::read_dir(&layers).unwrap().map(|d| d.unwrap().path()).collect();
    assert_eq!(dirs.len(), 1);
    assert_eq!(std::fs::read_to_string(dirs[0].join("etc/marker")).unwrap(), "single");

    // An index: the host's platform is chosen.
    let multi = format!("127.0.0.1:{}/tools/multi", reg.port);
    e.ok(&["image", "pull", &multi]);
    let inspect: serde_json::Value = serde_json::from_str(&e.ok(&["image", "inspect", &multi])).unwrap();
    assert_eq!(inspect[0]["Architecture"], arch);
    let layer = inspect[0]["RootFS"]["Layers"][0].as_str().unwrap();
    assert_eq!(
        std::fs::read_to_string(layers.join(&layer[7..]).join("etc/marker")).unwrap(),
        "host platform"
    );

    // A missing image: one message naming it, non-zero, store unchanged.
    let before = e.snapshot();
    let err = e.err(&["image", "pull", &format!("127.0.0.1:{}/tools/nope:1", reg.port)]);
    assert!(err.contains("tools/nope:1") && err.lines().count() == 1, "{err}");
    assert_eq!(e.snapshot(), before);
}

#[test]
fn a_corrupt_blob_from_the_registry_is_refused_and_leaves_no_trace() {
    if !root() || !have("docker-registry") || !have("skopeo") {
        return;
    }
    let reg = Registry::start();
    let src = tempfile::tempdir().unwrap();
    oci_layout(
        src.path(),
        &[(
            if cfg!(target_arch = "aarch64") {
                "arm64"
            } else {
                "amd64"
            },
            "x",
        )],
        false,
    );
    reg.push(src.path(), "bad/layer:1", false);
    // Corrupt the layer blob in the registry's storage (same size, other bytes).
    let blobs = reg.dir.path().join("data/docker/registry/v2/blobs/sha256");
    let mut biggest: Option<(u64, PathBuf)> = None;
    for a in std::fs::read_dir(&blobs).unwrap() {
        for b in std::fs::read_dir(a.unwrap().path()).unwrap() {
            let data = b.unwrap().path().join("data");
            let len = std::fs::metadata(&data).unwrap().len();
            if biggest.as_ref().is_none_or(|(l, _)| len > *l) {
                biggest = Some((len, data));
            }
        }
    }
    let (len, path) = biggest.unwrap();
    std::fs::write(&path, vec![0x1f; len as usize]).unwrap();
    let e = Env::new();
    let before = e.snapshot();
    let err = e.err(&["image", "pull", &format!("127.0.0.1:{}/bad/layer:1", reg.port)]);
    assert!(
        err.contains("bad/layer:1") && err.to_lowercase().contains("digest"),
        "{err}"
    );
    let after = e.snapshot();
    // Manifest and config may be stored (they were verified); no layer, no tag, no tmp.
    assert!(
        after
            .iter()
            .all(|(p, _)| !p.starts_with("images/layers/sha256/") || p == Path::new("images/layers/sha256")),
        "{after:?}"
    );
    assert!(std::fs::read_dir(e.state.path().join("images/tmp"))
        .unwrap()
        .next()
        .is_none());
    assert!(!e.ok(&["image", "ls", "-q"]).contains(char::is_alphanumeric) || before.is_empty());
}

#[test]
fn docker_save_and_oci_archives_load() {
    if !root() {
        return;
    }
    let e = Env::new();
    let t = tempfile::tempdir().unwrap();
    // docker save, legacy layout: uncompressed layer.tar files, RepoTags.
    let busybox = std::fs::read("/bin/busybox").unwrap();
    let mut raw = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(busybox.len() as u64);
    h.set_mode(0o755);
    h.set_cksum();
    raw.append_data(&mut h, "bin/busybox", busybox.as_slice()).unwrap();
    let layer_tar = raw.into_inner().unwrap();
    let config = serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]}, "rootfs": {"type": "layers", "diff_ids": [sha(&layer_tar)]}})).unwrap();
    let mut save = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        save.append_data(&mut h, name, data).unwrap();
    };
    let cfg_name = format!("{}.json", &sha(&config)[7..]);
    add(&cfg_name, &config);
    add("abc/layer.tar", &layer_tar);
    add("manifest.json", &serde_json::to_vec(&json!([{"Config": cfg_name, "RepoTags": ["saved/app:1", "saved/app:latest"], "Layers": ["abc/layer.tar"]}])).unwrap());
    std::fs::write(t.path().join("save.tar"), save.into_inner().unwrap()).unwrap();
    let out = e.ok(&["image", "load", "-i", t.path().join("save.tar").to_str().unwrap()]);
    assert_eq!(out, "Loaded image: saved/app:1\nLoaded image: saved/app:latest\n");
    let inspect: serde_json::Value = serde_json::from_str(&e.ok(&["image", "inspect", "saved/app:1"])).unwrap();
    assert_eq!(inspect[0]["Id"], sha(&config));

    // An OCI layout as a directory and as a gzip-compressed archive.
    let arch = if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "amd64"
    };
    oci_layout(&t.path().join("oci"), &[(arch, "oci")], false);
    let out = e.ok(&["image", "load", "-i", t.path().join("oci").to_str().unwrap()]);
    assert!(out.starts_with("Loaded image ID: sha256:"), "{out}");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar -C {} -czf {}/oci.tgz .",
            t.path().join("oci").display(),
            t.path().display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    let out2 = e.ok(&["image", "load", "-i", t.path().join("oci.tgz").to_str().unwrap()]);
    assert_eq!(out, out2);

    // Not an archive, a corrupt one, a hostile one: one message, the store unchanged.
    let before = e.snapshot();
    std::fs::write(t.path().join("junk.tar"), b"not a tar at all, not even close........").unwrap();
    let err = e.err(&["image", "load", "-i", t.path().join("junk.tar").to_str().unwrap()]);
    assert!(err.contains("junk.tar"), "{err}");
    let mut evil = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..10].copy_from_slice(b"../../evil");
    h.set_size(1);
    h.set_mode(0o644);
    h.set_cksum();
    evil.append(&h, b"x".as_slice()).unwrap();
    std::fs::write(t.path().join("evil.tar"), evil.into_inner().unwrap()).unwrap();
    let err = e.err(&["image", "load", "-i", t.path().join("evil.tar").to_str().unwrap()]);
    assert!(err.contains("outside"), "{err}");
    assert_eq!(e.snapshot(), before);
    assert!(!e.state.path().join("../evil").exists());
}

#[test]
fn a_busybox_rootfs_imports_shares_layers_and_removes_cleanly() {
    if !root() || !Path::new("/bin/busybox").exists() {
        return;
    }
    let e = Env::new();
    let t = tempfile::tempdir().unwrap();
    rootfs(&t.path().join("fs"), "imported");
    let id = e.ok(&[
        "image",
        "import",
        "-c",
        "CMD [\"/bin/sh\"]",
        "-c",
        "ENV A=1",
        "-c",
        "EXPOSE 8080",
        t.path().join("fs").to_str().unwrap(),
        "local/busybox:1",
    ]);
    assert!(id.starts_with("sha256:"));
    let inspect: serde_json::Value = serde_json::from_str(&e.ok(&["image", "inspect", "local/busybox:1"])).unwrap();
    assert_eq!(inspect[0]["Config"]["Cmd"], json!(["/bin/sh"]));
    assert_eq!(inspect[0]["Config"]["Env"], json!(["A=1"]));
    assert_eq!(inspect[0]["Config"]["ExposedPorts"], json!({"8080/tcp": {}}));
    let layer = inspect[0]["RootFS"]["Layers"][0].as_str().unwrap().to_string();
    let dir = e.state.path().join("images/layers/sha256").join(&layer[7..]);
    assert_eq!(std::fs::read_to_string(dir.join("etc/marker")).unwrap(), "imported");
    assert_eq!(std::fs::read_link(dir.join("bin/sh")).unwrap(), Path::new("busybox"));
    // The same tree again, as a tarball: the same layer, stored once.
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar -C {} -cf {}/fs.tar .",
            t.path().join("fs").display(),
            t.path().display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    e.ok(&[
        "image",
        "import",
        t.path().join("fs.tar").to_str().unwrap(),
        "local/busybox:2",
    ]);
    let ls = e.ok(&["image", "ls"]);
    assert!(
        ls.starts_with("REPOSITORY") && ls.contains("local/busybox   1") && ls.contains("local/busybox   2"),
        "{ls}"
    );
    // Removing both leaves no blob or layer behind.
    assert_eq!(
        e.ok(&["image", "rm", "local/busybox:1"]).lines().next(),
        Some("Untagged: local/busybox:1")
    );
    e.ok(&["image", "rm", "local/busybox:2"]);
    for d in ["images/blobs/sha256", "images/layers/sha256"] {
        assert!(
            std::fs::read_dir(e.state.path().join(d)).unwrap().next().is_none(),
            "{d} not empty"
        );
    }
    let err = e.err(&["image", "rm", "local/busybox:2"]);
    assert!(err.contains("No such image: local/busybox:2"), "{err}");
    let err = e.err(&[
        "image",
        "import",
        "-c",
        "RUN make",
        t.path().join("fs").to_str().unwrap(),
    ]);
    assert!(err.contains("invalid --change \"RUN make\""), "{err}");
}

#[test]
fn project_pull_follows_pull_policy_and_pulls_each_image_once() {
    if !root() || !have("docker-registry") || !have("skopeo") {
        return;
    }
    let reg = Registry::start();
    let src = tempfile::tempdir().unwrap();
    oci_layout(
        src.path(),
        &[(
            if cfg!(target_arch = "aarch64") {
                "arm64"
            } else {
                "amd64"
            },
            "app",
        )],
        false,
    );
    reg.push(src.path(), "shop/app:1", false);
    let proj = tempfile::tempdir().unwrap();
    let image = format!("127.0.0.1:{}/shop/app:1", reg.port);
    std::fs::write(
        proj.path().join("compose.yaml"),
        format!("services:\n  web:\n    image: {image}\n  worker:\n    image: {image}\n  local:\n    image: not/pushed:1\n    pull_policy: never\n"),
    )
    .unwrap();
    let e = Env::new();
    let pull = |args: &[&str]| {
        let mut all = vec!["-f", proj.path().join("compose.yaml").to_str().unwrap()]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
        all.extend(args.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        e.run(&refs)
    };
    let o = pull(&["pull"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(stderr.matches(" Pulled").count(), 1, "{stderr}");
    assert!(stderr.contains("local Skipped - pull_policy is never"), "{stderr}");
    let first = serde_json::from_str::<serde_json::Value>(&e.ok(&["image", "inspect", &image])).unwrap()[0]["Metadata"]
        ["StoredAt"]
        .clone();
    // --policy missing: present, so not pulled again.
    let o = pull(&["pull", "--policy", "missing"]);
    assert!(o.status.success() && !String::from_utf8_lossy(&o.stderr).contains("Pulled"));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&e.ok(&["image", "inspect", &image])).unwrap()[0]["Metadata"]
            ["StoredAt"],
        first
    );
    // A service whose image cannot be pulled fails the command, unless ignored.
    std::fs::write(
        proj.path().join("compose.override.yaml"),
        format!("services:\n  broken:\n    image: 127.0.0.1:{}/no/such:1\n", reg.port),
    )
    .unwrap();
    let (base, over) = (
        proj.path().join("compose.yaml"),
        proj.path().join("compose.override.yaml"),
    );
    let files = ["-f", base.to_str().unwrap(), "-f", over.to_str().unwrap()];
    let o = e.run(&[&files[..], &["pull", "broken"]].concat());
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no/such:1"));
    let o = e.run(&[&files[..], &["pull", "--ignore-pull-failures", "broken"]].concat());
    assert!(o.status.success());
}

#[test]
fn credentials_come_from_the_docker_config() {
    if !root() || !have("docker-registry") || !have("skopeo") || !have("htpasswd") {
        return;
    }
    let auth_dir = tempfile::tempdir().unwrap();
    let o = Command::new("htpasswd")
        .args(["-Bbn", "user", "s3cret"])
        .output()
        .unwrap();
    std::fs::write(auth_dir.path().join("htpasswd"), o.stdout).unwrap();
    let reg = Registry::start_with(&format!(
        "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
        auth_dir.path().join("htpasswd").display()
    ));
    let src = tempfile::tempdir().unwrap();
    oci_layout(
        src.path(),
        &[(
            if cfg!(target_arch = "aarch64") {
                "arm64"
            } else {
                "amd64"
            },
            "private",
        )],
        false,
    );
    reg.push_as(src.path(), "private/app:1", false, Some("user:s3cret"));
    let name = format!("127.0.0.1:{}/private/app:1", reg.port);
    let e = Env::new();
    let err = e.err(&["image", "pull", &name]);
    assert!(
        err.contains("private/app:1") && err.to_lowercase().contains("authorized"),
        "{err}"
    );
    // HOME is the test's state directory: ~/.docker/config.json is ours.
    docker_login(&e, reg.port);
    e.ok(&["image", "pull", &name]);
    assert!(e.ok(&["image", "ls"]).contains("private/app"));
}

/// A token server for the registry's bearer auth, on loopback: it grants the scopes asked
/// for only to `user:s3cret`, and signs its JWTs (RS256, the certificate in `x5c`) with
/// openssl.
struct TokenServer {
    port: u16,
    dir: tempfile::TempDir,
}

fn b64url(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn url_decode(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

impl TokenServer {
    fn start() -> TokenServer {
        let dir = tempfile::tempdir().unwrap();
        let o = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=rcompose-test-token",
            ])
            .arg("-keyout")
            .arg(dir.path().join("key.pem"))
            .arg("-out")
            .arg(dir.path().join("cert.pem"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(dir.path().join("cert.pem"))
            .output()
            .unwrap()
            .stdout;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let key = dir.path().join("key.pem");
        std::thread::spawn(move || {
            use std::io::{BufRead, BufReader};
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut first = String::new();
                reader.read_line(&mut first).unwrap();
                let mut authorized = false;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    let basic = {
                        use base64::Engine as _;
                        base64::engine::general_purpose::STANDARD.encode("user:s3cret")
                    };
                    if h.to_ascii_lowercase().starts_with("authorization:") && h.contains(&basic) {
                        authorized = true;
                    }
                }
                let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
                let query = path.split_once('?').map(|q| q.1).unwrap_or("");
                let mut access = Vec::new();
                for kv in query.split('&') {
                    if let Some(v) = kv.strip_prefix("scope=") {
                        let scope = url_decode(v);
                        let parts: Vec<&str> = scope.splitn(3, ':').collect();
                        if parts.len() == 3 && authorized {
                            access.push(json!({"type": parts[0], "name": parts[1], "actions": parts[2].split(',').collect::<Vec<_>>()}));
                        }
                    }
                }
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let x5c = {
                    use base64::Engine as _;
                    base64::engine::general_purpose::STANDARD.encode(&der)
                };
                let header = json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]});
                let claims = json!({"iss": "rcompose-test", "sub": "user", "aud": "rcompose-registry",
                    "exp": now + 300, "nbf": now - 10, "iat": now - 10, "jti": format!("{now}-{}", access.len()), "access": access});
                let input = format!(
                    "{}.{}",
                    b64url(header.to_string().as_bytes()),
                    b64url(claims.to_string().as_bytes())
                );
                let mut sign = Command::new("openssl")
                    .args(["dgst", "-sha256", "-sign"])
                    .arg(&key)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap();
                sign.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
                let sig = sign.wait_with_output().unwrap().stdout;
                let token = format!("{input}.{}", b64url(&sig));
                let body = json!({"token": token, "access_token": token, "expires_in": 300}).to_string();
                let mut s = stream;
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        TokenServer { port, dir }
    }

    fn registry_auth(&self) -> String {
        format!(
            "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: rcompose-registry\n    issuer: rcompose-test\n    rootcertbundle: {}\n",
            self.port,
            self.dir.path().join("cert.pem").display()
        )
    }
}

#[test]
fn token_auth_with_credentials_from_the_docker_config() {
    if !root() || !have("docker-registry") || !have("skopeo") || !have("openssl") {
        return;
    }
    let tokens = TokenServer::start();
    let reg = Registry::start_with(&tokens.registry_auth());
    let src = tempfile::tempdir().unwrap();
    let arch = if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "amd64"
    };
    oci_layout(src.path(), &[(arch, "behind-tokens")], false);
    reg.push_as(src.path(), "tokened/app:1", false, Some("user:s3cret"));
    let name = format!("127.0.0.1:{}/tokened/app:1", reg.port);
    let e = Env::new();
    // Anonymous: the token server grants nothing, the registry refuses.
    let err = e.err(&["image", "pull", &name]);
    assert!(err.contains("tokened/app:1"), "{err}");
    assert_eq!(
        e.snapshot().iter().filter(|(p, _)| p.starts_with("blobs")).count(),
        0,
        "nothing kept"
    );
    docker_login(&e, reg.port);
    e.ok(&["image", "pull", &name]);
    assert!(e.ok(&["image", "ls"]).contains("tokened/app"));
}

/// `~/.docker/config.json` (HOME is the test's state directory) with `user:s3cret` for
/// the registry on `port`.
fn docker_login(e: &Env, port: u16) {
    std::fs::create_dir_all(e.state.path().join(".docker")).unwrap();
    let auth = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode("user:s3cret")
    };
    std::fs::write(
        e.state.path().join(".docker/config.json"),
        json!({"auths": {format!("127.0.0.1:{port}"): {"auth": auth}}}).to_string(),
    )
    .unwrap();
}
