//! The CLAP round trips of the real-host tests: repaint (with `monitor = Original`), cover, a state restore
//! into a fresh instance, crafted project states (takes naming files elsewhere, parameters out of range), and the
//! task inputs on the guided fixture checkpoint (guidance, a LoRA adapter, a timbre reference, a broken adapter).
//! Each returns what it verified, or the first thing that was wrong.
//! They expect `RETAKE_MODEL_DIR` (the model) and the user data folder (where takes are written: [`DATA_HOME`]) to
//! be set for the process, so they run in a child process: `retake-clap-host <scenario> <bundle.clap>`. The task
//! input scenarios also expect `RETAKE_VARIANT=xl-base` and `RETAKE_DIT_DIR` (the guided fixture DiT) and a private
//! [`CONFIG_HOME`], where they write the settings file.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use retake::params::Reference;
use retake::region::Region;
use retake::settings::{settings_file, EngineSettings, LoraSetting};
use retake::takes::{TakeFile, TakeMeta, TakesState, MAX_TAKES};
use retake_engine::audio::{write_wav, Audio, WavFormat};
use serde_json::json;

use crate::clap_host::ClapBundle;
use crate::paths::{fixture_model_dir, guided_fixture_lora};
use crate::plugin_state::PluginState;
use crate::retake_session::{
    check_passes_through, check_region, check_take_in_place, fade_frames, param_names, take_audio, Session,
    TAKE_TIMEOUT, XFADE_MS,
};

/// Scenario names the `retake-clap-host` binary accepts.
pub const SCENARIOS: [&str; 11] = [
    "repaint",
    "cover",
    "state",
    "hostile-takes",
    "hostile-params",
    "unload",
    "guided",
    "lora",
    "reference",
    "bad-lora",
    "two-instances",
];

/// Runs scenario `name` against the bundle at `bundle`.
pub fn run(name: &str, bundle: &Path) -> Result<Vec<String>, String> {
    if name == "unload" {
        return unload_mid_job(bundle);
    }
    if name == "two-instances" {
        return two_instances(bundle);
    }
    let bundle = ClapBundle::load(bundle).map_err(|err| err.to_string())?;
    match name {
        "repaint" => repaint(&bundle),
        "cover" => cover(&bundle),
        "state" => state_restore(&bundle),
        "hostile-takes" => hostile_takes(&bundle),
        "hostile-params" => hostile_params(&bundle),
        "guided" => guided(&bundle).map(|(_, report)| report),
        "lora" => lora(&bundle),
        "reference" => reference(&bundle),
        "bad-lora" => bad_lora(&bundle),
        other => Err(format!("unknown scenario `{other}`; expected one of {SCENARIOS:?}")),
    }
}

/// Sets the parameters every round trip uses: follow the host loop, the test crossfade, play the take.
fn common_settings(session: &mut Session, mode: &str) -> Result<(), String> {
    session.set("mode", mode)?;
    session.set("follow_loop", "On")?;
    session.set("xfade_ms", &XFADE_MS.to_string())?;
    session.set("monitor", "Take")
}

/// Capture, generate a take of the loop, and check it plays in place; returns the report lines. Where a take is
/// already selected, the capture pass runs with `monitor = Original` (so the output is the input) and the new
/// take is made with `monitor = Take`.
fn round_trip(session: &mut Session, what: &str) -> Result<(retake::takes::TakeMeta, Vec<String>), String> {
    let input = session.signal().to_vec();
    let rate = session.sample_rate();
    let replacing = session.takes()?.selected.is_some();
    if replacing {
        session.set("monitor", "Original")?;
        session.idle(Duration::from_millis(100))?;
    }
    let captured = session.play()?;
    check_passes_through(&captured, &input).map_err(|err| format!("before the {what} take: {err}"))?;
    if replacing {
        session.set("monitor", "Take")?;
    }
    let take = session.generate()?;
    check_region(&take, rate)?;
    let audio = take_audio(&take)?;
    let replayed = session.play()?;
    check_take_in_place(&replayed, &input, &take, &audio, fade_frames(rate))?;
    let report = vec![
        "capture pass: output = input bit for bit".to_string(),
        format!("{what} take {} made for {:?} at {rate} Hz: \"{}\"", take.id, take.region.seconds(), take.summary),
        "replay: take inside the region (past the crossfades), input outside, bit for bit".to_string(),
    ];
    Ok((take, report))
}

