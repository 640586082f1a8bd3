# diskimage-builder's fedora variables (same names). The base is Fedora's
# published container image (an OCI archive since Fedora 40), found in the
# release's Container/ directory and checked against its CHECKSUM file.
export DISTRO_NAME=fedora
export DIB_RELEASE=${DIB_RELEASE:-43}
export DIB_CLOUD_IMAGES=${DIB_CLOUD_IMAGES:-https://download.fedoraproject.org/pub/fedora/linux/releases/${DIB_RELEASE}/Container/${DIB_RPM_ARCH}/images}
if [ -z "${BASE_IMAGE_FILE:-}" ]; then
    export BASE_IMAGE_FILE_REGEX=${BASE_IMAGE_FILE_REGEX:-Fedora-Container-Base(-Generic)?-${DIB_RELEASE}-[0-9.]+\.${DIB_RPM_ARCH}\.(oci\.)?tar\.xz}
fi
export BASE_IMAGE_CHECKSUMS_REGEX=${BASE_IMAGE_CHECKSUMS_REGEX:-Fedora-Container-${DIB_RELEASE}-[0-9.]+-${DIB_RPM_ARCH}-CHECKSUM}
