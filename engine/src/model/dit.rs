//! The DiT (`decoder.*`, docs/acestep-model.md §6, §12, §14): timestep embeddings, a patch embedding split into a
//! per-run context part and a per-step latent part, AdaLN blocks with per-condition cached cross-attention K/V, and the
//! de-patchifying output head. Blocks are separate values, so a DiT over a VRAM budget keeps a prefix of them
//! resident and streams the rest: each is loaded, run and dropped in turn (docs/candle.md §3.4).

use crate::model::linear::Linear;
use candle_core::{DType, Device, Module, Tensor};

use super::adaln::{gated_residual, modulated_norm};
use super::checkpoint::Checkpoint;
use super::config::AceStepConfig;
use super::layers::{linear, Attention, AttnMask, KeyValues, Mlp, RmsNorm, Rope};
use super::resident::{resident_fields, Ledger, Tracked};
use super::weights::Weights;
use crate::error::{EngineError, Result};

/// Width of the sinusoidal timestep features (`TimestepEmbedding(in_channels=256)`).
const SINUSOID_CHANNELS: usize = 256;
/// Longest period of the sinusoid.
const MAX_PERIOD: f64 = 10_000.0;
/// Modulation rows per block: shift, scale, gate (self-attention), shift, scale, gate (MLP).
pub(crate) const BLOCK_MODULATIONS: usize = 6;

/// Timestep conditioning of one DiT call: `temb` `[1, hidden]` drives the output head, `proj`
/// `[1, 6, hidden]` the per-block AdaLN modulation.
#[derive(Debug, Clone)]
pub struct TimestepCond {
    /// The timestep embedding.
    pub temb: Tensor,
    /// `time_proj(SiLU(temb))` as six rows.
    pub proj: Tensor,
}

impl TimestepCond {
    fn add(&self, other: &Self) -> Result<Self> {
        Ok(Self { temb: (&self.temb + &other.temb)?, proj: (&self.proj + &other.proj)? })
    }
}

/// `[cos(t·f_j) ‖ sin(t·f_j)]` with `f_j = exp(−ln(10⁴)·j/128)`, in f32 like the reference.
fn timestep_sinusoid(t: f32) -> Vec<f32> {
    let half = SINUSOID_CHANNELS / 2;
    let neg_log = -(MAX_PERIOD.ln()) as f32;
    let args: Vec<f32> = (0..half).map(|j| t * (neg_log * j as f32 / half as f32).exp()).collect();
    args.iter().map(|a| a.cos()).chain(args.iter().map(|a| a.sin())).collect()
}

/// `TimestepEmbedding`: sinusoid → `linear_1` → SiLU → `linear_2` = temb; `time_proj(SiLU(temb))` = modulation.
#[derive(Debug, Clone)]
struct TimestepEmbedding {
    linear_1: Linear,
    linear_2: Linear,
    time_proj: Linear,
    hidden: usize,
    dtype: DType,
    device: Device,
}

impl TimestepEmbedding {
    fn new(vb: &Weights, hidden: usize) -> Result<Self> {
        Ok(Self {
            linear_1: linear(vb, "linear_1", SINUSOID_CHANNELS, hidden, true)?,
            linear_2: linear(vb, "linear_2", hidden, hidden, true)?,
            time_proj: linear(vb, "time_proj", hidden, BLOCK_MODULATIONS * hidden, true)?,
            hidden,
            dtype: vb.dtype(),
            device: vb.device().clone(),
        })
    }

    /// Embeds the timestep `t` (σ·1000).
    fn forward(&self, t: f32) -> Result<TimestepCond> {
        let features =
            Tensor::from_vec(timestep_sinusoid(t), (1, SINUSOID_CHANNELS), &self.device)?.to_dtype(self.dtype)?;
        let temb = self.linear_2.forward(&candle_nn::ops::silu(&self.linear_1.forward(&features)?)?)?;
        let proj =
            self.time_proj.forward(&candle_nn::ops::silu(&temb)?)?.reshape((1, BLOCK_MODULATIONS, self.hidden))?;
        Ok(TimestepCond { temb, proj })
    }
}

