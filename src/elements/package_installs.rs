//! `package-installs.{json,yaml}`: the declarative package lists of
//! elements, squashed into the one file the in-image hooks read
//! (DIB's `elements/package-installs/bin/package-installs-squash`, whose
//! output goes to `/tmp/package-installs.json` in the image).
//!
//! Each file maps a package name to parameters: nothing (`null`, `''`), a
//! mapping, or a list of mappings (alternatives, each judged on its own).
//! Keys, as DIB reads them:
//!
//! - `phase`: `install.d` (default), `pre-install.d`, `post-install.d`, …
//! - `uninstall`: its *presence* makes it an uninstall (DIB tests
//!   `'uninstall' in params`, so `uninstall: false` uninstalls too).
//! - `build-only`: presence means install, then uninstall at the end.
//! - `installtype`: only when it equals `DIB_INSTALLTYPE_<element>` (dashes
//!   as underscores), else `DIB_DEFAULT_INSTALLTYPE`, else `source`.
//! - `arch` / `not-arch`: comma lists (not trimmed, as in DIB) checked
//!   against `ARCH`; both at once is an error.
//! - `dib_python_version`: only when equal to `DIB_PYTHON_VERSION`.
//! - `when`: `VAR=value` / `VAR!=value`, or a list of them (all must hold);
//!   an unset `VAR` is an error.
//!
//! A file is read as JSON first and as YAML if that fails, as DIB does.
//! After squashing, an uninstall of a package that some element installs
//! plainly (not `build-only`) is dropped: a plain install elsewhere wins
//! over an uninstall.
//!
//! YAML crate: `serde-saphyr` (pure Rust, actively maintained, built for
//! panic-free parsing of untrusted input and good error messages) rather
//! than `serde_yaml` (unmaintained since 2024) or its fork `serde_yaml_ng`
//! (still the machine-translated libyaml C code, `unsafe-libyaml`). It
//! deserialises straight into `serde_json::Value`, so JSON and YAML files
//! share one code path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// Reading or squashing package-installs failed.
#[derive(Debug, thiserror::Error)]
pub enum PackageInstallsError {
    #[error("cannot read {}: {source}", file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: neither JSON ({json}) nor YAML ({yaml}); fix the syntax")]
    Parse {
        origin: String,
        json: String,
        yaml: String,
    },
    #[error(
        "{origin}: the top level must be a mapping of package name to parameters, found {found}"
    )]
    NotMapping { origin: String, found: &'static str },
    #[error("element '{element}', package '{package}': {detail}")]
    BadParams {
        element: String,
        package: String,
        detail: String,
    },
    #[error("package-installs configuration error: arch and not_arch given for package [{package}] (element '{element}'); keep only one")]
    ArchAndNotArch { element: String, package: String },
    #[error("element '{element}', package '{package}' is filtered by arch but ARCH is not set; set ARCH (e.g. amd64)")]
    ArchUnset { element: String, package: String },
    #[error("element '{element}', package '{package}': Malformed when line: <{statement}>; write VAR=value or VAR!=value")]
    MalformedWhen {
        element: String,
        package: String,
        statement: String,
    },
    #[error("element '{element}', package '{package}': The variable <{var}> is not set (needed by its 'when'); export it")]
    WhenVarUnset {
        element: String,
        package: String,
        var: String,
    },
}

type Result<T> = std::result::Result<T, PackageInstallsError>;

/// The environment the squash is judged against (`ARCH`, `DIB_*`, and any
/// variable a `when` names); the process's, as
/// `crate::settings::process_env` reads it, or any other.
pub type Env = BTreeMap<String, String>;

/// `(package, element)` pairs of one operation.
pub type Entries = Vec<(String, String)>;
/// One phase's operations: `(op, entries)`, op being `install` or `uninstall`.
pub type PhaseOps = Vec<(String, Entries)>;

/// `(package, element)` pairs per phase and operation, in the order DIB
/// builds them (first appearance), ready to be written as DIB's JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Squashed {
    /// phase → [(op, [(package, element)])], op being `install` or `uninstall`.
    pub phases: Vec<(String, PhaseOps)>,
    /// Packages installed plainly (not build-only), for the uninstall rule.
    plain_installs: Vec<String>,
}

