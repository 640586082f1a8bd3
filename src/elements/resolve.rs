//! Dependency expansion: from the elements a user asked for to the full set
//! the build uses (DIB's `element_dependencies.py:_expand_element_dependencies`
//! and `_output_env_vars`; `base` is prepended by
//! `lib/common-functions:arg_to_elements` unless `-n`).
//!
//! The algorithm, kept step for step so that DIB's error conditions and
//! corner cases (circular dependencies are fine; virtual elements are
//! satisfied by whoever provides them) behave the same:
//!
//! 1. A breadth-first queue starts with the requested elements.
//! 2. An element already *provided* by a processed element is skipped
//!    (bug #1303911: provided names are never looked up as real elements).
//! 3. An element not on `ELEMENTS_PATH` is an error.
//! 4. Its provides are recorded; providing a name another element already
//!    provides is an error.
//! 5. Its dependencies not yet seen nor provided are queued.
//! 6. Afterwards, a requested element that something provides is an error;
//!    no provider of `operating-system` is an error.
//! 7. The result is everything seen minus everything provided. DIB returns a
//!    Python set (arbitrary order); dibr sorts by name, so output is stable.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;

use super::element::Element;

/// Dependency expansion failed.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("Element '{element}' not found{} (searched ELEMENTS_PATH: {searched}); check the name or add its directory to ELEMENTS_PATH", required_by.as_ref().map(|r| format!(", required by '{r}'")).unwrap_or_default())]
    MissingElement {
        element: String,
        required_by: Option<String>,
        searched: String,
    },
    #[error("'{provided}' is provided by both '{first}' and '{second}'; use only one of them")]
    DuplicateProvider {
        provided: String,
        first: String,
        second: String,
    },
    #[error("The following elements are already provided by another element: {}; do not request them explicitly", format_conflicts(.0))]
    AlreadyProvided(Vec<(String, Vec<String>)>),
    #[error("Please include an operating system element (one that provides 'operating-system', e.g. ubuntu, debian, centos)")]
    MissingOs,
}

