//! The VRAM budget on the fixture model: a budgeted run releases units between
//! stages, stays within the budget and matches the unbudgeted output bit for bit; a budget below the minimum is
//! refused with the minimum; a streamed DiT matches the resident one exactly.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use retake_engine::audio::{Audio, MODEL_SAMPLE_RATE};
use retake_engine::model::checkpoint::Checkpoint;
use retake_engine::model::dit::Dit;
use retake_engine::model::linear::CpuPrecision;
use retake_engine::model::prompt::PromptTokenizer;
use retake_engine::model::resident::{Ledger, Tracked};
use retake_engine::model::silence::SilenceLatent;
use retake_engine::model_source::ModelSource;
use retake_engine::pipeline::request::{CfgInterval, GenerationOutput, GenerationRequest, Metas, Mode, Task};
use retake_engine::pipeline::Generator;
use retake_engine::residency::{dit_resident_blocks, human_bytes, minimum_budget, ResidencyStats, Unit, UnitSizes};
use retake_engine::runtime::{DeviceChoice, Engine, EngineConfig, EngineStats, Event, SubmitError};
use retake_engine::EngineError;

const RATE: usize = MODEL_SAMPLE_RATE as usize;
const HOP: usize = 1920;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny-acestep")
}

fn checkpoint() -> Checkpoint {
    Checkpoint::open(&root(), DType::F32, &Device::Cpu).unwrap()
}

/// A short stereo clip. The fixture VAE's full-rate level is as wide as the real one, so its activations outweigh
/// the tiny model for any longer clip; two latent frames keep every stage below the weights of the whole model.
fn signal(samples: usize) -> Audio {
    let channel =
        |f: f32| (0..samples).map(|i| 0.4 * (std::f32::consts::TAU * f * i as f32 / RATE as f32).sin()).collect();
    Audio::new(MODEL_SAMPLE_RATE, vec![channel(220.0), channel(330.0)])
}

fn request(task: Task) -> GenerationRequest {
    GenerationRequest {
        task,
        mode: Mode::Studio,
        source: Some(signal(2 * HOP)),
        caption: "lo-fi piano".into(),
        lyrics: "[Instrumental]".into(),
        language: "unknown".into(),
        metas: Metas::default(),
        seed: 5,
        steps: 4,
        shift: 3.0,
        cfg_scale: 2.0,
        cfg_interval: CfgInterval::ALL,
        references: Vec::new(),
        noise: None,
    }
}

fn jobs() -> [GenerationRequest; 2] {
    [
        request(Task::Repaint { ranges: vec![(0.02, 0.06)], strength: 1.0, splice_crossfade_ms: None }),
        request(Task::Cover { cover_strength: 0.5, noise_strength: 0.0, audio_codes: None }),
    ]
}

fn run(generator: &mut Generator, request: &GenerationRequest) -> GenerationOutput {
    generator.generate(request, &mut |_| ControlFlow::Continue(())).unwrap()
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap().into_iter().map(f32::to_bits).collect()
}

fn audio_bits(audio: &Audio) -> Vec<u32> {
    audio.channels.iter().flatten().map(|s| s.to_bits()).collect()
}

/// Resident bytes must be exactly the planned size of the units the generator reports resident (and the sizes
/// are held to the loaded tensors themselves by the unit tests of `residency::sizes`).
fn assert_resident_bytes_match_units(generator: &Generator, sizes: &UnitSizes) {
    let units = generator.resident_units();
    let planned: u64 = units.iter().map(|&u| sizes.of(u)).sum();
    assert_eq!(generator.residency().resident_bytes, planned, "resident units {units:?}");
}

