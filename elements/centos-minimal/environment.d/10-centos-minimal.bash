# diskimage-builder's centos variables (same names; DIB_RELEASE 9-stream).
# The base is CentOS Stream's published container tarball.
export DISTRO_NAME=centos
export DIB_RELEASE=${DIB_RELEASE:-9-stream}
export DIB_CLOUD_IMAGES=${DIB_CLOUD_IMAGES:-https://cloud.centos.org/centos/${DIB_RELEASE}/${DIB_RPM_ARCH}/images}
if [ -z "${BASE_IMAGE_FILE:-}" ]; then
    export BASE_IMAGE_FILE_REGEX=${BASE_IMAGE_FILE_REGEX:-CentOS-Stream-Container-Base-${DIB_RELEASE%%-*}-[0-9.]+\.${DIB_RPM_ARCH}\.tar\.xz}
fi
