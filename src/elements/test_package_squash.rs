//! DIB's `elements/package-installs/tests/test_package_squash.py`, case for
//! case (same package documents, same environments, same expected
//! `{phase: {op: [(package, element)]}}`, compared order-insensitively as
//! DIB's matcher does), plus the file forms, the JSON DIB writes, and a
//! deterministic no-panic mutation property over real documents.

use std::fs;

use serde_json::{json, Map, Value};

use super::package_installs::{
    parse_document, squash, squash_documents, Env, PackageInstallsError, Squashed,
};

fn env(pairs: &[(&str, &str)]) -> Env {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("fixture must be an object"),
    }
}

fn collect(objs: Value, env: &Env) -> Result<Squashed, PackageInstallsError> {
    let m = obj(objs);
    squash_documents(&[("test_element", &m)], env)
}

/// DIB's `IsMatchingInstallList`: every expected phase/op is present with
/// the same entries, order ignored.
fn assert_matches(actual: &Squashed, expected: &[(&str, &str, &[&str])]) {
    for (phase, op, pkgs) in expected {
        let mut got: Vec<(String, String)> = actual.get(phase, op).to_vec();
        got.sort();
        let mut want: Vec<(String, String)> = pkgs
            .iter()
            .map(|p| (p.to_string(), "test_element".to_string()))
            .collect();
        want.sort();
        assert_eq!(got, want, "phase {phase} op {op}: {:?}", actual.phases);
    }
}

#[test]
fn test_simple() {
    let r = collect(json!({"test_package": ""}), &env(&[])).unwrap();
    assert_matches(&r, &[("install.d", "install", &["test_package"])]);
}

#[test]
fn test_arch() {
    let r = collect(
        json!({
            "test_package": "",
            "test_arm64_package": {"arch": "arm64"},
            "do_not_install": {"not-arch": "arm64"}
        }),
        &env(&[("ARCH", "arm64")]),
    )
    .unwrap();
    assert_matches(
        &r,
        &[(
            "install.d",
            "install",
            &["test_package", "test_arm64_package"],
        )],
    );
}

fn kernel_objs() -> Value {
    json!({
        "linux-image-generic": [
            {"not-arch": "arm64", "when": "DIB_UBUNTU_KERNEL = linux-image-generic"},
            {"arch": "arm64", "when": ["DIB_RELEASE != xenial", "DIB_UBUNTU_KERNEL = linux-image-generic"]}
        ],
        "linux-generic-hwe-16.04": {
            "arch": "arm64",
            "when": ["DIB_RELEASE = xenial", "DIB_UBUNTU_KERNEL = linux-image-generic"]
        }
    })
}

fn kernel_match(arch: &str, release: &str, expected: &str) {
    let e = env(&[
        ("ARCH", arch),
        ("DIB_UBUNTU_KERNEL", "linux-image-generic"),
        ("DIB_RELEASE", release),
    ]);
    let r = collect(kernel_objs(), &e).unwrap();
    assert_matches(&r, &[("install.d", "install", &[expected])]);
}

#[test]
fn test_param_list_x86() {
    kernel_match("x86_64", "focal", "linux-image-generic");
}

#[test]
fn test_param_list_arm64_xenial() {
    kernel_match("arm64", "xenial", "linux-generic-hwe-16.04");
}

#[test]
fn test_param_list_arm64_focal() {
    kernel_match("arm64", "focal", "linux-image-generic");
}

#[test]
fn test_skip_when() {
    let r = collect(
        json!({
            "skipped_package": {"when": "DIB_FEATURE=0"},
            "not_skipped_package": {"when": "DIB_FEATURE=1"},
            "not_equal_package": {"when": "DIB_FEATURE!=0"},
            "not_equal_skipped_package": {"when": "DIB_FEATURE!=1"}
        }),
        &env(&[("DIB_FEATURE", "1")]),
    )
    .unwrap();
    assert_matches(
        &r,
        &[(
            "install.d",
            "install",
            &["not_skipped_package", "not_equal_package"],
        )],
    );
}

#[test]
fn test_skip_no_var() {
    let e = collect(json!({"package": {"when": "MISSING_VAR=1"}}), &env(&[])).unwrap_err();
    assert!(
        matches!(e, PackageInstallsError::WhenVarUnset { .. }),
        "{e}"
    );
    assert!(e
        .to_string()
        .contains("The variable <MISSING_VAR> is not set"));
}

#[test]
fn test_skip_when_list() {
    let r = collect(
        json!({
            "not_skipped_package": {"when": ["DIB_A_FEATURE=1", "DIB_B_FEATURE=1", "DIB_C_FEATURE=1"]},
            "skipped_package": {"when": ["DIB_A_FEATURE=1", "DIB_B_FEATURE=0", "DIB_C_FEATURE=1"]}
        }),
        &env(&[
            ("DIB_A_FEATURE", "1"),
            ("DIB_B_FEATURE", "1"),
            ("DIB_C_FEATURE", "1"),
        ]),
    )
    .unwrap();
    assert_matches(&r, &[("install.d", "install", &["not_skipped_package"])]);
    assert!(r.get("install.d", "uninstall").is_empty());
}

