//! diskimage-builder's block-device YAML (`DIB_BLOCK_DEVICE_CONFIG`, the
//! `block-device-*.yaml` of the block-device elements): parsing, the tree →
//! graph conversion of DIB's `config.py`, and the checks DIB makes before it
//! touches a disk, with DIB's messages.
//!
//! A config is a list of single-key maps `{plugin: {...}}`. In tree notation
//! plugins nest; a nested node without `base` gets its parent's name as base,
//! a node without `name` is called `<plugin>_<base>`. Partitions of a
//! `partitioning` node are graph nodes of their own (named by `name`, based on
//! the partitioning's `base`) and may nest plugins too.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{Map, Value};

use super::lvm_config::LvmSpec;

/// The plugins dibr knows (DIB's stevedore entry points).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Plugin {
    LocalLoop,
    Partitioning,
    Mkfs,
    Mount,
    Fstab,
    Lvm,
}

impl Plugin {
    pub fn key(self) -> &'static str {
        match self {
            Plugin::LocalLoop => "local_loop",
            Plugin::Partitioning => "partitioning",
            Plugin::Mkfs => "mkfs",
            Plugin::Mount => "mount",
            Plugin::Fstab => "fstab",
            Plugin::Lvm => "lvm",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("block-device config is not valid YAML: {0}")]
    Yaml(String),
    #[error("block-device config must be a list of plugin entries")]
    NotAList,
    #[error("Config entry not a dict: {0}")]
    NotADict(String),
    #[error("Config entry top-level should be a single dict: {0}")]
    MultiKey(String),
    #[error("Config entry is not a plugin value: {0}")]
    NotAPlugin(String),
    #[error("{plugin} config entry must be a map: {value}")]
    BadEntry { plugin: &'static str, value: String },
    #[error("Duplicate node name: {0}")]
    DuplicateName(String),
    #[error("Edge not defined: {from}->{to}")]
    EdgeNotDefined { from: String, to: String },
    #[error("block-device config has a dependency cycle through {0}")]
    Cycle(String),
    #[error("{0}")]
    Invalid(String),
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 200 {
        format!("{}…", s.chars().take(200).collect::<String>())
    } else {
        s
    }
}

fn plugin_of(key: &str) -> Result<Option<Plugin>, ConfigError> {
    Ok(Some(match key {
        "local_loop" => Plugin::LocalLoop,
        "partitioning" => Plugin::Partitioning,
        "mkfs" => Plugin::Mkfs,
        "mount" => Plugin::Mount,
        "fstab" => Plugin::Fstab,
        "lvm" => Plugin::Lvm,
        _ => return Ok(None),
    }))
}

/// One entry of the graph form: the plugin and its (flattened) values,
/// always with `name` (and `base` unless it is a root such as `local_loop`).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub plugin: Plugin,
    pub values: Map<String, Value>,
}

impl Entry {
    pub fn name(&self) -> Option<&str> {
        self.values.get("name").and_then(Value::as_str)
    }
    pub fn base(&self) -> Option<&str> {
        self.values.get("base").and_then(Value::as_str)
    }
}

/// Parses YAML (or JSON) text into DIB's graph form.
pub fn parse(text: &str) -> Result<Vec<Entry>, ConfigError> {
    let v: Value = serde_saphyr::from_str(text).map_err(|e| ConfigError::Yaml(e.to_string()))?;
    tree_to_graph(&v)
}

/// DIB's `config_tree_to_graph`: graph entries (a graph config is a fixed
/// point).
pub fn tree_to_graph(config: &Value) -> Result<Vec<Entry>, ConfigError> {
    let list = config.as_array().ok_or(ConfigError::NotAList)?;
    let mut out = Vec::new();
    for entry in list {
        let map = entry
            .as_object()
            .ok_or_else(|| ConfigError::NotADict(short(entry)))?;
        if map.len() != 1 {
            return Err(ConfigError::MultiKey(short(entry)));
        }
        let (k, v) = map.iter().next().unwrap();
        let plugin = plugin_of(k)?.ok_or_else(|| ConfigError::NotAPlugin(short(entry)))?;
        recurse(plugin, v, None, &mut out, 0)?;
    }
    Ok(out)
}

fn name_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

const MAX_DEPTH: usize = 64;