/// `[B, T, C]` → `[B, ceil(T/p), p·C]`, zero-padding the end to a whole patch (frame-major within a patch).
fn patches(x: &Tensor, patch: usize) -> Result<Tensor> {
    let (b, t, c) = x.dims3()?;
    let pad = (patch - t % patch) % patch;
    let x = if pad > 0 { x.pad_with_zeros(1, 0, pad)? } else { x.clone() };
    Ok(x.reshape((b, (t + pad) / patch, patch * c))?)
}

/// The constant per-run part of the DiT input: the projected context latents (source latents ‖ chunk mask)
/// and the RoPE table of the patched sequence. Rebuild it when the context changes (e.g. cover → text2music).
#[derive(Debug, Clone)]
pub struct DitContext {
    projected: Tensor,
    frames: usize,
    rope: Rope,
}

impl DitContext {
    /// Latent frames `T` the context covers.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// RoPE table for the `ceil(T/patch)` DiT tokens.
    pub fn rope(&self) -> &Rope {
        &self.rope
    }
}

/// Cross-attention keys and values of every block for one condition set: computed once, reused by every
/// step, rebuilt (with [`Dit::cross_cache`] or [`CrossCache::build`]) when the condition changes.
#[derive(Debug, Clone)]
pub struct CrossCache {
    layers: Vec<KeyValues>,
}

impl CrossCache {
    /// K/V of `blocks` for encoder states already passed through [`DitShell::embed_condition`].
    pub fn build<'a>(condition: &Tensor, blocks: impl IntoIterator<Item = &'a DitBlock>) -> Result<Self> {
        Ok(Self { layers: blocks.into_iter().map(|b| b.cross_key_values(condition)).collect::<Result<_>>()? })
    }

    /// `self` (batch rows first) and `other` (the rows after) in one cache, layer by layer, so a batched DiT call
    /// evaluates both conditions at once (classifier-free guidance). Each source layer is freed once copied.
    pub fn pair(self, other: Self) -> Result<Self> {
        if self.len() != other.len() {
            return Err(EngineError::invalid(format!(
                "cross-attention caches of {} and {} blocks cannot be paired",
                self.len(),
                other.len()
            )));
        }
        let layers = self.layers.into_iter().zip(other.layers).map(|(a, b)| a.cat(&b)).collect::<Result<_>>()?;
        Ok(Self { layers })
    }

    /// The batch rows `start..start + len` of every layer (views, no copy).
    pub fn rows(&self, start: usize, len: usize) -> Result<Self> {
        Ok(Self { layers: self.layers.iter().map(|kv| kv.rows(start, len)).collect::<Result<_>>()? })
    }

    /// K/V of block `index`.
    pub fn layer(&self, index: usize) -> Option<&KeyValues> {
        self.layers.get(index)
    }

    /// Number of blocks covered.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether the cache covers no block.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

/// Everything of the DiT except its blocks: timestep embedders, `proj_in`, `condition_embedder` and the
/// output head (`norm_out`, `scale_shift_table`, `proj_out`).
#[derive(Debug, Clone)]
pub struct DitShell {
    /// `proj_in` columns of the context channels (with the bias), `[hidden, patch·context]`.
    proj_in_context: Linear,
    /// `proj_in` columns of the noisy-latent channels, `[hidden, patch·latent]`.
    proj_in_latent: Linear,
    time_embed: TimestepEmbedding,
    /// `time_embed_r(t − r)` with `r = t` at inference, i.e. of 0: a constant.
    time_embed_r_zero: TimestepCond,
    condition_embedder: Linear,
    norm_out: RmsNorm,
    scale_shift_table: Tensor,
    /// `proj_out` (ConvTranspose1d k = s = patch) as a Linear `[patch·latent, hidden]`.
    proj_out: Linear,
    patch: usize,
    latent: usize,
    context: usize,
    encoder_width: usize,
    head_dim: usize,
    rope_theta: f64,
}

