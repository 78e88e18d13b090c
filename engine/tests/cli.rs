//! The `retake` binary end to end on the tiny fixture model (docs/acestep-model.md §13): WAV in, WAV out, the original
//! samples kept outside a repaint, lengths of covers and text2music, readable failures and Ctrl-C.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use retake_engine::audio::{write_wav, Audio, WavFormat};
use serde_json::Value;

fn fixture_model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny-acestep")
}

/// The variant fixture set (its tiny XL-shaped DiT and LoRA files).
fn variants() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures-variants")
}

/// `retake` with `args` on the fixture model (unless `args` names another), ignoring `RETAKE_MODEL_DIR` and
/// `RETAKE_VARIANT`.
fn retake_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_retake"));
    command.args(args).env_remove("RETAKE_MODEL_DIR").env_remove("RETAKE_VARIANT");
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

/// `retake repaint` of `input` into `output` over `start`..`end` seconds, followed by `extra`.
fn repaint_args<'a>(
    input: &'a Path,
    output: &'a Path,
    start: &'a str,
    end: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args =
        vec!["repaint", "--input", path_str(input), "--output", path_str(output), "--start", start, "--end", end];
    args.extend_from_slice(extra);
    args
}

#[test]
fn repaint_of_a_48k_stereo_wav_keeps_every_sample_outside_the_region_and_crossfade() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.wav"), dir.path().join("out.wav"));
    write_music(&input, 48_000, 2, 4.0);
    let summary = succeed(&repaint_args(
        &input,
        &output,
        "1.5",
        "2.5",
        &["--crossfade-ms", "100", "--steps", "2", "--seed", "11", "--prompt", "glitchy synth"],
    ));

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
    succeed(&repaint_args(&input, &output, "0.6", "1.0", &["--crossfade-ms", "50", "--steps", "2", "--seed", "5"]));
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
    let output = dir.path().join("t2m.wav");
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

/// A guided variant from its own DiT folder (the tiny sharded XL-shaped one) beside the main model: its defaults
/// (50 steps, shift 3, cfg 4) apply, and the flags override them.
#[test]
fn a_guided_xl_variant_from_a_dit_dir_runs_text2music_at_its_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("xl.wav");
    let xl =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures-variants/tiny-acestep/acestep-v15-xl-base");
    let args = ["text2music", "--output", path_str(&output), "--duration", "0.5", "--prompt", "dub", "--seed", "3"];
    let with_xl = |extra: &[&'static str]| {
        let more = ["--variant", "xl-base", "--dit-dir", path_str(&xl)];
        [&args[..], &more[..], extra].concat()
    };
    let summary = succeed(&with_xl(&[]));
    let settings = |s: &Value| {
        (s["variant"].as_str().map(str::to_owned), s["steps"].as_u64(), s["shift"].as_f64(), s["cfg"].as_f64())
    };
    assert_eq!(settings(&summary), (Some("xl-base".into()), Some(50), Some(3.0), Some(4.0)));
    let (spec, result) = read_ints(&output);
    assert_eq!(spec.sample_rate, 48_000);
    assert!(result.iter().all(|c| c.len() == 24_000));
    let overridden = succeed(&with_xl(&["--steps", "3", "--shift", "2", "--cfg", "1.5"]));
    assert_eq!(settings(&overridden), (Some("xl-base".into()), Some(3), Some(2.0), Some(1.5)));
    // APG only on the first of three steps (σ = 1) gives other audio than APG on all of them.
    let all_steps = read_ints(&output).1;
    succeed(&with_xl(&["--steps", "3", "--shift", "2", "--cfg", "1.5", "--cfg-interval", "0.95", "1"]));
    assert_ne!(read_ints(&output).1, all_steps);
}