fn recurse(
    plugin: Plugin,
    values: &Value,
    parent: Option<&str>,
    out: &mut Vec<Entry>,
    depth: usize,
) -> Result<(), ConfigError> {
    if depth > MAX_DEPTH {
        return Err(ConfigError::Invalid(
            "block-device config nests too deeply".into(),
        ));
    }
    let vals = values.as_object().ok_or_else(|| ConfigError::BadEntry {
        plugin: plugin.key(),
        value: short(values),
    })?;
    let mut this = Map::new();
    let base = match vals.get("base") {
        Some(b) => Some(name_string(b)),
        None => parent.map(str::to_string),
    };
    match vals.get("base") {
        // The lvm entry's base is a list of partitions (block-device-efi-lvm).
        Some(b @ Value::Array(_)) if plugin == Plugin::Lvm => {
            this.insert("base".into(), b.clone());
        }
        _ => {
            if let Some(b) = &base {
                this.insert("base".into(), Value::String(b.clone()));
            }
        }
    }
    let name = match vals.get("name") {
        Some(n) => name_string(n),
        None => format!("{}_{}", plugin.key(), base.as_deref().unwrap_or("None")),
    };
    this.insert("name".into(), Value::String(name.clone()));
    for (k, v) in vals {
        if k == "name" || k == "base" {
            continue;
        }
        if k == "partitions" && plugin == Plugin::Partitioning {
            let parts = v.as_array().ok_or_else(|| {
                ConfigError::Invalid(format!("'partitions' must be a list: {}", short(v)))
            })?;
            let mut new_parts = Vec::new();
            for p in parts {
                let pm = p.as_object().ok_or_else(|| {
                    ConfigError::Invalid(format!("partition must be a map: {}", short(p)))
                })?;
                let pname = pm.get("name").map(name_string);
                let mut np = Map::new();
                for (pk, pv) in pm {
                    if let Some(sub) = plugin_of(pk)? {
                        let Some(pname) = &pname else {
                            return Err(ConfigError::Invalid(
                                "Missing 'name' in partition config".into(),
                            ));
                        };
                        recurse(sub, pv, Some(pname), out, depth + 1)?;
                    } else if pk != "base" {
                        np.insert(pk.clone(), pv.clone());
                    }
                }
                if let Some(b) = &base {
                    np.insert("base".into(), Value::String(b.clone()));
                }
                new_parts.push(Value::Object(np));
            }
            this.insert("partitions".into(), Value::Array(new_parts));
        } else if let Some(sub) = plugin_of(k)? {
            recurse(sub, v, Some(&name), out, depth + 1)?;
        } else {
            this.insert(k.clone(), v.clone());
        }
    }
    out.push(Entry {
        plugin,
        values: this,
    });
    Ok(())
}

/// A node of the block-device graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub plugin: Plugin,
    pub name: String,
    pub base: Option<String>,
    /// Index of the entry in the graph config this node came from.
    pub entry: usize,
}

/// The validated graph: nodes and DIB's call order.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    pub entries: Vec<Entry>,
    pub nodes: Vec<Node>,
    /// Node names in the order DIB would create them.
    pub call_order: Vec<String>,
}

/// Maximum label lengths DIB checks (`level2/mkfs.py`).
pub fn max_label_len(fs: &str) -> Option<usize> {
    match fs {
        "ext2" | "ext3" | "ext4" => Some(16),
        "xfs" => Some(12),
        "vfat" => Some(11),
        _ => None,
    }
}

fn str_field<'a>(e: &'a Entry, key: &str) -> Option<&'a str> {
    e.values.get(key).and_then(Value::as_str)
}

/// Builds the graph and runs DIB's checks: duplicate node names, undefined
/// edges, mkfs mandatory keys, duplicate and over-long filesystem labels,
/// partitioning keys and flags.
pub fn build_graph(entries: Vec<Entry>) -> Result<Graph, ConfigError> {
    let nodes = collect_nodes(&entries)?;
    let edges = edges(&entries, &nodes)?;
    let call_order = topological_order(&nodes, &edges)?;
    Ok(Graph {
        entries,
        nodes,
        call_order,
    })
}

