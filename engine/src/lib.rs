//! Retake's engine: ACE-Step 1.5 ported to candle — model components, pipelines (cover, repaint,
//! text2music), a background job runtime and a VRAM budget. No plugin code lives here.

pub mod audio;
pub mod bench;
pub mod device_memory;
pub mod error;
pub mod model;
pub mod model_source;
pub mod pipeline;
pub mod runtime;

pub use error::{EngineError, Result};
