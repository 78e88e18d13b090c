//! The background engine: one thread that owns the model and runs jobs one at a time, driven through cloneable
//! [`EngineHandle`]s (one per client, several clients sharing one engine) whose calls never block for longer than a
//! channel send.

mod clients;
mod events;
mod parse;
mod thread;

pub use events::{Event, JobId, Take};
pub use parse::parse_size;
pub use thread::{
    panic_message, DeviceChoice, Engine, EngineConfig, EngineHandle, EngineStats, SubmitError, WeakEngine,
};
