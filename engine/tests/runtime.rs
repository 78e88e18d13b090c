//! The engine thread driven through its handle with the real pipelines on the tiny fixture model (docs/acestep-model.md
//! §13): event order, FIFO, cancellation, failures, panics, back-pressure, shutdown, source-latent caching, and
//! several clients sharing one engine (their own events, cancels and settings; one model load).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, RecvTimeoutError};
use retake_engine::audio::{Audio, MODEL_SAMPLE_RATE};
use retake_engine::model_source::ModelSource;
use retake_engine::pipeline::request::{CfgInterval, GenerationRequest, Metas, Mode, Task};
use retake_engine::runtime::{DeviceChoice, Engine, EngineConfig, EngineHandle, Event, JobId, SubmitError, Take};

/// Longest wait for any single event; the fixture model's jobs take well under a second.
const EVENT_TIMEOUT: Duration = Duration::from_secs(60);

/// Settings for the tiny fixture model on the CPU.
fn config(queue_capacity: usize) -> EngineConfig {
    let model = ModelSource::Dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny-acestep"));
    EngineConfig { model: model.into(), device: DeviceChoice::Cpu, queue_capacity, ..EngineConfig::default() }
}

fn engine(queue_capacity: usize) -> EngineHandle {
    Engine::spawn(config(queue_capacity))
}

fn request(task: Task, source: Option<Audio>, steps: usize) -> GenerationRequest {
    GenerationRequest {
        task,
        mode: Mode::Studio,
        source,
        caption: "warm lo-fi piano".into(),
        lyrics: "[Instrumental]".into(),
        language: "unknown".into(),
        metas: Metas::default(),
        seed: 7,
        steps,
        shift: 3.0,
        cfg_scale: 1.0,
        cfg_interval: CfgInterval::ALL,
        references: Vec::new(),
        noise: None,
    }
}

fn text2music(duration_s: f64, steps: usize) -> GenerationRequest {
    request(Task::Text2Music { duration_s }, None, steps)
}

fn repaint(source: &Audio, start: f64, end: f64) -> GenerationRequest {
    let task = Task::Repaint { ranges: vec![(start, end)], strength: 1.0, splice_crossfade_ms: Some(20.0) };
    request(task, Some(source.clone()), 2)
}

/// Stereo 48 kHz sine of `seconds` at `hz`.
fn sine(seconds: f64, hz: f64) -> Audio {
    let n = (seconds * MODEL_SAMPLE_RATE as f64) as usize;
    let wave: Vec<f32> = (0..n)
        .map(|i| (0.5 * (std::f64::consts::TAU * hz * i as f64 / MODEL_SAMPLE_RATE as f64).sin()) as f32)
        .collect();
    Audio::new(MODEL_SAMPLE_RATE, vec![wave.clone(), wave])
}

fn next(events: &Receiver<Event>) -> Event {
    match events.recv_timeout(EVENT_TIMEOUT) {
        Ok(event) => event,
        Err(RecvTimeoutError::Timeout) => panic!("no engine event within {EVENT_TIMEOUT:?}: the engine is stuck"),
        Err(RecvTimeoutError::Disconnected) => panic!("the engine stopped while events were expected"),
    }
}

fn is_terminal(event: &Event) -> bool {
    matches!(event, Event::Done { .. } | Event::Failed { .. } | Event::Cancelled { .. })
}

/// A short, comparable name of an event's kind (its job left out).
fn label(event: &Event) -> String {
    match event {
        Event::Queued { position, .. } => format!("queued {position}"),
        Event::Loading { component, .. } => format!("loading {component}"),
        Event::Encoding { .. } => "encoding".into(),
        Event::Step { k, n, .. } => format!("step {k}/{n}"),
        Event::Decoding { tile, tiles, .. } => format!("decoding {tile}/{tiles}"),
        Event::Done { .. } => "done".into(),
        Event::Failed { error, .. } => format!("failed: {error}"),
        Event::Cancelled { .. } => "cancelled".into(),
        Event::Warning(w) => format!("warning: {w}"),
    }
}

/// Every event up to and including `job`'s terminal one.
fn until_end(events: &Receiver<Event>, job: JobId) -> Vec<Event> {
    let mut seen = Vec::new();
    loop {
        let event = next(events);
        let last = event.job() == Some(job) && is_terminal(&event);
        seen.push(event);
        if last {
            return seen;
        }
    }
}

