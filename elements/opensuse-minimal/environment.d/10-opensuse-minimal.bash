# diskimage-builder's opensuse variables (same names; Leap 15.6 default,
# "tumbleweed" too). The base is openSUSE's published LXC root filesystem
# tarball with its .sha256 next to it.
export DISTRO_NAME=opensuse
export DIB_RELEASE=${DIB_RELEASE:-15.6}
export DIB_INIT_SYSTEM=systemd
export EFI_BOOT_DIR=${EFI_BOOT_DIR:-EFI/opensuse}
if [ "$DIB_RELEASE" = tumbleweed ]; then
    export DIB_CLOUD_IMAGES=${DIB_CLOUD_IMAGES:-https://download.opensuse.org/tumbleweed/appliances}
    export BASE_IMAGE_FILE=${BASE_IMAGE_FILE:-opensuse-tumbleweed-image.${DIB_RPM_ARCH}-lxc.tar.xz}
else
    export DIB_CLOUD_IMAGES=${DIB_CLOUD_IMAGES:-https://download.opensuse.org/distribution/leap/${DIB_RELEASE}/appliances}
    export BASE_IMAGE_FILE=${BASE_IMAGE_FILE:-opensuse-leap-${DIB_RELEASE}-image.${DIB_RPM_ARCH}-lxc.tar.xz}
fi
