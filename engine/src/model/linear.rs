//! Linear layers `y = x·Wᵀ + b` (docs/acestep-model.md §4, §14). The layout of the weight is chosen once at load
//! for the device, and `forward` picks the kernel for it. On the CPU in f32:
//! - with AVX-512 and a width that is a whole number of 64-column panels (every transformer projection here),
//!   packed panels ([`PanelProduct`]), which packs nothing per call;
//! - otherwise the transposed `[in, out]` matrix, multiplied by [`ColumnSplitMatmul`] up to a few hundred input
//!   rows and by candle's GEMM above.
//!
//! On the CPU in bf16 precision ([`CpuPrecision`]) the weight arrives in bf16 and stays so, packed into bf16
//! panels (kernels/cpu/bf16_panels.rs) multiplied by the f32 activations with f32 accumulation; a width the
//! panels do not take, or a CPU without AVX2, widens that one weight to f32 and goes the f32 way.
//!
//! Elsewhere (GPU, bf16) the weight is kept as loaded and candle multiplies.

use candle_core::{CpuStorage, DType, Module, Storage, Tensor};

#[cfg(target_arch = "x86_64")]
use crate::kernels::cpu::bf16_panels::{Bf16Kernel, Bf16Panels};
#[cfg(target_arch = "x86_64")]
use crate::kernels::cpu::matmul::PanelProduct;
use crate::kernels::cpu::matmul::{transpose, ColumnSplitMatmul};
use crate::kernels::storage::is_cpu_f32;
use crate::model::resident::ResidentBytes;

/// The precision of the weight matrices on the CPU — the linear layers', the token embeddings' and the VAE convs'
/// (`RETAKE_CPU_PRECISION`, the settings key `cpu_precision`, the CLI's `--precision`). Activations are f32 either
/// way; norms, Snake, the audio tokenizer and FSQ keep f32 weights too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuPrecision {
    /// f32 weights (twice the memory).
    F32,
    /// bf16 weights, as the checkpoint stores them.
    Bf16,
}

impl CpuPrecision {
    /// The environment variable that sets the precision.
    pub const ENV: &str = "RETAKE_CPU_PRECISION";

    /// The name `--precision` and [`CpuPrecision::ENV`] take.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
        }
    }

    /// The dtype the linear layers' weight matrices load in on the CPU.
    pub fn matrix_dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::Bf16 => DType::BF16,
        }
    }
}

/// bf16 where this CPU multiplies bf16 panels at least as fast as f32 ones (README, benchmarks): AVX512-BF16.
impl Default for CpuPrecision {
    fn default() -> Self {
        #[cfg(target_arch = "x86_64")]
        if Bf16Kernel::Dot.supported() {
            return Self::Bf16;
        }
        Self::F32
    }
}

impl std::fmt::Display for CpuPrecision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for CpuPrecision {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" => Ok(Self::F32),
            "bf16" => Ok(Self::Bf16),
            other => Err(format!("`{other}` is not a CPU precision; use f32 or bf16")),
        }
    }
}

/// The dtype in which a weight matrix `[outputs, inputs]` loaded in `matrix` for inputs in `compute` is held:
/// on the CPU in bf16 precision (bf16 matrices, f32 inputs) bf16 where this CPU's bf16 panels take the shape, else
/// widened to f32; elsewhere as loaded. [`Linear::computing_in`] and the VAE's convs hold their weights so, and the
/// residency sizes count them so.
pub fn held_matrix_dtype(matrix: DType, compute: DType, outputs: usize, inputs: usize) -> DType {
    if matrix != DType::BF16 || compute != DType::F32 {
        return matrix;
    }
    #[cfg(target_arch = "x86_64")]
    if Bf16Panels::applies(outputs, inputs, outputs) && matches!(Bf16Kernel::selected(), Ok(Some(_))) {
        return DType::BF16;
    }
    DType::F32
}

/// Inputs with more rows than this go to candle's own GEMM, which then splits rows as well and packs each input
/// block once instead of once per column block (measured on 2 cores: the column split wins at 70, 125, 229 and
/// 375 rows — the 30 s DiT step 6 % faster — and loses on the 750-row timbre encoder).
const MAX_SPLIT_ROWS: usize = 512;