/// Repaint the 2–4 s loop of the 6 s signal at 48 kHz, then switch `monitor` to Original.
fn repaint(bundle: &ClapBundle) -> Result<Vec<String>, String> {
    let mut session = Session::open(bundle, 48_000, 512, None)?;
    common_settings(&mut session, "Repaint")?;
    let (take, mut report) = round_trip(&mut session, "repaint")?;
    let takes_root = data_home()?.join("retake").join("takes");
    for file in [&take.host_file.path, &take.model_file.path] {
        if !file.starts_with(&takes_root) {
            return Err(format!("the take file {} is not under {}", file.display(), takes_root.display()));
        }
    }
    report.push(format!("take files under ${DATA_HOME}: {}", takes_root.display()));
    session.set("monitor", "Original")?;
    session.idle(Duration::from_millis(100))?;
    let original = session.play()?;
    check_passes_through(&original, session.signal()).map_err(|err| format!("monitor = Original: {err}"))?;
    report.push("monitor = Original: output = input everywhere, bit for bit".to_string());
    Ok(report)
}

/// Cover the 2–4 s loop at 44.1 kHz (the engine works at 48 kHz, so the take is resampled both ways).
fn cover(bundle: &ClapBundle) -> Result<Vec<String>, String> {
    let mut session = Session::open(bundle, 44_100, 1024, None)?;
    common_settings(&mut session, "Cover")?;
    session.set("strength", "0.8")?;
    Ok(round_trip(&mut session, "cover")?.1)
}

/// Make a take with a prompt and non-default parameters, save the state, load it into a fresh instance and
/// check the prompt, the parameters, the takes list and the take's playback all came back.
fn state_restore(bundle: &ClapBundle) -> Result<Vec<String>, String> {
    const PROMPT: &str = "tape-saturated funk, warm bass";
    let mut first = Session::open(bundle, 48_000, 256, None)?;
    first.set_prompt(PROMPT)?;
    common_settings(&mut first, "Repaint")?;
    for (id, text) in [("seed", "1234"), ("key", "D minor"), ("strength", "0.75")] {
        first.set(id, text)?;
    }
    let (take, mut report) = round_trip(&mut first, "repaint")?;
    if !take.summary.contains(PROMPT) {
        return Err(format!("the take's summary \"{}\" does not name the prompt \"{PROMPT}\"", take.summary));
    }
    let saved = first.save_state()?;
    let names = param_names();
    let mut ids: Vec<&String> = names.keys().collect();
    ids.sort();
    let values_before = ids.iter().map(|id| first.value(id)).collect::<Result<Vec<_>, _>>()?;
    let takes_before = first.takes()?;
    drop(first);

    let mut second = Session::open(bundle, 48_000, 256, Some(&saved))?;
    // An offline export started right after opening the project: its first block already plays the take.
    if !second.audible_now(&take)? {
        return Err("the first block rendered after opening the project plays the original, not the take".into());
    }
    let prompt: String = second.state()?.field("prompt")?;
    if prompt != PROMPT {
        return Err(format!("restored prompt is \"{prompt}\", saved was \"{PROMPT}\""));
    }
    for (id, before) in ids.iter().zip(&values_before) {
        let after = second.value(id)?;
        if after != *before {
            return Err(format!("restored parameter `{id}` is {after}, saved was {before}"));
        }
    }
    let takes_after = second.takes()?;
    if takes_after != takes_before {
        return Err(format!("restored takes list {takes_after:?} differs from the saved {takes_before:?}"));
    }
    let replayed = second.play()?;
    check_take_in_place(&replayed, second.signal(), &take, &take_audio(&take)?, fade_frames(48_000))
        .map_err(|err| format!("fresh instance after loading the state: {err}"))?;
    report.push(format!("fresh instance: prompt \"{PROMPT}\", {} parameters and the takes list restored", ids.len()));
    report.push("fresh instance: the restored take plays from the first block, in place, bit for bit".to_string());
    Ok(report)
}

