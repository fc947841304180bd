#!/usr/bin/env python3
"""Parse kvm_rs KUnit results (debugfs KTAP) from a virtme-ng log.

Usage: ktap.py LOG SUITE...
Prints one line per test case, "pass <suite>.<case>" or "fail <suite>.<case> <why>",
and a "fail" line for every expected suite that did not report. A skipped
case counts as a failure: nothing in kvm_rs's KUnit suites may skip.
Exit status 0 when nothing failed.
"""
import re
import sys

log, expected = sys.argv[1], sys.argv[2:]
text = open(log, errors="replace").read()
results = []
seen = set()
suite = None
case_re = re.compile(r"^\s+(not ok|ok) \d+ (\S+)(.*)$")
for line in text.splitlines():
    line = line.rstrip("\r")
    m = re.match(r"^KVMRS-KUNIT-SUITE (\S+)", line)
    if m:
        suite = m.group(1)
        seen.add(suite)
        continue
    if line.startswith("KVMRS-KUNIT-END"):
        suite = None
        continue
    m = case_re.match(line)
    if suite and m:
        status, name, rest = m.groups()
        full = f"{suite}.{name}"
        if status == "ok" and "# SKIP" not in rest:
            results.append(("pass", full, ""))
        else:
            results.append(("fail", full, rest.strip() or "not ok"))

if "KVMRS-KUNIT insmod-failed" in text:
    results.append(("fail", "kunit.insmod", "insmod kvm_rs.ko failed"))
if "KVMRS-KUNIT-END" not in text:
    results.append(("fail", "kunit.run", "the virtme-ng run did not complete"))
for s in expected:
    if s not in seen:
        results.append(("fail", f"{s}", "suite did not report"))
    elif not any(r[1].startswith(s + ".") for r in results):
        results.append(("fail", f"{s}", "suite reported no test cases"))
for status, name, why in results:
    print(f"{status} {name}" + (f" {why}" if why else ""))
sys.exit(1 if any(r[0] == "fail" for r in results) else 0)
