//! The ACE-Step 1.5 model port: one module per checkpoint component (spec sections in each module doc).

pub mod adaln;
pub mod audio_tokenizer;
pub mod checkpoint;
pub mod condition;
pub mod config;
pub mod dit;
pub mod exp;
pub mod head_norm;
pub mod layers;
pub mod linear;
pub mod masked_softmax;
#[cfg(target_arch = "x86_64")]
pub mod panel_attention;
#[cfg(target_arch = "x86_64")]
pub mod panels;
pub mod prompt;
pub mod resident;
pub mod scheduler;
pub mod silence;
pub mod swiglu;
pub mod text_encoder;
pub mod vae;
pub mod weights;
