//! Takes: the persisted takes list, their WAV files under `$XDG_DATA_HOME/retake/takes/<project-id>/`, and
//! loading them back as playable audio at the host rate, reporting missing or altered files.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use nih_plug::params::persist::PersistentField;
use parking_lot::{RwLock, RwLockReadGuard};
use serde::{Deserialize, Serialize};

use retake_engine::audio::{self, Audio, WavFormat};
use retake_engine::{EngineError, Result};

use crate::playback::PlayableTake;
use crate::region::Region;

/// The takes list keeps at most this many; the oldest goes first.
pub const MAX_TAKES: usize = 16;

/// One take's audio file and the hash of its content as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakeFile {
    /// Absolute path of the 24-bit WAV.
    pub path: PathBuf,
    /// Its sample rate.
    pub sample_rate: u32,
    /// [`audio::content_hash`] of the audio as read back after writing.
    pub hash: u64,
}

/// Everything remembered about a take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TakeMeta {
    /// Unique within the project.
    pub id: u64,
    /// Creation time, seconds since the Unix epoch.
    pub created_unix_s: u64,
    /// Where it plays on the host timeline.
    pub region: Region,
    /// One line describing the request (task, strength, caption, key).
    pub summary: String,
    /// The seed it was generated with.
    pub seed: u64,
    /// The region at the model rate (48 kHz).
    pub model_file: TakeFile,
    /// The region at the host rate it was made at.
    pub host_file: TakeFile,
}

/// The persisted part of the takes list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TakesState {
    /// Names this plugin instance's take folder.
    pub project_id: String,
    /// The next take id to hand out.
    pub next_id: u64,
    /// Oldest first.
    pub takes: Vec<TakeMeta>,
    /// The take that plays.
    pub selected: Option<u64>,
}

impl TakesState {
    /// The take with `id`.
    pub fn get(&self, id: u64) -> Option<&TakeMeta> {
        self.takes.iter().find(|take| take.id == id)
    }

    /// Appends `take` and selects it; beyond [`MAX_TAKES`], removes and returns the oldest takes.
    pub fn push(&mut self, take: TakeMeta) -> Vec<TakeMeta> {
        self.selected = Some(take.id);
        self.next_id = self.next_id.max(take.id + 1);
        self.takes.push(take);
        let excess = self.takes.len().saturating_sub(MAX_TAKES);
        self.takes.drain(..excess).collect()
    }

    /// Removes the take with `id` (deselecting it) and returns it.
    pub fn remove(&mut self, id: u64) -> Option<TakeMeta> {
        let index = self.takes.iter().position(|take| take.id == id)?;
        if self.selected == Some(id) {
            self.selected = None;
        }
        Some(self.takes.remove(index))
    }
}

/// A fresh project id: 16 hex digits from the process's randomly keyed hasher, the time and the process id.
fn new_project_id() -> String {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    hasher.write_u128(now.as_nanos());
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

/// The `#[persist]` field holding [`TakesState`]; counts how often the host restored it, so the worker
/// knows when to load takes from disk.
#[derive(Debug)]
pub struct TakesField {
    state: RwLock<TakesState>,
    restores: AtomicU64,
}

impl Default for TakesField {
    fn default() -> Self {
        let state = TakesState { project_id: new_project_id(), ..TakesState::default() };
        Self { state: RwLock::new(state), restores: AtomicU64::new(0) }
    }
}

impl TakesField {
    /// Reads the state.
    pub fn read(&self) -> RwLockReadGuard<'_, TakesState> {
        self.state.read()
    }

    /// Changes the state.
    pub fn update<R>(&self, change: impl FnOnce(&mut TakesState) -> R) -> R {
        change(&mut self.state.write())
    }

    /// How many times the host has restored the field.
    pub fn restores(&self) -> u64 {
        self.restores.load(Ordering::Acquire)
    }
}

impl<'a> PersistentField<'a, TakesState> for TakesField {
    fn set(&self, new_value: TakesState) {
        *self.state.write() = new_value;
        self.restores.fetch_add(1, Ordering::Release);
    }

