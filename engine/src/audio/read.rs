//! Audio files into [`Audio`] via symphonia: WAV (integer PCM, float, A-law/µ-law, WAVE_FORMAT_EXTENSIBLE, any
//! chunk layout), AIFF, FLAC, MP3 and Ogg Vorbis — what musicians drop in.
//!
//! The header is read first ([`AudioFile::open`]), so a caller can refuse a file by its rate or length before its
//! samples are decoded; [`AudioFile::decode`] also stops as soon as the decoded audio passes the length it was given,
//! for streams whose header does not tell.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use symphonia::core::codecs::audio::{AudioDecoder, AudioDecoderOptions};
use symphonia::core::errors::Error as DecodeError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::{MediaSource, MediaSourceStream, MediaSourceStreamOptions};
use symphonia::core::meta::MetadataOptions;

use super::Audio;
use crate::error::{EngineError, Result};

/// An opened audio file: its header read, its samples not yet decoded.
pub struct AudioFile {
    path: PathBuf,
    format: Box<dyn FormatReader>,
    decoder: Box<dyn AudioDecoder>,
    track: u32,
    sample_rate: u32,
    channels: usize,
    frames: Option<u64>,
}

impl AudioFile {
    /// Opens `path` and reads its header. A file that cannot be opened is an [`EngineError::Io`]; one that is
    /// not audio in a supported format is an [`EngineError::InvalidInput`] naming the path and what to export.
    pub fn open(path: &Path) -> Result<Self> {
        let io = |source| EngineError::Io { path: path.to_path_buf(), source };
        let source = ListPadFix::open(File::open(path).map_err(io)?).map_err(io)?;
        let stream = MediaSourceStream::new(Box::new(source), MediaSourceStreamOptions::default());
        let mut hint = Hint::new();
        if let Some(extension) = path.extension().and_then(|e| e.to_str()) {
            hint.with_extension(extension);
        }
        let unusable = |e| unusable(path, e);
        let format = symphonia::default::get_probe()
            .probe(&hint, stream, FormatOptions::default(), MetadataOptions::default())
            .map_err(unusable)?;
        let track = format
            .default_track(TrackType::Audio)
            .ok_or_else(|| unusable(DecodeError::Unsupported("the file holds no audio track")))?;
        let params = track
            .codec_params
            .as_ref()
            .and_then(|params| params.audio())
            .ok_or_else(|| unusable(DecodeError::Unsupported("the audio track has no codec parameters")))?;
        let sample_rate = params
            .sample_rate
            .filter(|&rate| rate > 0)
            .ok_or_else(|| unusable(DecodeError::Unsupported("the header gives no sample rate (or a rate of 0 Hz)")))?;
        let channels = params
            .channels
            .as_ref()
            .map(|channels| channels.count())
            .filter(|&count| count > 0)
            .ok_or_else(|| unusable(DecodeError::Unsupported("the header declares no channels")))?;
        // Gapless (the default): encoder delay and padding are trimmed, so MP3/Vorbis keep their timing.
        let decoder = symphonia::default::get_codecs()
            .make_audio_decoder(params, &AudioDecoderOptions::default())
            .map_err(unusable)?;
        let (track, frames) = (track.id, track.num_frames);
        Ok(Self { path: path.to_path_buf(), format, decoder, track, sample_rate, channels, frames })
    }

    /// Samples per second.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Channels.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Length in seconds as the header gives it, if it does (a streamed WAV or an Ogg stream may not).
    pub fn duration_s(&self) -> Option<f64> {
        self.frames.map(|frames| frames as f64 / f64::from(self.sample_rate))
    }