/// A project id of the form Retake makes.
const PROJECT: &str = "0123456789abcdef";
/// What the musician's own files hold; they must still hold it at the end.
const PRECIOUS: &[u8] = b"a musician's own file, not a take";

/// The environment variable naming the folder Retake keeps its take files in (`plugin/src/user_folders.rs`).
pub const DATA_HOME: &str = if cfg!(windows) { "APPDATA" } else { "XDG_DATA_HOME" };

/// `$XDG_DATA_HOME` (Windows: `%APPDATA%`), where this scenario's take folders and the musician's files go.
fn data_home() -> Result<PathBuf, String> {
    std::env::var_os(DATA_HOME).map(PathBuf::from).ok_or_else(|| format!("{DATA_HOME} is not set"))
}

/// Whether `path` is a named pipe (Windows file systems hold none).
fn is_pipe(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        std::fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_fifo())
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

/// A take record for `region_s` at 48 kHz whose files are `model` and `host`.
fn crafted_take(id: u64, model: PathBuf, host: PathBuf) -> TakeMeta {
    let file = |path: PathBuf| TakeFile { path, sample_rate: 48_000, hash: 0 };
    TakeMeta {
        id,
        created_unix_s: 0,
        region: Region { start: 0, end: 48_000, sample_rate: 48_000 },
        summary: "crafted".to_string(),
        seed: 0,
        model_file: file(model),
        host_file: file(host),
    }
}

/// The state of a fresh instance with its takes list replaced by `takes`.
fn state_with_takes(bundle: &ClapBundle, takes: &TakesState) -> Result<Vec<u8>, String> {
    let mut fresh = Session::open(bundle, 48_000, 256, None)?;
    let mut state = fresh.state()?;
    state.set_field("takes", takes)?;
    Ok(state.encode())
}

/// Checks the musician's files `victims` still hold [`PRECIOUS`].
fn check_untouched(victims: &[PathBuf], after: &str) -> Result<(), String> {
    for path in victims {
        match std::fs::read(path) {
            Ok(bytes) if bytes == PRECIOUS => {}
            Ok(_) => return Err(format!("{after}: {} was overwritten", path.display())),
            Err(err) => return Err(format!("{after}: {} is gone ({err})", path.display())),
        }
    }
    Ok(())
}

