//! Any bytes as sandbox.toml: load, validate and plan must return a result or a list of
//! diagnostics, and rendering those diagnostics must not panic either.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use devbox::config::{self, LoadOptions};
use libfuzzer_sys::fuzz_target;

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("devbox-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("Containerfile"), "FROM scratch\n").unwrap();
        d
    })
}

fuzz_target!(|data: &[u8]| {
    let d = dir();
    let file = d.join("sandbox.toml");
    std::fs::write(&file, data).unwrap();
    let opts = LoadOptions {
        file: Some(file),
        cwd: d.clone(),
        ..Default::default()
    };
    match config::load(&opts) {
        Ok(loaded) => {
            let plan = devbox::plan::plan(&loaded.config);
            let _ = devbox::render::compose::render(&plan);
            let _ = devbox::render::kube::render(&plan);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
