//! Userspace ext4 writer ("mkfs in userspace").