    fn map<F, R>(&self, f: F) -> R
    where
        F: Fn(&TakesState) -> R,
    {
        f(&self.state.read())
    }
}

/// `$XDG_DATA_HOME/retake/takes` (falling back to `~/.local/share/retake/takes`).
pub fn takes_root() -> Result<PathBuf> {
    let absolute = |name: &str| std::env::var_os(name).map(PathBuf::from).filter(|path| path.is_absolute());
    let data_home = absolute("XDG_DATA_HOME")
        .or_else(|| absolute("HOME").map(|home| home.join(".local/share")))
        .ok_or_else(|| {
            EngineError::invalid("cannot find a folder for take files: set XDG_DATA_HOME or HOME to an absolute path")
        })?;
    Ok(data_home.join("retake").join("takes"))
}

/// Writes `audio` as a 24-bit WAV at `path`, reads it back and returns its record and the audio as stored.
fn write_take_file(path: PathBuf, audio: &Audio) -> Result<(TakeFile, Audio)> {
    audio::write_wav(&path, audio, WavFormat::Int24)?;
    let stored = audio::read_wav(&path)?;
    Ok((TakeFile { hash: audio::content_hash(&stored), sample_rate: stored.sample_rate, path }, stored))
}

/// Writes take `id`'s audio into `dir` at the model rate and the host rate. Returns the two file records and
/// the host-rate audio exactly as stored (what plays now is what a reload will play).
pub fn export_take(
    dir: &Path,
    id: u64,
    model_audio: &Audio,
    host_audio: &Audio,
) -> Result<(TakeFile, TakeFile, Audio)> {
    let (model_file, _) = write_take_file(dir.join(format!("take-{id:03}-48k.wav")), model_audio)?;
    let host_name = format!("take-{id:03}-{}hz.wav", host_audio.sample_rate);
    let (host_file, stored) = write_take_file(dir.join(host_name), host_audio)?;
    Ok((model_file, host_file, stored))
}

/// Deletes a take's files; already missing files are fine.
pub fn delete_take_files(take: &TakeMeta) -> Result<()> {
    for file in [&take.model_file, &take.host_file] {
        match std::fs::remove_file(&file.path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                return Err(EngineError::Io { path: file.path.clone(), source: err });
            }
            _ => {}
        }
    }
    Ok(())
}

/// Why a take from the saved state cannot play.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TakeProblem {
    /// The file is gone.
    Missing(PathBuf),
    /// The file's content no longer matches the hash saved with it.
    Altered(PathBuf),
    /// The file could not be read or converted.
    Unreadable(String),
}

impl std::fmt::Display for TakeProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing(path) => write!(f, "file {} is missing", path.display()),
            Self::Altered(path) => write!(f, "file {} was changed since Retake wrote it", path.display()),
            Self::Unreadable(message) => f.write_str(message),
        }
    }
}

/// Reads `file` and checks it against its saved hash.
fn read_checked(file: &TakeFile) -> std::result::Result<Audio, TakeProblem> {
    if !file.path.exists() {
        return Err(TakeProblem::Missing(file.path.clone()));
    }
    let audio = audio::read_wav(&file.path).map_err(|err| TakeProblem::Unreadable(err.to_string()))?;
    if audio::content_hash(&audio) != file.hash {
        return Err(TakeProblem::Altered(file.path.clone()));
    }
    Ok(audio)
}

/// `frames` frames of `audio` from frame `start`, padded with silence where `audio` ends early.
pub fn excerpt(audio: &Audio, start: usize, frames: usize) -> Audio {
    let channels = audio
        .channels
        .iter()
        .map(|channel| {
            let available = channel.get(start..).unwrap_or(&[]);
            let mut samples = available[..available.len().min(frames)].to_vec();
            samples.resize(frames, 0.0);
            samples
        })
        .collect();
    Audio::new(audio.sample_rate, channels)
}