/// Parse a package-installs document: JSON, else YAML. `origin` names the
/// file in errors.
pub fn parse_document(text: &str, origin: &str) -> Result<Map<String, Value>> {
    let v = match serde_json::from_str::<Value>(text) {
        Ok(v) => v,
        Err(je) => match serde_saphyr::from_str::<Value>(text) {
            Ok(v) => v,
            Err(ye) => {
                return Err(PackageInstallsError::Parse {
                    origin: origin.to_owned(),
                    json: je.to_string(),
                    yaml: first_line(&ye.to_string()),
                })
            }
        },
    };
    match v {
        Value::Object(m) => Ok(m),
        other => Err(PackageInstallsError::NotMapping {
            origin: origin.to_owned(),
            found: kind(&other),
        }),
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_owned()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing (empty document)",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Python truthiness, which DIB's `if not params` and `if arch` use.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Python's `str()` of a scalar, for `dib_python_version`.
fn py_str(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `DIB_INSTALLTYPE_<element>` (dashes as underscores), else
/// `DIB_DEFAULT_INSTALLTYPE`, else `source`.
pub fn element_installtype(element: &str, env: &Env) -> String {
    let key = format!("DIB_INSTALLTYPE_{}", element.replace('-', "_"));
    env.get(&key)
        .or_else(|| env.get("DIB_DEFAULT_INSTALLTYPE"))
        .cloned()
        .unwrap_or_else(|| "source".into())
}

/// Split a `when` statement as DIB's regex
/// `(?P<var>\w+)(\s*)(?P<op>=|!=)(\s*)(?P<val>.*)` (anchored at the start
/// only) does: `(var, negated, value)`.
pub fn parse_when(s: &str) -> Option<(&str, bool, &str)> {
    let var_end = s
        .char_indices()
        .find(|(_, c)| !(c.is_alphanumeric() || *c == '_'))
        .map_or(s.len(), |(i, _)| i);
    if var_end == 0 {
        return None;
    }
    let var = &s[..var_end];
    let rest = s[var_end..].trim_start_matches(char::is_whitespace);
    let (negated, rest) = if let Some(r) = rest.strip_prefix("!=") {
        (true, r)
    } else if let Some(r) = rest.strip_prefix('=') {
        (false, r)
    } else {
        return None;
    };
    let rest = rest.trim_start_matches(char::is_whitespace);
    // `.` does not match a newline.
    let val = rest.split('\n').next().unwrap_or_default();
    Some((var, negated, val))
}

struct Ctx<'a> {
    element: &'a str,
    package: &'a str,
    env: &'a Env,
}

impl Ctx<'_> {
    fn bad(&self, detail: impl Into<String>) -> PackageInstallsError {
        PackageInstallsError::BadParams {
            element: self.element.to_owned(),
            package: self.package.to_owned(),
            detail: detail.into(),
        }
    }

    fn arch_in(&self, list: &Value) -> Result<bool> {
        let Value::String(list) = list else {
            return Err(self.bad("'arch'/'not-arch' must be a comma-separated string"));
        };
        let arch = self
            .env
            .get("ARCH")
            .ok_or_else(|| PackageInstallsError::ArchUnset {
                element: self.element.to_owned(),
                package: self.package.to_owned(),
            })?;
        Ok(list.split(',').any(|a| a == arch))
    }

    fn valid_for_arch(&self, arch: Option<&Value>, not_arch: Option<&Value>) -> Result<bool> {
        match (arch, not_arch) {
            (None, None) => Ok(true),
            (Some(a), Some(n)) if truthy(a) && truthy(n) => {
                Err(PackageInstallsError::ArchAndNotArch {
                    element: self.element.to_owned(),
                    package: self.package.to_owned(),
                })
            }
            (Some(a), _) if truthy(a) => self.arch_in(a),
            (_, Some(n)) => Ok(!self.arch_in(n)?),
            (Some(_), None) => Err(self.bad("'arch' is empty; give an architecture or drop it")),
        }
    }

    fn when(&self, statements: Option<&Value>) -> Result<bool> {
        let list: Vec<&Value> = match statements {
            None => return Ok(true),
            Some(Value::Array(a)) => a.iter().collect(),
            Some(v) => vec![v],
        };
        let mut all = true;
        for s in list {
            let Value::String(s) = s else {
                return Err(self.bad(format!("'when' entries must be strings, found {s}")));
            };
            let (var, negated, val) =
                parse_when(s).ok_or_else(|| PackageInstallsError::MalformedWhen {
                    element: self.element.to_owned(),
                    package: self.package.to_owned(),
                    statement: s.clone(),
                })?;
            let cur = self
                .env
                .get(var)
                .ok_or_else(|| PackageInstallsError::WhenVarUnset {
                    element: self.element.to_owned(),
                    package: self.package.to_owned(),
                    var: var.to_owned(),
                })?;
            if (cur == val) == negated {
                all = false;
            }
        }
        Ok(all)
    }
}

impl Squashed {
    fn push(&mut self, phase: &str, op: &str, package: &str, element: &str) {
        let pi = match self.phases.iter().position(|(p, _)| p == phase) {
            Some(i) => i,
            None => {
                self.phases.push((phase.to_owned(), Vec::new()));
                self.phases.len() - 1
            }
        };
        let ops = &mut self.phases[pi].1;
        let oi = match ops.iter().position(|(o, _)| o == op) {
            Some(i) => i,
            None => {
                ops.push((op.to_owned(), Vec::new()));
                ops.len() - 1
            }
        };
        ops[oi].1.push((package.to_owned(), element.to_owned()));
    }

    /// Add one element's parsed document (DIB's `collect_data`).
    pub fn collect(&mut self, objs: &Map<String, Value>, element: &str, env: &Env) -> Result<()> {
        for (package, params) in objs {
            let cx = Ctx {
                element,
                package,
                env,
            };
            let empty = Map::new();
            let alternatives: Vec<&Map<String, Value>> = if !truthy(params) {
                vec![&empty]
            } else {
                match params {
                    Value::Object(m) => vec![m],
                    Value::Array(a) => a
                        .iter()
                        .map(|p| match p {
                            Value::Object(m) => Ok(m),
                            other => Err(cx.bad(format!(
                                "each entry of a parameter list must be a mapping, found {}",
                                kind(other)
                            ))),
                        })
                        .collect::<Result<_>>()?,
                    other => {
                        return Err(cx.bad(format!(
                            "parameters must be empty, a mapping or a list of mappings, found {}",
                            kind(other)
                        )))
                    }
                }
            };
            for p in alternatives {
                self.collect_one(&cx, p)?;
            }
        }
        Ok(())
    }

    fn collect_one(&mut self, cx: &Ctx, p: &Map<String, Value>) -> Result<()> {
        let phase = match p.get("phase") {
            None => "install.d",
            Some(Value::String(s)) => s.as_str(),
            Some(other) => {
                return Err(cx.bad(format!(
                    "'phase' must be a phase directory name such as install.d, found {other}"
                )))
            }
        };
        let build_only = p.contains_key("build-only");
        let ops: &[&str] = if build_only {
            &["install", "uninstall"]
        } else if p.contains_key("uninstall") {
            &["uninstall"]
        } else {
            &["install"]
        };
        let valid_installtype = match p.get("installtype") {
            None | Some(Value::Null) => true,
            Some(Value::String(t)) => *t == element_installtype(cx.element, cx.env),
            Some(_) => false,
        };
        let valid_arch = cx.valid_for_arch(
            p.get("arch").filter(|v| !v.is_null()),
            p.get("not-arch").filter(|v| !v.is_null()),
        )?;
        let want_py = p.get("dib_python_version").map(py_str).unwrap_or_default();
        let valid_py = want_py.is_empty()
            || want_py
                == cx
                    .env
                    .get("DIB_PYTHON_VERSION")
                    .cloned()
                    .unwrap_or_default();
        if !cx.when(p.get("when").filter(|v| !v.is_null()))? {
            return Ok(());
        }
        if valid_installtype && valid_arch && valid_py {
            for op in ops {
                self.push(phase, op, cx.package, cx.element);
            }
            if ops == ["install"] {
                self.plain_installs.push(cx.package.to_owned());
            }
        }
        Ok(())
    }

    /// Drop uninstalls of packages some element installs plainly.
    fn apply_install_precedence(&mut self) {
        let plain = &self.plain_installs;
        for (_, ops) in &mut self.phases {
            for (op, list) in ops.iter_mut() {
                if op == "uninstall" {
                    list.retain(|(pkg, _)| !plain.contains(pkg));
                }
            }
        }
    }

    /// The list for a phase and operation (empty if none).
    pub fn get(&self, phase: &str, op: &str) -> &[(String, String)] {
        self.phases
            .iter()
            .find(|(p, _)| p == phase)
            .and_then(|(_, ops)| ops.iter().find(|(o, _)| o == op))
            .map(|(_, l)| l.as_slice())
            .unwrap_or(&[])
    }

    /// As a JSON value `{phase: {op: [[package, element], …]}}`.
    pub fn to_value(&self) -> Value {
        let mut top = Map::new();
        for (phase, ops) in &self.phases {
            let mut m = Map::new();
            for (op, list) in ops {
                let l = list
                    .iter()
                    .map(|(p, e)| {
                        Value::Array(vec![Value::from(p.as_str()), Value::from(e.as_str())])
                    })
                    .collect();
                m.insert(op.clone(), Value::Array(l));
            }
            top.insert(phase.clone(), Value::Object(m));
        }
        Value::Object(top)
    }

    /// The text DIB writes: Python's
    /// `json.dump(d, indent=True, separators=(',', ': '))` (one-space
    /// indent, ASCII only).
    pub fn to_dib_json(&self) -> String {
        let mut s = String::new();
        write_py_json(&self.to_value(), 0, &mut s);
        s
    }
}

fn write_py_json(v: &Value, level: usize, out: &mut String) {
    let pad = |out: &mut String, l: usize| {
        out.push('\n');
        out.push_str(&" ".repeat(l));
    };
    match v {
        Value::Array(a) if a.is_empty() => out.push_str("[]"),
        Value::Object(o) if o.is_empty() => out.push_str("{}"),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                pad(out, level + 1);
                write_py_json(x, level + 1, out);
            }
            pad(out, level);
            out.push(']');
        }
        Value::Object(o) => {
            out.push('{');
            for (i, (k, x)) in o.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                pad(out, level + 1);
                py_json_str(k, out);
                out.push_str(": ");
                write_py_json(x, level + 1, out);
            }
            pad(out, level);
            out.push('}');
        }
        Value::String(s) => py_json_str(s, out),
        other => out.push_str(&other.to_string()),
    }
}

