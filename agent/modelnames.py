"""Model names in a training request ("yolo11n-seg", "YOLOv8 large", "ResNet-50", "ViT-B/16",
"efficientnet b0", "레즈넷50", a Hugging Face hub id) for the deterministic parser (`agent.parser`):
`find_models` reads (and masks) every mention, `resolve_model` picks the one meant and its
framework and task. See `docs/architecture.md`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from agent import lexicon as lx
from agent.aliases import find_aliases

_NEGATED_BEFORE = re.compile(r"(?:instead\s+of|rather\s+than|other\s+than|not|from|replace|swap)\s*$")
_NEGATED_AFTER = re.compile(r"^\s*(?:말고|대신|아니고|아니라|에서|->|→|instead\s+of|to\s)")


class _ParsedText(Protocol):
    """What `find_models` uses of the parser's text: `orig` (case kept), `low` (lower case, masked)."""

    orig: str
    low: str

    def mask(self, start: int, end: int) -> None: ...


@dataclass
class _ModelHit:
    start: int
    end: int
    name: str | None  # canonical name; None for a family without a size ("yolov8", "resnet")
    framework: str | None
    task: str | None
    yolo_base: str | None = None  # "yolo11s" when the YOLO suffix is still to be chosen
    yolo_suffix_given: bool = False
    timm_family: bool = False
    negated: bool = False
    family: str = ""
    specific: bool = True  # False when a default variant was filled in ("ViT" -> base)


def _yolo_name(ver: str) -> str:
    return f"yolov{ver}" if ver in ("5", "8", "9", "10") else f"yolo{ver}"


_AddHit = Callable[[re.Match[str], _ModelHit], None]


def find_models(t: _ParsedText) -> list[_ModelHit]:
    """Every model mentioned in `t`, in text order, each masked in `t` and marked `negated` when the
    words around it reject it ("instead of resnet")."""
    hits: list[_ModelHit] = []

    def add(m: re.Match[str], hit: _ModelHit) -> None:
        hits.append(hit)
        t.mask(m.start(), m.end())

    doubtful = _find_hub_models(t, add)
    _find_spoken_models(t, hits)
    _find_transformer_models(t, add)
    _find_yolo_models(t, add)
    _find_cnn_models(t, add)
    if not any(h.name for h in hits):  # "crack/no-crack model": a hub id only if nothing else is named
        for m, hit in doubtful:
            add(m, hit)
    for h in hits:
        before = t.low[max(0, h.start - 20) : h.start]
        after = t.low[h.end : h.end + 16]
        h.negated = bool(_NEGATED_BEFORE.search(before) or _NEGATED_AFTER.search(after))
    hits.sort(key=lambda h: h.start)
    return hits


def _hub_id_known(t: _ParsedText, m: re.Match[str]) -> bool | None:
    """True: an org/name that is a hub id on sight (a known org, a catalog id, an architecture in the
    name); False: one the user calls a model or Hugging Face; None: a class list ("crack/no-crack")."""
    org, name = m.group(1), m.group(2)
    if org in lx.HUB_ORGS or m.group(0) in lx.HUB_IDS.values() or m.group(0) == lx.DETR_HUB_ID:
        return True
    if any(rx.search(name) for _, rx in lx.HUB_TASK_WORDS):
        return True
    before, after = t.low[max(0, m.start() - 30) : m.start()], t.low[m.end() : m.end() + 30]
    called = lx.HUB_CALLED_BEFORE_RE.search(before) or lx.HUB_CALLED_AFTER_RE.match(after)
    hf_said = any(fw == "transformers" and rx.search(t.low) for fw, rx in lx.FRAMEWORK_RES)
    return False if called or hf_said else None


def _find_hub_models(t: _ParsedText, add: _AddHit) -> list[tuple[re.Match[str], _ModelHit]]:
    """Hub ids ("google/vit-base-patch16-224", "timm/resnet50.a1_in1k"), each added at once when it is
    one on sight; those the user only calls a model are returned, to be added when no other model is."""
    doubtful: list[tuple[re.Match[str], _ModelHit]] = []
    for m in lx.HUB_RE.finditer(t.low):
        org, name = m.group(1), m.group(2)
        if not re.search(r"[a-z]", name) or not re.search(r"[\d\-_.]", name) or name.isdigit():
            continue
        if re.search(r"[\uac00-\ud7a3]", m.group(0)):
            continue
        written = t.orig[m.start() : m.end()]
        if org == "timm":
            add(m, _ModelHit(m.start(), m.end(), written[5:], "timm", "image_classification", timm_family=True))
            continue
        known = _hub_id_known(t, m)
        if known is None:
            continue
        task = next((tk for tk, rx in lx.HUB_TASK_WORDS if rx.search(name)), None)
        hit = _ModelHit(m.start(), m.end(), written, "transformers", task)
        if known:
            add(m, hit)
        else:
            doubtful.append((m, hit))
    return doubtful


def _find_spoken_models(t: _ParsedText, hits: list[_ModelHit]) -> None:
    """Catalog models said in Korean ("비트 스몰", "이피션트넷 비투", "욜로 브이8 미디엄"), from the
    generated alias tables of `agent.aliases`."""
    for a in find_aliases(t.low):
        if lx.MASK in t.low[a.start : a.end]:
            continue
        m = a.model
        if m.framework == "ultralytics":
            hit = _ModelHit(a.start, a.end, m.name, m.framework, m.task_type, yolo_base=m.name)
        else:
            family = re.match(r"[a-z]+", m.name)
            hit = _ModelHit(
                a.start,
                a.end,
                m.name,
                m.framework,
                m.task_type,
                timm_family=m.framework == "timm",
                family=family.group(0) if family else "",
            )
        hits.append(hit)
        t.mask(a.start, a.end)


