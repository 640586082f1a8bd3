# diskimage-builder's centos variables (same names; DIB_RELEASE 9-stream).
# The base is CentOS Stream's published container tarball.
export DISTRO_NAME=centos
export DIB_RELEASE=${DIB_RELEASE:-9-stream}
case "${ARCH:-amd64}" in
    amd64|x86_64) DIB_RPM_ARCH=x86_64 ;;
    arm64|aarch64) DIB_RPM_ARCH=aarch64 ;;
    ppc64el|ppc64le) DIB_RPM_ARCH=ppc64le ;;
    *) DIB_RPM_ARCH=$ARCH ;;
esac
export DIB_RPM_ARCH
export DIB_CLOUD_IMAGES=${DIB_CLOUD_IMAGES:-https://cloud.centos.org/centos/${DIB_RELEASE}/${DIB_RPM_ARCH}/images}
if [ -z "${BASE_IMAGE_FILE:-}" ]; then
    export BASE_IMAGE_FILE_REGEX=${BASE_IMAGE_FILE_REGEX:-CentOS-Stream-Container-Base-${DIB_RELEASE%%-*}-[0-9.]+\.${DIB_RPM_ARCH}\.tar\.xz}
fi
