//! `retake`: repaint, cover and text2music on audio files from the command line, through the engine thread
//! (docs/acestep-model.md §13).

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
