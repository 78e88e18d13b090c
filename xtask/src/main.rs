//! `cargo xtask bundle retake [--release] [--target <triple>]` builds, in one cargo run, the plugin and the
//! `retake` CLI, then writes `target/bundled/Retake.vst3`, `target/bundled/Retake.clap` and the CLI beside them
//! (`target/bundled/retake`, or `retake.exe` for a Windows target such as `x86_64-pc-windows-gnu`). Other
//! commands and packages go to nice-plug-xtask as they are (docs/plugin-hosting.md §2).

use std::path::Path;

use anyhow::Context;

/// The plugin package (its bundles are named by `bundler.toml`).
const PLUGIN: &str = "retake";
/// The package and the binary of the CLI.
const CLI_PACKAGE: &str = "retake-engine";
const CLI_BINARY: &str = "retake";

fn main() -> nice_plug_xtask::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [command, package, build_args @ ..] if command == "bundle" && package == PLUGIN => bundle_retake(build_args),
        _ => nice_plug_xtask::main_with_args("cargo xtask", args),
    }
}

/// Builds the plugin library and the CLI with the `cargo build` arguments `args` and bundles them.
fn bundle_retake(args: &[String]) -> nice_plug_xtask::Result<()> {
    nice_plug_xtask::chdir_workspace_root()?;
    let metadata = cargo_metadata::MetadataCommand::new().no_deps().exec().context("cannot read `cargo metadata`")?;
    let target_dir = metadata.target_directory.as_std_path();
    let mut build_args = ["--lib", "--bin", CLI_BINARY].map(String::from).to_vec();
    build_args.extend_from_slice(args);
    nice_plug_xtask::build(&[PLUGIN.to_string(), CLI_PACKAGE.to_string()], &build_args)?;
    // nice-plug-xtask copies a binary named like the package beside the bundles, under the bundle's name.
    nice_plug_xtask::bundle(target_dir, PLUGIN, args, false)?;
    let exe = if is_windows_target(args) { ".exe" } else { "" };
    let bundled = target_dir.join("bundled");
    rename(&bundled.join(format!("Retake{exe}")), &bundled.join(format!("{CLI_BINARY}{exe}")))
}

/// Whether `args` ask for a Windows target (`--target <triple>` or `--target=<triple>`, the last one counting).
fn is_windows_target(args: &[String]) -> bool {
    let mut target = None;
    for (i, arg) in args.iter().enumerate() {
        if arg == "--target" {
            target = args.get(i + 1).map(String::as_str);
        } else if let Some(triple) = arg.strip_prefix("--target=") {
            target = Some(triple);
        }
    }
    target.is_some_and(|triple| triple.contains("-windows-"))
}

fn rename(from: &Path, to: &Path) -> nice_plug_xtask::Result<()> {
    std::fs::rename(from, to).with_context(|| format!("cannot rename {} to {}", from.display(), to.display()))?;
    eprintln!("Created the CLI at '{}'", to.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|arg| arg.to_string()).collect()
    }

    #[test]
    fn the_cli_gets_the_exe_suffix_only_for_a_windows_target() {
        assert!(is_windows_target(&args(&["--release", "--target", "x86_64-pc-windows-gnu"])));
        assert!(is_windows_target(&args(&["--target=x86_64-pc-windows-msvc"])));
        assert!(!is_windows_target(&args(&["--release"])));
        assert!(!is_windows_target(&args(&["--target", "x86_64-unknown-linux-gnu"])));
        assert!(!is_windows_target(&args(&["--target", "x86_64-pc-windows-gnu", "--target=aarch64-apple-darwin"])));
    }
}
