"""Draw an inference result onto its image with Pillow and return a PNG (no torch).

Boxes, polygons (translucent fill), oriented boxes, keypoints with the skeleton, and for
classification the top-5 as a caption. Labels may be Korean: the font is the first CJK-capable
TrueType font found: the caller's `font_path` (the server's VTA_RENDER_FONT setting), then
``fc-list :lang=ko`` (fontconfig), then known paths of Nanum (Debian ``fonts-nanum``) and Noto CJK
(``fonts-noto-cjk``), else DejaVuSans (from matplotlib or the system; Hangul then shows as boxes),
else Pillow's built-in font. `font_info()` says which one is used.
"""

from __future__ import annotations

import functools
import io
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

CJK_CANDIDATES = (
    "/usr/share/fonts/truetype/nanum/NanumGothic.ttf",
    "/usr/share/fonts/truetype/nanum/NanumBarunGothic.ttf",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/System/Library/Fonts/AppleSDGothicNeo.ttc",
)

PALETTE = (
    (255, 56, 56),
    (72, 144, 255),
    (0, 200, 120),
    (255, 170, 0),
    (190, 80, 255),
    (0, 200, 220),
    (255, 100, 180),
    (140, 200, 0),
    (255, 120, 40),
    (90, 90, 255),
)


def _fc_match_korean() -> str | None:
    exe = shutil.which("fc-list")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, ":lang=ko", "file"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    files = sorted(line.split(":", 1)[0].strip() for line in out.stdout.splitlines() if line.strip())
    files = [f for f in files if f.lower().endswith((".ttf", ".ttc", ".otf"))]
    prefer = [f for f in files if "gothic" in f.lower() or "sans" in f.lower()]
    candidates = prefer or files
    return candidates[0] if candidates else None


def _dejavu() -> str | None:
    try:
        import matplotlib

        p = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        if p.is_file():
            return str(p)
    except Exception:
        pass
    for c in ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/dejavu/DejaVuSans.ttf"):
        if os.path.isfile(c):
            return c
    return None


@functools.lru_cache(maxsize=4)
def font_info(font_path: str | None = None) -> dict[str, Any]:
    """``{"path", "cjk": bool, "source"}`` of the font labels are drawn with: `font_path` when it
    is a file (the server's VTA_RENDER_FONT setting), else the first one found on the system."""
    if font_path and os.path.isfile(font_path):
        return {"path": font_path, "cjk": True, "source": "VTA_RENDER_FONT"}
    fc = _fc_match_korean()
    if fc and os.path.isfile(fc):
        return {"path": fc, "cjk": True, "source": "fontconfig"}
    for c in CJK_CANDIDATES:
        if os.path.isfile(c):
            return {"path": c, "cjk": True, "source": "known path"}
    dv = _dejavu()
    if dv:
        return {"path": dv, "cjk": False, "source": "DejaVuSans fallback (no CJK font installed)"}
    return {"path": None, "cjk": False, "source": "Pillow default font"}


@functools.lru_cache(maxsize=16)
def _font(size: int, font_path: str | None) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    path = font_info(font_path)["path"]
    if path:
        try:
            return ImageFont.truetype(path, size)
        except OSError:
            pass
    return ImageFont.load_default()


def _color(class_id: Any) -> tuple[int, int, int]:
    try:
        return PALETTE[int(class_id) % len(PALETTE)]
    except (TypeError, ValueError):
        return PALETTE[0]


def _label(
    draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, color: tuple[int, int, int], font: Any
) -> None:
    x, y = xy
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    w, h = right - left, bottom - top
    y0 = y - h - 4 if y - h - 4 >= 0 else y
    draw.rectangle([x, y0, x + w + 4, y0 + h + 4], fill=(*color, 220))
    draw.text((x + 2 - left, y0 + 2 - top), text, fill=(255, 255, 255, 255), font=font)


