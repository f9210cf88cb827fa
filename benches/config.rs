//! Load + validate + plan, and audit, of a generated 200-service sandbox.toml, and the
//! same at 10,000 services (where a step that is not linear shows at once).
//! Run: cargo bench --bench config

use std::fmt::Write;

use criterion::{criterion_group, criterion_main, Criterion};
use devbox::config::{self, LoadOptions};

/// A project with `n` services, each with ports, volumes, env, limits and a healthcheck,
/// chained with depends_on, plus one probe per service.
pub fn generated(n: usize) -> String {
    let mut s = String::from("[project]\nname = \"bench\"\n\n[data.dirs]\nlogs = {}\nauth = { mode = \"0700\" }\n\n[data.files.\"auth/token\"]\nsecret = \"hex:32\"\n\n[images.app]\ncontainerfile = \"Containerfile\"\nargs = { V = \"1\" }\n\n[volumes.shared]\n\n[networks.back]\ninternal = true\n\n");
    for i in 0..n {
        let _ = write!(
            s,
            "[services.svc{i}]\nimage = \"app\"\ncommand = [\"/bin/sh\", \"-c\", \"exec nc -lk -p 8080\"]\nuser = \"1000:1000\"\nenv = {{ PORT = \"8080\", INDEX = \"{i}\" }}\nports = [\"127.0.0.1:{}:8080\"]\nvolumes = [\"./.data/logs:/logs\", \"shared:/shared:ro\"]\ntmpfs = [\"/tmp:size=16m\"]\nmemory = \"64m\"\ncpus = 0.25\npids_limit = 64\nnetworks = [\"back\"]\nhealthcheck = {{ tcp = 8080, interval = \"1s\", timeout = \"1s\", retries = 5 }}\n",
            20000 + i
        );
        if i > 0 {
            let _ = writeln!(s, "depends_on = {{ svc{} = \"healthy\" }}", i - 1);
        }
        let _ = write!(
            s,
            "\n[[probes]]\nname = \"svc{i} answers\"\ntcp = \"127.0.0.1:{}\"\nexpect = \"/ok|ready/\"\n\n",
            20000 + i
        );
    }
    s
}

/// `n` lean services (the full ones above make 10,000 larger than devbox reads), each with
/// three audit findings to locate: root user, a port on every interface, no healthcheck.
pub fn lean(n: usize) -> String {
    let mut s = String::from(
        "[project]\nname = \"big\"\n\n[images.app]\ncontainerfile = \"Containerfile\"\n\n",
    );
    for i in 0..n {
        let _ = write!(
            s,
            "[services.svc{i}]\nimage = \"app\"\nuser = \"0:0\"\nports = [\"0.0.0.0:{}:8080\"]\n\n",
            20000 + i
        );
    }
    s
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sandbox.toml"), generated(200)).unwrap();
    std::fs::write(dir.path().join("Containerfile"), "FROM scratch\n").unwrap();
    let opts = LoadOptions {
        file: None,
        cwd: dir.path().to_path_buf(),
        ..Default::default()
    };
    // Fail loudly rather than benchmark an error path.
    let loaded = config::load(&opts).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.config.services.len(), 200);

    c.bench_function("load+validate+plan 200 services", |b| {
        b.iter(|| {
            let loaded = config::load(&opts).unwrap();
            devbox::plan::plan(&loaded.config)
        })
    });
    c.bench_function("audit 200 services", |b| {
        b.iter(|| devbox::audit::audit(&loaded.config))
    });
}

/// 10,000 services: load+validate+plan, and the audit with every finding located in the
/// file, as `devbox check` prints its summary and `devbox audit` its report.
fn bench_10k(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sandbox.toml"), lean(10_000)).unwrap();
    std::fs::write(dir.path().join("Containerfile"), "FROM scratch\n").unwrap();
    let opts = LoadOptions {
        file: None,
        cwd: dir.path().to_path_buf(),
        ..Default::default()
    };
    let loaded = config::load(&opts).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.config.services.len(), 10_000);
    let mut g = c.benchmark_group("10000 services");
    g.sample_size(10);
    g.bench_function("load+validate+plan", |b| {
        b.iter(|| {
            let loaded = config::load(&opts).unwrap();
            devbox::plan::plan(&loaded.config)
        })
    });
    g.bench_function("audit, findings located", |b| {
        b.iter(|| {
            devbox::audit::audit(&loaded.config)
                .into_iter()
                .map(|f| config::locate_key(&loaded, &f.key, config::Point::Key))
                .collect::<Vec<_>>()
        })
    });
    g.finish();
}

criterion_group!(benches, bench, bench_10k);
criterion_main!(benches);