fn format_conflicts(c: &[(String, Vec<String>)]) -> String {
    c.iter()
        .map(|(e, by)| {
            let by: Vec<String> = by.iter().map(|b| format!("'{b}'")).collect();
            format!("{e} : already provided by [{}]", by.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The expanded element set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// `(name, path)`, sorted by name.
    pub elements: Vec<(String, PathBuf)>,
    /// Which element provides each virtual name (e.g. `operating-system`).
    pub provided_by: BTreeMap<String, String>,
}

/// The element list DIB builds from the command line: `base` first unless
/// `skip_base` (`-n`), then the user's elements in order.
pub fn requested_elements(user: &[String], skip_base: bool) -> Vec<String> {
    let mut v = Vec::with_capacity(user.len() + 1);
    if !skip_base {
        v.push("base".to_owned());
    }
    v.extend(user.iter().cloned());
    v
}

/// Expand `requested` against the element table `all` (from
/// [`super::ElementsPath::discover`]).
///
/// One difference from DIB: when an element needs the virtual
/// `block-device` (as `vm` does) and no element provides it, DIB stops with
/// "Element 'block-device' not found"; dibr adds
/// `block-device-${DIB_BLOCK_DEVICE:-efi}` (GPT that boots from BIOS and
/// UEFI), so `dibr build debian vm` makes a bootable disk. `block_device`
/// is that kind, resolved by the caller (`crate::settings::block_device_kind`).
pub fn resolve(
    requested: &[String],
    all: &BTreeMap<String, Element>,
    block_device: &str,
) -> Result<Resolved, ResolveError> {
    match resolve_once(requested, all) {
        Err(ResolveError::MissingElement { element, .. }) if element == "block-device" => {
            let default = format!("block-device-{block_device}");
            let mut with = requested.to_vec();
            with.push(default.clone());
            let r = resolve_once(&with, all)?;
            eprintln!(
                "dibr: no element provides block-device: using {default} (set DIB_BLOCK_DEVICE=mbr|gpt|efi or add a block-device-* element)"
            );
            Ok(r)
        }
        other => other,
    }
}

fn resolve_once(
    requested: &[String],
    all: &BTreeMap<String, Element>,
) -> Result<Resolved, ResolveError> {
    let mut seen: BTreeSet<String> = requested.iter().cloned().collect();
    let mut queue: VecDeque<(String, Option<String>)> =
        requested.iter().map(|e| (e.clone(), None)).collect();
    let mut processed: BTreeSet<String> = BTreeSet::new();
    let mut provided_by: BTreeMap<String, String> = BTreeMap::new();

    while let Some((name, required_by)) = queue.pop_front() {
        if provided_by.contains_key(&name) || !processed.insert(name.clone()) {
            continue;
        }
        let Some(el) = all.get(&name) else {
            return Err(ResolveError::MissingElement {
                element: name,
                required_by,
                searched: searched(all),
            });
        };
        for p in &el.provides {
            if let Some(first) = provided_by.get(p) {
                if *first != name {
                    return Err(ResolveError::DuplicateProvider {
                        provided: p.clone(),
                        first: first.clone(),
                        second: name.clone(),
                    });
                }
            }
            provided_by.insert(p.clone(), name.clone());
        }
        for d in &el.depends {
            if !seen.contains(d) && !provided_by.contains_key(d) {
                queue.push_back((d.clone(), Some(name.clone())));
            }
            seen.insert(d.clone());
        }
    }

    let conflicts: Vec<(String, Vec<String>)> = requested
        .iter()
        .filter_map(|r| provided_by.get(r).map(|by| (r.clone(), vec![by.clone()])))
        .collect::<BTreeMap<_, _>>()
        .into_iter()
        .collect();
    if !conflicts.is_empty() {
        return Err(ResolveError::AlreadyProvided(conflicts));
    }
    if !provided_by.contains_key("operating-system") {
        return Err(ResolveError::MissingOs);
    }
    let elements = seen
        .into_iter()
        .filter(|n| !provided_by.contains_key(n))
        .map(|n| {
            // Every name left was processed, so it is in `all`; a name only
            // queued behind an error never gets here.
            let path = all.get(&n).map(|e| e.path.clone()).unwrap_or_default();
            (n, path)
        })
        .collect();
    Ok(Resolved {
        elements,
        provided_by,
    })
}

fn searched(all: &BTreeMap<String, Element>) -> String {
    let mut parents: Vec<String> = all
        .values()
        .filter_map(|e| e.path.parent().map(|p| p.display().to_string()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if parents.is_empty() {
        parents.push("(no elements found)".into());
    }
    parents.join(":")
}

impl Resolved {
    /// The names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.elements.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// `IMAGE_ELEMENT`: the names separated by single spaces.
    pub fn image_element(&self) -> String {
        self.names().join(" ")
    }

    /// `IMAGE_ELEMENT_YAML`: a block mapping `name: path`, one per line,
    /// sorted by name, as PyYAML's `safe_dump` writes a dict of strings.
    pub fn image_element_yaml(&self) -> String {
        let mut s = String::new();
        for (n, p) in &self.elements {
            s.push_str(&yaml_scalar(n));
            s.push_str(": ");
            s.push_str(&yaml_scalar(&p.display().to_string()));
            s.push('\n');
        }
        if s.is_empty() {
            s.push_str("{}\n");
        }
        s
    }

    /// The eval-able shell text `element-info --env` prints:
    /// `IMAGE_ELEMENT`, `IMAGE_ELEMENT_YAML` and the exported function
    /// `get_image_element_array` (bash cannot export arrays).
    pub fn env_script(&self) -> String {
        let mut arr = String::new();
        for (n, p) in &self.elements {
            arr.push_str(&format!("[{}]={} ", n, p.display()));
        }
        format!(
            "export IMAGE_ELEMENT={}\nexport IMAGE_ELEMENT_YAML={}\n\
             function get_image_element_array {{\n  echo {}\n}};\n\
             export -f get_image_element_array;\n",
            sh_quote(&self.image_element()),
            sh_quote(&self.image_element_yaml()),
            sh_double_quote(&arr),
        )
    }
}

/// Single-quote for bash (DIB pastes the text between single quotes; this
/// also survives a `'` in a path).
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn sh_double_quote(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        if matches!(c, '"' | '\\' | '$' | '`') {
            o.push('\\');
        }
        o.push(c);
    }
    o.push('"');
    o
}

/// A YAML scalar as PyYAML would write a plain string: bare when that reads
/// back as the same string, else single-quoted.
fn yaml_scalar(s: &str) -> String {
    let reserved = [
        "", "~", "null", "true", "false", "yes", "no", "on", "off", "y", "n",
    ];
    let plain_chars = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/_.-+".contains(c));
    let first_ok = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '/' || c == '_');
    if plain_chars && first_ok && !reserved.contains(&s.to_ascii_lowercase().as_str()) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}
