"""Built-in demo datasets, generated offline and deterministically as DICE v1 folders.

    digits        scikit-learn's bundled 8x8 digits (1797 images, 10 classes) as 32x32 PNGs,
                  one image-level label each                      -> image classification
    shapes-demo   120 noisy 128x128 scenes with 1-4 circles, squares, triangles and rotated
                  rectangles: bbox, polygon, rotated_bbox, area    -> detection, segmentation, OBB
    poses-demo    100 noisy 128x128 images with 1-2 stick figures, 11 keypoints each (some hidden
                  or outside the image), bbox                      -> pose estimation (and detection)

Every run writes the same bytes: all randomness comes from fixed seeds, images are written as PNG
without metadata, coordinates are rounded to 2 decimals. A dataset folder is
``<dest>/<name>/images/...`` + ``annotations.json`` + ``.demo-version``; `build_demo_dataset`
skips the work when ``.demo-version`` names the current recipe and the files on disk still hash to
what it recorded. A build happens in a temporary sibling folder that is renamed into place, so a
half-written dataset is never visible.

Rotated boxes are ``[cx, cy, w, h, angle]`` with `angle` in degrees in [-90, 90): the box's width
axis is the +x axis turned by `angle` towards +y (clockwise on screen, since y points down); its
corners are ``c + R(angle) @ (±w/2, ±h/2)`` with ``R = [[cos, -sin], [sin, cos]]``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

logger = logging.getLogger("tools.demo_datasets")

RECIPE_VERSION = 1
"""Bump when a generator changes; folders built by another recipe are rebuilt."""

VERSION_FILE = ".demo-version"

DEMO_DATASETS: dict[str, str] = {
    "digits": "scikit-learn handwritten digits: 1797 32x32 images, 10 classes (image classification)",
    "shapes-demo": "120 noisy 128x128 scenes of circles, squares, triangles and rotated rectangles "
    "with boxes, polygons and rotated boxes (detection, segmentation, oriented detection)",
    "poses-demo": "100 noisy 128x128 images of 1-2 stick figures with 11 keypoints each (pose estimation)",
}

SHAPE_CATEGORIES = ("circle", "square", "triangle", "rectangle")
POSE_KEYPOINTS = (
    "head",
    "neck",
    "l_shoulder",
    "r_shoulder",
    "l_hand",
    "r_hand",
    "hip",
    "l_knee",
    "r_knee",
    "l_foot",
    "r_foot",
)
POSE_SKELETON = ((1, 2), (2, 3), (2, 4), (3, 5), (4, 6), (2, 7), (7, 8), (7, 9), (8, 10), (9, 11))
"""1-based keypoint pairs (COCO style)."""
POSE_FLIP_IDX = (0, 1, 3, 2, 5, 4, 6, 8, 7, 10, 9)
"""0-based index of each keypoint's mirror image (left <-> right), for horizontal flips."""

_SEEDS = {"digits": 0, "shapes-demo": 20251114, "poses-demo": 20251115}

Json = dict[str, Any]


# ------------------------------------------------------------------------------------ helpers


def _r(v: float) -> float:
    """Round a coordinate to 2 decimals (stable JSON, no -0.0)."""
    out = round(float(v), 2)
    return 0.0 if out == 0 else out


def _png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _save_image(out_images: Path, rel: str, pixels: np.ndarray, image_id: int) -> dict[str, Any]:
    """Write `pixels` as PNG at images/<rel>; return its DICE image record (size and sha256)."""
    payload = _png_bytes(pixels)
    _write(out_images / rel, payload)
    h, w = pixels.shape[:2]
    return {"id": image_id, "file_name": rel, "width": w, "height": h, "sha256": hashlib.sha256(payload).hexdigest()}


