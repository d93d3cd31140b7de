"""``d24fad score``: score a volume (DICOM / NIfTI / NRRD / MHA) or a folder of 2D images.

Volume mode::

    d24fad score --input CT_DIR --support-slices 12,40,41 --out results/
        [--support-input OTHER --support-slices-other 3,9] [--axis acquisition] [--window auto]
        [--threshold 0.4|auto --mask] [--dicom-seg] [--dicom-pmap] [--map-format nii.gz|nrrd]

Folder mode::

    d24fad score --support NORMAL_DIR --query QUERY_DIR --out results/ [--shots K]

The output folder appears complete or not at all (built aside, then moved into place).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

NAME = "score"
HELP = "score a volume slice by slice, or a folder of images, against normal supports"

MAP_FORMATS = ("nii.gz", "nrrd")
AXES = ("acquisition", "axial", "coronal", "sagittal")


def add_arguments(p: argparse.ArgumentParser) -> None:
    volume = p.add_argument_group("volume mode")
    volume.add_argument("--input", help="DICOM folder or file, NIfTI, NRRD or MHA volume to score")
    volume.add_argument("--series-uid", help="SeriesInstanceUID to read when the DICOM folder holds several")
    volume.add_argument("--support-slices", help="normal slice indices of --input along --axis, e.g. 12,40,41")
    volume.add_argument("--support-input", action="append",
                        help="another normal volume to take supports from (repeatable, one per scan)")
    volume.add_argument("--support-series-uid", action="append",
                        help="series of --support-input when it holds several (repeat once per --support-input)")
    volume.add_argument("--support-slices-other", action="append",
                        help="slice indices of the matching --support-input, e.g. 3,9 (repeat once per scan)")
    volume.add_argument("--axis", default="acquisition", choices=AXES, help="slicing axis (default: acquisition)")
    volume.add_argument("--window", default="auto",
                        help="intensity: auto, brain, soft, lung, bone, W/L (e.g. 400/40), percentile, minmax, "
                             "dicom, none")
    volume.add_argument("--modality", help="modality when the file does not say (NIfTI / NRRD), e.g. CT or MR; "
                                           "it selects the automatic intensity rule")
    volume.add_argument("--map-format", default="nii.gz", choices=MAP_FORMATS, help="anomaly map file format")
    volume.add_argument("--whole-slice", action="store_true",
                        help="score air around the patient too (default: maps and slice scores use the body only)")
    volume.add_argument("--threshold", help="pixel threshold for the mask: a number or 'auto' (from the supports)")
    volume.add_argument("--mask", action="store_true", help="also write the binary mask (needs --threshold)")
    volume.add_argument("--dicom-seg", action="store_true", help="write a DICOM SEG of the mask (needs --threshold)")
    volume.add_argument("--dicom-pmap", action="store_true", help="write the map as a DICOM Parametric Map")
    volume.add_argument("--png-top", type=int, default=0, metavar="N",
                        help="also write heat-map PNGs of the N highest-scoring slices")
    folder = p.add_argument_group("folder mode (2D images)")
    folder.add_argument("--support", help="folder of normal support images")
    folder.add_argument("--query", help="folder of images to score")
    folder.add_argument("--shots", type=int, help="use the first K support images (default: all)")
    common = p.add_argument_group("common")
    common.add_argument("--out", required=True, help="output folder (created; must be empty unless --overwrite)")
    common.add_argument("--checkpoint", help="model file (.safetensors); default: the shipped model")
    common.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    common.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    common.add_argument("--batch-size", type=int, default=16)
    common.add_argument("--progress", default="bar", choices=["bar", "json", "none"])
    common.add_argument("--overwrite", action="store_true", help="replace an existing output folder")


def parse_indices(text: str | None, option: str) -> list[int]:
    from ..errors import InputError

    if text is None or not str(text).strip():
        raise InputError(f"{option} is required: give normal slice indices such as 12,40,41")
    try:
        indices = [int(part) for part in str(text).replace(" ", "").split(",") if part != ""]
    except ValueError:
        raise InputError(f"{option} {text!r}: expected comma-separated integers such as 12,40,41") from None
    if not indices:
        raise InputError(f"{option} {text!r}: no slice index given")
    return indices


# Options that only make sense in one mode (dest name, flag) -- refused in the other.
VOLUME_ONLY = (("series_uid", "--series-uid"), ("support_slices", "--support-slices"),
               ("support_input", "--support-input"), ("support_slices_other", "--support-slices-other"),
               ("threshold", "--threshold"), ("mask", "--mask"), ("dicom_seg", "--dicom-seg"),
               ("dicom_pmap", "--dicom-pmap"), ("png_top", "--png-top"), ("modality", "--modality"),
               ("whole_slice", "--whole-slice"))
FOLDER_ONLY = (("shots", "--shots"),)


def _refuse_options(args: argparse.Namespace, options, mode: str) -> None:
    from ..errors import InputError

    given = [flag for dest, flag in options if getattr(args, dest) not in (None, False, 0)]
    if given:
        raise InputError(f"{', '.join(given)} cannot be used in {mode} mode")


def _validate(args: argparse.Namespace) -> str:
    """Check option combinations before any work; return 'volume' or 'folder'."""
    from ..errors import InputError, OutputError, SupportSetError
    from ..pipeline import parse_threshold
    from ..preprocess import parse_window

    if args.input and (args.query or args.support):
        raise InputError("use either --input (volume) or --support/--query (image folders), not both")
    if not (args.input or args.query or args.support):
        raise InputError("nothing to score: give --input PATH (volume) or --support DIR --query DIR (images)")
    if args.batch_size < 1:
        raise InputError(f"--batch-size {args.batch_size}: must be at least 1")
    parse_window(args.window)
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not args.overwrite:
        raise OutputError(f"output folder {out} exists and is not empty (use --overwrite to replace it)")
    if not args.input:
        if not (args.query and args.support):
            raise InputError("folder mode needs both --support DIR and --query DIR")
        _refuse_options(args, VOLUME_ONLY, "folder (--support/--query)")
        return "folder"
    _refuse_options(args, FOLDER_ONLY, "volume (--input)")
    other_inputs = args.support_input or []
    other_slices = args.support_slices_other or []
    if len(other_inputs) != len(other_slices):
        raise InputError(f"--support-input is given {len(other_inputs)} time(s) and --support-slices-other "
                         f"{len(other_slices)} time(s): give one list of slice indices per other scan")
    if args.support_series_uid and len(args.support_series_uid) != len(other_inputs):
        raise InputError("--support-series-uid must be given once per --support-input, or not at all")
    if args.support_slices is None and not other_inputs:
        raise SupportSetError("no support set: give --support-slices (normal slices of --input) and/or "
                              "--support-input OTHER --support-slices-other INDICES")
    support_count = 0 if args.support_slices is None else len(parse_indices(args.support_slices, "--support-slices"))
    support_count += sum(len(parse_indices(text, "--support-slices-other")) for text in other_slices)
    if parse_threshold(args.threshold) == "auto" and support_count < 2:
        raise SupportSetError("--threshold auto calibrates on the supports left out one at a time: "
                              "tag at least 2 support slices")
    if args.png_top < 0:
        raise InputError(f"--png-top {args.png_top}: must be 0 or more")
    if (args.mask or args.dicom_seg) and args.threshold is None:
        raise InputError("--mask and --dicom-seg need --threshold T or --threshold auto")
    return "volume"


def _load_detector(args: argparse.Namespace):
    from ..detector import FewShotDetector

    return FewShotDetector.from_checkpoint(args.checkpoint, device=args.device, dtype=args.dtype)


def _versions() -> dict:
    from .. import __version__

    versions = {"d24fad": __version__, "python": platform.python_version()}
    for module in ("torch", "timm", "numpy", "SimpleITK", "pydicom", "highdicom", "monai"):
        loaded = sys.modules.get(module)
        versions[module] = getattr(loaded, "__version__", None) if loaded else None
    return versions


def _model_record(detector) -> dict:
    record = detector.describe()
    record["checkpoint"] = detector.checkpoint_path
    return record


def weights_summary(weights, support_labels: list[str]) -> dict:
    """How much each support was relied on (L2W weights averaged over queries, per scale)."""
    import numpy as np

    weights = np.asarray(weights, dtype=np.float64)
    if weights.size == 0:
        return {"supports": support_labels, "mean_per_scale": [], "top_support_counts": {}}
    mean_per_scale = weights.mean(axis=0)  # [n_scales, K]
    favourite = weights.mean(axis=1).argmax(axis=1)  # per query: support with the largest mean weight
    counts = {support_labels[k]: int((favourite == k).sum()) for k in range(len(support_labels))}
    return {"supports": support_labels, "mean_per_scale": np.round(mean_per_scale, 6).tolist(),
            "top_support_counts": counts}


def _run_json(path: Path, record: dict) -> None:
    path.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")


def _make_progress(args: argparse.Namespace, total: int, stage: str):
    from ..progress import Progress

    return Progress(total, stage=stage, mode=args.progress)


def run(args: argparse.Namespace) -> int:
    mode = _validate(args)
    started = time.time()
    if mode == "volume":
        return _run_volume(args, started)
    return _run_folder(args, started)


# --------------------------------------------------------------------------------------


def _read_inputs(args: argparse.Namespace):
    """The volume to score and its support references (slices of it, maybe of another volume)."""
    from ..errors import InputError
    from ..io import read_volume
    from ..pipeline import SupportRef

    volume = _with_modality(read_volume(args.input, series_uid=args.series_uid), args.modality)
    if (args.dicom_seg or args.dicom_pmap) and not volume.metadata.get("dicom_files"):
        raise InputError(f"--dicom-seg / --dicom-pmap need a DICOM input; {args.input} is not DICOM")
    supports = []
    if args.support_slices is not None:
        supports.append(SupportRef(volume, parse_indices(args.support_slices, "--support-slices")))
    other_inputs = args.support_input or []
    series_uids = args.support_series_uid or [None] * len(other_inputs)
    for path, series_uid, indices in zip(other_inputs, series_uids, args.support_slices_other or []):
        other = _with_modality(read_volume(path, series_uid=series_uid), args.modality)
        supports.append(SupportRef(other, parse_indices(indices, "--support-slices-other")))
    return volume, supports


def _write_volume_outputs(args: argparse.Namespace, result, folder: Path) -> list[str]:
    """Map, scores and the optional mask / DICOM / PNG outputs; returns their names."""
    from ..io import write_slice_scores_csv, write_volume

    outputs = [f"anomaly_map.{args.map_format}", "scores.csv"]
    write_volume(result.map_volume, folder / outputs[0])
    write_slice_scores_csv(folder / "scores.csv", result.slice_indices, result.slice_positions_mm,
                           result.slice_scores)
    if args.mask:
        outputs.append(f"anomaly_mask.{args.map_format}")
        write_volume(result.mask_volume(), folder / outputs[-1])
    if args.dicom_seg:
        from ..io.dicom_out import write_dicom_seg

        outputs.append("anomaly_seg.dcm")
        write_dicom_seg(result.volume, result.mask_volume(), folder / outputs[-1])
    if args.dicom_pmap:
        from ..io.dicom_out import write_dicom_pmap

        outputs.append("anomaly_pmap.dcm")
        write_dicom_pmap(result.volume, result.map_volume, folder / outputs[-1])
    return outputs + _write_top_slice_pngs(result, args.png_top, folder)


def _volume_run_record(args: argparse.Namespace, result, detector, outputs: list[str], started: float) -> dict:
    volume = result.volume
    labels = [f"{'input' if s['same_as_input'] else 'other'}:{i}" for s in result.supports for i in s["indices"]]
    threshold_source = None
    if args.threshold is not None:
        threshold_source = "auto (leave-one-out among supports)" if str(args.threshold).lower() == "auto" else "user"
    return {
        "mode": "volume",
        "input": {"path": str(args.input), "series_uid": volume.metadata.get("series_uid"),
                  "modality": volume.modality, "shape_kji": list(volume.shape), "spacing": volume.spacing,
                  "origin": volume.origin, "direction": volume.direction,
                  "geometry_missing": bool(volume.metadata.get("geometry_missing", False))},
        "axis": args.axis,
        "body_only": result.slice_body_fraction is not None,
        "intensity": {"window": args.window, "mode": result.intensity.mode, "low": result.intensity.low,
                      "high": result.intensity.high, "reason": result.intensity.reason},
        "supports": result.supports,
        "model": _model_record(detector),
        "threshold": result.threshold,
        "threshold_source": threshold_source,
        "top_slices": [{"index": i, "position_mm": p, "score": s} for i, p, s in result.top_slices(5)],
        "l2w_weights": weights_summary(result.weights, labels),
        "outputs": outputs,
        "versions": _versions(),
        "elapsed_s": round(time.time() - started, 3),
    }


def _run_volume(args: argparse.Namespace, started: float) -> int:
    from ..io.atomic import atomic_directory
    from ..pipeline import score_volume
    from ..slicing import slice_count

    volume, supports = _read_inputs(args)
    detector = _load_detector(args)
    with _make_progress(args, slice_count(volume, args.axis), "scoring") as progress:
        result = score_volume(volume, supports, detector, axis=args.axis, window=args.window,
                              batch_size=args.batch_size, progress=progress, threshold=args.threshold,
                              body_only=not args.whole_slice)
    with atomic_directory(args.out, overwrite=args.overwrite) as tmp:
        outputs = _write_volume_outputs(args, result, tmp) + ["run.json"]
        _run_json(tmp / "run.json", _volume_run_record(args, result, detector, outputs, started))
    _report(args, outputs, [f"slice {i} ({p:.1f} mm): {s:.4f}" for i, p, s in result.top_slices(5)])
    return 0


def _with_modality(volume, modality):
    """Fill in the modality a NIfTI / NRRD file cannot carry; a DICOM header's value wins."""
    if modality and not volume.modality:
        volume.modality = modality.strip().upper()
    return volume


