//! A single-writer sequence counter (seqlock) over atomics: the audio thread publishes without ever waiting,
//! readers on other threads detect that a write overlapped their read and try again.

use std::sync::atomic::{fence, AtomicU32, Ordering};

/// How many times [`SeqCounter::read_retrying`] tries before giving up.
const READ_ATTEMPTS: usize = 64;

/// Guards data stored in atomics (written with relaxed stores) that must be read as a consistent whole.
///
/// Exactly one thread may call [`SeqCounter::write`]; any number may call [`SeqCounter::read`].
#[derive(Debug, Default)]
pub struct SeqCounter(AtomicU32);

impl SeqCounter {
    /// Runs `store` (relaxed atomic stores) as one write. Never blocks. Single writer only.
    pub fn write<R>(&self, store: impl FnOnce() -> R) -> R {
        let sequence = self.0.load(Ordering::Relaxed);
        self.0.store(sequence.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        let result = store();
        self.0.store(sequence.wrapping_add(2), Ordering::Release);
        result
    }

    /// Runs `load` (relaxed atomic loads) once; `None` when a write was in progress or happened meanwhile.
    pub fn read<R>(&self, load: impl FnOnce() -> R) -> Option<R> {
        let before = self.0.load(Ordering::Acquire);
        if before % 2 == 1 {
            return None;
        }
        let result = load();
        fence(Ordering::Acquire);
        (self.0.load(Ordering::Relaxed) == before).then_some(result)
    }

    /// Like [`SeqCounter::read`], yielding and retrying while writes keep overlapping; `None` after
    /// [`READ_ATTEMPTS`] failed tries. Not for the audio thread.
    pub fn read_retrying<R>(&self, mut load: impl FnMut() -> R) -> Option<R> {
        for _ in 0..READ_ATTEMPTS {
            if let Some(result) = self.read(&mut load) {
                return Some(result);
            }
            std::thread::yield_now();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;

    #[test]
    fn read_sees_completed_writes() {
        let counter = SeqCounter::default();
        let value = AtomicU64::new(0);
        counter.write(|| value.store(7, Ordering::Relaxed));
        assert_eq!(counter.read(|| value.load(Ordering::Relaxed)), Some(7));
    }

    #[test]
    fn read_overlapping_a_write_is_rejected() {
        let counter = SeqCounter::default();
        let inner = counter.write(|| counter.read(|| ()));
        assert_eq!(inner, None);
    }

    #[test]
    fn concurrent_reads_never_see_a_half_written_pair() {
        let counter = Arc::new(SeqCounter::default());
        let pair = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let writer = {
            let (counter, pair) = (counter.clone(), pair.clone());
            std::thread::spawn(move || {
                for i in 1..=20_000u64 {
                    counter.write(|| {
                        pair[0].store(i, Ordering::Relaxed);
                        pair[1].store(i, Ordering::Relaxed);
                    });
                }
            })
        };
        while !writer.is_finished() {
            if let Some((a, b)) = counter.read(|| (pair[0].load(Ordering::Relaxed), pair[1].load(Ordering::Relaxed))) {
                assert_eq!(a, b);
            }
        }
        writer.join().unwrap();
        assert_eq!(counter.read_retrying(|| pair[0].load(Ordering::Relaxed)), Some(20_000));
    }
}
