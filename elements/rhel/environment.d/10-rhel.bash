# diskimage-builder's rhel variables (same names). Red Hat publishes no
# base that can be downloaded without an account: DIB_LOCAL_IMAGE (a
# tarball or OCI/docker archive, e.g. of ubi9) or DIB_CLOUD_IMAGES +
# BASE_IMAGE_FILE on your own mirror is required.
export DISTRO_NAME=rhel
export DIB_RELEASE=${DIB_RELEASE:-9}
case "${ARCH:-amd64}" in
    amd64|x86_64) DIB_RPM_ARCH=x86_64 ;;
    arm64|aarch64) DIB_RPM_ARCH=aarch64 ;;
    ppc64el|ppc64le) DIB_RPM_ARCH=ppc64le ;;
    *) DIB_RPM_ARCH=$ARCH ;;
esac
export DIB_RPM_ARCH
