//! The job worker: a thread of its own (never the audio thread) that starts jobs on Generate, drives the
//! ACE-Step engine (`retake_engine::runtime`), turns finished results into takes and keeps the takes list,
//! its files and the playing take in step with the host.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam::channel::{never, select, Receiver};

use retake_engine::audio::Audio;
use retake_engine::runtime::{panic_message, Engine, EngineConfig, EngineHandle, Event, JobId};
use retake_engine::{EngineError, Result};

use crate::engine_status::status_line;
use crate::jobs::{prepare_job, take_audio, JobSettings, Placement};
use crate::playback::TakeSender;
use crate::region::select_region;
use crate::settings;
use crate::shared::{JobPhase, Shared};
use crate::takes::{self, TakeLibrary, TakeMeta};

/// How often the worker looks at the audio thread's Generate flag and at restored state.
const POLL_INTERVAL: Duration = Duration::from_millis(15);

/// What the editor and the plugin ask the worker to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Start a job from the current parameters.
    Generate,
    /// Stop the running job.
    Cancel,
    /// Play take `id` (`None`: no take).
    Select(Option<u64>),
    /// Remove take `id` and its files.
    Delete(u64),
    /// The engine settings changed: read them again; the engine restarts with them at the next job.
    ReloadSettings,
    /// The host (re)activated the plugin.
    Activated {
        /// Host sample rate.
        sample_rate: u32,
        /// Main channel count.
        channels: usize,
    },
    /// Stop the worker.
    Shutdown,
}

/// The host configuration of the last activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HostConfig {
    sample_rate: u32,
    channels: usize,
}

/// A job the engine is working on.
struct RunningJob {
    id: JobId,
    placement: Placement,
    settings: JobSettings,
}

/// The engine, started on the first job.
struct EngineLink {
    handle: EngineHandle,
    events: Receiver<Event>,
    /// The settings it was started with.
    config: EngineConfig,
}

/// The job worker's state.
pub struct Worker {
    shared: Arc<Shared>,
    commands: Receiver<Command>,
    takes: TakeSender,
    library: TakeLibrary,
    takes_root: std::result::Result<PathBuf, String>,
    /// The engine to start, or why the settings do not describe one.
    engine_config: std::result::Result<EngineConfig, String>,
    engine: Option<EngineLink>,
    /// The running engine was started with settings that have changed since.
    engine_stale: bool,
    host: Option<HostConfig>,
    job: Option<RunningJob>,
    restores_seen: u64,
}

impl Worker {
    /// A worker that writes take files under `takes_root` (normally [`takes::takes_root`]) and starts an
    /// engine with `engine_config` (normally [`settings::engine_config`]) on the first job.
    pub fn new(
        shared: Arc<Shared>,
        commands: Receiver<Command>,
        takes: TakeSender,
        takes_root: std::result::Result<PathBuf, String>,
        engine_config: std::result::Result<EngineConfig, String>,
    ) -> Self {
        shared.board.lock().engine = match &engine_config {
            Ok(config) => status_line("not started (the model loads on the first Generate)", config, None),
            Err(err) => format!("engine: {err}"),
        };
        Self {
            shared,
            commands,
            takes,
            library: TakeLibrary::default(),
            takes_root,
            engine_config,
            engine: None,
            engine_stale: false,
            host: None,
            job: None,
            restores_seen: 0,
        }
    }

