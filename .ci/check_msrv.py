"""Fails when a dependency declares a rust-version newer than this crate's.

The machine has one Rust toolchain and no other can be installed, so CI cannot build
with the MSRV itself; this keeps the declaration honest against the dependency graph.
"""
import json
import sys


def parse(v):
    # "1.88" and "1.88.0" are the same version: pad to major.minor.patch.
    parts = [int(x) for x in v.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


meta = json.load(sys.stdin)
ours = next(p for p in meta["packages"] if p["name"] == "tower-oauth")
declared = parse(ours["rust_version"])
too_new = [
    (p["name"], p["rust_version"])
    for p in meta["packages"]
    if p.get("rust_version") and parse(p["rust_version"]) > declared
]
if too_new:
    print(f"declared rust-version {ours['rust_version']} is older than:", too_new)
    sys.exit(1)
print(f"rust-version {ours['rust_version']}: every dependency's declared MSRV is at or below it")
