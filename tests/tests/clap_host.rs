//! Retake's CLAP bundle in a real (headless) CLAP host: pass-through, parameters, state and the round trips
//!. Needs `target/bundled/Retake.clap` (`cargo xtask bundle retake --release`) and,
//! for the allocation check, `target/alloc-check/Retake.clap` (`scripts/test.sh` builds both).

use std::path::Path;

use retake_tests::clap_host::{ClapBundle, Timeline};
use retake_tests::paths::{alloc_check_clap_bundle, clap_bundle};
use retake_tests::plugin_state::PluginState;
use retake_tests::retake_session::{check_passes_through, param_names};
use retake_tests::scenarios::run_in_child;
use retake_tests::signal::test_signal;

/// Exit status of a process that aborted (SIGABRT), which is how `assert_process_allocs` reports an
/// allocation on the audio thread.
const ABORT_STATUS: i32 = 134;

fn bundle() -> ClapBundle {
    ClapBundle::load(&clap_bundle()).unwrap_or_else(|err| panic!("{err}"))
}

#[test]
fn dry_signal_passes_bit_exact_at_every_rate_and_block_size() {
    let bundle = bundle();
    for rate in [44_100u32, 48_000, 96_000] {
        let input = test_signal(rate, 1.0);
        // A playing transport with tempo, signature and an active loop: nothing to play back yet, so the
        // plugin only captures and must pass the input through untouched.
        let timeline = Timeline::new(f64::from(rate), 120.0).with_loop(0.25, 0.75);
        for block in [1usize, 64, 511, 4096] {
            let context = format!("CLAP host, Retake.clap, {rate} Hz, blocks of {block}");
            let mut plugin = bundle.instantiate().unwrap_or_else(|err| panic!("{context}: {err}"));
            plugin.activate(f64::from(rate), block, 2).unwrap_or_else(|err| panic!("{context}: {err}"));
            let output = plugin.render(&input, 0, &timeline, true).unwrap_or_else(|err| panic!("{context}: {err}"));
            if let Err(err) = check_passes_through(&output, &input) {
                panic!("{context}: {err}");
            }
        }
    }
}

#[test]
fn every_parameter_is_listed_with_its_name_and_a_valid_range() {
    let plugin = bundle().instantiate().unwrap();
    let mut listed: Vec<&str> = plugin.params().all().iter().map(|param| param.name.as_str()).collect();
    listed.sort();
    let mut expected: Vec<String> = param_names().into_values().collect();
    expected.sort();
    assert_eq!(listed, expected, "CLAP host, Retake.clap: parameter list");
    for param in plugin.params().all() {
        assert!(
            param.min < param.max && (param.min..=param.max).contains(&param.default),
            "CLAP host, Retake.clap: parameter {param:?} has an empty range or a default outside it"
        );
    }
    let stepped: Vec<&str> =
        plugin.params().all().iter().filter(|param| param.stepped).map(|param| param.name.as_str()).collect();
    for name in ["Mode", "Follow loop", "Monitor", "Seed", "Key", "Generate"] {
        assert!(
            stepped.contains(&name),
            "CLAP host, Retake.clap: \"{name}\" should be stepped, stepped are {stepped:?}"
        );
    }
}

#[test]
fn parameter_events_set_values_that_a_state_carries_into_a_fresh_instance() {
    let bundle = bundle();
    let names = param_names();
    let mut plugin = bundle.instantiate().unwrap();
    plugin.activate(48_000.0, 256, 2).unwrap();
    let settings =
        [("mode", "Cover"), ("seed", "31337"), ("key", "F# minor"), ("start", "1.25"), ("monitor", "Original")];
    for (id, text) in settings {
        plugin.set_param_text(&names[id], text).unwrap();
    }
    let timeline = Timeline::new(48_000.0, 120.0);
    plugin.render(&test_signal(48_000, 0.01), 0, &timeline, true).unwrap();
    for (id, text) in settings {
        let value = plugin.param_value(&names[id]).unwrap();
        let shown = plugin.param_text(&names[id], value).unwrap();
        assert!(shown.starts_with(text), "CLAP host, Retake.clap: `{id}` shows \"{shown}\" after setting \"{text}\"");
    }
    let saved = plugin.save_state().unwrap();
    let state = PluginState::decode(&saved).unwrap();
    assert_eq!(state.param("seed"), Some(&serde_json::json!({ "i32": 31337 })));

    let mut fresh = bundle.instantiate().unwrap();
    fresh.load_state(&saved).unwrap();
    for id in names.keys() {
        assert_eq!(
            fresh.param_value(&names[id]).unwrap(),
            plugin.param_value(&names[id]).unwrap(),
            "CLAP host, Retake.clap: `{id}` after loading the state into a fresh instance"
        );
    }
}

/// Runs `retake-clap-host <scenario> <bundle>` with the fixture model and private data and settings folders;
/// returns the exit code and the combined output.
fn run_scenario(scenario: &str, bundle: &Path) -> (Option<i32>, String) {
    run_in_child(Path::new(env!("CARGO_BIN_EXE_retake-clap-host")), scenario, bundle, &[])
}

fn assert_scenario_passes(scenario: &str, bundle: &Path) {
    let (code, output) = run_scenario(scenario, bundle);
    assert_eq!(code, Some(0), "CLAP host, {}, {scenario} round trip failed:\n{output}", bundle.display());
}

#[test]
fn repaint_take_plays_in_place_and_monitor_original_gives_the_input() {
    assert_scenario_passes("repaint", &clap_bundle());
}

#[test]
fn cover_take_plays_in_place() {
    assert_scenario_passes("cover", &clap_bundle());
}

#[test]
fn state_restores_prompt_params_and_the_take_in_a_fresh_instance() {
    assert_scenario_passes("state", &clap_bundle());
}

#[test]
fn a_state_naming_files_outside_the_take_folder_never_touches_them() {
    assert_scenario_passes("hostile-takes", &clap_bundle());
}

#[test]
fn out_of_range_parameters_in_a_state_are_clamped_before_the_host_reads_them() {
    assert_scenario_passes("hostile-params", &clap_bundle());
}

#[test]
fn destroying_an_instance_mid_job_never_waits_for_the_engine_and_unloading_is_safe() {
    assert_scenario_passes("unload", &clap_bundle());
}

#[test]
fn two_instances_share_one_engine_that_loads_the_model_once_and_each_gets_its_own_take() {
    assert_scenario_passes("two-instances", &clap_bundle());
}

#[test]
fn audio_thread_never_allocates_during_the_repaint_round_trip() {
    let bundle = alloc_check_clap_bundle();
    let (code, output) = run_scenario("repaint", &bundle);
    assert_ne!(
        code,
        Some(ABORT_STATUS),
        "CLAP host, {} (assert_process_allocs): the plugin allocated on the audio thread:\n{output}",
        bundle.display()
    );
    assert_eq!(code, Some(0), "CLAP host, {} (assert_process_allocs): round trip failed:\n{output}", bundle.display());
}
