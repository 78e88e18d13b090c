//! Weight-normed Conv1d / ConvTranspose1d of the Oobleck VAE (docs/acestep-model.md §8) on channels-last `[time,
//! channels]` activations, each computed as GEMMs over row windows instead of candle's im2col or naive paths
//! (docs/candle.md §2). On the CPU in bf16 precision (model/linear.rs, `CpuPrecision`) the folded weights are
//! rounded to bf16 and packed into bf16 panels (kernels/cpu/bf16_panels.rs), which multiply the overlapping windows
//! of the f32 activations in place: half the weights' memory, and no f32 GEMM packing per call.

use candle_core::{DType, Tensor};

use crate::error::{EngineError, Result};
#[cfg(target_arch = "x86_64")]
use crate::kernels::cpu::bf16_panels::{bf16_bits, Bf16Kernel};
#[cfg(target_arch = "x86_64")]
use crate::kernels::cpu::matmul::{transpose, PanelProduct, WindowProduct};
use crate::model::linear::held_matrix_dtype;
use crate::model::resident::ResidentBytes;
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

/// The taps of a conv as one matrix `[taps·width, out]` (see [`row_conv`]), held as the device computes with it.
enum TapMatrix {
    /// In the weights' dtype; candle (or the CUDA tap kernel) multiplies it.
    Tensor(Tensor),
    /// CPU, bf16 precision: bf16 panels, multiplied window by window ([`WindowProduct`]).
    #[cfg(target_arch = "x86_64")]
    Panels(PanelProduct),
}

impl TapMatrix {
    /// `weight` `[taps·width, out]` in f32, for inputs whose rows are a whole number of `channels` wide: bf16 panels
    /// on the CPU where [`held_tap_dtype`] says bf16; else the tensor in `vb`'s dtype.
    fn new(vb: &Weights, weight: Tensor, channels: usize) -> Result<Self> {
        let (inputs, outputs) = weight.dims2()?;
        let held = held_tap_dtype(vb.matrix_dtype(), vb.dtype(), outputs, inputs, channels);
        #[cfg(target_arch = "x86_64")]
        if vb.device().is_cpu() && vb.dtype() == DType::F32 && held == DType::BF16 {
            if let Some(kernel) = Bf16Kernel::selected().map_err(EngineError::invalid)? {
                let rows = transpose(&weight.flatten_all()?.to_vec1::<f32>()?, inputs, outputs);
                let bits: Vec<u16> = rows.into_iter().map(bf16_bits).collect();
                if let Some(panels) = PanelProduct::from_bf16_weight_rows(&bits, outputs, inputs, kernel) {
                    return Ok(Self::Panels(panels));
                }
            }
        }
        Ok(Self::Tensor(weight.to_dtype(vb.dtype())?))
    }
}

/// The dtype in which a conv of `channels` input channels holds its taps `[inputs, outputs]` when its matrices load
/// in `matrix` and it computes in `compute`: under f32 compute, bf16 (in panels) where [`held_matrix_dtype`] says
/// bf16 and `channels` is even, so that every row step of its windows is; else `compute`. The residency sizes count
/// the VAE so.
pub(crate) fn held_tap_dtype(matrix: DType, compute: DType, outputs: usize, inputs: usize, channels: usize) -> DType {
    let bf16 = held_matrix_dtype(matrix, compute, outputs, inputs) == DType::BF16;
    if compute == DType::F32 && channels.is_multiple_of(2) && bf16 {
        DType::BF16
    } else {
        compute
    }
}

impl ResidentBytes for TapMatrix {
    fn resident_bytes(&self) -> u64 {
        match self {
            Self::Tensor(weight) => weight.resident_bytes(),
            #[cfg(target_arch = "x86_64")]
            Self::Panels(panels) => panels.bytes(),
        }
    }
}

