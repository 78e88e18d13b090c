//! The capture store: what passed through the plugin while the host played, indexed by host timeline sample.
//!
//! Memory is a pool of fixed-size chunks allocated once in `activate()`. The audio thread maps a timeline chunk
//! to a pool slot the first time it plays there, so loops, jumps and replays overwrite the same place, and the
//! pool bounds the *amount* captured rather than the timeline extent. Every sample is an `AtomicU32` holding
//! `f32` bits, written with relaxed stores (plain moves on x86 and ARM), and a per-frame bitmap records which
//! frames were ever written. Each slot has a [`SeqCounter`]: a reader copying a chunk that the audio thread is
//! rewriting at that moment (the transport looping over the region) notices the overlap and copies again, so
//! readers never tear and never make the audio thread wait.
//!
//! Untouched memory is not resident yet, and a first write to it costs the writer a page fault (microseconds
//! each, several per block when a block starts new pages). So the timeline map is paged in up front, and the job
//! worker keeps the next free slots paged in ahead of the audio thread ([`CaptureStore::page_in_ahead`]).

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicUsize, Ordering};

use crate::error::{PluginError, Result};

use crate::seqlock::SeqCounter;

/// Frames per pool chunk (0.68 s at 48 kHz).
pub const CHUNK_FRAMES: usize = 1 << 15;
/// Timeline positions at or past this frame are never captured (about 24.8 h at 48 kHz).
pub const TIMELINE_FRAMES: i64 = (CHUNK_FRAMES as i64) << 17;

const WORD_FRAMES: usize = 32;
const WORDS_PER_CHUNK: usize = CHUNK_FRAMES / WORD_FRAMES;
const TIMELINE_CHUNKS: usize = (TIMELINE_FRAMES as usize) / CHUNK_FRAMES;
const NO_SLOT: u32 = 0;
/// Free pool slots kept paged in ahead of the audio thread (1.4 s at 48 kHz).
const PAGED_IN_AHEAD: usize = 2;
/// Sample cells per 4 KiB memory page.
const PAGE_CELLS: usize = 4096 / std::mem::size_of::<AtomicU32>();

/// Planar audio copied out of the store: one vector per channel.
pub type Planar = Vec<Vec<f32>>;

/// One column of a waveform overview: the (lowest, highest) sample of the left and of the right channel.
pub type StereoPeak = [(f32, f32); 2];

/// The timeline store for one activation (fixed channel count and sample rate).
pub struct CaptureStore {
    channels: usize,
    sample_rate: u32,
    slots: usize,
    /// `[slot][channel][frame]` sample bits.
    samples: Box<[AtomicU32]>,
    /// `[slot][frame / 32]` bit set once the frame was captured.
    written: Box<[AtomicU32]>,
    /// One sequence counter per slot.
    sequences: Box<[SeqCounter]>,
    /// Timeline chunk → slot + 1 (0 = not captured yet). Written only by the audio thread.
    slot_of_chunk: Box<[AtomicU32]>,
    used_slots: AtomicUsize,
    /// Slots `[0, paged_in)` are resident.
    paged_in: AtomicUsize,
    full: AtomicBool,
    extent_start: AtomicI64,
    extent_end: AtomicI64,
}

impl std::fmt::Debug for CaptureStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureStore")
            .field("channels", &self.channels)
            .field("sample_rate", &self.sample_rate)
            .field("slots", &self.slots)
            .field("used_slots", &self.used_slots.load(Ordering::Relaxed))
            .finish()
    }
}

/// A zero-filled slice of atomics. Built from `vec![0u32; len]`, which asks the allocator for zeroed memory,
/// so a large store costs address space up front and resident memory only where audio is captured.
fn zeroed_atomics(len: usize) -> Box<[AtomicU32]> {
    const _: () = assert!(std::mem::align_of::<AtomicU32>() == std::mem::align_of::<u32>());
    let mut zeros = std::mem::ManuallyDrop::new(vec![0u32; len]);
    // SAFETY: `AtomicU32` has the same size, alignment (checked above) and bit validity as `u32`, and the
    // vector's allocation is handed over whole (pointer, length, capacity) exactly once.
    unsafe { Vec::from_raw_parts(zeros.as_mut_ptr().cast::<AtomicU32>(), zeros.len(), zeros.capacity()) }
        .into_boxed_slice()
}