#[test]
fn errors_exit_non_zero_with_a_readable_message_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.wav"), dir.path().join("out.wav"));
    write_music(&input, 48_000, 2, 1.0);
    let missing = dir.path().join("missing.wav");
    let empty_model = tempfile::tempdir().unwrap();
    let folder_for_a_file = model_with_a_folder_for("vae/config.json");
    let slow = dir.path().join("slow.wav");
    write_one_hertz_ten_hours(&slow);
    let (i, o, m, s) = (path_str(&input), path_str(&output), path_str(&missing), path_str(&slow));
    let (short, silent) = (dir.path().join("short.wav"), dir.path().join("silent.wav"));
    write_music(&short, 44_100, 2, 0.5);
    write_wav(&silent, &Audio::new(48_000, vec![vec![0.0; 96_000]; 2]), WavFormat::Int24).unwrap();
    let (malformed, no_codes) = (dir.path().join("malformed.txt"), dir.path().join("prose.txt"));
    std::fs::write(&malformed, "<|audio_code_12|><|audio_code_7>").unwrap();
    std::fs::write(&no_codes, "no codes here").unwrap();
    let cover_from =
        |codes: &Path| strings(&["cover", "--audio-codes", path_str(codes), "--output", o, "--prompt", "p"]);
    let lora = variants().join("loras/acestep-v15-xl-base-lora-r4.safetensors");
    let with_lora =
        |lora: &str| strings(&["text2music", "--output", o, "--duration", "1", "--prompt", "p", "--lora", lora]);
    let repaint = |extra: &[&str]| -> Vec<String> {
        let base = ["repaint", "--input", i, "--output", o, "--start", "0.1", "--end", "0.5"];
        base.iter().chain(extra).map(|a| a.to_string()).collect()
    };
    let text2music_with = |model: &Path| {
        strings(&["text2music", "--output", o, "--duration", "1", "--prompt", "p", "--model", path_str(model)])
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            strings(&["repaint", "--input", m, "--output", o, "--start", "0.1", "--end", "0.5"]),
            "missing.wav`: No such file",
        ),
        (
            strings(&["repaint", "--input", i, "--output", o, "--start", "0.5", "--end", "0.1"]),
            "the region 0.5..0.1 s must start before it ends",
        ),
        (
            strings(&["repaint", "--input", i, "--output", o, "--start", "2", "--end", "3"]),
            "misses the clip, which runs 0..1.000 s",
        ),
        (repaint(&["--strength", "2"]), "2 is out of range; give a number above 0 up to 1"),
        (repaint(&["--strength", "0"]), "0 is out of range; give a number above 0 up to 1"),
        (repaint(&["--crossfade-ms", "inf"]), "inf is out of range; give a number from 0 up to 500"),
        (repaint(&["--crossfade-ms", "-5"]), "-5 is out of range; give a number from 0 up to 500"),
        (repaint(&["--crossfade-ms", "NaN"]), "NaN is out of range; give a number from 0 up to 500"),
        (repaint(&["--steps", "4294967295"]), "4294967295 is not in 1..=1000"),
        (repaint(&["--bpm", "-5"]), "-5 is out of range; give a number above 0"),
        (
            strings(&["repaint", "--input", i, "--output", o, "--range", "0:0.5", "--range", "0.3:0.8"]),
            "the regions 0..0.5 s and 0.3..0.8 s overlap; merge them into one --range",
        ),
        (
            strings(&["repaint", "--input", i, "--output", o, "--range", "0.5:0.5"]),
            "the range 0.5..0.5 s is empty or not finite; give a start before the end",
        ),
        (
            repaint(&["--reference", path_str(&short)]),
            "short.wav`: invalid input: timbre reference 1 is 0.50 s long; a timbre reference needs at least 1 s",
        ),
        (repaint(&["--reference", i, "--reference", path_str(&silent)]), "timbre reference 2 is silent"),
        (cover_from(&malformed), "`<|audio_code_7>` on line 1 is not an audio code"),
        (cover_from(&no_codes), "prose.txt`: holds no <|audio_code_N|> tokens"),
        (
            with_lora(path_str(&lora)),
            "tensor `layers.0.cross_attn.k_proj.lora_A.default.weight` and `layers.0.cross_attn.k_proj.lora_B.default.weight` \
             make a [32, 96] update but `decoder.layers.0.cross_attn.k_proj.weight` is [32, 64] (a LoRA for another \
             model size)",
        ),
        (with_lora(m), "missing.wav` is missing: the LoRA file is not there; check the path given with --lora"),
        (
            strings(&["repaint", "--input", s, "--output", o, "--start", "0", "--end", "1"]),
            "slow.wav` is sampled at 1 Hz; Retake takes audio from 8000 Hz up",
        ),
        (text2music_with(empty_model.path()), "of the model's files are missing"),
        (text2music_with(folder_for_a_file.path()), "vae/config.json`: it is a folder, not a file"),
        (
            strings(&["text2music", "--output", o, "--duration", "601", "--prompt", "p"]),
            "give a number above 0 up to 600",
        ),
        (strings(&["cover", "--input", i, "--output", o, "--prompt", "p", "--device", "tpu"]), "`tpu` is not a device"),
        (
            strings(&["text2music", "--output", o, "--duration", "1", "--prompt", "p", "--variant", "large"]),
            "`large` is not an ACE-Step 1.5 variant; pick one of turbo, turbo-shift1, turbo-shift3, turbo-continuous, \
             base, sft, xl-base, xl-sft, xl-turbo",
        ),
        (
            strings(&["text2music", "--output", o, "--duration", "1", "--prompt", "p", "--cfg-interval", "0.9", "0.2"]),
            "cfg interval 0.9..0.2 must lie within 0..1 with start ≤ end",
        ),
        (
            strings(&["text2music", "--output", o, "--duration", "1", "--prompt", "p", "--cfg-interval", "1.5", "2"]),
            "1.5 is out of range; give a number from 0 up to 1",
        ),
        (
            strings(&["text2music", "--output", o, "--duration", "1", "--prompt", "p", "--cfg", "4"]),
            "a guidance scale (cfg) of 4 needs a guided model, but the turbo variant is guidance-distilled and runs \
             without guidance; set cfg to 1, or load a guided variant (base, sft, xl-base, xl-sft)",
        ),
        (
            strings(&["text2music", "--output", o, "--duration", "1", "--prompt", "p", "--variant", "base"]),
            "fetch them with `huggingface-cli download ACE-Step/acestep-v15-base config.json model.safetensors",
        ),
    ];
    for (args, message) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let started = std::time::Instant::now();
        let result = retake(&args);
        assert!(!result.status.success(), "{args:?} succeeded");
        assert!(stderr(&result).contains(message), "{args:?}: {}", stderr(&result));
        assert!(!stderr(&result).contains("retake: step"), "{args:?} ran the job: {}", stderr(&result));
        assert!(started.elapsed().as_secs() < 20, "{args:?} took {:?}", started.elapsed());
        assert!(result.stdout.is_empty(), "{args:?} printed a summary");
        assert!(!output.exists(), "{args:?} wrote a file");
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// A 72 KB mono WAV whose header says 1 Hz: ten hours of audio.
fn write_one_hertz_ten_hours(path: &Path) {
    let spec =
        hound::WavSpec { channels: 1, sample_rate: 1, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut writer = hound::WavWriter::create(path, spec).unwrap();
    (0..36_000).for_each(|i| writer.write_sample((i % 100) as i16).unwrap());
    writer.finalize().unwrap();
}

/// A model folder holding a folder in place of `file` (what else is missing does not matter: that is said first).
fn model_with_a_folder_for(file: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(file)).unwrap();
    dir
}

