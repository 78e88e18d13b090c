//! Controls that fit their parameter's type: segmented buttons for choices, switches for on/off, sliders with
//! units, a seed field with a dice button, the key as a dropdown, growing prompt and lyrics boxes with a menu of
//! prompt styles, the sampling row and the timbre reference. Every parameter change goes to the host as one
//! gesture (begin, set, end), so hosts record it as automation with the parameter's usual id.

use std::hash::{BuildHasher, Hasher};
use std::ops::RangeInclusive;
use std::path::PathBuf;

use egui::{Response, Sense, TextEdit, Ui};
use nih_plug::prelude::{Enum, EnumParam, FloatParam, IntParam, Param, ParamSetter};

use crate::params::{Key, Reference, RetakeParams, TaskMode, LANGUAGES};
use retake_engine::model::variant::Variant;

/// Prompt styles offered in the preset menu: (name, caption).
pub const PROMPT_PRESETS: [(&str, &str); 8] = [
    ("Lo-fi hip hop", "lo-fi hip hop, dusty drums, warm Rhodes, vinyl crackle, relaxed"),
    ("Indie rock", "indie rock, jangly electric guitars, live drums, bass, energetic"),
    ("Synthwave", "synthwave, analog synth pads, gated snare, retro 80s, driving bass"),
    ("Acoustic folk", "acoustic folk, fingerpicked guitar, soft vocals, intimate, warm"),
    ("Orchestral", "cinematic orchestral, strings, brass swells, timpani, epic"),
    ("House", "deep house, four on the floor kick, warm bass, airy pads, 124 bpm"),
    ("Jazz trio", "jazz piano trio, upright bass, brushed drums, swing, mellow"),
    ("Ambient", "ambient, evolving pads, soft textures, reverb, calm"),
];

/// The largest seed the Seed parameter holds.
const MAX_SEED: i32 = 999_999;

/// Sets `param` to `value` as one host gesture.
pub fn set_param<P: Param>(setter: &ParamSetter, param: &P, value: P::Plain) {
    setter.begin_set_parameter(param);
    setter.set_parameter(param, value);
    setter.end_set_parameter(param);
}

/// Sends a widget's change of `param` to the host: a drag is one gesture from its start to its end, any other
/// change (a click, typing, a key) one gesture of its own.
fn follow_widget<P: Param>(setter: &ParamSetter, param: &P, response: &Response, value: P::Plain) {
    if response.drag_started() {
        setter.begin_set_parameter(param);
    }
    if response.changed() {
        if response.dragged() {
            setter.set_parameter(param, value);
        } else {
            set_param(setter, param, value);
        }
    }
    if response.drag_stopped() {
        setter.end_set_parameter(param);
    }
}

/// Segmented buttons, one per choice of `param`, labelled `labels` (the parameter's own names when empty).
pub fn segmented<T: Enum + PartialEq + Copy + 'static>(
    ui: &mut Ui,
    setter: &ParamSetter,
    param: &EnumParam<T>,
    labels: &[&str],
) {
    let current = param.value();
    let names = T::variants();
    ui.horizontal(|ui| {
        ui.spacing_mut().item_spacing.x = 2.0;
        for (index, name) in names.iter().enumerate() {
            let choice = T::from_index(index);
            let label = labels.get(index).copied().unwrap_or(name);
            if ui.selectable_label(current == choice, label).clicked() && current != choice {
                set_param(setter, param, choice);
            }
        }
    });
}

/// An on/off switch.
fn switch(ui: &mut Ui, on: bool) -> Response {
    let size = ui.spacing().interact_size.y * egui::vec2(1.8, 0.9);
    let (rect, response) = ui.allocate_exact_size(size, Sense::click());
    if ui.is_rect_visible(rect) {
        let how_on = ui.ctx().animate_bool_responsive(response.id, on);
        let visuals = ui.style().interact_selectable(&response, on);
        let radius = 0.5 * rect.height();
        let fill = if on { ui.visuals().selection.bg_fill } else { visuals.bg_fill };
        ui.painter().rect(rect, radius, fill, visuals.bg_stroke, egui::StrokeKind::Inside);
        let x = egui::lerp((rect.left() + radius)..=(rect.right() - radius), how_on);
        ui.painter().circle(egui::pos2(x, rect.center().y), 0.75 * radius, visuals.fg_stroke.color, visuals.fg_stroke);
    }
    response
}

/// A labelled switch for a boolean parameter.
pub fn toggle(ui: &mut Ui, setter: &ParamSetter, param: &nih_plug::prelude::BoolParam, label: &str) -> Response {
    ui.horizontal(|ui| {
        let on = param.value();
        let response = switch(ui, on);
        if response.clicked() {
            set_param(setter, param, !on);
        }
        ui.label(label);
        response
    })
    .inner
}

