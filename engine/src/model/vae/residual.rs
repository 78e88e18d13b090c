//! The Oobleck residual unit (docs/acestep-model.md §8): `y = x + conv2(snake2(conv1(snake1(x))))`, conv1 k=7 dilated,
//! conv2 k=1.

use candle_core::{DType, Tensor};

use super::conv::{Conv1d, ConvSpec};
use super::snake::Snake;
use crate::error::Result;
use crate::kernels::cpu::snake_residual::ResidualAdd;
use crate::model::weights::Weights;

/// Dilations of `res_unit1..3` in every encoder and decoder block.
pub(super) const DILATIONS: [usize; 3] = [1, 3, 9];

/// One `res_unit{1,2,3}`. No conv output gets a pass of its own for its bias: conv1's is added by snake2, and
/// conv2's by the residual add, together with the bias the input still lacks (that of the conv before the unit).
pub(super) struct ResidualUnit {
    snake1: Snake,
    conv1: Conv1d,
    snake2: Snake,
    conv2: Conv1d,
    /// `[channels]` f32: conv2's bias plus the input's missing bias.
    residual_bias: Tensor,
}

impl ResidualUnit {
    /// Loads `snake1`, `conv1`, `snake2`, `conv2` under `vb` for `channels` channels. `input_bias` is the bias
    /// of the preceding conv, not yet added to the input that [`ResidualUnit::forward`] will get.
    pub fn load(vb: &Weights, channels: usize, dilation: usize, input_bias: Option<Tensor>) -> Result<Self> {
        let mut conv1 = Conv1d::load(&vb.pp("conv1"), ConvSpec::same(channels, channels, 7, dilation), true)?;
        let mut conv2 = Conv1d::load(&vb.pp("conv2"), ConvSpec::same(channels, channels, 1, 1), true)?;
        let conv2_bias = conv2.take_bias().map_or_else(|| Tensor::zeros(channels, DType::F32, vb.device()), Ok)?;
        let residual_bias = match &input_bias {
            Some(b) => (conv2_bias + b.to_dtype(DType::F32)?)?,
            None => conv2_bias,
        };
        Ok(Self {
            snake1: Snake::load(&vb.pp("snake1"), channels, input_bias)?,
            snake2: Snake::load(&vb.pp("snake2"), channels, conv1.take_bias())?,
            conv1,
            conv2,
            residual_bias,
        })
    }

    /// The three units of a block at `channels`, with dilations 1, 3, 9; `input_bias` as in [`ResidualUnit::load`].
    pub fn load_block(vb: &Weights, channels: usize, mut input_bias: Option<Tensor>) -> Result<Vec<Self>> {
        DILATIONS
            .iter()
            .enumerate()
            .map(|(i, &d)| Self::load(&vb.pp(format!("res_unit{}", i + 1)), channels, d, input_bias.take()))
            .collect()
    }

    /// `[len, channels]` → `[len, channels]`. Each intermediate is dropped as soon as the next exists, so at most
    /// three activations of the input's size are alive at once (on the CPU the sum is written over conv2's output).
    pub fn forward(&self, x: Tensor) -> Result<Tensor> {
        let pad = self.conv1.padding();
        let inner = self.conv1.forward_padded(&self.snake1.forward(&x, pad, pad)?)?;
        let activated = self.snake2.forward(&inner, 0, 0)?;
        drop(inner);
        let h = self.conv2.forward(&activated)?;
        drop(activated);
        if x.device().is_cpu() && h.is_contiguous() {
            h.inplace_op3(&x.contiguous()?, &self.residual_bias, &ResidualAdd)?;
            return Ok(h);
        }
        Ok((x + h)?.broadcast_add(&self.residual_bias)?)
    }
}

crate::model::resident::resident_fields!(ResidualUnit { snake1, conv1, snake2, conv2, residual_bias });
