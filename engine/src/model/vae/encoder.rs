//! The Oobleck encoder (docs/acestep-model.md §8): audio `[B, 2, N]` → posterior mean `[B, 64, ⌊N/1920⌋]` (DiffSynth
//! 2.1.12 and the fixtures use the mean; docs/acestep-model.md §13), untiled or tiled.

use std::ops::ControlFlow;

use candle_core::{DType, Tensor};

use super::conv::{Conv1d, ConvSpec};
use super::residual::ResidualUnit;
use super::snake::Snake;
use super::tiling::{run_tiles, Poll, Tile, TileProgress, Tiling};
use super::{check_finite, check_geometry, input_dims, multiple, Framing};
use crate::error::{EngineError, Result};
use crate::model::config::VaeConfig;
use crate::model::weights::Weights;

/// `encoder.block.{i}`: three residual units, Snake, ÷stride Conv1d (its bias left to the next layer's ops).
struct EncoderBlock {
    res_units: Vec<ResidualUnit>,
    snake1: Snake,
    conv1: Conv1d,
}

impl EncoderBlock {
    fn load(vb: &Weights, dims: (usize, usize), stride: usize, input_bias: Option<Tensor>) -> Result<Self> {
        let (input, output) = dims;
        Ok(Self {
            res_units: ResidualUnit::load_block(vb, input, input_bias)?,
            snake1: Snake::load(&vb.pp("snake1"), input, None)?,
            conv1: Conv1d::load(&vb.pp("conv1"), ConvSpec::downsample(input, output, stride), true)?,
        })
    }

    /// Consumes its input so that it is freed as soon as the residual units have used it.
    fn forward(&self, x: Tensor, poll: Poll) -> Result<Tensor> {
        let h = self.res_units.iter().try_fold(x, |h, unit| {
            poll()?;
            unit.forward(h)
        })?;
        let pad = self.conv1.padding();
        self.conv1.forward_padded(&self.snake1.forward(&h, pad, pad)?)
    }
}

/// The VAE encoder with weight norm folded; activations run in f32 whatever the weights' dtype.
pub struct VaeEncoder {
    conv1: Conv1d,
    blocks: Vec<EncoderBlock>,
    snake1: Snake,
    conv2: Conv1d,
    audio_channels: usize,
    framing: Framing,
}

impl VaeEncoder {
    /// Loads `encoder.*` from the VAE weights (`vae/diffusion_pytorch_model.safetensors`), with the widths of
    /// diffusers `OobleckEncoder`: block i maps `hidden·cm[i]` → `hidden·cm[i+1]` (cm prefixed by 1).
    ///
    /// The encoder always computes in f32 with f32 weights, whatever the model dtype and the CPU precision: source
    /// latents feed the audio tokenizer's discrete FSQ codes and the repaint context, and bf16 flips codes (measured
    /// on the fixture model: bf16 activations on the GPU; bf16 weights on the CPU flipped one in `e2e_cover_full`
    /// with the widening kernels, engine/tests/parity `parity_as_on_an_avx2_cpu`), so a cover's structure would
    /// depend on the device.
    pub fn load(cfg: &VaeConfig, weights: &Weights) -> Result<Self> {
        check_geometry(cfg)?;
        let vb = weights.with_dtype(DType::F32).pp("encoder");
        let hidden = cfg.encoder_hidden_size;
        let width = |level: usize| hidden * multiple(cfg, level);
        // Each conv's bias is applied by the ops after it (see `ResidualUnit`), so it is carried to the next layer.
        let mut conv1 = Conv1d::load(&vb.pp("conv1"), ConvSpec::same(cfg.audio_channels, hidden, 7, 1), true)?;
        let mut carried_bias = conv1.take_bias();
        let mut blocks = Vec::with_capacity(cfg.downsampling_ratios.len());
        for (i, &stride) in cfg.downsampling_ratios.iter().enumerate() {
            let dims = (width(i), width(i + 1));
            let mut block = EncoderBlock::load(&vb.pp("block").pp(i), dims, stride, carried_bias.take())?;
            carried_bias = block.conv1.take_bias();
            blocks.push(block);
        }
        let deepest = width(cfg.downsampling_ratios.len());
        Ok(Self {
            conv1,
            blocks,
            snake1: Snake::load(&vb.pp("snake1"), deepest, carried_bias)?,
            conv2: Conv1d::load(&vb.pp("conv2"), ConvSpec::same(deepest, hidden, 3, 1), true)?,
            audio_channels: cfg.audio_channels,
            framing: Framing::new(cfg, weights.device()),
        })
    }

    /// Audio samples per latent frame.
    pub fn hop(&self) -> usize {
        self.framing.hop
    }

    /// Encodes `[batch, audio_channels, N]` 48 kHz audio to the posterior mean `[batch, latent_channels, T]`
    /// (T = ⌊N/hop⌋ for even strides) in one pass.
    pub fn encode(&self, audio: &Tensor) -> Result<Tensor> {
        self.encode_tiled(audio, Tiling::UNTILED, &mut |_, _| ControlFlow::Continue(()))
    }

