#!/bin/bash
# Foreign-arch Debian root for virtme-ng (inside the toolchain root):
#   vngroot.sh riscv64|arm64     -> prints the root directory
# Cached under $KVMRS_CACHE/vngroot/<arch>-<key>. Registers a binfmt_misc
# handler (qemu-user, flag F) so the foreign binaries run.
. "$(dirname "$0")/lib.sh"
arch=${1:?usage: vngroot.sh ARCH}
case "$arch" in
riscv64) qarch=riscv64 ;;
arm64) qarch=aarch64 ;;
*) die "unknown ARCH '$arch'" ;;
esac
pkgs=busybox,iproute2,kmod,udev,systemd-sysv,procps
key=$(hashkey "$0" -- "$KVMRS_SUITE" "$pkgs")
dir=$KVMRS_CACHE/vngroot/$arch-$key

register_binfmt() {
	local bm=/proc/sys/fs/binfmt_misc conf=/usr/lib/binfmt.d/qemu-$qarch.conf
	[ -e "$bm/register" ] || die "binfmt_misc is not mounted (tools/bench/in-root mounts it)"
	[ -f "$conf" ] || die "no $conf (qemu-user-binfmt)"
	# Replace name and interpreter; F opens the (static) interpreter now, so
	# it works inside any chroot later.
	local magic_mask
	magic_mask=$(cut -d: -f4-6 "$conf")
	[ -e "$bm/kvmrs-$qarch" ] && echo -1 >"$bm/kvmrs-$qarch"
	echo ":kvmrs-$qarch:M:$magic_mask:/usr/bin/qemu-$qarch:F" >"$bm/register"
}
register_binfmt

if [ -f "$dir/.kvmrs-complete" ]; then
	echo "$dir"
	exit 0
fi
log "vngroot[$arch]: mmdebstrap $KVMRS_SUITE minbase + $pkgs"
rm -rf "$dir.tmp"
mkdir -p "$(dirname "$dir")"
mmdebstrap --mode=root --arch="$arch" --variant=minbase --include="$pkgs" \
	--aptopt='Acquire::Retries "5"' \
	"$KVMRS_SUITE" "$dir.tmp" "deb $DEBIAN_MIRROR $KVMRS_SUITE main" >&2
mkdir -p "$dir.tmp/opt/kvmrs"
touch "$dir.tmp/.kvmrs-complete"
mv "$dir.tmp" "$dir"
echo "$dir"
