//! Building blocks shared by every transformer in ACE-Step 1.5 and by the Qwen3 text encoder (docs/acestep-model.md
//! §4): RMSNorm, RoPE, GQA attention with full / sliding-band / causal masks (query-chunked, so no S×S mask is
//! ever built for long inputs), SwiGLU MLP, the pre-norm encoder layer and a stack of them.

use candle_core::{DType, Device, Module, Tensor};

use super::linear::Linear;
use super::weights::Weights;
use crate::error::Result;
use crate::kernels::cpu::masked_softmax::MaskedSoftmax;
use crate::kernels::cpu::norm_rope::NormRope;
#[cfg(target_arch = "x86_64")]
use crate::kernels::cpu::panel_attention::PanelAttention;
use crate::kernels::cpu::silu_mul::SiluMul;
pub use crate::kernels::mask::AttnMask;
use crate::kernels::mask::{band_mask, QUERY_CHUNK};
use crate::kernels::storage::is_cpu_f32;

/// Widths of one transformer stack.
#[derive(Debug, Clone, Copy)]
pub struct TransformerDims {
    /// Residual width.
    pub hidden: usize,
    /// MLP width.
    pub intermediate: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Per-head width.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub eps: f64,
}

/// A bias-free or biased linear layer `[out, in]` loaded with shape checks, its weight in the matrix dtype
/// ([`Weights::matrix_dtype`]; re-laid out for the CPU by [`Linear::new`]).
pub fn linear(vb: &Weights, name: &str, in_dim: usize, out_dim: usize, bias: bool) -> Result<Linear> {
    let vb = vb.pp(name);
    let weight = vb.get_as(&[out_dim, in_dim], "weight", vb.matrix_dtype())?;
    let bias = if bias { Some(vb.get(&[out_dim], "bias")?) } else { None };
    Ok(Linear::computing_in(weight, bias, vb.dtype())?)
}

/// RMSNorm: `x · rsqrt(mean(x²) + eps) · weight`, computed in f32.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    /// Loads `{name}.weight` of width `dim`.
    pub fn new(vb: &Weights, name: &str, dim: usize, eps: f64) -> Result<Self> {
        Ok(Self { weight: vb.pp(name).get_as(&[dim], "weight", DType::F32)?, eps: eps as f32 })
    }

    /// The per-column weight, `[dim]` in f32.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The epsilon added to the mean square.
    pub fn eps(&self) -> f32 {
        self.eps
    }
}

impl Module for RmsNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dtype = x.dtype();
        candle_nn::ops::rms_norm(&x.to_dtype(DType::F32)?.contiguous()?, &self.weight, self.eps)?.to_dtype(dtype)
    }
}

/// RoPE cos/sin tables (non-interleaved "rotate_half" form) for positions `0..len`, computed in f32 the
/// way the reference does (f32 inverse frequencies, f32 angle products).
#[derive(Debug, Clone)]
pub struct Rope {
    cos: Tensor,
    sin: Tensor,
}

impl Rope {
    /// Tables for `len` positions of heads `head_dim` wide.
    pub fn new(head_dim: usize, theta: f64, len: usize, dtype: DType, device: &Device) -> Result<Self> {
        let half = head_dim / 2;
        let inv_freq: Vec<f32> =
            (0..half).map(|j| 1.0 / (theta as f32).powf((2 * j) as f32 / head_dim as f32)).collect();
        let angles: Vec<f32> = (0..len).flat_map(|p| inv_freq.iter().map(move |f| p as f32 * f)).collect();
        let cos: Vec<f32> = angles.iter().map(|a| a.cos()).collect();
        let sin: Vec<f32> = angles.iter().map(|a| a.sin()).collect();
        Ok(Self {
            cos: Tensor::from_vec(cos, (len, half), device)?.to_dtype(dtype)?,
            sin: Tensor::from_vec(sin, (len, half), device)?.to_dtype(dtype)?,
        })
    }

    /// Rotates `x` `[B, H, S, D]` by positions `0..S`.
    pub fn apply(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (cos, sin) = self.tables(x.dim(2)?)?;
        candle_nn::rotary_emb::rope(&x.contiguous()?, &cos, &sin)
    }