    /// Decodes every sample into planar f32. Integer samples are scaled by 2^(bits−1), so full scale maps to
    /// [−1, 1). A file longer than `max_duration_s` is refused — from its header before anything is decoded, or
    /// as soon as the decoded audio passes the limit — with an error naming the file and its length.
    pub fn decode(mut self, max_duration_s: f64) -> Result<Audio> {
        if let Some(seconds) = self.duration_s().filter(|&s| s > max_duration_s) {
            return Err(self.too_long(&format!("{seconds:.1} s long"), max_duration_s));
        }
        // Saturates to u64::MAX for an unlimited (infinite) duration.
        let max_frames = (max_duration_s * f64::from(self.sample_rate)).floor() as u64;
        let mut planar: Vec<Vec<f32>> = vec![Vec::new(); self.channels];
        let mut packet_planes: Vec<Vec<f32>> = Vec::new();
        loop {
            let packet = match self.format.next_packet() {
                Ok(Some(packet)) => packet,
                // The end: as declared, or of a stream that did not declare its length (a streamed WAV's data
                // runs to the end of the file).
                Ok(None) => break,
                Err(DecodeError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                // A chained Ogg stream starting anew: Retake takes the first one.
                Err(DecodeError::ResetRequired) => break,
                Err(e) => return Err(unusable(&self.path, e)),
            };
            if packet.track_id != self.track {
                continue;
            }
            let decoded = self.decoder.decode(&packet).map_err(|e| unusable(&self.path, e))?;
            if decoded.spec().channels().count() != self.channels {
                return Err(unusable(&self.path, DecodeError::DecodeError("the channel count changes mid-stream")));
            }
            if (planar[0].len() + decoded.frames()) as u64 > max_frames {
                return Err(self.too_long(&format!("longer than {max_duration_s} s"), max_duration_s));
            }
            decoded.copy_to_vecs_planar(&mut packet_planes);
            for (channel, samples) in planar.iter_mut().zip(&packet_planes) {
                channel.extend_from_slice(samples);
            }
        }
        Ok(Audio::new(self.sample_rate, planar))
    }

    fn too_long(&self, length: &str, max_duration_s: f64) -> EngineError {
        EngineError::invalid(format!(
            "`{}` is {length}; Retake takes at most {max_duration_s} s per job, so cut out the part to work on first",
            self.path.display()
        ))
    }
}

/// A file as symphonia reads it, with the size of every odd-sized `LIST` chunk of a WAV file (before its `data`)
/// rounded up over the chunk's pad byte. symphonia-format-riff reads such a chunk's pad byte twice — once in
/// `common.rs::ChunksReader::finish` for the list, once more when the parent's `ChunksReader::next` aligns — and then
/// misreads every chunk after it. Counting the pad byte into the list, which skips it as unread data, is the same
/// file to every other reader.
struct ListPadFix {
    file: File,
    /// Where the stream is.
    pos: u64,
    /// File offsets of the size fields to replace, and their replacements.
    patches: Vec<(u64, [u8; 4])>,
}

impl ListPadFix {
    fn open(mut file: File) -> std::io::Result<Self> {
        let patches = odd_list_sizes(&mut file)?;
        file.seek(SeekFrom::Start(0))?;
        Ok(Self { file, pos: 0, patches })
    }
}

/// The size fields of the odd-sized `LIST` chunks ahead of the `data` chunk of a RIFF/WAVE file (none for any
/// other file), each with its size plus the pad byte.
fn odd_list_sizes(file: &mut File) -> std::io::Result<Vec<(u64, [u8; 4])>> {
    let len = file.metadata()?.len();
    let mut header = [0u8; 12];
    if len < 12 || file.read_exact(&mut header).is_err() || &header[..4] != b"RIFF" || &header[8..] != b"WAVE" {
        return Ok(Vec::new());
    }
    let mut patches = Vec::new();
    let mut pos = 12u64;
    while pos + 8 <= len {
        let mut chunk = [0u8; 8];
        file.seek(SeekFrom::Start(pos))?;
        file.read_exact(&mut chunk)?;
        let size = u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
        match &chunk[..4] {
            b"data" => break,
            b"LIST" if size % 2 == 1 => patches.push((pos + 4, (size + 1).to_le_bytes())),
            _ => {}
        }
        pos += 8 + u64::from(size) + u64::from(size % 2);
    }
    Ok(patches)
}

impl Read for ListPadFix {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.file.read(buf)?;
        let span = self.pos..self.pos + read as u64;
        for (at, bytes) in &self.patches {
            for (offset, &byte) in (*at..).zip(bytes) {
                if span.contains(&offset) {
                    buf[(offset - self.pos) as usize] = byte;
                }
            }
        }
        self.pos = span.end;
        Ok(read)
    }
}

