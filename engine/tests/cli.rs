//! The `retake` binary end to end on the tiny fixture model (docs/acestep-model.md §13): WAV in, WAV out, the original
//! samples kept outside a repaint, lengths of covers and text2music, readable failures and Ctrl-C.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use retake_engine::audio::{write_wav, Audio, WavFormat};
use serde_json::Value;

fn fixture_model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny-acestep")
}

/// `retake` with `args` on the fixture model (unless `args` names another), ignoring `RETAKE_MODEL_DIR`.
fn retake_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_retake"));
    command.args(args).env_remove("RETAKE_MODEL_DIR");
    if !args.contains(&"--model") {
        command.arg("--model").arg(fixture_model());
    }
    command
}

fn retake(args: &[&str]) -> Output {
    retake_command(args).output().expect("the retake binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs a job that must succeed and returns its JSON summary.
fn succeed(args: &[&str]) -> Value {
    let output = retake(args);
    assert!(output.status.success(), "retake {args:?} failed: {}", stderr(&output));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "the summary is one line: {stdout}");
    serde_json::from_str(&stdout).unwrap()
}

/// Writes a 24-bit WAV of `channels` at `rate`, each a different chord of sines, `seconds` long.
fn write_music(path: &Path, rate: u32, channels: usize, seconds: f64) {
    let frames = (seconds * rate as f64).round() as usize;
    let channel = |c: usize| {
        (0..frames)
            .map(|i| {
                let t = i as f64 / rate as f64;
                let hz = [220.0, 277.2, 329.6].map(|f| f * (1.0 + c as f64 * 0.5));
                (hz.iter().map(|f| (std::f64::consts::TAU * f * t).sin()).sum::<f64>() * 0.25) as f32
            })
            .collect()
    };
    write_wav(path, &Audio::new(rate, (0..channels).map(channel).collect()), WavFormat::Int24).unwrap();
}

/// The file's format and its integer samples, planar.
fn read_ints(path: &Path) -> (hound::WavSpec, Vec<Vec<i32>>) {
    let reader = hound::WavReader::open(path).unwrap();
    let spec = reader.spec();
    let interleaved: Vec<i32> = reader.into_samples::<i32>().map(Result::unwrap).collect();
    let channels = usize::from(spec.channels);
    let planar = (0..channels).map(|c| interleaved.iter().skip(c).step_by(channels).copied().collect()).collect();
    (spec, planar)
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn repaint_of_a_48k_stereo_wav_keeps_every_sample_outside_the_region_and_crossfade() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.wav"), dir.path().join("out.wav"));
    write_music(&input, 48_000, 2, 4.0);
    let summary = succeed(&[
        "repaint",
        "--input",
        path_str(&input),
        "--output",
        path_str(&output),
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
        "--prompt",
        "glitchy synth",
    ]);

    let ((in_spec, original), (out_spec, result)) = (read_ints(&input), read_ints(&output));
    assert_eq!(out_spec, in_spec);
    assert_eq!((out_spec.sample_rate, out_spec.channels, out_spec.bits_per_sample), (48_000, 2, 24));
    // Region 72000..120000, crossfades of 4800 samples on either side.
    let (fade_start, fade_end) = (72_000 - 4_800, 120_000 + 4_800);
    for (c, (o, r)) in original.iter().zip(&result).enumerate() {
        assert_eq!(r.len(), o.len());
        let changed: Vec<usize> = (0..o.len()).filter(|&i| o[i] != r[i]).collect();
        assert!(changed.iter().all(|&i| (fade_start..fade_end).contains(&i)), "channel {c}: {:?}", changed.first());
        let inside = changed.iter().filter(|&&i| (72_000..120_000).contains(&i)).count();
        assert!(inside > 24_000, "channel {c}: only {inside} of 48000 samples in the region changed");
    }
    assert_eq!(summary["task"], "repaint");
    assert_eq!((summary["start"].as_f64(), summary["end"].as_f64()), (Some(1.5), Some(2.5)));
    assert_eq!((summary["seed"].as_u64(), summary["steps"].as_u64()), (Some(11), Some(2)));
    assert_eq!(
        (summary["input"].as_str(), summary["output"].as_str()),
        (Some(path_str(&input)), Some(path_str(&output)))
    );
    assert_eq!((summary["device"].as_str(), summary["mode"].as_str()), (Some("cpu"), Some("studio")));
    assert!(summary["seconds"].as_f64().unwrap() > 0.0);
}

/// Non-48 kHz input: the engine works on a resampled copy, and the CLI splices at the input's own rate, so the
/// original samples survive bit for bit from about 3 ms beyond the region and its crossfade.
#[test]
fn repaint_of_a_44k1_mono_wav_keeps_the_original_samples_at_its_own_rate() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.wav"), dir.path().join("out.wav"));
    write_music(&input, 44_100, 1, 1.5);
    succeed(&[
        "repaint",
        "--input",
        path_str(&input),
        "--output",
        path_str(&output),
        "--start",
        "0.6",
        "--end",
        "1.0",
        "--crossfade-ms",
        "50",
        "--steps",
        "2",
        "--seed",
        "5",
    ]);
    let ((_, original), (spec, result)) = (read_ints(&input), read_ints(&output));
    assert_eq!((spec.sample_rate, spec.channels, spec.bits_per_sample), (44_100, 2, 24));
    let margin = 441; // 10 ms
    let (keep_before, keep_after) = (26_460 - 2_205 - margin, 44_100 + 2_205 + margin);
    for r in &result {
        assert_eq!(r.len(), 66_150);
        assert_eq!(r[..keep_before], original[0][..keep_before]);
        assert_eq!(r[keep_after..], original[0][keep_after..]);
        assert_ne!(r[26_460..44_100], original[0][26_460..44_100]);
    }
}