/// Waits for `job`'s first `Step` event and returns the events seen so far.
fn until_first_step(events: &Receiver<Event>, job: JobId) -> Vec<Event> {
    let mut seen = Vec::new();
    loop {
        let event = next(events);
        let step = event.job() == Some(job) && matches!(event, Event::Step { .. });
        assert!(!(event.job() == Some(job) && is_terminal(&event)), "{job:?} ended early: {}", label(&event));
        seen.push(event);
        if step {
            return seen;
        }
    }
}

fn labels_of(events: &[Event], job: JobId) -> Vec<String> {
    events.iter().filter(|e| e.job() == Some(job)).map(label).collect()
}

fn take_of(events: &[Event], job: JobId) -> Arc<Take> {
    match events.iter().find(|e| e.job() == Some(job) && is_terminal(e)) {
        Some(Event::Done { take, .. }) => take.clone(),
        other => panic!("{job:?} did not finish: {:?}", other.map(label)),
    }
}

#[test]
fn events_arrive_in_order_and_done_carries_audio_latents_and_request() {
    let handle = engine(4);
    let events = handle.events();
    let job = handle.submit(text2music(1.0, 3)).unwrap();
    let seen = until_end(&events, job);
    let labels = labels_of(&seen, job);
    let decoding: Vec<&String> = labels.iter().filter(|l| l.starts_with("decoding")).collect();
    assert!(!decoding.is_empty(), "{labels:?}");
    // Decoding is announced when it starts (0 tiles done), then after each tile.
    let tiles = decoding.len() - 1;
    let mut want: Vec<String> = ["queued 0", "encoding", "step 1/3", "step 2/3", "step 3/3"].map(String::from).into();
    want.extend((0..=tiles).map(|t| format!("decoding {t}/{tiles}")));
    want.push("done".into());
    assert_eq!(labels, want);
    assert!(seen.iter().all(|e| e.job() == Some(job)), "events of other kinds: {:?}", seen.iter().map(label));

    let take = take_of(&seen, job);
    assert_eq!((take.audio.sample_rate, take.audio.channels.len(), take.audio.len()), (MODEL_SAMPLE_RATE, 2, 48_000));
    assert_eq!(take.latents.as_ref().map(|l| l.dims()), Some(&[1, 25, 64][..]));
    assert!(take.source_latents.is_none());
    assert_eq!(take.request.task, Task::Text2Music { duration_s: 1.0 });
    assert_eq!((take.request.caption.as_str(), take.request.seed, take.request.steps), ("warm lo-fi piano", 7, 3));
}

#[test]
fn jobs_run_one_at_a_time_in_submission_order_with_their_queue_positions() {
    let handle = engine(8);
    let events = handle.events();
    // Long enough that the three submits below all happen while it runs.
    let first = handle.submit(text2music(0.4, 40)).unwrap();
    let mut seen = until_first_step(&events, first);
    let later: Vec<JobId> = (0..3).map(|_| handle.submit(text2music(0.4, 2)).unwrap()).collect();
    seen.extend(until_end(&events, later[2]));

    let queued: Vec<String> = later.iter().map(|&j| labels_of(&seen, j)[0].clone()).collect();
    assert_eq!(queued, ["queued 0", "queued 1", "queued 2"]);
    // Each job's events form one contiguous run after its `Queued`, in submission order.
    let order: Vec<JobId> = seen.iter().filter(|e| !matches!(e, Event::Queued { .. })).filter_map(Event::job).fold(
        Vec::new(),
        |mut runs, job| {
            if runs.last() != Some(&job) {
                runs.push(job);
            }
            runs
        },
    );
    assert_eq!(order, [vec![first], later.clone()].concat());
    for job in [first].iter().chain(&later) {
        take_of(&seen, *job);
    }
}

#[test]
fn cancelling_a_queued_job_ends_it_without_running_it() {
    let handle = engine(4);
    let events = handle.events();
    let running = handle.submit(text2music(0.4, 4)).unwrap();
    let mut seen = until_first_step(&events, running);
    let waiting = handle.submit(text2music(0.4, 4)).unwrap();
    handle.cancel(waiting);
    seen.extend(until_end(&events, waiting));
    assert_eq!(labels_of(&seen, waiting), ["queued 0", "cancelled"]);
    take_of(&seen, running);
}