impl DitShell {
    /// Loads the non-block parts under `vb` (the `decoder.` prefix).
    pub fn new(vb: &Weights, cfg: &AceStepConfig) -> Result<Self> {
        let (hidden, patch, latent) = (cfg.hidden_size, cfg.patch_size, cfg.audio_acoustic_hidden_dim);
        let context = cfg.in_channels.checked_sub(latent).filter(|&c| c > 0).ok_or_else(|| {
            EngineError::UnsupportedModel(format!(
                "in_channels {} leaves no context channels beside {latent} latent channels",
                cfg.in_channels
            ))
        })?;
        // Conv1d [out, in, k] → columns ordered (k, in) to match `patches`, split by input channel.
        let w_in = vb.pp("proj_in.1").get_as(&[hidden, cfg.in_channels, patch], "weight", vb.matrix_dtype())?;
        let columns = |start: usize, len: usize| -> Result<Tensor> {
            Ok(w_in.narrow(1, start, len)?.transpose(1, 2)?.reshape((hidden, patch * len))?)
        };
        let bias_in = vb.pp("proj_in.1").get(&[hidden], "bias")?;
        // ConvTranspose1d [in, out, k] → rows ordered (k, out): out[p·s + k, o] = Σ_i h[s, i]·W[i, o, k] + b[o].
        let w_out = vb.pp("proj_out.1").get_as(&[hidden, latent, patch], "weight", vb.matrix_dtype())?;
        let w_out = w_out.permute((2, 1, 0))?.reshape((patch * latent, hidden))?;
        let bias_out = vb.pp("proj_out.1").get(&[latent], "bias")?.repeat(patch)?;
        let time_embed_r = TimestepEmbedding::new(&vb.pp("time_embed_r"), hidden)?;
        Ok(Self {
            proj_in_context: Linear::computing_in(columns(0, context)?, Some(bias_in), vb.dtype())?,
            proj_in_latent: Linear::computing_in(columns(context, latent)?, None, vb.dtype())?,
            time_embed: TimestepEmbedding::new(&vb.pp("time_embed"), hidden)?,
            time_embed_r_zero: time_embed_r.forward(0.0)?,
            condition_embedder: linear(vb, "condition_embedder", cfg.encoder_width(), hidden, true)?,
            norm_out: RmsNorm::new(vb, "norm_out", hidden, cfg.rms_norm_eps)?,
            scale_shift_table: vb.get(&[1, 2, hidden], "scale_shift_table")?,
            proj_out: Linear::computing_in(w_out, Some(bias_out), vb.dtype())?,
            patch,
            latent,
            context,
            encoder_width: cfg.encoder_width(),
            head_dim: cfg.head_dim,
            rope_theta: cfg.rope_theta,
        })
    }

    /// Projects the context latents `[B, T, context]` (source latents ‖ chunk mask) once per run.
    pub fn prepare_context(&self, context: &Tensor) -> Result<DitContext> {
        let (_, frames, channels) = context.dims3()?;
        if channels != self.context || frames == 0 {
            return Err(EngineError::invalid(format!(
                "DiT context latents must be [batch, frames > 0, {}] but have shape {:?}",
                self.context,
                context.dims()
            )));
        }
        let projected = self.proj_in_context.forward(&patches(context, self.patch)?)?;
        let rope = Rope::new(self.head_dim, self.rope_theta, projected.dim(1)?, projected.dtype(), projected.device())?;
        Ok(DitContext { projected, frames, rope })
    }

    /// `condition_embedder` on the packed encoder states `[B, L_enc, encoder_width]`.
    pub fn embed_condition(&self, encoder_states: &Tensor) -> Result<Tensor> {
        match encoder_states.dims() {
            [_, len, w] if *w == self.encoder_width && *len > 0 => {
                Ok(self.condition_embedder.forward(encoder_states)?)
            }
            dims => Err(EngineError::invalid(format!(
                "encoder states must be [batch, length > 0, {}] but have shape {dims:?}",
                self.encoder_width
            ))),
        }
    }

