//! The job row: Generate, a progress bar naming the stage and the time left, Cancel beside it, and the error
//! line in red under it.

use std::time::Duration;

use egui::{Color32, ProgressBar, RichText, Ui};

use crate::shared::{JobPhase, StatusBoard};

/// Red of error lines.
pub const ERROR_COLOR: Color32 = Color32::from_rgb(235, 95, 85);

/// What the editor asks of the job worker from the job row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobAction {
    Generate,
    Cancel,
}

/// The progress bar's text: the stage and, while the diffusion steps run, the time left.
pub fn progress_text(label: &str, time_left: Option<Duration>) -> String {
    match time_left {
        Some(left) if left.as_secs_f64() >= 60.0 => {
            let seconds = left.as_secs();
            format!("{label} · about {} min {:02} s left", seconds / 60, seconds % 60)
        }
        Some(left) => format!("{label} · about {:.0} s left", left.as_secs_f64().ceil()),
        None => label.to_string(),
    }
}

/// Draws the job row and the error line from `board`; returns what the user asked for.
pub fn job_row(ui: &mut Ui, board: &StatusBoard, region_text: &str) -> Option<JobAction> {
    let mut action = None;
    let idle = board.job == JobPhase::Idle;
    ui.horizontal(|ui| {
        let generate =
            egui::Button::new(RichText::new("Generate").strong().size(16.0)).min_size(egui::vec2(110.0, 30.0));
        if ui.add_enabled(idle, generate).on_hover_text("G: generate the region").clicked() {
            action = Some(JobAction::Generate);
        }
        let cancel_width = 80.0;
        let bar_width = (ui.available_width() - cancel_width - ui.spacing().item_spacing.x).max(80.0);
        let (text, fraction) = match &board.job {
            JobPhase::Idle => (format!("ready · Generate makes a take of {region_text}"), 0.0),
            JobPhase::Running { label, fraction } => (progress_text(label, board.time_left), *fraction),
        };
        let bar = ProgressBar::new(fraction).text(text).desired_width(bar_width).desired_height(30.0);
        // Idle, the bar is an empty track (a zero fill would still draw a dot).
        ui.add(if idle { bar.fill(Color32::TRANSPARENT) } else { bar });
        let cancel = egui::Button::new("Cancel").min_size(egui::vec2(cancel_width, 30.0));
        if ui.add_enabled(!idle, cancel).on_hover_text("Esc: stop the job").clicked() {
            action = Some(JobAction::Cancel);
        }
    });
    if let Some(error) = &board.error {
        ui.colored_label(ERROR_COLOR, RichText::new(error).strong());
    }
    action
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_text_names_the_stage_and_the_time_left() {
        assert_eq!(progress_text("loading the model: dit (3 of 12 MB)", None), "loading the model: dit (3 of 12 MB)");
        let step = progress_text("diffusion step 3 of 8", Some(Duration::from_millis(4_200)));
        assert_eq!(step, "diffusion step 3 of 8 · about 5 s left");
        let long = progress_text("diffusion step 1 of 50", Some(Duration::from_secs(125)));
        assert_eq!(long, "diffusion step 1 of 50 · about 2 min 05 s left");
    }
}
