# diskimage-builder's ubuntu-minimal variables (same names and meanings).
export DISTRO_NAME=ubuntu
export DIB_RELEASE=${DIB_RELEASE:-noble}
export DIB_INIT_SYSTEM=systemd
export EFI_BOOT_DIR="EFI/ubuntu"
export DIB_UBUNTU_KERNEL=${DIB_UBUNTU_KERNEL:-linux-image-generic}
export DIB_UBUNTU_MIRROR_DISTS=${DIB_UBUNTU_MIRROR_DISTS:-"updates,security,backports"}
export DIB_DISTRIBUTION_MIRROR=${DIB_DISTRIBUTION_MIRROR:-http://archive.ubuntu.com/ubuntu}
export DIB_DEBIAN_COMPONENTS=${DIB_DEBIAN_COMPONENTS:-main,restricted,universe}
export DIB_DEBIAN_COMPONENTS_WS=${DIB_DEBIAN_COMPONENTS//,/ }
_conf="default:deb ${DIB_DISTRIBUTION_MIRROR} ${DIB_RELEASE} ${DIB_DEBIAN_COMPONENTS_WS}"
for _d in ${DIB_UBUNTU_MIRROR_DISTS//,/ }; do
    _conf="${_conf}
${_d}:deb ${DIB_DISTRIBUTION_MIRROR} ${DIB_RELEASE}-${_d} ${DIB_DEBIAN_COMPONENTS_WS}"
done
export DIB_APT_SOURCES_CONF=${DIB_APT_SOURCES_CONF:-${_conf}}
unset _conf _d
