//! The VRAM budget on the fixture model (issue "Engine runtime" 3): a budgeted run releases units between
//! stages, stays within the budget and matches the unbudgeted output bit for bit; a budget below the minimum is
//! refused with the minimum; a streamed DiT matches the resident one exactly.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use retake_engine::audio::{Audio, MODEL_SAMPLE_RATE};
use retake_engine::model::checkpoint::Checkpoint;
use retake_engine::model::dit::Dit;
use retake_engine::model::resident::{Ledger, Tracked};
use retake_engine::model_source::ModelSource;
use retake_engine::pipeline::request::{GenerationOutput, GenerationRequest, Metas, Mode, Task};
use retake_engine::pipeline::residency::{
    dit_resident_blocks, human_bytes, minimum_budget, ResidencyStats, Unit, UnitSizes,
};
use retake_engine::pipeline::Generator;
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
    for (job, want) in jobs().iter().zip(&wanted) {
        let got = run(&mut tight, job);
        assert_eq!(bits(&got.latents), bits(&want.latents));
        assert_eq!(audio_bits(&got.audio), audio_bits(&want.audio));
        assert_resident_bytes_match_units(&tight, &sizes);
        let stats = tight.residency();
        assert!(stats.peak_bytes <= budget, "peak {} over the budget {}", stats.peak_bytes, budget);
    }
    let stats = tight.residency();
    assert_eq!(stats.budget, Some(budget));
    assert!(stats.peak_bytes > 0 && stats.peak_resident_bytes < sizes.total());
    assert!(stats.releases > 0, "a budget below the model must release units between stages");
    assert_eq!(stats.required_bytes, Some(budget));
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
        model: ModelSource::Dir(root()),
        device: DeviceChoice::Cpu,
        vram_budget: Some(budget),
        queue_capacity: 4,
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

#[test]
fn the_engine_fails_a_job_under_a_too_small_budget_stating_the_minimum() {
    let minimum = minimum_budget(&checkpoint()).unwrap().total();
    match run_on_engine(minimum / 2, jobs()[0].clone()) {
        (Event::Failed { error, .. }, stats) => {
            assert!(error.contains(&format!("at least {}", human_bytes(minimum))), "{error}");
            assert_eq!(stats.residency, ResidencyStats::default(), "nothing was loaded");
        }
        (other, _) => panic!("the job did not fail under half the minimum budget: {other:?}"),
    }
}

#[test]
fn once_the_model_is_open_a_too_small_budget_is_refused_at_submit() {
    let minimum = minimum_budget(&checkpoint()).unwrap().total();
    let engine = Engine::spawn(EngineConfig {
        model: ModelSource::Dir(root()),
        device: DeviceChoice::Cpu,
        vram_budget: Some(minimum / 2),
        queue_capacity: 4,
    });
    let first = engine.submit(jobs()[0].clone()).unwrap();
    let events = engine.events();
    while !matches!(events.recv_timeout(Duration::from_secs(120)).unwrap(), Event::Failed { job, .. } if job == first) {
    }
    match engine.submit(jobs()[1].clone()) {
        Err(SubmitError::BudgetTooSmall(message)) => {
            assert!(message.contains(&format!("at least {}", human_bytes(minimum))), "{message}")
        }
        other => panic!("a second job under the same too-small budget was not refused at submit: {other:?}"),
    }
}

#[test]
fn the_engine_reports_residency_within_its_budget() {
    // The job's prompt and clip are a little larger than the smallest shapes the minimum is computed for.
    let budget = minimum_budget(&checkpoint()).unwrap().total() + (1 << 20);
    match run_on_engine(budget, jobs()[0].clone()) {
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
