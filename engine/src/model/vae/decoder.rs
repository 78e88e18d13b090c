//! The Oobleck decoder (docs/acestep-model.md §8): latents `[B, 64, T]` → audio `[B, 2, 1920·T]`, untiled or tiled.

use std::ops::ControlFlow;

use candle_core::Tensor;

use super::conv::{Conv1d, ConvSpec, ConvTranspose1d};
use super::residual::ResidualUnit;
use super::snake::Snake;
use super::tiling::{run_tiles, Poll, TileProgress, Tiling};
use super::{check_finite, check_geometry, input_dims, multiple, Framing};
use crate::error::{EngineError, Result};
use crate::model::config::VaeConfig;
use crate::model::weights::Weights;

/// `decoder.block.{i}`: Snake, ×stride ConvTranspose1d (its bias added by the first residual unit), three
/// residual units.
struct DecoderBlock {
    snake1: Snake,
    conv_t1: ConvTranspose1d,
    res_units: Vec<ResidualUnit>,
}

impl DecoderBlock {
    fn load(vb: &Weights, dims: (usize, usize), stride: usize, input_bias: Option<Tensor>) -> Result<Self> {
        let (input, output) = dims;
        let mut conv_t1 = ConvTranspose1d::load(&vb.pp("conv_t1"), input, output, stride)?;
        Ok(Self {
            snake1: Snake::load(&vb.pp("snake1"), input, input_bias)?,
            res_units: ResidualUnit::load_block(vb, output, conv_t1.take_bias())?,
            conv_t1,
        })
    }

    /// Consumes its input so that it is freed as soon as the upsampling conv has used it.
    fn forward(&self, x: Tensor, poll: Poll) -> Result<Tensor> {
        let pad = ConvTranspose1d::PADDING;
        let h = self.conv_t1.forward_padded(&self.snake1.forward(&x, pad, pad)?)?;
        drop(x);
        self.res_units.iter().try_fold(h, |h, unit| {
            poll()?;
            unit.forward(h)
        })
    }
}

/// The VAE decoder with weight norm folded; activations run in f32 whatever the weights' dtype.
pub struct VaeDecoder {
    /// `decoder.conv1`; its bias is applied by the first block's Snake.
    conv1: Conv1d,
    blocks: Vec<DecoderBlock>,
    snake1: Snake,
    /// `decoder.conv2`, without bias.
    conv2: Conv1d,
    framing: Framing,
}

impl VaeDecoder {
    /// Loads `decoder.*` from the VAE weights (`vae/diffusion_pytorch_model.safetensors`), with the widths of
    /// diffusers `OobleckDecoder`: conv1 → `decoder_channels·cm[last]`, blocks over the reversed strides.
    pub fn load(cfg: &VaeConfig, weights: &Weights) -> Result<Self> {
        check_geometry(cfg)?;
        let vb = weights.pp("decoder");
        let width = |level: usize| cfg.decoder_channels * multiple(cfg, level);
        let levels = cfg.downsampling_ratios.len();
        let conv1_spec = ConvSpec::same(cfg.decoder_input_channels, width(levels), 7, 1);
        let mut conv1 = Conv1d::load(&vb.pp("conv1"), conv1_spec, true)?;
        let mut input_bias = conv1.take_bias();
        let mut blocks = Vec::with_capacity(levels);
        for (i, &stride) in cfg.downsampling_ratios.iter().rev().enumerate() {
            let dims = (width(levels - i), width(levels - i - 1));
            blocks.push(DecoderBlock::load(&vb.pp("block").pp(i), dims, stride, input_bias.take())?);
        }
        Ok(Self {
            conv1,
            blocks,
            snake1: Snake::load(&vb.pp("snake1"), cfg.decoder_channels, None)?,
            conv2: Conv1d::load(
                &vb.pp("conv2"),
                ConvSpec::same(cfg.decoder_channels, cfg.audio_channels, 7, 1),
                false,
            )?,
            framing: Framing::new(cfg, weights.device()),
        })
    }

    /// Audio samples per latent frame.
    pub fn hop(&self) -> usize {
        self.framing.hop
    }