#[test]
fn a_budget_below_the_whole_model_runs_repaint_and_cover_bit_identically_within_it() {
    let sizes = UnitSizes::from_checkpoint(&checkpoint()).unwrap();
    let mut free = Generator::new(checkpoint(), None).unwrap();
    let wanted: Vec<GenerationOutput> = jobs().iter().map(|job| run(&mut free, job)).collect();
    let unbudgeted = free.residency();
    assert_eq!((unbudgeted.budget, unbudgeted.releases), (None, 0));
    assert_eq!(unbudgeted.peak_resident_bytes, sizes.total(), "without a budget every unit ends up resident");
    assert_resident_bytes_match_units(&free, &sizes);

    // The smallest budget these jobs fit in is below the whole model's weights alone.
    let budget = unbudgeted.required_bytes.unwrap();
    assert!(budget < sizes.total(), "{} is not below the model's {}", human_bytes(budget), human_bytes(sizes.total()));
    assert!(budget >= minimum_budget(&checkpoint()).unwrap().total());

    let mut tight = Generator::new(checkpoint(), Some(budget)).unwrap();
    assert_same_outputs_within_budget(&mut tight, &wanted, &sizes, budget);
    let stats = tight.residency();
    assert_eq!(stats.budget, Some(budget));
    assert!(stats.peak_bytes > 0 && stats.peak_resident_bytes < sizes.total());
    assert!(stats.releases > 0, "a budget below the model must release units between stages");
    assert_eq!(stats.required_bytes, Some(budget));
}

/// Runs [`jobs`] on `tight` and checks each output equals `wanted` bit for bit, its booked units match `sizes`
/// and its peak stays within `budget`.
fn assert_same_outputs_within_budget(
    tight: &mut Generator,
    wanted: &[GenerationOutput],
    sizes: &UnitSizes,
    budget: u64,
) {
    for (job, want) in jobs().iter().zip(wanted) {
        let got = run(tight, job);
        assert_eq!(bits(&got.latents), bits(&want.latents));
        assert_eq!(audio_bits(&got.audio), audio_bits(&want.audio));
        assert_resident_bytes_match_units(tight, sizes);
        let stats = tight.residency();
        assert!(stats.peak_bytes <= budget, "peak {} over the budget {}", stats.peak_bytes, budget);
    }
}

/// A generator on random weights of the fixture's geometry, with the fixture's tokenizer and silence latent as
/// its assets (as `retake bench` runs the real geometry).
fn random_weights_generator(budget: Option<u64>) -> retake_engine::Result<Generator> {
    let folder = checkpoint();
    let random = folder.with_random_weights(7);
    let tokenizer = PromptTokenizer::from_file(&root().join("Qwen3-Embedding-0.6B/tokenizer.json")).unwrap();
    Generator::with_assets(random, tokenizer, SilenceLatent::load(&folder).unwrap(), budget)
}

#[test]
fn random_weights_run_under_a_budget_bit_identically_within_it_and_refuse_one_below_the_minimum() {
    // Random weights are sized from the geometry, which gives the fixture's own unit sizes.
    let sizes = UnitSizes::from_checkpoint(&checkpoint()).unwrap();
    let mut free = random_weights_generator(None).unwrap();
    let wanted: Vec<GenerationOutput> = jobs().iter().map(|job| run(&mut free, job)).collect();
    let unbudgeted = free.residency();
    assert_eq!(unbudgeted.peak_resident_bytes, sizes.total());
    assert_eq!(unbudgeted.dit_resident_blocks, Some(sizes.dit_blocks().len()));
    let budget = unbudgeted.required_bytes.unwrap();
    assert!(budget < sizes.total(), "{} is not below the model's {}", human_bytes(budget), human_bytes(sizes.total()));

    let mut tight = random_weights_generator(Some(budget)).unwrap();
    assert_same_outputs_within_budget(&mut tight, &wanted, &sizes, budget);
    let stats = tight.residency();
    assert_eq!((stats.budget, stats.required_bytes), (Some(budget), Some(budget)));
    assert!(stats.releases > 0, "a budget below the model must release units between stages");

    let minimum = minimum_budget(&checkpoint()).unwrap().total();
    let err = random_weights_generator(Some(minimum - 1)).err().unwrap();
    assert!(matches!(err, EngineError::BudgetTooSmall(_)), "{err}");
    assert!(err.to_string().contains(&format!("at least {}", human_bytes(minimum))), "{err}");
    let accepted = random_weights_generator(Some(minimum)).unwrap();
    assert_eq!(accepted.residency().peak_resident_bytes, sizes.of(Unit::Silence), "only the given silence is loaded");
}

