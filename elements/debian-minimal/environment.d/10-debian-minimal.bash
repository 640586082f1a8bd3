# diskimage-builder's debian-minimal variables (same names and meanings).
# The default release is DIB's: `stable`. dibr resolves `stable` (and
# `oldstable`) to the codename the mirror gives it today (see
# 09-debian-release-codename.bash, sourced just before this file), so the
# bootstrap cache key, the image's apt sources and DIB_RELEASE as hooks see
# it name one release, and a cloud image does not jump to the next Debian
# release on its own when Debian publishes one.
export DISTRO_NAME=debian
if [ -n "${DIB_DEBIAN_DISTRIBUTION_MIRROR:-}" ]; then
    DIB_DISTRIBUTION_MIRROR=$DIB_DEBIAN_DISTRIBUTION_MIRROR
fi
export DIB_DISTRIBUTION_MIRROR=${DIB_DISTRIBUTION_MIRROR:-http://deb.debian.org/debian}
export DIB_RELEASE=${DIB_RELEASE:-stable}
case "$DIB_RELEASE" in
    stable|oldstable)
        DIB_DEBIAN_SUITE=$DIB_RELEASE
        DIB_RELEASE=$(dibr_debian_codename "$DIB_DEBIAN_SUITE") || exit 1
        export DIB_DEBIAN_SUITE DIB_RELEASE
        ;;
esac
export DIB_INIT_SYSTEM=systemd
export EFI_BOOT_DIR="EFI/debian"

# Debian 12 points security at the CDN alias too (DIB: security.debian.org).
export DIB_DEBIAN_SECURITY_MIRROR=${DIB_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
export DIB_DEBIAN_COMPONENTS=${DIB_DEBIAN_COMPONENTS:-main}
export DIB_DEBIAN_COMPONENTS_WS=${DIB_DEBIAN_COMPONENTS//,/ }
DIB_DEBIAN_SECURITY_PATH="${DIB_RELEASE}-security"
DIB_DEBIAN_SECURITY_SUBPATH=${DIB_DEBIAN_SECURITY_SUBPATH:-}

DIB_APT_SOURCES_CONF_DEFAULT=\
"default:deb ${DIB_DISTRIBUTION_MIRROR} ${DIB_RELEASE} ${DIB_DEBIAN_COMPONENTS_WS}
updates:deb ${DIB_DISTRIBUTION_MIRROR} ${DIB_RELEASE}-updates ${DIB_DEBIAN_COMPONENTS_WS}
security:deb ${DIB_DEBIAN_SECURITY_MIRROR} ${DIB_DEBIAN_SECURITY_PATH}${DIB_DEBIAN_SECURITY_SUBPATH} ${DIB_DEBIAN_COMPONENTS_WS}
"
if [ "${DIB_RELEASE}" = "testing" ] || [ "${DIB_RELEASE}" = "unstable" ] || [ "${DIB_RELEASE}" = "sid" ]; then
    DIB_APT_SOURCES_CONF_DEFAULT="default:deb ${DIB_DISTRIBUTION_MIRROR} ${DIB_RELEASE} ${DIB_DEBIAN_COMPONENTS_WS}"
fi
export DIB_APT_SOURCES_CONF=${DIB_APT_SOURCES_CONF:-${DIB_APT_SOURCES_CONF_DEFAULT}}
