//! `cargo xtask bundle retake --release` builds `target/bundled/Retake.{vst3,clap}`.

fn main() -> nice_plug_xtask::Result<()> {
    nice_plug_xtask::main()
}