    /// Decodes `[batch, latent_channels, T]` latents to `[batch, audio_channels, hop·T]` f32 audio in one pass.
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        self.decode_tiled(latents, Tiling::UNTILED, &mut |_, _| ControlFlow::Continue(()))
    }

    /// [`VaeDecoder::decode`] in overlap-discard tiles of `tiling` frames (bounded memory for long audio),
    /// reporting each finished tile to `progress`, which can cancel between tiles ([`EngineError::Cancelled`]).
    pub fn decode_tiled(&self, latents: &Tensor, tiling: Tiling, progress: TileProgress) -> Result<Tensor> {
        let (_, frames) = input_dims(latents, "latents for the VAE decoder", self.framing.latent_channels)?;
        if frames == 0 {
            return Err(EngineError::invalid("latents for the VAE decoder have no frames; pass at least one"));
        }
        check_finite(latents, "latents for the VAE decoder")?;
        let tiles = self.framing.tiles(tiling, frames)?;
        let latents = self.framing.input(latents)?;
        run_tiles(
            &latents,
            &tiles,
            self.framing.hop,
            |tile| tile.window.clone(),
            |x, poll| self.forward(x, poll),
            progress,
        )
    }

    /// Channels-last `[T, latent_channels]` → `[samples, audio_channels]`, polling between layers.
    fn forward(&self, latents: &Tensor, poll: Poll) -> Result<Tensor> {
        let h = self.conv1.forward(latents)?;
        let h = self.blocks.iter().try_fold(h, |h, block| block.forward(h, poll))?;
        poll()?;
        let pad = self.conv2.padding();
        self.conv2.forward_padded(&self.snake1.forward(&h, pad, pad)?)
    }
}

crate::model::resident::resident_fields!(DecoderBlock { snake1, conv_t1, res_units });
crate::model::resident::resident_fields!(VaeDecoder { conv1, blocks, snake1, conv2 });

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::vae::small_config;
    use candle_core::{DType, Device};

    fn latents(frames: usize) -> Tensor {
        let values: Vec<f32> = (0..4 * frames).map(|i| ((i * 37 % 29) as f32 - 14.0) * 0.1).collect();
        Tensor::from_vec(values, (1, 4, frames), &Device::Cpu).unwrap()
    }

    #[test]
    fn real_geometry_decodes_ten_frames_to_stereo_48k() {
        let decoder =
            VaeDecoder::load(&VaeConfig::oobleck_48k(), &Weights::random(1, DType::F32, &Device::Cpu)).unwrap();
        let values: Vec<f32> = (0..64 * 10).map(|i| ((i * 13 % 17) as f32 - 8.0) * 0.1).collect();
        let audio = decoder.decode(&Tensor::from_vec(values, (1, 64, 10), &Device::Cpu).unwrap()).unwrap();
        assert_eq!(audio.dims(), [1, 2, 19_200]);
        check_finite(&audio, "decoded audio").unwrap();
    }

    #[test]
    fn tiled_decode_equals_untiled() {
        let decoder = VaeDecoder::load(&small_config(), &Weights::random(2, DType::F32, &Device::Cpu)).unwrap();
        let x = latents(150);
        let whole = decoder.decode(&x).unwrap();
        let mut seen = Vec::new();
        let tiled = decoder
            .decode_tiled(&x, Tiling { chunk: 60, overlap: 20 }, &mut |done, total| {
                seen.push((done, total));
                ControlFlow::Continue(())
            })
            .unwrap();
        // Polled between layers with the tiles done so far, and after each of the 8 tiles.
        seen.dedup();
        assert_eq!(seen, (0..=8).map(|done| (done, 8)).collect::<Vec<_>>());
        assert_eq!(tiled.dims(), [1, 2, 150 * 12]);
        let diff = (tiled - whole).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
    }

    #[test]
    fn a_cancel_stops_the_decode_between_layers_inside_the_first_tile() {
        let decoder = VaeDecoder::load(&small_config(), &Weights::random(2, DType::F32, &Device::Cpu)).unwrap();
        let mut calls = Vec::new();
        let result = decoder.decode_tiled(&latents(150), Tiling { chunk: 60, overlap: 20 }, &mut |done, total| {
            calls.push((done, total));
            if calls.len() == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        assert!(matches!(result, Err(EngineError::Cancelled)));
        // Polled with no tile done yet, and stopped at the second poll: still inside the first of 8 tiles.
        assert_eq!(calls, vec![(0, 8), (0, 8)]);
    }

    #[test]
    fn bad_latents_are_rejected_with_typed_errors() {
        let decoder = VaeDecoder::load(&small_config(), &Weights::random(2, DType::F32, &Device::Cpu)).unwrap();
        let wrong_channels = Tensor::zeros((1, 3, 5), DType::F32, &Device::Cpu).unwrap();
        assert!(matches!(decoder.decode(&wrong_channels), Err(EngineError::InvalidInput(_))));
        let empty = Tensor::zeros((1, 4, 0), DType::F32, &Device::Cpu).unwrap();
        assert!(matches!(decoder.decode(&empty), Err(EngineError::InvalidInput(_))));
        let mut values = latents(5).flatten_all().unwrap().to_vec1::<f32>().unwrap();
        values[7] = f32::NAN;
        let nan = Tensor::from_vec(values, (1, 4, 5), &Device::Cpu).unwrap();
        assert!(matches!(decoder.decode(&nan), Err(EngineError::NonFinite { .. })));
    }
}