def _draw_keypoints(
    draw: ImageDraw.ImageDraw,
    xy: list[tuple[float, float]],
    vis: list[bool],
    skeleton: Sequence[Sequence[int]] | None,
    color: tuple[int, int, int],
    lw: int,
) -> None:
    for a, b in skeleton or []:
        if 0 <= a < len(xy) and 0 <= b < len(xy) and vis[a] and vis[b]:
            draw.line([xy[a], xy[b]], fill=(*color, 255), width=lw)
    r = lw + 1
    for (x, y), v in zip(xy, vis, strict=True):
        if v:
            draw.ellipse([x - r, y - r, x + r, y + r], fill=(255, 255, 255, 255), outline=(*color, 255))


def _draw_prediction(
    draw: ImageDraw.ImageDraw,
    p: Mapping[str, Any],
    task: Any,
    scale: float,
    skeleton: Sequence[Sequence[int]] | None,
    lw: int,
    font: Any,
) -> None:
    """One detection, segment, oriented box or pose: its outline, keypoints and label."""

    def pt(x: float, y: float) -> tuple[float, float]:
        return (x * scale, y * scale)

    color = _color(p.get("class_id"))
    poly = p.get("polygon")
    if poly and len(poly) >= 3:
        pts = [pt(float(x), float(y)) for x, y in poly]
        fill = (*color, 70) if task == "instance_segmentation" else None
        draw.polygon(pts, outline=(*color, 255), fill=fill, width=lw)
    box = p.get("box")
    if box and task != "oriented_object_detection":
        x1, y1 = pt(box[0], box[1])
        x2, y2 = pt(box[2], box[3])
        draw.rectangle([x1, y1, x2, y2], outline=(*color, 255), width=lw)
    kps = p.get("keypoints")
    if kps:
        xy = [pt(k[0], k[1]) for k in kps]
        vis = [(k[2] if len(k) > 2 else 1.0) >= 0.3 for k in kps]
        _draw_keypoints(draw, xy, vis, skeleton, color, lw)
    anchor = None
    if box:
        anchor = pt(box[0], box[1])
    elif poly:
        anchor = pt(min(q[0] for q in poly), min(q[1] for q in poly))
    if anchor is not None:
        _label(draw, anchor, f"{p.get('label')} {float(p.get('confidence') or 0):.2f}", color, font)


def render(
    image: Image.Image | bytes,
    result: Mapping[str, Any],
    *,
    skeleton: Sequence[Sequence[int]] | None = None,
    max_side: int = 1600,
    font_path: str | None = None,
) -> bytes:
    """The image with `result`'s predictions drawn, as PNG bytes. Small images are upscaled so
    labels stay readable; big ones are drawn at most `max_side` pixels on the long side. Labels use
    the TrueType font at `font_path` when given (see `font_info`)."""
    im = Image.open(io.BytesIO(image)) if isinstance(image, bytes | bytearray) else image
    im = im.convert("RGB")
    w0, h0 = im.size
    long_side = max(w0, h0)
    scale = 1.0
    if long_side < 384:
        scale = 384 / long_side
    elif long_side > max_side:
        scale = max_side / long_side
    if scale != 1.0:
        im = im.resize((max(1, round(w0 * scale)), max(1, round(h0 * scale))), Image.Resampling.BILINEAR)
    base = im.convert("RGBA")
    overlay = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    font = _font(max(12, int(min(base.size) / 28)), font_path)
    lw = max(2, int(min(base.size) / 200))
    preds = list(result.get("predictions") or [])
    task = result.get("task_type")
    sk = skeleton if skeleton is not None else result.get("skeleton")

    if task == "image_classification":
        lines = [f"{p.get('label')} {float(p.get('confidence') or 0):.2f}" for p in preds[:5]]
        y = 4.0
        for i, line in enumerate(lines):
            _label(draw, (4, y), line, _color(preds[i].get("class_id")), font)
            y += draw.textbbox((0, 0), line, font=font)[3] + 8
    for p in preds if task != "image_classification" else []:
        _draw_prediction(draw, p, task, scale, sk, lw, font)
    out = Image.alpha_composite(base, overlay).convert("RGB")
    buf = io.BytesIO()
    out.save(buf, format="PNG")
    return buf.getvalue()


__all__ = ["font_info", "render"]