def _find_transformer_models(t: _ParsedText, add: _AddHit) -> None:
    for m in lx.RTDETR_RE.finditer(t.low):
        sz = m.group("sz")
        name = f"rtdetr-{'l' if sz in ('l', 'large') else 'x'}" if sz else None
        add(m, _ModelHit(m.start(), m.end(), name, "ultralytics", "object_detection"))
    for m in lx.DETR_RE.finditer(t.low):
        add(m, _ModelHit(m.start(), m.end(), lx.DETR_HUB_ID, "transformers", "object_detection"))
    for m in lx.VIT_RE.finditer(t.low):
        size = lx.VIT_SIZES.get((m.group("sz") or "b").strip(), "base")
        patch = m.group("p") or m.group("p2") or "16"
        name = f"vit_{size}_patch{patch}_224"
        specific = bool(m.group("sz") or m.group("p") or m.group("p2"))
        add(
            m,
            _ModelHit(
                m.start(),
                m.end(),
                name,
                "timm",
                "image_classification",
                timm_family=True,
                family="vit",
                specific=specific,
            ),
        )
    for m in lx.DEIT_RE.finditer(t.low):
        size = lx.VIT_SIZES.get((m.group("sz") or "s").strip(), "small")
        add(
            m,
            _ModelHit(
                m.start(),
                m.end(),
                f"deit_{size}_patch16_224",
                "timm",
                "image_classification",
                timm_family=True,
                family="deit",
                specific=bool(m.group("sz")),
            ),
        )


def _find_yolo_models(t: _ParsedText, add: _AddHit) -> None:
    for m in lx.YOLO_RE.finditer(t.low):
        ver, size, suf = m.group("ver"), m.group("size"), m.group("suf") or m.group("suf2")
        if not size:
            # "yolov8" alone: framework (and task, when a suffix is given), no model without a size.
            task = lx.SUFFIX_TASK.get(suf or "")
            add(m, _ModelHit(m.start(), m.end(), None, "ultralytics", task))
            continue
        base = _yolo_name(ver) + lx.YOLO_SIZES[re.sub(r"\s+", " ", size)]
        if suf:
            add(m, _ModelHit(m.start(), m.end(), f"{base}-{suf}", "ultralytics", lx.SUFFIX_TASK[suf], base, True))
        else:
            add(m, _ModelHit(m.start(), m.end(), base, "ultralytics", "object_detection", base))
    for m in lx.YOLO_BARE_RE.finditer(t.low):
        add(m, _ModelHit(m.start(), m.end(), None, "ultralytics", None))


def _find_cnn_models(t: _ParsedText, add: _AddHit) -> None:
    for m in lx.RESNET_RE.finditer(t.low):
        add(
            m,
            _ModelHit(
                m.start(), m.end(), f"resnet{m.group('depth')}", "timm", "image_classification", timm_family=True
            ),
        )
    for m in lx.EFFNET_RE.finditer(t.low):
        b = re.sub(r"\D", "", m.group("b"))
        add(m, _ModelHit(m.start(), m.end(), f"efficientnet_b{b}", "timm", "image_classification", timm_family=True))
    for m in lx.MOBILENET_RE.finditer(t.low):
        v = m.group("v") or "3"
        var = "small" if (m.group("var") or "") in ("small", "스몰") else "large"
        name = f"mobilenetv3_{var}_100" if v == "3" else f"mobilenetv{v}_100"
        add(
            m,
            _ModelHit(
                m.start(),
                m.end(),
                name,
                "timm",
                "image_classification",
                timm_family=True,
                family="mobilenet",
                specific=bool(m.group("v") or m.group("var")),
            ),
        )
    for m in lx.CONVNEXT_RE.finditer(t.low):
        size = lx.CONVNEXT_SIZES.get(m.group("sz") or "t", "tiny")
        add(
            m,
            _ModelHit(
                m.start(),
                m.end(),
                f"convnext_{size}",
                "timm",
                "image_classification",
                timm_family=True,
                family="convnext",
                specific=bool(m.group("sz")),
            ),
        )
    for m in lx.RESNET_BARE_RE.finditer(t.low):
        add(m, _ModelHit(m.start(), m.end(), None, None, "image_classification"))


def resolve_model(hits: list[_ModelHit], task_word: str | None, fw_word: str | None) -> dict[str, Any]:
    """The `task_type`, `framework` and `model_name` the request means, from the first model mention
    not negated, falling back on the task and framework words; only the keys it could decide."""
    out: dict[str, Any] = {}
    positives = [h for h in hits if not h.negated] or hits
    named = [h for h in positives if h.name]
    hit = named[0] if named else (positives[0] if positives else None)
    if hit is not None and not hit.specific:  # "Vision Transformer (ViT-S/16)": the precise mention wins
        hit = next((h for h in named if h.family == hit.family and h.specific), hit)
    if hit is None:
        if task_word:
            out["task_type"] = task_word
        if fw_word:
            out["framework"] = fw_word
        return out
    task = hit.task
    name = hit.name
    framework = hit.framework
    if hit.framework == "ultralytics":
        if not hit.yolo_suffix_given and task_word:
            task = task_word
        if hit.yolo_base:
            name = hit.yolo_base + lx.YOLO_TASK_SUFFIX[task or "object_detection"]
    elif hit.timm_family and fw_word == "transformers" and name in lx.HUB_IDS:
        name, framework = lx.HUB_IDS[name], "transformers"
    elif hit.timm_family and fw_word in ("timm", "transformers"):
        framework = fw_word
    if framework is None:
        framework = fw_word
    if task is None:
        task = task_word
    if task:
        out["task_type"] = task
    if framework:
        out["framework"] = framework
    if name:
        out["model_name"] = name
    return out
