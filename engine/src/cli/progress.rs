//! Job progress on stderr: an indicatif bar on a terminal, one plain line per event otherwise.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use retake_engine::runtime::Event;

/// Where progress goes.
pub enum ProgressView {
    /// A live bar (stderr is a terminal).
    Bar(ProgressBar),
    /// A line per event (stderr is a file or a pipe).
    Lines,
}

/// What one event says: a status text and, for steps and tiles, how far along the phase is.
#[derive(Debug, PartialEq)]
struct Status {
    text: String,
    done_of: Option<(usize, usize)>,
}

impl ProgressView {
    /// A bar when stderr is a terminal, plain lines otherwise.
    pub fn for_stderr() -> Self {
        if !std::io::stderr().is_terminal() {
            return Self::Lines;
        }
        let style = ProgressStyle::with_template("{spinner} {msg:32} [{bar:32}] {pos}/{len} {elapsed}")
            .expect("the template is well formed");
        let bar = ProgressBar::new(0).with_style(style.progress_chars("=> "));
        bar.enable_steady_tick(Duration::from_millis(120));
        Self::Bar(bar)
    }

    /// Shows a progress event; warnings always get a line of their own.
    pub fn show(&self, event: &Event) {
        if let Event::Warning(warning) = event {
            self.note(&format!("warning: {warning}"));
            return;
        }
        let Some(status) = status(event) else { return };
        match self {
            Self::Bar(bar) => {
                let (done, of) = status.done_of.unwrap_or((0, 0));
                // Length and position together, so no frame shows one phase's position against another's length.
                bar.update(|state| {
                    state.set_len(of as u64);
                    state.set_pos(done as u64);
                });
                bar.set_message(status.text);
            }
            Self::Lines => eprintln!("retake: {}", status.text),
        }
    }

    /// Prints a line above the bar (or as a plain line).
    pub fn note(&self, line: &str) {
        match self {
            Self::Bar(bar) => bar.println(format!("retake: {line}")),
            Self::Lines => eprintln!("retake: {line}"),
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Self::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// The status a progress event shows; `None` for results and warnings.
fn status(event: &Event) -> Option<Status> {
    let (text, done_of) = match event {
        Event::Queued { position, .. } => (format!("queued ({position} ahead)"), None),
        Event::Loading { component, bytes_done, bytes_total } => {
            let mb = |bytes: &u64| *bytes as f64 / 1e6;
            (format!("downloading {component} ({:.1}/{:.1} MB)", mb(bytes_done), mb(bytes_total)), None)
        }
        Event::Encoding { .. } => ("encoding".into(), None),
        Event::Step { k, n, eta, .. } => (format!("step {k}/{n} (eta {:.1} s)", eta.as_secs_f64()), Some((*k, *n))),
        Event::Decoding { tile, tiles, .. } => (format!("decoding tile {tile}/{tiles}"), Some((*tile, *tiles))),
        Event::Done { .. } | Event::Failed { .. } | Event::Cancelled { .. } | Event::Warning(_) => return None,
    };
    Some(Status { text, done_of })
}

#[cfg(test)]
mod tests {
    use retake_engine::runtime::JobId;

    use super::*;

    #[test]
    fn steps_and_tiles_report_their_fraction_and_the_rest_only_text() {
        let job = JobId(3);
        let step = status(&Event::Step { job, k: 2, n: 8, eta: Duration::from_millis(1_260) }).unwrap();
        assert_eq!(step, Status { text: "step 2/8 (eta 1.3 s)".into(), done_of: Some((2, 8)) });
        let tile = status(&Event::Decoding { job, tile: 1, tiles: 3 }).unwrap();
        assert_eq!(tile, Status { text: "decoding tile 1/3".into(), done_of: Some((1, 3)) });
        let loading = Event::Loading { component: "vae/x".into(), bytes_done: 1_500_000, bytes_total: 3_000_000 };
        assert_eq!(status(&loading).unwrap().text, "downloading vae/x (1.5/3.0 MB)");
        assert_eq!(status(&Event::Queued { job, position: 0 }).unwrap().text, "queued (0 ahead)");
        assert_eq!(status(&Event::Cancelled { job }), None);
    }
}
