# The rpm distributions' name for ARCH (DIB's amd64 is their x86_64), for
# their download paths and file names. Sourced before the distro elements'
# own environment files (05- sorts first).
case "${ARCH:-amd64}" in
    amd64|x86_64) DIB_RPM_ARCH=x86_64 ;;
    arm64|aarch64) DIB_RPM_ARCH=aarch64 ;;
    ppc64el|ppc64le) DIB_RPM_ARCH=ppc64le ;;
    *) DIB_RPM_ARCH=$ARCH ;;
esac
export DIB_RPM_ARCH
