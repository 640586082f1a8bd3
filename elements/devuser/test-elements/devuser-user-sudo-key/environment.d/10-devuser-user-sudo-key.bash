export DIB_DEV_USER_USERNAME=dibrdev
export DIB_DEV_USER_SHELL=/bin/sh
export DIB_DEV_USER_PWDLESS_SUDO=yes
export DIB_DEV_USER_PASSWORD=dibr-dev-password
# A top-level file of the element: dibr copies it to $TMP_HOOKS_PATH.
export DIB_DEV_USER_AUTHORIZED_KEYS=${TMP_HOOKS_PATH:-}/devuser-user-sudo-key.pub