def _write_top_slice_pngs(result, count: int, folder: Path) -> list[str]:
    """Heat-map overlays of the ``count`` best slices (map range shared, so colours compare)."""
    from ..preprocess import apply_intensity_plan
    from ..slicing import get_slice
    from ..visualize import orient_for_display, save_overlay_png

    names = []
    vmin, vmax = float(result.anomaly_map.min()), float(result.anomaly_map.max())
    volume, axis = result.volume, result.axis
    for index, _position, _score in result.top_slices(count):
        image01 = apply_intensity_plan(get_slice(volume, axis, index), result.intensity)
        anomaly_map = get_slice(volume, axis, index, array=result.anomaly_map)
        names.append(f"top_slices/slice_{index:04d}.png")
        save_overlay_png(folder / names[-1], orient_for_display(volume, axis, image01),
                         orient_for_display(volume, axis, anomaly_map), vmin, vmax)
    return names


def _report(args: argparse.Namespace, outputs: list[str], top_lines: list[str]) -> None:
    if args.progress == "json":
        print(json.dumps({"event": "outputs", "folder": str(Path(args.out).resolve()), "files": outputs}))
        return
    print(f"wrote {', '.join(outputs)} to {Path(args.out).resolve()}")
    print("top scores: " + "; ".join(top_lines))