/// Makes every memory page of `cells` resident without changing a value: a compare-exchange of 0 with 0 on one
/// cell per page writes only where the cell is still 0 (so it cannot undo a concurrent write), and that write
/// takes the page fault here instead of in the audio thread.
fn page_in(cells: &[AtomicU32]) {
    for cell in cells.iter().step_by(PAGE_CELLS).chain(cells.last()) {
        let _ = cell.compare_exchange(0, 0, Ordering::Relaxed, Ordering::Relaxed);
    }
}

impl CaptureStore {
    /// Allocates a store holding up to `max_seconds` of `channels`-channel audio at `sample_rate`. Not for the
    /// audio thread.
    pub fn new(channels: usize, sample_rate: u32, max_seconds: f64) -> Self {
        let channels = channels.max(1);
        let max_frames = (max_seconds.max(0.0) * f64::from(sample_rate)).ceil() as usize;
        let slots = max_frames.div_ceil(CHUNK_FRAMES).clamp(1, TIMELINE_CHUNKS);
        let store = Self {
            channels,
            sample_rate,
            slots,
            samples: zeroed_atomics(slots * channels * CHUNK_FRAMES),
            written: zeroed_atomics(slots * WORDS_PER_CHUNK),
            sequences: (0..slots).map(|_| SeqCounter::default()).collect(),
            slot_of_chunk: zeroed_atomics(TIMELINE_CHUNKS),
            used_slots: AtomicUsize::new(0),
            paged_in: AtomicUsize::new(0),
            full: AtomicBool::new(false),
            extent_start: AtomicI64::new(i64::MAX),
            extent_end: AtomicI64::new(i64::MIN),
        };
        page_in(&store.slot_of_chunk);
        store.page_in_ahead();
        store
    }

    /// Not for the audio thread. Pages in the next [`PAGED_IN_AHEAD`] free pool slots (samples and captured
    /// bits), so the audio thread starting a new part of the timeline writes to resident memory. Cheap when
    /// nothing changed; the job worker calls it on every poll.
    pub fn page_in_ahead(&self) {
        let end = (self.used_slots.load(Ordering::Relaxed) + PAGED_IN_AHEAD).min(self.slots);
        let slot_cells = self.channels * CHUNK_FRAMES;
        for slot in self.paged_in.load(Ordering::Relaxed)..end {
            page_in(&self.samples[slot * slot_cells..(slot + 1) * slot_cells]);
            page_in(&self.written[slot * WORDS_PER_CHUNK..(slot + 1) * WORDS_PER_CHUNK]);
        }
        self.paged_in.fetch_max(end, Ordering::Relaxed);
    }

    /// Channels stored per frame.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// The host sample rate the timeline positions refer to.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Capacity in seconds (whole chunks).
    pub fn capacity_seconds(&self) -> f64 {
        (self.slots * CHUNK_FRAMES) as f64 / f64::from(self.sample_rate)
    }

    /// Fraction of the pool in use (0..=1).
    pub fn used_fraction(&self) -> f32 {
        self.used_slots.load(Ordering::Relaxed) as f32 / self.slots as f32
    }

    /// True once some input could not be captured because the pool was used up (or the position was past
    /// [`TIMELINE_FRAMES`]).
    pub fn is_full(&self) -> bool {
        self.full.load(Ordering::Relaxed)
    }

    /// The span from the first to the last frame ever captured (it may contain gaps).
    pub fn extent(&self) -> Option<Range<i64>> {
        let (start, end) = (self.extent_start.load(Ordering::Relaxed), self.extent_end.load(Ordering::Relaxed));
        (start < end).then_some(start..end)
    }

