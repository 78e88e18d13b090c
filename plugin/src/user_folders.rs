//! Where Retake keeps each user's files: the settings file and the take files. On Linux and other Unix systems
//! the folders follow the XDG base directory specification; on Windows both live in the roaming application-data
//! folder, `%APPDATA%`.

use std::path::PathBuf;

pub use platform::{config_home, data_home};

/// Environment variable `name` as a path, if it is an absolute one.
fn absolute_var(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).map(PathBuf::from).filter(|path| path.is_absolute())
}

#[cfg(not(windows))]
mod platform {
    use std::path::PathBuf;

    use super::absolute_var;

    /// `$XDG_CONFIG_HOME`, else `~/.config`.
    pub fn config_home() -> Option<PathBuf> {
        xdg_folder("XDG_CONFIG_HOME", ".config")
    }

    /// `$XDG_DATA_HOME`, else `~/.local/share`.
    pub fn data_home() -> Option<PathBuf> {
        xdg_folder("XDG_DATA_HOME", ".local/share")
    }

    /// The XDG base folder named by environment variable `variable`, else `$HOME/<under_home>`; only absolute
    /// paths count, as the XDG base directory specification says.
    fn xdg_folder(variable: &str, under_home: &str) -> Option<PathBuf> {
        absolute_var(variable).or_else(|| absolute_var("HOME").map(|home| home.join(under_home)))
    }
}

#[cfg(windows)]
mod platform {
    use std::path::PathBuf;

    use super::absolute_var;

    /// `%APPDATA%`, else the known folder it normally names (`FOLDERID_RoamingAppData`).
    pub fn config_home() -> Option<PathBuf> {
        absolute_var("APPDATA").or_else(dirs::data_dir)
    }

    /// The same folder as [`config_home`]: Windows keeps an application's settings and data together.
    pub fn data_home() -> Option<PathBuf> {
        config_home()
    }
}