/// A project state whose 16 takes name the musician's files elsewhere, plus one take whose file in the take
/// folder is a pipe, and a `next_id` below the saved ids: the files elsewhere must survive 17 generates (each
/// evicting the oldest take once the list is full), the pipe must not hang the worker, and ids must not repeat.
/// Then a state whose project id is `../../escape`: its takes go to a new folder under the takes root.
fn hostile_takes(bundle: &ClapBundle) -> Result<Vec<String>, String> {
    let data_home = data_home()?;
    let elsewhere = data_home.join("music");
    let folder = data_home.join("retake/takes").join(PROJECT);
    for dir in [&elsewhere, &folder] {
        std::fs::create_dir_all(dir).map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
    }
    let victims: Vec<PathBuf> = (0..MAX_TAKES).map(|i| elsewhere.join(format!("song-{i}.wav"))).collect();
    for path in &victims {
        std::fs::write(path, PRECIOUS).map_err(|err| format!("cannot write {}: {err}", path.display()))?;
    }
    let pipe = folder.join("take-020-48000hz.wav");
    let made = std::process::Command::new("mkfifo").arg(&pipe).status().map_err(|err| format!("mkfifo: {err}"))?;
    if !made.success() {
        return Err(format!("mkfifo {} failed", pipe.display()));
    }
    let mut takes: Vec<TakeMeta> =
        victims.iter().enumerate().map(|(id, path)| crafted_take(id as u64, path.clone(), path.clone())).collect();
    takes.push(crafted_take(20, folder.join("take-020-48k.wav"), pipe.clone()));
    let crafted =
        TakesState { project_id: PROJECT.to_string(), next_id: 3, takes, selected: Some(20), ..Default::default() };

    let mut session = Session::open(bundle, 48_000, 256, Some(&state_with_takes(bundle, &crafted)?))?;
    for (id, text) in [("mode", "Repaint"), ("follow_loop", "On"), ("monitor", "Take")] {
        session.set(id, text)?;
    }
    session.play()?;
    // The job worker checks a restored list on its own thread, within a few of its polls.
    let mut listed = Vec::new();
    for _ in 0..100 {
        let restored = session.takes()?;
        listed = restored.takes.iter().map(|take| take.id).collect();
        if restored.project_id == PROJECT && listed == [20] {
            break;
        }
        session.idle(Duration::from_millis(50))?;
    }
    if listed != [20] {
        return Err(format!("5 s after the restore the list holds takes {listed:?}; expected only [20] (the pipe)"));
    }
    let mut made = Vec::new();
    for round in 1..=MAX_TAKES + 1 {
        let take = session.generate().map_err(|err| format!("generate {round}: {err}"))?;
        check_untouched(&victims, &format!("after generate {round}"))?;
        made.push(take);
    }
    let ids: Vec<u64> = session.takes()?.takes.iter().map(|take| take.id).collect();
    let expected: Vec<u64> = (22..=21 + MAX_TAKES as u64).collect();
    if ids != expected {
        return Err(format!("after {} generates the list holds ids {ids:?}, expected {expected:?}", MAX_TAKES + 1));
    }
    // The worker lists a new take before it deletes the evicted take's files (plugin/src/worker.rs `add_take`),
    // and with a take already playing in the region `generate` cannot hear when the new one arrives: give the
    // deletion up to 5 s.
    for _ in 0..100 {
        if !made[0].host_file.path.exists() {
            break;
        }
        session.idle(Duration::from_millis(50))?;
    }
    if made[0].host_file.path.exists() {
        return Err(format!("{} (the evicted own take) is still there after 5 s", made[0].host_file.path.display()));
    }
    if !made[1].host_file.path.exists() {
        return Err(format!("{} (a take still listed) was deleted", made[1].host_file.path.display()));
    }
    if !is_pipe(&pipe) {
        return Err(format!("{} (a pipe in the take folder) was removed or replaced", pipe.display()));
    }
    drop(session);
    let mut report = vec![
        format!("crafted takes naming {} files elsewhere were left out at restore", victims.len()),
        format!(
            "{} generates: the files elsewhere unchanged, the pipe untouched, ids 21.. never reused",
            MAX_TAKES + 1
        ),
    ];

    let escape = TakesState { project_id: "../../escape".to_string(), ..Default::default() };
    let mut session = Session::open(bundle, 48_000, 256, Some(&state_with_takes(bundle, &escape)?))?;
    session.set("follow_loop", "On")?;
    session.play()?;
    let take = session.generate()?;
    let project_id = session.takes()?.project_id;
    let own_folder = data_home.join("retake/takes").join(&project_id);
    let escaped = data_home.join("escape");
    if project_id.len() != 16 || !take.host_file.path.starts_with(&own_folder) || escaped.exists() {
        return Err(format!(
            "project id `../../escape`: takes went to {} (project id now `{project_id}`); {} exists: {}",
            take.host_file.path.display(),
            escaped.display(),
            escaped.exists()
        ));
    }
    report
        .push(format!("project id `../../escape` replaced by `{project_id}`; the take is in {}", own_folder.display()));
    Ok(report)
}