    /// The two timestep terms for `t` = σ·1000: `time_embed(t)` and the constant `time_embed_r(0)`.
    pub fn timestep_terms(&self, t: f32) -> Result<(TimestepCond, TimestepCond)> {
        Ok((self.time_embed.forward(t)?, self.time_embed_r_zero.clone()))
    }

    /// The timestep conditioning for `t` = σ·1000 (the sum of both terms).
    pub fn timestep(&self, t: f32) -> Result<TimestepCond> {
        let (t_term, r_term) = self.timestep_terms(t)?;
        t_term.add(&r_term)
    }

    /// The per-step input `[B, S, hidden]`: `proj_in` of the noisy latents `[B, T, latent]` plus the
    /// precomputed context projection (of batch `B`, or of batch 1 shared by every row).
    pub fn embed_input(&self, latents: &Tensor, context: &DitContext) -> Result<Tensor> {
        let (batch, frames, channels) = latents.dims3()?;
        let context_batch = context.projected.dim(0)?;
        if channels != self.latent || frames != context.frames || (batch != context_batch && context_batch != 1) {
            return Err(EngineError::invalid(format!(
                "noisy latents {:?} do not match the DiT context ({} frames of {} channels, batch {})",
                latents.dims(),
                context.frames,
                self.latent,
                context_batch
            )));
        }
        Ok(self.proj_in_latent.forward(&patches(latents, self.patch)?)?.broadcast_add(&context.projected)?)
    }

    /// The output head: `norm_out(h)·(1 + scale) + shift` with `(shift, scale) = scale_shift_table + temb`,
    /// then `proj_out` and the crop back to the context's `T` frames → velocity `[B, T, latent]`.
    pub fn project_output(&self, hidden: &Tensor, timestep: &TimestepCond, context: &DitContext) -> Result<Tensor> {
        let table = self.scale_shift_table.broadcast_add(&timestep.temb.unsqueeze(1)?)?;
        let normed = modulated_norm(&self.norm_out, hidden, &table.narrow(1, 0, 1)?, &table.narrow(1, 1, 1)?)?;
        self.depatchify(&normed, context.frames)
    }

    /// `proj_out` as a Linear: `[B, S, hidden]` → `[B, S·patch, latent]` cropped to `frames`.
    fn depatchify(&self, hidden: &Tensor, frames: usize) -> Result<Tensor> {
        let out = self.proj_out.forward(hidden)?;
        let (batch, tokens, _) = out.dims3()?;
        Ok(out.reshape((batch, tokens * self.patch, self.latent))?.narrow(1, 0, frames)?)
    }
}

/// One DiT layer (`decoder.layers.{i}`): AdaLN-modulated gated self-attention (sliding or full), plain
/// residual cross-attention onto the condition, AdaLN-modulated gated MLP.
#[derive(Debug, Clone)]
pub struct DitBlock {
    self_attn_norm: RmsNorm,
    self_attn: Attention,
    cross_attn_norm: RmsNorm,
    cross_attn: Attention,
    mlp_norm: RmsNorm,
    mlp: Mlp,
    scale_shift_table: Tensor,
    mask: AttnMask,
}

impl DitBlock {
    /// Loads block `index` under `vb` (the `decoder.` prefix), with its mask from `layer_types[index]`.
    pub fn new(vb: &Weights, cfg: &AceStepConfig, index: usize) -> Result<Self> {
        let mask = *cfg.layer_masks(cfg.num_hidden_layers).get(index).ok_or_else(|| {
            EngineError::invalid(format!(
                "DiT block {index} does not exist: the config has {} layers and {} layer_types",
                cfg.num_hidden_layers,
                cfg.layer_types.len()
            ))
        })?;
        let (vb, dims) = (vb.pp("layers").pp(index), cfg.transformer_dims());
        Ok(Self {
            self_attn_norm: RmsNorm::new(&vb, "self_attn_norm", dims.hidden, dims.eps)?,
            self_attn: Attention::new(&vb.pp("self_attn"), dims)?,
            cross_attn_norm: RmsNorm::new(&vb, "cross_attn_norm", dims.hidden, dims.eps)?,
            cross_attn: Attention::new(&vb.pp("cross_attn"), dims)?,
            mlp_norm: RmsNorm::new(&vb, "mlp_norm", dims.hidden, dims.eps)?,
            mlp: Mlp::new(&vb.pp("mlp"), dims)?,
            scale_shift_table: vb.get(&[1, BLOCK_MODULATIONS, dims.hidden], "scale_shift_table")?,
            mask,
        })
    }