    /// Starts the worker thread.
    pub fn spawn(self) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new().name("retake-jobs".to_string()).spawn(move || self.run())
    }

    /// Serves commands and engine events until [`Command::Shutdown`] or until every command sender is gone.
    /// Dropping the worker stops the engine after its current step.
    pub fn run(mut self) {
        loop {
            let events = self.engine.as_ref().map_or_else(never, |engine| engine.events.clone());
            select! {
                recv(self.commands) -> command => match command {
                    Ok(Command::Shutdown) | Err(_) => break,
                    Ok(command) => self.guarded(|worker| worker.handle_command(command)),
                },
                recv(events) -> event => {
                    if let Ok(event) = event {
                        self.guarded(|worker| worker.handle_event(event));
                    }
                },
                default(POLL_INTERVAL) => {},
            }
            self.poll();
        }
    }

    /// Picks up what the audio thread and the host signalled without a message, and keeps the capture's next
    /// memory paged in.
    fn poll(&mut self) {
        if self.shared.take_generate_request() {
            self.guarded(|worker| worker.handle_command(Command::Generate));
        }
        let restores = self.shared.params.takes.restores();
        if restores != self.restores_seen {
            self.restores_seen = restores;
            self.guarded(Worker::sync_takes);
        }
        self.takes.collect_garbage();
        if let Some(capture) = self.shared.capture() {
            capture.page_in_ahead();
        }
    }

    /// Runs `work`, turning a panic into an error line instead of a dead worker.
    fn guarded(&mut self, work: impl FnOnce(&mut Self)) {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| work(self))) {
            self.job = None;
            self.fail(format!("internal error in the job worker: {}", panic_message(panic.as_ref())));
        }
    }

    fn fail(&self, message: String) {
        let mut board = self.shared.board.lock();
        board.job = JobPhase::Idle;
        board.error = Some(message);
    }

    fn set_phase(&self, label: String, fraction: f32) {
        self.shared.board.lock().job = JobPhase::Running { label, fraction };
    }

    /// Handles one command.
    pub fn handle_command(&mut self, command: Command) {
        let outcome = match command {
            Command::Generate => {
                self.generate();
                Ok(())
            }
            Command::Cancel => {
                if let (Some(job), Some(engine)) = (&self.job, &self.engine) {
                    engine.handle.cancel(job.id);
                    self.set_phase("cancelling".to_string(), 0.0);
                }
                Ok(())
            }
            Command::Select(id) => self.select(id),
            Command::Delete(id) => self.delete(id),
            Command::ReloadSettings => {
                self.reload_settings();
                Ok(())
            }
            Command::Activated { sample_rate, channels } => {
                let host = HostConfig { sample_rate, channels };
                if self.host != Some(host) {
                    self.host = Some(host);
                    self.sync_takes();
                }
                Ok(())
            }
            Command::Shutdown => Ok(()),
        };
        if let Err(err) = outcome {
            self.fail(err.to_string());
        }
    }

    fn generate(&mut self) {
        if self.job.is_some() {
            self.shared.board.lock().error = Some("a job is already running: wait for it or cancel it".to_string());
            return;
        }
        self.shared.board.lock().error = None;
        self.set_phase("copying the region".to_string(), 0.0);
        match self.start_job() {
            Ok(job) => self.job = Some(job),
            Err(err) => self.fail(err.to_string()),
        }
    }

    fn start_job(&mut self) -> Result<RunningJob> {
        let host = self.host.ok_or_else(|| {
            EngineError::invalid("the host has not activated Retake yet: start playback once, then generate")
        })?;
        let capture = self.shared.capture().ok_or_else(|| EngineError::invalid("nothing has been captured yet"))?;
        let transport = self.shared.transport.snapshot();
        let params = &self.shared.params;
        let region = select_region(
            params.follow_loop.value(),
            transport.loop_range,
            params.start.value(),
            params.end.value(),
            host.sample_rate,
        )?;
        let settings = JobSettings::from_params(params);
        let prepared = prepare_job(&capture, region, &settings, &transport)?;
        let config = self.engine_config.clone().map_err(EngineError::invalid)?;
        if std::mem::take(&mut self.engine_stale) {
            self.engine = None;
        }
        let engine = self.engine.get_or_insert_with(|| {
            let handle = Engine::spawn(config.clone());
            EngineLink { events: handle.events(), handle, config }
        });
        let id = engine.handle.submit(prepared.request).map_err(|err| EngineError::invalid(err.to_string()))?;
        Ok(RunningJob { id, placement: prepared.placement, settings })
    }

    /// Handles one engine event; events of jobs other than the running one are stale and ignored.
    pub fn handle_event(&mut self, event: Event) {
        let current = self.job.as_ref().map(|job| job.id);
        match event {
            Event::Loading { component, bytes_done, bytes_total } => {
                let megabytes = |bytes: u64| bytes as f64 / 1e6;
                let line = format!(
                    "engine: loading {component} ({:.0} of {:.0} MB)",
                    megabytes(bytes_done),
                    megabytes(bytes_total)
                );
                self.shared.board.lock().engine = line;
            }
            Event::Warning(message) => self.shared.board.lock().engine = format!("engine: {message}"),
            Event::Queued { job, position } if Some(job) == current => {
                self.set_phase(format!("queued ({position} ahead)"), 0.0);
            }
            Event::Encoding { job } if Some(job) == current => {
                self.show_engine("running");
                self.set_phase("encoding the source and prompt".to_string(), 0.05);
            }
            Event::Step { job, k, n, eta } if Some(job) == current => {
                let fraction = 0.1 + 0.7 * k as f32 / n.max(1) as f32;
                self.set_phase(format!("diffusion step {k} of {n}, about {:.0} s left", eta.as_secs_f64()), fraction);
            }
            Event::Decoding { job, tile, tiles } if Some(job) == current => {
                self.set_phase(format!("decoding {tile} of {tiles}"), 0.8 + 0.2 * tile as f32 / tiles.max(1) as f32);
            }
            Event::Done { job, take } if Some(job) == current => self.finish(&take.audio),
            Event::Failed { job, error } if Some(job) == current => {
                self.job = None;
                self.fail(error);
            }
            Event::Cancelled { job } if Some(job) == current => {
                self.job = None;
                self.shared.board.lock().job = JobPhase::Idle;
            }
            _ => {}
        }
    }

    /// Ends the running job with the engine's 48 kHz `output`: it becomes the new, selected take.
    fn finish(&mut self, output: &Audio) {
        let Some(job) = self.job.take() else { return };
        match self.add_take(&job, output) {
            Ok(()) => {
                self.shared.board.lock().job = JobPhase::Idle;
                self.show_engine("ready");
            }
            Err(err) => self.fail(format!("the take could not be stored: {err}")),
        }
    }

    /// Stores a finished job as a new take (files, list entry), selects it and sends it to the audio thread.
    fn add_take(&mut self, job: &RunningJob, output: &Audio) -> Result<()> {
        let host = self
            .host
            .filter(|host| host.sample_rate == job.placement.region.sample_rate)
            .ok_or_else(|| EngineError::invalid("the host sample rate changed while the job ran: generate again"))?;
        let root = self.takes_root.clone().map_err(EngineError::invalid)?;
        let (model_audio, host_audio) = take_audio(output, &job.placement)?;
        let (id, dir) = {
            let state = self.shared.params.takes.read();
            (state.next_id, root.join(&state.project_id))
        };
        let (model_file, host_file, stored) = takes::export_take(&dir, id, &model_audio, &host_audio)?;
        let created_unix_s =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs());
        let meta = TakeMeta {
            id,
            created_unix_s,
            region: job.placement.region,
            summary: job.settings.summary(),
            seed: job.settings.seed,
            model_file,
            host_file,
        };
        let take = Arc::new(takes::playable(id, job.placement.region, &stored, host.channels));
        self.library.insert(take.clone());
        let evicted = self.shared.params.takes.update(|state| state.push(meta));
        self.takes.send(Some(take));
        for old in evicted {
            self.library.remove(old.id);
            takes::delete_take_files(&old)?;
        }
        Ok(())
    }

    /// Shows the engine's `state` in the status line with its settings and resident memory.
    fn show_engine(&self, state: &str) {
        if let Some(engine) = &self.engine {
            self.shared.board.lock().engine = status_line(state, &engine.config, Some(&engine.handle.stats()));
        }
    }

    /// Reads the engine settings again (environment over settings file); a started engine is replaced at the
    /// next job, so a running job finishes on the engine it started on.
    fn reload_settings(&mut self) {
        self.engine_config = settings::engine_config().map_err(reason);
        self.engine_stale = self.engine.is_some();
        self.shared.board.lock().engine = match &self.engine_config {
            Ok(_) => "engine: settings saved; they apply from the next Generate".to_string(),
            Err(err) => format!("engine: {err}"),
        };
    }

    fn select(&mut self, id: Option<u64>) -> Result<()> {
        let Some(id) = id else {
            self.shared.params.takes.update(|state| state.selected = None);
            self.takes.send(None);
            return Ok(());
        };
        let host = self.host.ok_or_else(|| EngineError::invalid("the host has not activated Retake yet"))?;
        let meta = self.shared.params.takes.read().get(id).cloned();
        let meta = meta.ok_or_else(|| EngineError::invalid(format!("there is no take {id}")))?;
        let take = self.library.get(&meta, host.sample_rate, host.channels);
        self.publish_problems();
        let take = take.map_err(|problem| EngineError::invalid(format!("take {id} cannot play: {problem}")))?;
        self.shared.params.takes.update(|state| state.selected = Some(id));
        self.takes.send(Some(take));
        Ok(())
    }

    fn delete(&mut self, id: u64) -> Result<()> {
        let removed = self.shared.params.takes.update(|state| {
            let was_selected = state.selected == Some(id);
            state.remove(id).map(|take| (take, was_selected))
        });
        let Some((removed, was_selected)) = removed else { return Ok(()) };
        self.library.remove(id);
        self.publish_problems();
        if was_selected {
            self.takes.send(None);
        }
        takes::delete_take_files(&removed)
    }

    /// After a state restore or a host change: reloads every take from its files (reporting the ones that
    /// cannot play) and plays the selected take.
    fn sync_takes(&mut self) {
        let Some(host) = self.host else { return };
        let state = self.shared.params.takes.read().clone();
        self.library.clear();
        self.library.check_all(&state, host.sample_rate, host.channels);
        self.publish_problems();
        let selected = state.selected.and_then(|id| state.get(id));
        let take = selected.and_then(|meta| self.library.get(meta, host.sample_rate, host.channels).ok());
        self.takes.send(take);
    }

    fn publish_problems(&self) {
        self.shared.board.lock().take_problems =
            self.library.problems().iter().map(|(id, problem)| (*id, problem.to_string())).collect();
    }
}

