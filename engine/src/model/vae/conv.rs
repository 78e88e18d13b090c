//! Weight-normed Conv1d / ConvTranspose1d of the Oobleck VAE (docs/acestep-model.md §8) on channels-last `[time,
//! channels]` activations, each computed as GEMMs over row windows instead of candle's im2col or naive paths
//! (docs/candle.md §2).

use candle_core::{DType, Tensor};

use crate::error::{EngineError, Result};
use crate::model::weights::Weights;

/// PyTorch weight norm, `W = g · v / ‖v‖` with the norm over every dim but 0, computed in f32.
pub(super) fn weight_norm(g: &Tensor, v: &Tensor) -> Result<Tensor> {
    let (g, v) = (g.to_dtype(DType::F32)?, v.to_dtype(DType::F32)?);
    let norm = v.sqr()?.sum_keepdim((1, 2))?.sqrt()?;
    Ok(v.broadcast_mul(&(g / norm)?)?)
}

/// Loads `weight_g` / `weight_v` of a conv whose `weight_v` has `shape` and folds them (once, at load).
fn load_folded(vb: &Weights, shape: [usize; 3]) -> Result<Tensor> {
    let v = vb.get_as(&shape, "weight_v", DType::F32)?;
    let g = vb.get_as(&[shape[0], 1, 1], "weight_g", DType::F32)?;
    weight_norm(&g, &v)
}

/// Geometry of a Conv1d.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ConvSpec {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel taps.
    pub kernel: usize,
    /// Step between outputs, in input samples.
    pub stride: usize,
    /// Step between taps, in input samples.
    pub dilation: usize,
    /// Zero samples added at each end.
    pub padding: usize,
}

impl ConvSpec {
    /// A length-preserving conv (`padding = dilation·(kernel−1)/2`, stride 1), as in the residual units.
    pub fn same(in_channels: usize, out_channels: usize, kernel: usize, dilation: usize) -> Self {
        Self { in_channels, out_channels, kernel, stride: 1, dilation, padding: dilation * (kernel - 1) / 2 }
    }

    /// The encoder's downsampling conv: kernel `2·stride`, padding `ceil(stride/2)` (floors the length).
    pub fn downsample(in_channels: usize, out_channels: usize, stride: usize) -> Self {
        Self { in_channels, out_channels, kernel: 2 * stride, stride, dilation: 1, padding: stride.div_ceil(2) }
    }
}

/// A Conv1d with its weight norm folded, laid out for channels-last GEMMs.
pub(super) struct Conv1d {
    /// `[kernel·in, out]`: row `j·in + c` is tap `j` of input channel `c`; stored in the weights' dtype.
    weight: Tensor,
    /// `[out]`, f32.
    bias: Option<Tensor>,
    spec: ConvSpec,
}

impl Conv1d {
    /// Loads `weight_g`, `weight_v` (`[out, in, kernel]`) and, if `bias`, `bias` under `vb`.
    pub fn load(vb: &Weights, spec: ConvSpec, bias: bool) -> Result<Self> {
        let strided_ok = spec.stride == 1 || (spec.dilation == 1 && spec.kernel.is_multiple_of(spec.stride));
        if spec.kernel == 0 || spec.stride == 0 || spec.dilation == 0 || !strided_ok {
            return Err(EngineError::UnsupportedModel(format!("VAE conv geometry {spec:?} is not an Oobleck layer")));
        }
        let w = load_folded(vb, [spec.out_channels, spec.in_channels, spec.kernel])?;
        let weight = w.permute((2, 1, 0))?.reshape((spec.kernel * spec.in_channels, spec.out_channels))?;
        let bias = if bias { Some(vb.get_as(&[spec.out_channels], "bias", DType::F32)?) } else { None };
        Ok(Self { weight: weight.to_dtype(vb.dtype())?, bias, spec })
    }

    /// Zero rows [`Conv1d::forward_padded`] expects at each end of its input.
    pub fn padding(&self) -> usize {
        self.spec.padding
    }

    /// Hands the bias to the caller (to fuse it into the next op); this conv then returns pre-bias values.
    pub fn take_bias(&mut self) -> Option<Tensor> {
        self.bias.take()
    }

