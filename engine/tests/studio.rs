//! Studio-mode pipeline properties on the fixture model (docs/acestep-model.md §10.3 and §13, official behaviour), and
//! the pipeline's answers to bad input.

use std::ops::ControlFlow;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use retake_engine::audio::{Audio, MODEL_SAMPLE_RATE};
use retake_engine::model::checkpoint::Checkpoint;
use retake_engine::model::variant::Variant;
use retake_engine::pipeline::request::{CfgInterval, GenerationOutput, GenerationRequest, Metas, Mode, Task};
use retake_engine::pipeline::Generator;
use retake_engine::EngineError;

const RATE: usize = MODEL_SAMPLE_RATE as usize;
const HOP: usize = 1920;

fn fixture_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny-acestep")
}

fn generator() -> Generator {
    Generator::new(Checkpoint::open(&fixture_root(), DType::F32, &Device::Cpu).unwrap(), None).unwrap()
}

/// A stereo test signal: two sines plus a slow envelope, so every sample differs.
fn signal(samples: usize) -> Audio {
    let channel = |f: f32, phase: f32| -> Vec<f32> {
        (0..samples)
            .map(|i| {
                let t = i as f32 / RATE as f32;
                0.4 * (std::f32::consts::TAU * f * t + phase).sin() * (0.6 + 0.4 * (t * 1.3).cos())
            })
            .collect()
    };
    Audio::new(MODEL_SAMPLE_RATE, vec![channel(220.0, 0.0), channel(330.0, 0.7)])
}

fn request(task: Task, source: Option<Audio>) -> GenerationRequest {
    GenerationRequest {
        task,
        mode: Mode::Studio,
        source,
        caption: "Dusty lo-fi piano with vinyl crackle".into(),
        lyrics: "[Instrumental]".into(),
        language: "unknown".into(),
        metas: Metas { bpm: Some(90.0), ..Metas::default() },
        seed: 11,
        steps: 8,
        shift: 3.0,
        cfg_scale: 1.0,
        cfg_interval: CfgInterval::ALL,
        references: Vec::new(),
        noise: None,
    }
}

fn repaint(ranges: Vec<(f64, f64)>, splice_ms: Option<f64>) -> Task {
    Task::Repaint { ranges, strength: 1.0, splice_crossfade_ms: splice_ms }
}

fn run(generator: &mut Generator, request: &GenerationRequest) -> retake_engine::Result<GenerationOutput> {
    generator.generate(request, &mut |_| ControlFlow::Continue(()))
}

fn frames(t: &Tensor) -> Vec<Vec<f32>> {
    t.squeeze(0).unwrap().to_vec2().unwrap()
}

#[test]
fn repaint_with_splicing_keeps_every_sample_outside_region_and_crossfade() {
    let source = signal(4 * RATE);
    let out = run(&mut generator(), &request(repaint(vec![(1.0, 2.5)], Some(100.0)), Some(source.clone()))).unwrap();
    assert_eq!(out.audio.len(), source.len());
    let (fade, start, end) = (RATE / 10, RATE, RATE * 5 / 2);
    for (got, want) in out.audio.channels.iter().zip(&source.channels) {
        let outside = (0..start - fade).chain(end + fade..source.len());
        assert!(outside.into_iter().all(|i| got[i].to_bits() == want[i].to_bits()), "a sample outside changed");
        let changed = (start..end).filter(|&i| got[i] != want[i]).count();
        assert!(changed > (end - start) * 9 / 10, "only {changed} samples inside the region changed");
    }
}

#[test]
fn repaint_latents_equal_source_outside_region_and_boundary_ramps() {
    let out = run(&mut generator(), &request(repaint(vec![(1.0, 2.0)], None), Some(signal(4 * RATE)))).unwrap();
    let (latents, source) = (frames(&out.latents), frames(out.source_latents.as_ref().unwrap()));
    let (f0, f1) = (25, 50); // ⌊25·1.0⌋, ⌊25·2.0⌋
    for i in (0..f0 - 10).chain(f1 + 10..latents.len()) {
        assert_eq!(latents[i], source[i], "frame {i} outside the region and its ramps changed");
    }
    for i in f0..f1 {
        assert_ne!(latents[i], source[i], "frame {i} inside the region was not regenerated");
    }
    // Inside the ramps the result lies strictly between source and generation: it differs from the source, by
    // less the further it is from the region.
    let distance = |i: usize| latents[i].iter().zip(&source[i]).map(|(a, b)| (a - b).abs()).sum::<f32>();
    assert!(distance(f0 - 10) > 0.0 && distance(f1 + 9) > 0.0);
    assert!(distance(f0 - 10) < distance(f0 - 1) && distance(f1 + 9) < distance(f1));
}

