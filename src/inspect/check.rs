//! `dibr check`: does the image meet OpenStack's image requirements
//! (openstack-manuals, image-guide "Image requirements")? Each item is
//! judged from the files in the image, as the booted system would see
//! them; "enabled" means a systemd symlink in /etc/systemd/system/*.wants
//! (what `systemctl enable` makes) or, for sysvinit, an /etc/rc?.d/S* link.

use serde_json::Value;

use super::disk::{Layout, Table};
use super::kernel;
use super::kernel_image;
use super::limits::CONFIG_FILE as SMALL;
use super::view::View;
use super::InspectError;

/// Problems of one kind an item names before it only counts the rest.
const NAMED: usize = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One requirement and how the image fares.
#[derive(Clone, Debug)]
pub struct Item {
    pub status: Status,
    pub name: &'static str,
    pub detail: String,
}

fn item(status: Status, name: &'static str, detail: impl Into<String>) -> Item {
    Item {
        status,
        name,
        detail: detail.into(),
    }
}

/// What the checks look at, read once. A fact that could not be read
/// keeps its error as text: each check that needs it fails with it, the
/// others go on.
struct Facts {
    /// Unit names enabled through /etc/systemd/system/*.wants (and
    /// aliases there), plus sysvinit S-links as `name (sysv)`.
    enabled: Result<Vec<String>, String>,
    cloud_init: Result<bool, String>,
    cloud_init_disabled: Result<bool, String>,
    cloud_cfg: serde_json::Map<String, Value>,
    /// Files of the cloud config that could not be read or parsed.
    cloud_cfg_notes: Vec<String>,
}

fn fact<'a, T>(what: &'static str, r: &'a Result<T, String>) -> Result<&'a T, InspectError> {
    r.as_ref().map_err(|e| InspectError::Fact {
        what,
        detail: e.clone(),
    })
}

impl Facts {
    fn read(view: &View) -> Facts {
        let (cloud_cfg, cloud_cfg_notes) = cloud_config(view);
        let text = |e: InspectError| e.to_string();
        Facts {
            enabled: enabled_units(view).map_err(text),
            cloud_init: any_exists(view, &["/usr/bin/cloud-init", "/usr/local/bin/cloud-init"])
                .map(|p| p.is_some())
                .map_err(text),
            cloud_init_disabled: view.exists("/etc/cloud/cloud-init.disabled").map_err(text),
            cloud_cfg,
            cloud_cfg_notes,
        }
    }
    fn enabled(&self) -> Result<&[String], InspectError> {
        fact("enabled units", &self.enabled).map(Vec::as_slice)
    }
    fn cloud_init(&self) -> Result<bool, InspectError> {
        fact("whether cloud-init is installed", &self.cloud_init).copied()
    }
    fn cloud_init_disabled(&self) -> Result<bool, InspectError> {
        fact("whether cloud-init is disabled", &self.cloud_init_disabled).copied()
    }
}

fn text(b: Vec<u8>) -> String {
    String::from_utf8_lossy(&b).into_owned()
}

fn any_exists(view: &View, paths: &[&str]) -> Result<Option<String>, InspectError> {
    for p in paths {
        if view.exists(p)? {
            return Ok(Some(p.to_string()));
        }
    }
    Ok(None)
}

