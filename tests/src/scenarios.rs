//! The CLAP round trips of the real-host tests: repaint (with `monitor = Original`), cover, and a
//! state restore into a fresh instance. Each returns what it verified, or the first thing that was wrong.
//! They expect `RETAKE_MODEL_DIR` (the model) and `XDG_DATA_HOME` (where takes are written) to be set for the
//! process, so they run in a child process: `retake-clap-host <scenario> <bundle.clap>`.

use std::path::Path;
use std::time::Duration;

use crate::clap_host::ClapBundle;
use crate::retake_session::{
    check_passes_through, check_region, check_take_in_place, fade_frames, param_names, take_audio, Session, XFADE_MS,
};

/// Scenario names the `retake-clap-host` binary accepts.
pub const SCENARIOS: [&str; 3] = ["repaint", "cover", "state"];

/// Runs scenario `name` against the bundle at `bundle`.
pub fn run(name: &str, bundle: &Path) -> Result<Vec<String>, String> {
    let bundle = ClapBundle::load(bundle).map_err(|err| err.to_string())?;
    match name {
        "repaint" => repaint(&bundle),
        "cover" => cover(&bundle),
        "state" => state_restore(&bundle),
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

/// Capture, generate a take of the loop, and check it plays in place; returns the report lines.
fn round_trip(session: &mut Session, what: &str) -> Result<(retake::takes::TakeMeta, Vec<String>), String> {
    let input = session.signal().to_vec();
    let rate = session.sample_rate();
    let captured = session.play()?;
    check_passes_through(&captured, &input).map_err(|err| format!("before any take: {err}"))?;
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
    let (_, mut report) = round_trip(&mut session, "repaint")?;
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
    second.wait_until_audible(&take)?;
    let replayed = second.play()?;
    check_take_in_place(&replayed, second.signal(), &take, &take_audio(&take)?, fade_frames(48_000))
        .map_err(|err| format!("fresh instance after loading the state: {err}"))?;
    report.push(format!("fresh instance: prompt \"{PROMPT}\", {} parameters and the takes list restored", ids.len()));
    report.push("fresh instance: the restored take plays in place, bit for bit".to_string());
    Ok(report)
}
