//! ACE-Step 1.5 as docs/acestep-model.md draws it: one module per checkpoint component, each citing its section.
//! A model file picks a kernel from [`crate::kernels`] where a device has a faster way, and never implements one.

pub mod adaln;
pub mod audio_tokenizer;
pub mod checkpoint;
pub mod condition;
pub mod config;
pub mod dit;
pub mod layers;
pub mod linear;
pub mod lora;
pub mod prompt;
pub mod resident;
pub mod scheduler;
pub mod silence;
pub mod text_encoder;
pub mod vae;
pub mod variant;
pub mod weights;
