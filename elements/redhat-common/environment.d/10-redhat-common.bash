# The Red Hat family boots with systemd and keeps GRUB's EFI files in
# EFI/$DISTRO_NAME (diskimage-builder's redhat-common).
export DIB_INIT_SYSTEM=systemd
export EFI_BOOT_DIR=${EFI_BOOT_DIR:-EFI/${DISTRO_NAME:-redhat}}
