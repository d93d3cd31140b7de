"""``d24fad series DIR``: list the DICOM series found in a folder (recursively)."""

from __future__ import annotations

import argparse
import json

NAME = "series"
HELP = "list the DICOM series in a folder (UID, modality, size, slices, orientation)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", help="folder to search (recursively)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from ..io.dicom import scan_dicom_folder

    scan = scan_dicom_folder(args.folder)
    if args.json:
        print(json.dumps({"folder": scan.folder, "series": [s.summary() for s in scan.series],
                          "skipped": [{"path": p, "reason": r} for p, r in scan.skipped]}, indent=2))
        return 0
    if not scan.series:
        print(f"no DICOM series in {scan.folder} ({len(scan.skipped)} other files)")
        return 0
    for info in scan.series:
        size = f"{info.columns}x{info.rows}" if info.rows else "-"
        line = (f"{info.series_uid}  {info.modality or '?':<6} {size:>9} {info.slice_count:>5} slices  "
                f"{info.orientation:<22} {info.description}")
        print(line + (f"  [{info.note}]" if info.note else ""))
    if scan.skipped:
        print(f"{len(scan.skipped)} file(s) skipped (not DICOM or unreadable); --json lists them")
    return 0
