//! The phase table: which hook directories exist, in which order the build
//! runs them, and whether they run inside the image (DIB: "in the chroot")
//! or outside it (`doc/source/developer/developing_elements.rst`, the
//! `run_d` / `run_d_in_target` calls in `lib/disk-image-create`).

/// A hook directory of an element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Create or extract the base tree (outside, `TARGET_ROOT`).
    Root,
    /// Fetch data into the hooks directory (outside).
    ExtraData,
    /// Repositories, package-manager set-up (in target).
    PreInstall,
    /// Main installs (in target).
    Install,
    /// Caches cleaned, services enabled (in target).
    PostInstall,
    /// Tree complete, before sizing (outside).
    PostRoot,
    /// Legacy block-device hooks (outside).
    BlockDevice,
    /// Content copied into the mounted image (outside).
    PreFinalise,
    /// Inside the final filesystem: boot loader, relabel (in target).
    Finalise,
    /// Last chance, outside (`TARGET_ROOT`).
    Cleanup,
    /// Sourced before every phase, on both sides; not run on its own.
    Environment,
    /// Copied into the image, run at first boot by `dib-first-boot`.
    FirstBoot,
}

impl Phase {
    /// The phases the build runs, in build order (`environment.d` and
    /// `first-boot.d` are not run as phases and come last).
    pub const ALL: [Phase; 12] = [
        Phase::Root,
        Phase::ExtraData,
        Phase::PreInstall,
        Phase::Install,
        Phase::PostInstall,
        Phase::PostRoot,
        Phase::BlockDevice,
        Phase::PreFinalise,
        Phase::Finalise,
        Phase::Cleanup,
        Phase::Environment,
        Phase::FirstBoot,
    ];

    /// The directory name, e.g. `install.d`.
    pub fn dir_name(self) -> &'static str {
        match self {
            Phase::Root => "root.d",
            Phase::ExtraData => "extra-data.d",
            Phase::PreInstall => "pre-install.d",
            Phase::Install => "install.d",
            Phase::PostInstall => "post-install.d",
            Phase::PostRoot => "post-root.d",
            Phase::BlockDevice => "block-device.d",
            Phase::PreFinalise => "pre-finalise.d",
            Phase::Finalise => "finalise.d",
            Phase::Cleanup => "cleanup.d",
            Phase::Environment => "environment.d",
            Phase::FirstBoot => "first-boot.d",
        }
    }

    /// The phase whose directory is called `name`.
    pub fn from_dir_name(name: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.dir_name() == name)
    }

    /// True for the phases DIB runs inside the image root (`chroot`):
    /// pre-install.d, install.d, post-install.d, finalise.d. First-boot
    /// scripts also run inside the image, at its first boot.
    pub fn in_target(self) -> bool {
        matches!(
            self,
            Phase::PreInstall
                | Phase::Install
                | Phase::PostInstall
                | Phase::Finalise
                | Phase::FirstBoot
        )
    }

    /// True for directories dib-run-parts executes as a phase (all but
    /// `environment.d`, which is sourced, and `first-boot.d`).
    pub fn is_run(self) -> bool {
        !matches!(self, Phase::Environment | Phase::FirstBoot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_dib() {
        let inside: Vec<_> = Phase::ALL
            .into_iter()
            .filter(|p| p.is_run() && p.in_target())
            .map(Phase::dir_name)
            .collect();
        assert_eq!(
            inside,
            ["pre-install.d", "install.d", "post-install.d", "finalise.d"]
        );
        for p in Phase::ALL {
            assert_eq!(Phase::from_dir_name(p.dir_name()), Some(p));
        }
        assert_eq!(Phase::from_dir_name("tests"), None);
    }
}