impl Seek for ListPadFix {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        self.pos = self.file.seek(to)?;
        Ok(self.pos)
    }
}

impl MediaSource for ListPadFix {
    fn is_seekable(&self) -> bool {
        self.file.is_seekable()
    }

    fn byte_len(&self) -> Option<u64> {
        self.file.byte_len()
    }
}

/// Reads a whole audio file of any length (any format [`AudioFile`] opens) into planar f32.
pub fn read_wav(path: &Path) -> Result<Audio> {
    AudioFile::open(path)?.decode(f64::INFINITY)
}

/// A decoder's complaint as an error naming the file: input/output faults stay I/O errors, everything else says
/// the file is not usable audio and what to export instead.
fn unusable(path: &Path, error: DecodeError) -> EngineError {
    let reason = match error {
        DecodeError::IoError(source) if source.kind() != std::io::ErrorKind::UnexpectedEof => {
            return EngineError::Io { path: path.to_path_buf(), source };
        }
        DecodeError::IoError(_) => "the file ends early".to_string(),
        other => other.to_string(),
    };
    EngineError::invalid(format!(
        "`{}` is not an audio file Retake can read ({reason}); export it as WAV (PCM or float), AIFF, FLAC, MP3 or \
         Ogg Vorbis",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use hound::{SampleFormat, WavSpec, WavWriter};

    use super::*;

    /// A RIFF/WAVE file of `chunks` (id, body), each body followed by its pad byte when its length is odd.
    fn riff(chunks: &[(&[u8; 4], Vec<u8>)]) -> Vec<u8> {
        let mut body = b"WAVE".to_vec();
        for (id, data) in chunks {
            body.extend_from_slice(*id);
            body.extend_from_slice(&(data.len() as u32).to_le_bytes());
            body.extend_from_slice(data);
            if data.len() % 2 == 1 {
                body.push(0);
            }
        }
        [b"RIFF".as_slice(), &(body.len() as u32).to_le_bytes(), &body].concat()
    }

    /// A plain PCM `fmt ` body.
    fn pcm_format(channels: u16, rate: u32, bits: u16) -> Vec<u8> {
        let block = channels * bits / 8;
        [
            &1u16.to_le_bytes()[..],
            &channels.to_le_bytes(),
            &rate.to_le_bytes(),
            &(rate * u32::from(block)).to_le_bytes(),
            &block.to_le_bytes(),
            &bits.to_le_bytes(),
        ]
        .concat()
    }

    fn i16_bytes(samples: &[i16]) -> Vec<u8> {
        samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    fn file(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn reads_a_wav_with_an_odd_sized_list_chunk_and_its_pad_byte_before_the_data() {
        // LIST/INFO holding one 5-byte ISFT entry: 17 bytes, so a pad byte follows before `data`.
        let info = [&b"INFO"[..], b"ISFT", &5u32.to_le_bytes(), b"Lavf\0"].concat();
        assert_eq!(info.len() % 2, 1);
        let samples = [1_000i16, -1_000, 16_384, -32_768, 32_767, 0];
        let dir = tempfile::tempdir().unwrap();
        let path = file(
            &dir,
            "list.wav",
            &riff(&[(b"fmt ", pcm_format(2, 44_100, 16)), (b"LIST", info), (b"data", i16_bytes(&samples))]),
        );
        let audio = read_wav(&path).unwrap();
        let scaled = |picks: [usize; 3]| picks.map(|i| f32::from(samples[i]) / 32_768.0).to_vec();
        assert_eq!(audio, Audio::new(44_100, vec![scaled([0, 2, 4]), scaled([1, 3, 5])]));
    }

    #[test]
    fn reads_wave_format_extensible_with_20_valid_bits_in_24() {
        // WAVE_FORMAT_EXTENSIBLE, stereo 48 kHz, 24-bit containers holding 20 valid bits (the low 4 bits zero).
        let guid_pcm = [0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71];
        let format = [
            &0xFFFEu16.to_le_bytes()[..],
            &2u16.to_le_bytes(),
            &48_000u32.to_le_bytes(),
            &(48_000u32 * 6).to_le_bytes(),
            &6u16.to_le_bytes(),
            &24u16.to_le_bytes(),
            &22u16.to_le_bytes(),
            &20u16.to_le_bytes(),
            &3u32.to_le_bytes(),
            &guid_pcm,
        ]
        .concat();
        let codes: [i32; 4] = [0x7FFFF << 4, -(0x80000 << 4), 0x12345 << 4, -(0x00010 << 4)];
        let data: Vec<u8> = codes.iter().flat_map(|c| c.to_le_bytes()[..3].to_vec()).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = file(&dir, "ext20.wav", &riff(&[(b"fmt ", format), (b"data", data)]));
        let audio = read_wav(&path).unwrap();
        let scaled = |picks: [usize; 2]| picks.map(|i| codes[i] as f32 / 8_388_608.0).to_vec();
        assert_eq!(audio, Audio::new(48_000, vec![scaled([0, 2]), scaled([1, 3])]));
    }

    #[test]
    fn reads_8_and_32_bit_integer_files() {
        let dir = tempfile::tempdir().unwrap();
        for (bits, codes) in [(8u16, [-128i32, 64, 127]), (32, [i32::MIN, 1 << 30, i32::MAX])] {
            let path = dir.path().join(format!("int{bits}.wav"));
            let spec =
                WavSpec { channels: 1, sample_rate: 8_000, bits_per_sample: bits, sample_format: SampleFormat::Int };
            let mut writer = WavWriter::create(&path, spec).unwrap();
            codes.iter().for_each(|&c| writer.write_sample(c).unwrap());
            writer.finalize().unwrap();
            let full_scale = 2f64.powi(i32::from(bits) - 1);
            let expected: Vec<f32> = codes.iter().map(|&c| (f64::from(c) / full_scale) as f32).collect();
            assert_eq!(read_wav(&path).unwrap(), Audio::new(8_000, vec![expected]));
        }
    }

    /// CRC-8 (polynomial 0x07) of a FLAC frame header.
    fn crc8(bytes: &[u8]) -> u8 {
        bytes
            .iter()
            .fold(0u8, |crc, &b| (0..8).fold(crc ^ b, |c, _| if c & 0x80 != 0 { (c << 1) ^ 0x07 } else { c << 1 }))
    }

    /// CRC-16 (polynomial 0x8005) of a whole FLAC frame.
    fn crc16(bytes: &[u8]) -> u16 {
        bytes.iter().fold(0u16, |crc, &b| {
            (0..8).fold(crc ^ (u16::from(b) << 8), |c, _| if c & 0x8000 != 0 { (c << 1) ^ 0x8005 } else { c << 1 })
        })
    }

    /// A 16-bit FLAC stream of `channels` in one frame of VERBATIM subframes (the FLAC format's uncompressed
    /// subframe). `declare_length: false` writes 0 ("unknown") as the total sample count.
    fn flac(rate: u32, channels: &[Vec<i16>], declare_length: bool) -> Vec<u8> {
        let frames = channels[0].len();
        let total = if declare_length { frames as u64 } else { 0 };
        let packed = (u64::from(rate) << 44) | ((channels.len() as u64 - 1) << 41) | (15 << 36) | total;
        let block = (frames as u16).to_be_bytes();
        let mut out = b"fLaC".to_vec();
        out.extend_from_slice(&[0x80, 0, 0, 34]); // the last metadata block: STREAMINFO, 34 bytes
        out.extend_from_slice(&[block, block].concat());
        out.extend_from_slice(&[0; 6]); // frame sizes unknown
        out.extend_from_slice(&packed.to_be_bytes());
        out.extend_from_slice(&[0; 16]); // no MD5
        let frame_start = out.len();
        // Sync, fixed blocking; block size in 16 bits after the header, rate from STREAMINFO; independent
        // channels, 16 bits per sample; frame number 0.
        out.extend_from_slice(&[0xFF, 0xF8, 0x70, ((channels.len() as u8 - 1) << 4) | 0x08, 0x00]);
        out.extend_from_slice(&(frames as u16 - 1).to_be_bytes());
        out.push(crc8(&out[frame_start..]));
        for channel in channels {
            out.push(0x02); // VERBATIM, no wasted bits
            out.extend(channel.iter().flat_map(|s| s.to_be_bytes()));
        }
        let crc = crc16(&out[frame_start..]);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    fn tone(frames: usize, phase: usize) -> Vec<i16> {
        (0..frames).map(|i| (((i * 37 + phase) % 2_001) as i32 * 32 - 32_000) as i16).collect()
    }

    #[test]
    fn reads_flac() {
        let (left, right) = (tone(1_000, 0), tone(1_000, 500));
        let dir = tempfile::tempdir().unwrap();
        let path = file(&dir, "take.flac", &flac(44_100, &[left.clone(), right.clone()], true));
        let scaled = |c: &[i16]| c.iter().map(|&s| f32::from(s) / 32_768.0).collect();
        let opened = AudioFile::open(&path).unwrap();
        assert_eq!(
            (opened.sample_rate(), opened.channels(), opened.duration_s()),
            (44_100, 2, Some(1_000.0 / 44_100.0))
        );
        assert_eq!(opened.decode(600.0).unwrap(), Audio::new(44_100, vec![scaled(&left), scaled(&right)]));
    }

    /// A 72 KB file whose header says 1 Hz is ten hours long: refused from the header, before its 36000
    /// samples are decoded (and long before anything is resampled to 48 kHz).
    #[test]
    fn a_header_longer_than_the_limit_is_refused_before_decoding() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(&dir, "slow.wav", &riff(&[(b"fmt ", pcm_format(1, 1, 16)), (b"data", vec![0; 72_000])]));
        let opened = AudioFile::open(&path).unwrap();
        assert_eq!(opened.duration_s(), Some(36_000.0));
        let err = opened.decode(600.0).unwrap_err().to_string();
        assert!(err.contains("slow.wav` is 36000.0 s long; Retake takes at most 600 s per job"), "{err}");
    }

    #[test]
    fn a_stream_that_does_not_declare_its_length_stops_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(&dir, "open.flac", &flac(1_000, &[tone(3_000, 0)], false));
        let opened = AudioFile::open(&path).unwrap();
        assert_eq!(opened.duration_s(), None);
        let err = opened.decode(2.0).unwrap_err().to_string();
        assert!(err.contains("open.flac` is longer than 2 s"), "{err}");
        assert_eq!(read_wav(&path).unwrap().len(), 3_000);
    }

    /// Streaming writers (ffmpeg to a pipe) declare the largest sizes, which mean "unknown": the file is as long
    /// as what it holds.
    #[test]
    fn a_streamed_wav_of_unknown_length_reads_what_it_holds() {
        let mut bytes = riff(&[(b"fmt ", pcm_format(1, 8_000, 16)), (b"data", i16_bytes(&tone(8_000, 0)))]);
        let data_size_at = bytes.len() - 16_000 - 4;
        bytes[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        bytes[data_size_at..data_size_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let dir = tempfile::tempdir().unwrap();
        let path = file(&dir, "stream.wav", &bytes);
        let opened = AudioFile::open(&path).unwrap();
        assert_eq!(opened.duration_s(), None);
        assert_eq!(opened.decode(600.0).unwrap().len(), 8_000);
    }

    #[test]
    fn missing_file_error_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.wav");
        let err = read_wav(&path).unwrap_err();
        assert!(matches!(&err, EngineError::Io { path: p, .. } if *p == path), "{err}");
    }

    #[test]
    fn a_file_that_is_not_audio_is_invalid_input_naming_the_path_and_the_formats() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(&dir, "notes.wav", b"not a riff file");
        let err = read_wav(&path).unwrap_err();
        assert!(matches!(&err, EngineError::InvalidInput(m) if m.contains(&path.display().to_string())), "{err}");
        assert!(err.to_string().contains("export it as WAV (PCM or float), AIFF, FLAC, MP3 or Ogg Vorbis"), "{err}");
    }
}