/// A slider for a float parameter, shown as its value times `scale` with `suffix` (e.g. 100 and " %").
pub fn float_slider(ui: &mut Ui, setter: &ParamSetter, param: &FloatParam, scale: f32, suffix: &str) -> Response {
    let range = param.preview_plain(0.0) * scale..=param.preview_plain(1.0) * scale;
    let mut shown = param.unmodulated_plain_value() * scale;
    let decimals = if (range.end() - range.start()) >= 100.0 { 0 } else { 2 };
    let slider = egui::Slider::new(&mut shown, range).suffix(suffix).fixed_decimals(decimals);
    let response = ui.add(slider);
    follow_widget(setter, param, &response, shown / scale);
    response
}

/// A slider for an integer parameter.
fn int_slider(ui: &mut Ui, setter: &ParamSetter, param: &IntParam, suffix: &str) -> Response {
    let range: RangeInclusive<i32> = param.preview_plain(0.0)..=param.preview_plain(1.0);
    let mut value = param.unmodulated_plain_value();
    let response = ui.add(egui::Slider::new(&mut value, range).suffix(suffix));
    follow_widget(setter, param, &response, value);
    response
}

/// A seed from the process's randomly keyed hasher and the clock, within the Seed parameter's range.
pub fn random_seed() -> i32 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    hasher.write_u128(now.as_nanos());
    (hasher.finish() % (MAX_SEED as u64 + 1)) as i32
}

/// The seed as a number field and a dice button that picks a new one.
fn seed_field(ui: &mut Ui, setter: &ParamSetter, param: &IntParam) {
    ui.horizontal(|ui| {
        let mut seed = param.unmodulated_plain_value();
        let response = ui.add(egui::DragValue::new(&mut seed).range(0..=MAX_SEED).speed(1.0));
        follow_widget(setter, param, &response, seed);
        if ui.button("Dice").on_hover_text("a new random seed").clicked() {
            set_param(setter, param, random_seed());
        }
    });
}

/// The key as a dropdown.
fn key_dropdown(ui: &mut Ui, setter: &ParamSetter, param: &EnumParam<Key>) {
    let current = param.value();
    let names = Key::variants();
    egui::ComboBox::from_id_salt("retake-key").selected_text(names[current.to_index()]).width(110.0).show_ui(
        ui,
        |ui| {
            for (index, name) in names.iter().enumerate() {
                if ui.selectable_label(current.to_index() == index, *name).clicked() {
                    set_param(setter, param, Key::from_index(index));
                }
            }
        },
    );
}

/// Prompt and lyrics: boxes that grow with their text, and the preset menu of prompt styles.
pub fn text_fields(params: &RetakeParams, ui: &mut Ui) {
    ui.horizontal(|ui| {
        ui.strong("Prompt");
        ui.label("(style caption)");
        ui.menu_button("Presets", |ui| {
            for (name, caption) in PROMPT_PRESETS {
                if ui.button(name).on_hover_text(caption).clicked() {
                    *params.prompt.write() = caption.to_string();
                    ui.close();
                }
            }
        });
    });
    let mut prompt = params.prompt.read().clone();
    let edit = TextEdit::multiline(&mut prompt)
        .desired_rows(1)
        .desired_width(f32::INFINITY)
        .hint_text("e.g. indie rock, jangly guitars, live drums");
    if ui.add(edit).changed() {
        *params.prompt.write() = prompt;
    }
    ui.horizontal(|ui| {
        ui.strong("Lyrics");
        ui.label("(empty = instrumental)");
    });
    let mut lyrics = params.lyrics.read().clone();
    let edit = TextEdit::multiline(&mut lyrics).desired_rows(1).desired_width(f32::INFINITY).hint_text("[verse] …");
    if ui.add(edit).changed() {
        *params.lyrics.write() = lyrics;
    }
}

/// Mode, strength, seed, key, crossfade and follow loop.
pub fn main_controls(params: &RetakeParams, setter: &ParamSetter, ui: &mut Ui) {
    egui::Grid::new("retake-main-controls").num_columns(4).spacing([12.0, 6.0]).show(ui, |ui| {
        ui.label("Mode");
        segmented(ui, setter, &params.mode, &[]);
        ui.label("Strength");
        ui.add_enabled_ui(params.mode.value() != TaskMode::Text2Music, |ui| {
            float_slider(ui, setter, &params.strength, 100.0, " %")
                .on_hover_text("Repaint: how far the region may move from the original; Cover: how much of the original's structure it keeps")
                .on_disabled_hover_text("Text2Music starts from nothing but the prompt");
        });
        ui.end_row();
        ui.label("Seed");
        seed_field(ui, setter, &params.seed);
        ui.label("Key");
        key_dropdown(ui, setter, &params.key);
        ui.end_row();
        ui.label("Crossfade");
        float_slider(ui, setter, &params.xfade_ms, 1.0, " ms").on_hover_text("fade between original and take at the region's edges");
        ui.label("Region");
        toggle(ui, setter, &params.follow_loop, "Follow the host loop").on_hover_text(
            "On: the host's loop range is the region when it reports one; dragging on the timeline turns it off",
        );
        ui.end_row();
    });
}

