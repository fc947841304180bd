#!/bin/bash
# The emulated host's root filesystem (inside the toolchain root):
#   hostroot.sh riscv64|arm64     -> prints the path of the base cpio
#
# A foreign-arch Debian trixie minbase with Debian's QEMU for the host's own
# arch (the nested-guest client, as a VMM developer would install it), packed
# as a newc cpio. hostimg.sh appends a small cpio with our files (init,
# kvm_rs.ko, tests, the nested guest); the kernel unpacks both into its
# initramfs. Cached under $KVMRS_CACHE/hostroot/<arch>-<key>.cpio.
. "$(dirname "$0")/lib.sh"
arch=${1:?usage: hostroot.sh ARCH}
case "$arch" in
riscv64) qarch=riscv64 qpkg=qemu-system-riscv ;;
arm64) qarch=aarch64 qpkg=qemu-system-arm ;;
*) die "unknown ARCH '$arch'" ;;
esac
# libc-bin etc. come with minbase; the selftests need only glibc.
pkgs=$qpkg
cache_lock "hostroot-$arch"
key=$(hashkey "$0" -- "$KVMRS_SUITE" "$pkgs")
cpio=$KVMRS_CACHE/hostroot/$arch-$key.cpio

register_binfmt() {
	local bm=/proc/sys/fs/binfmt_misc conf=/usr/lib/binfmt.d/qemu-$qarch.conf
	[ -e "$bm/register" ] || die "binfmt_misc is not mounted (tools/bench/in-root mounts it)"
	[ -f "$conf" ] || die "no $conf (qemu-user-binfmt)"
	local magic_mask
	magic_mask=$(cut -d: -f4-6 "$conf")
	[ -e "$bm/kvmrs-$qarch" ] && echo -1 >"$bm/kvmrs-$qarch"
	echo ":kvmrs-$qarch:M:$magic_mask:/usr/bin/qemu-$qarch:F" >"$bm/register"
}

if [ -f "$cpio" ]; then
	echo "$cpio"
	exit 0
fi
register_binfmt
dir=$KVMRS_CACHE/hostroot/$arch-$key.tmp
log "hostroot[$arch]: mmdebstrap $KVMRS_SUITE minbase + $pkgs"
rm -rf "$dir"
mkdir -p "$(dirname "$dir")"
# Documentation, man pages and translations are dead weight in a RAM root.
mmdebstrap --mode=root --arch="$arch" --variant=minbase --include="$pkgs" \
	--aptopt='Acquire::Retries "5"' \
	--dpkgopt='path-exclude=/usr/share/doc/*' \
	--dpkgopt='path-exclude=/usr/share/man/*' \
	--dpkgopt='path-exclude=/usr/share/locale/*' \
	--dpkgopt='path-exclude=/usr/share/info/*' \
	--customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
	"$KVMRS_SUITE" "$dir" "deb $DEBIAN_MIRROR $KVMRS_SUITE main" >&2
chroot "$dir" dpkg-query -W -f '${Package} ${Version}\n' "$qpkg" >"$dir/etc/kvmrs-qemu-version"
(cd "$dir" && find . -path ./dev -prune -o -print | cpio -o -H newc --quiet) >"$cpio.tmp"
rm -rf "$dir"
mv "$cpio.tmp" "$cpio"
log "hostroot[$arch]: $(du -h "$cpio" | cut -f1) $cpio"
echo "$cpio"
