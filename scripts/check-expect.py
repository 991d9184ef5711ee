#!/usr/bin/env python3
"""Runs sipcheck --json over every conformance folder that has an EXPECT.json and compares
each file's verdict with the expected fields. Usage: check-expect.py SIPCHECK CORPUS_DIR"""
import json
import os
import subprocess
import sys


def main():
    sipcheck, corpus = sys.argv[1], sys.argv[2]
    failures = checked = 0
    for folder in sorted(os.listdir(corpus)):
        expect_path = os.path.join(corpus, folder, "EXPECT.json")
        if not os.path.isfile(expect_path):
            continue
        with open(expect_path) as f:
            expect = json.load(f)
        files = [os.path.join(corpus, folder, name) for name in sorted(expect)]
        out = subprocess.run([sipcheck, "--json", *files], capture_output=True, text=True)
        if out.returncode not in (0, 1):
            print(f"sipcheck failed on {folder}: {out.stderr}")
            return 1
        lines = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
        got = {os.path.basename(v["file"]): v for v in lines}
        for name, want in sorted(expect.items()):
            checked += 1
            have = got.get(name)
            if have is None:
                print(f"FAIL {folder}/{name}: no verdict")
                failures += 1
                continue
            wrong = {k: (v, have.get(k)) for k, v in want.items() if have.get(k) != v}
            if wrong:
                failures += 1
                print(f"FAIL {folder}/{name}: " + ", ".join(
                    f"{k}: want {w!r}, got {g!r}" for k, (w, g) in wrong.items())
                    + f" ({have.get('error', '')})")
    print(f"sipcheck verdicts: {checked - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