def _polygon_area(xy: np.ndarray) -> float:
    x, y = xy[:, 0], xy[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def _bbox_of(xy: np.ndarray) -> list[float]:
    x0, y0 = xy.min(axis=0)
    x1, y1 = xy.max(axis=0)
    return [_r(x0), _r(y0), _r(x1 - x0), _r(y1 - y0)]


def _norm_angle(deg: float) -> float:
    """Fold an angle into [-90, 90) (a box turned by 180 degrees is the same box)."""
    return (deg + 90.0) % 180.0 - 90.0


def rotated_box_corners(cx: float, cy: float, w: float, h: float, angle: float) -> np.ndarray:
    """The 4 corners (4x2) of a rotated box in the module's convention (see the docstring)."""
    t = math.radians(angle)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    local = np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]])
    return np.asarray(local @ rot.T + np.array([cx, cy]))


def _min_area_rect(xy: np.ndarray) -> list[float]:
    """Smallest rotated box around a convex polygon (rotating calipers over its edges)."""
    best: tuple[float, list[float]] | None = None
    n = len(xy)
    for i in range(n):
        edge = xy[(i + 1) % n] - xy[i]
        length = float(np.hypot(*edge))
        if length == 0:
            continue
        u = edge / length
        v = np.array([-u[1], u[0]])
        pu, pv = xy @ u, xy @ v
        w, h = float(pu.max() - pu.min()), float(pv.max() - pv.min())
        centre = u * (pu.max() + pu.min()) / 2 + v * (pv.max() + pv.min()) / 2
        angle = math.degrees(math.atan2(u[1], u[0]))
        cand = [float(centre[0]), float(centre[1]), w, h, _norm_angle(angle)]
        if best is None or w * h < best[0] - 1e-9:
            best = (w * h, cand)
    assert best is not None
    return [_r(v) for v in best[1]]


