//! `retake`: repaint, cover and text2music on WAV files from the command line, through the engine thread
//! (spec §13).

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