/// A Conv1d with its weight norm folded, laid out for channels-last GEMMs.
pub(super) struct Conv1d {
    /// `[kernel·in, out]`: row `j·in + c` is tap `j` of input channel `c`.
    weight: TapMatrix,
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
        Ok(Self { weight: TapMatrix::new(vb, weight, spec.in_channels)?, bias, spec })
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
    weight: TapMatrix,
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
        let weight = TapMatrix::new(vb, Tensor::cat(&[half(stride)?, half(0)?], 0)?, in_channels)?;
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
fn row_conv(x: &Tensor, taps: usize, gap: usize, m: usize, w: &TapMatrix) -> Result<Tensor> {
    let w = match w {
        TapMatrix::Tensor(w) => w,
        #[cfg(target_arch = "x86_64")]
        TapMatrix::Panels(panels) => {
            let windows = |rows: &Tensor, windows: usize| -> Result<Option<Tensor>> {
                Ok(Some(rows.contiguous()?.apply_op1_no_bwd(&WindowProduct { panels, windows })?))
            };
            let y = if gap == 1 { windows(x, m)? } else { phased(x, taps, gap, m, windows)? };
            return Ok(y.expect("window products always apply"));
        }
    };
    #[cfg(feature = "cuda")]
    if x.device().is_cuda() {
        let tf32 = w.dtype() != DType::F32;
        return crate::kernels::cuda::tap_conv::accumulate(x, taps, gap, m, &w.to_dtype(DType::F32)?, tf32);
    }
    let w = w.to_dtype(DType::F32)?;
    if x.device().is_cpu() {
        let gemm = |rows: &Tensor, windows: usize| windowed_gemm(rows, taps, windows, &w);
        let fast = if gap == 1 { gemm(x, m)? } else { phased(x, taps, gap, m, gemm)? };
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

/// Dilated taps on the CPU, as ONE product of adjacent-tap windows (`windows(rows, count)`: [`windowed_gemm`] or the
/// panels' [`WindowProduct`]; `None` when it does not apply): row `t` belongs to phase `t mod gap`, and within a
/// phase the taps are adjacent. The rows are gathered phase after phase, the windows run over the whole gathered
/// buffer (the few that straddle two phases are discarded), and the outputs are gathered back into time order.
fn phased(
    x: &Tensor,
    taps: usize,
    gap: usize,
    m: usize,
    windows: impl Fn(&Tensor, usize) -> Result<Option<Tensor>>,
) -> Result<Option<Tensor>> {
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
    let Some(y) = windows(&phases, gap * per_phase)? else { return Ok(None) };
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
        conv_case_in(spec, len, DType::F32);
    }

    /// The nearest bf16 of `v`, widened back to f32.
    fn bf16_rounded(v: f32) -> f32 {
        f32::from_bits(u32::from(crate::kernels::cpu::bf16_panels::bf16_bits(v)) << 16)
    }

    /// A conv whose matrices load in `matrix` (bf16: the CPU's bf16 precision) against the f64 reference conv of
    /// the weights as they are held (rounded to bf16 in panels) and the inputs as the kernel reads them.
    fn conv_case_in(spec: ConvSpec, len: usize, matrix: DType) {
        let weights = Weights::random(3, DType::F32, &Device::Cpu).with_matrix_dtype(matrix);
        let conv = Conv1d::load(&weights.pp("c"), spec, false).unwrap();
        let panels = matches!(conv.weight, TapMatrix::Panels(_));
        let kernel = Bf16Kernel::selected().unwrap();
        let fits = spec.out_channels.is_multiple_of(64);
        assert_eq!(panels, matrix == DType::BF16 && kernel.is_some() && fits, "{spec:?}");
        let bytes_per_weight = if panels { 2 } else { 4 };
        let weight_count = spec.out_channels * spec.in_channels * spec.kernel;
        assert_eq!(conv.weight.resident_bytes(), (bytes_per_weight * weight_count) as u64, "{spec:?}");
        let rounded = |t: Tensor, round: bool| {
            let t = t.to_vec3::<f32>().unwrap();
            t.into_iter()
                .map(|m| {
                    m.into_iter().map(|r| r.into_iter().map(|v| if round { bf16_rounded(v) } else { v }).collect())
                })
                .map(Iterator::collect)
                .collect::<Vec<Vec<Vec<f32>>>>()
        };
        let w = load_folded(&weights.pp("c"), [spec.out_channels, spec.in_channels, spec.kernel]).unwrap();
        let x = ramp(&[spec.in_channels, len], 0);
        let got = conv.forward(&x.t().unwrap()).unwrap().t().unwrap().to_vec2::<f32>().unwrap();
        let x_held = rounded(x.unsqueeze(0).unwrap(), panels && kernel == Some(Bf16Kernel::Dot)).remove(0);
        let expected = reference_conv(&x_held, &rounded(w, panels), spec);
        assert_eq!((got.len(), got[0].len()), (expected.len(), expected[0].len()), "{spec:?}");
        for (g, e) in got.iter().flatten().zip(expected.iter().flatten()) {
            assert!((f64::from(*g) - e).abs() < 1e-5, "{spec:?}: {g} vs {e}");
        }
    }

    #[test]
    fn a_model_computing_in_bf16_on_the_cpu_keeps_its_taps_as_a_bf16_tensor() {
        let weights = Weights::random(3, DType::BF16, &Device::Cpu);
        let conv = Conv1d::load(&weights.pp("c"), ConvSpec::same(4, 64, 7, 1), true).unwrap();
        assert!(matches!(&conv.weight, TapMatrix::Tensor(w) if w.dtype() == DType::BF16));
        // The VAE's activations are f32 whatever the weights' dtype.
        assert_eq!(conv.forward(&ramp(&[20, 4], 0)).unwrap().dims(), [20, 64]);
    }

    #[test]
    fn bf16_precision_packs_the_taps_into_bf16_panels_that_multiply_the_windows_in_place() {
        // Plain, dilated (phase-gathered), strided (rows grouped), inputs long enough to be split by rows (over
        // 4096), and a width the panels do not take (3 outputs).
        for (spec, len) in [
            (ConvSpec::same(2, 64, 7, 1), 6000),
            (ConvSpec::same(4, 64, 7, 9), 4500),
            (ConvSpec::same(6, 64, 7, 1), 23),
            (ConvSpec::same(4, 128, 7, 3), 31),
            (ConvSpec::same(4, 64, 7, 9), 12),
            (ConvSpec::downsample(2, 64, 2), 21),
            (ConvSpec::downsample(4, 128, 6), 47),
            (ConvSpec::same(4, 3, 7, 1), 9),
        ] {
            conv_case_in(spec, len, DType::BF16);
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
        // f32, then bf16 panels (`stride·cout` whole panels) against the weights and inputs as they hold them.
        let bf16 = Bf16Kernel::selected().unwrap();
        let cases = [(2usize, 5usize, 3usize, 2usize, DType::F32), (4, 3, 3, 2, DType::F32), (6, 1, 3, 2, DType::F32)];
        let bf16_cases = [(3, 4, 3, 2, DType::F32), (2, 5, 4, 32, DType::BF16), (4, 3, 6, 16, DType::BF16)];
        for (stride, len, cin, cout, matrix) in cases.into_iter().chain(bf16_cases) {
            let weights = Weights::random(5, DType::F32, &Device::Cpu).with_matrix_dtype(matrix);
            let conv = ConvTranspose1d::load(&weights.pp("t"), cin, cout, stride).unwrap();
            let panels = matches!(conv.weight, TapMatrix::Panels(_));
            assert_eq!(panels, matrix == DType::BF16 && bf16.is_some(), "stride {stride}");
            let round = |v: f32, round: bool| if round { bf16_rounded(v) } else { v };
            let w = load_folded(&weights.pp("t"), [cin, cout, 2 * stride]).unwrap().to_vec3::<f32>().unwrap();
            let w: Vec<Vec<Vec<f32>>> =
                w.iter().map(|m| m.iter().map(|r| r.iter().map(|&v| round(v, panels)).collect()).collect()).collect();
            let bias = weights.pp("t").get(&[cout], "bias").unwrap().to_vec1::<f32>().unwrap();
            let x = ramp(&[len, cin], 0);
            let got = conv.forward_padded(&x.pad_with_zeros(0, 1, 1).unwrap()).unwrap().to_vec2::<f32>().unwrap();
            let x = x.to_vec2::<f32>().unwrap();
            let x: Vec<Vec<f32>> = x
                .iter()
                .map(|r| r.iter().map(|&v| round(v, panels && bf16 == Some(Bf16Kernel::Dot))).collect())
                .collect();
            // PyTorch: out[o, t·s + j − p] += x[c, t]·W[c, o, j].
            let pad = stride.div_ceil(2);
            let out_len = (len - 1) * stride + 2 * stride - 2 * pad;
            assert_eq!(got.len(), out_len, "stride {stride}");
            let mut expected = vec![vec![0f64; cout]; out_len];
            for (t, row) in x.iter().enumerate() {
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
            let gemm = |rows: &Tensor, windows: usize| windowed_gemm(rows, 7, windows, &w);
            let fast = if gap == 1 { gemm(&x, m) } else { phased(&x, 7, gap, m, gemm) };
            let generic = per_tap_gemm(&x, 7, gap, m, &w).unwrap();
            assert!(max_diff(&fast.unwrap().unwrap(), &generic) < 1e-5, "gap {gap}");
        }
    }
}