/// Sampling controls: variant defaults, guidance, steps, shift, cover noise and the vocal language.
pub fn sampling(params: &RetakeParams, variant: Variant, setter: &ParamSetter, ui: &mut Ui) {
    let defaults = variant.defaults();
    let own = !params.variant_defaults.value();
    egui::Grid::new("retake-sampling").num_columns(4).spacing([12.0, 6.0]).show(ui, |ui| {
        ui.label("Sampling");
        toggle(ui, setter, &params.variant_defaults, "Variant defaults").on_hover_text(format!(
            "On: the {variant} variant's {} steps, shift {:.1}, guidance {:.1}; off: the controls below",
            defaults.steps, defaults.shift, defaults.cfg_scale
        ));
        ui.label("Guidance");
        let hint = if variant.is_turbo() {
            format!("{variant} is a turbo variant: it runs without guidance (1); pick a guided variant to use it")
        } else {
            "turn Variant defaults off to set it".to_string()
        };
        ui.add_enabled_ui(own && !variant.is_turbo(), |ui| {
            float_slider(ui, setter, &params.guidance, 1.0, " ×").on_disabled_hover_text(hint);
        });
        ui.end_row();
        ui.label("Steps");
        ui.add_enabled_ui(own, |ui| {
            int_slider(ui, setter, &params.steps, " steps")
                .on_disabled_hover_text(format!("{} (the variant's)", defaults.steps));
        });
        ui.label("Shift");
        ui.add_enabled_ui(own, |ui| {
            float_slider(ui, setter, &params.shift, 1.0, "")
                .on_disabled_hover_text(format!("{:.1} (the variant's)", defaults.shift));
        });
        ui.end_row();
        ui.label("Cover noise");
        ui.add_enabled_ui(params.mode.value() == TaskMode::Cover, |ui| {
            float_slider(ui, setter, &params.cover_noise, 100.0, " %").on_disabled_hover_text("used in Cover mode");
        });
        ui.label("Vocal language");
        let mut language = params.language.read().clone();
        egui::ComboBox::from_id_salt("retake-language").selected_text(language.as_str()).show_ui(ui, |ui| {
            for code in LANGUAGES {
                ui.selectable_value(&mut language, code.to_string(), code);
            }
        });
        if language != *params.language.read() {
            *params.language.write() = language;
        }
        ui.end_row();
    });
}

/// The timbre reference: none, one of this instance's takes, or a file path.
pub fn reference_row(params: &RetakeParams, ui: &mut Ui) {
    let mut reference = params.reference.read().clone();
    let takes: Vec<(u64, String)> = {
        let state = params.takes.read();
        state.takes.iter().map(|take| (take.id, state.name(take.id))).collect()
    };
    ui.horizontal(|ui| {
        ui.label("Timbre reference");
        let shown = match &reference {
            Reference::None => "none (default timbre)".to_string(),
            Reference::Take(id) => {
                takes.iter().find(|(take, _)| take == id).map_or(format!("take #{id}"), |t| t.1.clone())
            }
            Reference::File(_) => "file".to_string(),
        };
        egui::ComboBox::from_id_salt("retake-reference").selected_text(shown).show_ui(ui, |ui| {
            ui.selectable_value(&mut reference, Reference::None, "none (default timbre)");
            for (id, name) in takes.iter().rev() {
                ui.selectable_value(&mut reference, Reference::Take(*id), name);
            }
            if ui.selectable_label(matches!(reference, Reference::File(_)), "file").clicked() {
                reference = Reference::File(PathBuf::new());
            }
        });
        if let Reference::File(path) = &mut reference {
            let mut text = path.display().to_string();
            let edit = TextEdit::singleline(&mut text).hint_text("a WAV, AIFF, FLAC, MP3 or Ogg file, 1 s or more");
            if ui.add(edit.desired_width(360.0)).changed() {
                *path = PathBuf::from(text);
            }
        }
    });
    if reference != *params.reference.read() {
        *params.reference.write() = reference;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_seeds_lie_in_the_seed_range_and_differ() {
        let seeds: Vec<i32> = (0..32).map(|_| random_seed()).collect();
        assert!(seeds.iter().all(|seed| (0..=MAX_SEED).contains(seed)), "{seeds:?}");
        let distinct: std::collections::BTreeSet<_> = seeds.iter().collect();
        assert!(distinct.len() > 16, "the dice keep giving the same seeds: {seeds:?}");
        let params = RetakeParams::default();
        assert_eq!(params.seed.preview_plain(1.0), MAX_SEED, "the dice cover the whole Seed parameter");
    }

    #[test]
    fn presets_are_named_distinct_captions() {
        let captions: std::collections::BTreeSet<_> = PROMPT_PRESETS.iter().map(|(_, caption)| caption).collect();
        assert_eq!(captions.len(), PROMPT_PRESETS.len());
        assert!(PROMPT_PRESETS.iter().all(|(name, caption)| !name.is_empty() && caption.len() > 20));
    }
}
