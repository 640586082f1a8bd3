export DISTRO_NAME=debian
export DIB_RELEASE=bookworm