    /// Audio thread. Records `input` (one slice per channel) as the frames starting at timeline position
    /// `position`. Frames before 0 are skipped; frames that would need a chunk when the pool is used up, or
    /// that lie past [`TIMELINE_FRAMES`], are dropped and raise [`CaptureStore::is_full`]. Never allocates,
    /// locks or panics.
    pub fn write<S: AsRef<[f32]>>(&self, position: i64, input: &[S]) {
        let Some(frames) = input.iter().map(|channel| channel.as_ref().len()).min() else {
            return;
        };
        let end = position.saturating_add(frames as i64);
        let mut t = position.max(0);
        let (mut first, mut last) = (i64::MAX, i64::MIN);
        while t < end {
            if t >= TIMELINE_FRAMES {
                self.full.store(true, Ordering::Relaxed);
                break;
            }
            let chunk = (t / CHUNK_FRAMES as i64) as usize;
            let offset = (t % CHUNK_FRAMES as i64) as usize;
            let run = ((end - t) as usize).min(CHUNK_FRAMES - offset);
            match self.slot_for_write(chunk) {
                Some(slot) => {
                    self.write_run(slot, offset, input, (t - position) as usize, run);
                    first = first.min(t);
                    last = t + run as i64;
                }
                None => self.full.store(true, Ordering::Relaxed),
            }
            t += run as i64;
        }
        if first < last {
            self.extent_start.fetch_min(first, Ordering::Relaxed);
            self.extent_end.fetch_max(last, Ordering::Relaxed);
        }
    }

    /// Audio thread. The slot holding timeline chunk `chunk`, assigning the next free one if needed.
    fn slot_for_write(&self, chunk: usize) -> Option<usize> {
        let mapped = self.slot_of_chunk[chunk].load(Ordering::Acquire);
        if mapped != NO_SLOT {
            return Some(mapped as usize - 1);
        }
        let slot = self.used_slots.load(Ordering::Relaxed);
        if slot >= self.slots {
            return None;
        }
        self.used_slots.store(slot + 1, Ordering::Relaxed);
        self.slot_of_chunk[chunk].store(slot as u32 + 1, Ordering::Release);
        Some(slot)
    }

    /// Audio thread. Copies `run` frames from `input[..][from..]` into `slot` at `offset` and marks them.
    fn write_run<S: AsRef<[f32]>>(&self, slot: usize, offset: usize, input: &[S], from: usize, run: usize) {
        self.sequences[slot].write(|| {
            for channel in 0..self.channels {
                let source = &input[channel.min(input.len() - 1)].as_ref()[from..from + run];
                let base = (slot * self.channels + channel) * CHUNK_FRAMES + offset;
                for (cell, sample) in self.samples[base..base + run].iter().zip(source) {
                    cell.store(sample.to_bits(), Ordering::Relaxed);
                }
            }
            let words = &self.written[slot * WORDS_PER_CHUNK..(slot + 1) * WORDS_PER_CHUNK];
            let mut frame = offset;
            while frame < offset + run {
                let bit = frame % WORD_FRAMES;
                let count = (WORD_FRAMES - bit).min(offset + run - frame);
                let mask = (u32::MAX >> (WORD_FRAMES - count)) << bit;
                words[frame / WORD_FRAMES].fetch_or(mask, Ordering::Relaxed);
                frame += count;
            }
        });
    }

    /// The slot holding timeline chunk `chunk`, if anything was captured there.
    fn slot_for_read(&self, chunk: i64) -> Option<usize> {
        if !(0..TIMELINE_CHUNKS as i64).contains(&chunk) {
            return None;
        }
        match self.slot_of_chunk[chunk as usize].load(Ordering::Acquire) {
            NO_SLOT => None,
            mapped => Some(mapped as usize - 1),
        }
    }

    /// The 32-frame captured-bits word containing timeline frame `t` (bit `i` = frame `t - t % 32 + i`).
    fn captured_word(&self, t: i64) -> u32 {
        let chunk = t.div_euclid(CHUNK_FRAMES as i64);
        self.slot_for_read(chunk).map_or(0, |slot| {
            let word = (t.rem_euclid(CHUNK_FRAMES as i64) as usize) / WORD_FRAMES;
            self.written[slot * WORDS_PER_CHUNK + word].load(Ordering::Relaxed)
        })
    }

    /// The first frame in `range` whose captured state equals `captured`.
    pub fn first_where(&self, range: Range<i64>, captured: bool) -> Option<i64> {
        let mut t = range.start;
        while t < range.end {
            let base = t - t.rem_euclid(WORD_FRAMES as i64);
            let word = self.captured_word(t);
            let matching = (if captured { word } else { !word }) & (u32::MAX << (t - base));
            if matching != 0 {
                let hit = base + i64::from(matching.trailing_zeros());
                return (hit < range.end).then_some(hit);
            }
            t = base + WORD_FRAMES as i64;
        }
        None
    }

