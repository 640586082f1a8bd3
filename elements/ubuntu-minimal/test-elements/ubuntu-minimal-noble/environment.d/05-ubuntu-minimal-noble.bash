export DIB_UBUNTU_KERNEL=linux-image-virtual
