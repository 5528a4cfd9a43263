//! Runtime benchmark (run by scripts/bench-runtime.sh, not by CI): the time from asking
//! for a container to its workload's `execve` (create-to-exec), and a whole
//! create-start-wait-remove cycle of `busybox true`, over many runs.
//!
//!   bench_runtime <rcompose binary> <busybox rootfs dir> <runs>

use images::{import, Store};
use runtime::cgroups::Limits;
use runtime::spec::{ContainerSpec, IdMap, Process};
use runtime::{process, wait_gone, Runtime};
use std::path::Path;
use std::time::{Duration, Instant};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (exe, rootfs, runs) = (
        Path::new(&args[1]),
        Path::new(&args[2]),
        args[3].parse::<usize>().unwrap_or(50),
    );
    let state = tempfile::tempdir().unwrap();
    let store = Store::open(state.path()).unwrap();
    let rec = import::import(&store, rootfs, None, &[]).unwrap();
    let layers: Vec<_> = rec.layers.iter().map(|l| store.layer_dir(&l.diff_id)).collect();
    let rt = Runtime::new(exe, "rcompose-bench").unwrap();
    // The host's user namespace, then one of the container's own (`userns_mode: auto`).
    let modes = [
        ("", None),
        (
            " (userns)",
            Some(IdMap {
                uid: 1_900_000_000,
                gid: 1_900_000_000,
                size: 65536,
            }),
        ),
    ];
    for (label, userns) in modes {
        let (ctx, cycle) = bench(&rt, &layers, state.path(), runs, userns);
        println!("rcompose create-to-exec{label} median {ctx:.2} ms");
        println!("rcompose full cycle{label}     median {cycle:.2} ms");
    }
    rt.remove_all_cgroups();
}

/// (create-to-exec, whole cycle) medians in milliseconds.
fn bench(rt: &Runtime, layers: &[std::path::PathBuf], state: &Path, runs: usize, userns: Option<IdMap>) -> (f64, f64) {
    let (mut create_to_exec, mut cycle) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let spec = ContainerSpec {
            userns,
            id: format!("b{i}"),
            name: format!("bench-{i}"),
            hostname: "bench".into(),
            layers: layers.to_vec(),
            dir: state.join("containers").join(format!("b{i}")),
            process: Process {
                args: vec!["/bin/busybox".into(), "true".into()],
                env: vec!["PATH=/bin".into()],
                cwd: "/".into(),
                capabilities: process::capabilities(&[], &[], false).unwrap(),
                ..Default::default()
            },
            hosts: "127.0.0.1 localhost\n".into(),
            resolv_conf: String::new(),
            shm_size: 64 << 20,
            ..Default::default()
        };
        let t0 = Instant::now();
        let c = rt.start(&spec, &Limits::default()).unwrap();
        create_to_exec.push(t0.elapsed().as_secs_f64() * 1e3);
        wait_gone(c.pid, Duration::from_secs(10));
        let left = rt.cleanup(&c);
        assert!(left.is_empty(), "{left:?}");
        std::fs::remove_dir_all(&c.dir).unwrap();
        cycle.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    (median(create_to_exec), median(cycle))
}