#[test]
fn outpaint_before_and_after_extends_the_output_and_keeps_the_original() {
    let source = signal(2 * RATE);
    let mut generator = generator();
    let before = run(&mut generator, &request(repaint(vec![(-0.5, 0.5)], Some(50.0)), Some(source.clone()))).unwrap();
    let pad = RATE / 2;
    assert_eq!(before.audio.len(), source.len() + pad);
    for (got, want) in before.audio.channels.iter().zip(&source.channels) {
        let keep_from = RATE + RATE / 20; // region end (0.5 s + 0.5 s pad) + 50 ms
        assert!((keep_from..got.len()).all(|i| got[i].to_bits() == want[i - pad].to_bits()));
    }
    let after = run(&mut generator, &request(repaint(vec![(1.5, 2.6)], Some(50.0)), Some(source.clone()))).unwrap();
    assert_eq!(after.audio.len(), (2.6 * RATE as f64) as usize);
    for (got, want) in after.audio.channels.iter().zip(&source.channels) {
        let keep_to = RATE * 3 / 2 - RATE / 20;
        assert!((0..keep_to).all(|i| got[i].to_bits() == want[i].to_bits()));
        assert!(got[source.len()..].iter().any(|s| *s != 0.0), "the outpainted tail is silent");
    }
}

#[test]
fn cover_returns_exactly_as_many_samples_as_the_source() {
    let samples = 2 * RATE + 777; // not a whole number of latent frames
    let task = Task::Cover { cover_strength: 1.0, noise_strength: 0.0, audio_codes: None };
    let out = run(&mut generator(), &request(task, Some(signal(samples)))).unwrap();
    assert_eq!(out.audio.len(), samples);
    assert_eq!(out.audio.channels.len(), 2);
    assert_eq!(out.latents.dim(1).unwrap(), samples.div_ceil(HOP));
}

#[test]
fn text2music_returns_the_requested_duration() {
    let out = run(&mut generator(), &request(Task::Text2Music { duration_s: 1.3 }, None)).unwrap();
    assert_eq!(out.audio.len(), (1.3 * RATE as f64).round() as usize);
}

#[test]
fn same_seed_gives_the_same_take_and_another_seed_another() {
    let mut generator = generator();
    let mut req = request(repaint(vec![(0.5, 1.5)], Some(20.0)), Some(signal(2 * RATE)));
    let a = run(&mut generator, &req).unwrap();
    let b = run(&mut generator, &req).unwrap();
    req.seed += 1;
    let c = run(&mut generator, &req).unwrap();
    assert_eq!(a.audio, b.audio);
    assert_ne!(a.audio, c.audio);
    assert_eq!(generator.vae_encodes(), 1, "the repeated source should come from the latent cache");
}

#[test]
fn mono_source_is_duplicated_to_stereo() {
    let mono = Audio::new(MODEL_SAMPLE_RATE, vec![signal(RATE * 3 / 2).channels[0].clone()]);
    let out = run(&mut generator(), &request(repaint(vec![(0.5, 1.0)], Some(10.0)), Some(mono.clone()))).unwrap();
    assert_eq!(out.audio.channels.len(), 2);
    assert_eq!(out.audio.channels[0][..RATE / 4], mono.channels[0][..RATE / 4]);
    assert_eq!(out.audio.channels[1][..RATE / 4], mono.channels[0][..RATE / 4]);
}

fn invalid(request: &GenerationRequest) -> String {
    match run(&mut generator(), request) {
        Err(e @ (EngineError::InvalidInput(_) | EngineError::NonFinite { .. })) => e.to_string(),
        Err(e) => panic!("expected an input error, got {e}"),
        Ok(_) => panic!("bad input was accepted"),
    }
}

#[test]
fn bad_input_gets_a_clear_error_never_a_panic() {
    let source = signal(2 * RATE);
    let with = |task: Task| request(task, Some(source.clone()));
    assert!(invalid(&with(repaint(vec![], None))).contains("at least one time range"));
    assert!(invalid(&with(repaint(vec![(1.0, 1.0)], None))).contains("empty"));
    assert!(invalid(&with(repaint(vec![(1.5, 0.5)], None))).contains("start before the end"));
    assert!(invalid(&with(repaint(vec![(f64::NAN, 1.0)], None))).contains("not a number"));
    assert!(invalid(&with(repaint(vec![(3.0, 4.0)], None))).contains("entirely outside"));
    assert!(invalid(&with(repaint(vec![(-3.0, -1.0)], None))).contains("entirely outside"));
    let strength = Task::Repaint { ranges: vec![(0.5, 1.0)], strength: 1.5, splice_crossfade_ms: None };
    assert!(invalid(&with(strength)).contains("outside 0..1"));
    let cover = Task::Cover { cover_strength: -0.1, noise_strength: 0.0, audio_codes: None };
    assert!(invalid(&with(cover)).contains("outside 0..1"));
    let mut zero_steps = with(repaint(vec![(0.5, 1.0)], None));
    zero_steps.steps = 0;
    assert!(invalid(&zero_steps).contains("steps"));
    let mut nan = source.clone();
    nan.channels[1][1234] = f32::NAN;
    assert!(invalid(&request(repaint(vec![(0.5, 1.0)], None), Some(nan))).contains("NaN"));
    let surround = Audio::new(MODEL_SAMPLE_RATE, vec![source.channels[0].clone(); 6]);
    assert!(invalid(&request(repaint(vec![(0.5, 1.0)], None), Some(surround))).contains("6"));
    let cd_rate = Audio::new(44_100, source.channels.clone());
    assert!(invalid(&request(repaint(vec![(0.5, 1.0)], None), Some(cd_rate))).contains("resample"));
    assert!(invalid(&request(repaint(vec![(0.5, 1.0)], None), None)).contains("source audio"));
    assert!(invalid(&request(Task::Text2Music { duration_s: 0.0 }, None)).contains("positive"));
}

