//! Showing a take's file in the system's file manager, so it can be dragged into the host. Runs on
//! the editor thread; the file manager is started and never waited for.

use std::io;
use std::path::Path;
use std::process::{Command, Stdio};

/// The command that shows `file` in the platform's file manager: selected in Finder (`open -R`) and Explorer
/// (`explorer /select,`); elsewhere its folder is opened with `xdg-open`, which cannot select a file.
pub fn reveal_command(file: &Path) -> Command {
    let mut command;
    if cfg!(target_os = "macos") {
        command = Command::new("open");
        command.arg("-R").arg(file);
    } else if cfg!(target_os = "windows") {
        command = Command::new("explorer");
        let mut select = std::ffi::OsString::from("/select,");
        select.push(file);
        command.arg(select);
    } else {
        command = Command::new("xdg-open");
        command.arg(file.parent().unwrap_or(file));
    }
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

    #[test]
    fn a_missing_file_is_reported_without_starting_anything() {
        let err = reveal(Path::new("/nonexistent/retake/take-001.wav")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("take-001.wav"), "{err}");
    }
}