/// Turns host-rate audio into a take playing `region` with `channels` channels: mono is duplicated, stereo
/// averaged to mono for a mono host, and the length fitted to the region (cut or padded with silence).
pub fn playable(id: u64, region: Region, audio: &Audio, channels: usize) -> PlayableTake {
    let frames = region.frames();
    let sources = &audio.channels;
    let channels = match (channels, sources.len()) {
        (_, 0) => vec![vec![0.0; frames]; channels.max(1)],
        (1, n) if n > 1 => {
            let len = sources.iter().map(Vec::len).min().unwrap_or(0);
            let mixed = (0..len).map(|i| sources.iter().map(|c| c[i]).sum::<f32>() / n as f32).collect();
            excerpt(&Audio::new(audio.sample_rate, vec![mixed]), 0, frames).channels
        }
        (wanted, n) => {
            let fitted = excerpt(audio, 0, frames).channels;
            (0..wanted.max(1)).map(|c| fitted[c.min(n - 1)].clone()).collect()
        }
    };
    PlayableTake { id, sample_rate: region.sample_rate, start: region.start, channels }
}

/// Loads `take` for a host at `host_rate` with `channels` channels: the host-rate file when the rate matches,
/// otherwise the 48 kHz file resampled; each checked against its saved hash.
pub fn load_take(take: &TakeMeta, host_rate: u32, channels: usize) -> std::result::Result<PlayableTake, TakeProblem> {
    let region = take.region.at_rate(host_rate);
    let audio = if take.host_file.sample_rate == host_rate {
        read_checked(&take.host_file)?
    } else {
        let model = read_checked(&take.model_file)?;
        audio::resample(&model, host_rate).map_err(|err| TakeProblem::Unreadable(err.to_string()))?
    };
    Ok(playable(take.id, region, &audio, channels))
}

/// The takes loaded for the current host configuration, and the health of every take in the list.
#[derive(Debug, Default)]
pub struct TakeLibrary {
    loaded: HashMap<u64, Arc<PlayableTake>>,
    problems: BTreeMap<u64, TakeProblem>,
}

impl TakeLibrary {
    /// Forgets every loaded take (after a sample-rate or channel change).
    pub fn clear(&mut self) {
        self.loaded.clear();
        self.problems.clear();
    }

    /// Adds a take that was just made.
    pub fn insert(&mut self, take: Arc<PlayableTake>) {
        self.problems.remove(&take.id);
        self.loaded.insert(take.id, take);
    }

    /// Forgets take `id`.
    pub fn remove(&mut self, id: u64) {
        self.loaded.remove(&id);
        self.problems.remove(&id);
    }

    /// Take `meta` ready to play at `host_rate` / `channels`, loading it from disk if needed. A problem is
    /// remembered (see [`TakeLibrary::problems`]) and returned.
    pub fn get(
        &mut self,
        meta: &TakeMeta,
        host_rate: u32,
        channels: usize,
    ) -> std::result::Result<Arc<PlayableTake>, TakeProblem> {
        if let Some(take) = self.loaded.get(&meta.id).filter(|take| take.sample_rate == host_rate) {
            return Ok(take.clone());
        }
        match load_take(meta, host_rate, channels) {
            Ok(take) => {
                let take = Arc::new(take);
                self.insert(take.clone());
                Ok(take)
            }
            Err(problem) => {
                self.problems.insert(meta.id, problem.clone());
                Err(problem)
            }
        }
    }

    /// Checks every take in `state` (loading each), so the editor can show which ones cannot play.
    pub fn check_all(&mut self, state: &TakesState, host_rate: u32, channels: usize) {
        self.loaded.retain(|id, _| state.get(*id).is_some());
        self.problems.retain(|id, _| state.get(*id).is_some());
        for take in &state.takes {
            // Problems are recorded by `get`.
            let _ = self.get(take, host_rate, channels);
        }
    }