#[test]
fn a_budget_below_the_minimum_is_refused_before_loading_with_the_minimum() {
    let minimum = minimum_budget(&checkpoint()).unwrap().total();
    let err = Generator::new(checkpoint(), Some(minimum - 1)).err().unwrap();
    assert!(matches!(err, EngineError::BudgetTooSmall(_)), "{err}");
    assert!(err.to_string().contains(&format!("at least {}", human_bytes(minimum))), "{err}");
    let generator = Generator::new(checkpoint(), Some(minimum)).unwrap();
    assert_eq!(generator.residency().resident_bytes, 0);
}

/// Runs `request` on an engine over the fixture with `budget`; returns the job's terminal event and the stats.
fn run_on_engine(budget: u64, request: GenerationRequest) -> (Event, EngineStats) {
    let engine = Engine::spawn(EngineConfig {
        model: ModelSource::Dir(root()).into(),
        device: DeviceChoice::Cpu,
        vram_budget: Some(budget),
        queue_capacity: 4,
        // The precision `checkpoint()` is sized in (the default is bf16 where the CPU has AVX512-BF16).
        cpu_precision: CpuPrecision::F32,
        ..EngineConfig::default()
    });
    let job = engine.submit(request).unwrap();
    let events = engine.events();
    loop {
        let event = events.recv_timeout(Duration::from_secs(120)).unwrap();
        let ended = match &event {
            Event::Failed { job: id, .. } | Event::Done { job: id, .. } | Event::Cancelled { job: id } => *id == job,
            _ => false,
        };
        if ended {
            return (event, engine.stats());
        }
    }
}

fn engine_over(model: PathBuf, budget: u64) -> retake_engine::runtime::EngineHandle {
    Engine::spawn(EngineConfig {
        model: ModelSource::Dir(model).into(),
        device: DeviceChoice::Cpu,
        vram_budget: Some(budget),
        queue_capacity: 4,
        // The precision `checkpoint()` is sized in (the default is bf16 where the CPU has AVX512-BF16).
        cpu_precision: CpuPrecision::F32,
        ..EngineConfig::default()
    })
}

fn assert_states_minimum(refusal: std::result::Result<retake_engine::runtime::JobId, SubmitError>, minimum: u64) {
    match refusal {
        Err(SubmitError::BudgetTooSmall(message)) => {
            assert!(message.contains(&format!("at least {}", human_bytes(minimum))), "{message}")
        }
        other => panic!("a job under a too-small budget was not refused at submit: {other:?}"),
    }
}

#[test]
fn a_too_small_budget_is_refused_at_the_first_submit_stating_the_minimum() {
    let minimum = minimum_budget(&checkpoint()).unwrap().total();
    assert_states_minimum(engine_over(root(), minimum - 1).submit(jobs()[0].clone()), minimum);
    assert!(engine_over(root(), minimum).submit(jobs()[0].clone()).is_ok(), "the minimum itself is accepted");
}

