//! The plugin's parameters as the CLAP `params` extension lists them, looked up by display name
//! (docs/plugin-hosting.md §3d).

use clack_extensions::params::{ParamInfoBuffer, ParamInfoFlags, PluginParams};
use clack_host::prelude::PluginMainThreadHandle;
use clack_host::utils::ClapId;

use super::error::{HostError, Result};

/// One parameter as the plugin describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamDescription {
    /// The CLAP parameter id events and value queries use.
    pub id: ClapId,
    /// Display name, e.g. "Follow loop".
    pub name: String,
    /// Smallest CLAP value.
    pub min: f64,
    /// Largest CLAP value.
    pub max: f64,
    /// Default CLAP value.
    pub default: f64,
    /// Whether the value moves in whole steps (enums, integers, booleans).
    pub stepped: bool,
}

/// Every parameter of one plugin instance, read once through the `params` extension.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParamTable {
    params: Vec<ParamDescription>,
}

impl ParamTable {
    /// Reads every parameter's description from `plugin`.
    pub fn read(extension: &PluginParams, plugin: &PluginMainThreadHandle) -> Result<Self> {
        let mut buffer = ParamInfoBuffer::new();
        let params = (0..extension.count(plugin))
            .map(|index| {
                let info = extension
                    .get_info(plugin, index, &mut buffer)
                    .ok_or_else(|| HostError::Param(format!("#{index}: the plugin returned no info")))?;
                Ok(ParamDescription {
                    id: info.id,
                    name: String::from_utf8_lossy(info.name).into_owned(),
                    min: info.min_value,
                    max: info.max_value,
                    default: info.default_value,
                    stepped: info.flags.contains(ParamInfoFlags::IS_STEPPED),
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self { params })
    }

    /// All parameters in the plugin's order.
    pub fn all(&self) -> &[ParamDescription] {
        &self.params
    }

    /// The parameter named `name`, or an error listing the names there are.
    pub fn find(&self, name: &str) -> Result<&ParamDescription> {
        self.params.iter().find(|param| param.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.params.iter().map(|param| param.name.as_str()).collect();
            HostError::Param(format!("\"{name}\" does not exist; the plugin has {names:?}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> ParamTable {
        let param = |id: u32, name: &str| ParamDescription {
            id: ClapId::new(id),
            name: name.to_string(),
            min: 0.0,
            max: 1.0,
            default: 0.0,
            stepped: false,
        };
        ParamTable { params: vec![param(7, "Mode"), param(9, "Follow loop")] }
    }

    #[test]
    fn parameters_are_found_by_display_name() {
        assert_eq!(table().find("Follow loop").unwrap().id, ClapId::new(9));
    }

    #[test]
    fn an_unknown_name_lists_the_existing_ones() {
        let err = table().find("Gain").unwrap_err().to_string();
        assert_eq!(err, "CLAP host: parameter \"Gain\" does not exist; the plugin has [\"Mode\", \"Follow loop\"]");
    }
}