/// Every node of the config: one per partition of a `partitioning` entry,
/// one for every other entry, each checked as DIB's plugin constructors do.
fn collect_nodes(entries: &[Entry]) -> Result<Vec<Node>, ConfigError> {
    let mut nodes = Vec::new();
    let mut labels = HashSet::new();
    let mut mount_points = HashSet::new();
    for (i, e) in entries.iter().enumerate() {
        match e.plugin {
            Plugin::Partitioning => nodes.extend(partition_nodes(e, i)?),
            Plugin::Lvm => nodes.extend(LvmSpec::parse(e)?.nodes(i)),
            _ => {
                if e.plugin == Plugin::Mkfs {
                    check_mkfs(e, &mut labels)?;
                }
                if e.plugin == Plugin::Mount {
                    check_mount(e, &mut mount_points)?;
                }
                nodes.push(Node {
                    plugin: e.plugin,
                    name: e.name().unwrap_or("").to_string(),
                    base: e.base().map(str::to_string),
                    entry: i,
                });
            }
        }
    }
    Ok(nodes)
}

/// The partitions of a `partitioning` entry (`level1/partitioning.py`).
fn partition_nodes(e: &Entry, i: usize) -> Result<Vec<Node>, ConfigError> {
    let base = e
        .base()
        .ok_or_else(|| ConfigError::Invalid("Partitioning config needs 'base'".into()))?;
    match str_field(e, "label") {
        Some("mbr") | Some("gpt") => {}
        None => {
            return Err(ConfigError::Invalid(
                "Partitioning config needs 'label'".into(),
            ))
        }
        Some(_) => return Err(ConfigError::Invalid("Label must be 'mbr' or 'gpt'".into())),
    }
    let parts = e
        .values
        .get("partitions")
        .and_then(Value::as_array)
        .ok_or_else(|| ConfigError::Invalid("Partitioning config needs 'partitions'".into()))?;
    parts
        .iter()
        .map(|p| {
            let name = p
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| ConfigError::Invalid("Missing 'name' in partition config".into()))?;
            Ok(Node {
                plugin: Plugin::Partitioning,
                name: name.to_string(),
                base: Some(base.to_string()),
                entry: i,
            })
        })
        .collect()
}

/// A mkfs entry's mandatory keys and its label: unique, and not longer
/// than the filesystem allows (`level2/mkfs.py`).
fn check_mkfs(e: &Entry, labels: &mut HashSet<String>) -> Result<(), ConfigError> {
    for k in ["base", "name", "type"] {
        if !e.values.contains_key(k) {
            return Err(ConfigError::Invalid(format!("Mkfs config needs [{k}]")));
        }
    }
    let fs = str_field(e, "type").unwrap_or("");
    let label = fs_label(e);
    if !labels.insert(label.clone()) {
        return Err(ConfigError::Invalid(format!(
            "File system label [{label}] used more than once"
        )));
    }
    if let Some(max) = max_label_len(fs) {
        if label.chars().count() > max {
            return Err(ConfigError::Invalid(format!(
                "Label [{label}] too long for filesystem [{fs}]: [{}] > [{max}]",
                label.chars().count()
            )));
        }
    }
    Ok(())
}

/// A mount entry needs a mount point, given once (`level3/mount.py`:
/// `Mount.__init__`).
fn check_mount(e: &Entry, mount_points: &mut HashSet<String>) -> Result<(), ConfigError> {
    let Some(mp) = e.values.get("mount_point") else {
        return Err(ConfigError::Invalid(
            "Mount config needs 'mount_point'".into(),
        ));
    };
    if !mount_points.insert(name_string(mp)) {
        return Err(ConfigError::Invalid(format!(
            "Mount point [{}] specified more than once",
            name_string(mp)
        )));
    }
    Ok(())
}

/// Edges: base → node; previous partition → partition; previous mount
/// point (sorted) → mount. Node names must be unique.
fn edges(entries: &[Entry], nodes: &[Node]) -> Result<Vec<(usize, usize)>, ConfigError> {
    let mut index = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        if index.insert(n.name.clone(), i).is_some() {
            return Err(ConfigError::DuplicateName(n.name.clone()));
        }
    }
    let mut edges: Vec<(usize, usize)> = Vec::new();
    let mut prev_part: HashMap<usize, usize> = HashMap::new();
    let mut mounts: BTreeMap<String, usize> = BTreeMap::new();
    for (i, n) in nodes.iter().enumerate() {
        if let Some(b) = &n.base {
            let from = *index.get(b).ok_or_else(|| ConfigError::EdgeNotDefined {
                from: b.clone(),
                to: n.name.clone(),
            })?;
            edges.push((from, i));
        }
        if n.plugin == Plugin::Partitioning {
            if let Some(p) = prev_part.insert(n.entry, i) {
                edges.push((p, i));
            }
        }
        if n.plugin == Plugin::Mount {
            let mp = name_string(&entries[n.entry].values["mount_point"]);
            mounts.insert(mp, i);
        }
    }
    let order: Vec<usize> = mounts.values().copied().collect();
    for w in order.windows(2) {
        edges.push((w[0], w[1]));
    }
    Ok(edges)
}

