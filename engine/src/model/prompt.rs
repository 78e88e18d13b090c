//! Caption and lyric prompt templates and their tokenizer (docs/acestep-model.md §3.2, §3.3; official "N/A" metas,
//! §13).

use std::path::Path;

use serde::{Deserialize, Serialize};
use tokenizers::{PostProcessor, Tokenizer, TruncationDirection};

use super::checkpoint::{Checkpoint, TEXT_DIR};
use crate::error::{EngineError, Result};

/// Token budget of the caption prompt, appended `<|endoftext|>` included.
pub const CAPTION_MAX_TOKENS: usize = 256;
/// Token budget of the lyric prompt, appended `<|endoftext|>` included.
pub const LYRIC_MAX_TOKENS: usize = 2048;

/// The end-of-text special token that closes both templates.
const END_OF_TEXT: &str = "<|endoftext|>";
/// What a missing meta prints (official behaviour).
const MISSING_META: &str = "N/A";
/// What the official code writes when no duration is known.
const MISSING_DURATION: &str = "30 seconds";
/// The language line when none is given.
const UNKNOWN_LANGUAGE: &str = "unknown";

/// The task instruction at the top of the caption prompt (official `TASK_INSTRUCTIONS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instruction {
    /// Generate from text alone; also the second half of a partial-strength cover.
    Text2Music,
    /// Restyle the source while keeping its structure.
    Cover,
    /// Regenerate the masked region.
    Repaint,
}

impl Instruction {
    /// The instruction sentence, colon included.
    pub fn text(self) -> &'static str {
        match self {
            Self::Text2Music => "Fill the audio semantic mask based on the given conditions:",
            Self::Cover => "Generate audio semantic tokens based on the given conditions:",
            Self::Repaint => "Repaint the mask area based on the given conditions:",
        }
    }
}

/// Musical metadata written into the caption prompt's metas block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metas {
    /// Tempo in beats per minute.
    pub bpm: Option<f64>,
    /// Time signature numerator as the model expects it ("4", "3", …).
    pub time_signature: Option<String>,
    /// Key and scale ("D minor").
    pub key: Option<String>,
    /// Duration in seconds written into the prompt; studio mode derives it from the source when absent.
    pub duration_s: Option<f64>,
}

/// Checks that an optional number is finite and not negative.
fn checked(value: Option<f64>, what: &str) -> Result<Option<f64>> {
    match value {
        Some(v) if !v.is_finite() || v < 0.0 => {
            Err(EngineError::invalid(format!("{what} is {v}; give a finite, non-negative number or leave it empty")))
        }
        _ => Ok(value),
    }
}

/// The metas block: `- bpm: ..\n- timesignature: ..\n- keyscale: ..\n- duration: {int(s)} seconds\n`.
///
/// Missing fields print `N/A` and a missing duration `30 seconds`, as the official code does. The tempo
/// prints without decimals when whole (84 → `84`, 84.5 → `84.5`); the duration is truncated to whole seconds.
pub fn metas_block(metas: &Metas) -> Result<String> {
    let bpm = checked(metas.bpm, "bpm")?.map_or_else(|| MISSING_META.to_string(), |b| b.to_string());
    let duration = checked(metas.duration_s, "duration")?
        .map_or_else(|| MISSING_DURATION.to_string(), |d| format!("{} seconds", d as u64));
    Ok(format!(
        "- bpm: {bpm}\n- timesignature: {}\n- keyscale: {}\n- duration: {duration}\n",
        metas.time_signature.as_deref().unwrap_or(MISSING_META),
        metas.key.as_deref().unwrap_or(MISSING_META),
    ))
}

/// The caption prompt fed through the whole text encoder.
pub fn caption_prompt(instruction: Instruction, caption: &str, metas: &Metas) -> Result<String> {
    Ok(format!(
        "# Instruction\n{}\n\n# Caption\n{caption}\n\n# Metas\n{}{END_OF_TEXT}\n",
        instruction.text(),
        metas_block(metas)?
    ))
}

/// The lyric prompt fed through the embedding table only; an empty language prints `unknown`.
pub fn lyric_prompt(language: &str, lyrics: &str) -> String {
    let language = if language.trim().is_empty() { UNKNOWN_LANGUAGE } else { language };
    format!("# Languages\n{language}\n\n# Lyric\n{lyrics}{END_OF_TEXT}")
}

/// Wraps an error of the `tokenizers` crate.
fn tokenizer_error(e: tokenizers::Error) -> EngineError {
    EngineError::Tokenizer(e.to_string())
}

/// The Qwen3 byte-level BPE tokenizer of the text encoder (`tokenizer.json`).
#[derive(Clone)]
pub struct PromptTokenizer {
    tokenizer: Tokenizer,
}