    /// [`VaeEncoder::encode`] in overlap-discard tiles of `tiling` latent frames (windows aligned to the hop),
    /// reporting each finished tile to `progress`, which can cancel between tiles ([`EngineError::Cancelled`]).
    pub fn encode_tiled(&self, audio: &Tensor, tiling: Tiling, progress: TileProgress) -> Result<Tensor> {
        Ok(self.moments(audio, tiling, progress)?.narrow(1, 0, self.framing.latent_channels)?)
    }

    /// The raw encoder output `[batch, 2·latent_channels, T]`: posterior mean ‖ scale (std = softplus(scale)
    /// + 1e-4), untiled.
    pub fn encode_moments(&self, audio: &Tensor) -> Result<Tensor> {
        self.moments(audio, Tiling::UNTILED, &mut |_, _| ControlFlow::Continue(()))
    }

    fn moments(&self, audio: &Tensor, tiling: Tiling, progress: TileProgress) -> Result<Tensor> {
        let (_, samples) = input_dims(audio, "audio for the VAE encoder", self.audio_channels)?;
        if samples < self.framing.hop {
            return Err(EngineError::invalid(format!(
                "audio for the VAE encoder has {samples} samples, less than one latent frame ({} samples); \
                 pass a longer clip",
                self.framing.hop
            )));
        }
        check_finite(audio, "audio for the VAE encoder")?;
        let frames = samples / self.framing.hop;
        let tiles = self.framing.tiles(tiling, frames)?;
        let audio = self.framing.input(audio)?;
        // The last window runs to the true end, so its edge matches the untiled encode.
        let rows = |tile: &Tile| {
            let end = if tile.window.end == frames { samples } else { tile.window.end * self.framing.hop };
            tile.window.start * self.framing.hop..end
        };
        run_tiles(&audio, &tiles, 1, rows, |x, poll| self.forward(x, poll), progress)
    }

    /// Channels-last `[samples, audio_channels]` → `[frames, 2·latent_channels]`, polling between layers.
    fn forward(&self, audio: &Tensor, poll: Poll) -> Result<Tensor> {
        let h = self.conv1.forward(audio)?;
        let h = self.blocks.iter().try_fold(h, |h, block| block.forward(h, poll))?;
        poll()?;
        let pad = self.conv2.padding();
        self.conv2.forward_padded(&self.snake1.forward(&h, pad, pad)?)
    }
}

crate::model::resident::resident_fields!(EncoderBlock { res_units, snake1, conv1 });
crate::model::resident::resident_fields!(VaeEncoder { conv1, blocks, snake1, conv2 });

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::vae::small_config;
    use candle_core::Device;

    fn audio(samples: usize) -> Tensor {
        let values: Vec<f32> = (0..2 * samples).map(|i| ((i as f32) * 0.013).sin() * 0.5).collect();
        Tensor::from_vec(values, (1, 2, samples), &Device::Cpu).unwrap()
    }

    fn encoder() -> VaeEncoder {
        VaeEncoder::load(&small_config(), &Weights::random(4, DType::F32, &Device::Cpu)).unwrap()
    }

    #[test]
    fn encode_returns_the_first_half_of_the_moments() {
        let enc = encoder();
        let x = audio(12 * 9 + 5);
        let moments = enc.encode_moments(&x).unwrap();
        assert_eq!(moments.dims(), [1, 8, 9]);
        let mean = enc.encode(&x).unwrap();
        let diff = (mean - moments.narrow(1, 0, 4).unwrap()).unwrap().abs().unwrap().sum_all().unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
    }

    #[test]
    fn tiled_encode_equals_untiled() {
        let enc = encoder();
        let x = audio(12 * 150 + 7);
        let whole = enc.encode(&x).unwrap();
        let mut tiles = 0;
        let tiled = enc
            .encode_tiled(&x, Tiling { chunk: 60, overlap: 20 }, &mut |done, total| {
                tiles = total;
                assert!(done <= total);
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(tiles, 8);
        assert_eq!(tiled.dims(), [1, 4, 150]);
        let diff = (tiled - whole).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
    }

    #[test]
    fn bad_audio_is_rejected_with_typed_errors() {
        let enc = encoder();
        let mono = Tensor::zeros((1, 1, 100), DType::F32, &Device::Cpu).unwrap();
        assert!(matches!(enc.encode(&mono), Err(EngineError::InvalidInput(m)) if m.contains("[batch ≥ 1, 2, length]")));
        assert!(matches!(enc.encode(&audio(11)), Err(EngineError::InvalidInput(m)) if m.contains("11 samples")));
        let mut values = audio(50).flatten_all().unwrap().to_vec1::<f32>().unwrap();
        values[60] = f32::INFINITY;
        let inf = Tensor::from_vec(values, (1, 2, 50), &Device::Cpu).unwrap();
        assert!(matches!(enc.encode(&inf), Err(EngineError::NonFinite { .. })));
    }
}
