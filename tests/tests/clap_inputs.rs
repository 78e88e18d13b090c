//! Retake's task inputs through the CLAP bundle (README "Parameters"): a guided job on the guided fixture
//! checkpoint, a LoRA adapter and a timbre reference each make a take, and a broken adapter leaves the audio
//! passing through. Needs `target/bundled/Retake.clap` and, for the allocation check,
//! `target/alloc-check/Retake.clap` (`scripts/test.sh` builds both).

use std::path::{Path, PathBuf};

use retake_tests::paths::{alloc_check_clap_bundle, clap_bundle, guided_fixture_dit_dir};
use retake_tests::scenarios::run_in_child;

/// Exit status of a process that aborted (SIGABRT): an allocation on the audio thread under
/// `assert_process_allocs`.
const ABORT_STATUS: i32 = 134;

/// Runs `scenario` on the guided fixture checkpoint (variant xl-base, its DiT folder) and checks it passed.
fn assert_guided_scenario_passes(scenario: &str, bundle: &Path) {
    let env = [("RETAKE_VARIANT", PathBuf::from("xl-base")), ("RETAKE_DIT_DIR", guided_fixture_dit_dir())];
    let (code, output) = run_in_child(Path::new(env!("CARGO_BIN_EXE_retake-clap-host")), scenario, bundle, &env);
    assert_ne!(
        code,
        Some(ABORT_STATUS),
        "CLAP host, {}, {scenario}: the plugin allocated on the audio thread:\n{output}",
        bundle.display()
    );
    assert_eq!(code, Some(0), "CLAP host, {}, {scenario} failed:\n{output}", bundle.display());
}

#[test]
fn a_guided_job_on_the_guided_checkpoint_makes_a_take() {
    assert_guided_scenario_passes("guided", &clap_bundle());
}

#[test]
fn a_lora_adapter_from_the_settings_changes_the_take() {
    assert_guided_scenario_passes("lora", &clap_bundle());
}

#[test]
fn a_file_or_a_take_as_timbre_reference_changes_the_take() {
    assert_guided_scenario_passes("reference", &clap_bundle());
}

#[test]
fn a_broken_lora_adapter_makes_no_take_and_the_audio_passes_through() {
    assert_guided_scenario_passes("bad-lora", &clap_bundle());
}

#[test]
fn audio_thread_never_allocates_during_a_guided_job() {
    assert_guided_scenario_passes("guided", &alloc_check_clap_bundle());
}