/// The output's folder is checked before any work: the job never starts (here it could not, with no input and no
/// model), and the message names the output.
#[test]
fn an_output_that_cannot_be_written_is_refused_before_the_job_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file.txt");
    std::fs::write(&file, "").unwrap();
    let missing_folder = dir.path().join("no/such/folder/out.wav");
    let under_a_file = file.join("out.wav");
    let mut cases = vec![
        (missing_folder.clone(), format!("cannot write `{}`: the folder", missing_folder.display())),
        (
            under_a_file.clone(),
            format!("cannot write `{}`: `{}` is not a folder", under_a_file.display(), file.display()),
        ),
    ];
    // A folder that takes no new files, not even from root (tests may run as root).
    if cfg!(target_os = "linux") {
        cases.push((PathBuf::from("/proc/out.wav"), "cannot write `/proc/out.wav`: ".into()));
    }
    for (output, message) in cases {
        let result = retake(&repaint_args(
            &dir.path().join("absent.wav"),
            &output,
            "0",
            "1",
            &["--model", path_str(&dir.path().join("no-model"))],
        ));
        assert_eq!(result.status.code(), Some(1), "{}", stderr(&result));
        assert!(stderr(&result).contains(&message), "{output:?}: {}", stderr(&result));
    }
}

/// A write that fails half way (here: a file size limit, as a full disk would) leaves the file it was to replace
/// exactly as it was — even when that file is the input — reports a write failure and leaves no stray file.
#[cfg(unix)]
#[test]
fn a_failed_write_leaves_the_existing_output_intact_even_when_it_is_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let song = dir.path().join("song.wav");
    write_music(&song, 48_000, 2, 1.0);
    let before = std::fs::read(&song).unwrap();
    // SIGXFSZ ignored, so the write past the limit fails with EFBIG instead of killing the process; the limit
    // (64 blocks of 512 or 1024 bytes) is far below the 288 KB result.
    let result = Command::new("sh")
        .arg("-c")
        .arg(r#"trap "" XFSZ; ulimit -f 64 && exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_retake"))
        .args(["repaint", "--input", path_str(&song), "--output", path_str(&song), "--start", "0.2", "--end", "0.6"])
        .args(["--steps", "2", "--seed", "1", "--model", path_str(&fixture_model())])
        .env_remove("RETAKE_MODEL_DIR")
        .output()
        .unwrap();
    assert_eq!(result.status.code(), Some(1), "{}", stderr(&result));
    assert!(
        stderr(&result).contains(&format!("cannot write `{}`: File too large", song.display())),
        "{}",
        stderr(&result)
    );
    assert!(std::fs::read(&song).unwrap() == before, "the input was changed");
    let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(entries, ["song.wav"]);
}