/// A project state with enum indices past the last variant (`key = 25`), floats far outside their range
/// (`xfade_ms = 3e38`) and a capture of four billion minutes: the host reads every parameter's value and text
/// (an out-of-range enum index used to abort the host here), the values are inside their ranges, and a job
/// with the restored crossfade finishes.
fn hostile_params(bundle: &ClapBundle) -> Result<Vec<String>, String> {
    let mut plugin = bundle.instantiate().map_err(|err| err.to_string())?;
    let mut state = PluginState::decode(&plugin.save_state().map_err(|err| err.to_string())?)?;
    let crafted = [
        ("key", json!({ "i32": 25 })),
        ("mode", json!({ "i32": 7 })),
        ("monitor", json!({ "i32": -3 })),
        ("xfade_ms", json!({ "f32": 3e38 })),
        ("strength", json!({ "f32": -1e30 })),
        ("start", json!({ "f32": -5.0 })),
        ("end", json!({ "f32": 1e9 })),
        ("seed", json!({ "i32": -7 })),
    ];
    for (id, value) in &crafted {
        state.set_param(id, value.clone())?;
    }
    state.set_field("capture_minutes", &4_000_000_000u64)?;
    let crafted_bytes = state.encode();
    plugin.load_state(&crafted_bytes).map_err(|err| err.to_string())?;
    let params = plugin.params().all().to_vec();
    for param in &params {
        let value = plugin.param_value(&param.name).map_err(|err| err.to_string())?;
        let text = plugin.param_text(&param.name, value).map_err(|err| err.to_string())?;
        if !(param.min..=param.max).contains(&value) {
            return Err(format!(
                "\"{}\" is {value} (\"{text}\") after the load, outside {}..={}",
                param.name, param.min, param.max
            ));
        }
    }
    let saved = PluginState::decode(&plugin.save_state().map_err(|err| err.to_string())?)?;
    let (key, xfade) = (saved.param("key").cloned(), saved.param("xfade_ms").cloned());
    let minutes: u32 = saved.field("capture_minutes")?;
    if key != Some(json!({ "string": "auto" })) || xfade != Some(json!({ "f32": 500.0 })) || minutes != 120 {
        return Err(format!("saved again: key {key:?}, xfade_ms {xfade:?}, capture_minutes {minutes}"));
    }
    drop(plugin);
    let mut report = vec![
        format!("{} crafted values: every parameter's value and text read back, each inside its range", crafted.len()),
        "saved again: key Auto, crossfade 500 ms, capture 120 minutes".to_string(),
    ];

    let mut session = Session::open(bundle, 48_000, 256, Some(&crafted_bytes))?;
    for (id, text) in [("mode", "Repaint"), ("follow_loop", "On"), ("monitor", "Take"), ("strength", "1")] {
        session.set(id, text)?;
    }
    session.play()?;
    let take = session.generate()?;
    check_region(&take, 48_000)?;
    report.push(format!("a job with the restored 500 ms crossfade finished: take {}", take.id));
    Ok(report)
}

/// Length of the signal played before the long job of [`unload_mid_job`].
const LONG_SIGNAL_S: f64 = 100.0;
/// Its region: 90 s, plus 5 s of context on each side, takes the fixture model well over the grace of an unload.
const LONG_LOOP_S: (f64, f64) = (5.0, 95.0);
/// The longest a host may wait for an instance it destroys while a job runs.
const DESTROY_LIMIT: Duration = Duration::from_secs(2);

/// Destroying an instance while a long job runs returns at once (the job is cancelled behind the host, which the
/// fixture model once took ~28 s to reach), and the host unloading the library right after does not bring the
/// process down while the engine winds down on its own thread.
fn unload_mid_job(bundle_path: &Path) -> Result<Vec<String>, String> {
    let bundle = ClapBundle::load(bundle_path).map_err(|err| err.to_string())?;
    let mut session = Session::open(&bundle, 48_000, 4096, None)?.with_signal(LONG_SIGNAL_S, LONG_LOOP_S);
    common_settings(&mut session, "Repaint")?;
    session.play()?;
    session.press_generate()?;
    session.idle(Duration::from_secs(1))?;
    if !session.takes()?.takes.is_empty() {
        return Err("the long job finished within a second: it cannot show an unload mid-job".into());
    }
    let destroying = Instant::now();
    drop(session);
    let destroyed = destroying.elapsed();
    drop(bundle);
    // The engine thread stops at its next layer and ends; a library unmapped under it would crash the process here.
    std::thread::sleep(Duration::from_secs(3));
    if destroyed > DESTROY_LIMIT {
        return Err(format!("destroying the instance during a job took {destroyed:?} (at most {DESTROY_LIMIT:?})"));
    }
    Ok(vec![
        format!("instance destroyed {destroyed:?} into a {:.0}-second repaint", LONG_LOOP_S.1 - LONG_LOOP_S.0),
        "library unloaded with the engine still winding down; the process lived on".into(),
    ])
}

