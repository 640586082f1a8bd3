//! Fuzz body for the element metadata parsers.

use crate::elements::package_installs::{parse_document, squash_documents, Env};
use crate::elements::parse_name_list;

/// Arbitrary bytes through the element metadata parsers: element-deps /
/// element-provides name lists, and package-installs JSON/YAML parsing
/// plus the squash (DIB's package-installs-squash rules) under a few
/// environments. None of it may panic.
pub fn element_metadata(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = parse_name_list(&text);
    let Ok(doc) = parse_document(&text, "fuzz") else {
        return;
    };
    let envs: [Env; 2] = [
        Env::new(),
        [
            ("ARCH", "amd64"),
            ("DIB_RELEASE", "focal"),
            ("DIB_PYTHON_VERSION", "3"),
            ("DIB_DEFAULT_INSTALLTYPE", "package"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    ];
    for env in &envs {
        if let Ok(sq) = squash_documents(&[("fuzz-element", &doc)], env) {
            let _ = sq.to_dib_json();
        }
    }
}