pub(crate) fn enabled_units(view: &View) -> Result<Vec<String>, InspectError> {
    let mut out = Vec::new();
    for dir in [
        "/etc/systemd/system",
        "/usr/lib/systemd/system",
        "/lib/systemd/system",
    ] {
        let Some(entries) = view.list_dir(dir)? else {
            continue;
        };
        for e in entries.iter() {
            let name = String::from_utf8_lossy(&e.name).into_owned();
            if name.ends_with(".wants") || name.ends_with(".requires") {
                // /usr/lib units are the vendor's static wiring: only the
                // targets a system boots into count there.
                if dir != "/etc/systemd/system"
                    && !matches!(
                        name.as_str(),
                        "multi-user.target.wants" | "sysinit.target.wants"
                    )
                {
                    continue;
                }
                for u in view
                    .list_dir(&format!("{dir}/{name}"))?
                    .as_deref()
                    .unwrap_or_default()
                {
                    out.push(String::from_utf8_lossy(&u.name).into_owned());
                }
            } else if dir == "/etc/systemd/system" && name.ends_with(".service") {
                // An alias made by `systemctl enable` (sshd.service → ssh.service).
                if view.readlink(&format!("{dir}/{name}"))?.is_some() {
                    out.push(name);
                }
            }
        }
    }
    for rc in ["/etc/rc2.d", "/etc/rc3.d", "/etc/rc5.d"] {
        for e in view.list_dir(rc)?.as_deref().unwrap_or_default() {
            let name = String::from_utf8_lossy(&e.name).into_owned();
            if let Some(s) = name.strip_prefix('S') {
                let s = s.trim_start_matches(|c: char| c.is_ascii_digit());
                out.push(format!("{s} (sysv)"));
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// cloud.cfg merged with cloud.cfg.d/*.cfg in name order, later files'
/// top-level keys replacing earlier ones (cloud-init's default merge for
/// lists and scalars). A file that cannot be read or parsed is named in
/// the notes (and the config judged without it).
pub(crate) fn cloud_config(view: &View) -> (serde_json::Map<String, Value>, Vec<String>) {
    let mut notes = Vec::new();
    let mut files = vec!["/etc/cloud/cloud.cfg".to_string()];
    // list_dir gives the names sorted: cloud-init's order.
    match view.list_dir("/etc/cloud/cloud.cfg.d") {
        Ok(d) => files.extend(
            d.as_deref()
                .unwrap_or_default()
                .iter()
                .map(|e| String::from_utf8_lossy(&e.name).into_owned())
                .filter(|n| n.ends_with(".cfg"))
                .map(|n| format!("/etc/cloud/cloud.cfg.d/{n}")),
        ),
        Err(e) => notes.push(e.to_string()),
    }
    let mut merged = serde_json::Map::new();
    for f in files {
        let t = match view.read_file(&f, SMALL) {
            Ok(Some(t)) => t,
            Ok(None) => continue,
            Err(e) => {
                notes.push(e.to_string());
                continue;
            }
        };
        match serde_saphyr::from_str::<Value>(&text(t)) {
            Ok(Value::Object(m)) => merged.extend(m),
            Ok(Value::Null) => {}
            Ok(_) => notes.push(format!("{f} is not a mapping")),
            // The parser's first line says what and where; the rest is a
            // drawing of the spot, which would break the item's line.
            Err(e) => notes.push(format!(
                "{f}: {}",
                e.to_string().lines().next().unwrap_or_default()
            )),
        }
    }
    (merged, notes)
}

fn strings(v: Option<&Value>) -> Option<Vec<String>> {
    match v? {
        Value::Array(a) => Some(
            a.iter()
                .map(|x| match x {
                    Value::String(s) => s.clone(),
                    // a module given as [name, frequency]
                    Value::Array(inner) => inner
                        .first()
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    other => other.to_string(),
                })
                .collect(),
        ),
        Value::String(s) => Some(
            s.split(',')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect(),
        ),
        _ => None,
    }
}

/// An item that could not be judged (a file it needs is unreadable, a
/// limit was hit): that item fails with the reason, the others go on.
fn judged(name: &'static str, r: Result<Item, InspectError>) -> Item {
    r.unwrap_or_else(|e| item(Status::Fail, name, format!("cannot be judged: {e}")))
}

/// Runs every check.
pub fn run(view: &View, layout: &Layout) -> Vec<Item> {
    let f = Facts::read(view);
    let mut items = vec![
        root_filesystem(view, layout),
        root_last(view, layout),
        judged("grow-root", grow_root(view, layout, &f)),
        judged("no-mac-address", no_mac(view)),
        judged("sshd", sshd(view, &f)),
        judged("ssh-host-keys", ssh_host_keys(view, &f)),
        judged("no-firewall", firewall(view, &f)),
        judged("cloud-init", cloud_init(view, &f)),
    ];
    // Judged unless cloud-init is known to be absent.
    if f.cloud_init.as_ref().map_or(true, |&c| c) {
        items.push(datasources(&f));
    }
    match kernel_and_console(view) {
        Ok((k, console)) => items.extend([k, console]),
        Err(e) => items.extend([
            judged("kernel", Err(e)),
            item(
                Status::Fail,
                "serial-console",
                "cannot be judged: no kernel command line (see the kernel item)",
            ),
        ]),
    }
    items.push(judged("machine-id", machine_id(view)));
    items
}

fn root_filesystem(view: &View, layout: &Layout) -> Item {
    let table = match layout.table {
        Table::Gpt => "GPT",
        Table::Mbr => "MBR",
        Table::None => "no partition table",
    };
    let mut d = format!("{} ({table})", view.root_volume().describe());
    for (mp, v) in view.mounts().skip(1) {
        d.push_str(&format!("; {mp} on {}", v.describe()));
    }
    item(Status::Pass, "root-filesystem", d)
}

fn root_last(view: &View, layout: &Layout) -> Item {
    let root = view.root_volume();
    if layout.table == Table::None {
        return item(
            Status::Pass,
            "root-partition-last",
            "one filesystem on the whole disk: no partition to grow",
        );
    }
    let after: Vec<String> = layout
        .volumes
        .iter()
        .filter(|v| v.start > root.start)
        .map(|v| v.describe())
        .collect();
    if after.is_empty() {
        item(
            Status::Pass,
            "root-partition-last",
            format!("{} is the last partition", root.describe()),
        )
    } else {
        item(
            Status::Fail,
            "root-partition-last",
            format!(
                "{} is followed by {}: growpart can grow only the last partition into the space a larger flavor adds; put the root partition last",
                root.describe(),
                after.join(", ")
            ),
        )
    }
}

fn grow_root(view: &View, layout: &Layout, f: &Facts) -> Result<Item, InspectError> {
    let growpart = any_exists(view, &["/usr/bin/growpart", "/usr/sbin/growpart"])?;
    let initramfs = any_exists(
        view,
        &[
            "/usr/share/initramfs-tools/scripts/local-bottom/growroot",
            "/usr/share/initramfs-tools/hooks/growroot",
            "/usr/lib/dracut/modules.d/50growroot",
        ],
    )?;
    let modules = strings(f.cloud_cfg.get("cloud_init_modules")).unwrap_or_default();
    let has_mod = |m: &str| modules.iter().any(|x| x.replace('-', "_") == m);
    let gp_mode = f
        .cloud_cfg
        .get("growpart")
        .and_then(|g| g.get("mode"))
        .map(|m| match m {
            Value::Bool(false) => "off".to_string(),
            Value::String(s) => s.clone(),
            o => o.to_string(),
        });
    let (installed, disabled) = (f.cloud_init()?, f.cloud_init_disabled()?);
    let ci_on = installed && !disabled;
    let mut how = Vec::new();
    if let Some(p) = &initramfs {
        how.push(format!("growroot in the initramfs ({p})"));
    }
    if ci_on && has_mod("growpart") && has_mod("resizefs") && gp_mode.as_deref() != Some("off") {
        match &growpart {
            Some(p) => how.push(format!(
                "cloud-init's growpart and resizefs modules with {p}"
            )),
            None if layout.table == Table::None => how.push("cloud-init's resizefs module".into()),
            None => {}
        }
    } else if ci_on && layout.table == Table::None && has_mod("resizefs") {
        how.push("cloud-init's resizefs module".into());
    }
    if !how.is_empty() {
        return Ok(item(Status::Pass, "grow-root", how.join("; ")));
    }
    let mut why = Vec::new();
    if !installed {
        why.push("cloud-init is not installed".to_string());
    } else if disabled {
        why.push("cloud-init is disabled (/etc/cloud/cloud-init.disabled)".into());
    } else {
        if !has_mod("growpart") || !has_mod("resizefs") {
            why.push("cloud_init_modules lacks growpart or resizefs".into());
        }
        if gp_mode.as_deref() == Some("off") {
            why.push("growpart mode is off".into());
        }
    }
    if growpart.is_none() {
        why.push("no growpart (install cloud-guest-utils, or cloud-utils-growpart)".into());
    }
    why.push("no growroot in the initramfs (cloud-initramfs-growroot)".into());
    Ok(item(
        Status::Fail,
        "grow-root",
        format!(
            "nothing grows the root partition and filesystem at first boot: {}",
            why.join("; ")
        ),
    ))
}

fn no_mac(view: &View) -> Result<Item, InspectError> {
    let mut fails = Vec::new();
    let mut warns = Vec::new();
    let rules = "/etc/udev/rules.d/70-persistent-net.rules";
    if let Some(t) = view.read_file(rules, SMALL)? {
        let t = text(t);
        let lines: Vec<&str> = t
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        if !lines.is_empty() {
            let macs: Vec<&str> = lines
                .iter()
                .filter_map(|l| {
                    let i = l.find("ATTR{address}==\"")? + 16;
                    l.get(i..i + 17)
                })
                .collect();
            fails.push(format!(
                "{rules} has {} rule(s){}; empty it",
                lines.len(),
                if macs.is_empty() {
                    String::new()
                } else {
                    format!(" for MAC {}", macs.join(", "))
                }
            ));
        }
    }
    for gen in [
        "/lib/udev/rules.d/75-persistent-net-generator.rules",
        "/usr/lib/udev/rules.d/75-persistent-net-generator.rules",
    ] {
        if let Some(t) = view.read_file(gen, SMALL)? {
            if t.iter().any(|c| !c.is_ascii_whitespace()) {
                warns.push(format!("{gen} will record the first boot's MAC; empty it"));
            }
        }
    }
    for (dir, keys) in [
        (
            "/etc/sysconfig/network-scripts",
            &["HWADDR=", "MACADDR="][..],
        ),
        ("/etc/netplan", &["macaddress:"][..]),
        ("/etc/systemd/network", &["MACAddress="][..]),
    ] {
        for e in view.list_dir(dir)?.as_deref().unwrap_or_default() {
            let name = String::from_utf8_lossy(&e.name).into_owned();
            let p = format!("{dir}/{name}");
            let Some(t) = view.read_file(&p, SMALL)? else {
                continue;
            };
            let t = text(t);
            for l in t.lines() {
                let l = l.trim();
                if !l.starts_with('#') && keys.iter().any(|k| l.starts_with(k)) {
                    fails.push(format!("{p}: {l}"));
                }
            }
        }
    }
    Ok(if !fails.is_empty() {
        item(Status::Fail, "no-mac-address", fails.join("; "))
    } else if !warns.is_empty() {
        item(Status::Warn, "no-mac-address", warns.join("; "))
    } else {
        item(
            Status::Pass,
            "no-mac-address",
            format!(
                "no persistent-net rules or MAC-bound interface configs ({rules} absent or empty)"
            ),
        )
    })
}

fn sshd(view: &View, f: &Facts) -> Result<Item, InspectError> {
    let Some(bin) = any_exists(view, &["/usr/sbin/sshd", "/sbin/sshd"])? else {
        return Ok(item(
            Status::Fail,
            "sshd",
            "no /usr/sbin/sshd: install openssh-server",
        ));
    };
    let units: Vec<&String> = f
        .enabled()?
        .iter()
        .filter(|u| {
            let base = u.trim_end_matches(" (sysv)");
            matches!(
                base,
                "ssh.service" | "sshd.service" | "ssh.socket" | "sshd.socket" | "ssh" | "sshd"
            )
        })
        .collect();
    Ok(if units.is_empty() {
        item(
            Status::Fail,
            "sshd",
            format!("{bin} is installed but not enabled: systemctl enable ssh (or sshd)"),
        )
    } else {
        let names: Vec<&str> = units.iter().map(|s| s.as_str()).collect();
        let enabled = format!("{bin}, enabled ({})", names.join(", "));
        if has_host_keys_without_cloud_init(view, f)? {
            item(Status::Pass, "sshd", enabled)
        } else {
            item(
                Status::Warn,
                "sshd",
                format!("{enabled}, but it starts only once host keys exist: see ssh-host-keys"),
            )
        }
    })
}

/// The ssh server's unit files and their drop-ins, where a first boot's
/// `ssh-keygen -A` (or a distribution's `sshd-keygen`) would be run from.
const SSH_UNITS: &[&str] = &["ssh.service", "sshd.service"];
const UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// Whether a unit file line runs a host key generator before sshd.
fn runs_keygen(line: &str) -> bool {
    let l = line.trim();
    let Some((key, cmd)) = l.split_once('=') else {
        return false;
    };
    matches!(key.trim(), "ExecStartPre" | "ExecStart")
        && ((cmd.contains("ssh-keygen") && cmd.split_whitespace().any(|w| w == "-A"))
            || cmd.contains("sshd-keygen"))
}

/// What makes the host keys at first boot without cloud-init: an enabled
/// key generating unit (dibr's runtime-ssh-host-keys, Raspberry Pi OS's
/// regenerate-ssh-host-keys), the Red Hat and SUSE families' sshd-keygen
/// units (pulled in by sshd.service), or the ssh unit running
/// `ssh-keygen -A` itself.
fn keygen_without_cloud_init(view: &View, f: &Facts) -> Result<Vec<String>, InspectError> {
    let mut gen = Vec::new();
    for u in f
        .enabled()?
        .iter()
        .filter(|u| u.contains("keygen") || u.contains("host-keys"))
    {
        gen.push(format!("{u} (enabled)"));
    }
    if let Some(p) = any_exists(
        view,
        &[
            "/usr/lib/systemd/system/sshd-keygen@.service",
            "/usr/lib/systemd/system/sshd-keygen.service",
            "/lib/systemd/system/sshd-keygen@.service",
            "/lib/systemd/system/sshd-keygen.service",
        ],
    )? {
        gen.push(p);
    }
    for dir in UNIT_DIRS {
        for unit in SSH_UNITS {
            let mut files = vec![format!("{dir}/{unit}")];
            let dropins = format!("{dir}/{unit}.d");
            files.extend(
                view.list_dir(&dropins)?
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .map(|e| String::from_utf8_lossy(&e.name).into_owned())
                    .filter(|n| n.ends_with(".conf"))
                    .map(|n| format!("{dropins}/{n}")),
            );
            for file in files {
                let Some(t) = view.read_file(&file, SMALL)? else {
                    continue;
                };
                if text(t).lines().any(runs_keygen) {
                    gen.push(format!("{file} (ssh-keygen before sshd)"));
                }
            }
        }
    }
    Ok(gen)
}

/// sshd finds host keys at a boot without cloud-init: baked in (a FAIL
/// of ssh-host-keys, but sshd starts) or made by something else.
fn has_host_keys_without_cloud_init(view: &View, f: &Facts) -> Result<bool, InspectError> {
    let baked = view
        .list_dir("/etc/ssh")?
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|e| e.name.starts_with(b"ssh_host_") && e.name.ends_with(b"_key"));
    Ok(baked || !keygen_without_cloud_init(view, f)?.is_empty())
}

/// cloud-init will run at boot (installed, not disabled).
fn cloud_init_on(f: &Facts) -> Result<bool, InspectError> {
    Ok(f.cloud_init()? && !f.cloud_init_disabled()?)
}

const ONLY_CLOUD_INIT: &str = "host keys are made only by cloud-init's ssh module: without a \
datasource (no metadata service, no NoCloud seed) cloud-init does nothing and sshd fails to start; \
add the runtime-ssh-host-keys element to make them at every boot that lacks them";

fn ssh_host_keys(view: &View, f: &Facts) -> Result<Item, InspectError> {
    let baked: Vec<String> = view
        .list_dir("/etc/ssh")?
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|e| String::from_utf8_lossy(&e.name).into_owned())
        .filter(|n| n.starts_with("ssh_host_") && n.ends_with("_key"))
        .map(|n| format!("/etc/ssh/{n}"))
        .collect();
    if !baked.is_empty() {
        return Ok(item(
            Status::Fail,
            "ssh-host-keys",
            format!(
                "host keys baked in: {}; every instance would share them: delete them (cloud-init makes new ones at first boot)",
                baked.join(", ")
            ),
        ));
    }
    let mut gen = keygen_without_cloud_init(view, f)?;
    let ci = cloud_init_on(f)?;
    Ok(if !gen.is_empty() {
        if ci {
            gen.push("cloud-init's ssh module".into());
        }
        item(
            Status::Pass,
            "ssh-host-keys",
            format!("none baked in; made at first boot by {}", gen.join(", ")),
        )
    } else if ci {
        item(
            Status::Warn,
            "ssh-host-keys",
            format!("none baked in; {ONLY_CLOUD_INIT}"),
        )
    } else {
        item(
            Status::Warn,
            "ssh-host-keys",
            "none baked in, but nothing found that makes them at first boot (cloud-init, sshd-keygen, ssh-keygen -A): sshd will not start; add the runtime-ssh-host-keys element",
        )
    })
}

fn firewall(view: &View, f: &Facts) -> Result<Item, InspectError> {
    const UNITS: &[&str] = &[
        "ufw.service",
        "firewalld.service",
        "netfilter-persistent.service",
        "iptables.service",
        "ip6tables.service",
        "nftables.service",
        "iptables-persistent",
        "netfilter-persistent",
        "ufw",
    ];
    let mut on: Vec<String> = f
        .enabled()?
        .iter()
        .filter(|u| UNITS.contains(&u.trim_end_matches(" (sysv)")))
        .cloned()
        .collect();
    if let Some(t) = view.read_file("/etc/ufw/ufw.conf", SMALL)? {
        if text(t)
            .lines()
            .any(|l| l.trim().eq_ignore_ascii_case("ENABLED=yes"))
        {
            on.push("/etc/ufw/ufw.conf ENABLED=yes".into());
        }
    }
    Ok(if on.is_empty() {
        item(
            Status::Pass,
            "no-firewall",
            "no firewall enabled (ufw, firewalld, nftables, iptables/netfilter-persistent)",
        )
    } else {
        item(
            Status::Fail,
            "no-firewall",
            format!(
                "enabled: {}; disable it and use security groups",
                on.join(", ")
            ),
        )
    })
}

fn cloud_init(view: &View, f: &Facts) -> Result<Item, InspectError> {
    if !f.cloud_init()? {
        return Ok(item(
            Status::Fail,
            "cloud-init",
            "not installed (no /usr/bin/cloud-init): OpenStack's ssh key, user data and hostname need it; install cloud-init",
        ));
    }
    if f.cloud_init_disabled()? {
        return Ok(item(
            Status::Fail,
            "cloud-init",
            "installed but disabled by /etc/cloud/cloud-init.disabled",
        ));
    }
    let units: Vec<&str> = f
        .enabled()?
        .iter()
        .filter(|u| {
            u.starts_with("cloud-init")
                || u.starts_with("cloud-config")
                || u.starts_with("cloud-final")
        })
        .map(String::as_str)
        .collect();
    let generator = any_exists(
        view,
        &[
            "/lib/systemd/system-generators/cloud-init-generator",
            "/usr/lib/systemd/system-generators/cloud-init-generator",
        ],
    )?;
    let mut how = Vec::new();
    if !units.is_empty() {
        how.push(format!("enabled ({})", units.join(", ")));
    }
    if let Some(g) = generator {
        how.push(format!("started by {g}"));
    }
    Ok(if how.is_empty() {
        item(
            Status::Fail,
            "cloud-init",
            "installed but not enabled: systemctl enable cloud-init-local cloud-init cloud-config cloud-final",
        )
    } else {
        item(
            Status::Pass,
            "cloud-init",
            format!("installed, {}", how.join(", ")),
        )
    })
}

fn datasources(f: &Facts) -> Item {
    // A config cloud-init cannot parse: what it will do is unknown (the
    // datasource_list may be in the part that failed).
    if !f.cloud_cfg_notes.is_empty() {
        let mut shown: Vec<String> = f.cloud_cfg_notes.iter().take(NAMED).cloned().collect();
        if f.cloud_cfg_notes.len() > NAMED {
            shown.push(format!("{} more", f.cloud_cfg_notes.len() - NAMED));
        }
        return item(
            Status::Fail,
            "cloud-init-datasource",
            format!("the cloud config cannot be read: {}", shown.join("; ")),
        );
    }
    match strings(f.cloud_cfg.get("datasource_list")) {
        None => item(
            Status::Pass,
            "cloud-init-datasource",
            "no datasource_list: cloud-init's default list, OpenStack and ConfigDrive included",
        ),
        Some(l) => {
            let ok: Vec<&String> = l
                .iter()
                .filter(|d| matches!(d.as_str(), "OpenStack" | "ConfigDrive" | "NoCloud"))
                .collect();
            if ok.is_empty() {
                item(
                    Status::Fail,
                    "cloud-init-datasource",
                    format!(
                        "datasource_list [{}] has neither OpenStack, ConfigDrive nor NoCloud: the instance gets no metadata",
                        l.join(", ")
                    ),
                )
            } else {
                item(
                    Status::Pass,
                    "cloud-init-datasource",
                    format!("datasource_list [{}]", l.join(", ")),
                )
            }
        }
    }
}

/// Keeps the first [`kernel_image::HEAD`] bytes written to it, then
/// refuses more, so the copy stops there (a kernel file may be huge or
/// sparse in an untrusted image: reading it all is what the fuzz
/// regression `vmlinuz-of-huge-sparse-size` guards against).
struct Head(Vec<u8>);

impl Head {
    fn full(&self) -> bool {
        self.0.len() >= kernel_image::HEAD
    }
}

impl std::io::Write for Head {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if self.full() {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let n = (kernel_image::HEAD - self.0.len()).min(b.len());
        self.0.extend_from_slice(&b[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The chosen kernel file's boot format, judged against the architecture
/// of the image's programs: a bzImage in an x86-64 image, an arm64 Image
/// (plain, gzip'd or EFI zboot) in an arm64 one.
fn kernel_format(
    view: &View,
    path: &str,
    userland: Option<&str>,
) -> Result<(Status, String), InspectError> {
    let Some(n) = view.resolve(path, true)? else {
        return Ok((Status::Fail, "the file is not in the image".into()));
    };
    let mut head = Head(Vec::new());
    let copied = view.copy_node(&n, &mut head);
    if !head.full() {
        copied?;
    }
    Ok(match (kernel_image::identify(&head.0), userland) {
        (None, _) => (
            Status::Warn,
            "not a format dibr knows (x86 bzImage, arm64 Image, EFI zboot): the boot loader must understand it".into(),
        ),
        (Some(k), Some(u)) if k.arch.is_some_and(|a| a != u) => (
            Status::Fail,
            format!(
                "{}, for {}, but the image's programs are {u}: it will not boot",
                k.format,
                k.arch.unwrap_or("?")
            ),
        ),
        (Some(k), _) => (Status::Pass, k.format),
    })
}

/// The serial console a VM of this architecture has: the 16550 UART
/// (`ttyS0`) on x86, the PL011 (`ttyAMA0`) on arm64 (QEMU's `virt`, DIB's
/// bootloader element for arm64).
fn serial_console(arch: Option<&str>) -> &'static str {
    match arch {
        Some("aarch64") | Some("armv7l") => "ttyAMA0",
        _ => "ttyS0",
    }
}

fn kernel_and_console(view: &View) -> Result<(Item, Item), InspectError> {
    let userland = super::glance::guest::architecture(view)?;
    let (k, cmdline, source) = match kernel::choose(view) {
        Ok(c) => {
            let (status, format) = kernel_format(view, &c.kernel, userland)?;
            let d = format!(
                "{} ({format}){} ({})",
                c.kernel,
                if c.initrds.is_empty() {
                    ", no initrd".to_string()
                } else {
                    format!(", initrd {}", c.initrds.join(" "))
                },
                c.how
            );
            let src = c.how.clone();
            (item(status, "kernel", d), c.cmdline, src)
        }
        Err(InspectError::NoKernel { detail, .. }) => (
            item(Status::Fail, "kernel", format!("no kernel: {detail}")),
            None,
            String::new(),
        ),
        Err(e) => return Err(e),
    };
    Ok((k, console_item(view, userland, cmdline, &source)?))
}

/// `console=<the platform's UART>` on the kernel command line.
fn console_item(
    view: &View,
    userland: Option<&str>,
    cmdline: Option<String>,
    source: &str,
) -> Result<Item, InspectError> {
    let tty = serial_console(userland);
    let has = |c: &str| {
        c.split_whitespace().any(|w| {
            w.strip_prefix("console=")
                .and_then(|v| v.strip_prefix(tty))
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(','))
        })
    };
    Ok(match cmdline {
        Some(c) if has(&c) => item(Status::Pass, "serial-console", format!("console={tty} in {source}")),
        Some(c) => item(
            Status::Fail,
            "serial-console",
            format!(
                "no console={tty} in {source} ({c}): add it to GRUB_CMDLINE_LINUX_DEFAULT in /etc/default/grub and regenerate grub.cfg"
            ),
        ),
        None => {
            let dflt = view.read_file("/etc/default/grub", SMALL)?.map(text);
            match dflt {
                Some(t) if t.lines().any(|l| l.trim_start().starts_with("GRUB_CMDLINE_LINUX") && has(&l.replace(['"', '\''], " "))) => item(
                    Status::Warn,
                    "serial-console",
                    format!("no grub.cfg; /etc/default/grub has console={tty} for when it is generated"),
                ),
                _ => item(
                    Status::Warn,
                    "serial-console",
                    format!("no grub.cfg to read the kernel command line from: whoever boots the kernel must pass console={tty}"),
                ),
            }
        }
    })
}

fn machine_id(view: &View) -> Result<Item, InspectError> {
    let p = "/etc/machine-id";
    Ok(match view.read_file(p, SMALL)? {
        None => item(
            Status::Warn,
            "machine-id",
            format!("{p} is missing: systemd makes one at boot, but an empty file is the convention (systemd's first-boot semantics)"),
        ),
        Some(t) => {
            let s = text(t);
            let s = s.trim();
            if s.is_empty() || s == "uninitialized" {
                item(Status::Pass, "machine-id", format!("{p} is empty: each instance gets its own"))
            } else {
                item(
                    Status::Fail,
                    "machine-id",
                    format!("{p} is '{s}': every instance would share it (DHCP client ids, journald); truncate it to zero bytes"),
                )
            }
        }
    })
}

/// The virtual size against the flavor's disk: Nova refuses to boot an
/// image larger than the flavor's root disk (at boot, not at upload).
pub fn flavor_disk(virtual_size: u64, flavor_gib: Option<u64>) -> Item {
    let min = virtual_size.div_ceil(1 << 30);
    let size = super::limits::bytes(virtual_size);
    match flavor_gib {
        Some(f) if min > f => item(
            Status::Warn,
            "flavor-disk",
            format!("the virtual size {size} needs a flavor disk of {min} GiB (min_disk); a {f} GiB flavor disk is too small: Nova fails at boot"),
        ),
        Some(f) => item(
            Status::Pass,
            "flavor-disk",
            format!("the virtual size {size} fits a {f} GiB flavor disk (min_disk {min} GiB)"),
        ),
        None => item(
            Status::Pass,
            "flavor-disk",
            format!("the virtual size {size} needs a flavor disk of at least {min} GiB (min_disk; --flavor-disk GIB to compare)"),
        ),
    }
}