    /// The last frame in `range` whose captured state equals `captured`.
    pub fn last_where(&self, range: Range<i64>, captured: bool) -> Option<i64> {
        let mut t = range.end - 1;
        while t >= range.start {
            let base = t - t.rem_euclid(WORD_FRAMES as i64);
            let word = self.captured_word(t);
            let matching = (if captured { word } else { !word }) & (u32::MAX >> (WORD_FRAMES as i64 - 1 - (t - base)));
            if matching != 0 {
                let hit = base + 31 - i64::from(matching.leading_zeros());
                return (hit >= range.start).then_some(hit);
            }
            t = base - 1;
        }
        None
    }

    /// The first stretch inside `range` that was never captured, if any.
    pub fn first_gap(&self, range: Range<i64>) -> Option<Range<i64>> {
        let start = self.first_where(range.clone(), false)?;
        Some(start..self.first_where(start..range.end, true).unwrap_or(range.end))
    }

    /// Refuses, with a message naming the first gap, a `range` with any frame never captured.
    pub fn ensure_captured(&self, range: Range<i64>) -> Result<()> {
        if range.start >= range.end {
            return Err(PluginError::EmptyRegion);
        }
        let Some(gap) = self.first_gap(range.clone()) else { return Ok(()) };
        let seconds = |t: i64| t as f64 / f64::from(self.sample_rate);
        Err(PluginError::NotCaptured {
            region_s: (seconds(range.start), seconds(range.end)),
            gap_s: (seconds(gap.start), seconds(gap.end)),
        })
    }

    /// Copies `range` (timeline frames) out of the store. Refuses a range with any frame never captured, and
    /// reports the region as busy if the audio thread kept rewriting it through every retry.
    pub fn read(&self, range: Range<i64>) -> Result<Planar> {
        self.ensure_captured(range.clone())?;
        let frames = (range.end - range.start) as usize;
        let mut out = vec![vec![0.0f32; frames]; self.channels];
        let mut t = range.start;
        while t < range.end {
            let chunk = t / CHUNK_FRAMES as i64;
            let offset = (t % CHUNK_FRAMES as i64) as usize;
            let run = ((range.end - t) as usize).min(CHUNK_FRAMES - offset);
            let slot = self.slot_for_read(chunk).ok_or(PluginError::CaptureChanged)?;
            let at = (t - range.start) as usize;
            self.sequences[slot]
                .read_retrying(|| {
                    for (channel, target) in out.iter_mut().enumerate() {
                        let base = (slot * self.channels + channel) * CHUNK_FRAMES + offset;
                        for (sample, cell) in target[at..at + run].iter_mut().zip(&self.samples[base..base + run]) {
                            *sample = f32::from_bits(cell.load(Ordering::Relaxed));
                        }
                    }
                })
                .ok_or(PluginError::CaptureBusy)?;
            t += run as i64;
        }
        Ok(out)
    }

    /// A coarse stereo overview for drawing: for each of `buckets` equal parts of `range`, the lowest and highest
    /// sample of the left and the right channel (a mono store shows its one channel in both; sampling at most 256
    /// frames per bucket), or `None` where nothing was captured. Reads may see a block being written; that only
    /// affects the picture. Not for the paint path of a large range: the editor computes it on its own thread.
    pub fn overview(&self, range: Range<i64>, buckets: usize) -> Vec<Option<StereoPeak>> {
        let span = (range.end - range.start).max(0) as f64;
        (0..buckets)
            .map(|bucket| {
                let lo = range.start + (span * bucket as f64 / buckets as f64) as i64;
                let hi = (range.start + (span * (bucket + 1) as f64 / buckets as f64) as i64).max(lo + 1);
                let stride = ((hi - lo) / 256).max(1);
                let mut peak: Option<StereoPeak> = None;
                let mut t = lo;
                while t < hi {
                    if let Some(frame) = self.frame_at(t) {
                        let column = peak.get_or_insert([(frame[0], frame[0]), (frame[1], frame[1])]);
                        for (side, sample) in column.iter_mut().zip(frame) {
                            *side = (side.0.min(sample), side.1.max(sample));
                        }
                    }
                    t += stride;
                }
                peak
            })
            .collect()
    }

