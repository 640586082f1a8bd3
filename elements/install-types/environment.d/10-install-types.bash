# diskimage-builder's default install type for elements that offer several
# (package-installs `installtype:`, DIB_INSTALLTYPE_<element> overrides).
export DIB_DEFAULT_INSTALLTYPE=${DIB_DEFAULT_INSTALLTYPE:-source}
