//! Showing a take's file in the system's file manager, so it can be dragged into the host. Runs on
//! the editor thread; the file manager is started and never waited for.

use std::io;
use std::path::Path;
use std::process::{Command, Stdio};

/// The command that shows `file` in the platform's file manager: selected in Finder (`open -R`) and Explorer
/// (`explorer /select,"<file>"`); elsewhere its folder is opened with `xdg-open`, which cannot select a file.
pub fn reveal_command(file: &Path) -> Command {
    #[cfg(target_os = "macos")]
    let mut command = {
        let mut command = Command::new("open");
        command.arg("-R").arg(file);
        command
    };
    // Explorer reads its command line itself and wants the path quoted after the comma (a user folder such as
    // `C:\Users\Jane Doe` holds spaces), so the argument goes in as written rather than quoted whole.
    #[cfg(windows)]
    let mut command = {
        use std::os::windows::process::CommandExt;
        let mut command = Command::new("explorer");
        let mut select = std::ffi::OsString::from("/select,\"");
        select.push(file);
        select.push("\"");
        command.raw_arg(select);
        command
    };
    #[cfg(not(any(target_os = "macos", windows)))]
    let mut command = {
        let mut command = Command::new("xdg-open");
        command.arg(file.parent().unwrap_or(file));
        command
    };
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    command
}

/// Starts the file manager on `file` without waiting for it; a background thread reaps it when it exits.
/// Fails when `file` does not exist or no file manager could be started.
pub fn reveal(file: &Path) -> io::Result<()> {
    if !file.is_file() {
        return Err(io::Error::new(io::ErrorKind::NotFound, format!("{} does not exist", file.display())));
    }
    let mut child = reveal_command(file).spawn()?;
    std::thread::Builder::new().name("retake-reveal".into()).spawn(move || {
        let _ = child.wait();
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn on_linux_the_take_folder_is_opened_with_xdg_open() {
        let command = reveal_command(Path::new("/data/retake/takes/p1/take-001-44k.wav"));
        assert_eq!(command.get_program(), "xdg-open");
        let args: Vec<_> = command.get_args().collect();
        assert_eq!(args, [Path::new("/data/retake/takes/p1").as_os_str()]);
    }

    #[cfg(windows)]
    #[test]
    fn on_windows_explorer_selects_the_take_quoted_as_explorer_reads_it() {
        let command = reveal_command(Path::new(r"C:\Users\Jane Doe\AppData\Roaming\retake\takes\p1\take-001-44k.wav"));
        assert_eq!(command.get_program(), "explorer");
        let args: Vec<_> = command.get_args().collect();
        assert_eq!(args, [r#"/select,"C:\Users\Jane Doe\AppData\Roaming\retake\takes\p1\take-001-44k.wav""#]);
    }

    #[test]
    fn a_missing_file_is_reported_without_starting_anything() {
        let err = reveal(Path::new("/nonexistent/retake/take-001.wav")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("take-001.wav"), "{err}");
    }
}