#[test]
fn cancelling_between_steps_stops_the_job() {
    let mut steps_seen = 0;
    let result = generator().generate(&request(Task::Text2Music { duration_s: 1.0 }, None), &mut |p| {
        if let retake_engine::pipeline::request::Progress::Step { .. } = p {
            steps_seen += 1;
            if steps_seen == 3 {
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    });
    assert!(matches!(result, Err(EngineError::Cancelled)));
    assert_eq!(steps_seen, 3);
}

#[test]
fn guidance_above_one_mixes_in_the_null_condition() {
    let mut generator = generator();
    let mut req = request(Task::Text2Music { duration_s: 0.8 }, None);
    let plain = run(&mut generator, &req).unwrap();
    req.cfg_scale = 3.0;
    let guided = run(&mut generator, &req).unwrap();
    assert_eq!(plain.audio.len(), guided.audio.len());
    assert_ne!(plain.latents.to_vec3::<f32>().unwrap(), guided.latents.to_vec3::<f32>().unwrap());
    assert!(guided.audio.channels.iter().flatten().all(|s| s.is_finite()));
}

/// Studio mode samples on the schedule kind of the variant the checkpoint was opened as (model/variant.rs): at 8 steps
/// a turbo variant snaps the shift to the official tables, turbo-continuous keeps it on the formula; a checkpoint
/// opened without a variant follows its config (turbo here, so it snaps).
#[test]
fn the_variant_sets_the_studio_schedule() {
    let latents = |variant: Option<Variant>, shift: f64| {
        let checkpoint = Checkpoint::open(&fixture_root(), DType::F32, &Device::Cpu).unwrap();
        let checkpoint = match variant {
            Some(variant) => checkpoint.with_variant(variant),
            None => checkpoint,
        };
        let mut generator = Generator::new(checkpoint, None).unwrap();
        let req = GenerationRequest { shift, ..request(Task::Text2Music { duration_s: 0.4 }, None) };
        run(&mut generator, &req).unwrap().latents.to_vec3::<f32>().unwrap()
    };
    for table in [Some(Variant::Turbo), Some(Variant::XlTurbo), None] {
        assert_eq!(latents(table, 2.4), latents(table, 2.0), "{table:?} snaps 2.4 to the shift-2 table");
    }
    let continuous = Some(Variant::TurboContinuous);
    assert_ne!(latents(continuous, 2.4), latents(continuous, 2.0), "turbo-continuous never snaps");
}

/// Guidance on a checkpoint opened as a turbo variant, or as a guided one whose DiT config says `is_turbo`, is
/// refused before any work, naming why and what to do.
#[test]
fn guidance_on_a_guidance_distilled_variant_is_refused_before_any_work() {
    let checkpoint = Checkpoint::open(&fixture_root(), DType::F32, &Device::Cpu).unwrap();
    let req = GenerationRequest { cfg_scale: 3.0, ..request(Task::Text2Music { duration_s: 0.4 }, None) };
    for (variant, why) in [
        (Variant::TurboShift3, "the turbo-shift3 variant is guidance-distilled".to_string()),
        (
            Variant::Sft,
            format!(
                "the DiT loaded as sft is guidance-distilled (`{}` says is_turbo)",
                fixture_root().join("acestep-v15-turbo/config.json").display()
            ),
        ),
    ] {
        let mut generator = Generator::new(checkpoint.clone().with_variant(variant), None).unwrap();
        let mut reports = 0;
        let err = generator
            .generate(&req, &mut |_| {
                reports += 1;
                ControlFlow::Continue(())
            })
            .expect_err("guidance on a distilled model is refused");
        assert!(matches!(err, EngineError::InvalidInput(_)), "{err}");
        let message = err.to_string();
        assert!(message.contains(&format!("a guidance scale (cfg) of 3 needs a guided model, but {why}")), "{message}");
        assert!(message.ends_with("set cfg to 1, or load a guided variant (base, sft, xl-base, xl-sft)"), "{message}");
        assert_eq!(reports, 0, "{variant}: nothing ran");
        let unguided = GenerationRequest { cfg_scale: 1.0, ..req.clone() };
        assert!(run(&mut generator, &unguided).is_ok(), "{variant} runs at cfg 1");
    }
}