    /// Cross-attention K/V of this block for embedded encoder states (see [`CrossCache`]).
    pub fn cross_key_values(&self, condition: &Tensor) -> Result<KeyValues> {
        self.cross_attn.key_values(condition, None)
    }

    /// Runs the block on `hidden` `[B, S, hidden]`.
    pub fn forward(&self, hidden: &Tensor, rope: &Rope, timestep: &TimestepCond, cross: &KeyValues) -> Result<Tensor> {
        let table = self.scale_shift_table.broadcast_add(&timestep.proj)?;
        let row = |i: usize| table.narrow(1, i, 1);
        let (shift, scale, gate) = (row(0)?, row(1)?, row(2)?);
        let (c_shift, c_scale, c_gate) = (row(3)?, row(4)?, row(5)?);
        let normed = modulated_norm(&self.self_attn_norm, hidden, &shift, &scale)?;
        let h = gated_residual(hidden, self.self_attn.forward_self(&normed, rope, self.mask)?, &gate)?;
        let h = (&h + self.cross_attn.forward_cross(&self.cross_attn_norm.forward(&h)?, cross)?)?;
        let normed = modulated_norm(&self.mlp_norm, &h, &c_shift, &c_scale)?;
        gated_residual(&h, self.mlp.forward(&normed)?, &c_gate)
    }
}

resident_fields!(TimestepCond { temb, proj });
resident_fields!(TimestepEmbedding { linear_1, linear_2, time_proj });
resident_fields!(DitShell {
    proj_in_context,
    proj_in_latent,
    time_embed,
    time_embed_r_zero,
    condition_embedder,
    norm_out,
    scale_shift_table,
    proj_out,
});
resident_fields!(DitBlock { self_attn_norm, self_attn, cross_attn_norm, cross_attn, mlp_norm, mlp, scale_shift_table });

/// Where the blocks that are not resident come from: each visit loads the block, books it in the ledger,
/// runs it and drops it.
#[derive(Clone)]
struct BlockStream {
    /// The `decoder.` view of the checkpoint.
    weights: Weights,
    cfg: AceStepConfig,
    ledger: Ledger,
}

impl std::fmt::Debug for BlockStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockStream").field("ledger", &self.ledger).finish_non_exhaustive()
    }
}

/// The whole DiT: the shell, a resident prefix of the blocks (all of them unless built with
/// [`Dit::streamed`]) and, for a streamed DiT, the source of the others.
#[derive(Debug, Clone)]
pub struct Dit {
    shell: DitShell,
    blocks: Vec<DitBlock>,
    block_count: usize,
    stream: Option<BlockStream>,
}

resident_fields!(Dit { shell, blocks });

impl Dit {
    /// Loads `decoder.*` from the checkpoint's model file.
    pub fn load(ckpt: &Checkpoint) -> Result<Self> {
        Self::new(&ckpt.acestep_weights()?.pp("decoder"), &ckpt.acestep)
    }

    /// Loads the shell and all `num_hidden_layers` blocks under `vb` (the `decoder.` prefix).
    pub fn new(vb: &Weights, cfg: &AceStepConfig) -> Result<Self> {
        Self::build(vb, cfg, cfg.num_hidden_layers, None)
    }

    /// Loads the shell and the first `resident` blocks under `vb` (the `decoder.` prefix); every other block is
    /// loaded from `vb` when visited, booked in `ledger` while it runs, and dropped. The results are identical
    /// to [`Dit::new`]'s: the same weights run the same operations in the same order.
    pub fn streamed(vb: &Weights, cfg: &AceStepConfig, resident: usize, ledger: &Ledger) -> Result<Self> {
        if resident > cfg.num_hidden_layers {
            return Err(EngineError::invalid(format!(
                "cannot keep {resident} DiT blocks resident: the model has {}",
                cfg.num_hidden_layers
            )));
        }
        let stream = (resident < cfg.num_hidden_layers).then(|| BlockStream {
            weights: vb.clone(),
            cfg: cfg.clone(),
            ledger: ledger.clone(),
        });
        Self::build(vb, cfg, resident, stream)
    }