/// Two instances in one process, each with its own seed, press Generate one right after the other: both jobs queue on
/// the one engine the process shares, each instance gets its own take (in its own project folder, playing in place
/// in its own output), and the model was loaded once for both, as the counters the bundle exports say
/// (plugin/src/lib.rs `retake_shared_engine_model_loads`).
fn two_instances(bundle_path: &Path) -> Result<Vec<String>, String> {
    let bundle = ClapBundle::load(bundle_path).map_err(|err| err.to_string())?;
    let mut sessions = [Session::open(&bundle, 48_000, 512, None)?, Session::open(&bundle, 48_000, 512, None)?];
    for (session, seed) in sessions.iter_mut().zip(["11", "22"]) {
        common_settings(session, "Repaint")?;
        session.set("seed", seed)?;
        let captured = session.play()?;
        check_passes_through(&captured, session.signal()).map_err(|err| format!("capture pass: {err}"))?;
    }
    let [first, second] = &mut sessions;
    first.press_generate()?;
    let second_take = second.generate()?;
    // Both jobs queued on the one engine at about the same time: the first instance's take is there by now, or soon.
    let started = Instant::now();
    let first_take = loop {
        let takes = first.takes()?;
        if let Some(take) = takes.selected.and_then(|id| takes.get(id)) {
            break take.clone();
        }
        if started.elapsed() > TAKE_TIMEOUT {
            return Err(format!("the first instance has no take after its job and the second's: {takes:?}"));
        }
        first.idle(Duration::from_millis(50))?;
    };
    first.wait_until_audible(&first_take)?;
    let mut report = Vec::new();
    for (session, take, which) in [(first, &first_take, "first"), (second, &second_take, "second")] {
        let listed = session.takes()?.takes;
        if listed.len() != 1 {
            return Err(format!("the {which} instance lists {} takes, not its own one: {listed:?}", listed.len()));
        }
        check_region(take, session.sample_rate())?;
        let replayed = session.play()?;
        check_take_in_place(&replayed, session.signal(), take, &take_audio(take)?, fade_frames(session.sample_rate()))
            .map_err(|err| format!("the {which} instance's replay: {err}"))?;
        report.push(format!("{which} instance: its own take {} (seed {}) plays in place", take.id, take.seed));
    }
    if first_take.model_file.path.parent() == second_take.model_file.path.parent() {
        return Err(format!("both takes are in one folder: {}", first_take.model_file.path.display()));
    }
    if take_audio(&first_take)? == take_audio(&second_take)? {
        return Err("the two instances' takes are the same audio despite their different seeds".into());
    }
    let (loads, clients) = shared_engine_counters(bundle_path)?;
    if (loads, clients) != (1, 2) {
        return Err(format!(
            "the shared engine loaded the model {loads} times for {clients} connected instances (expected once, for 2)"
        ));
    }
    report.push("the takes differ and lie in each instance's own project folder".into());
    report.push("one engine for both instances: the model was loaded once, 2 instances connected".into());
    Ok(report)
}

/// The shared engine's model loads and connected instances, read through the functions the bundle exports for this
/// check.
fn shared_engine_counters(bundle_path: &Path) -> Result<(u64, u64), String> {
    let symbol_error = |err: libloading::Error| format!("{}: {err}", bundle_path.display());
    // SAFETY: the bundle is the plugin the harness has loaded already, so this only raises its load count; the two
    // symbols are its `extern "C" fn() -> u64` counters (plugin/src/lib.rs), which only read the engine's atomics.
    unsafe {
        let library = libloading::Library::new(bundle_path).map_err(symbol_error)?;
        let loads =
            library.get::<extern "C" fn() -> u64>(b"retake_shared_engine_model_loads\0").map_err(symbol_error)?;
        let clients = library.get::<extern "C" fn() -> u64>(b"retake_shared_engine_clients\0").map_err(symbol_error)?;
        Ok((loads(), clients()))
    }
}