/// A region may start exactly at the clip's end (the engine extends the clip there), as the error message says.
#[test]
fn a_region_starting_at_the_clips_end_extends_it() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.wav"), dir.path().join("out.wav"));
    write_music(&input, 48_000, 2, 1.0);
    let summary = succeed(&repaint_args(&input, &output, "1", "1.5", &["--steps", "2", "--seed", "3"]));
    let ((_, original), (_, result)) = (read_ints(&input), read_ints(&output));
    assert_eq!(summary["duration_s"].as_f64(), Some(1.5));
    for (o, r) in original.iter().zip(&result) {
        assert_eq!(r.len(), 72_000);
        assert_eq!(r[..48_000 - 4_800], o[..48_000 - 4_800], "the clip before the crossfade is kept");
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
        "1000",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines().map(Result::unwrap);
    let first_step = lines.by_ref().find(|line| line.starts_with("retake: step 1/1000"));
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

/// Two regions in one job, the first starting before the clip (outpainting its front): the clip comes back
/// longer by the padding, and every sample outside both regions and their crossfades is the original's, bit for bit.
#[test]
fn repaint_of_two_ranges_one_before_the_start_keeps_every_sample_outside_both_and_their_crossfades() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.wav"), dir.path().join("out.wav"));
    write_music(&input, 48_000, 2, 4.0);
    let (i, o) = (path_str(&input), path_str(&output));
    let ranges = ["--range", "-0.5:0.5", "--range", "2.5:3"];
    let summary =
        succeed(&[&["repaint", "--input", i, "--output", o][..], &ranges, &["--steps", "2", "--seed", "5"]].concat());
    assert_eq!(summary["ranges"], serde_json::json!([[-0.5, 0.5], [2.5, 3.0]]));
    let ((_, original), (_, result)) = (read_ints(&input), read_ints(&output));
    // 0.5 s of padding in front: original sample j is result sample j + 24000. The regions on the padded timeline
    // are 0..48000 and 144000..168000, each with a 4800-sample crossfade outside it.
    let (pad, fade) = (24_000, 4_800);
    let spliced = |p: usize| p < 48_000 + fade || (144_000 - fade..168_000 + fade).contains(&p);
    for (c, (o, r)) in original.iter().zip(&result).enumerate() {
        assert_eq!(r.len(), o.len() + pad);
        let kept = (pad..r.len()).filter(|&p| !spliced(p));
        assert!(kept.clone().all(|p| r[p] == o[p - pad]), "channel {c}: a sample outside the regions changed");
        for region in [0..48_000, 144_000..168_000] {
            let changed = region.clone().filter(|&p| p < pad || r[p] != o[p - pad]).count();
            assert!(changed > region.len() / 2, "channel {c}: only {changed} samples of {region:?} changed");
        }
    }
}