// ---- the rest of package-installs-squash's behaviour ----

#[test]
fn phases_uninstall_build_only_and_installtype() {
    let e = env(&[("DIB_INSTALLTYPE_test_element", "package")]);
    let r = collect(
        json!({
            "a": null,
            "grub2": {"phase": "pre-install.d"},
            "networkmanager": {"uninstall": true},
            "gcc": {"build-only": true},
            "src-only": {"installtype": "source"},
            "pkg-only": {"installtype": "package"},
            "py": {"dib_python_version": 3}
        }),
        &e,
    )
    .unwrap();
    assert_eq!(r.get("install.d", "install").len(), 3); // a, gcc, pkg-only
    assert_matches(
        &r,
        &[
            ("install.d", "install", &["a", "gcc", "pkg-only"]),
            ("pre-install.d", "install", &["grub2"]),
            ("install.d", "uninstall", &["networkmanager", "gcc"]),
        ],
    );
    // DIB_PYTHON_VERSION=3 lets "py" in.
    let e3 = env(&[("DIB_PYTHON_VERSION", "3")]);
    let r = collect(json!({"py": {"dib_python_version": 3}}), &e3).unwrap();
    assert_matches(&r, &[("install.d", "install", &["py"])]);
}

#[test]
fn uninstall_presence_counts_even_when_false() {
    let r = collect(json!({"x": {"uninstall": false}}), &env(&[])).unwrap();
    assert_matches(&r, &[("install.d", "uninstall", &["x"])]);
}

#[test]
fn plain_install_elsewhere_cancels_uninstall() {
    let a = obj(json!({"vim": {"uninstall": true}, "gcc": {"build-only": true}}));
    let b = obj(json!({"vim": null}));
    let r = squash_documents(&[("a", &a), ("b", &b)], &env(&[])).unwrap();
    assert_eq!(
        r.get("install.d", "uninstall"),
        [("gcc".to_string(), "a".to_string())]
    );
}

#[test]
fn installtype_default_from_dib_default_installtype() {
    let e = env(&[("DIB_DEFAULT_INSTALLTYPE", "package")]);
    let r = collect(
        json!({"s": {"installtype": "source"}, "p": {"installtype": "package"}}),
        &e,
    )
    .unwrap();
    assert_matches(&r, &[("install.d", "install", &["p"])]);
}

#[test]
fn arch_errors_and_untrimmed_lists() {
    let e = collect(
        json!({"x": {"arch": "amd64", "not-arch": "arm64"}}),
        &env(&[("ARCH", "amd64")]),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("arch and not_arch given for package [x]"),
        "{e}"
    );
    let e = collect(json!({"x": {"arch": "amd64"}}), &env(&[])).unwrap_err();
    assert!(matches!(e, PackageInstallsError::ArchUnset { .. }));
    // DIB splits on ',' without trimming: " arm64" is not "arm64".
    let r = collect(
        json!({"x": {"arch": "amd64, arm64"}, "y": {"arch": "amd64,arm64"}}),
        &env(&[("ARCH", "arm64")]),
    )
    .unwrap();
    assert_matches(&r, &[("install.d", "install", &["y"])]);
}

#[test]
fn malformed_when() {
    for bad in ["=1", "FOO", "FOO<1", "-X=1"] {
        let e = collect(json!({"p": {"when": bad}}), &env(&[("FOO", "1")])).unwrap_err();
        assert!(
            matches!(e, PackageInstallsError::MalformedWhen { .. }),
            "{bad}: {e}"
        );
    }
    // Spaces around the operator are allowed; the value keeps its tail.
    let r = collect(
        json!({"p": {"when": "FOO  !=  2"}, "q": {"when": "FOO=1 "}}),
        &env(&[("FOO", "1")]),
    )
    .unwrap();
    assert_matches(&r, &[("install.d", "install", &["p"])]);
}

#[test]
fn files_json_then_yaml_and_dib_json_text() {
    let t = tempfile::tempdir().unwrap();
    let el = t.path().join("elem-a");
    fs::create_dir(&el).unwrap();
    fs::write(
        el.join("package-installs.yaml"),
        "libxml2:\ngrub2:\n  phase: pre-install.d\nnetworkmanager:\n  uninstall: True\nos-collect-config:\n  installtype: source\n",
    )
    .unwrap();
    fs::write(el.join("package-installs.json"), r#"{"jq": null}"#).unwrap();
    let elements = vec![("elem-a".to_string(), el)];
    let r = squash(&elements, &env(&[])).unwrap();
    // JSON file first, then YAML, each in file order.
    assert_eq!(
        r.get("install.d", "install"),
        [
            ("jq".to_string(), "elem-a".to_string()),
            ("libxml2".to_string(), "elem-a".to_string()),
            ("os-collect-config".to_string(), "elem-a".to_string()),
        ]
    );
    let text = r.to_dib_json();
    let want = "{\n \"install.d\": {\n  \"install\": [\n   [\n    \"jq\",\n    \"elem-a\"\n   ],\n   [\n    \"libxml2\",\n    \"elem-a\"\n   ],\n   [\n    \"os-collect-config\",\n    \"elem-a\"\n   ]\n  ],\n  \"uninstall\": [\n   [\n    \"networkmanager\",\n    \"elem-a\"\n   ]\n  ]\n },\n \"pre-install.d\": {\n  \"install\": [\n   [\n    \"grub2\",\n    \"elem-a\"\n   ]\n  ]\n }\n}";
    assert_eq!(text, want);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v, r.to_value());
}

