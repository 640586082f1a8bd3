export DISTRO_NAME=debian
export DIB_RELEASE=bookworm
export DIBR_PI_SWITCH=on