    /// The cos and sin tables `[len, D/2]` of positions `0..len`.
    pub fn tables(&self, len: usize) -> candle_core::Result<(Tensor, Tensor)> {
        Ok((self.cos.narrow(0, 0, len)?, self.sin.narrow(0, 0, len)?))
    }
}

/// Keys and values of one attention layer, `[B, KV, S_k, D]` each (cached for cross-attention).
#[derive(Debug, Clone)]
pub struct KeyValues {
    k: Tensor,
    v: Tensor,
}

impl KeyValues {
    /// `self` and `other` stacked along the batch: `[B₁ + B₂, KV, S_k, D]` (both must have the same `S_k`).
    pub fn cat(&self, other: &Self) -> Result<Self> {
        Ok(Self { k: Tensor::cat(&[&self.k, &other.k], 0)?, v: Tensor::cat(&[&self.v, &other.v], 0)? })
    }

    /// The batch rows `start..start + len` (a view, no copy).
    pub fn rows(&self, start: usize, len: usize) -> Result<Self> {
        Ok(Self { k: self.k.narrow(0, start, len)?, v: self.v.narrow(0, start, len)? })
    }
}

/// `AceStepAttention` / Qwen3 attention: q/k RMSNorm per head, optional RoPE, GQA, no biases.
#[derive(Debug, Clone)]
pub struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    q_norm: RmsNorm,
    k_norm: RmsNorm,
    dims: TransformerDims,
}

impl Attention {
    /// Loads `q_proj`, `k_proj`, `v_proj`, `o_proj`, `q_norm`, `k_norm` under `vb`.
    pub fn new(vb: &Weights, dims: TransformerDims) -> Result<Self> {
        let (h, q, kv) = (dims.hidden, dims.heads * dims.head_dim, dims.kv_heads * dims.head_dim);
        Ok(Self {
            q_proj: linear(vb, "q_proj", h, q, false)?,
            k_proj: linear(vb, "k_proj", h, kv, false)?,
            v_proj: linear(vb, "v_proj", h, kv, false)?,
            o_proj: linear(vb, "o_proj", q, h, false)?,
            q_norm: RmsNorm::new(vb, "q_norm", dims.head_dim, dims.eps)?,
            k_norm: RmsNorm::new(vb, "k_norm", dims.head_dim, dims.eps)?,
            dims,
        })
    }

    /// Projects `x` `[B, S, hidden]` to heads `[B, heads, S, D]`, each normed by `norm` and rotated by `rope` when
    /// given. On the CPU in f32 both run in place on the projection's `[B, S, heads, D]` output ([`NormRope`]) and
    /// the heads are a transposed view of it; elsewhere they are a contiguous copy.
    fn heads(
        &self,
        x: &Tensor,
        proj: &Linear,
        norm: Option<&RmsNorm>,
        rope: Option<&Rope>,
        heads: usize,
    ) -> Result<Tensor> {
        let (b, s, _) = x.dims3()?;
        let y = proj.forward(x)?.reshape((b, s, heads, self.dims.head_dim))?;
        if is_cpu_f32(&y) {
            let op = NormRope {
                weight: norm.map(|n| n.weight().to_vec1()).transpose()?,
                eps: norm.map_or(0.0, RmsNorm::eps),
            };
            match rope {
                Some(rope) => {
                    let (cos, sin) = rope.tables(s)?;
                    y.inplace_op3(&cos, &sin, &op)?;
                }
                None if norm.is_some() => y.inplace_op1(&op)?,
                None => {}
            }
            return Ok(y.transpose(1, 2)?);
        }
        let y = match norm {
            Some(norm) => norm.forward(&y)?,
            None => y,
        };
        let y = y.transpose(1, 2)?.contiguous()?;
        Ok(match rope {
            Some(rope) => rope.apply(&y)?,
            None => y,
        })
    }

    /// Keys and values of `source` `[B, S_k, hidden]`, rotated by `rope` when given (self-attention).
    pub fn key_values(&self, source: &Tensor, rope: Option<&Rope>) -> Result<KeyValues> {
        let k = self.heads(source, &self.k_proj, Some(&self.k_norm), rope, self.dims.kv_heads)?;
        let v = self.heads(source, &self.v_proj, None, None, self.dims.kv_heads)?;
        Ok(KeyValues { k, v })
    }

