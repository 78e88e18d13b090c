//! The nine ACE-Step 1.5 checkpoints (README.md, "Checkpoint variants"): where each one's DiT lives on the Hugging
//! Face hub and in the official `checkpoints/` layout, whether its weights are sharded, whether it is
//! guidance-distilled (turbo) or guided, and the sampling defaults it was made for.
//!
//! Every variant takes the VAE, the text encoder, its tokenizer and (unless its DiT folder has its own) the silence
//! latent from the main repo `ACE-Step/Ace-Step1.5` ([`crate::model::checkpoint::MAIN_FILES`]).

use std::fmt;
use std::str::FromStr;

use crate::error::Result;
use crate::model::scheduler::Schedule;

/// The Hugging Face repo of the main model (VAE, text encoder, tokenizer, silence latent) and of the turbo DiT.
pub const MAIN_REPO: &str = "ACE-Step/Ace-Step1.5";

/// One ACE-Step 1.5 checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Variant {
    /// `acestep-v15-turbo`, inside the main repo: 8 steps on the official turbo tables.
    #[default]
    Turbo,
    /// `acestep-v15-turbo-shift1`: turbo distilled at shift 1.
    TurboShift1,
    /// `acestep-v15-turbo-shift3`: turbo distilled at shift 3.
    TurboShift3,
    /// `acestep-v15-turbo-continuous`: turbo for any shift from 1 to 5, on the shift formula.
    TurboContinuous,
    /// `acestep-v15-base`: the guided 2B model.
    Base,
    /// `acestep-v15-sft`: the guided 2B model after supervised fine-tuning.
    Sft,
    /// `acestep-v15-xl-base`: the guided XL model (sharded weights).
    XlBase,
    /// `acestep-v15-xl-sft`: the guided XL model after supervised fine-tuning (sharded weights).
    XlSft,
    /// `acestep-v15-xl-turbo`: the turbo XL model (sharded weights).
    XlTurbo,
}

/// How the noise levels of a run are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleKind {
    /// The official turbo tables ([`Schedule::turbo`]): 8 fixed steps, the shift snapped to 1, 2 or 3.
    TurboTable,
    /// The shift formula over evenly spaced levels ([`Schedule::diffsynth`]): any step count, any shift.
    Formula,
}

impl ScheduleKind {
    /// The schedule of `steps` steps from `strength` (1 = pure noise) at `shift`: the turbo table (entered at the
    /// level nearest `strength`) when this is the table kind and `steps` is its 8, else the formula.
    pub fn schedule(self, steps: usize, strength: f64, shift: f64) -> Result<Schedule> {
        match self {
            Self::TurboTable if steps == TURBO_STEPS => Ok(Schedule::turbo(shift).start_at_cover_noise(1.0 - strength)),
            _ => Schedule::diffsynth(steps, strength, shift),
        }
    }
}

/// The sampling settings a variant was made for; each one can be overridden per job.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Defaults {
    /// Diffusion steps.
    pub steps: usize,
    /// Schedule shift.
    pub shift: f64,
    /// Classifier-free guidance scale (1 = off).
    pub cfg_scale: f64,
    /// How the noise levels are laid out.
    pub schedule: ScheduleKind,
}

/// The steps of the official turbo tables.
const TURBO_STEPS: usize = 8;
/// The guidance scale the guided variants default to.
const GUIDED_CFG: f64 = 4.0;
/// The steps the guided variants default to.
const GUIDED_STEPS: usize = 50;

impl Variant {
    /// All nine, in the order of the README's table.
    pub const ALL: [Self; 9] = [
        Self::Turbo,
        Self::TurboShift1,
        Self::TurboShift3,
        Self::TurboContinuous,
        Self::Base,
        Self::Sft,
        Self::XlBase,
        Self::XlSft,
        Self::XlTurbo,
    ];

