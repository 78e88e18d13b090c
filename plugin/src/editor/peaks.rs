//! Waveform overviews for the editor, computed on a thread of their own (never the audio thread, never the paint
//! path): the captured timeline's stereo overview for the span in view, refreshed while the editor is open, and
//! each take's overview, read once from its file and kept per take and file content.

use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::{unbounded, Receiver, Sender};

use crate::capture::{CaptureStore, StereoPeak};
use crate::takes::{load_take, TakeMeta};

/// How often the captured overview is asked for again while nothing else changed (it grows while the host plays).
const CAPTURE_REFRESH: Duration = Duration::from_millis(200);
/// Columns of a take's overview (drawn stretched or squeezed over the take's region).
pub const TAKE_COLUMNS: usize = 1024;

/// One overview: a column per equal part of `span`, `None` where nothing was captured.
#[derive(Debug, Clone, PartialEq)]
pub struct Peaks {
    /// The host timeline samples the columns cover.
    pub span: Range<i64>,
    /// Left and right (lowest, highest) per column.
    pub columns: Vec<Option<StereoPeak>>,
}

impl Peaks {
    /// The column covering timeline sample `t`, if `t` lies in the span.
    pub fn at(&self, t: i64) -> Option<StereoPeak> {
        let len = self.span.end - self.span.start;
        if len <= 0 || !self.span.contains(&t) {
            return None;
        }
        let index = ((t - self.span.start) as i128 * self.columns.len() as i128 / len as i128) as usize;
        self.columns.get(index).copied().flatten()
    }
}

/// The (lowest, highest) sample of the left and right channel (a mono take's one channel twice) in each of
/// `columns` equal parts of planar `channels`.
pub fn peaks_of(channels: &[Vec<f32>], columns: usize) -> Vec<Option<StereoPeak>> {
    let Some(left) = channels.first() else { return vec![None; columns] };
    let right = channels.get(1).unwrap_or(left);
    let frames = left.len().min(right.len());
    (0..columns)
        .map(|column| {
            let lo = frames * column / columns;
            let hi = (frames * (column + 1) / columns).max(lo + 1).min(frames);
            let side = |samples: &[f32]| {
                samples[lo..hi]
                    .iter()
                    .fold((f32::INFINITY, f32::NEG_INFINITY), |(min, max), &s| (min.min(s), max.max(s)))
            };
            (lo < hi).then(|| [side(left), side(right)])
        })
        .collect()
}

enum Request {
    Capture { store: Arc<CaptureStore>, span: Range<i64>, columns: usize },
    Take { meta: Box<TakeMeta>, folder: PathBuf },
}

enum Reply {
    Capture(Peaks),
    /// A take's id, its file hash and its columns (or why its file cannot be drawn).
    Take(u64, u64, Result<Vec<Option<StereoPeak>>, String>),
}

/// A take's overview as the editor keeps it.
#[derive(Debug, Clone, PartialEq)]
pub enum TakePeaks {
    /// Being read.
    Pending,
    /// Columns over the take's region.
    Ready(Vec<Option<StereoPeak>>),
    /// The file could not be read.
    Failed(String),
}

/// The overview thread and what it answered so far. Dropping it ends the thread.
pub struct Overviews {
    requests: Sender<Request>,
    replies: Receiver<Reply>,
    capture: Option<Peaks>,
    capture_asked: Option<Instant>,
    capture_pending: bool,
    /// By take id: the file hash the overview is for, and the overview.
    takes: HashMap<u64, (u64, TakePeaks)>,
}