    /// Self-attention over `x` `[B, S, hidden]` with RoPE and the given mask.
    pub fn forward_self(&self, x: &Tensor, rope: &Rope, mask: AttnMask) -> Result<Tensor> {
        self.forward_self_first(x, x.dim(1)?, rope, mask)
    }

    /// Self-attention over `x` `[B, S, hidden]` for the queries at the first `queries` positions only (every
    /// position is still a key): `[B, queries, hidden]`, equal to the first rows of [`Attention::forward_self`].
    pub fn forward_self_first(&self, x: &Tensor, queries: usize, rope: &Rope, mask: AttnMask) -> Result<Tensor> {
        let q = self.heads(&first(x, queries)?, &self.q_proj, Some(&self.q_norm), Some(rope), self.dims.heads)?;
        let kv = self.key_values(x, Some(rope))?;
        self.finish(&q, &kv, mask)
    }

    /// Cross-attention of `x` onto precomputed encoder keys/values (no RoPE, no mask).
    pub fn forward_cross(&self, x: &Tensor, kv: &KeyValues) -> Result<Tensor> {
        let q = self.heads(x, &self.q_proj, Some(&self.q_norm), None, self.dims.heads)?;
        self.finish(&q, kv, AttnMask::Full)
    }

    fn finish(&self, q: &Tensor, kv: &KeyValues, mask: AttnMask) -> Result<Tensor> {
        let (b, _, s, _) = q.dims4()?;
        let out = attend(q, &kv.k, &kv.v, mask)?;
        let out = out.transpose(1, 2)?.reshape((b, s, self.dims.heads * self.dims.head_dim))?;
        Ok(self.o_proj.forward(&out)?)
    }
}

/// Scaled dot-product attention with GQA (query head h uses KV head h / (H/KV)), softmax in f32.
///
/// `q` is `[B, H, S, D]`, `k`/`v` are `[B, KV, S_k, D]` (any layout); returns `[B, H, S, D]`, on the panel path a
/// transposed view of a `[B, S, H, D]` tensor. Queries are processed in
/// chunks; sliding and causal masks only visit the keys a chunk can see. On the CPU in f32 the heads run through
/// [`PanelAttention`] where it applies, else the fused [`MaskedSoftmax`]; elsewhere an additive mask.
pub fn attend(q: &Tensor, k: &Tensor, v: &Tensor, mask: AttnMask) -> Result<Tensor> {
    let (b, heads, s, d) = q.dims4()?;
    let (_, kv_heads, s_k, _) = k.dims4()?;
    let rep = heads / kv_heads;
    let scale = 1.0 / (d as f64).sqrt();
    #[cfg(target_arch = "x86_64")]
    if is_cpu_f32(q) && PanelAttention::applies(d, s_k) {
        let op = PanelAttention { mask, scale: scale as f32 };
        return Ok(q.apply_op3_no_bwd(k, v, &op)?.transpose(1, 2)?);
    }
    let (k, v) = (k.contiguous()?, v.contiguous()?);
    let q = q.contiguous()?.reshape((b, kv_heads, rep, s, d))?;
    let mut chunks = Vec::with_capacity(s.div_ceil(QUERY_CHUNK));
    for q0 in (0..s).step_by(QUERY_CHUNK) {
        let q1 = (q0 + QUERY_CHUNK).min(s);
        let (k0, k1) = mask.key_range(q0, q1, s_k);
        let rows = q1 - q0;
        let qc = q.narrow(3, q0, rows)?.reshape((b, kv_heads, rep * rows, d))?;
        let kc = k.narrow(2, k0, k1 - k0)?;
        let vc = v.narrow(2, k0, k1 - k0)?.contiguous()?;
        let scores = qc.matmul(&kc.t()?)?;
        let probs = if is_cpu_f32(&scores) {
            scores.inplace_op1(&MaskedSoftmax { scale: scale as f32, mask, q0, rows, k0 })?;
            scores
        } else {
            let scores = (scores * scale)?.to_dtype(DType::F32)?;
            let scores = match band_mask(mask, q0, q1, k0, k1, q.device())? {
                Some(m) => scores.reshape((b, kv_heads, rep, rows, k1 - k0))?.broadcast_add(&m)?.reshape((
                    b,
                    kv_heads,
                    rep * rows,
                    k1 - k0,
                ))?,
                None => scores,
            };
            candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(v.dtype())?
        };
        chunks.push(probs.matmul(&vc)?.reshape((b, kv_heads, rep, rows, d))?);
    }
    Ok(Tensor::cat(&chunks, 3)?.reshape((b, heads, s, d))?)
}