#[test]
fn cancelling_a_running_job_stops_it_within_one_step() {
    let handle = engine(4);
    let events = handle.events();
    // 4 s of audio: each step takes long enough that a test thread scheduled late on a busy machine still sends the
    // cancel before the next step ends.
    let job = handle.submit(text2music(4.0, 200)).unwrap();
    until_first_step(&events, job);
    handle.cancel(job);
    let after = until_end(&events, job);
    let steps_after_cancel = after.iter().filter(|e| matches!(e, Event::Step { .. })).count();
    assert!(steps_after_cancel <= 1, "{steps_after_cancel} steps ran after the cancel");
    assert!(matches!(after.last(), Some(Event::Cancelled { job: j }) if *j == job), "{:?}", after.last().map(label));
    assert!(!after.iter().any(|e| matches!(e, Event::Decoding { .. })));

    let next_job = handle.submit(text2music(0.4, 2)).unwrap();
    take_of(&until_end(&events, next_job), next_job);
}

#[test]
fn a_failing_job_reports_why_and_the_next_job_still_succeeds() {
    let handle = engine(4);
    let events = handle.events();
    let no_steps = handle.submit(text2music(0.4, 0)).unwrap();
    let seen = until_end(&events, no_steps);
    assert_eq!(
        labels_of(&seen, no_steps),
        ["queued 0", "failed: invalid input: steps must be at least 1 (turbo uses 8)"]
    );

    let mut sourceless = repaint(&sine(0.6, 220.0), 0.2, 0.4);
    sourceless.source = None;
    let no_source = handle.submit(sourceless).unwrap();
    let good = handle.submit(text2music(0.4, 2)).unwrap();
    let seen = until_end(&events, good);
    match seen.iter().find(|e| e.job() == Some(no_source) && is_terminal(e)) {
        Some(Event::Failed { error, .. }) => assert!(error.contains("needs source audio"), "{error}"),
        other => panic!("expected Failed, got {:?}", other.map(label)),
    }
    take_of(&seen, good);
}

/// The pipeline pads a repaint that starts before the clip with that many seconds of zeros; a start 10^15 s
/// early asks for more samples than a `Vec` can hold, so the pipeline panics ("capacity overflow") without
/// allocating. (If the pipeline learns to reject such ranges, this needs another real panic.)
#[test]
fn a_failing_job_keeps_cancels_for_later_jobs_and_the_engine_keeps_serving() {
    let handle = engine(4);
    let events = handle.events();
    let running = handle.submit(text2music(0.4, 200)).unwrap();
    until_first_step(&events, running);
    let failing = handle.submit(repaint(&sine(0.6, 220.0), -1e15, 0.5)).unwrap();
    let cancelled = handle.submit(text2music(0.4, 2)).unwrap();
    let good = handle.submit(text2music(0.4, 2)).unwrap();
    // Both cancels are seen before the failing job starts; the one for the later job must survive it.
    handle.cancel(cancelled);
    handle.cancel(running);
    let seen = until_end(&events, good);
    match seen.iter().find(|e| e.job() == Some(failing) && is_terminal(e)) {
        Some(Event::Failed { error, .. }) => assert!(error.contains("at most 600 s"), "{error}"),
        other => panic!("expected Failed, got {:?}", other.map(label)),
    }
    assert_eq!(labels_of(&seen, cancelled), ["queued 1", "cancelled"]);
    take_of(&seen, good);
}

#[test]
fn a_full_queue_refuses_a_submit_at_once_without_events() {
    let handle = engine(1);
    let events = handle.events();
    let running = handle.submit(text2music(0.4, 200)).unwrap();
    until_first_step(&events, running);
    let waiting = handle.submit(text2music(0.4, 2)).unwrap();
    let asked = Instant::now();
    assert_eq!(handle.submit(text2music(0.4, 2)), Err(SubmitError::QueueFull(1)));
    assert!(asked.elapsed() < Duration::from_millis(100), "the refusal took {:?}", asked.elapsed());
    handle.cancel(running);
    let seen = until_end(&events, waiting);
    assert!(seen.iter().all(|e| matches!(e.job(), Some(j) if j == running || j == waiting)));
    take_of(&seen, waiting);
    // The refused submit used no id.
    assert_eq!(handle.submit(text2music(0.4, 2)), Ok(JobId(waiting.0 + 1)));
}

