//! DIB's `diskimage_builder/tests/test_elementdeps.py`, case for case: the
//! same fixture elements in a temporary directory, the same expansions and
//! the same error conditions (with the message fragments DIB asserts).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::element::Element;
use super::path::{ElementsPath, PathError};
use super::resolve::{requested_elements, resolve, ResolveError, Resolved};

struct Fixture {
    _tmp: tempfile::TempDir,
    element_dir: PathBuf,
    override_dir: PathBuf,
}

/// DIB's `_populate_element`: both files always written, joined by "\n".
fn populate(dir: &Path, name: &str, deps: &[&str], provides: &[&str]) {
    let home = dir.join(name);
    fs::create_dir(&home).unwrap();
    fs::write(home.join("element-deps"), deps.join("\n")).unwrap();
    fs::write(home.join("element-provides"), provides.join("\n")).unwrap();
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let element_dir = root.join("elements");
        let override_dir = root.join("element-override");
        fs::create_dir(&element_dir).unwrap();
        fs::create_dir(&override_dir).unwrap();
        let e = &element_dir;
        populate(e, "requires-foo", &["foo"], &[]);
        populate(e, "foo", &[], &["operating-system"]);
        populate(e, "requires-requires-foo", &["requires-foo"], &[]);
        populate(e, "self", &["self"], &[]);
        populate(e, "provides_virtual", &[], &["virtual"]);
        populate(e, "requires_virtual", &["virtual"], &["operating-system"]);
        populate(e, "virtual", &["extra_dependency"], &[]);
        populate(e, "extra_dependency", &[], &[]);
        populate(e, "circular1", &["circular2"], &["operating-system"]);
        populate(e, "circular2", &["circular1"], &[]);
        populate(
            e,
            "provides_new_virtual",
            &[],
            &["new_virtual", "operating-system"],
        );
        populate(e, "requires_new_virtual", &["new_virtual"], &[]);
        // The copy in the override dir (earlier on the path) must win.
        populate(e, "override_element", &[], &[]);
        populate(&override_dir, "override_element", &[], &[]);
        Fixture {
            _tmp: tmp,
            element_dir,
            override_dir,
        }
    }

    /// `ELEMENTS_PATH=override:elements`, as DIB's `self.element_dirs`.
    fn path(&self) -> ElementsPath {
        ElementsPath::new(vec![self.override_dir.clone(), self.element_dir.clone()])
    }

    fn all(&self) -> BTreeMap<String, Element> {
        self.path().discover().unwrap()
    }

    fn get(&self, req: &[&str]) -> Result<Resolved, ResolveError> {
        let req: Vec<String> = req.iter().map(|s| s.to_string()).collect();
        resolve(&req, &self.all(), "efi")
    }

    fn e(&self, name: &str) -> (String, PathBuf) {
        (name.to_owned(), self.element_dir.join(name))
    }

    fn eo(&self, name: &str) -> (String, PathBuf) {
        (name.to_owned(), self.override_dir.join(name))
    }
}

fn sorted(mut v: Vec<(String, PathBuf)>) -> Vec<(String, PathBuf)> {
    v.sort();
    v
}

#[test]
fn test_non_transitive_deps() {
    let f = Fixture::new();
    let r = f.get(&["requires-foo"]).unwrap();
    assert_eq!(r.elements, sorted(vec![f.e("foo"), f.e("requires-foo")]));
}

#[test]
fn test_missing_deps() {
    let f = Fixture::new();
    let e = f.get(&["fake"]).unwrap_err();
    assert!(matches!(e, ResolveError::MissingElement { .. }));
    assert!(e.to_string().contains("Element 'fake' not found"), "{e}");
}

#[test]
fn missing_dependency_names_the_element_requiring_it() {
    let f = Fixture::new();
    populate(
        &f.element_dir,
        "needs-ghost",
        &["ghost"],
        &["operating-system"],
    );
    let e = f.get(&["needs-ghost"]).unwrap_err().to_string();
    assert!(
        e.contains("Element 'ghost' not found, required by 'needs-ghost'"),
        "{e}"
    );
}

