# diskimage-builder's debian-minimal variables (same names and meanings).
# The default release is DIB's, `stable`, and hooks see DIB_RELEASE as DIB
# gives it (elements written for DIB test `$DIB_RELEASE = stable`). What it
# stands for today is DIBR_RELEASE_CODENAME (09-debian-release-codename.bash,
# sourced just before this file, resolves `stable` and `oldstable` once per
# build; any other DIB_RELEASE is its own codename), and that is what the
# bootstrap cache key and the image's apt sources name: a cloud image built
# today does not jump to the next Debian release by itself when Debian
# publishes one.
export DISTRO_NAME=debian
if [ -n "${DIB_DEBIAN_DISTRIBUTION_MIRROR:-}" ]; then
    DIB_DISTRIBUTION_MIRROR=$DIB_DEBIAN_DISTRIBUTION_MIRROR
fi
export DIB_DISTRIBUTION_MIRROR=${DIB_DISTRIBUTION_MIRROR:-http://deb.debian.org/debian}
export DIB_RELEASE=${DIB_RELEASE:-stable}
case "$DIB_RELEASE" in
    stable|oldstable)
        DIBR_RELEASE_CODENAME=$(dibr_debian_codename "$DIB_RELEASE") || exit 1
        ;;
    *)
        DIBR_RELEASE_CODENAME=$DIB_RELEASE
        ;;
esac
export DIBR_RELEASE_CODENAME
export DIB_INIT_SYSTEM=systemd
export EFI_BOOT_DIR="EFI/debian"

# Debian 12 points security at the CDN alias too (DIB: security.debian.org).
export DIB_DEBIAN_SECURITY_MIRROR=${DIB_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
export DIB_DEBIAN_COMPONENTS=${DIB_DEBIAN_COMPONENTS:-main}
export DIB_DEBIAN_COMPONENTS_WS=${DIB_DEBIAN_COMPONENTS//,/ }
DIB_DEBIAN_SECURITY_PATH="${DIBR_RELEASE_CODENAME}-security"
DIB_DEBIAN_SECURITY_SUBPATH=${DIB_DEBIAN_SECURITY_SUBPATH:-}

DIB_APT_SOURCES_CONF_DEFAULT=\
"default:deb ${DIB_DISTRIBUTION_MIRROR} ${DIBR_RELEASE_CODENAME} ${DIB_DEBIAN_COMPONENTS_WS}
updates:deb ${DIB_DISTRIBUTION_MIRROR} ${DIBR_RELEASE_CODENAME}-updates ${DIB_DEBIAN_COMPONENTS_WS}
security:deb ${DIB_DEBIAN_SECURITY_MIRROR} ${DIB_DEBIAN_SECURITY_PATH}${DIB_DEBIAN_SECURITY_SUBPATH} ${DIB_DEBIAN_COMPONENTS_WS}
"
if [ "${DIB_RELEASE}" = "testing" ] || [ "${DIB_RELEASE}" = "unstable" ] || [ "${DIB_RELEASE}" = "sid" ]; then
    DIB_APT_SOURCES_CONF_DEFAULT="default:deb ${DIB_DISTRIBUTION_MIRROR} ${DIB_RELEASE} ${DIB_DEBIAN_COMPONENTS_WS}"
fi
export DIB_APT_SOURCES_CONF=${DIB_APT_SOURCES_CONF:-${DIB_APT_SOURCES_CONF_DEFAULT}}