#[test]
fn a_hundred_jobs_with_interleaved_cancels_each_end_exactly_once() {
    let handle = engine(128);
    let events = handle.events();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut jobs = Vec::new();
    for i in 0..100 {
        // Every seventh job is invalid, every fifth is cancelled while queued.
        let job = handle.submit(text2music(0.2, if i % 7 == 3 { 0 } else { 1 + i % 2 })).unwrap();
        if i % 5 == 1 {
            handle.cancel(job);
        }
        jobs.push(job);
    }
    let mut ends: HashMap<JobId, Vec<String>> = HashMap::new();
    while ends.len() < jobs.len() {
        assert!(Instant::now() < deadline, "only {} of 100 jobs ended in time", ends.len());
        let event = next(&events);
        match (&event, event.job()) {
            // Cancel the job after every encoding one, whether it is still queued or already running.
            (Event::Encoding { .. }, Some(job)) if job.0 % 4 == 0 => handle.cancel(JobId(job.0 + 1)),
            (e, Some(job)) if is_terminal(e) => ends.entry(job).or_default().push(label(e)),
            _ => {}
        }
    }
    drop(handle);
    // The thread has been joined: the stream ends, with no second ending for any job.
    for event in events.iter() {
        if let (true, Some(job)) = (is_terminal(&event), event.job()) {
            ends.entry(job).or_default().push(label(&event));
        }
    }
    for (i, job) in jobs.iter().enumerate() {
        let end = &ends[job];
        assert_eq!(end.len(), 1, "job {i} ended {end:?}");
        // A cancel can only lose the race against a job's own validation.
        let allowed: &[&str] = match (i % 5 == 1, i % 7 == 3) {
            (true, false) => &["cancelled"],
            (_, true) => &["cancelled", "failed"],
            (false, false) => &["cancelled", "done"],
        };
        assert!(allowed.iter().any(|a| end[0].starts_with(a)), "job {i}: {}", end[0]);
    }
    for outcome in ["done", "cancelled", "failed"] {
        assert!(ends.values().any(|e| e[0].starts_with(outcome)), "no job ended {outcome}");
    }
}

#[test]
fn dropping_the_last_handle_cancels_the_work_and_joins_the_thread() {
    let handle = engine(8);
    let events = handle.events();
    let running = handle.submit(text2music(0.4, 400)).unwrap();
    let waiting: Vec<JobId> = (0..3).map(|_| handle.submit(text2music(0.4, 2)).unwrap()).collect();
    until_first_step(&events, running);

    let clone = handle.clone();
    drop(handle);
    let still = clone.submit(text2music(0.4, 2)).unwrap(); // a remaining clone keeps the engine
    let dropped = Instant::now();
    drop(clone);
    assert!(dropped.elapsed() < Duration::from_secs(10), "dropping took {:?}", dropped.elapsed());

    // The engine thread has ended, so the stream is closed once drained.
    let rest: Vec<Event> = events.try_iter().collect();
    assert!(matches!(events.recv_timeout(Duration::from_millis(1)), Err(RecvTimeoutError::Disconnected)));
    for job in [running].iter().chain(&waiting).chain([&still]) {
        let end: Vec<String> = rest.iter().filter(|e| e.job() == Some(*job) && is_terminal(e)).map(label).collect();
        assert_eq!(end, ["cancelled"], "{job:?}");
    }
    assert!(!rest.iter().any(|e| matches!(e, Event::Encoding { .. }) && e.job() != Some(running)));
}

