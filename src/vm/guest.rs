//! What the image says about logging in: cloud-init's default user
//! (`system_info.default_user.name` in /etc/cloud/cloud.cfg and
//! cloud.cfg.d, as `dibr check` merges them), read without mounting.

use std::path::Path;

use serde_json::Value;

use super::VmError;
use crate::inspect::check::cloud_config;
use crate::inspect::disk::{layout, Image};
use crate::inspect::view::View;

/// Who logs in with the seed's key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guest {
    /// cloud-init is in the image (/usr/bin/cloud-init).
    pub cloud_init: bool,
    /// cloud-init's default user, if the config names one.
    pub default_user: Option<String>,
    /// The architecture of the image's programs (`x86_64`, `aarch64`).
    pub arch: Option<&'static str>,
}

pub fn read(path: &Path) -> Result<Guest, VmError> {
    let err = |detail: String| VmError::Image {
        path: path.to_path_buf(),
        detail,
    };
    let img = Image::open(path).map_err(|e| err(e.to_string()))?;
    let lay = layout(&img).map_err(|e| err(e.to_string()))?;
    let view = View::open(&img, &lay).map_err(|e| err(e.to_string()))?;
    let cloud_init = ["/usr/bin/cloud-init", "/usr/local/bin/cloud-init"]
        .iter()
        .any(|p| view.exists(p).unwrap_or(false));
    let (cfg, _) = cloud_config(&view);
    let arch =
        crate::inspect::glance::guest::architecture(&view).map_err(|e| err(e.to_string()))?;
    Ok(Guest {
        cloud_init,
        default_user: default_user(&cfg),
        arch,
    })
}

/// `system_info: {default_user: {name: …}}` of a merged cloud config.
pub fn default_user(cfg: &serde_json::Map<String, Value>) -> Option<String> {
    cfg.get("system_info")?
        .get("default_user")?
        .get("name")?
        .as_str()
        .filter(|n| !n.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_user_from_system_info() {
        let v: Value = serde_saphyr::from_str(
            "system_info:\n  distro: debian\n  default_user:\n    name: debian\n    lock_passwd: True\n",
        )
        .unwrap();
        assert_eq!(
            default_user(v.as_object().unwrap()).as_deref(),
            Some("debian")
        );
        let v: Value = serde_saphyr::from_str("users: [default]\n").unwrap();
        assert_eq!(default_user(v.as_object().unwrap()), None);
    }
}