    fn build(vb: &Weights, cfg: &AceStepConfig, resident: usize, stream: Option<BlockStream>) -> Result<Self> {
        Ok(Self {
            shell: DitShell::new(vb, cfg)?,
            blocks: (0..resident).map(|i| DitBlock::new(vb, cfg, i)).collect::<Result<_>>()?,
            block_count: cfg.num_hidden_layers,
            stream,
        })
    }

    /// The non-block parts (context, condition and timestep preparation, output head).
    pub fn shell(&self) -> &DitShell {
        &self.shell
    }

    /// The resident blocks in order: all of them unless the DiT is [streamed](Dit::streamed).
    pub fn blocks(&self) -> &[DitBlock] {
        &self.blocks
    }

    /// Number of blocks the model has, resident or streamed.
    pub fn block_count(&self) -> usize {
        self.block_count
    }

    /// Calls `f` on every block in order: the resident ones, then each streamed one while it is loaded.
    fn visit_blocks(&self, mut f: impl FnMut(usize, &DitBlock) -> Result<()>) -> Result<()> {
        for (i, block) in self.blocks.iter().enumerate() {
            f(i, block)?;
        }
        if let Some(stream) = &self.stream {
            for i in self.blocks.len()..self.block_count {
                let block = Tracked::new(DitBlock::new(&stream.weights, &stream.cfg, i)?, &stream.ledger);
                f(i, &block)?;
            }
        }
        Ok(())
    }

    /// Embeds the packed encoder states and computes every block's cross-attention K/V.
    pub fn cross_cache(&self, encoder_states: &Tensor) -> Result<CrossCache> {
        let condition = self.shell.embed_condition(encoder_states)?;
        let mut layers = Vec::with_capacity(self.block_count);
        self.visit_blocks(|_, block| {
            layers.push(block.cross_key_values(&condition)?);
            Ok(())
        })?;
        Ok(CrossCache { layers })
    }

