//! The engine's one error type: every variant says what is wrong and what to do about it.

use std::path::PathBuf;

/// Result alias used across the engine.
pub type Result<T> = std::result::Result<T, EngineError>;

/// Everything that can go wrong inside the engine, each with a message a musician or a script can act on.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A file the model needs is not there.
    #[error("model file `{}` is missing: {hint}", path.display())]
    MissingFile {
        /// The path that was looked for.
        path: PathBuf,
        /// How to get the file.
        hint: String,
    },
    /// A file exists but could not be read.
    #[error("cannot read `{}`: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written (the folder is missing or read-only, the disk is full, …).
    #[error("cannot write `{}`: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A config file that does not parse or describes something inconsistent.
    #[error("config `{}` is not usable: {message} (is this an ACE-Step 1.5 checkpoint?)", path.display())]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A weight file that is not a readable safetensors / torch file.
    #[error("weights `{}` are corrupt or not in the expected format: {message}; re-download the model", path.display())]
    CorruptWeights {
        /// The weight file.
        path: PathBuf,
        /// What the reader said.
        message: String,
    },
    /// A tensor the model needs is absent from its weight file.
    #[error("tensor `{name}` is missing from `{}` (is this an ACE-Step 1.5 checkpoint?)", file.display())]
    MissingTensor {
        /// Full checkpoint key.
        name: String,
        /// The weight file searched.
        file: PathBuf,
    },
    /// A tensor has the wrong shape.
    #[error(
        "tensor `{name}`: expected shape {expected:?}, found {found:?} (is this an ACE-Step 1.5 checkpoint with a
    #matching config.json?)"
    )]
    TensorShape {
        /// Full checkpoint key, or the name of an input.
        name: String,
        /// The shape the config implies.
        expected: Vec<usize>,
        /// The shape that was found.
        found: Vec<usize>,
    },
    /// A checkpoint variant this engine does not run.
    #[error("unsupported model variant: {0}")]
    UnsupportedModel(String),
    /// NaN or infinite values in an input.
    #[error("{what} contains NaN or infinite values; check the source audio or inputs")]
    NonFinite {
        /// What input was checked.
        what: String,
    },
    /// An argument outside what the engine accepts.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The tokenizer could not load or encode.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The VRAM budget cannot hold what the model or a job needs at once; the message states the minimum.
    #[error("VRAM budget too small: {0}")]
    BudgetTooSmall(String),
    /// The job was cancelled by the caller.
    #[error("cancelled")]
    Cancelled,
    /// A remote server (engine/src/remote) could not be reached, refused the job, failed it or answered
    /// something that is not the ACE-Step 1.5 API; the message names the server and what to do.
    #[error("{0}")]
    Remote(String),
    /// An error from the tensor library.
    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

impl EngineError {
    /// Builds an [`EngineError::InvalidInput`] from anything printable.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidInput(message.into())
    }

    /// A model file that could not be read: [`EngineError::MissingFile`] with `hint` when it is not there, else
    /// [`EngineError::Io`].
    pub fn unreadable_model_file(path: &std::path::Path, source: std::io::Error, hint: &str) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            Self::MissingFile { path: path.to_path_buf(), hint: hint.into() }
        } else {
            Self::Io { path: path.to_path_buf(), source }
        }
    }
}
