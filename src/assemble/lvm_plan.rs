//! DIB's `lvm` plugin (`level1/lvm.py`) as dibr lays it out: each VG on one
//! PV (a partition), its linear LVs one after the other in config order,
//! sized as `lvcreate` sizes them — `size` rounded down to whole 4 MiB
//! extents by DIB itself (`PHYSICAL_EXTENT_BYTES`), `extents` as `-l`
//! takes it (`N`, `N%VG`, `N%FREE`, rounded down as `lvcreate` does).
//! The PV headers are written by [`crate::lvm`] once the partition table
//! is.

use crate::disk::config::Graph;
use crate::disk::layout::{self, Layout};
use crate::disk::lvm_config::LvmSpec;
use crate::lvm::{self, EXTENT_BYTES};

use super::plan::PlanError;

/// Options of `pvcreate`/`vgcreate`/`lvcreate` that change nothing in what
/// dibr writes (DIB's block-device-efi-lvm passes `--force`).
const HARMLESS: &[&str] = &["--force", "-f", "-ff", "--yes", "-y"];

/// How large an LV is asked to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Amount {
    Extents(u64),
    PercentVg(f64),
    PercentFree(f64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct LvPlan {
    pub name: String,
    pub amount: Amount,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VgPlan {
    pub name: String,
    /// The PV's partition (index into the layout's partitions).
    pub partition: usize,
    pub lvs: Vec<LvPlan>,
}

/// A VG placed: the PV's size and each LV's first extent and extent count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VgLayout {
    pub name: String,
    pub partition: usize,
    pub pv_size: u64,
    pub lvs: Vec<lvm::Lv>,
}

fn refuse(node: &str, why: impl Into<String>) -> PlanError {
    PlanError::Lvm {
        node: node.into(),
        why: why.into(),
    }
}

fn check_options(node: &str, command: &str, options: &[String]) -> Result<(), PlanError> {
    match options.iter().find(|o| !HARMLESS.contains(&o.as_str())) {
        Some(o) => Err(refuse(
            node,
            format!("'{o}' is a {command} option, which dibr's own LVM writer cannot take (it accepts only --force/--yes); remove it from 'options'"),
        )),
        None => Ok(()),
    }
}

/// `-l` as lvcreate reads it: `N`, `N%VG`, `N%FREE`.
fn amount(node: &str, size: Option<&str>, extents: Option<&str>) -> Result<Amount, PlanError> {
    if let Some(s) = size {
        let bytes = layout::parse_abs_size(s).map_err(|_| {
            refuse(
                node,
                format!("size '{s}' is not an absolute size such as 1800M or 2GiB"),
            )
        })?;
        return Ok(Amount::Extents(bytes / EXTENT_BYTES));
    }
    let e = extents.unwrap_or("").trim();
    let pct = |p: &str| {
        p.trim()
            .parse::<f64>()
            .ok()
            .filter(|p| *p > 0.0 && *p <= 100.0)
    };
    if let Some(p) = e.strip_suffix("%VG").and_then(pct) {
        return Ok(Amount::PercentVg(p));
    }
    if let Some(p) = e.strip_suffix("%FREE").and_then(pct) {
        return Ok(Amount::PercentFree(p));
    }
    e.parse::<u64>().map(Amount::Extents).map_err(|_| {
        refuse(
            node,
            format!(
                "extents '{e}' is not N, N%VG or N%FREE (the forms dibr's LVM writer lays out)"
            ),
        )
    })
}

/// The config's `lvm` entries as VG plans; `parts` are the layout's
/// partition names.
pub fn plan_lvm(graph: &Graph, parts: Option<&[String]>) -> Result<Vec<VgPlan>, PlanError> {
    let specs = LvmSpec::all(&graph.entries).map_err(|e| refuse("lvm", e.to_string()))?;
    let mut out = Vec::new();
    for spec in &specs {
        for pv in &spec.pvs {
            check_options(&pv.name, "pvcreate", &pv.options)?;
        }
        for vg in &spec.vgs {
            check_options(&vg.name, "vgcreate", &vg.options)?;
            lvm::check_name("VG", &vg.name).map_err(|e| refuse(&vg.name, e.to_string()))?;
            let [pv_name] = vg.pvs.as_slice() else {
                return Err(refuse(
                    &vg.name,
                    format!(
                        "the VG spans {} PVs; dibr's LVM writer puts each VG on exactly one PV",
                        vg.pvs.len()
                    ),
                ));
            };
            let pv = spec
                .pvs
                .iter()
                .find(|p| p.name == *pv_name)
                .ok_or_else(|| {
                    refuse(
                        &vg.name,
                        format!("base:{pv_name} in vgs does not match a valid pvs"),
                    )
                })?;
            if out.iter().any(|v: &VgPlan| v.name == vg.name) {
                return Err(refuse(&vg.name, "a second VG of that name"));
            }
            let partition = parts
                .and_then(|p| p.iter().position(|n| *n == pv.base))
                .ok_or_else(|| refuse(&pv.name, format!("the PV is on '{}', which is not a partition of the disk; base each PV on a partition", pv.base)))?;
            if out.iter().any(|v: &VgPlan| v.partition == partition) {
                return Err(refuse(
                    &pv.name,
                    format!("partition '{}' already holds a PV", pv.base),
                ));
            }
            let mut lvs = Vec::new();
            for lv in spec.lvs.iter().filter(|l| l.vg == vg.name) {
                if let Some(t) = &lv.lv_type {
                    return Err(refuse(&lv.name, format!("type '{t}': dibr's LVM writer lays out linear LVs only (no thin provisioning); remove 'type'")));
                }
                check_options(&lv.name, "lvcreate", &lv.options)?;
                lvm::check_name("LV", &lv.name).map_err(|e| refuse(&lv.name, e.to_string()))?;
                lvs.push(LvPlan {
                    name: lv.name.clone(),
                    amount: amount(&lv.name, lv.size.as_deref(), lv.extents.as_deref())?,
                });
            }
            out.push(VgPlan {
                name: vg.name.clone(),
                partition,
                lvs,
            });
        }
    }
    Ok(out)
}

/// Places each VG's LVs on its PV (the partition of `layout`).
pub fn resolve(vgs: &[VgPlan], layout: &Layout) -> Result<Vec<VgLayout>, PlanError> {
    let mut out = Vec::new();
    for vg in vgs {
        let pv_size = layout.partitions[vg.partition].size;
        let total = lvm::pe_count(pv_size);
        if total == 0 {
            return Err(refuse(&vg.name, format!("its PV's partition '{}' has {pv_size} bytes, less than one 4 MiB extent after LVM's 1 MiB header", layout.partitions[vg.partition].name)));
        }
        let mut next = 0u64;
        let mut lvs = Vec::new();
        for lv in &vg.lvs {
            let n = match lv.amount {
                Amount::Extents(n) => n,
                Amount::PercentVg(p) => lvm::percent_of(total, p),
                Amount::PercentFree(p) => lvm::percent_of(total - next, p),
            };
            if n == 0 || next + n > total {
                return Err(refuse(&lv.name, format!("needs {n} extents from extent {next}; VG '{}' has {total} extents of 4 MiB (and an LV needs at least one)", vg.name)));
            }
            lvs.push(lvm::Lv {
                name: lv.name.clone(),
                id: lvm::LvmId([b'0'; 32]),
                start: next,
                extents: n,
            });
            next += n;
        }
        out.push(VgLayout {
            name: vg.name.clone(),
            partition: vg.partition,
            pv_size,
            lvs,
        });
    }
    Ok(out)
}