    /// One DiT evaluation: the velocity `[B, T, latent]` for noisy latents `[B, T, latent]`.
    pub fn forward(
        &self,
        latents: &Tensor,
        context: &DitContext,
        cross: &CrossCache,
        timestep: &TimestepCond,
    ) -> Result<Tensor> {
        if cross.len() != self.block_count {
            return Err(EngineError::invalid(format!(
                "the cross-attention cache covers {} blocks but the DiT has {}",
                cross.len(),
                self.block_count
            )));
        }
        let mut h = self.shell.embed_input(latents, context)?;
        self.visit_blocks(|i, block| {
            h = block.forward(&h, context.rope(), timestep, &cross.layers[i])?;
            Ok(())
        })?;
        self.shell.project_output(&h, timestep, context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::resident::ResidentBytes;
    use crate::test_util::max_diff;

    fn tiny_config() -> AceStepConfig {
        AceStepConfig {
            hidden_size: 32,
            intermediate_size: 48,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: 8,
            sliding_window: 2,
            ..AceStepConfig::turbo()
        }
    }

    #[test]
    fn split_patch_embedding_equals_zero_padded_strided_conv1d() {
        let (cfg, vb) = (tiny_config(), Weights::random(3, DType::F32, &Device::Cpu));
        let shell = DitShell::new(&vb, &cfg).unwrap();
        let frames = 7; // odd: exercises the zero pad
        let context = Tensor::randn(0f32, 1., (1, frames, cfg.in_channels - 64), &Device::Cpu).unwrap();
        let latents = Tensor::randn(0f32, 1., (1, frames, 64), &Device::Cpu).unwrap();
        let got = shell.embed_input(&latents, &shell.prepare_context(&context).unwrap()).unwrap();

        let input = Tensor::cat(&[&context, &latents], 2).unwrap().pad_with_zeros(1, 0, 1).unwrap();
        let weight = vb.pp("proj_in.1").get(&[32, cfg.in_channels, 2], "weight").unwrap();
        let bias = vb.pp("proj_in.1").get(&[32], "bias").unwrap();
        let want = input.transpose(1, 2).unwrap().contiguous().unwrap().conv1d(&weight, 0, 2, 1, 1).unwrap();
        let want = want.broadcast_add(&bias.reshape((1, 32, 1)).unwrap()).unwrap().transpose(1, 2).unwrap();
        assert_eq!(got.dims(), &[1, 4, 32]);
        assert!(max_diff(&got, &want) < 1e-5, "{}", max_diff(&got, &want));
    }

    #[test]
    fn depatchify_equals_conv_transpose1d_cropped_to_the_input_length() {
        let (cfg, vb) = (tiny_config(), Weights::random(4, DType::F32, &Device::Cpu));
        let shell = DitShell::new(&vb, &cfg).unwrap();
        let hidden = Tensor::randn(0f32, 1., (1, 4, 32), &Device::Cpu).unwrap();
        let got = shell.depatchify(&hidden, 7).unwrap();

        let weight = vb.pp("proj_out.1").get(&[32, 64, 2], "weight").unwrap();
        let bias = vb.pp("proj_out.1").get(&[64], "bias").unwrap();
        let x = hidden.transpose(1, 2).unwrap().contiguous().unwrap();
        let want = x.conv_transpose1d(&weight, 0, 0, 2, 1, 1).unwrap();
        let want = want.broadcast_add(&bias.reshape((1, 64, 1)).unwrap()).unwrap().transpose(1, 2).unwrap();
        assert_eq!(got.dims(), &[1, 7, 64]);
        assert!(max_diff(&got, &want.narrow(1, 0, 7).unwrap()) < 1e-5);
    }

    #[test]
    fn timestep_sinusoid_is_cosines_then_sines_of_geometric_frequencies() {
        let zero = timestep_sinusoid(0.0);
        assert_eq!(zero.len(), SINUSOID_CHANNELS);
        assert!(zero[..128].iter().all(|&c| c == 1.0) && zero[128..].iter().all(|&s| s == 0.0));
        let e = timestep_sinusoid(500.0);
        let f1 = (-(MAX_PERIOD.ln()) / 128.0).exp() as f32;
        assert_eq!((e[0], e[128]), (500f32.cos(), 500f32.sin()));
        assert!((e[1] - (500.0 * f1).cos()).abs() < 1e-4 && (e[129] - (500.0 * f1).sin()).abs() < 1e-4);
    }

    #[test]
    fn blocks_alternate_sliding_and_full_attention_from_layer_types() {
        let (cfg, vb) = (tiny_config(), Weights::random(5, DType::F32, &Device::Cpu));
        assert_eq!(DitBlock::new(&vb, &cfg, 0).unwrap().mask, AttnMask::Sliding(2));
        assert_eq!(DitBlock::new(&vb, &cfg, 1).unwrap().mask, AttnMask::Full);
        assert!(matches!(DitBlock::new(&vb, &cfg, 2).unwrap_err(), EngineError::InvalidInput(_)));
    }

    /// Velocities of `dit` for fixed inputs (6 frames, 3 condition tokens).
    fn velocity(dit: &Dit, cfg: &AceStepConfig) -> Tensor {
        let wave = |shape: (usize, usize, usize), phase: f64| {
            let n = shape.0 * shape.1 * shape.2;
            let ramp = Tensor::arange(0u32, n as u32, &Device::Cpu).unwrap().to_dtype(DType::F32).unwrap();
            ramp.affine(0.37, phase).unwrap().sin().unwrap().reshape(shape).unwrap()
        };
        let context = dit.shell().prepare_context(&wave((1, 6, cfg.in_channels - 64), 0.0)).unwrap();
        let cross = dit.cross_cache(&wave((1, 3, cfg.hidden_size), 1.0)).unwrap();
        let latents = wave((1, 6, 64), 2.0);
        dit.forward(&latents, &context, &cross, &dit.shell().timestep(700.0).unwrap()).unwrap()
    }

    #[test]
    fn streamed_blocks_give_bit_identical_velocities_and_are_booked_one_at_a_time() {
        let (cfg, vb) = (tiny_config(), Weights::random(8, DType::F32, &Device::Cpu));
        let want = velocity(&Dit::new(&vb, &cfg).unwrap(), &cfg);
        let block_bytes = DitBlock::new(&vb, &cfg, 1).unwrap().resident_bytes();
        for resident in 0..cfg.num_hidden_layers {
            let ledger = Ledger::new();
            let dit = Tracked::new(Dit::streamed(&vb, &cfg, resident, &ledger).unwrap(), &ledger);
            let got = velocity(&dit, &cfg);
            assert_eq!(max_diff(&got, &want), 0.0, "{resident} resident blocks");
            let totals = ledger.totals();
            assert_eq!(dit.bytes(), dit.shell().resident_bytes() + resident as u64 * block_bytes);
            assert_eq!((totals.resident, totals.peak_resident), (dit.bytes(), dit.bytes() + block_bytes));
        }
        let err = Dit::streamed(&vb, &cfg, 3, &Ledger::new()).unwrap_err();
        assert!(matches!(err, EngineError::InvalidInput(_)), "{err}");
    }

    #[test]
    fn a_paired_cache_evaluates_both_conditions_in_one_batched_call() {
        let (cfg, vb) = (tiny_config(), Weights::random(9, DType::F32, &Device::Cpu));
        let dit = Dit::new(&vb, &cfg).unwrap();
        let rand = |shape: (usize, usize, usize)| Tensor::randn(0f32, 1., shape, &Device::Cpu).unwrap();
        let context = dit.shell().prepare_context(&rand((1, 6, cfg.in_channels - 64))).unwrap();
        let (states, null) = (rand((1, 3, cfg.hidden_size)), rand((1, 3, cfg.hidden_size)));
        let timestep = dit.shell().timestep(700.0).unwrap();
        let x = rand((1, 6, 64));
        let single = |states: &Tensor| dit.forward(&x, &context, &dit.cross_cache(states).unwrap(), &timestep).unwrap();
        let pair = dit.cross_cache(&states).unwrap().pair(dit.cross_cache(&null).unwrap()).unwrap();
        let both = dit.forward(&Tensor::cat(&[&x, &x], 0).unwrap(), &context, &pair, &timestep).unwrap();
        assert_eq!(both.dims(), &[2, 6, 64]);
        assert!(max_diff(&both.narrow(0, 0, 1).unwrap(), &single(&states)) < 1e-5);
        assert!(max_diff(&both.narrow(0, 1, 1).unwrap(), &single(&null)) < 1e-5);
        let first = dit.forward(&x, &context, &pair.rows(0, 1).unwrap(), &timestep).unwrap();
        assert_eq!(max_diff(&first, &single(&states)), 0.0);
    }

    #[test]
    fn latents_that_do_not_match_the_context_are_rejected() {
        let (cfg, vb) = (tiny_config(), Weights::random(6, DType::F32, &Device::Cpu));
        let dit = Dit::new(&vb, &cfg).unwrap();
        let context =
            dit.shell().prepare_context(&Tensor::zeros((1, 6, 128), DType::F32, &Device::Cpu).unwrap()).unwrap();
        let cross = dit.cross_cache(&Tensor::zeros((1, 3, 32), DType::F32, &Device::Cpu).unwrap()).unwrap();
        let timestep = dit.shell().timestep(1000.0).unwrap();
        let ok = Tensor::zeros((1, 6, 64), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(dit.forward(&ok, &context, &cross, &timestep).unwrap().dims(), &[1, 6, 64]);
        let short = Tensor::zeros((1, 5, 64), DType::F32, &Device::Cpu).unwrap();
        let err = dit.forward(&short, &context, &cross, &timestep).unwrap_err();
        assert!(matches!(err, EngineError::InvalidInput(_)), "{err}");
    }
}
