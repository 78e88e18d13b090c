//! The ACE-Step VAE, diffusers `AutoencoderOobleck` (docs/acestep-model.md §8, §12, §14): audio ↔ 25 Hz latents, run in
//! f32 on channels-last activations, with overlap-discard tiling for long audio.

mod conv;
mod decoder;
mod encoder;
mod residual;
mod snake;
mod tiling;

use std::path::Path;

use candle_core::{DType, Device, Tensor};

pub(crate) use conv::held_tap_dtype;
pub use decoder::VaeDecoder;
pub use encoder::VaeEncoder;
use tiling::Tile;
pub use tiling::{TileProgress, Tiling};

use crate::error::{EngineError, Result};
use crate::model::config::VaeConfig;

/// Checks the config before any width is derived from it (hand-built configs skip `Checkpoint::open`).
fn check_geometry(cfg: &VaeConfig) -> Result<()> {
    cfg.validate(Path::new("vae/config.json"))
}

/// Width multiple of block boundary `level`: diffusers prefixes `channel_multiples` with 1.
fn multiple(cfg: &VaeConfig, level: usize) -> usize {
    level.checked_sub(1).map_or(1, |i| cfg.channel_multiples[i])
}

/// What the encoder and the decoder share about latent frames: the latent channels, the audio samples per frame,
/// and the device their weights and activations live on.
struct Framing {
    latent_channels: usize,
    hop: usize,
    /// Whether every stride is even, so that T latent frames are exactly `hop·T` samples both ways, which tiling
    /// relies on to cut cores (all ACE-Step VAEs; odd strides run untiled only).
    exact_hop: bool,
    device: Device,
}

impl Framing {
    fn new(cfg: &VaeConfig, device: &Device) -> Self {
        Self {
            latent_channels: cfg.decoder_input_channels,
            hop: cfg.hop(),
            exact_hop: cfg.downsampling_ratios.iter().all(|s| s % 2 == 0),
            device: device.clone(),
        }
    }

    /// The tiles of a job of `frames` latent frames; more than one needs an exact hop.
    fn tiles(&self, tiling: Tiling, frames: usize) -> Result<Vec<Tile>> {
        let tiles = tiling.plan(frames)?;
        if tiles.len() > 1 && !self.exact_hop {
            return Err(EngineError::UnsupportedModel(
                "tiled VAE runs need even downsampling_ratios; run this VAE untiled".into(),
            ));
        }
        Ok(tiles)
    }

    /// `x` on the VAE's device, in f32.
    fn input(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.to_device(&self.device)?.to_dtype(DType::F32)?)
    }
}

/// `[batch, channels, length]` of `x`, checking the rank, the channel count and a non-empty batch.
fn input_dims(x: &Tensor, what: &str, channels: usize) -> Result<(usize, usize)> {
    let &[batch, found, length] = x.dims() else {
        return Err(EngineError::invalid(format!(
            "{what} must be [batch, {channels}, length], got shape {:?}",
            x.dims()
        )));
    };
    if found != channels || batch == 0 {
        return Err(EngineError::invalid(format!(
            "{what} must be [batch ≥ 1, {channels}, length], got shape {:?}",
            x.dims()
        )));
    }
    Ok((batch, length))
}

/// [`EngineError::NonFinite`] if `x` holds a NaN or an infinity (`0·x` is 0 exactly when `x` is finite).
fn check_finite(x: &Tensor, what: &str) -> Result<()> {
    let probe = x.affine(0.0, 0.0)?.sum_all()?.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?;
    if probe != 0.0 {
        return Err(EngineError::NonFinite { what: what.into() });
    }
    Ok(())
}

/// A fast geometry with the Oobleck structure for unit tests: 4 latent channels, hop 12.
#[cfg(test)]
fn small_config() -> VaeConfig {
    VaeConfig {
        audio_channels: 2,
        channel_multiples: vec![1, 2],
        decoder_channels: 4,
        decoder_input_channels: 4,
        downsampling_ratios: vec![2, 6],
        encoder_hidden_size: 8,
        sampling_rate: 48_000,
    }
}
