//! Retake's engine: ACE-Step 1.5 ported to candle — the model as its spec draws it ([`model`]), the kernels that
//! run it fast ([`kernels`]), pipelines (cover, repaint, text2music), the weights' residency inside a VRAM budget
//! ([`residency`]) and a background job runtime. No plugin code lives here.

pub mod audio;
pub mod bench;
pub mod error;
pub mod kernels;
pub mod model;
pub mod model_source;
pub mod pipeline;
pub mod remote;
pub mod residency;
pub mod runtime;
pub mod serve;
#[cfg(test)]
mod test_util;

pub use error::{EngineError, Result};