/// A linear layer computing `x·weightᵀ + bias` for a `weight` `[out, in]` and an optional `bias` `[out]`.
#[derive(Debug, Clone)]
pub struct Linear {
    product: Product,
    bias: Option<Tensor>,
}

/// How a layer's weight is held, chosen at load for the device, dtype and CPU.
#[derive(Debug, Clone)]
enum Product {
    /// `[out, in]`: on the CPU in f32 the transposed view of a contiguous `[in, out]` matrix.
    Matrix(Tensor),
    /// CPU f32 with AVX-512, or CPU bf16 with AVX2 or AVX-512: packed panels.
    #[cfg(target_arch = "x86_64")]
    Panels(std::sync::Arc<PanelProduct>),
}

impl Linear {
    /// A layer computing `x·weightᵀ + bias` for `weight` `[out, in]` (any layout) on inputs of the weight's dtype,
    /// re-laid out for the CPU when it lives there in f32 (see the module doc).
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> candle_core::Result<Self> {
        let compute = weight.dtype();
        Self::computing_in(weight, bias, compute)
    }

    /// [`Linear::new`] for inputs in `compute`: a CPU bf16 weight under f32 inputs stays bf16 in bf16 panels (or is
    /// widened to f32 where the panels do not apply; see the module doc).
    pub fn computing_in(weight: Tensor, bias: Option<Tensor>, compute: DType) -> candle_core::Result<Self> {
        let (outputs, inputs) = weight.dims2()?;
        let weight = if weight.device().is_cpu() && weight.dtype() == DType::BF16 && compute == DType::F32 {
            #[cfg(target_arch = "x86_64")]
            if let Some(kernel) = Bf16Kernel::selected().map_err(candle_core::Error::msg)? {
                let packed =
                    with_bf16_bits(&weight, |bits| PanelProduct::from_bf16_weight_rows(bits, outputs, inputs, kernel))?;
                if let Some(packed) = packed {
                    return Ok(Self { product: Product::Panels(std::sync::Arc::new(packed)), bias });
                }
            }
            weight.to_dtype(DType::F32)?
        } else {
            weight
        };
        let product = if is_cpu_f32(&weight) {
            let values = weight.flatten_all()?.to_vec1::<f32>()?;
            #[cfg(target_arch = "x86_64")]
            if let Some(packed) = PanelProduct::from_weight_rows(&values, outputs, inputs) {
                return Ok(Self { product: Product::Panels(std::sync::Arc::new(packed)), bias });
            }
            let columns = transpose(&values, outputs, inputs);
            Product::Matrix(Tensor::from_vec(columns, (inputs, outputs), weight.device())?.t()?)
        } else {
            Product::Matrix(weight)
        };
        Ok(Self { product, bias })
    }

    /// Multiplies `x` `[.., in]` by the weight, without the bias.
    fn product(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let weight = match &self.product {
            #[cfg(target_arch = "x86_64")]
            Product::Panels(panels) => {
                if !is_cpu_f32(x) {
                    candle_core::bail!("a CPU f32 linear layer got a {:?} input on {:?}", x.dtype(), x.device())
                }
                return x.contiguous()?.apply_op1_no_bwd(panels.as_ref());
            }
            Product::Matrix(weight) => weight,
        };
        let rows = x.elem_count() / weight.dim(1)?.max(1);
        let columns = weight.t()?;
        if is_cpu_f32(x) && rows <= MAX_SPLIT_ROWS && columns.is_contiguous() {
            return x.contiguous()?.apply_op2_no_bwd(&columns, &ColumnSplitMatmul);
        }
        x.broadcast_matmul(&columns)
    }
}

