//! Overlap-discard tiling of long VAE jobs (docs/acestep-model.md §8 "Tiling", §12 memory): each tile is computed over
//! a window reaching `overlap` latent frames past its core on both sides, and only the core is kept.

use std::ops::{ControlFlow, Range};

use candle_core::Tensor;

use crate::error::{EngineError, Result};

/// Called after each tile with `(tiles done, tiles in the job)`, and with the same count between the layers of a
/// tile, so that a cancel takes effect within one layer, not one tile; returning `Break` cancels the job.
pub type TileProgress<'a> = &'a mut dyn FnMut(usize, usize) -> ControlFlow<()>;

/// Asked between the layers of a tile whether to go on: [`EngineError::Cancelled`] stops the job.
pub(super) type Poll<'a> = &'a mut dyn FnMut() -> Result<()>;

/// Tile sizes, in latent frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiling {
    /// Longest window computed at once; a job that fits runs as one tile.
    pub chunk: usize,
    /// Frames of context on each side of a core, computed and discarded.
    pub overlap: usize,
}

impl Tiling {
    /// The official decode tiling: 512-frame windows with 64 frames of overlap (cores of 384 frames).
    pub const DECODE: Tiling = Tiling { chunk: 512, overlap: 64 };
    /// The official encode tiling at 25 Hz latents: 30 s windows with 2 s of overlap.
    pub const ENCODE: Tiling = Tiling { chunk: 750, overlap: 50 };
    /// One window whatever the length (memory grows with it: ≈2 GB per 512 frames at the real geometry).
    pub const UNTILED: Tiling = Tiling { chunk: usize::MAX, overlap: 0 };

    /// The tiles covering `frames` frames, in order; their cores partition `0..frames`.
    pub(super) fn plan(&self, frames: usize) -> Result<Vec<Tile>> {
        if frames <= self.chunk {
            return Ok(vec![Tile { window: 0..frames, core: 0..frames }]);
        }
        if self.chunk <= 2 * self.overlap {
            return Err(EngineError::invalid(format!(
                "VAE tiling chunk {} must exceed twice the overlap {}; use a larger chunk or a smaller overlap",
                self.chunk, self.overlap
            )));
        }
        let stride = self.chunk - 2 * self.overlap;
        Ok((0..frames.div_ceil(stride))
            .map(|i| {
                let core = i * stride..((i + 1) * stride).min(frames);
                Tile { window: core.start.saturating_sub(self.overlap)..(core.end + self.overlap).min(frames), core }
            })
            .collect())
    }
}

/// One tile of a plan, in latent frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Tile {
    /// Frames computed.
    pub window: Range<usize>,
    /// Frames kept (inside `window`).
    pub core: Range<usize>,
}

impl Tile {
    /// Where the core lies inside the window's output, for an output with `per_frame` rows per latent frame.
    pub fn core_in_window(&self, per_frame: usize) -> Range<usize> {
        let start = (self.core.start - self.window.start) * per_frame;
        start..start + self.core.len() * per_frame
    }
}

/// One overlap-discard pass over a batch `input` `[batch, channels, length]`: for each item and tile, `forward` maps
/// the item's channels-last rows `rows(tile)` to output rows, of which the tile's core (`per_frame` output rows per
/// latent frame) is kept; `forward` calls the poll it is given between its layers. Returns `[batch, output
/// channels, kept rows]`; each finished tile and each poll is reported to `progress`, whose `Break` ends the pass
/// with [`EngineError::Cancelled`].
pub(super) fn run_tiles(
    input: &Tensor,
    tiles: &[Tile],
    per_frame: usize,
    rows: impl Fn(&Tile) -> Range<usize>,
    forward: impl Fn(&Tensor, Poll) -> Result<Tensor>,
    progress: TileProgress,
) -> Result<Tensor> {
    let batch = input.dim(0)?;
    let mut ticker = Ticker::new(batch * tiles.len(), progress);
    let mut items = Vec::with_capacity(batch);
    for item in 0..batch {
        let x = input.get(item)?.t()?.contiguous()?;
        let mut cores = Vec::with_capacity(tiles.len());
        for tile in tiles {
            let rows = rows(tile);
            let out = forward(&x.narrow(0, rows.start, rows.len())?, &mut || ticker.poll())?;
            let core = tile.core_in_window(per_frame);
            cores.push(if tiles.len() == 1 { out } else { out.narrow(0, core.start, core.len())? });
            ticker.tick()?;
        }
        items.push(Tensor::cat(&cores, 0)?.t()?);
    }
    Ok(Tensor::stack(&items, 0)?)
}

/// Counts finished tiles across a job and reports them, turning a `Break` into [`EngineError::Cancelled`].
struct Ticker<'a> {
    done: usize,
    total: usize,
    progress: TileProgress<'a>,
}

impl<'a> Ticker<'a> {
    /// A job of `total` tiles.
    fn new(total: usize, progress: TileProgress<'a>) -> Self {
        Self { done: 0, total, progress }
    }

    /// Records one finished tile.
    fn tick(&mut self) -> Result<()> {
        self.done += 1;
        self.poll()
    }

    /// Reports the tiles done so far again, as a chance to cancel inside a tile.
    fn poll(&mut self) -> Result<()> {
        match (self.progress)(self.done, self.total) {
            ControlFlow::Continue(()) => Ok(()),
            ControlFlow::Break(()) => Err(EngineError::Cancelled),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_jobs_are_one_tile() {
        assert_eq!(Tiling::DECODE.plan(512).unwrap(), vec![Tile { window: 0..512, core: 0..512 }]);
    }

    #[test]
    fn cores_partition_the_job_and_windows_add_the_overlap() {
        let tiles = Tiling::DECODE.plan(1000).unwrap();
        assert_eq!(
            tiles,
            vec![
                Tile { window: 0..448, core: 0..384 },
                Tile { window: 320..832, core: 384..768 },
                Tile { window: 704..1000, core: 768..1000 },
            ]
        );
        assert_eq!(tiles[1].core_in_window(1920), 64 * 1920..448 * 1920);
    }

    #[test]
    fn chunk_not_above_twice_the_overlap_is_rejected() {
        let err = Tiling { chunk: 8, overlap: 4 }.plan(20).unwrap_err();
        assert!(matches!(err, EngineError::InvalidInput(ref m) if m.contains("twice the overlap")), "{err}");
    }

    #[test]
    fn break_from_progress_cancels() {
        let mut calls = Vec::new();
        let mut progress = |done: usize, total: usize| {
            calls.push((done, total));
            if done == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        let mut ticker = Ticker::new(3, &mut progress);
        ticker.tick().unwrap();
        assert!(matches!(ticker.tick(), Err(EngineError::Cancelled)));
        assert_eq!(calls, vec![(1, 3), (2, 3)]);
    }
}