#[test]
fn repainting_the_same_audio_twice_encodes_it_once_and_gives_the_same_take() {
    let handle = engine(4);
    let events = handle.events();
    let source = sine(0.6, 330.0);
    assert_eq!(handle.stats().vae_encodes, 0);
    let first = handle.submit(repaint(&source, 0.2, 0.4)).unwrap();
    let first = take_of(&until_end(&events, first), first);
    assert_eq!(handle.stats().vae_encodes, 1);
    let second = handle.submit(repaint(&source, 0.2, 0.4)).unwrap();
    let second = take_of(&until_end(&events, second), second);
    assert_eq!(handle.stats().vae_encodes, 1, "the second repaint ran the VAE encoder again");
    assert_eq!(first.audio, second.audio);
    let latents = |t: &Take| t.source_latents.as_ref().unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(latents(&first), latents(&second));

    let other = handle.submit(repaint(&sine(0.6, 440.0), 0.2, 0.4)).unwrap();
    take_of(&until_end(&events, other), other);
    assert_eq!(handle.stats().vae_encodes, 2);
}

/// Serves two streams until `jobs` have all ended; returns each stream's events.
fn until_all_end(streams: [&Receiver<Event>; 2], jobs: &[JobId]) -> [Vec<Event>; 2] {
    let mut seen = [Vec::new(), Vec::new()];
    let ended = |seen: &[Vec<Event>; 2]| {
        jobs.iter().all(|&job| seen.iter().flatten().any(|e| e.job() == Some(job) && is_terminal(e)))
    };
    let deadline = Instant::now() + EVENT_TIMEOUT;
    while !ended(&seen) {
        assert!(Instant::now() < deadline, "the jobs {jobs:?} did not all end within {EVENT_TIMEOUT:?}");
        for (stream, seen) in streams.iter().zip(&mut seen) {
            seen.extend(stream.recv_timeout(Duration::from_millis(10)));
        }
    }
    seen
}

/// The jobs a stream's events belong to.
fn jobs_in(events: &[Event]) -> std::collections::BTreeSet<JobId> {
    events.iter().filter_map(Event::job).collect()
}

#[test]
fn two_clients_share_one_model_load_and_each_sees_only_its_own_jobs() {
    let first = engine(8);
    let second = first.connect(config(8));
    let (first_events, second_events) = (first.events(), second.events());
    // Long enough that the submits below all happen while it runs.
    let running = first.submit(text2music(0.4, 40)).unwrap();
    let mut seen_first = until_first_step(&first_events, running);
    let a = [running, first.submit(text2music(0.4, 2)).unwrap()];
    let b = second.submit(text2music(0.4, 3)).unwrap();
    let [rest, seen_second] = until_all_end([&first_events, &second_events], &[a[0], a[1], b]);
    seen_first.extend(rest);
    assert_eq!(jobs_in(&seen_first), a.into_iter().collect());
    assert_eq!(jobs_in(&seen_second), [b].into_iter().collect());
    // One queue: the second client's job waited behind the first's.
    assert_eq!(
        (labels_of(&seen_first, a[1])[0].as_str(), labels_of(&seen_second, b)[0].as_str()),
        ("queued 0", "queued 1")
    );
    for job in a {
        take_of(&seen_first, job);
    }
    assert_eq!(take_of(&seen_second, b).request.steps, 3);
    let stats = second.stats();
    assert_eq!((stats.model_loads, stats.clients), (1, 2), "{stats:?}");
    assert_eq!(first.stats(), stats, "both clients read the one engine's counters");
}

#[test]
fn a_client_cancels_only_its_own_jobs() {
    let first = engine(8);
    let second = first.connect(config(8));
    let (first_events, second_events) = (first.events(), second.events());
    let running = second.submit(text2music(0.4, 400)).unwrap();
    until_first_step(&second_events, running);
    let waiting = first.submit(text2music(0.4, 2)).unwrap();
    // The second client names the first's job: nothing happens to it.
    second.cancel(waiting);
    second.cancel(running);
    let [seen_first, seen_second] = until_all_end([&first_events, &second_events], &[running, waiting]);
    take_of(&seen_first, waiting);
    assert_eq!(labels_of(&seen_second, running).last().map(String::as_str), Some("cancelled"));
    // And the first client cannot cancel the second's running job.
    let running = second.submit(text2music(0.4, 12)).unwrap();
    until_first_step(&second_events, running);
    first.cancel(running);
    take_of(&until_end(&second_events, running), running);
}

