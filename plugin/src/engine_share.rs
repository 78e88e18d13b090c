//! One engine per host process: every Retake instance in the process is a client of the same engine thread (one
//! model load, one VRAM budget, one queue whose jobs run in order; engine/src/runtime/thread.rs `EngineHandle`). The
//! engine starts with the first client, at an instance's first Generate, and stops when the last instance's client
//! is dropped, on that instance's job worker, which the host never waits for (src/unload.rs). An instance whose
//! settings load another model than the one loaded gets it reloaded before its job, and every instance's status line
//! says so.

use std::sync::{Mutex, PoisonError};

use retake_engine::runtime::{Engine, EngineConfig, EngineHandle, EngineStats, WeakEngine};

/// The engine the instances of this process share.
pub static SHARED_ENGINE: EngineShare = EngineShare::new();

/// Hands out clients of one engine, starting it when none runs; holds it only weakly, so the engine stops with its
/// last client.
pub struct EngineShare {
    engine: Mutex<Option<WeakEngine>>,
}

impl EngineShare {
    /// A share with no engine yet.
    pub const fn new() -> Self {
        Self { engine: Mutex::new(None) }
    }

    /// A client of the shared engine whose jobs run with `config`; the engine is started when none runs.
    pub fn connect(&self, config: EngineConfig) -> EngineHandle {
        let mut engine = self.engine.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = engine.as_ref().and_then(|weak| weak.connect(config.clone())) {
            return client;
        }
        let client = Engine::spawn(config);
        *engine = Some(client.downgrade());
        client
    }

    /// The counters of the engine started last (as it stopped, when it has), or `None` before the first one.
    pub fn stats(&self) -> Option<EngineStats> {
        self.engine.lock().unwrap_or_else(PoisonError::into_inner).as_ref().map(WeakEngine::stats)
    }
}

impl Default for EngineShare {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use retake_engine::model_source::ModelSource;

    use super::*;

    fn fixture() -> EngineConfig {
        let model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny-acestep");
        EngineConfig { model: ModelSource::Dir(model).into(), ..EngineConfig::default() }
    }

    #[test]
    fn instances_get_clients_of_one_engine_that_stops_with_the_last() {
        let share = EngineShare::new();
        assert_eq!(share.stats(), None);
        let first = share.connect(fixture());
        let second = share.connect(fixture());
        assert_eq!(first.stats().clients, 2, "the second instance joined the first one's engine");
        assert_eq!(share.stats().map(|stats| stats.clients), Some(2));
        let weak = first.downgrade();
        drop((first, second));
        assert!(weak.connect(fixture()).is_none(), "the engine outlived its last client");
        assert_eq!(share.stats().map(|stats| stats.clients), Some(0));
        // A later instance starts a fresh engine.
        let third = share.connect(fixture());
        assert_eq!(third.stats().clients, 1);
    }
}