/// Qwen3 SwiGLU MLP: `down(silu(gate(x)) · up(x))`, no biases.
#[derive(Debug, Clone)]
pub struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    /// Loads `gate_proj`, `up_proj`, `down_proj` under `vb`.
    pub fn new(vb: &Weights, dims: TransformerDims) -> Result<Self> {
        Ok(Self {
            gate_proj: linear(vb, "gate_proj", dims.hidden, dims.intermediate, false)?,
            up_proj: linear(vb, "up_proj", dims.hidden, dims.intermediate, false)?,
            down_proj: linear(vb, "down_proj", dims.intermediate, dims.hidden, false)?,
        })
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (gate, up) = (self.gate_proj.forward(x)?, self.up_proj.forward(x)?);
        let gated = if is_cpu_f32(&gate) {
            gate.inplace_op2(&up, &SiluMul)?;
            gate
        } else {
            (candle_nn::ops::silu(&gate)? * up)?
        };
        self.down_proj.forward(&gated)
    }
}

/// Pre-norm transformer layer (`AceStepEncoderLayer`, also the Qwen3 decoder layer).
#[derive(Debug, Clone)]
pub struct EncoderLayer {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
    mask: AttnMask,
}

impl EncoderLayer {
    /// Loads one layer under `vb` with the given attention mask.
    pub fn new(vb: &Weights, dims: TransformerDims, mask: AttnMask) -> Result<Self> {
        Ok(Self {
            input_layernorm: RmsNorm::new(vb, "input_layernorm", dims.hidden, dims.eps)?,
            self_attn: Attention::new(&vb.pp("self_attn"), dims)?,
            post_attention_layernorm: RmsNorm::new(vb, "post_attention_layernorm", dims.hidden, dims.eps)?,
            mlp: Mlp::new(&vb.pp("mlp"), dims)?,
            mask,
        })
    }

    /// `h + attn(norm(h))`, then `h + mlp(norm(h))`, for the first `outputs` positions of `h` `[B, S, hidden]`
    /// (all `S` serve as keys): `[B, outputs, hidden]`.
    pub fn forward(&self, h: &Tensor, rope: &Rope, outputs: usize) -> Result<Tensor> {
        let attn = self.self_attn.forward_self_first(&self.input_layernorm.forward(h)?, outputs, rope, self.mask)?;
        let h = (first(h, outputs)? + attn)?;
        Ok((&h + self.mlp.forward(&self.post_attention_layernorm.forward(&h)?)?)?)
    }
}

/// `layers.{0..n}` followed by the final `norm`, as used by the lyric, timbre, pooler, detokenizer and Qwen3
/// stacks.
#[derive(Debug, Clone)]
pub struct TransformerStack {
    layers: Vec<EncoderLayer>,
    norm: RmsNorm,
}

impl TransformerStack {
    /// Loads `layers.{i}` with `masks[i]` and `norm` under `vb`.
    pub fn new(vb: &Weights, dims: TransformerDims, masks: &[AttnMask]) -> Result<Self> {
        let layers = masks
            .iter()
            .enumerate()
            .map(|(i, &mask)| EncoderLayer::new(&vb.pp("layers").pp(i), dims, mask))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { layers, norm: RmsNorm::new(vb, "norm", dims.hidden, dims.eps)? })
    }

    /// Runs every layer with positions `0..S`, then the final norm.
    pub fn forward(&self, h: &Tensor, rope: &Rope) -> Result<Tensor> {
        self.forward_first(h, rope, h.dim(1)?)
    }

    /// The first `outputs` positions of [`TransformerStack::forward`], `[B, outputs, hidden]`: the last layer
    /// computes only those (the timbre encoder and the attention pooler keep position 0 alone).
    pub fn forward_first(&self, h: &Tensor, rope: &Rope, outputs: usize) -> Result<Tensor> {
        let mut h = h.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            let rows = if i + 1 == self.layers.len() { outputs } else { h.dim(1)? };
            h = layer.forward(&h, rope, rows)?;
        }
        Ok(self.norm.forward(&first(&h, outputs)?)?)
    }
}