#[test]
fn a_dropped_client_has_its_jobs_cancelled_at_once_and_the_other_client_is_served() {
    let first = engine(8);
    let second = first.connect(config(8));
    let (first_events, second_events) = (first.events(), second.events());
    let running = first.submit(text2music(0.4, 400)).unwrap();
    let waiting: Vec<JobId> = (0..2).map(|_| first.submit(text2music(0.4, 2)).unwrap()).collect();
    let other = second.submit(text2music(0.4, 2)).unwrap();
    until_first_step(&first_events, running);

    let dropped = Instant::now();
    drop(first);
    assert!(dropped.elapsed() < Duration::from_millis(500), "dropping a client took {:?}", dropped.elapsed());
    let seen = until_end(&second_events, other);
    assert_eq!(jobs_in(&seen), [other].into_iter().collect());
    take_of(&seen, other);
    assert_eq!(second.stats().clients, 1);

    let rest: Vec<Event> = first_events.try_iter().collect();
    for job in [running].iter().chain(&waiting) {
        let end: Vec<String> = rest.iter().filter(|e| e.job() == Some(*job) && is_terminal(e)).map(label).collect();
        assert_eq!(end, ["cancelled"], "{job:?}");
    }
    assert!(!rest.iter().any(|e| matches!(e, Event::Decoding { .. })), "the dropped client's job ran to its end");
    // Its stream ends: the engine keeps nothing of the client.
    assert!(matches!(first_events.recv_timeout(Duration::from_millis(1)), Err(RecvTimeoutError::Disconnected)));
}

#[test]
fn the_engine_stops_when_its_last_client_goes_and_a_weak_handle_cannot_revive_it() {
    let first = engine(4);
    let weak = first.downgrade();
    let events = first.events();
    let second = weak.connect(config(4)).expect("a running engine takes a new client");
    drop(first);
    let job = second.submit(text2music(0.4, 2)).unwrap();
    take_of(&until_end(&second.events(), job), job);
    assert_eq!(second.stats().model_loads, 1);
    drop(second);
    assert!(weak.connect(config(4)).is_none(), "the engine outlived its last client");
    assert!(matches!(events.recv_timeout(Duration::from_millis(1)), Err(RecvTimeoutError::Disconnected)));
}

#[test]
fn a_job_with_other_settings_reloads_the_model_between_jobs_and_every_client_is_told() {
    let ample = EngineConfig { vram_budget: Some(64 << 30), ..config(8) };
    let first = engine(8);
    let second = first.connect(ample.clone());
    let (first_events, second_events) = (first.events(), second.events());
    let a = first.submit(text2music(0.4, 2)).unwrap();
    let b = second.submit(text2music(0.4, 2)).unwrap();
    let [seen_first, seen_second] = until_all_end([&first_events, &second_events], &[a, b]);
    take_of(&seen_first, a);
    take_of(&seen_second, b);
    assert_eq!(first.stats().model_loads, 2, "the second job's budget differs: the model is loaded again");
    let warned = "warning: reloading the model for a job with other engine settings (turbo on cpu, budget 64.00 GiB)";
    for seen in [&seen_first, &seen_second] {
        let warnings: Vec<String> = seen.iter().filter(|e| matches!(e, Event::Warning(_))).map(label).collect();
        assert_eq!(warnings, [warned]);
    }

    // Settings changed to the loaded ones: the next job runs on the model as it is.
    first.set_config(ample);
    let c = first.submit(text2music(0.4, 2)).unwrap();
    take_of(&until_end(&first_events, c), c);
    assert_eq!(first.stats().model_loads, 2);
}

#[test]
fn a_client_whose_budget_is_too_small_is_refused_and_the_other_is_served() {
    let first = engine(4);
    let starved = first.connect(EngineConfig { vram_budget: Some(1), ..config(4) });
    match starved.submit(text2music(0.4, 2)) {
        Err(SubmitError::BudgetTooSmall(message)) => assert!(message.contains("at least"), "{message}"),
        other => panic!("a 1-byte budget was accepted: {other:?}"),
    }
    let job = first.submit(text2music(0.4, 2)).unwrap();
    take_of(&until_end(&first.events(), job), job);
    starved.set_config(config(4));
    let job = starved.submit(text2music(0.4, 2)).unwrap();
    take_of(&until_end(&starved.events(), job), job);
}
