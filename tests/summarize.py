#!/usr/bin/env python3
"""Counts test results for tests/run: TAP test points from meson's
testlog.json (a binary that died before reporting counts as one failure) and
test cases from JUnit XML files (pytest's integration and browser,
tests/fuzz/run's fuzz, one case per target, tests/format's and
tests/analyze's one case each, tests/rules' two: one suite each, named
after the file).
Prints one line per suite, then the total as "N passed, N failed,
N skipped"; exits 1 if anything failed."""
import json
import re
import sys
import xml.etree.ElementTree as ET


def count_meson(path):
    passed = failed = skipped = 0
    try:
        lines = open(path).read().splitlines()
    except OSError:
        return 0, 1, 0
    for line in lines:
        test = json.loads(line)
        out = test.get("stdout") or ""
        ok = len(re.findall(r"^ok \d+", out, re.M))
        bad = len(re.findall(r"^not ok \d+", out, re.M))
        skip = len(re.findall(r"^ok \d+.*# SKIP", out, re.M))
        if test["result"] not in ("OK", "EXPECTEDFAIL", "SKIP") and bad == 0:
            bad = 1  # crashed, timed out or a sanitizer spoke after the last point
        passed += ok - skip
        failed += bad
        skipped += skip
    return passed, failed, skipped


def count_junit(path):
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return 0, 1, 0
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    total = sum(int(s.get("tests", 0)) for s in suites)
    failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    skipped = sum(int(s.get("skipped", 0)) for s in suites)
    return total - failed - skipped, failed, skipped


def main():
    unit, junit_files = sys.argv[1], sys.argv[2:]
    suites = [("unit", count_meson(unit))]
    for path in junit_files:
        name = path.rsplit("/", 1)[-1].split(".")[0]
        suites.append((name, count_junit(path)))
    totals = [0, 0, 0]
    for name, counts in suites:
        print(f"{name}: {counts[0]} passed, {counts[1]} failed, {counts[2]} skipped",
              file=sys.stderr)
        totals = [a + b for a, b in zip(totals, counts)]
    print(f"{totals[0]} passed, {totals[1]} failed, {totals[2]} skipped")
    return 1 if totals[1] else 0


if __name__ == "__main__":
    sys.exit(main())
