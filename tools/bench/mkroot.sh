#!/bin/bash
# Create the kvm-rs toolchain root: Debian trixie + trixie-backports with
# the packages of tools/bench/packages.txt, cached under $KVMRS_CACHE/toolchain/<key>.
. "$(dirname "$0")/lib.sh"

root=$(toolchain_root)
if [ -f "$root/.kvmrs-complete" ]; then
	exit 0
fi
[ "$(id -u)" = 0 ] || die "creating the toolchain root needs root (see README: 'Without root')"
command -v mmdebstrap >/dev/null || die "mmdebstrap is missing on this machine: apt-get install mmdebstrap"

log "toolchain: creating $root ($KVMRS_SUITE + backports)"
rm -rf "$root.tmp" "$root"
mkdir -p "$(dirname "$root")"
mapfile -t pkgs < <(toolchain_packages)
# The first pass (mmdebstrap) lays down the base system; packages come
# from backports in a second step so apt's -t applies to them.
# Foreign arches only serve busybox-static from the main suite; backports is
# read for amd64 only (fewer indices to fetch, and a half-synced foreign
# backports index on a mirror cannot break the build).
attempt=1
until mmdebstrap --variant=apt --include=ca-certificates \
	--architectures=amd64,riscv64,arm64 \
	--aptopt='APT::Install-Recommends "false"' \
	--aptopt='Acquire::Retries "5"' \
	--customize-hook='chroot "$1" apt-get update' \
	--customize-hook="chroot \"\$1\" env DEBIAN_FRONTEND=noninteractive apt-get install -y -t $KVMRS_SUITE-backports ${pkgs[*]}" \
	--customize-hook='chroot "$1" apt-get download busybox-static:riscv64 busybox-static:arm64' \
	--customize-hook='mkdir -p "$1/opt/kvmrs"; mv "$1"/busybox-static_*.deb "$1/opt/kvmrs/" 2>/dev/null || mv "$1"/*.deb "$1/opt/kvmrs/"' \
	"$KVMRS_SUITE" "$root.tmp" \
	"deb $DEBIAN_MIRROR $KVMRS_SUITE main" \
	"deb [arch=amd64] $DEBIAN_MIRROR $KVMRS_SUITE-backports main"
do
	[ $attempt -lt 3 ] || die "toolchain: mmdebstrap failed $attempt times"
	attempt=$((attempt + 1))
	log "toolchain: mmdebstrap failed, retrying in 20 s"
	rm -rf "$root.tmp"; sleep 20
done
for a in riscv64 arm64; do
	d="$root.tmp/opt/kvmrs/busybox-$a"
	mkdir -p "$d"
	dpkg-deb -x "$root.tmp"/opt/kvmrs/busybox-static_*_"$a".deb "$d"
done
touch "$root.tmp/.kvmrs-complete"
mv "$root.tmp" "$root"
log "toolchain: ready"
