//! Image references (`repository[:tag]`), checked as Docker's
//! `reference` grammar asks: lowercase path components of letters,
//! digits and single separators (`.`, `_`, `__`, `-`), an optional
//! registry host (with a port) first, a tag of at most 128 word
//! characters, dots and dashes not starting with either.

use std::fmt;

use super::ContainerError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    pub repository: String,
    pub tag: String,
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}:{}", self.repository, self.tag)
    }
}

/// `repository[:tag]`, the tag `latest` when left out (DIB's
/// `--docker-target`).
pub fn parse_reference(s: &str) -> Result<Reference, ContainerError> {
    let bad = |msg: &str| ContainerError::Reference {
        reference: s.to_string(),
        msg: msg.to_string(),
    };
    if s.contains('@') {
        return Err(bad(
            "a digest cannot be given: the image's digest follows from its content",
        ));
    }
    let last_slash = s.rfind('/').map_or(0, |i| i + 1);
    let (repository, tag) = match s[last_slash..].rfind(':') {
        Some(i) => (&s[..last_slash + i], &s[last_slash + i + 1..]),
        None => (s, "latest"),
    };
    check_tag(tag).map_err(|m| bad(&m))?;
    check_repository(repository).map_err(|m| bad(&m))?;
    Ok(Reference {
        repository: repository.to_string(),
        tag: tag.to_string(),
    })
}

/// The reference when none is given: the image name's last component,
/// lowercased, other characters than the grammar's made `-`, `:latest`.
pub fn default_reference(image_name: &str) -> Reference {
    let mut r: String = image_name
        .to_ascii_lowercase()
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '.' | '_' | '-' => c,
            _ => '-',
        })
        .collect();
    r = r
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string();
    while r.contains("--") || r.contains("..") || r.contains("___") {
        r = r.replace("--", "-").replace("..", ".").replace("___", "__");
    }
    if r.is_empty() {
        r = "image".into();
    }
    Reference {
        repository: r,
        tag: "latest".into(),
    }
}

fn check_tag(tag: &str) -> Result<(), String> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && !tag.starts_with(['.', '-'])
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the tag {tag:?} must be 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'"
        ))
    }
}

fn check_repository(repo: &str) -> Result<(), String> {
    let mut parts: Vec<&str> = repo.split('/').collect();
    // A first component with a '.' or ':' or "localhost" is a registry host.
    if parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost") {
        let host = parts.remove(0);
        let ok = host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
        if !ok {
            return Err(format!("the registry host {host:?} is not a host[:port]"));
        }
    }
    for p in parts {
        if !component_ok(p) {
            return Err(format!(
                "the path component {p:?} must be lowercase letters and digits joined by single '.', '_', '__' or '-'"
            ));
        }
    }
    Ok(())
}

fn component_ok(p: &str) -> bool {
    let b = p.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let sep_len = b[i..].iter().take_while(|&&c| !alnum(c)).count();
        let sep = &p[i..i + sep_len];
        if !matches!(sep, "." | "_" | "__") && !sep.bytes().all(|c| c == b'-') {
            return false;
        }
        i += sep_len;
    }
    true
}
