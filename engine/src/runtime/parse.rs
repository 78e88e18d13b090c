//! The engine settings as people write them (docs/acestep-model.md §13 `--device`, `--vram-budget`; the plugin's
//! `RETAKE_DEVICE`, `RETAKE_VRAM_BUDGET` and settings file): devices `cpu`, `cuda`, `cuda:N` and byte sizes
//! `3GiB`, `512MB`, `1.5G`, `2000000`.

use std::fmt;
use std::str::FromStr;

use super::DeviceChoice;

/// The spelling [`DeviceChoice::from_str`] reads: `cpu` or `cuda:N`.
impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(ordinal) => write!(f, "cuda:{ordinal}"),
        }
    }
}

impl FromStr for DeviceChoice {
    type Err = String;

    /// `cpu`, `cuda` (device 0) or `cuda:N`, in any case.
    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| format!("`{text}` is not a device; use cpu, cuda or cuda:N (N = 0, 1, …)")),
        }
    }
}

/// Parses a size: a non-negative number and an optional unit. `K`/`KiB`, `M`/`MiB`, `G`/`GiB`, `T`/`TiB` are
/// powers of 1024; `KB`, `MB`, `GB`, `TB` powers of 1000; `B` or no unit is bytes. Case and a space before
/// the unit do not matter. Fractions round down to whole bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad = || format!("`{text}` is not a size; write e.g. 3GiB, 512MB or 2000000 (bytes)");
    let value: f64 = number.parse().map_err(|_| bad())?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024f64.powi(2),
        "g" | "gib" => 1024f64.powi(3),
        "t" | "tib" => 1024f64.powi(4),
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        _ => return Err(bad()),
    };
    let bytes = value * scale;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("`{text}` is larger than any device"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_in_any_case_with_an_optional_ordinal() {
        assert_eq!("cpu".parse(), Ok(DeviceChoice::Cpu));
        assert_eq!("CUDA".parse(), Ok(DeviceChoice::Cuda(0)));
        assert_eq!(" cuda:3 ".parse(), Ok(DeviceChoice::Cuda(3)));
    }

    #[test]
    fn a_device_is_written_as_it_is_read() {
        for device in [DeviceChoice::Cpu, DeviceChoice::Cuda(0), DeviceChoice::Cuda(3)] {
            assert_eq!(device.to_string().parse(), Ok(device));
        }
        assert_eq!(DeviceChoice::Cuda(1).to_string(), "cuda:1");
    }

    #[test]
    fn unknown_devices_are_rejected_with_the_accepted_forms() {
        for text in ["tpu", "cuda:", "cuda:x", "cuda:-1", ""] {
            let err = text.parse::<DeviceChoice>().unwrap_err();
            assert_eq!(err, format!("`{text}` is not a device; use cpu, cuda or cuda:N (N = 0, 1, …)"));
        }
    }

    #[test]
    fn binary_units_are_powers_of_1024_and_decimal_units_powers_of_1000() {
        assert_eq!(parse_size("3GiB"), Ok(3 << 30));
        assert_eq!(parse_size("3g"), Ok(3 << 30));
        assert_eq!(parse_size("512 MiB"), Ok(512 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("2k"), Ok(2048));
        assert_eq!(parse_size("1TiB"), Ok(1 << 40));
        assert_eq!(parse_size("512MB"), Ok(512_000_000));
        assert_eq!(parse_size("3 gb"), Ok(3_000_000_000));
        assert_eq!(parse_size("2kb"), Ok(2_000));
    }

    #[test]
    fn a_bare_number_is_bytes_and_fractions_round_down() {
        assert_eq!(parse_size("2000000"), Ok(2_000_000));
        assert_eq!(parse_size("10B"), Ok(10));
        assert_eq!(parse_size("1.75"), Ok(1));
        assert_eq!(parse_size("0"), Ok(0));
    }

    #[test]
    fn malformed_sizes_are_rejected_with_an_example() {
        for text in ["", "GiB", "3 parsecs", "-1G", "1.2.3M", "1e3"] {
            let err = parse_size(text).unwrap_err();
            assert!(err.contains("write e.g. 3GiB"), "{text}: {err}");
        }
        assert_eq!(parse_size("99999999999TiB"), Err("`99999999999TiB` is larger than any device".into()));
    }
}
