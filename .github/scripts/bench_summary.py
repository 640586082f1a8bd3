#!/usr/bin/env python3
"""Turn the benches' outputs into one markdown table of ratios (stdout,
for $GITHUB_STEP_SUMMARY) and one JSON file.

Inputs (each optional; a missing one is reported as missing in the table):
  --mkfs       DIR/result.json of `cargo bench --bench mkfs`
  --qcow2-log  the output of `cargo bench --bench qcow2`
  --assemble   DIR/result.json of `cargo bench --bench assemble`
               (deflate row: dibr_s/pipeline_s; zstd row: dibr_zstd_s/
               pipeline_zstd_s)
  --build      DIR/result.json of `cargo bench --bench build_vs_dib`:
               {"mode", "elements", "dib_s", "dibr_s", "dib_assembly_s",
               "dibr_assembly_s", ...}: disk-image-create vs dibr build
Ratios are anchor time / dibr time: above 1, dibr is faster.
"""

import argparse
import json
import os
import re
import sys


def load(path):
    if not path or not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


QCOW2_LINE = re.compile(
    r"^(qcow2 -c zstd|qcow2 -c|vhd): dibr ([0-9.]+)s (\d+) bytes \| qemu-img ([0-9.]+)s (\d+) bytes"
)


def parse_qcow2_log(path):
    if not path or not os.path.isfile(path):
        return None
    out = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = QCOW2_LINE.match(line.strip())
            if m:
                key = {"qcow2 -c": "qcow2", "qcow2 -c zstd": "qcow2_zstd"}.get(m.group(1), "vhd")
                out[key] = {
                    "dibr_s": float(m.group(2)),
                    "dibr_bytes": int(m.group(3)),
                    "qemu_img_s": float(m.group(4)),
                    "qemu_img_bytes": int(m.group(5)),
                }
    return out or None


def rows(mkfs, qcow2, assemble, build):
    """(benchmark, anchor, dibr seconds, anchor seconds) for every result."""
    r = []
    for case in mkfs or []:
        if case.get("case") == "root-tarball":
            r.append(("mkfs: root tarball", "tar -x + mke2fs -d", case["dibr_s"], case["tar_x_mke2fs_s"]))
            r.append(("mkfs: root tarball", "mke2fs -d (extracted)", case["dibr_s"], case["mke2fs_d_s"]))
        elif case.get("case") == "flat-100k":
            r.append(("mkfs: 100 000-entry directory", "mke2fs -d", case["dibr_s"], case["mke2fs_d_s"]))
    for kind, label in (
        ("qcow2", "raw → qcow2 (compressed)"),
        ("qcow2_zstd", "raw → qcow2 (compression_type=zstd)"),
        ("vhd", "raw → vhd"),
    ):
        if qcow2 and kind in qcow2:
            q = qcow2[kind]
            r.append((label, "qemu-img convert", q["dibr_s"], q["qemu_img_s"]))
    if assemble:
        r.append(("assemble: tarball → bootable qcow2", "rootless shell pipeline", assemble["dibr_s"], assemble["pipeline_s"]))
        if "dibr_zstd_s" in assemble:
            r.append(("assemble: tarball → bootable qcow2, zstd", "rootless shell pipeline, qemu-img zstd",
                      assemble["dibr_zstd_s"], assemble["pipeline_zstd_s"]))
    if build:
        ty = "raw" if build.get("mode") == "raw" else "qcow2"
        what = f"build: {build.get('elements', 'debian-minimal vm')} -t {ty}"
        r.append((f"{what}, total", "disk-image-create (root)", build["dibr_s"], build["dib_s"]))
        if "dibr_assembly_s" in build:
            r.append((f"{what}, assembly phase", "disk-image-create (root)",
                      build["dibr_assembly_s"], build["dib_assembly_s"]))
    return r


def markdown(table, missing):
    lines = [
        "## dibr benchmarks",
        "",
        "Ratio = anchor time / dibr time (above 1: dibr is faster). Medians of the benches' runs.",
        "",
        "| benchmark | anchor | dibr (s) | anchor (s) | ratio |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for name, anchor, d, a in table:
        ratio = f"{a / d:.2f}x" if d > 0 else "n/a"
        lines.append(f"| {name} | {anchor} | {d:.2f} | {a:.2f} | {ratio} |")
    if not table:
        lines.append("| (no results) | | | | |")
    if missing:
        lines += ["", "Missing: " + ", ".join(missing) + "."]
    return "\n".join(lines) + "\n"


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mkfs")
    p.add_argument("--qcow2-log")
    p.add_argument("--assemble")
    p.add_argument("--build")
    p.add_argument("--json", required=True, help="write the combined JSON here")
    a = p.parse_args(argv)
    mkfs, qcow2, assemble, build = load(a.mkfs), parse_qcow2_log(a.qcow2_log), load(a.assemble), load(a.build)
    missing = [n for n, v in (("mkfs", mkfs), ("qcow2", qcow2), ("assemble", assemble), ("build", build)) if v is None]
    table = rows(mkfs, qcow2, assemble, build)
    combined = {
        "mkfs": mkfs,
        "qcow2": qcow2,
        "assemble": assemble,
        "build": build,
        "ratios": [
            {"benchmark": n, "anchor": an, "dibr_s": d, "anchor_s": s, "ratio": round(s / d, 3) if d > 0 else None}
            for n, an, d, s in table
        ],
    }
    with open(a.json, "w", encoding="utf-8") as f:
        json.dump(combined, f, indent=2)
        f.write("\n")
    sys.stdout.write(markdown(table, missing))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