    /// `[len, in]` → `[out_len, out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_padded(&x.pad_with_zeros(0, self.spec.padding, self.spec.padding)?)
    }

    /// Like [`Conv1d::forward`] for an input that already has [`Conv1d::padding`] zero rows at each end.
    pub fn forward_padded(&self, x: &Tensor) -> Result<Tensor> {
        let ConvSpec { in_channels, kernel, stride, dilation, .. } = self.spec;
        let rows = x.dim(0)?;
        let span = dilation * (kernel - 1) + 1;
        if rows < span {
            return Err(EngineError::invalid(format!(
                "a VAE layer got {rows} samples (with padding) but its kernel spans {span}; the input is too short"
            )));
        }
        let out_len = (rows - span) / stride + 1;
        let y = if stride == 1 {
            row_conv(x, kernel, dilation, out_len, &self.weight)?
        } else {
            // Group `stride` rows into one: the kernel (a multiple of the stride) becomes kernel/stride adjacent taps.
            let taps = kernel / stride;
            let groups = out_len + taps - 1;
            let grouped = x.narrow(0, 0, groups * stride)?.reshape((groups, stride * in_channels))?;
            row_conv(&grouped, taps, 1, out_len, &self.weight)?
        };
        add_bias(y, self.bias.as_ref())
    }
}

/// The decoder's upsampling ConvTranspose1d (kernel `2·stride`, padding `ceil(stride/2)`), weight norm folded.
///
/// With kernel 2s, full output row `u·s + r` is `x[u]·W[.., r] + x[u−1]·W[.., s+r]`, so the whole transposed conv
/// is one GEMM of adjacent input-row pairs against `[W_hi; W_lo]`, reshaped and cropped: no col2im, no naive path.
pub(super) struct ConvTranspose1d {
    /// `[2·in, stride·out]`: rows `0..in` multiply `x[u−1]` (taps `s..2s`), rows `in..2·in` multiply `x[u]`.
    weight: Tensor,
    /// `[out]`, f32.
    bias: Option<Tensor>,
    stride: usize,
    out_channels: usize,
}

impl ConvTranspose1d {
    /// Zero rows [`ConvTranspose1d::forward_padded`] expects at each end of its input.
    pub const PADDING: usize = 1;

    /// Loads `weight_g` (`[in, 1, 1]`), `weight_v` (`[in, out, 2·stride]`) and `bias` under `vb`.
    pub fn load(vb: &Weights, in_channels: usize, out_channels: usize, stride: usize) -> Result<Self> {
        let w = load_folded(vb, [in_channels, out_channels, 2 * stride])?;
        // [in, out, taps] → [in, taps·out] per kernel half, row c / column r·out + o = W[c, o, r].
        let half = |first_tap: usize| -> Result<Tensor> {
            Ok(w.narrow(2, first_tap, stride)?.permute((0, 2, 1))?.reshape((in_channels, stride * out_channels))?)
        };
        let weight = Tensor::cat(&[half(stride)?, half(0)?], 0)?.to_dtype(vb.dtype())?;
        let bias = Some(vb.get_as(&[out_channels], "bias", DType::F32)?);
        Ok(Self { weight, bias, stride, out_channels })
    }

    /// Hands the bias to the caller (to fuse it into the next ops); this conv then returns pre-bias values.
    pub fn take_bias(&mut self) -> Option<Tensor> {
        self.bias.take()
    }

    /// `[len + 2, in]` (one zero row at each end) → `[len·stride + stride − 2·ceil(stride/2), out]`.
    pub fn forward_padded(&self, x: &Tensor) -> Result<Tensor> {
        let rows = x.dim(0)?;
        if rows < 3 {
            return Err(EngineError::invalid("a VAE upsampling layer got an empty input; pass at least one frame"));
        }
        let full_rows = (rows - 1) * self.stride;
        let full = row_conv(x, 2, 1, rows - 1, &self.weight)?.reshape((full_rows, self.out_channels))?;
        let crop = self.stride.div_ceil(2);
        add_bias(full.narrow(0, crop, full_rows - 2 * crop)?, self.bias.as_ref())
    }
}

fn add_bias(y: Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    Ok(match bias {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    })
}

/// `Σ_i x[i·gap .. i·gap + m] · w_i`: a convolution over the rows of `x` (`[rows, width]`, f32) in which tap `i`
/// reads `i·gap` rows after the output row, with the taps' `[width, n]` matrices stacked in `w`
/// (`[taps·width, n]`). Returns `[m, n]` f32.
fn row_conv(x: &Tensor, taps: usize, gap: usize, m: usize, w: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if x.device().is_cuda() {
        let tf32 = w.dtype() != DType::F32;
        return crate::kernels::cuda::tap_conv::accumulate(x, taps, gap, m, &w.to_dtype(DType::F32)?, tf32);
    }
    let w = w.to_dtype(DType::F32)?;
    if x.device().is_cpu() {
        let fast = if gap == 1 { windowed_gemm(x, taps, m, &w)? } else { phased_gemm(x, taps, gap, m, &w)? };
        if let Some(y) = fast {
            return Ok(y);
        }
    }
    per_tap_gemm(x, taps, gap, m, &w)
}

