//! The VAE latent of silence shipped with the checkpoint (`silence_latent.pt`, docs/acestep-model.md §1, §7, §10.1):
//! the context for text2music, the fill for repainted frames and the pad of the audio tokenizer.

use std::io::Read;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use super::checkpoint::Checkpoint;
use crate::error::{EngineError, Result};

/// The silence latent as frames `[L, C]` (time first), sliced and tiled on demand.
#[derive(Debug, Clone)]
pub struct SilenceLatent {
    frames: Tensor,
}

impl SilenceLatent {
    /// Reads the checkpoint's `silence_latent.pt` with `audio_acoustic_hidden_dim` channels, in the
    /// checkpoint's dtype and on its device.
    pub fn load(ckpt: &Checkpoint) -> Result<Self> {
        let path = ckpt.silence_file().ok_or_else(|| {
            EngineError::invalid(
                "a random-weight checkpoint has no silence latent file; build one with SilenceLatent::from_frames",
            )
        })?;
        let latent = Self::open(&path, ckpt.acestep.audio_acoustic_hidden_dim, ckpt.device())?;
        Ok(Self { frames: latent.frames.to_dtype(ckpt.dtype())? })
    }

    /// Reads a torch-saved float32 tensor `[1, channels, L]` (a zip whose entry `*/data/0` holds the raw
    /// little-endian values) and returns it as f32 frames `[L, channels]` on `device`.
    pub fn open(path: &Path, channels: usize, device: &Device) -> Result<Self> {
        let corrupt = |message: String| EngineError::CorruptWeights { path: path.to_path_buf(), message };
        let hint = "the model folder is incomplete; fetch ACE-Step/Ace-Step1.5 again";
        let file =
            std::fs::File::open(path).map_err(|source| EngineError::unreadable_model_file(path, source, hint))?;
        let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file))
            .map_err(|e| corrupt(format!("not a torch zip: {e}")))?;
        let names: Vec<String> = archive.file_names().filter_map(|n| n.ok().map(|n| n.into_owned())).collect();
        let entry = |suffix: &str| names.iter().find(|n| n.ends_with(suffix)).cloned();
        let mut read = |name: &str| -> Result<Vec<u8>> {
            let mut bytes = Vec::new();
            let mut file = archive.by_name(name).map_err(|e| corrupt(e.to_string()))?;
            file.read_to_end(&mut bytes).map_err(|e| corrupt(e.to_string()))?;
            Ok(bytes)
        };
        if let Some(order) = entry("/byteorder") {
            let text = String::from_utf8_lossy(&read(&order)?).into_owned();
            if text.trim() != "little" {
                return Err(corrupt(format!("tensor data is stored `{}`-endian, expected little", text.trim())));
            }
        }
        let data = entry("/data/0").ok_or_else(|| corrupt("no `data/0` entry: not a saved tensor".into()))?;
        let bytes = read(&data)?;
        let frame_bytes = channels * DType::F32.size_in_bytes();
        if channels == 0 || bytes.is_empty() || bytes.len() % frame_bytes != 0 {
            return Err(corrupt(format!(
                "{} bytes of data is not a whole number of {channels}-channel float32 frames",
                bytes.len()
            )));
        }
        let len = bytes.len() / frame_bytes;
        let values: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let frames = Tensor::from_vec(values, (channels, len), device)?.t()?.contiguous()?;
        Self::from_frames(frames)
    }

    /// Wraps frames `[L, C]` (L ≥ 1) — e.g. a synthetic silence for a random-weight checkpoint.
    pub fn from_frames(frames: Tensor) -> Result<Self> {
        let (len, _) = frames.dims2()?;
        if len == 0 {
            return Err(EngineError::invalid("the silence latent needs at least one frame"));
        }
        Ok(Self { frames })
    }

    /// Frames available before tiling starts.
    pub fn len(&self) -> usize {
        self.frames.dim(0).unwrap_or(0)
    }

    /// Always false: a silence latent has at least one frame.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Latent channels.
    pub fn channels(&self) -> usize {
        self.frames.dim(1).unwrap_or(0)
    }

    /// Frames `0..length` as `[length, C]`; the latent repeats from its start when `length` exceeds it.
    pub fn slice(&self, length: usize) -> Result<Tensor> {
        let available = self.len();
        if length <= available {
            return Ok(self.frames.narrow(0, 0, length)?);
        }
        let repeats = length.div_ceil(available);
        let tiled = Tensor::cat(&vec![&self.frames; repeats], 0)?;
        Ok(tiled.narrow(0, 0, length)?)
    }
}

crate::model::resident::resident_fields!(SilenceLatent { frames });

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn fixture() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/tiny-acestep/acestep-v15-turbo/silence_latent.pt")
    }

    fn ramp(len: usize, channels: usize) -> SilenceLatent {
        let values: Vec<f32> = (0..len * channels).map(|i| i as f32).collect();
        SilenceLatent::from_frames(Tensor::from_vec(values, (len, channels), &Device::Cpu).unwrap()).unwrap()
    }

    #[test]
    fn fixture_silence_has_length_from_data_size_and_is_time_major() {
        let silence = SilenceLatent::open(&fixture(), 64, &Device::Cpu).unwrap();
        assert_eq!((silence.len(), silence.channels()), (1000, 64));
        // The 256000 data bytes are 1333⅓ frames of 48 channels: a wrong channel count is rejected.
        let err = SilenceLatent::open(&fixture(), 48, &Device::Cpu).unwrap_err();
        assert!(matches!(err, EngineError::CorruptWeights { .. }), "{err}");
    }

    #[test]
    fn slice_longer_than_latent_repeats_from_the_start() {
        let silence = ramp(3, 2);
        let got: Vec<Vec<f32>> = silence.slice(7).unwrap().to_vec2().unwrap();
        let want: Vec<Vec<f32>> =
            [0, 1, 2, 0, 1, 2, 0].iter().map(|&t| vec![2. * t as f32, 2. * t as f32 + 1.]).collect();
        assert_eq!(got, want);
        assert_eq!(silence.slice(2).unwrap().to_vec2::<f32>().unwrap(), want[..2].to_vec());
    }

    #[test]
    fn missing_and_non_zip_files_are_typed_errors() {
        let dir = std::env::temp_dir().join(format!("retake-silence-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = SilenceLatent::open(&dir.join("absent.pt"), 64, &Device::Cpu).unwrap_err();
        assert!(matches!(missing, EngineError::MissingFile { .. }), "{missing}");
        let garbage = dir.join("garbage.pt");
        std::fs::write(&garbage, b"not a zip").unwrap();
        let corrupt = SilenceLatent::open(&garbage, 64, &Device::Cpu).unwrap_err();
        assert!(matches!(corrupt, EngineError::CorruptWeights { .. }), "{corrupt}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
