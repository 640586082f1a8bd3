#!/bin/sh
# The shell pipeline a rootless user would use today to turn a root tarball
# into a bootable efi-layout qcow2 (DIB's block-device-efi: ESP 550 MiB,
# BIOS boot 8 MiB, root ext4 `cloudimg-rootfs`), the anchor for
# `cargo bench --bench assemble`. Tools: unshare (util-linux), tar, mke2fs,
# mkfs.fat + mtools, sgdisk, grub-mkimage, dd, qemu-img.
#
# usage: assemble-pipeline.sh ROOT.tar WORKDIR OUT.qcow2|-
# Runs as an ordinary user with a subuid range (tar -x of root-owned files
# needs a user namespace, as mmdebstrap's unshare mode does).
set -eu
TAR=$1 W=$2 OUT=$3
MIB=1048576
mkdir -p "$W"
rm -rf "$W/tree" "$W/esp" "$W"/*.img "$W/disk.raw"
mkdir -p "$W/tree" "$W/esp/EFI/BOOT" "$W/grub"

# 1. Extract as (mapped) root, put GRUB's modules and grub.cfg in place,
#    and make the root ext4 from the directory. DIB's size rule: du / 0.6.
unshare --user --map-auto --map-root-user --mount sh -eu -c '
    W=$1; TAR=$2
    tar -xpf "$TAR" -C "$W/tree" --numeric-owner --exclude="./dev/*"
    mkdir -p "$W/tree/boot/grub/i386-pc"
    cp "$W/tree/usr/lib/grub/i386-pc/"*.mod "$W/tree/usr/lib/grub/i386-pc/"*.lst "$W/tree/boot/grub/i386-pc/"
    k=$(cd "$W/tree/boot" && ls vmlinuz-* | sed s/^vmlinuz-// | sort -V | tail -n1)
    {
        echo "search --no-floppy --label cloudimg-rootfs --set=root"
        echo "menuentry Linux {"
        echo "  linux /boot/vmlinuz-$k root=LABEL=cloudimg-rootfs ro console=tty0 console=ttyS0,115200"
        echo "  initrd /boot/initrd.img-$k"
        echo "}"
    } > "$W/tree/boot/grub/grub.cfg"
    cp "$W/tree/usr/lib/shim/shimx64.efi.signed" "$W/esp/EFI/BOOT/BOOTX64.EFI"
    cp "$W/tree/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed" "$W/esp/EFI/BOOT/grubx64.efi"
    cp "$W/tree/usr/lib/grub/i386-pc/boot.img" "$W/grub/"
    printf "search --no-floppy --label cloudimg-rootfs --set=root\nset prefix=(\$root)/boot/grub\nconfigfile \$prefix/grub.cfg\n" > "$W/esp/EFI/BOOT/grub.cfg"
    kib=$(du -s -k "$W/tree" | cut -f1)
    size=$(( (kib * 10 / 6 + 65536 + 1023) / 1024 ))M
    mke2fs -q -t ext4 -b 4096 -L cloudimg-rootfs -d "$W/tree" "$W/root.img" "$size"
    grub-mkimage -O i386-pc -d "$W/tree/usr/lib/grub/i386-pc" -o "$W/grub/core.img" \
        -p /boot/grub biosdisk part_gpt part_msdos ext2 search
    rm -rf "$W/tree"
' sh "$W" "$TAR"

# 2. ESP.
mkfs.fat -F 32 -n ESP -C "$W/esp.img" $((550 * 1024)) >/dev/null
mcopy -s -i "$W/esp.img" "$W/esp/EFI" ::

# 3. Disk: GPT, then the filesystems at their offsets.
root_bytes=$(stat -c %s "$W/root.img")
disk=$(( 559 * MIB + root_bytes + MIB ))
truncate -s "$disk" "$W/disk.raw"
sgdisk -n 1:1MiB:+550MiB -t 1:EF00 -c 1:ESP \
       -n 2:0:+8MiB -t 2:EF02 -c 2:BSP \
       -n 3:0:0 -t 3:8300 -c 3:root "$W/disk.raw" >/dev/null
dd if="$W/esp.img" of="$W/disk.raw" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$W/root.img" of="$W/disk.raw" bs=1M seek=559 conv=notrunc,sparse status=none

# 4. GRUB BIOS boot code. grub-bios-setup cannot run unprivileged on a
#    plain file (it insists on resolving the device under /boot/grub), so
#    copy the code bytes the way the grub-bios-setup recipe does
#    (rootless-and-boot.md §4.1); the blocklist/kernel-sector patches are a
#    few bytes and cost nothing measurable.
dd if="$W/grub/boot.img" of="$W/disk.raw" bs=440 count=1 conv=notrunc status=none
dd if="$W/grub/core.img" of="$W/disk.raw" bs=512 seek=$(( 551 * 2048 )) conv=notrunc status=none

rm -f "$W/esp.img" "$W/root.img"

# 5. Compressed qcow2 (OUT `-`: stop at the raw disk, $W/disk.raw, which
#    the bench then converts with each compression_type and times apart).
[ "$OUT" = - ] && exit 0
qemu-img convert -c -f raw -O qcow2 "$W/disk.raw" "$OUT"