/// Adjacent taps as ONE GEMM with `K = taps·width`: the windows are an overlapping, zero-copy view of the
/// contiguous rows (`unfold` with step `width`), which the CPU GEMM reads through its row stride.
/// `None` when the view would not hold `m` windows (unfold counts in f32; never the case for real sizes).
fn windowed_gemm(x: &Tensor, taps: usize, m: usize, w: &Tensor) -> Result<Option<Tensor>> {
    let width = x.dim(1)?;
    let windows = x.contiguous()?.flatten_all()?.unfold(0, taps * width, width)?;
    if windows.dim(0)? < m {
        return Ok(None);
    }
    Ok(Some(windows.narrow(0, 0, m)?.matmul(w)?))
}

/// Dilated taps on the CPU, as ONE [`windowed_gemm`]: row `t` belongs to phase `t mod gap`, and within a phase the
/// taps are adjacent. The rows are gathered phase after phase, the windows run over the whole gathered buffer (the
/// few that straddle two phases are discarded), and the outputs are gathered back into time order.
fn phased_gemm(x: &Tensor, taps: usize, gap: usize, m: usize, w: &Tensor) -> Result<Option<Tensor>> {
    let rows = x.dim(0)?;
    let per_phase = rows.div_ceil(gap);
    // Row `u·gap + r` goes to `r·per_phase + u`. Positions past the end, and `taps − 1` spare rows closing the
    // buffer, repeat the last row: only windows whose outputs are discarded read them.
    let last = rows as u32 - 1;
    let gather: Vec<u32> = (0..gap)
        .flat_map(|r| (0..per_phase).map(move |u| ((u * gap + r) as u32).min(last)))
        .chain(std::iter::repeat_n(last, taps - 1))
        .collect();
    let gather_len = gather.len();
    let phases = x.index_select(&Tensor::from_vec(gather, gather_len, x.device())?, 0)?;
    let Some(y) = windowed_gemm(&phases, taps, gap * per_phase, w)? else { return Ok(None) };
    drop(phases);
    let order: Vec<u32> = (0..m).map(|t| ((t % gap) * per_phase + t / gap) as u32).collect();
    Ok(Some(y.index_select(&Tensor::from_vec(order, m, x.device())?, 0)?))
}

/// Any device: one GEMM per tap on contiguous row slices, summed (CUDA accumulates in place instead, see
/// [`crate::kernels::cuda::tap_conv`]; this runs on other GPUs and where the CPU's fast paths do not apply).
fn per_tap_gemm(x: &Tensor, taps: usize, gap: usize, m: usize, w: &Tensor) -> Result<Tensor> {
    let width = x.dim(1)?;
    let x = x.contiguous()?;
    let mut sum = x.narrow(0, 0, m)?.matmul(&w.narrow(0, 0, width)?)?;
    for tap in 1..taps {
        sum = (sum + x.narrow(0, tap * gap, m)?.matmul(&w.narrow(0, tap * width, width)?)?)?;
    }
    Ok(sum)
}