#[test]
fn a_model_that_arrives_after_spawn_is_checked_by_the_first_job_then_refused_at_submit() {
    let minimum = minimum_budget(&checkpoint()).unwrap().total();
    let folder = tempfile::tempdir().unwrap();
    let model = folder.path().join("model");
    // The model is not there when the engine starts (as when it is still to be downloaded)…
    let engine = engine_over(model.clone(), minimum / 2);
    copy_dir(&root(), &model);
    // …so the first job is accepted and fails on opening it, stating the minimum, with nothing loaded.
    let first = engine.submit(jobs()[0].clone()).unwrap();
    let events = engine.events();
    loop {
        match events.recv_timeout(Duration::from_secs(120)).unwrap() {
            Event::Failed { job, error } if job == first => {
                assert!(error.contains(&format!("at least {}", human_bytes(minimum))), "{error}");
                break;
            }
            event @ (Event::Done { .. } | Event::Cancelled { .. }) => panic!("the job did not fail: {event:?}"),
            _ => {}
        }
    }
    assert_eq!(engine.stats().residency, ResidencyStats::default(), "nothing was loaded");
    assert_states_minimum(engine.submit(jobs()[1].clone()), minimum);
}

/// Copies the folder tree `from` to `to`.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn the_engine_reports_residency_within_its_budget() {
    // The job's prompt and clip are a little larger than the smallest shapes the minimum is computed for: its VAE
    // encoding of 0.1 s (the region and its context) needs 3.8 MiB more than the minimum (the largest stage at the
    // smallest shapes) since the CPU's attention books its scores once.
    let budget = minimum_budget(&checkpoint()).unwrap().total() + (5 << 20);
    // The engine opens the fixture as the turbo variant, which refuses guidance: this job runs at cfg 1.
    let unguided = GenerationRequest { cfg_scale: 1.0, ..jobs()[0].clone() };
    match run_on_engine(budget, unguided) {
        (Event::Done { .. }, stats) => {
            let residency = stats.residency;
            assert_eq!(residency.budget, Some(budget));
            assert!(residency.resident_bytes > 0 && residency.peak_bytes <= budget, "{residency:?}");
        }
        (other, _) => panic!("the job did not finish: {other:?}"),
    }
}

#[test]
fn a_dit_streamed_under_a_budget_smaller_than_its_blocks_gives_bit_identical_velocities() {
    let ckpt = checkpoint();
    let sizes = UnitSizes::from_checkpoint(&ckpt).unwrap();
    let (shell, blocks) = (sizes.of(Unit::DitShell), sizes.dit_blocks());
    let room = shell + blocks[0] + blocks[1];
    let resident = dit_resident_blocks(&sizes, room).unwrap();
    assert_eq!(resident, 1);

    let cfg = &ckpt.acestep;
    let vb = ckpt.acestep_weights().unwrap().pp("decoder");
    let wave = |shape: (usize, usize, usize), phase: f64| {
        let n = (shape.0 * shape.1 * shape.2) as u32;
        let ramp = Tensor::arange(0u32, n, &Device::Cpu).unwrap().to_dtype(DType::F32).unwrap();
        ramp.affine(0.11, phase).unwrap().sin().unwrap().reshape(shape).unwrap()
    };
    let frames = 9;
    let context = wave((1, frames, cfg.in_channels - cfg.audio_acoustic_hidden_dim), 0.3);
    let states = wave((1, 7, cfg.hidden_size), 1.1);
    let latents = wave((1, frames, cfg.audio_acoustic_hidden_dim), 2.2);
    let velocity = |dit: &Dit| {
        let context = dit.shell().prepare_context(&context).unwrap();
        let cross = dit.cross_cache(&states).unwrap();
        dit.forward(&latents, &context, &cross, &dit.shell().timestep(640.0).unwrap()).unwrap()
    };

    let want = velocity(&Dit::new(&vb, cfg).unwrap());
    let ledger = Ledger::new();
    let dit = Tracked::new(Dit::streamed(&vb, cfg, resident, &ledger).unwrap(), &ledger);
    assert_eq!(dit.bytes(), shell + blocks[0]);
    assert_eq!(bits(&velocity(&dit)), bits(&want));
    let totals = ledger.totals();
    assert_eq!(totals.peak_resident, shell + blocks[0] + blocks[1..].iter().max().unwrap());
    assert!(totals.peak_resident <= room && totals.resident == dit.bytes());
}