    /// The left and right sample at frame `t` (a mono store's one channel twice), if it was captured.
    fn frame_at(&self, t: i64) -> Option<[f32; 2]> {
        if self.captured_word(t) & (1 << t.rem_euclid(WORD_FRAMES as i64)) == 0 {
            return None;
        }
        let slot = self.slot_for_read(t.div_euclid(CHUNK_FRAMES as i64))?;
        let offset = t.rem_euclid(CHUNK_FRAMES as i64) as usize;
        let sample = |channel: usize| {
            f32::from_bits(
                self.samples[(slot * self.channels + channel) * CHUNK_FRAMES + offset].load(Ordering::Relaxed),
            )
        };
        Some([sample(0), sample(1.min(self.channels - 1))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nice_assert_no_alloc::assert_no_alloc;

    /// A ramp whose value at timeline frame `t` of channel `c` is unique, so copies can be checked exactly.
    fn ramp(start: i64, frames: usize, channels: usize, tag: f32) -> Planar {
        (0..channels)
            .map(|c| (0..frames).map(|i| tag + (start + i as i64) as f32 * 1e-3 + c as f32).collect())
            .collect()
    }

    fn write_in_blocks(store: &CaptureStore, position: i64, audio: &Planar, block: usize) {
        let frames = audio[0].len();
        assert_no_alloc(|| {
            let mut done = 0;
            while done < frames {
                let n = block.min(frames - done);
                let slices: [&[f32]; 2] = [&audio[0][done..done + n], &audio[1][done..done + n]];
                store.write(position + done as i64, &slices);
                done += n;
            }
        });
    }

    #[test]
    fn captured_audio_reads_back_exactly_across_chunk_boundaries() {
        let store = CaptureStore::new(2, 48_000, 5.0);
        let start = CHUNK_FRAMES as i64 - 1000;
        let audio = ramp(start, 5000, 2, 0.0);
        write_in_blocks(&store, start, &audio, 511);
        assert_eq!(store.read(start..start + 5000).unwrap(), audio);
        assert_eq!(store.extent(), Some(start..start + 5000));
    }

    #[test]
    fn replaying_a_span_overwrites_it_in_place() {
        let store = CaptureStore::new(2, 48_000, 5.0);
        write_in_blocks(&store, 1000, &ramp(1000, 4000, 2, 0.0), 64);
        // A loop back to 2000 and a jump forward: the second pass replaces what was there.
        let second = ramp(2000, 1000, 2, 100.0);
        write_in_blocks(&store, 2000, &second, 64);
        let jumped = ramp(90_000, 700, 2, 200.0);
        write_in_blocks(&store, 90_000, &jumped, 4096);
        let all = store.read(1000..5000).unwrap();
        let first = ramp(1000, 4000, 2, 0.0);
        for c in 0..2 {
            assert_eq!(all[c][..1000], first[c][..1000]);
            assert_eq!(all[c][1000..2000], second[c][..]);
            assert_eq!(all[c][2000..], first[c][2000..]);
        }
        assert_eq!(store.read(90_000..90_700).unwrap(), jumped);
        assert_eq!(store.first_gap(1000..90_700), Some(5000..90_000));
    }

    #[test]
    fn uncaptured_frames_are_refused_with_the_gap_named() {
        let store = CaptureStore::new(2, 48_000, 5.0);
        write_in_blocks(&store, 0, &ramp(0, 48_000, 2, 0.0), 512);
        write_in_blocks(&store, 72_000, &ramp(72_000, 24_000, 2, 0.0), 512);
        let err = store.read(24_000..96_000).unwrap_err().to_string();
        // A plugin condition: no "invalid input:" prefix of the engine.
        assert!(
            err.starts_with("the region 0.50–2.00 s is not fully captured (nothing recorded at 1.00–1.50 s)"),
            "{err}"
        );
        assert!(store.read(72_000..96_000).is_ok());
    }

    #[test]
    fn nothing_is_captured_where_nothing_was_written() {
        let store = CaptureStore::new(1, 44_100, 1.0);
        assert_eq!(store.extent(), None);
        assert_eq!(store.first_where(0..100_000, true), None);
        assert_eq!(store.first_gap(0..10), Some(0..10));
    }

    #[test]
    fn negative_positions_are_skipped_and_the_rest_is_kept() {
        let store = CaptureStore::new(2, 48_000, 1.0);
        let audio = ramp(-100, 300, 2, 0.0);
        write_in_blocks(&store, -100, &audio, 300);
        let kept = store.read(0..200).unwrap();
        assert_eq!(kept[0], audio[0][100..]);
        assert_eq!(store.extent(), Some(0..200));
    }

    #[test]
    fn exceeding_capacity_drops_new_chunks_and_raises_the_notice() {
        // One chunk of capacity: the second timeline chunk cannot be captured.
        let store = CaptureStore::new(2, 48_000, 0.1);
        assert_eq!(store.capacity_seconds(), CHUNK_FRAMES as f64 / 48_000.0);
        let audio = ramp(0, CHUNK_FRAMES + 100, 2, 0.0);
        write_in_blocks(&store, 0, &audio, 4096);
        assert!(store.is_full());
        assert_eq!(store.first_gap(0..CHUNK_FRAMES as i64 + 100), Some(CHUNK_FRAMES as i64..CHUNK_FRAMES as i64 + 100));
        // The chunk that was captured keeps being overwritten on replay.
        let replay = ramp(0, 100, 2, 50.0);
        write_in_blocks(&store, 0, &replay, 100);
        assert_eq!(store.read(0..100).unwrap(), replay);
    }

    #[test]
    fn mono_input_fills_every_stored_channel() {
        let store = CaptureStore::new(2, 48_000, 1.0);
        let mono = [vec![0.25f32; 64]];
        assert_no_alloc(|| store.write(10, &mono));
        assert_eq!(store.read(10..74).unwrap(), vec![vec![0.25; 64], vec![0.25; 64]]);
    }

    #[test]
    fn paging_in_ahead_follows_the_used_slots_and_never_changes_captured_audio() {
        let store = CaptureStore::new(2, 48_000, 5.0 * CHUNK_FRAMES as f64 / 48_000.0);
        assert_eq!(store.paged_in.load(Ordering::Relaxed), PAGED_IN_AHEAD);
        let audio = ramp(0, CHUNK_FRAMES + 100, 2, 0.5);
        write_in_blocks(&store, 0, &audio, 512);
        store.page_in_ahead();
        assert_eq!(store.paged_in.load(Ordering::Relaxed), 2 + PAGED_IN_AHEAD);
        assert_eq!(store.read(0..(CHUNK_FRAMES + 100) as i64).unwrap(), audio);
        write_in_blocks(&store, 10 * CHUNK_FRAMES as i64, &ramp(0, 3 * CHUNK_FRAMES, 2, 0.0), 4096);
        store.page_in_ahead();
        assert_eq!(store.paged_in.load(Ordering::Relaxed), 5, "never past the pool");
    }

    #[test]
    fn first_and_last_where_find_exact_frames() {
        let store = CaptureStore::new(1, 48_000, 1.0);
        store.write(37, &[vec![1.0f32; 70]]);
        assert_eq!(store.first_where(0..1000, true), Some(37));
        assert_eq!(store.last_where(0..1000, true), Some(106));
        assert_eq!(store.first_where(40..1000, false), Some(107));
        assert_eq!(store.last_where(0..100, false), Some(36));
        assert_eq!(store.last_where(37..107, false), None);
    }

    #[test]
    fn overview_marks_gaps_and_peaks() {
        let store = CaptureStore::new(1, 48_000, 1.0);
        store.write(0, &[vec![0.5f32; 1000]]);
        assert_eq!(store.overview(0..2000, 2), vec![Some([(0.5, 0.5), (0.5, 0.5)]), None]);
    }

    #[test]
    fn overview_keeps_left_and_right_apart_with_their_lowest_and_highest_samples() {
        let store = CaptureStore::new(2, 48_000, 1.0);
        let left: Vec<f32> = (0..1000).map(|i| if i % 2 == 0 { 0.25 } else { -0.5 }).collect();
        store.write(0, &[left, vec![0.75f32; 1000]]);
        assert_eq!(store.overview(0..1000, 1), vec![Some([(-0.5, 0.25), (0.75, 0.75)])]);
    }
}