#[test]
fn cover_output_has_the_inputs_rate_and_length() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.wav"), dir.path().join("out.wav"));
    write_music(&input, 22_050, 2, 1.0 + 1.0 / 22_050.0);
    let summary = succeed(&[
        "cover",
        "--input",
        path_str(&input),
        "--output",
        path_str(&output),
        "--prompt",
        "jazz trio",
        "--steps",
        "2",
        "--cover-strength",
        "0.5",
    ]);
    let (spec, result) = read_ints(&output);
    assert_eq!((spec.sample_rate, spec.channels, spec.bits_per_sample), (22_050, 2, 24));
    assert!(result.iter().all(|c| c.len() == 22_051));
    assert_eq!((summary["task"].as_str(), summary["cover_strength"].as_f64()), (Some("cover"), Some(0.5)));
    assert!(summary["seed"].is_u64(), "a random seed is reported: {summary}");
}

#[test]
fn text2music_output_has_the_requested_duration() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("nested/t2m.wav");
    let summary = succeed(&[
        "text2music",
        "--output",
        path_str(&output),
        "--duration",
        "1.3",
        "--prompt",
        "ambient pads",
        "--steps",
        "2",
        "--bpm",
        "90",
        "--key",
        "A minor",
        "--timesig",
        "3",
        "--language",
        "en",
        "--lyrics",
        "[verse]\nla la",
    ]);
    let (spec, result) = read_ints(&output);
    assert_eq!((spec.sample_rate, spec.channels, spec.bits_per_sample), (48_000, 2, 24));
    assert!(result.iter().all(|c| c.len() == 62_400));
    assert_eq!((summary["task"].as_str(), summary["duration_s"].as_f64()), (Some("text2music"), Some(1.3)));
    assert!(summary.get("input").is_none());
}

#[test]
fn errors_exit_non_zero_with_a_readable_message_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.wav"), dir.path().join("out.wav"));
    write_music(&input, 48_000, 2, 1.0);
    let missing = dir.path().join("missing.wav");
    let empty_model = tempfile::tempdir().unwrap();
    let (i, o, m) = (path_str(&input), path_str(&output), path_str(&missing));
    let cases: [(&[&str], &str); 6] = [
        (&["repaint", "--input", m, "--output", o, "--start", "0.1", "--end", "0.5"], "missing.wav`: No such file"),
        (
            &["repaint", "--input", i, "--output", o, "--start", "0.5", "--end", "0.1"],
            "--start 0.5 must be a number before --end 0.1",
        ),
        (
            &["repaint", "--input", i, "--output", o, "--start", "2", "--end", "3"],
            "misses the clip, which runs 0..1.000 s",
        ),
        (
            &["repaint", "--input", i, "--output", o, "--start", "0.1", "--end", "0.5", "--strength", "2"],
            "repaint strength 2 is outside 0..1",
        ),
        (
            &["text2music", "--output", o, "--duration", "1", "--prompt", "p", "--model", path_str(empty_model.path())],
            "of the model's files are missing",
        ),
        (&["cover", "--input", i, "--output", o, "--prompt", "p", "--device", "tpu"], "`tpu` is not a device"),
    ];
    for (args, message) in cases {
        let result = retake(args);
        assert!(!result.status.success(), "{args:?} succeeded");
        assert!(stderr(&result).contains(message), "{args:?}: {}", stderr(&result));
        assert!(result.stdout.is_empty(), "{args:?} printed a summary");
        assert!(!output.exists(), "{args:?} wrote a file");
    }
}

#[cfg(unix)]
#[test]
fn ctrl_c_cancels_the_job_and_exits_with_130() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.wav");
    let mut child = retake_command(&[
        "text2music",
        "--output",
        path_str(&output),
        "--duration",
        "1",
        "--prompt",
        "p",
        "--steps",
        "2000",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines().map(Result::unwrap);
    let first_step = lines.by_ref().find(|line| line.starts_with("retake: step 1/2000"));
    assert!(first_step.is_some(), "no step was reported");
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let rest: Vec<String> = lines.collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{rest:?}");
    assert_eq!(rest.last().map(String::as_str), Some("retake: cancelled"), "{rest:?}");
    let steps_after = rest.iter().filter(|l| l.starts_with("retake: step")).count();
    assert!(steps_after < 100, "{steps_after} steps ran after Ctrl-C");
    assert!(!output.exists());
}
