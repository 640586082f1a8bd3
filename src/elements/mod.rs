//! The element engine's data side: finding elements, expanding their
//! dependencies, assembling their hooks and squashing their package lists,
//! exactly as diskimage-builder (DIB) does, so DIB's own elements and users'
//! element directories work unchanged.
//!
//! Each module has one job and names the DIB file it re-implements:
//!
//! - [`path`]: `ELEMENTS_PATH` and element discovery
//!   (`diskimage_builder/element_dependencies.py:_find_all_elements`).
//! - [`element`]: one element directory and its `element-deps` /
//!   `element-provides` files (`element_dependencies.py:Element`).
//! - [`resolve`]: dependency expansion, virtual provides and the
//!   `IMAGE_ELEMENT*` variables (`element_dependencies.py`,
//!   `lib/common-functions:arg_to_elements`).
//! - [`phases`]: the phase table (`doc/source/developer/developing_elements.rst`,
//!   `lib/disk-image-create`).
//! - [`run_parts`]: which hook files run and in which order
//!   (`diskimage_builder/lib/dib-run-parts`).
//! - [`hooks`]: merging the elements' phase directories
//!   (`lib/common-functions:generate_hooks`).
//! - [`package_installs`]: `package-installs.{json,yaml}` parsing and squashing
//!   (`elements/package-installs/bin/package-installs-squash`).
//! - [`pkg_map`]: package-name mapping (`elements/pkg-map/bin/pkg-map`).

pub mod element;
pub mod hooks;
pub mod package_installs;
pub mod path;
pub mod phases;
pub mod pkg_map;
pub mod resolve;
pub mod run_parts;
pub mod tables;

pub use element::{parse_name_list, Element, ElementError};
pub use hooks::{HookError, HookScript, Hooks};
pub use package_installs::{PackageInstallsError, Squashed};
pub use path::{ElementsPath, PathError};
pub use phases::Phase;
pub use pkg_map::{PkgMap, PkgMapError};
pub use resolve::{resolve, ResolveError, Resolved};
pub use run_parts::{RunParts, Skipped};

#[cfg(test)]
mod test_elementdeps;
#[cfg(test)]
mod test_hooks;
#[cfg(test)]
mod test_package_squash;