def _run_folder(args: argparse.Namespace, started: float) -> int:
    import numpy as np

    from ..io.atomic import atomic_directory
    from ..io.writers import image_scores_csv_text
    from ..pipeline import choose_support_files, score_image_folder
    from ..visualize import save_overlay_png

    choose_support_files(args.support, args.shots)  # fail on a bad K before loading the model
    detector = _load_detector(args)
    with _make_progress(args, 0, "scoring") as progress:
        result = score_image_folder(args.support, args.query, detector, shots=args.shots, window=args.window,
                                    batch_size=args.batch_size, progress=progress)
    vmin = float(min(m.min() for m in result.maps))
    vmax = float(max(m.max() for m in result.maps))
    with atomic_directory(args.out, overwrite=args.overwrite) as tmp:
        names = [p.name for p in result.query_paths]
        (tmp / "scores.csv").write_text(image_scores_csv_text(names, result.scores), encoding="utf-8")
        heatmaps = []
        for index, (path, image01, anomaly_map) in enumerate(zip(result.query_paths, result.query_images01,
                                                                 result.maps)):
            # The index keeps names unique when two files differ only by extension.
            heatmaps.append(f"heatmaps/{index:04d}_{path.stem}.png")
            save_overlay_png(tmp / heatmaps[-1], image01, anomaly_map, vmin, vmax)
        _run_json(tmp / "run.json", {
            "mode": "folder",
            "support": [str(p) for p in result.support_paths],
            "query_folder": str(args.query),
            "model": _model_record(detector),
            "heatmap_range": [vmin, vmax],
            "l2w_weights": weights_summary(result.weights, [p.name for p in result.support_paths]),
            "outputs": ["scores.csv", "run.json"] + heatmaps,
            "versions": _versions(),
            "elapsed_s": round(time.time() - started, 3),
        })
    order = np.argsort(-result.scores)[:5]
    _report(args, ["scores.csv", "run.json", f"heatmaps/ ({len(heatmaps)} PNG)"],
            [f"{names[i]}: {result.scores[i]:.4f}" for i in order])
    return 0