/// A LoRA on the variant it was trained for changes the result; at scale 0 it changes nothing.
#[test]
fn a_lora_for_the_xl_variant_changes_its_output_and_scale_zero_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let xl = variants().join("tiny-acestep/acestep-v15-xl-base");
    let lora = variants().join("loras/acestep-v15-xl-base-lora-r4-kohya.safetensors");
    let run = |name: &str, extra: &[&str]| {
        let output = dir.path().join(name);
        let args = ["text2music", "--output", path_str(&output), "--duration", "0.5", "--prompt", "dub", "--seed", "3"];
        let xl_args = ["--variant", "xl-base", "--dit-dir", path_str(&xl), "--steps", "2", "--cfg", "1"];
        let summary = succeed(&[&args[..], &xl_args, extra].concat());
        (summary, read_ints(&output).1)
    };
    let (_, plain) = run("plain.wav", &[]);
    let with = format!("{}:0.8", path_str(&lora));
    let (summary, adapted) = run("lora.wav", &["--lora", &with]);
    assert_eq!(summary["loras"], serde_json::json!([{ "file": path_str(&lora), "scale": 0.8 }]));
    assert_ne!(adapted, plain, "the LoRA changes the output");
    let off = format!("{}:0", path_str(&lora));
    assert_eq!(run("off.wav", &["--lora", &off]).1, plain, "a LoRA at scale 0 changes nothing");
}

/// A cover from audio codes, without an input file, as long as the codes say (0.2 s each); a timbre reference
/// changes the result and is named in the summary.
#[test]
fn a_cover_from_audio_codes_with_a_timbre_reference() {
    let dir = tempfile::tempdir().unwrap();
    let (codes, reference) = (dir.path().join("codes.txt"), dir.path().join("voice.wav"));
    std::fs::write(
        &codes,
        "<|audio_code_42141|><|audio_code_36019|> (ignored)\n<|audio_code_21801|><|audio_code_230|>\n",
    )
    .unwrap();
    write_music(&reference, 44_100, 1, 2.0);
    let run = |name: &str, extra: &[&str]| {
        let output = dir.path().join(name);
        let args = ["cover", "--audio-codes", path_str(&codes), "--output", path_str(&output), "--prompt", "house"];
        let summary = succeed(&[&args[..], &["--steps", "2", "--seed", "9"], extra].concat());
        (summary, read_ints(&output))
    };
    let (_, (spec, plain)) = run("plain.wav", &[]);
    assert_eq!((spec.sample_rate, spec.channels), (48_000, 2));
    assert!(
        plain.iter().all(|c| c.len() == 4 * 5 * 1920),
        "4 codes of 5 frames: {:?}",
        plain.iter().map(Vec::len).collect::<Vec<_>>()
    );
    let (summary, (_, timbred)) = run("timbre.wav", &["--reference", path_str(&reference)]);
    assert_eq!(summary["references"], serde_json::json!([path_str(&reference)]));
    assert_eq!(summary["audio_codes"].as_str(), Some(path_str(&codes)));
    assert_ne!(timbred, plain, "the reference's timbre changes the cover");
}
