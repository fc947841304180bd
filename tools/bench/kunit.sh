#!/bin/bash
# Run kvm_rs's KUnit suites in the emulated host through virtme-ng (inside
# the root). Writes build/<arch>/results/kunit.txt ("pass|fail <name> ...").
. "$(dirname "$0")/lib.sh"
arch=${1:?usage: kunit.sh ARCH}
. "$KVMRS_TOP/tools/bench/arch.sh"
# vngroot.sh has no lock of its own (and its text keys the cached roots, so
# it is not edited for this): two checkouts building the same root at once
# wrote into one temporary tree and broke it. Serialise the build here; the
# subshell drops the lock once the root exists.
vroot=$(cache_lock "vngroot-$arch" && "$KVMRS_TOP/tools/bench/vngroot.sh" "$arch")
[ -f "$out/module/kvm_rs.ko" ] || die "kunit[$arch]: no kvm_rs.ko (make module ARCH=$arch)"
# The virtme-ng root is shared by every worktree of this machine: give this
# run's module its own name, so that a concurrent run cannot replace it.
ko=kvm_rs.$$.$(date +%s%N).ko
cp "$out/module/kvm_rs.ko" "$vroot/opt/kvmrs/$ko"
trap 'rm -f "$vroot/opt/kvmrs/$ko"' EXIT
mkdir -p "$out/results"
log="$out/kunit.log"

# The suites the module must report on this arch: the generic ones and the
# arch's own.
mapfile -t suites < <(grep -rhoE 'kunit_tests\([a-z0-9_]+\)' \
	"$KVMRS_TOP/virt" "$KVMRS_TOP/arch/$karch" | sed 's/kunit_tests(\(.*\))/\1/' | sort -u)

# KUNIT_MODARGS: module parameters for this run (e.g. vmid_bits=2).
script='insmod /opt/kvmrs/'"$ko"' '"${KUNIT_MODARGS:-}"' || echo KVMRS-KUNIT insmod-failed
echo KVMRS-KUNIT-LOG-BEGIN
dmesg
echo KVMRS-KUNIT-END'
# The same CPU and machine as the emulated host (arch.sh); they come after
# virtme-ng's own -M/-cpu, so they win.
qopts="${qemu_machine[*]}"
log "kunit[$arch]: vng --run $kimage (suites: ${suites[*]})"
set +e
cd "$out"
timeout --kill-after=5 "${KUNIT_TIMEOUT:-300}" \
	vng --arch "$arch" --root "$vroot" --run "$kimage" --force-9p --disable-kvm \
	--memory 1G --cpus 2 --qemu-opts="$qopts" --append "$host_append" \
	--exec "$script" </dev/null >"$log" 2>&1
vrc=$?
set -e
python3 "$KVMRS_TOP/tools/bench/ktap.py" "$log" "${suites[@]}" >"$out/results/kunit.txt"
prc=$?
cat "$out/results/kunit.txt"
[ "$vrc" = 0 ] || echo "kvm-rs: kunit[$arch]: vng exited $vrc; log: $log" >&2
exit $prc
