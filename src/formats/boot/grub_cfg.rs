//! The GRUB configuration texts dibr writes.
//!
//! Every stage finds the root by filesystem label, never by disk number or
//! UUID: the same image boots from any disk slot, after `growpart`, and from
//! both firmware paths (DIB sets `GRUB_DEVICE=LABEL=$DIB_ROOT_LABEL` and
//! `GRUB_DISABLE_LINUX_UUID=true` for the same reason).

use super::collect::Kernel;
use super::BootOptions;

/// Embedded in core.img (`grub-mkimage -c`): runs in GRUB's rescue parser
/// before `normal` is loaded, so only plain commands. It points the prefix
/// at /boot/grub on the labelled root, where the modules and grub.cfg are.
pub fn early_bios(label: &str) -> String {
    format!(
        "search --no-floppy --label {label} --set=root\n\
         set prefix=($root)/boot/grub\n"
    )
}

/// grub.cfg on the ESP for a distro-built GRUB EFI image (Debian's
/// `grub-bootstrap.cfg` sources `$prefix/grub.cfg` = `/EFI/<id>/grub.cfg`,
/// else `$cmdpath/grub.cfg` = `/EFI/BOOT/grub.cfg`): hand over to the root's
/// grub.cfg, as Debian's grub-install does, but by label.
pub fn esp_stub(label: &str) -> String {
    format!(
        "search --no-floppy --label {label} --set=root\n\
         set prefix=($root)/boot/grub\n\
         configfile $prefix/grub.cfg\n"
    )
}

/// /boot/grub/grub.cfg when the tree has none: one entry for the newest
/// kernel, serial + VGA console (DIB's `GRUB_TERMINAL="serial console"`).
pub fn menu(k: &Kernel, o: &BootOptions) -> String {
    let label = &o.root_label;
    let mut s = String::new();
    s.push_str("# Written by dibr: the newest kernel, root by label.\n");
    s.push_str(&format!("set default=0\nset timeout={}\n", o.timeout));
    s.push_str("set timeout_style=menu\n");
    s.push_str("serial --unit=0 --speed=115200 --word=8 --parity=no --stop=1\n");
    s.push_str("terminal_input serial console\nterminal_output serial console\n");
    s.push_str("insmod part_gpt\ninsmod part_msdos\n");
    s.push_str(&format!("insmod {}\n", o.root_fs_module()));
    s.push_str(&format!("search --no-floppy --label {label} --set=root\n"));
    s.push_str(&format!("menuentry 'Linux {}' {{\n", k.version));
    s.push_str(&format!(
        "\tlinux /boot/{} root=LABEL={label} ro {}\n",
        k.vmlinuz, o.cmdline
    ));
    if let Some(i) = &k.initrd {
        s.push_str(&format!("\tinitrd /boot/{i}\n"));
    }
    s.push_str("}\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn menu_names_the_label_kernel_and_initrd() {
        let k = Kernel {
            vmlinuz: "vmlinuz-6.1".into(),
            initrd: Some("initrd.img-6.1".into()),
            version: "6.1".into(),
        };
        let o = BootOptions::new("cloudimg-rootfs", true, true, &Default::default());
        let m = menu(&k, &o);
        assert!(m.contains("linux /boot/vmlinuz-6.1 root=LABEL=cloudimg-rootfs ro console=tty0 console=ttyS0,115200"));
        assert!(m.contains("initrd /boot/initrd.img-6.1"));
        assert!(m.contains("--label cloudimg-rootfs --set=root"));
    }
}