/// The environment variable naming the folder of Retake's settings file (`plugin/src/user_folders.rs`).
pub const CONFIG_HOME: &str = if cfg!(windows) { "APPDATA" } else { "XDG_CONFIG_HOME" };

/// Guidance, steps and shift of the guided jobs: the guided fixture at a few steps.
const GUIDED: [(&str, &str); 4] = [("variant_defaults", "Off"), ("guidance", "4"), ("steps", "4"), ("shift", "3")];

/// A repaint round trip in a fresh instance on the guided checkpoint (variant and DiT folder from the
/// environment) at guidance 4 and 4 steps; returns the take's audio and the report lines.
fn guided(bundle: &ClapBundle) -> Result<(Audio, Vec<String>), String> {
    let mut session = Session::open(bundle, 48_000, 512, None)?;
    guided_take(&mut session, "guided repaint")
}

/// The round trips' settings for a repaint with the guided parameters.
fn set_guided(session: &mut Session) -> Result<(), String> {
    common_settings(session, "Repaint")?;
    for (id, text) in GUIDED {
        session.set(id, text)?;
    }
    Ok(())
}

/// Sets the guided parameters on `session` and makes a take of the loop; returns its audio and the report lines.
fn guided_take(session: &mut Session, what: &str) -> Result<(Audio, Vec<String>), String> {
    set_guided(session)?;
    let (take, mut report) = round_trip(session, what)?;
    if !take.summary.ends_with("4 steps · shift 3.0 · guidance 4.0") {
        return Err(format!("the take's summary \"{}\" does not name 4 steps at guidance 4", take.summary));
    }
    report.push(format!("{what}: the job ran 4 steps at guidance 4 on the guided checkpoint"));
    Ok((take_audio(&take)?, report))
}

/// Writes the settings file under [`CONFIG_HOME`] with `loras` as its LoRA adapters (the rest from the
/// environment).
fn write_loras(loras: Vec<LoraSetting>) -> Result<(), String> {
    let path = settings_file().map_err(|err| err.to_string())?;
    EngineSettings { loras, ..EngineSettings::default() }.save(&path).map_err(|err| err.to_string())
}

/// Checks two takes of the same seed, region and settings but one input differ: the input reached the model.
fn check_differs(plain: &Audio, changed: &Audio, input: &str) -> Result<(), String> {
    if plain.channels == changed.channels {
        return Err(format!("the take with {input} is the take without it, sample for sample"));
    }
    Ok(())
}

/// A guided take without adapters, then (a fresh instance, whose engine reads the settings file) the same take
/// with the fixture's LoRA adapter from the settings file: both play in place, and they differ.
fn lora(bundle: &ClapBundle) -> Result<Vec<String>, String> {
    write_loras(Vec::new())?;
    let (plain, mut report) = guided(bundle)?;
    let adapter = guided_fixture_lora();
    write_loras(vec![LoraSetting { file: adapter.display().to_string(), scale: 1.0 }])?;
    let (adapted, more) = guided(bundle)?;
    check_differs(&plain, &adapted, "the LoRA adapter")?;
    report.extend(more);
    report.push(format!("with the LoRA {} the take differs from the one without", adapter.display()));
    Ok(report)
}

