# diskimage-builder's rhel variables (same names). Red Hat publishes no
# base that can be downloaded without an account: DIB_LOCAL_IMAGE (a
# tarball or OCI/docker archive, e.g. of ubi9) or DIB_CLOUD_IMAGES +
# BASE_IMAGE_FILE on your own mirror is required.
export DISTRO_NAME=rhel
export DIB_RELEASE=${DIB_RELEASE:-9}
