//! The Windows x64 build under Wine: `retake.exe repaint` on the fixture model keeps the original samples outside
//! the region bit for bit, and `Retake.clap` (the DLL) in the CLAP harness built for Windows passes audio through
//! bit for bit, makes a repaint that plays in place, comes back from a saved state in a fresh instance, and lets the
//! host destroy an instance and unload the DLL during a job.
//!
//! Ignored by a plain `cargo test`: they need `wine` and the Windows artifacts in `target/windows/`
//! (`RETAKE_WINDOWS_DIR` overrides), which `scripts/test.sh` builds with `cargo xtask bundle retake --release
//! --target x86_64-pc-windows-gnu` before running `cargo test -p retake-tests --test wine -- --ignored`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use retake_engine::audio::{read_wav, write_wav, Audio, WavFormat};
use retake_tests::paths::{fixture_model_dir, workspace_root};
use retake_tests::signal::test_signal;

/// The Windows build's file `name` (`retake.exe`, `Retake.clap` or `retake-clap-host.exe`), as Wine names it.
fn artifact(name: &str) -> String {
    let dir =
        std::env::var_os("RETAKE_WINDOWS_DIR").map_or_else(|| workspace_root().join("target/windows"), PathBuf::from);
    let path = dir.join(name);
    assert!(path.is_file(), "{} is missing: scripts/test.sh builds it (the Windows step)", path.display());
    windows_path(&path)
}

/// `path` as Windows programs under Wine see it: the Unix root is drive `Z:`.
fn windows_path(path: &Path) -> String {
    assert!(path.is_absolute(), "{} is not an absolute path", path.display());
    format!("Z:{}", path.display()).replace('/', "\\")
}

/// Runs the Windows program `program` under Wine with `args` and the extra environment `env`, headless and quiet,
/// and returns what it did; `wine` passes the program's exit code on.
fn wine(program: &str, args: &[String], env: &[(&str, String)]) -> Output {
    let mut command = Command::new("wine");
    command.arg(program).args(args).env_remove("DISPLAY").envs(env.iter().map(|(k, v)| (k, v)));
    if std::env::var_os("WINEDEBUG").is_none() {
        command.env("WINEDEBUG", "-all");
    }
    command.output().unwrap_or_else(|err| panic!("cannot run wine (is it installed?): {err}"))
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[test]
#[ignore = "needs Wine and the Windows build (scripts/test.sh)"]
fn windows_cli_repaint_keeps_every_sample_outside_the_region_and_crossfade() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.wav"), dir.path().join("out.wav"));
    write_wav(&input, &Audio::new(48_000, test_signal(48_000, 4.0)), WavFormat::Int24).unwrap();
    let args = [
        "repaint",
        "--model",
        &windows_path(&fixture_model_dir()),
        "--input",
        &windows_path(&input),
        "--output",
        &windows_path(&output),
        "--start",
        "1.5",
        "--end",
        "2.5",
        "--crossfade-ms",
        "100",
        "--steps",
        "2",
        "--seed",
        "11",
    ]
    .map(String::from);
    let run = wine(&artifact("retake.exe"), &args, &[]);
    assert!(run.status.success(), "retake.exe repaint under Wine failed ({}):\n{}", run.status, text(&run));
    let summary: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap_or_else(|err| {
        panic!("retake.exe printed no JSON summary ({err}):\n{}", text(&run));
    });
    assert_eq!((summary["task"].as_str(), summary["device"].as_str()), (Some("repaint"), Some("cpu")));

    // 24-bit samples read as f32 are exact, so equal floats are equal samples.
    let (original, result) = (read_wav(&input).unwrap(), read_wav(&output).unwrap());
    assert_eq!((result.sample_rate, result.channels.len()), (48_000, 2));
    // Region 72000..120000, crossfades of 4800 frames on either side.
    let (fade_start, fade_end) = (72_000 - 4_800, 120_000 + 4_800);
    for (c, (o, r)) in original.channels.iter().zip(&result.channels).enumerate() {
        assert_eq!(r.len(), o.len(), "channel {c}: length");
        let changed: Vec<usize> = (0..o.len()).filter(|&i| o[i].to_bits() != r[i].to_bits()).collect();
        let outside = changed.iter().find(|&&i| !(fade_start..fade_end).contains(&i));
        assert_eq!(outside, None, "channel {c}: a sample outside the region and its crossfades changed");
        let inside = changed.iter().filter(|&&i| (72_000..120_000).contains(&i)).count();
        assert!(inside > 24_000, "channel {c}: only {inside} of 48000 samples in the region changed");
    }
}

/// Runs scenario `scenario` of `retake-clap-host.exe` on the Windows `Retake.clap` with the fixture model and a
/// private `%APPDATA%` (Wine sets its own over the one it inherits, so `cmd` sets it for the harness); returns the
/// harness's output and the folder that was `%APPDATA%`.
fn clap_scenario(scenario: &str) -> (String, tempfile::TempDir) {
    let app_data = tempfile::tempdir().unwrap();
    let args = [
        "/c".to_string(),
        "set".to_string(),
        format!("APPDATA={}&&", windows_path(app_data.path())),
        artifact("retake-clap-host.exe"),
        scenario.to_string(),
        artifact("Retake.clap"),
    ];
    // Wine would quote an argument with a space, and cmd would then read the line differently.
    assert!(args.iter().all(|arg| !arg.contains(' ')), "cmd /c needs paths without spaces here: {args:?}");
    let run = wine("cmd", &args, &[("RETAKE_MODEL_DIR", windows_path(&fixture_model_dir()))]);
    let output = text(&run);
    print!("{output}");
    assert!(run.status.success(), "CLAP harness under Wine, {scenario} failed ({}):\n{output}", run.status);
    (output, app_data)
}

#[test]
#[ignore = "needs Wine and the Windows build (scripts/test.sh)"]
fn windows_clap_passes_through_and_plays_a_repaint_in_place_with_takes_under_appdata() {
    let (output, app_data) = clap_scenario("repaint");
    for line in ["capture pass: output = input bit for bit", "replay: take inside the region", "monitor = Original"] {
        assert!(output.contains(line), "the repaint scenario did not report \"{line}\":\n{output}");
    }
    let takes = app_data.path().join("retake/takes");
    let files: Vec<PathBuf> = std::fs::read_dir(&takes)
        .unwrap_or_else(|err| panic!("no take folder {} under %APPDATA%: {err}", takes.display()))
        .flat_map(|project| std::fs::read_dir(project.unwrap().path()).unwrap())
        .map(|file| file.unwrap().path())
        .collect();
    assert!(
        files.len() >= 2 && files.iter().all(|file| file.extension().is_some_and(|ext| ext == "wav")),
        "take files under {}: {files:?}",
        takes.display()
    );
}

#[test]
#[ignore = "needs Wine and the Windows build (scripts/test.sh)"]
fn windows_clap_state_restores_the_take_in_a_fresh_instance() {
    let (output, _app_data) = clap_scenario("state");
    assert!(output.contains("fresh instance: the restored take plays from the first block"), "{output}");
}

#[test]
#[ignore = "needs Wine and the Windows build (scripts/test.sh)"]
fn windows_clap_destroyed_mid_job_returns_at_once_and_the_dll_unloads_safely() {
    // The job worker outlives its instance with the DLL pinned (plugin/src/unload.rs); FreeLibrary must not unmap it.
    let (output, _app_data) = clap_scenario("unload");
    assert!(output.contains("the process lived on"), "{output}");
}
