//! The Oobleck residual unit (spec §8): `y = x + conv2(snake2(conv1(snake1(x))))`, conv1 k=7 dilated, conv2 k=1.

use candle_core::Tensor;

use super::conv::{Conv1d, ConvSpec};
use super::snake::Snake;
use crate::error::Result;
use crate::model::weights::Weights;

/// Dilations of `res_unit1..3` in every encoder and decoder block.
pub(super) const DILATIONS: [usize; 3] = [1, 3, 9];

/// One `res_unit{1,2,3}`; conv1's bias is applied inside snake2.
pub(super) struct ResidualUnit {
    snake1: Snake,
    conv1: Conv1d,
    snake2: Snake,
    conv2: Conv1d,
}

impl ResidualUnit {
    /// Loads `snake1`, `conv1`, `snake2`, `conv2` under `vb` for `channels` channels.
    pub fn load(vb: &Weights, channels: usize, dilation: usize) -> Result<Self> {
        let mut conv1 = Conv1d::load(&vb.pp("conv1"), ConvSpec::same(channels, channels, 7, dilation), true)?;
        Ok(Self {
            snake1: Snake::load(&vb.pp("snake1"), channels, None)?,
            snake2: Snake::load(&vb.pp("snake2"), channels, conv1.take_bias())?,
            conv1,
            conv2: Conv1d::load(&vb.pp("conv2"), ConvSpec::same(channels, channels, 1, 1), true)?,
        })
    }

    /// The three units of a block at `channels`, with dilations 1, 3, 9.
    pub fn load_block(vb: &Weights, channels: usize) -> Result<Vec<Self>> {
        DILATIONS.iter().enumerate().map(|(i, &d)| Self::load(&vb.pp(format!("res_unit{}", i + 1)), channels, d)).collect()
    }

    /// `[len, channels]` → `[len, channels]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let pad = self.conv1.padding();
        let h = self.conv1.forward_padded(&self.snake1.forward(x, pad, pad)?)?;
        let h = self.conv2.forward(&self.snake2.forward(&h, 0, 0)?)?;
        Ok((x + h)?)
    }
}
