//! Linear layers `y = x·Wᵀ + b` (spec §14, CPU fast path). On the CPU in f32, inputs of up to a few hundred
//! rows (captions, lyrics, the DiT's tokens) run as one single-threaded GEMM per core over a slice of the output
//! columns: up to 3× faster than one GEMM split by the GEMM library itself, which scales badly at so few rows.
//! Every output element is computed by the same kernel with the same summation order, so results do not change.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Module, Shape, Tensor};

/// Output columns per task are a multiple of this (one AVX-512 register of f32).
const COLUMN_ALIGN: usize = 16;
/// Inputs with more rows than this go to candle's own GEMM, which then splits rows as well and packs each input
/// block once instead of once per column block (measured on 2 cores: the column split wins at 70, 125, 229 and
/// 375 rows — the 30 s DiT step 6 % faster — and loses on the 750-row timbre encoder).
const MAX_SPLIT_ROWS: usize = 512;

/// A linear layer holding `weight` `[out, in]` (on the CPU in f32 best stored as the transposed view of a
/// contiguous `[in, out]` matrix, as [`super::layers::linear`] does) and an optional `bias` `[out]`.
#[derive(Debug, Clone)]
pub struct Linear {
    inner: candle_nn::Linear,
}

impl Linear {
    /// A layer computing `x·weightᵀ + bias`.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self { inner: candle_nn::Linear::new(weight, bias) }
    }

    /// `[out, in]`.
    pub fn weight(&self) -> &Tensor {
        self.inner.weight()
    }

    /// `[out]`, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.inner.bias()
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let weight = self.weight();
        let rows = x.elem_count() / weight.dim(1)?.max(1);
        if x.device().is_cpu() && x.dtype() == DType::F32 && weight.dtype() == DType::F32 && rows <= MAX_SPLIT_ROWS {
            let columns = weight.t()?;
            if columns.is_contiguous() {
                let y = x.contiguous()?.apply_op2_no_bwd(&columns, &ColumnSplitMatmul)?;
                return match self.bias() {
                    Some(bias) => y.broadcast_add(bias),
                    None => Ok(y),
                };
            }
        }
        self.inner.forward(x)
    }
}

/// `[.., K] · [K, N]` → `[.., N]` for contiguous f32 operands: the `N` columns are cut into one block per
/// thread of the rayon pool, each multiplied by a single-threaded GEMM.
struct ColumnSplitMatmul;

impl CustomOp2 for ColumnSplitMatmul {
    fn name(&self) -> &'static str {
        "column-split-matmul"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        w: &CpuStorage,
        w_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (k, n) = w_layout.shape().dims2()?;
        let dims = x_layout.shape().dims();
        if dims.last() != Some(&k) {
            candle_core::bail!("column-split-matmul: input {:?} does not end in the weight's {k} rows", dims)
        }
        let m = x_layout.shape().elem_count() / k.max(1);
        let (x, w) = (f32_slice(x, x_layout, self.name())?, f32_slice(w, w_layout, self.name())?);
        let mut out = vec![0f32; m * n];
        let block = n.div_ceil(rayon::current_num_threads().max(1)).next_multiple_of(COLUMN_ALIGN);
        // Column block `c0..c0 + cols` of every row: disjoint strided regions of `out`, handed out through a raw
        // pointer because they interleave in memory.
        let dst = SendPtr(out.as_mut_ptr());
        rayon::scope(|scope| {
            for c0 in (0..n).step_by(block) {
                let cols = block.min(n - c0);
                let dst = &dst;
                scope.spawn(move |_| {
                    // SAFETY: `x` is `[m, k]`, `w` is `[k, n]` and `out` is `[m, n]`, all row-major and alive for the
                    // scope; each task writes only columns `c0..c0 + cols` of `out`, which no other task touches.
                    unsafe {
                        gemm::gemm(
                            m,
                            cols,
                            k,
                            dst.0.add(c0),
                            1,
                            n as isize,
                            false,
                            x.as_ptr(),
                            1,
                            k as isize,
                            w.as_ptr().add(c0),
                            1,
                            n as isize,
                            0.0,
                            1.0,
                            false,
                            false,
                            false,
                            gemm::Parallelism::None,
                        )
                    }
                });
            }
        });
        let mut shape = dims.to_vec();
        *shape.last_mut().expect("checked above") = n;
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }
}

/// The output pointer shared by the column tasks.
struct SendPtr(*mut f32);

// SAFETY: the tasks write disjoint column blocks (see `ColumnSplitMatmul::cpu_fwd`).
unsafe impl Sync for SendPtr {}

/// The f32 values of a contiguous tensor.
pub(crate) fn f32_slice<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(values) = storage else { candle_core::bail!("{op} takes f32 tensors") };
    let Some((start, end)) = layout.contiguous_offsets() else { candle_core::bail!("{op} takes contiguous tensors") };
    Ok(&values[start..end])
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    fn ramp(shape: &[usize], seed: usize) -> Tensor {
        let n: usize = shape.iter().product();
        let values: Vec<f32> = (0..n).map(|i| ((i * 7919 + seed) % 211) as f32 / 105.0 - 1.0).collect();
        Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn the_column_split_product_equals_candles_matmul_bit_for_bit() {
        for (rows, k, n) in [(70, 96, 200), (1, 64, 17), (3, 5, 1), (129, 33, 48), (375, 40, 70)] {
            let x = ramp(&[2, rows, k], 1);
            let stored = ramp(&[k, n], 2);
            let bias = ramp(&[n], 3);
            let layer = Linear::new(stored.t().unwrap(), Some(bias.clone()));
            let got = layer.forward(&x).unwrap();
            let want = x.broadcast_matmul(&stored).unwrap().broadcast_add(&bias).unwrap();
            assert_eq!(got.dims(), [2, rows, n]);
            let diff = (got - want).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
            assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0, "{rows}x{k}x{n}");
        }
    }

    #[test]
    fn weights_without_the_transposed_layout_take_candles_path() {
        let x = ramp(&[4, 8], 1);
        let weight = ramp(&[6, 8], 2); // [out, in] contiguous: its transpose is not
        let got = Linear::new(weight.clone(), None).forward(&x).unwrap();
        let want = x.matmul(&weight.t().unwrap()).unwrap();
        let diff = (got - want).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
    }
}
