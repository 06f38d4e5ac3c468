#!/usr/bin/env bash
# Fails if any tracked file holds a valid NHS number outside the 999 test range.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 - <<'PY'
import re, subprocess, sys
def valid(d):
    s = sum(int(x) * (10 - i) for i, x in enumerate(d[:9])); c = 11 - s % 11
    c = 0 if c == 11 else c
    return c != 10 and c == int(d[9])
files = subprocess.run(["git", "ls-files"], capture_output=True, text=True).stdout.split()
bad = []
pat = re.compile(r'(?<![0-9])([0-9]{3})[ -]?([0-9]{3})[ -]?([0-9]{4})(?![0-9])')
for f in files:
    if f.endswith(("package-lock.json", "Cargo.lock", ".png", ".ico", ".icns")):
        continue
    try:
        text = open(f, encoding="utf-8", errors="ignore").read()
    except (IsADirectoryError, FileNotFoundError):
        continue
    for m in pat.finditer(text):
        d = "".join(m.groups())
        if valid(d) and not d.startswith("999"):
            bad.append(f"{f}: a valid NHS number outside the 999 range")
if bad:
    print("\n".join(sorted(set(bad)))); sys.exit(1)
print("no NHS numbers outside the 999 test range in tracked files")
PY