impl Overviews {
    /// Starts the overview thread.
    pub fn start() -> std::io::Result<Self> {
        let (requests, work) = unbounded::<Request>();
        let (answer, replies) = unbounded();
        std::thread::Builder::new().name("retake-overviews".to_string()).spawn(move || {
            for request in work {
                let reply = match request {
                    Request::Capture { store, span, columns } => {
                        Reply::Capture(Peaks { columns: store.overview(span.clone(), columns), span })
                    }
                    Request::Take { meta, folder } => {
                        let read = load_take(&meta, &folder, meta.host_file.sample_rate, 2);
                        let peaks =
                            read.map(|take| peaks_of(&take.channels, TAKE_COLUMNS)).map_err(|err| err.to_string());
                        Reply::Take(meta.id, meta.host_file.hash, peaks)
                    }
                };
                if answer.send(reply).is_err() {
                    break;
                }
            }
        })?;
        Ok(Self {
            requests,
            replies,
            capture: None,
            capture_asked: None,
            capture_pending: false,
            takes: HashMap::new(),
        })
    }

    /// Takes in what the thread answered.
    pub fn receive(&mut self) {
        while let Ok(reply) = self.replies.try_recv() {
            match reply {
                Reply::Capture(peaks) => {
                    self.capture = Some(peaks);
                    self.capture_pending = false;
                }
                Reply::Take(id, hash, peaks) => {
                    let peaks = match peaks {
                        Ok(columns) => TakePeaks::Ready(columns),
                        Err(err) => TakePeaks::Failed(err),
                    };
                    if self.takes.get(&id).is_some_and(|(asked, _)| *asked == hash) {
                        self.takes.insert(id, (hash, peaks));
                    }
                }
            }
        }
    }

    /// The latest captured overview (possibly of another span while a new one is computed); asks for `span` in
    /// `columns` columns when the last answer is for another view or older than [`CAPTURE_REFRESH`].
    pub fn capture(&mut self, store: &Arc<CaptureStore>, span: Range<i64>, columns: usize) -> Option<&Peaks> {
        let other_view = self.capture.as_ref().is_none_or(|peaks| peaks.span != span || peaks.columns.len() != columns);
        let old = self.capture_asked.is_none_or(|asked| asked.elapsed() > CAPTURE_REFRESH);
        if (other_view || old) && !self.capture_pending {
            let request = Request::Capture { store: store.clone(), span, columns };
            self.capture_pending = self.requests.send(request).is_ok();
            self.capture_asked = Some(Instant::now());
        }
        self.capture.as_ref()
    }

