//! The job worker: a thread of its own (never the audio thread) that starts jobs on Generate, drives the
//! ACE-Step engine (`retake_engine::runtime`), turns finished results into takes and keeps the takes list,
//! its files and the playing take in step with the host.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam::channel::{never, select, Receiver};

use retake_engine::audio::{read_wav, resample, Audio, MODEL_SAMPLE_RATE};
use retake_engine::pipeline::timbre::checked_reference;
use retake_engine::runtime::{panic_message, EngineConfig, EngineHandle, Event, JobId};
use retake_engine::EngineError;

use crate::engine_share::SHARED_ENGINE;
use crate::engine_status::status_line;
use crate::error::{PluginError, Result};
use crate::jobs::{prepare_job, take_audio, JobSettings, Placement};
use crate::params::Reference;
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
        /// The activation's number, reported back through [`Shared::mark_takes_ready`] once its takes are loaded.
        serial: u64,
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

/// This instance's client of the engine all instances share (src/engine_share.rs), connected at the first job.
struct EngineLink {
    handle: EngineHandle,
    events: Receiver<Event>,
    /// The settings this instance's jobs run with.
    config: EngineConfig,
}

/// The job worker's state.
pub struct Worker {
    shared: Arc<Shared>,
    commands: Receiver<Command>,
    takes: TakeSender,
    library: TakeLibrary,
    /// Where take folders are, or why there is no such place.
    takes_root: std::result::Result<PathBuf, Arc<PluginError>>,
    /// The engine to start, or why the settings do not describe one.
    engine_config: std::result::Result<EngineConfig, Arc<PluginError>>,
    engine: Option<EngineLink>,
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
        takes_root: Result<PathBuf>,
        engine_config: Result<EngineConfig>,
    ) -> Self {
        shared.board.lock().engine = match &engine_config {
            Ok(config) => status_line(
                "idle (the model loads on the first Generate, once for every Retake in this host)",
                config,
                None,
            ),
            Err(err) => format!("engine: {err}"),
        };
        Self {
            shared,
            commands,
            takes,
            library: TakeLibrary::default(),
            takes_root: takes_root.map_err(Arc::new),
            engine_config: engine_config.map_err(Arc::new),
            engine: None,
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
    /// Dropping the worker cancels its jobs (a running one after its current step); the last instance's worker also
    /// stops the shared engine.
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
        self.guarded(Worker::catch_up_restore);
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

    /// Shows the running job's stage (the time left is set by the diffusion steps, and cleared here).
    fn set_phase(&self, label: String, fraction: f32) {
        let mut board = self.shared.board.lock();
        board.job = JobPhase::Running { label, fraction };
        board.time_left = None;
    }

    /// Handles one command.
    pub fn handle_command(&mut self, command: Command) {
        self.catch_up_restore();
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
            Command::Activated { sample_rate, channels, serial } => {
                let host = HostConfig { sample_rate, channels };
                if self.host != Some(host) {
                    self.host = Some(host);
                    self.sync_takes();
                }
                self.shared.mark_takes_ready(serial);
                Ok(())
            }
            Command::Shutdown => Ok(()),
        };
        if let Err(err) = outcome {
            self.fail(err.to_string());
        }
    }

    /// After the host restored the takes list: leaves out the takes whose files are not in the project's take
    /// folder, says on the status line what the restore left out, and loads the takes. Runs before every
    /// command and engine event, so no file named by an unchecked list is ever opened or deleted.
    fn catch_up_restore(&mut self) {
        let restores = self.shared.params.takes.restores();
        if restores == self.restores_seen {
            return;
        }
        self.restores_seen = restores;
        let mut dropped = self.shared.params.takes.take_dropped();
        if let Ok(folder) = self.take_folder() {
            dropped.extend(self.shared.params.takes.update(|state| state.retain_in_folder(&folder)));
        }
        if !dropped.is_empty() {
            self.shared.board.lock().error =
                Some(format!("the project's takes list was restored in part: {}", dropped.join("; ")));
        }
        self.sync_takes();
    }

    /// This project's take folder: where its takes are written, and the only place take files are read from
    /// or deleted.
    fn take_folder(&self) -> Result<PathBuf> {
        let root = self.takes_root.as_ref().map_err(|err| PluginError::Setup(err.clone()))?;
        takes::project_folder(root, &self.shared.params.takes.read().project_id)
    }

    fn generate(&mut self) {
        if self.job.is_some() {
            self.shared.board.lock().error = Some(PluginError::JobRunning.to_string());
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
        let host = self.host.ok_or(PluginError::NotActivated)?;
        // A job whose take could not get an id would be lost work.
        self.shared.params.takes.read().new_id()?;
        let capture = self.shared.capture().ok_or(PluginError::NothingCaptured)?;
        let transport = self.shared.transport.snapshot();
        let params = &self.shared.params;
        let region = select_region(
            params.follow_loop.value(),
            transport.loop_range,
            params.start.value(),
            params.end.value(),
            host.sample_rate,
        )?;
        let config = self.engine_config.clone().map_err(PluginError::Setup)?;
        let settings = JobSettings::from_params(params, config.model.variant);
        let references = self.reference_audio()?;
        let prepared = prepare_job(&capture, region, &settings, &transport, references)?;
        let engine = self.engine.get_or_insert_with(|| {
            let handle = SHARED_ENGINE.connect(config.clone());
            EngineLink { events: handle.events(), handle, config }
        });
        let id = engine.handle.submit(prepared.request).map_err(|err| PluginError::Submit(err.to_string()))?;
        Ok(RunningJob { id, placement: prepared.placement, settings })
    }

    /// The timbre reference the parameters name, read and checked as the engine will (48 kHz, long enough, not
    /// silent): none, one of this instance's takes (its 48 kHz file) or a file. A take no longer listed or a file
    /// that cannot be used stops the job with a line saying which and what to do.
    fn reference_audio(&self) -> Result<Vec<Audio>> {
        let path = match self.shared.params.reference.read().clone() {
            Reference::None => return Ok(Vec::new()),
            Reference::Take(id) => {
                let take = self.shared.params.takes.read().get(id).map(|take| take.model_file.path.clone());
                take.ok_or(PluginError::ReferenceTakeGone(id))?
            }
            Reference::File(path) => path,
        };
        let unusable = |err: EngineError| PluginError::Reference { path: path.clone(), message: err.to_string() };
        let audio = read_wav(&path).and_then(|audio| resample(&audio, MODEL_SAMPLE_RATE)).map_err(unusable)?;
        checked_reference(0, &audio).map_err(unusable)?;
        Ok(vec![audio])
    }

    /// Handles one engine event; events of jobs other than the running one are stale and ignored.
    pub fn handle_event(&mut self, event: Event) {
        self.catch_up_restore();
        let current = self.job.as_ref().map(|job| job.id);
        match event {
            Event::Loading { component, bytes_done, bytes_total } => {
                let megabytes = |bytes: u64| bytes as f64 / 1e6;
                let line = format!(
                    "engine: loading {component} ({:.0} of {:.0} MB)",
                    megabytes(bytes_done),
                    megabytes(bytes_total)
                );
                if self.job.is_some() {
                    let done = bytes_done as f32 / bytes_total.max(1) as f32;
                    self.set_phase(line.replacen("engine: loading", "loading the model:", 1), 0.05 * done.min(1.0));
                }
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
                self.set_phase(format!("diffusion step {k} of {n}"), fraction);
                self.shared.board.lock().time_left = Some(eta);
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

    /// Stores a finished job as a new take (files, list entry), selects it and sends it to the audio thread. The
    /// files of the oldest takes the list lets go of to make room are deleted before the new take can play, so
    /// whoever hears it never finds them.
    fn add_take(&mut self, job: &RunningJob, output: &Audio) -> Result<()> {
        let host = self
            .host
            .filter(|host| host.sample_rate == job.placement.region.sample_rate)
            .ok_or(PluginError::RateChangedDuringJob)?;
        let dir = self.take_folder()?;
        let id = self.shared.params.takes.read().new_id()?;
        let (model_audio, host_audio) = take_audio(output, &job.placement)?;
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
        self.delete_evicted(&evicted);
        self.takes.send(Some(take));
        Ok(())
    }

    /// Deletes the files of takes the list let go of; files Retake may not delete stay, and the status line
    /// says so.
    fn delete_evicted(&mut self, evicted: &[TakeMeta]) {
        for old in evicted {
            self.library.remove(old.id);
            if let Err(err) = self.take_folder().and_then(|folder| takes::delete_take_files(old, &folder)) {
                self.shared.board.lock().error =
                    Some(format!("take {} left the list, but its files stay: {err}", old.id));
            }
        }
    }

    /// Shows the engine's `state` in the status line with its settings and resident memory.
    fn show_engine(&self, state: &str) {
        if let Some(engine) = &self.engine {
            self.shared.board.lock().engine = status_line(state, &engine.config, Some(&engine.handle.stats()));
        }
    }

    /// Reads the engine settings again (environment over settings file). They apply from the next job: a job
    /// already submitted runs with the settings it was submitted with.
    fn reload_settings(&mut self) {
        self.engine_config = settings::engine_config().map_err(Arc::new);
        if let (Some(engine), Ok(config)) = (&mut self.engine, &self.engine_config) {
            engine.handle.set_config(config.clone());
            engine.config = config.clone();
        }
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
        let host = self.host.ok_or(PluginError::NotActivated)?;
        let folder = self.take_folder()?;
        let meta = self.shared.params.takes.read().get(id).cloned();
        let meta = meta.ok_or(PluginError::NoSuchTake(id))?;
        let take = self.library.get(&meta, &folder, host.sample_rate, host.channels);
        self.publish_problems();
        let take = take.map_err(|problem| PluginError::TakeCannotPlay { id, problem })?;
        self.shared.params.takes.update(|state| state.selected = Some(id));
        self.takes.send(Some(take));
        Ok(())
    }

    fn delete(&mut self, id: u64) -> Result<()> {
        let folder = self.take_folder()?;
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
        takes::delete_take_files(&removed, &folder)
    }

    /// After a state restore or a host change: reloads every take from its files (reporting the ones that
    /// cannot play) and plays the selected take.
    fn sync_takes(&mut self) {
        let Some(host) = self.host else { return };
        self.library.clear();
        let folder = match self.take_folder() {
            Ok(folder) => folder,
            Err(err) => {
                self.takes.send(None);
                self.shared.board.lock().error = Some(format!("the takes cannot be loaded: {err}"));
                return;
            }
        };
        let state = self.shared.params.takes.read().clone();
        self.library.check_all(&state, &folder, host.sample_rate, host.channels);
        self.publish_problems();
        let selected = state.selected.and_then(|id| state.get(id));
        let take = selected.and_then(|meta| self.library.get(meta, &folder, host.sample_rate, host.channels).ok());
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
    Worker::new(shared, commands, takes, takes::takes_root(), settings::engine_config()).spawn()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::CaptureStore;
    use crate::params::TaskMode;
    use crate::playback::{take_channel, Player};
    use crate::region::Region;
    use crate::takes::{SavedTakes, TakesState, MAX_TAKES};
    use crate::transport::TransportSnapshot;
    use crossbeam::channel::{unbounded, Sender};
    use nih_plug::params::persist::PersistentField;
    use nih_plug::prelude::{Enum, Param};
    use retake_engine::model::variant::Variant;
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
        let config = EngineConfig { model: ModelSource::Dir(fixture).into(), ..EngineConfig::default() };
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
            steps: 8,
            shift: 3.0,
            cfg_scale: 1.0,
            cover_noise: 0.0,
            language: "unknown".into(),
            variant: Variant::Turbo,
        };
        RunningJob { id: JobId(1), placement: Placement { region, source_start: 0 }, settings }
    }

    #[test]
    fn the_running_job_shows_its_stage_with_the_engines_time_left_only_while_steps_run() {
        let mut h = harness("stages");
        h.worker.job = Some(running_job(Region { start: 0, end: RATE as i64, sample_rate: RATE }));
        let stage = |h: &Harness| {
            let board = h.shared.board.lock();
            match &board.job {
                JobPhase::Running { label, .. } => (label.clone(), board.time_left),
                JobPhase::Idle => panic!("no job shown"),
            }
        };
        let (component, bytes_done, bytes_total) = ("dit".to_string(), 3_000_000, 12_000_000);
        h.worker.handle_event(Event::Loading { component, bytes_done, bytes_total });
        assert_eq!(stage(&h), ("loading the model: dit (3 of 12 MB)".to_string(), None));
        h.worker.handle_event(Event::Step { job: JobId(1), k: 3, n: 8, eta: Duration::from_secs(5) });
        assert_eq!(stage(&h), ("diffusion step 3 of 8".to_string(), Some(Duration::from_secs(5))));
        h.worker.handle_event(Event::Decoding { job: JobId(1), tile: 1, tiles: 2 });
        assert_eq!(stage(&h), ("decoding 1 of 2".to_string(), None));
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
        h.worker.handle_command(Command::Activated { sample_rate: RATE, channels: 2, serial: 1 });
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
        let unusable = settings::EngineSettings { device: "gpu".into(), ..Default::default() };
        h.worker.engine_config = unusable.engine_config().map_err(Arc::new);
        h.worker.handle_command(Command::Activated { sample_rate: RATE, channels: 1, serial: 1 });
        let capture = Arc::new(CaptureStore::new(1, RATE, 10.0));
        capture.write(0, &[vec![0.1f32; 4 * RATE as usize]]);
        *h.shared.capture.write() = Some(capture);
        h.shared.transport.publish(&TransportSnapshot { loop_range: Some((0, RATE as i64)), ..Default::default() });
        h.worker.handle_command(Command::Generate);
        let board = h.shared.board.lock().clone();
        // The device is the musician's own setting, a plugin condition: named, without the engine's "invalid
        // input:" prefix.
        let error = board.error.unwrap();
        assert!(error.starts_with("engine device: `gpu` is not a device; use cpu, cuda"), "{error}");
        assert_eq!(board.job, JobPhase::Idle);
        assert!(h.worker.engine.is_none() && h.worker.job.is_none());
    }

    #[test]
    fn restored_state_with_a_missing_file_is_reported_and_the_rest_keeps_working() {
        let mut h = harness("restore");
        h.worker.handle_command(Command::Activated { sample_rate: RATE, channels: 2, serial: 1 });
        let region = Region { start: 0, end: RATE as i64, sample_rate: RATE };
        h.worker.job = Some(running_job(region));
        h.worker.finish(&Audio::new(48_000, vec![vec![0.5; 48_000]; 2]));
        let saved = h.shared.params.takes.read().clone();
        std::fs::remove_file(&saved.takes[0].host_file.path).unwrap();
        h.shared.params.takes.set(SavedTakes::from(saved));
        h.worker.poll();
        let problem = h.shared.board.lock().take_problems.get(&0).cloned().unwrap();
        assert!(problem.contains("is missing"), "{problem}");
        play(&mut h.player, 0);
        assert_eq!(h.player.active_id(), None, "a take that cannot load does not play");
    }

    #[test]
    fn an_activation_after_a_restore_is_answered_once_the_selected_take_is_handed_over() {
        let mut h = harness("activation");
        h.worker.handle_command(Command::Activated { sample_rate: RATE, channels: 2, serial: 1 });
        make_take(&mut h, 1);
        let saved = h.shared.params.takes.read().clone();
        h.worker.takes.send(None);
        play(&mut h.player, 0);
        assert_eq!(h.player.active_id(), None);
        // The host restores a project, then activates the plugin.
        restore(&h, &serde_json::to_value(&saved).unwrap());
        assert!(!h.shared.wait_for_takes(2, Duration::ZERO));
        h.worker.handle_command(Command::Activated { sample_rate: RATE, channels: 2, serial: 2 });
        assert!(h.shared.wait_for_takes(2, Duration::ZERO), "activation 2 is answered");
        play(&mut h.player, 0);
        assert_eq!(h.player.active_id(), saved.selected, "the selected take plays from the first block");
    }

    /// Restores `list` (JSON of a saved takes list) the way nice-plug does, from its text.
    fn restore(h: &Harness, list: &serde_json::Value) {
        let saved: SavedTakes = serde_json::from_str(&list.to_string()).unwrap();
        h.shared.params.takes.set(saved);
    }

    /// Finishes a one-second job at `start_s` as a new take.
    fn make_take(h: &mut Harness, start_s: i64) {
        let region = Region { start: start_s * RATE as i64, end: (start_s + 1) * RATE as i64, sample_rate: RATE };
        h.worker.job = Some(running_job(region));
        h.worker.finish(&Audio::new(48_000, vec![vec![0.25; 48_000]; 2]));
    }

    #[test]
    fn a_restored_list_naming_files_elsewhere_never_deletes_them() {
        let mut h = harness("hostile");
        h.worker.handle_command(Command::Activated { sample_rate: RATE, channels: 2, serial: 1 });
        let victims = h.root.join("elsewhere");
        std::fs::create_dir_all(&victims).unwrap();
        let project_id = h.shared.params.takes.read().project_id.clone();
        let takes: Vec<serde_json::Value> = (0..MAX_TAKES as u64)
            .map(|id| {
                let path = victims.join(format!("song-{id}.wav"));
                std::fs::write(&path, b"a musician's file").unwrap();
                let file = serde_json::json!({ "path": path, "sample_rate": RATE, "hash": 0 });
                serde_json::json!({
                    "id": id, "created_unix_s": 0, "region": { "start": 0, "end": RATE, "sample_rate": RATE },
                    "summary": "", "seed": 0, "model_file": file, "host_file": file,
                })
            })
            .collect();
        let list = serde_json::json!({ "project_id": project_id, "next_id": 16, "takes": takes, "selected": 0 });
        restore(&h, &list);
        // Delete arrives before the worker polled the restore: the list is checked first all the same.
        h.worker.handle_command(Command::Delete(0));
        let error = h.shared.board.lock().error.clone().unwrap();
        assert!(
            error.starts_with("the project's takes list was restored in part: take 0 was left out: its file"),
            "{error}"
        );
        assert_eq!(error.matches("was left out").count(), MAX_TAKES, "{error}");
        assert!(h.shared.params.takes.read().takes.is_empty());
        for start_s in 0..=MAX_TAKES as i64 {
            make_take(&mut h, start_s);
        }
        let state = h.shared.params.takes.read().clone();
        assert_eq!(state.takes.len(), MAX_TAKES);
        assert_eq!(state.takes[0].id, 17, "ids continue above the saved next_id");
        for id in 0..MAX_TAKES {
            let path = victims.join(format!("song-{id}.wav"));
            assert_eq!(std::fs::read(&path).unwrap(), b"a musician's file", "{}", path.display());
        }
        let own = h.root.join(&project_id);
        assert!(!own.join("take-016-48k.wav").exists(), "the oldest own take is evicted with its files");
        assert!(own.join("take-017-48k.wav").exists());
    }

    #[test]
    fn a_restored_project_id_naming_another_folder_is_replaced() {
        let mut h = harness("escape");
        h.worker.handle_command(Command::Activated { sample_rate: RATE, channels: 2, serial: 1 });
        restore(&h, &serde_json::json!({ "project_id": "../../escape", "next_id": 0, "takes": [] }));
        h.worker.poll();
        make_take(&mut h, 0);
        let state = h.shared.params.takes.read().clone();
        assert!(takes::is_project_id(&state.project_id), "{}", state.project_id);
        assert!(state.takes[0].host_file.path.starts_with(h.root.join(&state.project_id)));
        assert!(!h.root.join("../../escape").exists());
        let error = h.shared.board.lock().error.clone().unwrap();
        assert!(error.contains("the saved project id \"../../escape\" is not one Retake makes"), "{error}");
    }

    #[test]
    fn generate_is_refused_when_take_ids_are_used_up() {
        let mut h = harness("ids");
        h.worker.handle_command(Command::Activated { sample_rate: RATE, channels: 1, serial: 1 });
        let project_id = h.shared.params.takes.read().project_id.clone();
        h.shared.params.takes.set(SavedTakes::from(TakesState { project_id, next_id: u64::MAX, ..Default::default() }));
        h.worker.handle_command(Command::Generate);
        let error = h.shared.board.lock().error.clone().unwrap();
        assert!(error.starts_with("this project's takes list has used up its take ids"), "{error}");
        assert!(h.worker.engine.is_none() && h.worker.job.is_none());
    }

    /// Activates the worker in stereo with 6 s of a tone captured and the host loop at 2..4 s (the region, as
    /// `follow_loop` is on by default).
    fn activate_with_capture(h: &mut Harness) {
        h.worker.handle_command(Command::Activated { sample_rate: RATE, channels: 2, serial: 1 });
        let capture = Arc::new(CaptureStore::new(2, RATE, 60.0));
        let tone: Vec<f32> = (0..6 * RATE as usize).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
        capture.write(0, &[tone.clone(), tone]);
        *h.shared.capture.write() = Some(capture);
        let host_loop = Some((2 * RATE as i64, 4 * RATE as i64));
        h.shared.transport.publish(&TransportSnapshot {
            tempo: Some(120.0),
            loop_range: host_loop,
            ..Default::default()
        });
    }

    /// Presses Generate (the `generate` rising edge) and serves the engine's events until the job ends.
    fn generate_and_wait(h: &mut Harness) {
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
    }

    /// The whole path on the tiny fixture model: capture, Generate, the engine job, the take in the list and
    /// playing in place.
    #[test]
    fn generate_runs_the_engine_and_the_result_plays_in_place() {
        let mut h = harness("engine");
        activate_with_capture(&mut h);
        generate_and_wait(&mut h);
        assert_eq!(h.shared.board.lock().error, None);
        let state = h.shared.params.takes.read().clone();
        assert_eq!(state.takes.len(), 1);
        assert_eq!(state.takes[0].region, Region { start: 2 * RATE as i64, end: 4 * RATE as i64, sample_rate: RATE });
        play(&mut h.player, 3 * RATE as i64);
        assert_eq!(h.player.active_id(), Some(state.takes[0].id));
    }

    #[test]
    fn text2music_fills_the_region_with_a_take_on_the_engine() {
        let mut h = harness("text2music");
        activate_with_capture(&mut h);
        set_mode(&h, TaskMode::Text2Music);
        generate_and_wait(&mut h);
        assert_eq!(h.shared.board.lock().error, None);
        let state = h.shared.params.takes.read().clone();
        assert_eq!(state.takes.len(), 1);
        let take = &state.takes[0];
        assert_eq!(take.region, Region { start: 2 * RATE as i64, end: 4 * RATE as i64, sample_rate: RATE });
        assert!(take.summary.starts_with("turbo · text2music · "), "{}", take.summary);
        play(&mut h.player, 3 * RATE as i64);
        assert_eq!(h.player.active_id(), Some(take.id));
    }

    /// Sets the Mode parameter as the host does.
    fn set_mode(h: &Harness, mode: TaskMode) {
        let ptr = h.shared.params.mode.as_ptr();
        // SAFETY: `ptr` points into the shared parameters, which outlive this call.
        unsafe { ptr._internal_set_normalized_value(ptr.preview_normalized(mode.to_index() as f32)) };
    }

    #[test]
    fn a_reference_file_that_is_missing_or_a_take_no_longer_listed_stops_the_job_saying_so() {
        let mut h = harness("reference");
        activate_with_capture(&mut h);
        let missing = h.root.join("gone.wav");
        *h.shared.params.reference.write() = Reference::File(missing.clone());
        h.worker.handle_command(Command::Generate);
        let error = h.shared.board.lock().error.clone().unwrap();
        let expected = format!("the timbre reference `{}` cannot be used: ", missing.display());
        assert!(error.starts_with(&expected), "{error}");
        assert!(error.ends_with("pick another reference in the editor's Timbre reference row, or None"), "{error}");
        assert!(h.worker.engine.is_none() && h.worker.job.is_none());
        assert_eq!(h.shared.board.lock().job, JobPhase::Idle);

        *h.shared.params.reference.write() = Reference::Take(7);
        h.worker.handle_command(Command::Generate);
        let error = h.shared.board.lock().error.clone().unwrap();
        assert!(error.starts_with("the timbre reference is take 7, which is no longer in the takes list"), "{error}");
    }

    #[test]
    fn a_take_as_timbre_reference_reaches_the_engine_and_makes_a_take() {
        let mut h = harness("reference-take");
        activate_with_capture(&mut h);
        // A 2 s take of a tone: long and loud enough for a reference.
        h.worker.job = Some(running_job(Region { start: 0, end: 2 * RATE as i64, sample_rate: RATE }));
        let tone: Vec<f32> = (0..2 * 48_000).map(|i| (i as f32 * 0.03).sin() * 0.4).collect();
        h.worker.finish(&Audio::new(48_000, vec![tone.clone(), tone]));
        *h.shared.params.reference.write() = Reference::Take(0);
        assert_eq!(h.worker.reference_audio().unwrap().len(), 1);
        generate_and_wait(&mut h);
        assert_eq!(h.shared.board.lock().error, None);
        assert_eq!(h.shared.params.takes.read().takes.len(), 2);
    }

    #[test]
    fn a_lora_file_that_is_not_an_adapter_fails_the_job_naming_the_file() {
        let mut h = harness("lora");
        let bad = h.root.join("not-a-lora.safetensors");
        std::fs::create_dir_all(&h.root).unwrap();
        std::fs::write(&bad, b"not safetensors").unwrap();
        if let Ok(config) = &mut h.worker.engine_config {
            config.loras = vec![retake_engine::model::lora::LoraSpec { path: bad.clone(), scale: 1.0 }];
        }
        activate_with_capture(&mut h);
        generate_and_wait(&mut h);
        let error = h.shared.board.lock().error.clone().unwrap();
        assert!(error.contains(&bad.display().to_string()), "{error}");
        assert!(h.shared.params.takes.read().takes.is_empty());
        assert_eq!(h.shared.board.lock().job, JobPhase::Idle);
    }
}