crate::model::resident::resident_fields!(Conv1d { weight, bias });
crate::model::resident::resident_fields!(ConvTranspose1d { weight, bias });

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::test_util::{max_diff, ramp};

    #[test]
    fn weight_norm_matches_a_direct_computation() {
        let (o, i, k) = (3, 4, 5);
        let v = (ramp(&[o, i, k], 0) * 0.7).unwrap();
        let g = Tensor::new(&[0.5f32, -2.0, 3.0], &Device::Cpu).unwrap().reshape((o, 1, 1)).unwrap();
        let folded = weight_norm(&g, &v).unwrap().to_vec3::<f32>().unwrap();
        let (vv, gv) = (v.to_vec3::<f32>().unwrap(), [0.5f64, -2.0, 3.0]);
        for a in 0..o {
            let norm = vv[a].iter().flatten().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
            for b in 0..i {
                for c in 0..k {
                    let expected = gv[a] * f64::from(vv[a][b][c]) / norm;
                    assert!((f64::from(folded[a][b][c]) - expected).abs() < 1e-6, "[{a},{b},{c}]");
                }
            }
        }
    }

    /// Direct PyTorch-semantics Conv1d on channels-first `[in, len]`, f64.
    fn reference_conv(x: &[Vec<f32>], w: &[Vec<Vec<f32>>], s: ConvSpec) -> Vec<Vec<f64>> {
        let len = x[0].len() as isize;
        let span = (s.dilation * (s.kernel - 1) + 1) as isize;
        let out_len = ((len + 2 * s.padding as isize - span) / s.stride as isize + 1) as usize;
        (0..s.out_channels)
            .map(|o| {
                (0..out_len)
                    .map(|t| {
                        let mut acc = 0f64;
                        for (xc, taps) in x.iter().zip(&w[o]) {
                            for (j, &wj) in taps.iter().enumerate() {
                                let pos = (t * s.stride + j * s.dilation) as isize - s.padding as isize;
                                if (0..len).contains(&pos) {
                                    acc += f64::from(wj) * f64::from(xc[pos as usize]);
                                }
                            }
                        }
                        acc
                    })
                    .collect()
            })
            .collect()
    }

    fn conv_case(spec: ConvSpec, len: usize) {
        let weights = Weights::random(3, DType::F32, &Device::Cpu);
        let conv = Conv1d::load(&weights.pp("c"), spec, false).unwrap();
        let w = load_folded(&weights.pp("c"), [spec.out_channels, spec.in_channels, spec.kernel]).unwrap();
        let x = ramp(&[spec.in_channels, len], 0);
        let got = conv.forward(&x.t().unwrap()).unwrap().t().unwrap().to_vec2::<f32>().unwrap();
        let expected = reference_conv(&x.to_vec2().unwrap(), &w.to_vec3().unwrap(), spec);
        assert_eq!((got.len(), got[0].len()), (expected.len(), expected[0].len()), "{spec:?}");
        for (g, e) in got.iter().flatten().zip(expected.iter().flatten()) {
            assert!((f64::from(*g) - e).abs() < 1e-5, "{spec:?}: {g} vs {e}");
        }
    }

    #[test]
    fn conv_matches_pytorch_semantics_for_same_dilated_and_strided_geometry() {
        conv_case(ConvSpec::same(5, 6, 7, 1), 23);
        conv_case(ConvSpec::same(4, 3, 7, 3), 31);
        conv_case(ConvSpec::same(4, 3, 7, 9), 12);
        conv_case(ConvSpec::same(3, 4, 1, 1), 9);
        conv_case(ConvSpec::downsample(3, 5, 2), 21);
        conv_case(ConvSpec::downsample(2, 4, 6), 47);
        conv_case(ConvSpec::downsample(2, 4, 5), 33);
    }

    #[test]
    fn conv_transpose_matches_pytorch_semantics() {
        for (stride, len) in [(2usize, 5usize), (4, 3), (6, 1), (3, 4)] {
            let (cin, cout) = (3, 2);
            let weights = Weights::random(5, DType::F32, &Device::Cpu);
            let conv = ConvTranspose1d::load(&weights.pp("t"), cin, cout, stride).unwrap();
            let w = load_folded(&weights.pp("t"), [cin, cout, 2 * stride]).unwrap().to_vec3::<f32>().unwrap();
            let bias = weights.pp("t").get(&[cout], "bias").unwrap().to_vec1::<f32>().unwrap();
            let x = ramp(&[len, cin], 0);
            let got = conv.forward_padded(&x.pad_with_zeros(0, 1, 1).unwrap()).unwrap().to_vec2::<f32>().unwrap();
            // PyTorch: out[o, t·s + j − p] += x[c, t]·W[c, o, j].
            let pad = stride.div_ceil(2);
            let out_len = (len - 1) * stride + 2 * stride - 2 * pad;
            assert_eq!(got.len(), out_len, "stride {stride}");
            let xv = x.to_vec2::<f32>().unwrap();
            let mut expected = vec![vec![0f64; cout]; out_len];
            for (t, row) in xv.iter().enumerate() {
                for (&xc, wc) in row.iter().zip(&w) {
                    for (o, taps) in wc.iter().enumerate() {
                        for (j, &wj) in taps.iter().enumerate() {
                            if let Some(pos) = (t * stride + j).checked_sub(pad).filter(|&p| p < out_len) {
                                expected[pos][o] += f64::from(xc) * f64::from(wj);
                            }
                        }
                    }
                }
            }
            for (g, e) in got.iter().zip(&expected) {
                for o in 0..cout {
                    assert!((f64::from(g[o]) - (e[o] + f64::from(bias[o]))).abs() < 1e-5, "stride {stride}");
                }
            }
        }
    }

    #[test]
    fn cpu_fast_paths_equal_the_plain_per_tap_sum() {
        let x = ramp(&[80, 6], 0);
        let w = (ramp(&[7 * 6, 5], 0) * 0.3).unwrap();
        for gap in [1, 3, 9] {
            let m = 80 - gap * 6;
            let fast = if gap == 1 { windowed_gemm(&x, 7, m, &w) } else { phased_gemm(&x, 7, gap, m, &w) };
            let generic = per_tap_gemm(&x, 7, gap, m, &w).unwrap();
            assert!(max_diff(&fast.unwrap().unwrap(), &generic) < 1e-5, "gap {gap}");
        }
    }
}
