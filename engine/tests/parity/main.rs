//! Data-driven parity runner: reads `<fixtures>/manifest.json`, runs every case through the port by its
//! `kind`, and compares the produced `out.*` (and any `mid.*` the port exposes) with the reference at the
//! manifest's tolerances. `RETAKE_FIXTURES=<dir>` picks one fixture set; by default both `tests/fixtures` (the
//! turbo checkpoint) and `tests/fixtures-variants` (the XL-shaped guided checkpoint, APG, LoRA) run, each on the CPU
//! in f32 (the manifest's tolerances) and with bf16 weights (`RETAKE_CPU_PRECISION=bf16` alone; cosine ≥ 0.999,
//! codes ≥ 99 % equal).
//!
//! Prints `PARITY <case> <kind> max_abs=<..> worst_ratio=<..> PASS|FAIL|SKIP` per case; fails if any fails.

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