impl PromptTokenizer {
    /// Loads a `tokenizer.json`; truncation and padding settings stored in it are ignored (each call
    /// states its own budget, as the reference does).
    pub fn from_file(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(EngineError::MissingFile {
                path: path.to_path_buf(),
                hint: "the text encoder folder is incomplete; fetch ACE-Step/Ace-Step1.5 again".into(),
            });
        }
        let load_error = |e: tokenizers::Error| {
            EngineError::Tokenizer(format!("cannot load `{}`: {e}; re-download the model", path.display()))
        };
        let mut tokenizer = Tokenizer::from_file(path).map_err(load_error)?;
        // Like the reference's per-call arguments, ignore any truncation or padding stored in the file.
        tokenizer.with_truncation(None).map_err(load_error)?.with_padding(None);
        Ok(Self { tokenizer })
    }

    /// Loads the tokenizer of a model folder.
    pub fn open(checkpoint: &Checkpoint) -> Result<Self> {
        let path = checkpoint.file(&format!("{TEXT_DIR}/tokenizer.json")).ok_or_else(|| {
            EngineError::Tokenizer("a random-weight checkpoint has no tokenizer.json; open a model folder".into())
        })?;
        Self::from_file(&path)
    }

    /// Token ids of `text`; with `add_special_tokens` the post-processor appends `<|endoftext|>`.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let encoding = self.tokenizer.encode(text, add_special_tokens).map_err(tokenizer_error)?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Token ids of a prompt with special tokens, cut to at most `max_tokens` the way the reference's
    /// `truncation=True` does: the text is cut from the right so the appended special tokens still fit.
    pub fn encode_prompt(&self, text: &str, max_tokens: usize) -> Result<Vec<u32>> {
        let added = self.tokenizer.get_post_processor().map_or(0, |p| p.added_tokens(false));
        if max_tokens <= added {
            return Err(EngineError::invalid(format!(
                "a prompt budget of {max_tokens} tokens leaves no room for text next to the {added} special tokens"
            )));
        }
        let mut encoding = self.tokenizer.encode(text, false).map_err(tokenizer_error)?;
        encoding.truncate(max_tokens - added, 0, TruncationDirection::Right);
        let encoding = self.tokenizer.post_process(encoding, None, true).map_err(tokenizer_error)?;
        Ok(encoding.get_ids().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    const EOS: u32 = 151643;

    fn tokenizer() -> PromptTokenizer {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny-acestep");
        PromptTokenizer::from_file(&root.join(TEXT_DIR).join("tokenizer.json")).unwrap()
    }

    fn full_metas() -> Metas {
        Metas { bpm: Some(84.0), time_signature: Some("4".into()), key: Some("D minor".into()), duration_s: Some(4.9) }
    }

    #[test]
    fn caption_prompt_matches_the_reference_template_exactly() {
        let prompt = caption_prompt(Instruction::Repaint, "lo-fi", &full_metas()).unwrap();
        assert_eq!(
            prompt,
            "# Instruction\nRepaint the mask area based on the given conditions:\n\n# Caption\nlo-fi\n\n# Metas\n\
             - bpm: 84\n- timesignature: 4\n- keyscale: D minor\n- duration: 4 seconds\n<|endoftext|>\n"
        );
    }

    #[test]
    fn missing_metas_print_na_and_thirty_seconds() {
        assert_eq!(
            metas_block(&Metas::default()).unwrap(),
            "- bpm: N/A\n- timesignature: N/A\n- keyscale: N/A\n- duration: 30 seconds\n"
        );
    }

    #[test]
    fn fractional_bpm_keeps_its_decimals_and_duration_truncates() {
        let metas = Metas { bpm: Some(84.5), duration_s: Some(59.999), ..Metas::default() };
        assert_eq!(
            metas_block(&metas).unwrap(),
            "- bpm: 84.5\n- timesignature: N/A\n- keyscale: N/A\n- duration: 59 seconds\n"
        );
    }

    #[test]
    fn non_finite_or_negative_metas_are_rejected() {
        for metas in [
            Metas { bpm: Some(f64::NAN), ..Metas::default() },
            Metas { duration_s: Some(f64::INFINITY), ..Metas::default() },
            Metas { duration_s: Some(-1.0), ..Metas::default() },
        ] {
            assert!(matches!(metas_block(&metas), Err(EngineError::InvalidInput(_))), "{metas:?}");
        }
    }

    #[test]
    fn instruction_texts_are_the_reference_ones() {
        assert_eq!(Instruction::Cover.text(), "Generate audio semantic tokens based on the given conditions:");
        assert_eq!(Instruction::Repaint.text(), "Repaint the mask area based on the given conditions:");
        assert_eq!(Instruction::Text2Music.text(), "Fill the audio semantic mask based on the given conditions:");
    }

    #[test]
    fn lyric_prompt_has_no_trailing_newline_and_defaults_the_language() {
        assert_eq!(lyric_prompt("en", "la la\n"), "# Languages\nen\n\n# Lyric\nla la\n<|endoftext|>");
        assert_eq!(lyric_prompt("", ""), "# Languages\nunknown\n\n# Lyric\n<|endoftext|>");
    }

    #[test]
    fn special_tokens_append_one_end_of_text() {
        let tok = tokenizer();
        assert_eq!(tok.encode("hello world", false).unwrap(), vec![14990, 1879]);
        assert_eq!(tok.encode("hello world", true).unwrap(), vec![14990, 1879, EOS]);
    }

    #[test]
    fn caption_prompt_tokens_end_with_eos_newline_eos() {
        let ids =
            tokenizer().encode_prompt(&caption_prompt(Instruction::Cover, "x", &full_metas()).unwrap(), 256).unwrap();
        assert_eq!(ids[ids.len() - 3..], [EOS, 198, EOS]);
    }

    #[test]
    fn truncation_keeps_the_appended_end_of_text_within_the_budget() {
        let tok = tokenizer();
        let text = "one two three four five six seven";
        let full = tok.encode(text, false).unwrap();
        let cut = tok.encode_prompt(text, 4).unwrap();
        assert_eq!(cut, [&full[..3], &[EOS]].concat());
        assert_eq!(tok.encode_prompt(text, 100).unwrap(), tok.encode(text, true).unwrap());
        assert!(matches!(tok.encode_prompt(text, 1), Err(EngineError::InvalidInput(_))));
    }

    #[test]
    fn missing_tokenizer_file_is_typed() {
        let err = PromptTokenizer::from_file(Path::new("/nonexistent/tokenizer.json")).err().unwrap();
        assert!(matches!(err, EngineError::MissingFile { .. }), "{err}");
    }
}
