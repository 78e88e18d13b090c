//! Data-driven parity runner: reads `<fixtures>/manifest.json`, runs every case through the port by its
//! `kind`, and compares the produced `out.*` (and any `mid.*` the port exposes) with the reference at the
//! manifest's tolerances. `RETAKE_FIXTURES=<dir>` picks one fixture set; by default both `tests/fixtures` (the
//! turbo checkpoint) and `tests/fixtures-variants` (the XL-shaped guided checkpoint, APG, LoRA) run, each on the CPU
//! in f32 (the manifest's tolerances) and with bf16 weights (`RETAKE_CPU_PRECISION=bf16` alone; cosine ≥ 0.999,
//! codes ≥ 99 % equal).
//!
//! Prints `PARITY <case> <kind> max_abs=<..> worst_ratio=<..> PASS|FAIL|SKIP` per case; fails if any fails.
//! `parity_as_on_an_avx2_cpu` runs it all again in a child with `RETAKE_CPU_ISA=avx2`: every kernel as on a CPU
//! without AVX-512 (`engine/src/kernels/cpu/isa.rs`).

mod dit;
mod guidance;
mod harness;
mod kinds;
mod lora;
mod pipeline;
mod schedule;
mod text;
mod tokens;
mod vae;

use harness::{Fixtures, Verdict};

#[test]
fn parity() {
    let mut failed = Vec::new();
    let mut counts = [0usize; 3];
    #[cfg(target_arch = "x86_64")]
    println!(
        "parity kernels: avx512={} bf16={:?}",
        retake_engine::kernels::cpu::isa::avx512f(),
        retake_engine::kernels::cpu::bf16_panels::Bf16Kernel::selected().map(|k| k.map(|k| k.name()))
    );
    for fixtures in Fixtures::from_env() {
        println!("parity fixtures: {} on {}", fixtures.dir.display(), fixtures.target.describe());
        for case in fixtures.cases() {
            let verdict = case.run(kinds::run);
            println!("{}", verdict.line(&case));
            match verdict {
                Verdict::Pass { .. } => counts[0] += 1,
                Verdict::Fail { .. } => {
                    counts[1] += 1;
                    failed.push(case.name.clone());
                }
                Verdict::Skip { .. } => counts[2] += 1,
            }
        }
    }
    println!("parity: {} passed, {} failed, {} skipped", counts[0], counts[1], counts[2]);
    assert!(counts[0] + counts[1] > 0, "no parity case ran");
    assert!(failed.is_empty(), "parity cases failed: {failed:?}");
}

/// [`parity`] again in a child process whose kernels are capped at AVX2, as on a CPU without AVX-512: the f32 path
/// without the panels and the AVX-512 exponentials, and bf16 weights through `widen-avx2`.
#[cfg(target_arch = "x86_64")]
#[test]
fn parity_as_on_an_avx2_cpu() {
    use retake_engine::kernels::cpu::isa::ISA_ENV;
    if !std::is_x86_feature_detected!("avx2") || !std::is_x86_feature_detected!("fma") {
        println!("SKIP: this CPU has no AVX2 and FMA");
        return;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = std::process::Command::new(exe)
        .args(["--exact", "parity", "--nocapture", "--test-threads", "1"])
        .env(ISA_ENV, "avx2")
        .output()
        .expect("the parity test binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "parity under {ISA_ENV}=avx2 failed: {}", out.status);
    assert!(stdout.contains("parity kernels: avx512=false bf16=Ok(Some(\"widen-avx2\"))"), "the cap did not apply");
    let summary = stdout.lines().find(|l| l.starts_with("parity: ")).expect("the child's parity summary line");
    let passed: usize = summary["parity: ".len()..].split(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(passed > 0 && summary.contains(", 0 failed,"), "{summary}");
}