    /// Take `meta`'s overview from its file in `folder`, asked for the first time it is wanted (and again when
    /// the file's content changed).
    pub fn take(&mut self, meta: &TakeMeta, folder: Option<&PathBuf>) -> &TakePeaks {
        let hash = meta.host_file.hash;
        let known = self.takes.get(&meta.id).is_some_and(|(asked, _)| *asked == hash);
        if !known {
            let peaks = match folder {
                Some(folder) => {
                    let request = Request::Take { meta: Box::new(meta.clone()), folder: folder.clone() };
                    match self.requests.send(request) {
                        Ok(()) => TakePeaks::Pending,
                        Err(_) => TakePeaks::Failed("the overview thread has stopped".to_string()),
                    }
                }
                None => TakePeaks::Failed("this project has no take folder".to_string()),
            };
            self.takes.insert(meta.id, (hash, peaks));
        }
        &self.takes[&meta.id].1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_take_overview_holds_each_sides_lowest_and_highest_sample_per_column() {
        let left = vec![0.1, -0.4, 0.3, 0.2];
        let right = vec![0.5, 0.5, -0.25, 0.0];
        assert_eq!(
            peaks_of(&[left.clone(), right], 2),
            vec![Some([(-0.4, 0.1), (0.5, 0.5)]), Some([(0.2, 0.3), (-0.25, 0.0)])]
        );
        // A mono take shows its channel on both sides; more columns than frames repeat the nearest frame.
        assert_eq!(peaks_of(&[left], 1), vec![Some([(-0.4, 0.3), (-0.4, 0.3)])]);
        assert_eq!(peaks_of(&[vec![0.5]], 2), vec![Some([(0.5, 0.5); 2]); 2]);
        assert_eq!(peaks_of(&[], 2), vec![None, None]);
    }

    #[test]
    fn a_column_is_found_by_timeline_sample() {
        let peaks = Peaks { span: 100..300, columns: vec![Some([(0.0, 1.0); 2]), None] };
        assert_eq!(peaks.at(100), Some([(0.0, 1.0); 2]));
        assert_eq!(peaks.at(199), Some([(0.0, 1.0); 2]));
        assert_eq!(peaks.at(200), None);
        assert_eq!(peaks.at(300), None);
        assert_eq!(peaks.at(99), None);
    }

    #[test]
    fn the_captured_overview_is_computed_off_the_caller_and_refreshed() {
        let store = Arc::new(CaptureStore::new(2, 48_000, 1.0));
        store.write(0, &[vec![0.5f32; 1000], vec![-0.25f32; 1000]]);
        let mut overviews = Overviews::start().unwrap();
        assert_eq!(overviews.capture(&store, 0..2000, 2), None, "the first call only asks");
        let deadline = Instant::now() + Duration::from_secs(10);
        let peaks = loop {
            overviews.receive();
            if let Some(peaks) = overviews.capture(&store, 0..2000, 2) {
                break peaks.clone();
            }
            assert!(Instant::now() < deadline, "no overview from the thread");
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(peaks, Peaks { span: 0..2000, columns: store.overview(0..2000, 2) });
        assert_eq!(peaks.columns[0], Some([(0.5, 0.5), (-0.25, -0.25)]));
        // Audio captured later shows up in a later answer.
        store.write(1000, &[vec![0.75f32; 1000], vec![0.75f32; 1000]]);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            overviews.receive();
            let latest = overviews.capture(&store, 0..2000, 2).cloned();
            if latest.is_some_and(|peaks| peaks.columns[1].is_some()) {
                break;
            }
            assert!(Instant::now() < deadline, "the overview was not refreshed");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_take_overview_is_read_from_its_file_once_and_a_missing_file_says_so() {
        use crate::region::Region;
        use crate::takes::{export_take, TakeFile};
        use retake_engine::audio::Audio;
        let folder = std::env::temp_dir().join(format!("retake-peaks-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&folder);
        std::fs::create_dir_all(&folder).unwrap();
        let audio = Audio::new(48_000, vec![vec![0.5; 4_800], vec![-0.25; 4_800]]);
        let (model_file, host_file, _) = export_take(&folder, 1, &audio, &audio).unwrap();
        let region = Region { start: 0, end: 4_800, sample_rate: 48_000 };
        let meta = TakeMeta {
            id: 1,
            created_unix_s: 0,
            region,
            summary: String::new(),
            seed: 0,
            model_file,
            host_file: host_file.clone(),
        };
        let gone =
            TakeMeta { id: 2, host_file: TakeFile { path: folder.join("take-002.wav"), ..host_file }, ..meta.clone() };
        let mut overviews = Overviews::start().unwrap();
        assert_eq!(overviews.take(&meta, Some(&folder)), &TakePeaks::Pending);
        let deadline = Instant::now() + Duration::from_secs(10);
        while [&meta, &gone].iter().any(|take| overviews.take(take, Some(&folder)) == &TakePeaks::Pending) {
            assert!(Instant::now() < deadline, "no take overview from the thread");
            std::thread::sleep(Duration::from_millis(5));
            overviews.receive();
        }
        let TakePeaks::Ready(columns) = overviews.take(&meta, Some(&folder)).clone() else { panic!("not ready") };
        assert_eq!(columns.len(), TAKE_COLUMNS);
        // 24-bit files hold 0.5 and -0.25 exactly.
        assert!(columns.iter().all(|column| *column == Some([(0.5, 0.5), (-0.25, -0.25)])));
        let TakePeaks::Failed(why) = overviews.take(&gone, Some(&folder)).clone() else {
            panic!("a missing file drew")
        };
        assert!(why.contains("is missing"), "{why}");
        assert_eq!(overviews.take(&meta, None), &TakePeaks::Ready(columns), "kept: asked once per file content");
        std::fs::remove_dir_all(&folder).unwrap();
    }
}
