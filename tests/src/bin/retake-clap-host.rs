//! Runs one CLAP round trip (see `retake_tests::scenarios`) in its own process, so a test can give it its own
//! environment and observe an `assert_process_allocs` abort as exit status 134.
//!
//! Usage: `retake-clap-host <repaint|cover|state> <path/to/Retake.clap>`; exit status 0 when every check
//! passed, 1 with the reason on stderr otherwise, 2 for bad arguments.

use std::path::PathBuf;
use std::process::ExitCode;

use retake_tests::scenarios;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [scenario, bundle] = args.as_slice() else {
        eprintln!("usage: retake-clap-host <{}> <path/to/Retake.clap>", scenarios::SCENARIOS.join("|"));
        return ExitCode::from(2);
    };
    let bundle = PathBuf::from(bundle);
    let label = format!("CLAP host, {}, {scenario}", bundle.display());
    match scenarios::run(scenario, &bundle) {
        Ok(report) => {
            for line in report {
                println!("{label}: {line}");
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("{label}: FAILED: {err}");
            ExitCode::FAILURE
        }
    }
}
