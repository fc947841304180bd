#!/bin/bash
# cargo test of the pure-logic files on the build machine (inside the root).
# Writes build/host/results.txt ("pass|fail <name>").
. "$(dirname "$0")/lib.sh"
outdir=$KVMRS_TOP/build/host
mkdir -p "$outdir"
set +e
CARGO_HOME=$KVMRS_CACHE/cargo cargo test --offline \
	--manifest-path "$KVMRS_TOP/tools/testing/host/Cargo.toml" \
	--target-dir "$outdir/target" -- --test-threads=2 >"$outdir/cargo-test.log" 2>&1
rc=$?
set -e
sed -n 's/^test \(.*\) \.\.\. ok$/pass host::\1/p; s/^test \(.*\) \.\.\. FAILED$/fail host::\1/p' \
	"$outdir/cargo-test.log" >"$outdir/results.txt"
if [ "$rc" != 0 ] && ! grep -q '^fail' "$outdir/results.txt"; then
	tail -30 "$outdir/cargo-test.log"
	echo "fail host::cargo-test exit-$rc" >>"$outdir/results.txt"
fi
cat "$outdir/results.txt"
exit $rc
