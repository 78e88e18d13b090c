//! What can go wrong while hosting a CLAP plugin (docs/plugin-hosting.md §3d).

use std::path::PathBuf;

/// A failure of the CLAP host harness; each message names the bundle step that failed.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The `.clap` file could not be loaded.
    #[error("CLAP host: cannot load {path}: {message} (build it with `cargo xtask bundle retake --release`)")]
    Load {
        /// The bundle.
        path: PathBuf,
        /// The loader's message.
        message: String,
    },
    /// The plugin could not be created, activated or started.
    #[error("CLAP host: {step} failed: {message}")]
    Lifecycle {
        /// `instantiate`, `activate`, `start_processing`, `process`.
        step: &'static str,
        /// The library's message.
        message: String,
    },
    /// The plugin lacks an extension the harness needs.
    #[error("CLAP host: the plugin does not implement the `{0}` extension")]
    MissingExtension(&'static str),
    /// A parameter was not found or rejected a value.
    #[error("CLAP host: parameter {0}")]
    Param(String),
    /// Saving or loading the state failed.
    #[error("CLAP host: state {0}")]
    State(String),
    /// The harness was used out of order or with buffers that do not fit.
    #[error("CLAP host: {0}")]
    Usage(String),
}

/// The harness's result type.
pub type Result<T> = std::result::Result<T, HostError>;