/// A guided take with the default timbre, then with a WAV file as timbre reference, then with the first take as
/// reference: each plays in place, and each reference changes the take.
fn reference(bundle: &ClapBundle) -> Result<Vec<String>, String> {
    let mut session = Session::open(bundle, 48_000, 512, None)?;
    let (plain, mut report) = guided_take(&mut session, "default timbre")?;
    let first = session.takes()?.selected.ok_or("no take is selected after the first job")?;
    let file = data_home()?.join("reference.wav");
    let tone: Vec<f32> = (0..3 * 48_000).map(|i| (i as f32 * 0.021).sin() * 0.5).collect();
    write_wav(&file, &Audio::new(48_000, vec![tone.clone(), tone]), WavFormat::Float32)
        .map_err(|err| format!("cannot write {}: {err}", file.display()))?;
    for (reference, what) in [
        (Reference::File(file.clone()), format!("the file {}", file.display())),
        (Reference::Take(first), format!("take {first}")),
    ] {
        session.set_field("reference", &reference)?;
        let (referenced, more) = guided_take(&mut session, &format!("timbre reference {what}"))?;
        check_differs(&plain, &referenced, &format!("{what} as timbre reference"))?;
        report.extend(more);
        report.push(format!("with {what} as timbre reference the take differs from the default timbre's"));
    }
    Ok(report)
}

/// The shortest wait of the broken-adapter scenario for a take that must not come.
const NO_TAKE_MIN_WAIT: Duration = Duration::from_secs(10);

/// A guided take without adapters, timed; then a settings file whose LoRA adapter is not a safetensors file:
/// Generate makes no take within three times that time, the audio keeps passing through, and the instance still
/// plays (the status line's text is checked in the worker's unit tests).
fn bad_lora(bundle: &ClapBundle) -> Result<Vec<String>, String> {
    write_loras(Vec::new())?;
    let started = Instant::now();
    guided(bundle)?;
    let wait = (started.elapsed() * 3).max(NO_TAKE_MIN_WAIT);
    let broken = data_home()?.join("broken.safetensors");
    std::fs::write(&broken, b"not a safetensors file")
        .map_err(|err| format!("cannot write {}: {err}", broken.display()))?;
    write_loras(vec![LoraSetting { file: broken.display().to_string(), scale: 1.0 }])?;
    let mut session = Session::open(bundle, 48_000, 512, None)?;
    set_guided(&mut session)?;
    let captured = session.play()?;
    check_passes_through(&captured, session.signal()).map_err(|err| format!("before the job: {err}"))?;
    session.press_generate()?;
    session.idle(wait)?;
    let takes = session.takes()?;
    if !takes.takes.is_empty() {
        return Err(format!("a take was made with a broken LoRA adapter: {takes:?}"));
    }
    let replayed = session.play()?;
    check_passes_through(&replayed, session.signal()).map_err(|err| format!("after the failed job: {err}"))?;
    Ok(vec![
        format!(
            "LoRA {} (not safetensors): no take after {:.0} s, at least three times what a good take took",
            broken.display(),
            wait.as_secs_f64()
        ),
        "the audio passes through bit for bit after the failed job".to_string(),
    ])
}

/// Runs `host` (the `retake-clap-host` binary) on `scenario` against `bundle` in a child process with the fixture
/// model, fresh private [`DATA_HOME`] and [`CONFIG_HOME`] folders (so no settings file of the machine applies) and
/// the variables `env`; prints and returns the exit code and the combined output.
pub fn run_in_child(host: &Path, scenario: &str, bundle: &Path, env: &[(&str, PathBuf)]) -> (Option<i32>, String) {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |t| t.subsec_nanos());
    let scratch = std::env::temp_dir().join(format!("retake-clap-{scenario}-{}-{nanos}", std::process::id()));
    let (data, config) = (scratch.join("data"), scratch.join("config"));
    let mut command = std::process::Command::new(host);
    command.arg(scenario).arg(bundle).env("RETAKE_MODEL_DIR", fixture_model_dir());
    command.env(DATA_HOME, &data).env(CONFIG_HOME, &config);
    for (name, value) in env {
        command.env(name, value);
    }
    let made = [&data, &config].iter().try_for_each(std::fs::create_dir_all);
    let result = match made.and_then(|()| command.output()) {
        Ok(output) => (
            output.status.code(),
            format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)),
        ),
        Err(err) => (None, format!("cannot run {} in {}: {err}", host.display(), scratch.display())),
    };
    let _ = std::fs::remove_dir_all(&scratch);
    print!("{}", result.1);
    result
}