def _noisy_background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A textured background (base colour, gradient, blotches, noise) and its mean colour."""
    base = rng.uniform(60, 200, size=3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    g = rng.uniform(-40, 40, size=(2, 3))
    img = base + xx[..., None] * g[0] + yy[..., None] * g[1]
    # low-frequency blotches: a coarse random grid upsampled
    coarse = rng.normal(0, 18, size=(8, 8, 3))
    img += np.kron(coarse, np.ones((size // 8, size // 8, 1)))
    img += rng.normal(0, 10, size=img.shape)
    return img, base


def _contrasting_colour(
    rng: np.random.Generator, background: np.ndarray, min_dist: float = 110
) -> tuple[int, int, int]:
    for _ in range(100):
        c = rng.integers(0, 256, size=3)
        if float(np.linalg.norm(c - background)) >= min_dist:
            return int(c[0]), int(c[1]), int(c[2])
    far = np.where(background > 127, 0, 255)
    return int(far[0]), int(far[1]), int(far[2])


def _finish(img: np.ndarray, rng: np.random.Generator, noise: float = 6.0) -> np.ndarray:
    img = img + rng.normal(0, noise, size=img.shape)
    return np.asarray(np.clip(np.rint(img), 0, 255).astype(np.uint8))


def _clutter(draw: ImageDraw.ImageDraw, rng: np.random.Generator, base: np.ndarray, size: int) -> None:
    """Low-contrast distractor strokes so the background is not flat."""
    for _ in range(int(rng.integers(2, 6))):
        c = tuple(int(v) for v in np.clip(base + rng.normal(0, 25, size=3), 0, 255))
        pts = rng.uniform(0, size, size=4)
        draw.line([float(pts[0]), float(pts[1]), float(pts[2]), float(pts[3])], fill=c, width=1)


# ------------------------------------------------------------------------------------ digits


def _gen_digits(out_images: Path) -> Json:
    from sklearn.datasets import load_digits

    digits = load_digits()
    data = np.asarray(digits.images)  # (1797, 8, 8), 0..16
    target = np.asarray(digits.target)
    images: list[Json] = []
    annotations: list[Json] = []
    for idx in range(len(data)):
        v = (data[idx] * 255.0 / 16.0).round().clip(0, 255).astype(np.uint8)
        v = 255 - v  # dark digits on a light background
        big = np.kron(v, np.ones((4, 4), dtype=np.uint8))  # 32x32, nearest (exact, version-proof)
        rgb = np.repeat(big[..., None], 3, axis=2)
        label = int(target[idx])
        rel = f"{label}/{idx:04d}.png"
        image_id = idx + 1
        images.append(_save_image(out_images, rel, rgb, image_id))
        annotations.append({"id": image_id, "image_id": image_id, "category_id": label + 1})
    return {
        "categories": [{"id": d + 1, "name": str(d)} for d in range(10)],
        "images": images,
        "annotations": annotations,
    }


# ------------------------------------------------------------------------------------ shapes


def _shape_geometry(cat: str, rng: np.random.Generator, size: int) -> tuple[np.ndarray, list[float], Json]:
    """A random shape of category `cat`: polygon (N x 2), rotated box, drawing hints."""
    margin = 2.0
    if cat == "circle":
        r = float(rng.uniform(8, 20))
        cx, cy = rng.uniform(r + margin, size - r - margin, size=2)
        cx, cy, r = _r(cx), _r(cy), _r(r)
        t = np.arange(24) * (2 * math.pi / 24)
        poly = np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)
        return poly, [cx, cy, _r(2 * r), _r(2 * r), 0.0], {"circle": (cx, cy, r)}
    if cat == "square":
        s = float(rng.uniform(14, 36))
        x, y = rng.uniform(margin, size - s - margin, size=2)
        poly = np.array([[x, y], [x + s, y], [x + s, y + s], [x, y + s]])
        poly = np.vectorize(_r)(poly)
        s2 = float(poly[1, 0] - poly[0, 0])
        return poly, [_r(x + s2 / 2), _r(y + s2 / 2), _r(s2), _r(s2), 0.0], {}
    if cat == "triangle":
        radius = float(rng.uniform(10, 22))
        rot = float(rng.uniform(0, 2 * math.pi))
        cx, cy = rng.uniform(radius + margin, size - radius - margin, size=2)
        t = rot + np.arange(3) * (2 * math.pi / 3) + rng.uniform(-0.25, 0.25, size=3)
        poly = np.stack([cx + radius * np.cos(t), cy + radius * np.sin(t)], axis=1)
        poly = np.vectorize(_r)(poly)
        return poly, _min_area_rect(poly), {}
    if cat == "rectangle":
        for _ in range(200):
            w = float(rng.uniform(22, 48))
            h = float(w / rng.uniform(1.8, 3.2))
            angle = _r(_norm_angle(float(rng.uniform(-90, 90))))
            cx, cy = rng.uniform(10, size - 10, size=2)
            cx, cy, w, h = _r(cx), _r(cy), _r(w), _r(h)
            corners = rotated_box_corners(cx, cy, w, h, angle)
            if corners.min() >= margin and corners.max() <= size - margin:
                return np.vectorize(_r)(corners), [cx, cy, w, h, angle], {}
        raise RuntimeError("could not place a rectangle")  # pragma: no cover
    raise ValueError(f"unknown shape {cat!r}")


def _overlap_fraction(a: list[float], b: list[float]) -> float:
    """Intersection of two [x, y, w, h] boxes over the smaller one's area."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    smaller = min(a[2] * a[3], b[2] * b[3])
    return ix * iy / smaller if smaller > 0 else 1.0


