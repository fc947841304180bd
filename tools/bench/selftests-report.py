#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Turn the in-host selftest results into JSON, a table, and comparisons.

  selftests-report.py run ARCH BACKEND SHARE PLAN OUT.json
      SHARE/selftests/{results.txt,*.log} (from host-selftests.sh) and the
      plan ("test timeout" lines) -> OUT.json: {test: {"result", "seconds",
      "reason"}}; prints a table.
  selftests-report.py compare ARCH KVM.json KVM_RS.json [OUT.md]
      prints the test x backend matrix (and writes it as Markdown).
  selftests-report.py ratchet ARCH EXPECT KVM_RS.json RESULTS.txt
      appends "pass|fail <arch>/selftest: <test>" for every test EXPECT lists
      and prints the tests that pass beyond the list; exit 1 on a failure.

Results follow kselftest: exit 0 pass, 4 skip (KSFT_SKIP), the per-test
timeout is "timeout"; anything else (254 = TEST_ASSERT, 1 = KSFT_FAIL, a
signal) is "fail". The reason is the SKIP text or the assertion.
"""
import json
import os
import re
import sys


def read_plan(path):
    plan = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2:
                plan.append((parts[0], int(parts[1])))
    return plan


def reason_of(result, rc, log):
    lines = [l.rstrip() for l in log.splitlines() if l.strip()]
    if result == "pass":
        return ""
    if result == "timeout":
        tail = lines[-1].strip() if lines else "no output"
        return "timed out; last output: " + tail[:200]
    if result == "skip":
        for l in reversed(lines):
            m = re.search(r"#\s*SKIP\s*(.*)$", l)
            if m:
                return m.group(1).strip()[:300]
        for l in reversed(lines):
            if "Requirement not met" in l or "SKIP" in l.upper():
                return l.strip()[:300]
        # Tests that exit(KSFT_SKIP) after printing their own explanation.
        for l in reversed(lines):
            if not l.startswith("Random seed"):
                return l.strip()[:300]
        return "skipped (exit 4)"
    # Failures: the TEST_ASSERT block, else kselftest "not ok" lines.
    if "==== Test Assertion Failure ====" in log:
        blk = log.split("==== Test Assertion Failure ====", 1)[1].splitlines()
        blk = [l.strip() for l in blk if l.strip() and "addr2line" not in l]
        where = blk[0] if blk else ""
        err = next((l for l in blk if l.startswith("pid=")), "")
        err = re.sub(r"pid=\d+ tid=\d+ ", "", err)
        # The message follows the backtrace (lines starting with a number).
        msg = [l for l in blk[1:] if not l.startswith("pid=") and not re.match(r"^\d+\s+0x", l)]
        parts = [where, err] + msg[:2]
        return " | ".join(p for p in parts if p)[:400]
    notok = [l.strip() for l in lines if l.startswith("not ok")]
    if notok:
        return "; ".join(notok[:3])[:400]
    if rc == 127:
        return "not built / not found"
    if rc > 128:
        return "killed by signal %d; last output: %s" % (rc - 128, (lines[-1] if lines else "")[:200])
    return ("exit %d; last output: %s" % (rc, lines[-1] if lines else "none"))[:400]


def cmd_run(arch, backend, share, plan_path, out):
    plan = read_plan(plan_path)
    got = {}
    rpath = os.path.join(share, "selftests", "results.txt")
    if os.path.exists(rpath):
        with open(rpath) as f:
            for line in f:
                p = line.split()
                if len(p) == 4:
                    got[p[0]] = (int(p[1]), float(p[2]), p[3] == "1")
    res = {}
    for test, tmo in plan:
        if test not in got:
            res[test] = {"result": "fail", "seconds": 0.0,
                         "reason": "did not run: the emulated host stopped before it (see the boot log)"}
            continue
        rc, secs, timed_out = got[test]
        logf = os.path.join(share, "selftests", test.replace("/", "__") + ".log")
        try:
            with open(logf, errors="replace") as f:
                log = f.read()
        except OSError:
            log = ""
        if timed_out:
            result = "timeout"
        elif rc == 0:
            result = "pass"
        elif rc == 4:
            result = "skip"
        else:
            result = "fail"
        res[test] = {"result": result, "seconds": round(secs, 2),
                     "reason": reason_of(result, rc, log)}
    with open(out, "w") as f:
        json.dump(res, f, indent=1, sort_keys=True)
        f.write("\n")
    w = max([len(t) for t in res] + [4])
    print("%-*s  %-7s  %8s  %s" % (w, "test (%s, %s)" % (arch, backend), "result", "seconds", "reason"))
    for t in sorted(res):
        r = res[t]
        print("%-*s  %-7s  %8.2f  %s" % (w, t, r["result"], r["seconds"], r["reason"][:100]))
    counts = {}
    for r in res.values():
        counts[r["result"]] = counts.get(r["result"], 0) + 1
    total = sum(r["seconds"] for r in res.values())
    print("%s/%s: %s; %.0f s of tests" % (arch, backend, ", ".join(
        "%d %s" % (counts.get(k, 0), k) for k in ("pass", "fail", "skip", "timeout")), total))
    print("json: " + out)
    return 0


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def cmd_compare(arch, kvm_path, rs_path, md=None):
    a, b = load(kvm_path), load(rs_path)
    tests = sorted(set(a) | set(b))
    cell = lambda r: "%s %.1fs" % (r["result"], r["seconds"]) if r else "-"
    rows = [(t, cell(a.get(t)), cell(b.get(t)),
             (a.get(t) or {}).get("reason", "") if (a.get(t) or {}).get("result") != "pass" else "")
            for t in tests]
    w = max([len(t) for t in tests] + [4])
    print("%-*s  %-16s  %-16s  %s" % (w, arch + " selftest", "upstream kvm", "kvm_rs", "upstream reason"))
    for t, x, y, why in rows:
        print("%-*s  %-16s  %-16s  %s" % (w, t, x, y, why[:90]))
    def summary(d):
        c = {}
        for r in d.values():
            c[r["result"]] = c.get(r["result"], 0) + 1
        return "%d pass, %d fail, %d skip, %d timeout, %.0f s" % (
            c.get("pass", 0), c.get("fail", 0), c.get("skip", 0), c.get("timeout", 0),
            sum(r["seconds"] for r in d.values()))
    print("upstream kvm: " + summary(a))
    print("kvm_rs:       " + summary(b))
    if md:
        with open(md, "w") as f:
            f.write("| %s selftest | upstream KVM | kvm_rs | reason (upstream, when not pass) |\n" % arch)
            f.write("|---|---|---|---|\n")
            for t, x, y, why in rows:
                f.write("| `%s` | %s | %s | %s |\n" % (t, x, y, why.replace("|", "\\|")[:160]))
            f.write("\nupstream KVM: %s  \nkvm_rs: %s\n" % (summary(a), summary(b)))
    return 0


def read_expect(path):
    names = []
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                names.append(line)
    return names


def cmd_ratchet(arch, expect, rs_path, results):
    exp = read_expect(expect)
    got = load(rs_path)
    bad = 0
    with open(results, "a") as f:
        for t in exp:
            r = got.get(t)
            if r and r["result"] == "pass":
                f.write("pass %s/selftest: %s\n" % (arch, t))
            else:
                bad = 1
                why = "%s: %s" % (r["result"], r["reason"][:120]) if r else "not run"
                f.write("fail %s/selftest: %s (%s)\n" % (arch, t, why))
    beyond = sorted(t for t, r in got.items() if r["result"] == "pass" and t not in exp)
    print("%s: %d expected selftests; %d pass beyond the list%s" % (
        arch, len(exp), len(beyond), (": " + " ".join(beyond)) if beyond else ""))
    return bad


def main(argv):
    if len(argv) >= 7 and argv[1] == "run":
        return cmd_run(*argv[2:7])
    if len(argv) in (5, 6) and argv[1] == "compare":
        return cmd_compare(*argv[2:])
    if len(argv) == 6 and argv[1] == "ratchet":
        return cmd_ratchet(*argv[2:6])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