#[test]
fn test_invalid_element_dir() {
    let f = Fixture::new();
    let mut dirs = f.path().dirs().to_vec();
    dirs.push(PathBuf::from("/not/a/dir"));
    let e = ElementsPath::new(dirs).discover().unwrap_err();
    assert!(matches!(e, PathError::InvalidElementDir(_)));
    assert!(
        e.to_string()
            .contains("ELEMENTS_PATH entry '/not/a/dir' is not a directory"),
        "{e}"
    );
}

#[test]
fn test_transitive_deps() {
    let f = Fixture::new();
    let r = f.get(&["requires-requires-foo"]).unwrap();
    assert_eq!(
        r.elements,
        sorted(vec![
            f.e("requires-requires-foo"),
            f.e("requires-foo"),
            f.e("foo")
        ])
    );
}

#[test]
fn test_no_deps() {
    let f = Fixture::new();
    assert_eq!(f.get(&["foo"]).unwrap().elements, vec![f.e("foo")]);
}

#[test]
fn test_self() {
    let f = Fixture::new();
    let r = f.get(&["self", "foo"]).unwrap();
    assert_eq!(r.elements, sorted(vec![f.e("self"), f.e("foo")]));
}

#[test]
fn test_circular() {
    let f = Fixture::new();
    let r = f.get(&["circular1"]).unwrap();
    assert_eq!(r.elements, sorted(vec![f.e("circular1"), f.e("circular2")]));
}

#[test]
fn test_provide() {
    let f = Fixture::new();
    let r = f.get(&["provides_virtual", "requires_virtual"]).unwrap();
    assert_eq!(
        r.elements,
        sorted(vec![f.e("requires_virtual"), f.e("provides_virtual")])
    );
    assert_eq!(r.provided_by["virtual"], "provides_virtual");
    assert_eq!(r.provided_by["operating-system"], "requires_virtual");
}

#[test]
fn test_provide_conflict() {
    let f = Fixture::new();
    let e = f.get(&["virtual", "provides_virtual"]).unwrap_err();
    assert!(matches!(e, ResolveError::AlreadyProvided(_)), "{e}");
    assert!(
        e.to_string()
            .contains("virtual : already provided by ['provides_virtual']"),
        "{e}"
    );
}

#[test]
fn test_provide_virtual_ordering() {
    let f = Fixture::new();
    let r = f
        .get(&["requires_new_virtual", "provides_new_virtual"])
        .unwrap();
    assert_eq!(
        r.elements,
        sorted(vec![
            f.e("requires_new_virtual"),
            f.e("provides_new_virtual")
        ])
    );
}

#[test]
fn test_no_os_element() {
    let f = Fixture::new();
    let e = f.get(&["provides_virtual"]).unwrap_err();
    assert!(matches!(e, ResolveError::MissingOs), "{e}");
    assert!(e
        .to_string()
        .contains("Please include an operating system element"));
}

#[test]
fn test_duplicated_os_passed_as_element() {
    let f = Fixture::new();
    let e = f.get(&["circular1", "operating-system"]).unwrap_err();
    assert!(matches!(e, ResolveError::AlreadyProvided(_)), "{e}");
    // DIB checks the log names what provides the conflicting element.
    assert!(
        e.to_string()
            .contains("operating-system : already provided by ['circular1']"),
        "{e}"
    );
}

#[test]
fn test_element_override() {
    let f = Fixture::new();
    let r = f.get(&["override_element", "foo"]).unwrap();
    assert_eq!(
        r.elements,
        sorted(vec![f.e("foo"), f.eo("override_element")])
    );
}

#[test]
fn test_expand_dependencies_deprecated() {
    // DIB's names-only call.
    let f = Fixture::new();
    let r = f.get(&["foo", "requires-foo"]).unwrap();
    assert_eq!(r.names(), ["foo", "requires-foo"]);
}

