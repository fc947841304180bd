#!/usr/bin/env python3
"""Parse kvm_rs KUnit results (KTAP in the kernel log) from a virtme-ng log.

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
stamp = re.compile(r"^\[\s*\d+\.\d+\] ?")
subtest = re.compile(r"^(\s*)# Subtest: (\S+)")
result = re.compile(r"^(\s*)(not ok|ok) \d+ (\S+)(.*)$")
in_log = False
suite, level = None, -1
for raw in text.splitlines():
    raw = raw.rstrip("\r")
    if raw.startswith("KVMRS-KUNIT-LOG-BEGIN"):
        in_log = True
        continue
    if raw.startswith("KVMRS-KUNIT-END"):
        in_log = False
        continue
    if not in_log:
        continue
    line = stamp.sub("", raw)
    m = subtest.match(line)
    if m:
        suite, level = m.group(2), len(m.group(1))
        if suite.startswith("kvm_rs_"):
            seen.add(suite)
        continue
    m = result.match(line)
    if m and suite:
        indent = len(m.group(1))
        status, name, rest = m.group(2), m.group(3), m.group(4)
        if indent < level:
            suite, level = None, -1  # the suite's own result line
            continue
        if indent == level and suite.startswith("kvm_rs_"):
            full = f"{suite}.{name}"
            if status == "ok" and "# SKIP" not in rest:
                results.append(("pass", full, ""))
            else:
                results.append(("fail", full, rest.strip() or "not ok"))

if "KVMRS-KUNIT insmod-failed" in text:
    results.append(("fail", "kunit.insmod", "insmod kvm_rs.ko failed"))
if "KVMRS-KUNIT-END" not in text:
    results.append(("fail", "kunit.run", "the virtme-ng run did not complete"))
if "kunit: disabled" in text:
    results.append(("fail", "kunit.enabled", "KUnit is disabled in this kernel"))
for s in expected:
    if s not in seen:
        results.append(("fail", s, "suite did not report"))
    elif not any(r[1].startswith(s + ".") for r in results):
        results.append(("fail", s, "suite reported no test cases"))
for status, name, why in results:
    print(f"{status} {name}" + (f" {why}" if why else ""))
sys.exit(1 if any(r[0] == "fail" for r in results) else 0)
