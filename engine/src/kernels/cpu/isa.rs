//! Which x86-64 vector instructions the CPU kernels use (docs/acestep-model.md §14, CPU fast path): what this CPU
//! has, less what [`ISA_ENV`] rules out. `RETAKE_CPU_ISA=avx2` runs every kernel of this crate as on a CPU without
//! AVX-512 — the f32 panels and the panel attention stand aside for the GEMM, the exponentials run their scalar
//! form, and of the bf16 kernels only `widen-avx2` remains — so that the AVX2 paths are tested and timed on an
//! AVX-512 machine. The `gemm` crate follows the build instead: its AVX-512 kernel is the engine's default feature
//! `avx512-gemm` (`--no-default-features` leaves it out, as bench/compare.sh does with `ISA=avx2`).

use std::sync::OnceLock;

/// The environment variable that caps the instruction set: `avx2`, or `native` (the default: all this CPU has).
pub const ISA_ENV: &str = "RETAKE_CPU_ISA";

/// The most the kernels may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// Everything this CPU has.
    Native,
    /// AVX2 and FMA at most: no AVX-512 kernel runs.
    Avx2,
}

impl Isa {
    /// The cap [`ISA_ENV`] names; unset or empty is [`Isa::Native`], anything else an error naming the choices.
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        match value.map(str::trim).filter(|v| !v.is_empty()) {
            None | Some("native") => Ok(Self::Native),
            Some("avx2") => Ok(Self::Avx2),
            Some(other) => Err(format!("{ISA_ENV}={other} is not an instruction set; use avx2 or native, or unset it")),
        }
    }

    /// The cap of this process: [`ISA_ENV`] as it was when a kernel first asked (kernels ask on every call, so it
    /// is read once).
    pub fn current() -> Result<Self, String> {
        static CURRENT: OnceLock<Result<Isa, String>> = OnceLock::new();
        CURRENT.get_or_init(|| Self::parse(std::env::var(ISA_ENV).ok().as_deref())).clone()
    }
}

/// Whether the kernels may use AVX-512F: the CPU has it and [`ISA_ENV`] does not rule it out. (A value of
/// [`ISA_ENV`] that is not an instruction set is refused where a CPU checkpoint opens, `Weights::open`, and where
/// a CPU benchmark starts; it caps nothing.)
pub fn avx512f() -> bool {
    std::is_x86_feature_detected!("avx512f") && Isa::current() != Ok(Isa::Avx2)
}

/// Whether the kernels may use AVX512-BF16 (with AVX-512F).
pub fn avx512_bf16() -> bool {
    avx512f() && std::is_x86_feature_detected!("avx512bf16")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_avx2_or_native_and_anything_else_is_an_error_naming_both() {
        assert_eq!(Isa::parse(None), Ok(Isa::Native));
        assert_eq!(Isa::parse(Some(" ")), Ok(Isa::Native));
        assert_eq!(Isa::parse(Some("native")), Ok(Isa::Native));
        assert_eq!(Isa::parse(Some("avx2")), Ok(Isa::Avx2));
        let err = Isa::parse(Some("sse2")).unwrap_err();
        assert!(err.contains("RETAKE_CPU_ISA=sse2") && err.contains("avx2 or native"), "{err}");
    }

    #[test]
    fn the_kernels_use_avx512_only_where_the_cpu_has_it_and_the_cap_allows() {
        let capped = Isa::current() == Ok(Isa::Avx2);
        assert_eq!(avx512f(), std::is_x86_feature_detected!("avx512f") && !capped);
        assert!(!avx512_bf16() || avx512f());
    }
}