#[test]
fn test_output_sanity() {
    let f = Fixture::new();
    let r = f.get(&["foo", "requires-foo"]).unwrap();
    let s = r.env_script();
    let foo = f.element_dir.join("foo").display().to_string();
    let rf = f.element_dir.join("requires-foo").display().to_string();
    assert!(
        s.starts_with("export IMAGE_ELEMENT='foo requires-foo'\n"),
        "{s}"
    );
    assert!(
        s.contains(&format!(
            "export IMAGE_ELEMENT_YAML='foo: {foo}\nrequires-foo: {rf}\n'\n"
        )),
        "{s}"
    );
    assert!(
        s.contains(&format!(
            "function get_image_element_array {{\n  echo \"[foo]={foo} [requires-foo]={rf} \"\n}};\nexport -f get_image_element_array;\n"
        )),
        "{s}"
    );
}

#[test]
fn test_depends_on_env() {
    // TestElements.test_depends_on_env: the path comes from ELEMENTS_PATH;
    // dibr appends its shipped directory last.
    let p = ElementsPath::parse(Some("/foo/bar"), Some(Path::new("/shipped"))).unwrap();
    assert_eq!(p.to_env_value(), "/foo/bar:/shipped");
    let p = ElementsPath::parse(Some("/a:/b"), None).unwrap();
    assert_eq!(p.dirs(), [PathBuf::from("/a"), PathBuf::from("/b")]);
}

#[test]
fn test_env_not_set() {
    // DIB raises when ELEMENTS_PATH is empty because its own elements are
    // appended by the caller; dibr appends its shipped elements itself, so
    // an empty ELEMENTS_PATH means "shipped elements only".
    let p = ElementsPath::parse(Some(""), Some(Path::new("/shipped"))).unwrap();
    assert_eq!(p.to_env_value(), "/shipped");
    assert!(matches!(
        ElementsPath::parse(Some("/a::/b"), None),
        Err(PathError::EmptyEntry)
    ));
}

// ---- beyond DIB's test file: the rest of its documented behaviour ----

#[test]
fn two_elements_providing_the_same_name_is_an_error() {
    let f = Fixture::new();
    let e = f.get(&["foo", "circular1"]).unwrap_err();
    assert!(matches!(e, ResolveError::DuplicateProvider { .. }), "{e}");
    let m = e.to_string();
    assert!(
        m.contains("'operating-system' is provided by both 'foo' and 'circular1'"),
        "{m}"
    );
}

#[test]
fn base_is_prepended_unless_skipped() {
    let user = vec!["foo".to_string()];
    assert_eq!(requested_elements(&user, false), ["base", "foo"]);
    assert_eq!(requested_elements(&user, true), ["foo"]);
    let f = Fixture::new();
    populate(&f.element_dir, "base", &["requires-foo"], &[]);
    let r = resolve(&requested_elements(&user, false), &f.all(), "efi").unwrap();
    assert_eq!(r.names(), ["base", "foo", "requires-foo"]);
}

#[test]
fn provided_dependency_is_not_looked_up() {
    // bug #1303911: a dependency on a virtual name already provided is not
    // searched for as a real element (the real `virtual` element would pull
    // in extra_dependency).
    let f = Fixture::new();
    let r = f.get(&["provides_virtual", "requires_virtual"]).unwrap();
    assert!(!r.names().contains(&"extra_dependency"));
    assert!(!r.names().contains(&"virtual"));
}

#[test]
fn symlinked_element_takes_its_target_name_and_path() {
    // DIB canonicalises element paths and names the element after the
    // canonical path's last component.
    let f = Fixture::new();
    std::os::unix::fs::symlink(f.element_dir.join("foo"), f.override_dir.join("alias")).unwrap();
    let all = f.all();
    assert!(!all.contains_key("alias"));
    assert_eq!(all["foo"].path, f.element_dir.join("foo"));
}

#[test]
fn comments_and_blank_lines_in_metadata() {
    let f = Fixture::new();
    let home = f.element_dir.join("commented");
    fs::create_dir(&home).unwrap();
    fs::write(
        home.join("element-deps"),
        "# needs foo\n\nrequires-foo\n  \n",
    )
    .unwrap();
    let r = f.get(&["commented"]).unwrap();
    assert_eq!(r.names(), ["commented", "foo", "requires-foo"]);
}