/// Starts the plugin's worker on its own thread: take files under [`takes::takes_root`], engine from
/// [`settings::engine_config`].
pub fn spawn_worker(
    shared: Arc<Shared>,
    commands: Receiver<Command>,
    takes: TakeSender,
) -> std::io::Result<JoinHandle<()>> {
    let root = takes::takes_root().map_err(reason);
    let engine = settings::engine_config().map_err(reason);
    Worker::new(shared, commands, takes, root, engine).spawn()
}

/// The message of a set-up error, without the "invalid input" prefix that reporting it at a job adds again.
fn reason(err: EngineError) -> String {
    match err {
        EngineError::InvalidInput(message) => message,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::CaptureStore;
    use crate::params::TaskMode;
    use crate::playback::{take_channel, Player};
    use crate::region::Region;
    use crate::transport::TransportSnapshot;
    use crossbeam::channel::{unbounded, Sender};
    use retake_engine::model_source::ModelSource;
    use std::time::Instant;

    const RATE: u32 = 44_100;

    struct Harness {
        shared: Arc<Shared>,
        worker: Worker,
        player: Player,
        root: PathBuf,
        _commands: Sender<Command>,
    }

    impl Drop for Harness {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }

    fn harness(name: &str) -> Harness {
        let root = std::env::temp_dir().join(format!("retake-worker-test-{name}-{}", std::process::id()));
        let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny-acestep");
        let config = EngineConfig { model: ModelSource::Dir(fixture), ..EngineConfig::default() };
        let shared = Arc::new(Shared::default());
        let (commands, receiver) = unbounded();
        let (sender, mut player) = take_channel();
        player.set_sample_rate(RATE);
        let worker = Worker::new(shared.clone(), receiver, sender, Ok(root.clone()), Ok(config));
        Harness { shared, worker, player, root, _commands: commands }
    }

    fn running_job(region: Region) -> RunningJob {
        let settings = JobSettings {
            mode: TaskMode::Repaint,
            strength: 1.0,
            seed: 5,
            key: None,
            caption: "test".into(),
            lyrics: String::new(),
            xfade_ms: 0.0,
        };
        RunningJob { id: JobId(1), placement: Placement { region, source_start: 0 }, settings }
    }

    /// Plays one 64-frame block of silence at `position` and returns the left channel.
    fn play(player: &mut Player, position: i64) -> Vec<f32> {
        let mut block = vec![0.0f32; 64];
        let mut audio: [&mut [f32]; 1] = [&mut block];
        player.process(&mut audio, Some(position), true, 0);
        block
    }

    #[test]
    fn finished_job_becomes_the_selected_take_with_files_and_plays() {
        let mut h = harness("finish");
        h.worker.handle_command(Command::Activated { sample_rate: RATE, channels: 2 });
        let region = Region { start: RATE as i64, end: 2 * RATE as i64, sample_rate: RATE };
        h.worker.job = Some(running_job(region));
        h.worker.finish(&Audio::new(48_000, vec![vec![0.25; 2 * 48_000]; 2]));
        assert_eq!(h.shared.board.lock().error, None);
        let state = h.shared.params.takes.read().clone();
        assert_eq!((state.takes.len(), state.selected), (1, Some(0)));
        let take = &state.takes[0];
        assert_eq!((take.region, take.seed), (region, 5));
        assert!(take.model_file.path.starts_with(h.root.join(&state.project_id)));
        assert!(take.host_file.path.exists() && take.model_file.path.exists());
        let played = play(&mut h.player, RATE as i64 + 10_000);
        assert_eq!(h.player.active_id(), Some(0));
        assert!(played.iter().all(|&x| (x - 0.25).abs() < 1e-3));

        h.worker.handle_command(Command::Delete(0));
        assert!(h.shared.params.takes.read().takes.is_empty());
        assert!(!take.host_file.path.exists());
        play(&mut h.player, 0);
        assert_eq!(h.player.active_id(), None);
    }

    #[test]
    fn generate_before_activation_reports_why() {
        let mut h = harness("inactive");
        h.worker.handle_command(Command::Generate);
        let error = h.shared.board.lock().error.clone().unwrap();
        assert!(error.contains("has not activated Retake"), "{error}");
        assert_eq!(h.shared.board.lock().job, JobPhase::Idle);
    }

    #[test]
    fn unusable_engine_settings_are_reported_at_generate_and_start_no_engine() {
        let mut h = harness("settings");
        h.worker.engine_config = Err("engine device: `gpu` is not a device".to_string());
        h.worker.handle_command(Command::Activated { sample_rate: RATE, channels: 1 });
        let capture = Arc::new(CaptureStore::new(1, RATE, 10.0));
        capture.write(0, &[vec![0.1f32; 4 * RATE as usize]]);
        *h.shared.capture.write() = Some(capture);
        h.shared.transport.publish(&TransportSnapshot { loop_range: Some((0, RATE as i64)), ..Default::default() });
        h.worker.handle_command(Command::Generate);
        let board = h.shared.board.lock().clone();
        assert_eq!(board.error.as_deref(), Some("invalid input: engine device: `gpu` is not a device"));
        assert_eq!(board.job, JobPhase::Idle);
        assert!(h.worker.engine.is_none() && h.worker.job.is_none());
    }

    #[test]
    fn restored_state_with_a_missing_file_is_reported_and_the_rest_keeps_working() {
        let mut h = harness("restore");
        h.worker.handle_command(Command::Activated { sample_rate: RATE, channels: 2 });
        let region = Region { start: 0, end: RATE as i64, sample_rate: RATE };
        h.worker.job = Some(running_job(region));
        h.worker.finish(&Audio::new(48_000, vec![vec![0.5; 48_000]; 2]));
        let saved = h.shared.params.takes.read().clone();
        std::fs::remove_file(&saved.takes[0].host_file.path).unwrap();
        use nih_plug::params::persist::PersistentField;
        h.shared.params.takes.set(saved);
        h.worker.poll();
        let problem = h.shared.board.lock().take_problems.get(&0).cloned().unwrap();
        assert!(problem.contains("is missing"), "{problem}");
        play(&mut h.player, 0);
        assert_eq!(h.player.active_id(), None, "a take that cannot load does not play");
    }

    /// The whole path on the tiny fixture model: capture, Generate (the `generate` rising edge), the engine
    /// job, the take in the list and playing in place.
    #[test]
    fn generate_runs_the_engine_and_the_result_plays_in_place() {
        let mut h = harness("engine");
        h.worker.handle_command(Command::Activated { sample_rate: RATE, channels: 2 });
        let capture = Arc::new(CaptureStore::new(2, RATE, 60.0));
        let tone: Vec<f32> = (0..6 * RATE as usize).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
        capture.write(0, &[tone.clone(), tone]);
        *h.shared.capture.write() = Some(capture);
        // `follow_loop` is on by default: the host loop 2..4 s is the region.
        let host_loop = Some((2 * RATE as i64, 4 * RATE as i64));
        h.shared.transport.publish(&TransportSnapshot {
            tempo: Some(120.0),
            loop_range: host_loop,
            ..Default::default()
        });
        h.shared.request_generate();
        h.worker.poll();
        assert_eq!(h.shared.board.lock().error, None);
        let events = h.worker.engine.as_ref().unwrap().events.clone();
        let deadline = Instant::now() + Duration::from_secs(300);
        while h.worker.job.is_some() && Instant::now() < deadline {
            if let Ok(event) = events.recv_timeout(Duration::from_millis(100)) {
                h.worker.handle_event(event);
            }
        }
        assert_eq!(h.shared.board.lock().error, None);
        let state = h.shared.params.takes.read().clone();
        assert_eq!(state.takes.len(), 1);
        assert_eq!(state.takes[0].region, Region { start: 2 * RATE as i64, end: 4 * RATE as i64, sample_rate: RATE });
        play(&mut h.player, 3 * RATE as i64);
        assert_eq!(h.player.active_id(), Some(state.takes[0].id));
    }
}
