//! What the engine-backed commands share: connecting to the engine the configuration and
//! flags choose, with the limits `--engine-timeout` sets on every call, and an async
//! runtime to talk to it.

use crate::config::Loaded;
use crate::engine::{self, Deadlined, Endpoint, Limits};

/// A connected engine; a `podman system service` devbox started lives as long as this.
pub(super) struct Connected {
    pub engine: Deadlined,
    pub endpoint: Endpoint,
    _guard: engine::ServiceGuard,
}

/// The engine limits of this run (`--engine-timeout`), set once before any command runs.
static LIMITS: std::sync::OnceLock<Limits> = std::sync::OnceLock::new();

pub(super) fn set_limits(limits: Limits) {
    let _ = LIMITS.set(limits);
}

pub(super) fn limits() -> Limits {
    LIMITS.get().copied().unwrap_or_default()
}

pub(super) fn connect(loaded: &Loaded) -> anyhow::Result<Connected> {
    connect_saying(loaded, true)
}

/// As [`connect`], without a word on stderr about the engine chosen: `exec` passes its
/// command's stderr on as it is.
pub(super) fn connect_quietly(loaded: &Loaded) -> anyhow::Result<Connected> {
    connect_saying(loaded, false)
}

fn connect_saying(loaded: &Loaded, say: bool) -> anyhow::Result<Connected> {
    if loaded.config.project.engine == crate::config::model::EngineChoice::Native {
        if let Some(why) = loaded.config.project.engine_reason.as_ref().filter(|_| say) {
            eprintln!("devbox: {why}");
        }
        let native = engine::native::Native::new();
        let endpoint = Endpoint {
            kind: engine::Kind::Native,
            socket: native.runtime_root().to_path_buf(),
            reason: "engine native".into(),
        };
        return Ok(Connected {
            engine: Deadlined::new(
                engine::AnyEngine::Native(native),
                &endpoint.socket,
                limits(),
            ),
            endpoint,
            _guard: engine::ServiceGuard::none(),
        });
    }
    let (engine, endpoint, guard) = engine::connect(loaded.config.project.engine, limits())?;
    Ok(Connected {
        engine,
        endpoint,
        _guard: guard,
    })
}

pub(super) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
