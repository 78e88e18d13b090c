//! The three tasks Retake offers — cover, repaint, text2music — assembled from the model components
//! (docs/acestep-model.md §9, §10, §13). `request` holds the API types.

mod components;
mod conditioning;
mod denoise;
mod generator;
pub mod guidance;
pub mod masks;
mod noise;
mod output;
pub mod request;
pub mod timbre;

pub(crate) use components::Components;
pub use conditioning::{DitCondition, EncodedPrompt};
pub use denoise::{denoise, DenoisePlan, Injection, KeepOutside, Phase};
pub use generator::Generator;
pub(crate) use generator::{checked_source, pad_audio, studio_padding, Splice};