/// Kahn's algorithm; ties broken by config order (stable, deterministic).
fn topological_order(nodes: &[Node], edges: &[(usize, usize)]) -> Result<Vec<String>, ConfigError> {
    let mut indeg = vec![0usize; nodes.len()];
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for &(a, b) in edges {
        if a == b {
            return Err(ConfigError::Cycle(nodes[a].name.clone()));
        }
        indeg[b] += 1;
        out[a].push(b);
    }
    let mut ready: std::collections::BTreeSet<usize> =
        (0..nodes.len()).filter(|&i| indeg[i] == 0).collect();
    let mut call_order = Vec::new();
    while let Some(i) = ready.pop_first() {
        call_order.push(nodes[i].name.clone());
        for &j in &out[i] {
            indeg[j] -= 1;
            if indeg[j] == 0 {
                ready.insert(j);
            }
        }
    }
    if let Some(stuck) = (0..nodes.len()).find(|&i| indeg[i] > 0) {
        return Err(ConfigError::Cycle(nodes[stuck].name.clone()));
    }
    Ok(call_order)
}

/// The label a mkfs node's filesystem gets (`level2/mkfs.py`): `label`, or
/// the node's name; upper-cased for vfat/fat (mkfs.vfat -n stores it so).
pub fn fs_label(e: &Entry) -> String {
    let fs = str_field(e, "type").unwrap_or("");
    let label = match e.values.get("label") {
        Some(l) => name_string(l),
        None => e.name().unwrap_or("").to_string(),
    };
    if fs == "vfat" || fs == "fat" {
        label.to_uppercase()
    } else if label == "cloudimg-rootfs" && fs == "xfs" {
        // The historical root label is too long for xfs; DIB's default
        // becomes img-rootfs there.
        "img-rootfs".into()
    } else {
        label
    }
}

/// disk-image-create's parameters for the root filesystem (`params.yaml`:
/// `root-fs-type` from `FS_TYPE`, `root-label` from `ROOT_LABEL`; read by
/// `crate::settings::root_params`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootParams {
    pub fs_type: String,
    /// None: DIB's default, `cloudimg-rootfs` (`img-rootfs` for xfs).
    pub label: Option<String>,
}

impl Default for RootParams {
    fn default() -> Self {
        RootParams {
            fs_type: "ext4".into(),
            label: None,
        }
    }
}

/// DIB's `BlockDevice._merge_rootfs_params` (`block_device/blockdevice.py`):
/// the mkfs node named `mkfs_root`, and only that one, gets `type` and
/// `label` from the parameters when the config leaves them out. This is
/// how block-device-mbr's typeless mkfs becomes ext4 `cloudimg-rootfs`.
pub fn merge_rootfs_params(entries: &mut [Entry], params: &RootParams) {
    for e in entries.iter_mut() {
        if e.plugin != Plugin::Mkfs || e.name() != Some("mkfs_root") {
            continue;
        }
        if !e.values.contains_key("type") {
            e.values
                .insert("type".into(), Value::String(params.fs_type.clone()));
        }
        if !e.values.contains_key("label") {
            let label = match &params.label {
                Some(l) => l.clone(),
                None if str_field(e, "type") == Some("xfs") => "img-rootfs".into(),
                None => "cloudimg-rootfs".into(),
            };
            e.values.insert("label".into(), Value::String(label));
        }
    }
}

/// `parse` + `merge_rootfs_params` + `build_graph`: what `dib-block-device
/// init` does with a config.
pub fn load_with_params(text: &str, params: &RootParams) -> Result<Graph, ConfigError> {
    let mut entries = parse(text)?;
    merge_rootfs_params(&mut entries, params);
    build_graph(entries)
}

/// `parse` + `build_graph`.
pub fn load(text: &str) -> Result<Graph, ConfigError> {
    build_graph(parse(text)?)
}
