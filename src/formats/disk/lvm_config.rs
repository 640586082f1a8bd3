//! The `lvm` entry of a block-device config (DIB's `level1/lvm.py`:
//! `LVMPlugin.__init__`): its `pvs`, `vgs` and `lvs` lists, checked with
//! DIB's messages, and the graph nodes they become — one per PV (based on
//! its partition), VG (based on its PVs) and LV (based on its VG), plus the
//! `lvm` node itself, so that a `mkfs` can be based on an LV.

use serde_json::Value;

use super::config::{ConfigError, Entry, Node, Plugin};

/// One PV: `pvcreate` on the block device `base`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvSpec {
    pub name: String,
    pub base: String,
    /// `pvcreate` options.
    pub options: Vec<String>,
}

/// One VG over its PVs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VgSpec {
    pub name: String,
    pub pvs: Vec<String>,
    /// `vgcreate` options.
    pub options: Vec<String>,
}

/// One LV: `size` (`-L`) or `extents` (`-l`, e.g. `23%VG`), and DIB's
/// `type` (`thin`, `thin-pool`) and `thin-pool`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LvSpec {
    pub name: String,
    pub vg: String,
    pub size: Option<String>,
    pub extents: Option<String>,
    pub lv_type: Option<String>,
    /// `lvcreate` options.
    pub options: Vec<String>,
}

/// An `lvm` entry, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LvmSpec {
    pub name: String,
    pub pvs: Vec<PvSpec>,
    pub vgs: Vec<VgSpec>,
    pub lvs: Vec<LvSpec>,
}

fn err(msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(msg.into())
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn list<'a>(e: &'a Entry, key: &str, missing: &str) -> Result<&'a Vec<Value>, ConfigError> {
    match e.values.get(key) {
        Some(Value::Array(a)) => Ok(a),
        Some(other) => Err(err(format!("lvm '{key}' must be a list: {other}"))),
        None => Err(err(missing)),
    }
}

fn field(item: &Value, key: &str) -> Option<String> {
    item.get(key).filter(|v| !v.is_null()).map(text)
}

/// A list of names or options (`base` of a VG, `options`); a single
/// value is taken as a list of one.
fn names(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.iter().map(text).collect(),
        Some(v) => vec![text(v)],
        None => Vec::new(),
    }
}

impl LvmSpec {
    /// DIB's checks, in its order and with its messages.
    pub fn parse(e: &Entry) -> Result<LvmSpec, ConfigError> {
        let name = e
            .name()
            .filter(|_| e.values.contains_key("name"))
            .ok_or_else(|| err("Lvm config requires 'name'"))?
            .to_string();
        let pvs_cfg = list(e, "pvs", "Lvm config requires a 'pvs'")?;
        let vgs_cfg = list(e, "vgs", "Lvm config needs 'vgs'")?;
        let lvs_cfg = list(e, "lvs", "Lvm config needs 'lvs'")?;
        let mut pvs = Vec::new();
        for p in pvs_cfg {
            let name = field(p, "name").ok_or_else(|| err("Missing 'name' in pvs config"))?;
            let base = field(p, "base").ok_or_else(|| err("Missing 'base' in pvs_config"))?;
            pvs.push(PvSpec {
                name,
                base,
                options: names(p.get("options")),
            });
        }
        let mut vgs = Vec::new();
        for v in vgs_cfg {
            let name = field(v, "name").ok_or_else(|| err("Missing 'name' in vgs config"))?;
            if v.get("base").is_none() {
                return Err(err("Missing 'base' in vgs config"));
            }
            let base = names(v.get("base"));
            for b in &base {
                if !pvs.iter().any(|p| p.name == *b) {
                    return Err(err(format!("base:{b} in vgs does not match a valid pvs")));
                }
            }
            vgs.push(VgSpec {
                name,
                pvs: base,
                options: names(v.get("options")),
            });
        }
        let mut lvs = Vec::new();
        for l in lvs_cfg {
            let name = field(l, "name").ok_or_else(|| err("Missing 'name' in lvs config"))?;
            let vg = field(l, "base").ok_or_else(|| err("Missing 'base' in lvs config"))?;
            let (size, extents) = (field(l, "size"), field(l, "extents"));
            if size.is_none() && extents.is_none() {
                return Err(err("Missing 'size' or 'extents' in lvs config"));
            }
            if !vgs.iter().any(|v| v.name == vg) {
                return Err(err(format!("base:{vg} in lvs does not match a valid vg")));
            }
            let lv_type = field(l, "type");
            if let Some(t) = &lv_type {
                if t != "thin" && t != "thin-pool" {
                    return Err(err(format!(
                        "Unsupported type:{t}, supported types: thin, thin-pool"
                    )));
                }
            }
            lvs.push(LvSpec {
                name,
                vg,
                size,
                extents,
                lv_type,
                options: names(l.get("options")),
            });
        }
        Ok(LvmSpec {
            name,
            pvs,
            vgs,
            lvs,
        })
    }

    /// The graph nodes of the entry at index `entry`.
    pub fn nodes(&self, entry: usize) -> Vec<Node> {
        let node = |name: &str, base: Option<&str>| Node {
            plugin: Plugin::Lvm,
            name: name.to_string(),
            base: base.map(str::to_string),
            entry,
        };
        let mut out = Vec::new();
        for p in &self.pvs {
            out.push(node(&p.name, Some(&p.base)));
        }
        for v in &self.vgs {
            out.push(node(&v.name, v.pvs.first().map(String::as_str)));
        }
        for l in &self.lvs {
            out.push(node(&l.name, Some(&l.vg)));
        }
        out.push(node(&self.name, None));
        out
    }

    /// Every LVM spec of a config's entries.
    pub fn all(entries: &[Entry]) -> Result<Vec<LvmSpec>, ConfigError> {
        entries
            .iter()
            .filter(|e| e.plugin == Plugin::Lvm)
            .map(LvmSpec::parse)
            .collect()
    }
}
