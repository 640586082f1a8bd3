# The kernel of a cloud image: Ubuntu's linux-image-virtual, the kernel
# for virtual machines. DIB's ubuntu-minimal defaults DIB_UBUNTU_KERNEL to
# linux-image-generic, which on noble depends on linux-modules-extra,
# linux-firmware and both CPU microcode packages (about 865 MB of downloads
# that no virtual machine loads). Sourced before ubuntu-minimal's
# 10-ubuntu-minimal.bash, so it only changes the default: a DIB_UBUNTU_KERNEL
# set by the caller (linux-image-generic for bare metal, linux-image-kvm,
# linux-image-hwe…) still wins.
export DIB_UBUNTU_KERNEL=${DIB_UBUNTU_KERNEL:-linux-image-virtual}
