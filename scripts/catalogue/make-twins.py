#!/usr/bin/env python3
"""Writes NAME.twin.scn for every catalogue NAME.scn.

The base file marks the one line its twin changes with a trailing
`#@twin REPLACEMENT`: the twin is the same file with that line replaced by
REPLACEMENT (same line number), so the twin must fail at exactly that line.
"""
import pathlib, sys

root = pathlib.Path(__file__).parent
for base in sorted(root.rglob("*.scn")):
    if base.name.endswith(".twin.scn"):
        continue
    out, marked = [], 0
    for n, line in enumerate(base.read_text().splitlines(), 1):
        if "#@twin " in line:
            marked = n
            out.append(line.split("#@twin ", 1)[1].rstrip())
        else:
            out.append(line)
    if not marked:
        sys.exit(f"{base}: no #@twin line")
    twin = base.with_name(base.name[:-4] + ".twin.scn")
    twin.write_text("\n".join(out) + "\n")
    (twin.parent / (twin.name + ".line")).write_text(f"{marked}\n")