/// The first `rows` positions of `x` `[B, S, ..]` (`x` itself when that is all of them).
fn first(x: &Tensor, rows: usize) -> candle_core::Result<Tensor> {
    if rows == x.dim(1)? {
        Ok(x.clone())
    } else {
        x.narrow(1, 0, rows)
    }
}

crate::model::resident::resident_fields!(RmsNorm { weight });
crate::model::resident::resident_fields!(Rope { cos, sin });
crate::model::resident::resident_fields!(Attention { q_proj, k_proj, v_proj, o_proj, q_norm, k_norm });
crate::model::resident::resident_fields!(Mlp { gate_proj, up_proj, down_proj });
crate::model::resident::resident_fields!(EncoderLayer { input_layernorm, self_attn, post_attention_layernorm, mlp });
crate::model::resident::resident_fields!(TransformerStack { layers, norm });

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::max_diff;

    fn naive_attention(q: &Tensor, k: &Tensor, v: &Tensor, visible: impl Fn(usize, usize) -> bool) -> Tensor {
        let (_, heads, s, d) = q.dims4().unwrap();
        let kv_heads = k.dim(1).unwrap();
        let rep = heads / kv_heads;
        let k = Tensor::cat(&(0..heads).map(|h| k.narrow(1, h / rep, 1).unwrap()).collect::<Vec<_>>(), 1).unwrap();
        let v = Tensor::cat(&(0..heads).map(|h| v.narrow(1, h / rep, 1).unwrap()).collect::<Vec<_>>(), 1).unwrap();
        let scores = (q.matmul(&k.t().unwrap()).unwrap() / (d as f64).sqrt()).unwrap();
        let mask: Vec<f32> = (0..s)
            .flat_map(|i| (0..s).map(move |j| (i, j)))
            .map(|(i, j)| if visible(i, j) { 0.0 } else { f32::NEG_INFINITY })
            .collect();
        let mask = Tensor::from_vec(mask, (s, s), &Device::Cpu).unwrap();
        let p = candle_nn::ops::softmax_last_dim(&scores.broadcast_add(&mask).unwrap()).unwrap();
        p.matmul(&v).unwrap()
    }

    #[test]
    fn in_place_norm_and_rope_equal_candles_norm_transpose_and_rope() {
        let (b, s, heads, d) = (2, 77, 3, 16);
        let norm = RmsNorm::new(&Weights::random(8, DType::F32, &Device::Cpu), "norm", d, 1e-6).unwrap();
        let rope = Rope::new(d, 10000.0, 100, DType::F32, &Device::Cpu).unwrap();
        let x = Tensor::randn(0f32, 2., (b, s, heads, d), &Device::Cpu).unwrap();
        let op = NormRope { weight: Some(norm.weight().to_vec1().unwrap()), eps: norm.eps() };
        let normed = norm.forward(&x).unwrap();

        let got = x.copy().unwrap();
        let (cos, sin) = rope.tables(s).unwrap();
        got.inplace_op3(&cos, &sin, &op).unwrap();
        let want = rope.apply(&normed.transpose(1, 2).unwrap()).unwrap().transpose(1, 2).unwrap();
        assert!(max_diff(&got, &want) < 1e-5, "norm and rope: {}", max_diff(&got, &want));

        let got = x.copy().unwrap();
        got.inplace_op1(&op).unwrap();
        assert!(max_diff(&got, &normed) < 1e-5, "norm alone: {}", max_diff(&got, &normed));
    }

    #[test]
    fn chunked_band_attention_matches_dense_masked_attention() {
        // S > QUERY_CHUNK so several chunks, and GQA with 2 query heads per KV head; heads 8 wide take candle's
        // matmuls, heads 64 wide (keys not a whole number of panels) the panel kernel on AVX-512 CPUs.
        let s = QUERY_CHUNK + 77;
        #[cfg(target_arch = "x86_64")]
        assert_eq!(PanelAttention::applies(64, s), crate::kernels::cpu::isa::avx512f());
        for d in [8, 64] {
            let q = Tensor::randn(0f32, 1., (1, 4, s, d), &Device::Cpu).unwrap();
            let k = Tensor::randn(0f32, 1., (1, 2, s, d), &Device::Cpu).unwrap();
            let v = Tensor::randn(0f32, 1., (1, 2, s, d), &Device::Cpu).unwrap();
            // The heads as the projections leave them on the CPU: transposed views of `[B, S, H, D]`.
            let view = |t: &Tensor| t.transpose(1, 2).unwrap().contiguous().unwrap().transpose(1, 2).unwrap();
            for mask in [AttnMask::Sliding(5), AttnMask::Causal, AttnMask::Full] {
                let want = naive_attention(&q, &k, &v, |i, j| mask.sees(i, j));
                for (q, k, v) in [(q.clone(), k.clone(), v.clone()), (view(&q), view(&k), view(&v))] {
                    let got = attend(&q, &k, &v, mask).unwrap();
                    assert!(max_diff(&got, &want) < 1e-5, "{mask:?}, d {d}: {}", max_diff(&got, &want));
                }
            }
        }
    }

    #[test]
    fn a_stack_computing_only_its_first_outputs_matches_the_full_stack() {
        let dims = TransformerDims { hidden: 128, intermediate: 192, heads: 4, kv_heads: 2, head_dim: 64, eps: 1e-6 };
        let masks = [AttnMask::Sliding(3), AttnMask::Full, AttnMask::Sliding(3)];
        let stack = TransformerStack::new(&Weights::random(3, DType::F32, &Device::Cpu), dims, &masks).unwrap();
        // 70 positions: the panel attention on AVX-512 CPUs; 2 sequences, as the pooler and timbre batches.
        let h = Tensor::randn(0f32, 1., (2, 70, dims.hidden), &Device::Cpu).unwrap();
        let rope = Rope::new(dims.head_dim, 10000.0, 70, DType::F32, &Device::Cpu).unwrap();
        let full = stack.forward(&h, &rope).unwrap();
        for outputs in [1, 5] {
            let got = stack.forward_first(&h, &rope, outputs).unwrap();
            assert_eq!(got.dims(), [2, outputs, dims.hidden]);
            assert!(max_diff(&got, &full.narrow(1, 0, outputs).unwrap()) < 1e-5, "{outputs} outputs");
        }
    }

    #[test]
    fn linear_loads_the_stored_weight_and_bias() {
        let vb = Weights::random(9, DType::F32, &Device::Cpu);
        let x = Tensor::randn(0f32, 1., (1, 5, 37), &Device::Cpu).unwrap();
        for out in [70, 128] {
            let layer = linear(&vb, "proj", 37, out, true).unwrap();
            let (weight, bias) =
                (vb.pp("proj").get(&[out, 37], "weight").unwrap(), vb.pp("proj").get(&[out], "bias").unwrap());
            let want = x.broadcast_matmul(&weight.t().unwrap()).unwrap().broadcast_add(&bias).unwrap();
            assert!(max_diff(&layer.forward(&x).unwrap(), &want) < 1e-5, "{out} outputs");
        }
    }

    #[test]
    fn rope_rotates_pairs_by_position_times_frequency() {
        let rope = Rope::new(4, 10000.0, 3, DType::F32, &Device::Cpu).unwrap();
        // x = [1, 0, 0, 0] at position 2: first pair (dims 0 and 2) rotates by angle 2·θ^0 = 2.
        let x = Tensor::from_vec(
            vec![0f32; 8].into_iter().chain([1., 0., 0., 0.]).collect::<Vec<_>>(),
            (1, 1, 3, 4),
            &Device::Cpu,
        )
        .unwrap();
        let y: Vec<f32> = rope.apply(&x).unwrap().narrow(2, 2, 1).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert!((y[0] - 2f32.cos()).abs() < 1e-6 && (y[2] - 2f32.sin()).abs() < 1e-6, "{y:?}");
        assert!(y[1].abs() < 1e-7 && y[3].abs() < 1e-7);
    }
}