    /// The name users type (`--variant`, `RETAKE_VARIANT`, the settings key `variant`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Turbo => "turbo",
            Self::TurboShift1 => "turbo-shift1",
            Self::TurboShift3 => "turbo-shift3",
            Self::TurboContinuous => "turbo-continuous",
            Self::Base => "base",
            Self::Sft => "sft",
            Self::XlBase => "xl-base",
            Self::XlSft => "xl-sft",
            Self::XlTurbo => "xl-turbo",
        }
    }

    /// The DiT folder's name in the official `checkpoints/` layout (`acestep-v15-<name>`).
    pub fn folder(self) -> &'static str {
        match self {
            Self::Turbo => "acestep-v15-turbo",
            Self::TurboShift1 => "acestep-v15-turbo-shift1",
            Self::TurboShift3 => "acestep-v15-turbo-shift3",
            Self::TurboContinuous => "acestep-v15-turbo-continuous",
            Self::Base => "acestep-v15-base",
            Self::Sft => "acestep-v15-sft",
            Self::XlBase => "acestep-v15-xl-base",
            Self::XlSft => "acestep-v15-xl-sft",
            Self::XlTurbo => "acestep-v15-xl-turbo",
        }
    }

    /// The Hugging Face repo holding the DiT: the main repo for turbo, `ACE-Step/<folder>` for the others.
    pub fn repo(self) -> String {
        match self {
            Self::Turbo => MAIN_REPO.to_owned(),
            other => format!("ACE-Step/{}", other.folder()),
        }
    }

    /// The folder inside [`repo`](Self::repo) holding the DiT's files: [`folder`](Self::folder) for turbo (which
    /// shares the main repo), `None` for the others, whose files are at the repo root.
    pub fn repo_folder(self) -> Option<&'static str> {
        match self {
            Self::Turbo => Some(self.folder()),
            _ => None,
        }
    }

    /// True when the DiT's weights are sharded (`model.safetensors.index.json` and the shards it names).
    pub fn is_sharded(self) -> bool {
        matches!(self, Self::XlBase | Self::XlSft | Self::XlTurbo)
    }

    /// True for the guidance-distilled variants, which run without classifier-free guidance (cfg 1).
    pub fn is_turbo(self) -> bool {
        matches!(self, Self::Turbo | Self::TurboShift1 | Self::TurboShift3 | Self::TurboContinuous | Self::XlTurbo)
    }

    /// The sampling settings this variant was made for (the table of README.md's "Checkpoint variants"): turbo
    /// variants 8 steps at cfg 1 on the turbo tables — shift 1 for turbo-shift1, and the shift formula, never
    /// snapped, for turbo-continuous — and guided variants 50 steps at cfg 4 on the formula; shift 3 elsewhere.
    pub fn defaults(self) -> Defaults {
        let (steps, cfg_scale, schedule) = match self {
            Self::TurboContinuous => (TURBO_STEPS, 1.0, ScheduleKind::Formula),
            turbo if turbo.is_turbo() => (TURBO_STEPS, 1.0, ScheduleKind::TurboTable),
            _ => (GUIDED_STEPS, GUIDED_CFG, ScheduleKind::Formula),
        };
        let shift = if self == Self::TurboShift1 { 1.0 } else { 3.0 };
        Defaults { steps, shift, cfg_scale, schedule }
    }

    /// The nine names, comma-separated, for messages.
    pub fn names() -> String {
        Self::ALL.map(Self::name).join(", ")
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Variant {
    type Err = String;

    /// A variant by its [`name`](Variant::name), ignoring case and surrounding blanks; anything else is refused
    /// with a message that lists the nine.
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let wanted = text.trim();
        Self::ALL
            .into_iter()
            .find(|v| v.name().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| format!("`{text}` is not an ACE-Step 1.5 variant; pick one of {}", Self::names()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_to_its_variant_and_names_are_distinct() {
        for variant in Variant::ALL {
            assert_eq!(variant.name().parse::<Variant>().unwrap(), variant);
            assert_eq!(format!(" {} ", variant.name().to_uppercase()).parse::<Variant>().unwrap(), variant);
            assert_eq!(variant.folder(), format!("acestep-v15-{}", variant.name()));
        }
        assert_eq!(Variant::default(), Variant::Turbo);
    }

    #[test]
    fn a_wrong_name_is_refused_listing_the_nine() {
        assert_eq!(
            "xl".parse::<Variant>().unwrap_err(),
            "`xl` is not an ACE-Step 1.5 variant; pick one of turbo, turbo-shift1, turbo-shift3, turbo-continuous, \
             base, sft, xl-base, xl-sft, xl-turbo"
        );
    }

    #[test]
    fn turbo_lives_in_the_main_repo_and_the_others_in_their_own() {
        assert_eq!(
            (Variant::Turbo.repo().as_str(), Variant::Turbo.repo_folder()),
            (MAIN_REPO, Some("acestep-v15-turbo"))
        );
        for variant in &Variant::ALL[1..] {
            assert_eq!(variant.repo(), format!("ACE-Step/acestep-v15-{}", variant.name()));
            assert_eq!(variant.repo_folder(), None, "{variant}");
        }
        let sharded: Vec<&str> = Variant::ALL.into_iter().filter(|v| v.is_sharded()).map(Variant::name).collect();
        assert_eq!(sharded, ["xl-base", "xl-sft", "xl-turbo"]);
    }

    #[test]
    fn defaults_follow_the_variant_table() {
        use ScheduleKind::{Formula, TurboTable};
        let table: Vec<(&str, usize, f64, f64, ScheduleKind, bool)> = Variant::ALL
            .into_iter()
            .map(|v| {
                let d = v.defaults();
                (v.name(), d.steps, d.shift, d.cfg_scale, d.schedule, v.is_turbo())
            })
            .collect();
        assert_eq!(
            table,
            [
                ("turbo", 8, 3.0, 1.0, TurboTable, true),
                ("turbo-shift1", 8, 1.0, 1.0, TurboTable, true),
                ("turbo-shift3", 8, 3.0, 1.0, TurboTable, true),
                ("turbo-continuous", 8, 3.0, 1.0, Formula, true),
                ("base", 50, 3.0, 4.0, Formula, false),
                ("sft", 50, 3.0, 4.0, Formula, false),
                ("xl-base", 50, 3.0, 4.0, Formula, false),
                ("xl-sft", 50, 3.0, 4.0, Formula, false),
                ("xl-turbo", 8, 3.0, 1.0, TurboTable, true),
            ]
        );
    }

    #[test]
    fn the_table_kind_snaps_8_steps_to_the_turbo_table_and_the_formula_never_snaps() {
        // Shift 2.4 snaps to the shift-2 table; the formula keeps 2.4 (turbo-continuous' "any shift 1..5").
        let table = ScheduleKind::TurboTable.schedule(8, 1.0, 2.4).unwrap();
        assert_eq!(table, Schedule::turbo(2.0));
        let formula = ScheduleKind::Formula.schedule(8, 1.0, 2.4).unwrap();
        assert_eq!(formula, Schedule::diffsynth(8, 1.0, 2.4).unwrap());
        assert_ne!(formula, table);
        // Other step counts take the formula on either kind; a partial strength enters the table part-way.
        assert_eq!(
            ScheduleKind::TurboTable.schedule(12, 1.0, 3.0).unwrap(),
            Schedule::diffsynth(12, 1.0, 3.0).unwrap()
        );
        assert_eq!(ScheduleKind::TurboTable.schedule(8, 0.5, 3.0).unwrap().sigmas(), &[0.5, 0.3]);
    }
}