def _gen_shapes(out_images: Path, n_images: int = 120, size: int = 128) -> Json:
    rng = np.random.default_rng(_SEEDS["shapes-demo"])
    counts = rng.integers(1, 5, size=n_images)  # 1..4 objects per scene
    pool = np.resize(np.arange(len(SHAPE_CATEGORIES)), int(counts.sum()))
    rng.shuffle(pool)  # balanced classes, random order
    images: list[Json] = []
    annotations: list[Json] = []
    ann_id = 0
    cursor = 0
    for i in range(n_images):
        wanted = [SHAPE_CATEGORIES[int(c)] for c in pool[cursor : cursor + int(counts[i])]]
        cursor += int(counts[i])
        bg, base = _noisy_background(rng, size)
        canvas = Image.fromarray(np.clip(np.rint(bg), 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(canvas)
        _clutter(draw, rng, base, size)
        placed: list[list[float]] = []
        objects: list[tuple[str, np.ndarray, list[float], Json]] = []
        for cat in wanted:
            for _attempt in range(60):
                poly, rbox, hints = _shape_geometry(cat, rng, size)
                box = _bbox_of(poly)
                rcorners = rotated_box_corners(*rbox)
                if rcorners.min() < 0 or rcorners.max() > size:
                    continue  # keep the rotated box inside the image too
                if all(_overlap_fraction(box, other) <= 0.1 for other in placed):
                    placed.append(box)
                    objects.append((cat, poly, rbox, hints))
                    break
        for cat, poly, rbox, hints in objects:
            colour = _contrasting_colour(rng, base)
            if "circle" in hints:
                cx, cy, r = hints["circle"]
                draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
            else:
                draw.polygon([(float(x), float(y)) for x, y in poly], fill=colour)
            ann_id += 1
            annotations.append(
                {
                    "id": ann_id,
                    "image_id": i + 1,
                    "category_id": SHAPE_CATEGORIES.index(cat) + 1,
                    "bbox": _bbox_of(poly),
                    "segmentation": [[_r(v) for v in poly.reshape(-1)]],
                    "rotated_bbox": [_r(v) for v in rbox],
                    "area": _r(_polygon_area(poly)),
                    "iscrowd": 0,
                }
            )
        pixels = _finish(np.asarray(canvas, dtype=np.float64), rng)
        rel = f"scene_{i + 1:04d}.png"
        images.append(_save_image(out_images, rel, pixels, i + 1))
    return {
        "categories": [{"id": k + 1, "name": name} for k, name in enumerate(SHAPE_CATEGORIES)],
        "images": images,
        "annotations": annotations,
    }


# ------------------------------------------------------------------------------------ poses


def _stick_figure(rng: np.random.Generator, scale: float, hip: np.ndarray) -> np.ndarray:
    """11 keypoints (x, y) of a stick figure facing the viewer (its left is image right)."""
    lean = math.radians(float(rng.normal(0, 12)))
    up = np.array([math.sin(lean), -math.cos(lean)])
    side = np.array([-up[1], up[0]])  # points to the figure's left (image right when upright)
    neck = hip + up * scale
    head = neck + up * 0.45 * scale
    l_sh = neck + side * 0.32 * scale
    r_sh = neck - side * 0.32 * scale

    def limb(start: np.ndarray, outward: np.ndarray, length: float, ang_deg: float) -> np.ndarray:
        a = math.radians(ang_deg)
        direction = -up * math.cos(a) + outward * math.sin(a)  # 0 = straight down, 90 = sideways
        return np.asarray(start + direction * length)

    l_hand = limb(l_sh, side, 0.9 * scale, float(rng.uniform(10, 160)))
    r_hand = limb(r_sh, -side, 0.9 * scale, float(rng.uniform(10, 160)))
    l_knee = limb(hip + side * 0.12 * scale, side, 0.55 * scale, float(rng.uniform(-5, 45)))
    r_knee = limb(hip - side * 0.12 * scale, -side, 0.55 * scale, float(rng.uniform(-5, 45)))
    l_foot = limb(l_knee, side, 0.55 * scale, float(rng.uniform(-20, 35)))
    r_foot = limb(r_knee, -side, 0.55 * scale, float(rng.uniform(-20, 35)))
    return np.stack([head, neck, l_sh, r_sh, l_hand, r_hand, hip, l_knee, r_knee, l_foot, r_foot])


def _gen_poses(out_images: Path, n_images: int = 100, size: int = 128) -> Json:
    rng = np.random.default_rng(_SEEDS["poses-demo"])
    images: list[Json] = []
    annotations: list[Json] = []
    ann_id = 0
    for i in range(n_images):
        bg, base = _noisy_background(rng, size)
        canvas = Image.fromarray(np.clip(np.rint(bg), 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(canvas)
        _clutter(draw, rng, base, size)
        n_fig = 2 if rng.random() < 0.4 else 1
        figures: list[tuple[np.ndarray, float, list[float]]] = []
        for _f in range(n_fig):
            for _attempt in range(80):
                scale = _r(rng.uniform(13, 22) if n_fig == 2 else rng.uniform(15, 26))
                partly_out = rng.random() < 0.12  # may cross the image border
                lo, hi = (-4.0, size + 4.0) if partly_out else (0.0, float(size))
                hip = np.array([rng.uniform(lo, hi), rng.uniform(lo, hi)])
                kps = np.vectorize(_r)(_stick_figure(rng, scale, hip))
                head_r = 0.25 * scale
                ext = np.vstack([kps, kps[0] - head_r, kps[0] + head_r])
                x0, y0 = ext.min(axis=0) - 1.5
                x1, y1 = ext.max(axis=0) + 1.5
                inside = x0 >= 0 and y0 >= 0 and x1 <= size and y1 <= size
                if not partly_out and not inside:
                    continue
                # what remains visible of the figure must be substantial
                cx0, cy0 = max(0.0, float(x0)), max(0.0, float(y0))
                cx1, cy1 = min(float(size), float(x1)), min(float(size), float(y1))
                if cx1 - cx0 < 12 or cy1 - cy0 < 20 or not (0 <= kps[1, 0] < size and 0 <= kps[1, 1] < size):
                    continue
                box = [_r(cx0), _r(cy0), _r(cx1 - cx0), _r(cy1 - cy0)]
                if all(_overlap_fraction(box, other[2]) <= 0.15 for other in figures):
                    figures.append((kps, scale, box))
                    break
        for kps, scale, _box in figures:
            colour = _contrasting_colour(rng, base, 120)
            width = max(2, round(scale / 8))
            for a, b in POSE_SKELETON:
                if (a, b) == (1, 2):
                    continue  # the head is a circle
                pa, pb = kps[a - 1], kps[b - 1]
                draw.line([float(pa[0]), float(pa[1]), float(pb[0]), float(pb[1])], fill=colour, width=width)
            hx, hy = float(kps[0, 0]), float(kps[0, 1])
            hr = 0.25 * scale
            draw.ellipse([hx - hr, hy - hr, hx + hr, hy + hr], outline=colour, width=width)
            to_neck = kps[1] - kps[0]
            rim = kps[0] + to_neck / max(float(np.hypot(*to_neck)), 1e-6) * hr  # head circle, neck side
            draw.line([float(rim[0]), float(rim[1]), float(kps[1, 0]), float(kps[1, 1])], fill=colour, width=width)
        occluder: tuple[float, float, float, float] | None = None
        if figures and rng.random() < 0.25:
            # hide one hand or foot of the first figure behind a patch of background texture
            target = figures[0][0][int(rng.choice([4, 5, 9, 10]))]
            half = float(rng.uniform(4, 7))
            occluder = (
                float(target[0]) - half,
                float(target[1]) - half,
                float(target[0]) + half,
                float(target[1]) + half,
            )
            patch_colour = tuple(int(v) for v in np.clip(base + rng.normal(0, 15, size=3), 0, 255))
            draw.rectangle(occluder, fill=patch_colour)
        for kps, _scale, box in figures:
            flat: list[float] = []
            visible = 0
            for x, y in kps:
                fx, fy = float(x), float(y)
                if not (0 <= fx <= size and 0 <= fy <= size):
                    flat += [0.0, 0.0, 0]
                    continue
                hidden = occluder is not None and (
                    occluder[0] <= fx <= occluder[2] and occluder[1] <= fy <= occluder[3]
                )
                flat += [_r(fx), _r(fy), 1 if hidden else 2]
                visible += 1
            ann_id += 1
            annotations.append(
                {
                    "id": ann_id,
                    "image_id": i + 1,
                    "category_id": 1,
                    "bbox": box,
                    "keypoints": flat,
                    "num_keypoints": visible,
                    "area": _r(box[2] * box[3]),
                    "iscrowd": 0,
                }
            )
        pixels = _finish(np.asarray(canvas, dtype=np.float64), rng)
        rel = f"pose_{i + 1:04d}.png"
        images.append(_save_image(out_images, rel, pixels, i + 1))
    return {
        "categories": [
            {
                "id": 1,
                "name": "person",
                "keypoints": list(POSE_KEYPOINTS),
                "skeleton": [list(p) for p in POSE_SKELETON],
                "flip_idx": list(POSE_FLIP_IDX),
            }
        ],
        "images": images,
        "annotations": annotations,
    }


# ------------------------------------------------------------------------------------ building

_GENERATORS: dict[str, Callable[[Path], Json]] = {
    "digits": _gen_digits,
    "shapes-demo": _gen_shapes,
    "poses-demo": _gen_poses,
}


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _recipe(name: str) -> str:
    return f"{name}:recipe-{RECIPE_VERSION}"


def _is_current(folder: Path, name: str) -> bool:
    """True when `folder` holds this recipe's dataset and its files hash to what was recorded."""
    try:
        meta = json.loads((folder / VERSION_FILE).read_text())
        if meta.get("recipe") != _recipe(name):
            return False
        ann_path = folder / "annotations.json"
        if _sha256_file(ann_path) != meta.get("annotations_sha256"):
            return False
        ann = json.loads(ann_path.read_bytes())
        for img in ann["images"]:
            if _sha256_file(folder / "images" / img["file_name"]) != img["sha256"]:
                return False
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


def build_demo_dataset(name: str, dest: Path) -> Path:
    """Build the demo dataset `name` as ``dest/name`` (DICE v1) unless it is already current."""
    if name not in _GENERATORS:
        raise ValueError(f"unknown demo dataset {name!r}; known: {', '.join(DEMO_DATASETS)}")
    dest = Path(dest)
    final = dest / name
    if _is_current(final, name):
        logger.debug("demo dataset %s is current at %s", name, final)
        return final
    dest.mkdir(parents=True, exist_ok=True)
    work = dest / f".{name}.building-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        body = _GENERATORS[name](work / "images")
        doc = {
            "format_version": "1.0",
            "dataset": {"name": name, "description": DEMO_DATASETS[name]},
            **body,
        }
        ann_bytes = (json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        (work / "annotations.json").write_bytes(ann_bytes)
        meta = {
            "recipe": _recipe(name),
            "annotations_sha256": hashlib.sha256(ann_bytes).hexdigest(),
            "images": len(body["images"]),
            "annotations": len(body["annotations"]),
        }
        (work / VERSION_FILE).write_text(json.dumps(meta, sort_keys=True) + "\n")
        if final.exists():
            stale = dest / f".{name}.stale-{uuid.uuid4().hex[:8]}"
            with contextlib.suppress(OSError):
                final.rename(stale)
                shutil.rmtree(stale, ignore_errors=True)
        try:
            work.rename(final)
        except OSError:
            if not _is_current(final, name):  # someone else won the race with a good copy? else fail
                raise
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    logger.info("built demo dataset %s at %s", name, final)
    return final


def build_all(dest_root: Path, names: Sequence[str] | None = None) -> dict[str, Path]:
    """Build (or reuse) every demo dataset under `dest_root`; returns name -> folder."""
    return {name: build_demo_dataset(name, dest_root) for name in (names or list(DEMO_DATASETS))}


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: write the named (default: all) demo datasets under `dest` and print their
    paths; returns 0 (argparse exits with 2 for an unknown name)."""
    import argparse

    parser = argparse.ArgumentParser(description="Write the built-in demo datasets (DICE v1).")
    parser.add_argument("dest", type=Path, help="folder to write <dest>/<name>/ into")
    parser.add_argument("names", nargs="*", help=f"datasets (default: all of {', '.join(DEMO_DATASETS)})")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in DEMO_DATASETS]
    if unknown:
        parser.error(f"unknown demo dataset(s): {', '.join(unknown)}")
    for name, path in build_all(args.dest, args.names or None).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