/// A JSON string as Python writes it with `ensure_ascii=True`.
fn py_json_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
        }
    }
    out.push('"');
}

/// Squash the package-installs files of `elements` (`(name, path)` in
/// `IMAGE_ELEMENT` order) against `env`, as package-installs-squash does.
/// Overridden elements contribute only the copy that won on
/// `ELEMENTS_PATH`.
pub fn squash(elements: &[(String, PathBuf)], env: &Env) -> Result<Squashed> {
    let mut sq = Squashed::default();
    for (name, path) in elements {
        for f in ["package-installs.json", "package-installs.yaml"] {
            let file = path.join(f);
            if !file.exists() {
                continue;
            }
            let doc = read_document(&file)?;
            sq.collect(&doc, name, env)?;
        }
    }
    sq.apply_install_precedence();
    Ok(sq)
}

/// Squash already-parsed documents `(element, document)` (for tests and
/// the fuzzer: no files involved).
pub fn squash_documents(docs: &[(&str, &Map<String, Value>)], env: &Env) -> Result<Squashed> {
    let mut sq = Squashed::default();
    for (element, doc) in docs {
        sq.collect(doc, element, env)?;
    }
    sq.apply_install_precedence();
    Ok(sq)
}

fn read_document(file: &Path) -> Result<Map<String, Value>> {
    let bytes = std::fs::read(file).map_err(|source| PackageInstallsError::Read {
        file: file.to_owned(),
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    parse_document(&text, &file.display().to_string())
}