#[test]
fn bad_documents_are_errors_not_panics() {
    for (doc, frag) in [
        ("", "top level must be a mapping"),
        ("- a\n- b\n", "top level must be a mapping"),
        (
            "a: [1, 2]\n",
            "each entry of a parameter list must be a mapping",
        ),
        ("a: foo\n", "parameters must be empty"),
        ("a: {phase: 3}\n", "'phase' must be"),
        ("a: {when: 3}\n", "'when' entries must be strings"),
        ("a: [\n", "neither JSON"),
    ] {
        let r =
            parse_document(doc, "x.yaml").and_then(|m| squash_documents(&[("e", &m)], &env(&[])));
        let e = r.unwrap_err().to_string();
        assert!(e.contains(frag), "{doc:?}: {e}");
    }
}

/// Real package-installs documents (shapes from DIB's elements).
const SEEDS: &[&str] = &[
    "libxml2:\ngrub2:\n  phase: pre-install.d\nnetworkmanager:\n  uninstall: True\nos-collect-config:\n  installtype: source\n",
    "linux-image-generic:\n  - not-arch: arm64\n    when: DIB_UBUNTU_KERNEL = linux-image-generic\n  - arch: arm64\n    when:\n      - DIB_RELEASE != xenial\n      - DIB_UBUNTU_KERNEL = linux-image-generic\n",
    "grub-pc:\n  arch: amd64,i386\n  when: DIB_BLOCK_DEVICE != efi\ngrub-efi-amd64-signed:\n  arch: amd64\nshim-signed:\n  not-arch: ppc64el,s390x\n",
    "{\"libxml2\": null, \"grub2\": {\"phase\": \"pre-install.d\"}, \"gcc\": {\"build-only\": true}}",
    "python3-dev:\n  build-only: true\n  dib_python_version: 3\ncurl:\n",
];

use crate::test_rng::Rng;

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    const INTERESTING: &[&[u8]] = &[
        b":",
        b"-",
        b" ",
        b"\n",
        b"[",
        b"]",
        b"{",
        b"}",
        b"\"",
        b"'",
        b"!=",
        b"=",
        b"&a",
        b"*a",
        b"!!",
        b"null",
        b"~",
        b"phase",
        b"when",
        b"arch",
        b"not-arch",
        b"build-only",
        b"\t",
        b"\xff",
        b"#",
        b"? ",
        b"|",
        b">",
        b"%YAML 1.2\n---\n",
        b"1e999",
    ];
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(6) {
        let pos = if v.is_empty() {
            0
        } else {
            rng.below(v.len() + 1)
        };
        match rng.below(5) {
            0 if !v.is_empty() => {
                let end = (pos + 1 + rng.below(8)).min(v.len());
                v.drain(pos.min(v.len())..end);
            }
            1 => {
                let t = INTERESTING[rng.below(INTERESTING.len())];
                v.splice(pos..pos, t.iter().copied());
            }
            2 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = (rng.next() & 0xff) as u8;
            }
            3 if !v.is_empty() => {
                // duplicate a slice (nesting, repeated keys)
                let a = rng.below(v.len());
                let b = (a + rng.below(32)).min(v.len());
                let chunk = v[a..b].to_vec();
                v.splice(pos..pos, chunk);
            }
            _ => {
                let other = SEEDS[rng.below(SEEDS.len())].as_bytes();
                let cut = rng.below(other.len() + 1);
                v.extend_from_slice(&other[..cut]);
            }
        }
    }
    v
}

#[test]
fn mutated_documents_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let envs = [
        env(&[]),
        env(&[
            ("ARCH", "amd64"),
            ("DIB_RELEASE", "focal"),
            ("DIB_UBUNTU_KERNEL", "linux-image-generic"),
            ("DIB_BLOCK_DEVICE", "efi"),
            ("DIB_PYTHON_VERSION", "3"),
        ]),
    ];
    let mut parsed = 0;
    for i in 0..3000 {
        let seed = SEEDS[i % SEEDS.len()].as_bytes();
        let bytes = mutate(&mut rng, seed);
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(doc) = parse_document(&text, "mutant") {
            parsed += 1;
            for e in &envs {
                if let Ok(sq) = squash_documents(&[("el", &doc)], e) {
                    let _ = sq.to_dib_json();
                }
            }
        }
        let _ = super::element::parse_name_list(&text);
    }
    // The mutations must still reach the squash, not only the parser.
    assert!(parsed > 300, "only {parsed} mutants parsed");
}
