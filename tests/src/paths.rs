//! Where the host tests find the plugin bundles and the fixture model (README "Set-up"; docs/plugin-hosting.md §2).

use std::path::PathBuf;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Reads a path from environment variable `name`, or falls back to `default` under the workspace root.
fn from_env_or(name: &str, default: &str) -> PathBuf {
    std::env::var_os(name).map(PathBuf::from).unwrap_or_else(|| workspace_root().join(default))
}

/// The release CLAP bundle from `cargo xtask bundle retake --release` (`RETAKE_CLAP_BUNDLE` overrides).
pub fn clap_bundle() -> PathBuf {
    from_env_or("RETAKE_CLAP_BUNDLE", "target/bundled/Retake.clap")
}

/// The debug CLAP bundle built with `--features assert_process_allocs`, copied aside so the release bundle
/// can be built after it (`RETAKE_ALLOC_CHECK_CLAP` overrides; `scripts/test.sh` makes it).
pub fn alloc_check_clap_bundle() -> PathBuf {
    from_env_or("RETAKE_ALLOC_CHECK_CLAP", "target/alloc-check/Retake.clap")
}

/// The tiny random-weight ACE-Step model in the original checkpoint layout.
pub fn fixture_model_dir() -> PathBuf {
    workspace_root().join("tests/fixtures/tiny-acestep")
}

/// The variant fixture set: the guided XL-shaped DiT and the LoRA adapters made for it.
pub fn fixture_variants_dir() -> PathBuf {
    workspace_root().join("tests/fixtures-variants")
}

/// The guided (xl-base) fixture DiT folder, used with [`fixture_model_dir`] as the main model.
pub fn guided_fixture_dit_dir() -> PathBuf {
    fixture_variants_dir().join("tiny-acestep/acestep-v15-xl-base")
}

/// A DiffSynth-format rank-4 LoRA adapter for the guided fixture DiT.
pub fn guided_fixture_lora() -> PathBuf {
    fixture_variants_dir().join("loras/acestep-v15-xl-base-lora-r4.safetensors")
}
