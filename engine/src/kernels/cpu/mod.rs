//! CPU kernels on f32 activations, each a candle `CustomOp` / `InplaceOp` or the loop inside one (docs/acestep-model.md §14,
//! "CPU fast path"). Each file is named for the operation it computes.

pub mod adaln;
#[cfg(target_arch = "x86_64")]
pub mod bf16_panels;
pub mod exp;
#[cfg(target_arch = "x86_64")]
pub mod isa;
pub mod masked_softmax;
pub mod matmul;
pub mod norm_rope;
#[cfg(target_arch = "x86_64")]
pub mod panel_attention;
#[cfg(target_arch = "x86_64")]
pub mod panels;
pub mod rms;
pub mod silu_mul;
pub mod snake_residual;