/// Calls `f` with the values of a CPU bf16 tensor, row-major, as bits (no copy when it is contiguous).
#[cfg(target_arch = "x86_64")]
fn with_bf16_bits<R>(t: &Tensor, f: impl FnOnce(&[u16]) -> R) -> candle_core::Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let (Storage::Cpu(CpuStorage::BF16(values)), Some((start, end))) = (&*storage, layout.contiguous_offsets()) else {
        candle_core::bail!("expected a contiguous bf16 tensor in CPU memory, got {:?} on {:?}", t.dtype(), t.device())
    };
    let values = &values[start..end];
    // SAFETY: `half::bf16` is `repr(transparent)` over its `u16` bits.
    Ok(f(unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<u16>(), values.len()) }))
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = self.product(x)?;
        match &self.bias {
            Some(bias) => y.broadcast_add(bias),
            None => Ok(y),
        }
    }
}

impl ResidentBytes for Linear {
    fn resident_bytes(&self) -> u64 {
        let weight = match &self.product {
            Product::Matrix(weight) => weight.resident_bytes(),
            #[cfg(target_arch = "x86_64")]
            Product::Panels(panels) => panels.bytes(),
        };
        weight + self.bias.as_ref().map_or(0, Tensor::resident_bytes)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::DType;

    use super::*;
    use crate::test_util::ramp;

    /// `x·wᵀ + b` in f64, element by element.
    fn reference(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Vec<f64> {
        let (rows, k) = x.dims2().unwrap();
        let (x, w, b) = (x.to_vec2::<f32>().unwrap(), weight.to_vec2::<f32>().unwrap(), bias.to_vec1::<f32>().unwrap());
        (0..rows)
            .flat_map(|r| (0..w.len()).map(move |o| (r, o)))
            .map(|(r, o)| (0..k).map(|i| x[r][i] as f64 * w[o][i] as f64).sum::<f64>() + b[o] as f64)
            .collect()
    }

    #[test]
    fn panel_widths_take_the_panel_kernel_on_avx512_and_match_an_f64_product() {
        // One and several panels; several feature blocks (> 1024 inputs) and row blocks (> 512 rows); every
        // remainder of the 6-row tile.
        for (rows, k, n) in [(1, 1, 64), (5, 7, 128), (13, 1100, 64), (125, 300, 192), (515, 20, 64), (70, 64, 256)] {
            let (x, weight, bias) = (ramp(&[rows, k], 1), ramp(&[n, k], 2), ramp(&[n], 3));
            let layer = Linear::new(weight.clone(), Some(bias.clone())).unwrap();
            let panels = matches!(layer.product, Product::Panels(_));
            assert_eq!(panels, crate::kernels::cpu::isa::avx512f(), "{rows}x{k}x{n}");
            let got = layer.forward(&x).unwrap();
            assert_eq!(got.dims(), [rows, n]);
            let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            for (g, want) in got.iter().zip(reference(&x, &weight, &bias)) {
                assert!((*g as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()) * (k as f64).sqrt(), "{rows}x{k}x{n}");
            }
        }
    }

    #[test]
    fn other_widths_keep_the_transposed_matrix_and_equal_candles_matmul_bit_for_bit() {
        // Up to 512 rows the column-split GEMM, above it candle's own.
        for (rows, k, n) in [(70, 96, 200), (1, 64, 17), (3, 5, 1), (129, 33, 48), (375, 40, 70), (600, 40, 70)] {
            let x = ramp(&[2, rows, k], 1);
            let stored = ramp(&[k, n], 2);
            let bias = ramp(&[n], 3);
            let layer = Linear::new(stored.t().unwrap(), Some(bias.clone())).unwrap();
            assert!(matches!(&layer.product, Product::Matrix(w) if w.t().unwrap().is_contiguous()));
            let got = layer.forward(&x).unwrap();
            let want = x.broadcast_matmul(&stored).unwrap().broadcast_add(&bias).unwrap();
            assert_eq!(got.dims(), [2, rows, n]);
            let diff = (got - want).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
            assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0, "{rows}x{k}x{n}");
        }
    }

    #[test]
    fn bf16_weights_stay_bf16_in_panels_at_half_the_bytes_and_match_an_f64_product() {
        let kernel = Bf16Kernel::selected().unwrap();
        for (rows, k, n) in [(5, 8, 128), (70, 300, 192), (600, 64, 64)] {
            let (x, weight, bias) =
                (ramp(&[rows, k], 1), ramp(&[n, k], 2).to_dtype(DType::BF16).unwrap(), ramp(&[n], 3));
            let layer = Linear::computing_in(weight.clone(), Some(bias.clone()), DType::F32).unwrap();
            let Product::Panels(panels) = &layer.product else { panic!("{rows}x{k}x{n} is not in panels") };
            assert_eq!(matches!(**panels, PanelProduct::Bf16(_)), kernel.is_some(), "{rows}x{k}x{n}");
            if kernel.is_some() {
                assert_eq!(layer.resident_bytes(), (n * k * 2 + n * 4) as u64, "{rows}x{k}x{n}");
            }
            // `bf16dot` multiplies the inputs rounded to bf16; the widening kernels the f32 inputs.
            let lhs = if kernel == Some(Bf16Kernel::Dot) { x.to_dtype(DType::BF16).unwrap() } else { x.clone() };
            let want = reference(&lhs.to_dtype(DType::F32).unwrap(), &weight.to_dtype(DType::F32).unwrap(), &bias);
            let got = layer.forward(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            for (g, want) in got.iter().zip(want) {
                assert!((*g as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()) * (k as f64).sqrt(), "{rows}x{k}x{n}");
            }
        }
    }

    #[test]
    fn a_bf16_weight_the_panels_do_not_take_is_widened_to_f32_and_multiplied_as_one() {
        // Not a whole number of panels, and an odd number of inputs.
        for (k, n) in [(64, 17), (7, 64)] {
            let weight = ramp(&[n, k], 2).to_dtype(DType::BF16).unwrap();
            let layer = Linear::computing_in(weight.clone(), None, DType::F32).unwrap();
            let widened = Linear::new(weight.to_dtype(DType::F32).unwrap(), None).unwrap();
            assert_eq!(layer.resident_bytes(), (n * k * 4) as u64);
            let x = ramp(&[3, k], 1);
            let diff = (layer.forward(&x).unwrap() - widened.forward(&x).unwrap()).unwrap();
            assert_eq!(diff.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap(), 0.0);
        }
    }

    #[test]
    fn a_bf16_weight_for_bf16_inputs_stays_the_matrix_candle_multiplies() {
        let weight = ramp(&[64, 32], 2).to_dtype(DType::BF16).unwrap();
        let layer = Linear::new(weight.clone(), None).unwrap();
        assert!(matches!(&layer.product, Product::Matrix(w) if w.dtype() == DType::BF16));
        let x = ramp(&[3, 32], 1).to_dtype(DType::BF16).unwrap();
        let want = x.matmul(&weight.t().unwrap()).unwrap();
        let diff = (layer.forward(&x).unwrap() - want).unwrap().abs().unwrap().flatten_all().unwrap();
        assert_eq!(diff.max(0).unwrap().to_dtype(DType::F32).unwrap().to_scalar::<f32>().unwrap(), 0.0);
    }

    #[test]
    fn the_precision_parses_its_two_names_and_refuses_others_naming_them() {
        assert_eq!("bf16".parse::<CpuPrecision>().unwrap(), CpuPrecision::Bf16);
        assert_eq!(" F32 ".parse::<CpuPrecision>().unwrap(), CpuPrecision::F32);
        let err = "fp16".parse::<CpuPrecision>().unwrap_err();
        assert!(err.contains("`fp16`") && err.contains("f32 or bf16"), "{err}");
        for precision in [CpuPrecision::F32, CpuPrecision::Bf16] {
            assert_eq!(precision.to_string().parse::<CpuPrecision>().unwrap(), precision);
        }
    }

    #[test]
    fn a_weight_of_the_wrong_width_or_dtype_is_an_error_not_a_panic() {
        let layer = Linear::new(ramp(&[64, 8], 2), None).unwrap();
        assert!(layer.forward(&ramp(&[3, 9], 1)).is_err());
        assert!(layer.forward(&ramp(&[3, 8], 1).to_dtype(DType::BF16).unwrap()).is_err());
    }
}