    /// Takes that cannot play, by id.
    pub fn problems(&self) -> &BTreeMap<u64, TakeProblem> {
        &self.problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("retake-takes-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn meta(id: u64) -> TakeMeta {
        let file = TakeFile { path: PathBuf::new(), sample_rate: 48_000, hash: 0 };
        TakeMeta {
            id,
            created_unix_s: 0,
            region: Region { start: 0, end: 10, sample_rate: 48_000 },
            summary: String::new(),
            seed: 0,
            model_file: file.clone(),
            host_file: file,
        }
    }

    fn tone(rate: u32, frames: usize) -> Audio {
        let wave = |phase: f32| (0..frames).map(|i| (i as f32 * 0.01 + phase).sin() * 0.5).collect();
        Audio::new(rate, vec![wave(0.0), wave(1.0)])
    }

    #[test]
    fn pushing_beyond_the_limit_evicts_the_oldest_take_and_selects_the_new_one() {
        let mut state = TakesState::default();
        for id in 0..MAX_TAKES as u64 {
            assert!(state.push(meta(id)).is_empty());
        }
        let evicted = state.push(meta(99));
        assert_eq!(evicted.iter().map(|take| take.id).collect::<Vec<_>>(), vec![0]);
        assert_eq!(state.takes.len(), MAX_TAKES);
        assert_eq!(state.selected, Some(99));
        assert_eq!(state.next_id, 100);
    }

    #[test]
    fn restoring_the_field_counts_restores() {
        let field = TakesField::default();
        assert_eq!(field.read().project_id.len(), 16);
        let restored = TakesState { project_id: "abc".into(), ..TakesState::default() };
        field.set(restored.clone());
        assert_eq!(field.restores(), 1);
        assert_eq!(field.map(|state| state.clone()), restored);
    }

    #[test]
    fn exported_takes_reload_at_the_host_rate_and_from_48k_after_a_rate_change() {
        let dir = temp_dir("export");
        let model = tone(48_000, 4_800);
        let host = tone(44_100, 4_410);
        let (model_file, host_file, stored) = export_take(&dir, 3, &model, &host).unwrap();
        assert_eq!(host_file.sample_rate, 44_100);
        let take = TakeMeta {
            region: Region { start: 44_100, end: 48_510, sample_rate: 44_100 },
            model_file,
            host_file,
            ..meta(3)
        };
        let same_rate = load_take(&take, 44_100, 2).unwrap();
        assert_eq!(same_rate.channels, stored.channels);
        assert_eq!(same_rate.start, 44_100);
        let new_rate = load_take(&take, 96_000, 2).unwrap();
        assert_eq!((new_rate.start, new_rate.frames(), new_rate.sample_rate), (96_000, 9_600, 96_000));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_and_altered_files_are_reported_not_fatal() {
        let dir = temp_dir("health");
        let (model_file, host_file, _) = export_take(&dir, 1, &tone(48_000, 480), &tone(48_000, 480)).unwrap();
        let take =
            TakeMeta { region: Region { start: 0, end: 480, sample_rate: 48_000 }, model_file, host_file, ..meta(1) };
        let state = TakesState { takes: vec![take.clone()], ..TakesState::default() };
        audio::write_wav(&take.host_file.path, &tone(48_000, 400), WavFormat::Int24).unwrap();
        let mut library = TakeLibrary::default();
        library.check_all(&state, 48_000, 2);
        assert_eq!(library.problems().get(&1), Some(&TakeProblem::Altered(take.host_file.path.clone())));
        delete_take_files(&take).unwrap();
        library.clear();
        library.check_all(&state, 48_000, 2);
        assert_eq!(library.problems().get(&1), Some(&TakeProblem::Missing(take.host_file.path.clone())));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn playable_fits_length_and_channel_count() {
        let region = Region { start: 5, end: 15, sample_rate: 48_000 };
        let stereo = Audio::new(48_000, vec![vec![1.0; 8], vec![0.0; 8]]);
        let mono = playable(1, region, &stereo, 1);
        assert_eq!(mono.channels, vec![[vec![0.5; 8], vec![0.0; 2]].concat()]);
        let widened = playable(1, region, &Audio::new(48_000, vec![vec![0.25; 12]]), 2);
        assert_eq!(widened.channels, vec![vec![0.25; 10], vec![0.25; 10]]);
        assert_eq!((widened.start, widened.end()), (5, 15));
    }

    #[test]
    fn takes_root_follows_xdg_data_home() {
        // Only checks the shape; the environment is not modified (tests run in parallel).
        let root = takes_root().unwrap();
        assert!(root.ends_with("retake/takes"));
        assert!(root.is_absolute());
    }
}
