"""``vision-agent dataset ...`` (and ``python -m trainer_runtime.formats ...``).

    validate PATH                      PATH: a DICE folder, a .zip of one, or an annotations.json
    import SRC DEST [--format auto|yolo|coco|imagefolder|dice] [--name N] [--copy]
    convert SRC --to yolo|coco|imagefolder --task TASK --out OUT [--val-fraction F] [--seed S]
                [--workers N] [--no-fast]
    split SRC [--val-fraction F] [--seed S] [--json]

SRC is a DICE folder or a bare ``annotations.json`` (its folder is the dataset folder; for convert
the images need not exist: width/height come from the file). ``convert --to yolo`` for
object_detection / instance_segmentation uses the fast path (`fastconvert`) and falls back to the
reference converter when the file needs it. Exit codes: 0 ok, 1 bad data (the message names
file:line: field), 2 usage (unknown option, missing path).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trainer_runtime.errors import DatasetFormatError, IncompatibleDatasetError, TrainerRuntimeError

TASKS = (
    "image_classification",
    "object_detection",
    "instance_segmentation",
    "pose_estimation",
    "oriented_object_detection",
)


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        raise _UsageError(f"{self.prog}: {message}")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="vision-agent dataset", description="Validate, import, convert and split datasets.")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    v = sub.add_parser("validate", help="check a DICE dataset (folder, zip or annotations.json)")
    v.add_argument("path", type=Path)
    v.add_argument("--max-errors", type=int, default=50)
    i = sub.add_parser("import", help="import YOLO / COCO / ImageFolder / DICE into a DICE folder")
    i.add_argument("src", type=Path)
    i.add_argument("dest", type=Path)
    i.add_argument("--format", default="auto", choices=("auto", "yolo", "coco", "imagefolder", "dice"))
    i.add_argument("--name", default=None)
    i.add_argument("--copy", action="store_true", help="copy images instead of hard-linking them")
    c = sub.add_parser("convert", help="write YOLO, COCO or ImageFolder from a DICE dataset")
    c.add_argument("src", type=Path)
    c.add_argument("--to", required=True, choices=("yolo", "coco", "imagefolder"))
    c.add_argument("--task", choices=TASKS, default=None, help="required for --to yolo")
    c.add_argument("--out", required=True, type=Path)
    c.add_argument("--val-fraction", type=float, default=0.2)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--workers", type=int, default=1, help="processes writing labels (fast path)")
    c.add_argument("--no-fast", action="store_true", help="always use the reference converter")
    s = sub.add_parser("split", help="print the stratified train/val split")
    s.add_argument("src", type=Path)
    s.add_argument("--val-fraction", type=float, default=0.2)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--json", action="store_true", help="print the report (and the id lists) as JSON")
    return p


def _locate(src: Path) -> tuple[Path, Path]:
    """(annotations.json, dataset folder) for a folder or a bare json file."""
    if src.is_dir():
        ann = src / "annotations.json"
        if not ann.is_file():
            raise DatasetFormatError(f"{src} has no annotations.json", file="annotations.json")
        return ann, src
    if src.is_file():
        return src, src.parent
    raise _UsageError(f"no such file or folder: {src}")


def _load(src: Path) -> tuple[Any, Path, Path]:
    from trainer_runtime.formats.validate import load_annotations

    ann, root = _locate(src)
    return load_annotations(ann, file=ann.name), ann, root


def _available_files(root: Path) -> set[str]:
    images = root / "images"
    out: set[str] = set()
    for dirpath, _dirs, files in os.walk(images):
        rel = os.path.relpath(dirpath, images)
        for f in files:
            out.add(f if rel == "." else f"{rel}/{f}".replace(os.sep, "/"))
    return out


def _cmd_validate(args: argparse.Namespace) -> int:
    from trainer_runtime.formats.limits import DEFAULT_LIMITS
    from trainer_runtime.formats.validate import load_annotations, validate_dataset

    path: Path = args.path
    available: set[str] | None = None
    if path.is_file() and path.suffix.lower() == ".zip":
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/")]
            ann_names = [n for n in names if n.rsplit("/", 1)[-1] == "annotations.json"]
            if not ann_names:
                raise DatasetFormatError("the zip has no annotations.json", file=path.name)
            ann_name = min(ann_names, key=len)
            prefix = ann_name[: -len("annotations.json")]
            ds = load_annotations(zf.read(ann_name), file=ann_name, limits=DEFAULT_LIMITS)
            available = {n[len(prefix) + 7 :] for n in names if n.startswith(prefix + "images/")}
    else:
        ann, root = _locate(path)
        ds = load_annotations(ann, file=ann.name, limits=DEFAULT_LIMITS)
        if path.is_dir():
            available = _available_files(root)
    report = validate_dataset(ds, available_files=available, max_errors=args.max_errors)
    for w in report.warnings:
        print(f"warning: {w}")
    if report.errors:
        for e in report.errors:
            print(f"error: {e}", file=sys.stderr)
        more = report.error_count - len(report.errors)
        if more > 0:
            print(f"... and {more} more errors", file=sys.stderr)
        return 1
    print(f"ok: {len(ds.images)} images, {len(ds.annotations)} annotations, {len(ds.categories)} categories")
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from trainer_runtime.formats.importers import import_dataset

    if not args.src.exists():
        raise _UsageError(f"no such file or folder: {args.src}")
    ds = import_dataset(args.src, args.dest, args.format, name=args.name, link=not args.copy)
    print(f"imported {len(ds.images)} images, {len(ds.annotations)} annotations into {args.dest}")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from trainer_runtime.formats import converters as conv

    if not 0.0 <= args.val_fraction < 1.0:
        raise _UsageError("--val-fraction must be in [0, 1)")
    if args.to == "yolo" and args.task is None:
        raise _UsageError("--to yolo needs --task")
    ann, root = _locate(args.src)
    if args.to == "yolo" and not args.no_fast and args.task in ("object_detection", "instance_segmentation"):
        try:
            from trainer_runtime.formats.fastconvert import FastPathUnsupported
        except ImportError:  # msgspec missing: the reference path works without it
            pass
        else:
            try:
                exp = conv.fast_to_yolo(
                    ann,
                    root,
                    args.out,
                    args.task,
                    val_fraction=args.val_fraction,
                    seed=args.seed,
                    workers=args.workers,
                )
            except FastPathUnsupported:
                pass
            else:
                _print_export(exp)
                return 0
    ds, _ann, root = _load(args.src)
    from trainer_runtime.formats.validate import validate_dataset

    validate_dataset(ds, available_files=None).raise_first()
    if args.to == "yolo":
        exp = conv.to_yolo(ds, root, args.out, args.task, val_fraction=args.val_fraction, seed=args.seed)
        _print_export(exp)
    elif args.to == "imagefolder":
        out = conv.to_imagefolder(ds, root, args.out, val_fraction=args.val_fraction, seed=args.seed)
        print(f"wrote ImageFolder {out} (train/, val/)")
    else:
        out = conv.to_coco(ds, args.out)
        print(f"wrote COCO {out}")
    return 0


def _print_export(exp: Any) -> None:
    r = exp.report
    print(f"wrote {exp.num_labels} label rows for {r.get('images', '?')} images: {exp.data_yaml}")
    if r.get("conversion"):
        print(f"conversion: {r['conversion']}")
    split = r.get("split") or {}
    if split.get("message"):
        print(split["message"])


def _cmd_split(args: argparse.Namespace) -> int:
    from trainer_runtime.formats.split import stratified_split

    if not 0.0 <= args.val_fraction < 1.0:
        raise _UsageError("--val-fraction must be in [0, 1)")
    ds, _ann, _root = _load(args.src)
    res = stratified_split(ds, val_fraction=args.val_fraction, seed=args.seed)
    if args.json:
        print(json.dumps({"report": res.report, "train": res.train, "val": res.val}, ensure_ascii=False))
    else:
        print(res.report.get("message", f"{len(res.train)} train / {len(res.val)} val"))
        for k in ("val_only_classes", "train_only_classes", "single_image_classes"):
            if res.report.get(k):
                print(f"{k}: {', '.join(res.report[k])}")
    return 0


_COMMANDS = {"validate": _cmd_validate, "import": _cmd_import, "convert": _cmd_convert, "split": _cmd_split}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``dataset`` sub-command; `argv` excludes the word ``dataset`` (accepted if present)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["dataset"]:
        args_list = args_list[1:]
    try:
        args = _parser().parse_args(args_list)
        return _COMMANDS[args.cmd](args)
    except _UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0) if isinstance(exc.code, int) else 0
    except (DatasetFormatError, IncompatibleDatasetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except FileExistsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except TrainerRuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
