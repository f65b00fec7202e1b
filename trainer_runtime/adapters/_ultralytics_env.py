"""Make Ultralytics safe to import and train on machines without internet (offline: see docs/architecture.md).

`prepare_ultralytics()` must run before the first ``import ultralytics`` of the process; it is
idempotent and cheap after the first call. It:

- sets ``YOLO_OFFLINE=1`` (else Ultralytics probes DNS at import) and ``YOLO_AUTOINSTALL=false``
  (else it may pip-install packages at run time), unless the environment already sets them;
- picks ``YOLO_CONFIG_DIR`` when the environment does not set it: ``$VTA_ULTRALYTICS_CONFIG_DIR``,
  else ``~/.cache/vision-training-agent/ultralytics``, else a folder under the system temp dir. One
  stable folder for the whole process (Ultralytics reads it once, at import), so a job's work dir
  being deleted never breaks the next job;
- copies a TTF font that ships with matplotlib (DejaVuSans) to ``<config>/Ultralytics/Arial.ttf`` and
  ``Arial.Unicode.ttf`` (else Ultralytics asks GitHub for its font when it draws anything);
- turns off every logger integration of Ultralytics (MLflow, W&B, TensorBoard, ClearML, Comet, DVC,
  Ray Tune) and its analytics ``sync``: the runner logs to MLflow itself, and two MLflow writers on
  one run would clash. Only settings keys the installed version knows are touched, and only when
  they differ (the settings file is shared by every process that uses the config folder).

When Ultralytics was already imported by someone else before this ran, the module-level ``ONLINE``
and ``AUTOINSTALL`` flags are forced off as a best effort.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path

_lock = threading.Lock()
_done = False

FONT_NAMES = ("Arial.ttf", "Arial.Unicode.ttf")
DISABLED_SETTINGS = ("mlflow", "wandb", "tensorboard", "clearml", "comet", "dvc", "neptune", "raytune", "hub", "sync")


def _writable_dir(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        return True
    except OSError:
        return False


def default_config_dir() -> Path:
    """Where ``YOLO_CONFIG_DIR`` points when the environment does not choose."""
    env = os.environ.get("VTA_ULTRALYTICS_CONFIG_DIR")
    if env:
        return Path(env).expanduser()
    home_cache = (
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vision-training-agent" / "ultralytics"
    )
    if _writable_dir(home_cache):
        return home_cache
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"vta-ultralytics-{uid}"


def find_ttf() -> Path | None:
    """A TTF font on this machine: matplotlib's bundled DejaVuSans first (Ultralytics depends on
    matplotlib), then common system locations."""
    candidates: list[Path] = []
    with contextlib.suppress(Exception):
        import matplotlib

        candidates.append(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf")
    candidates += [
        Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
        Path("/usr/share/fonts/dejavu/DejaVuSans.ttf"),
    ]
    for c in candidates:
        if c.is_file():
            return c
    return None


def install_fonts(user_dir: Path) -> None:
    """Put ``Arial.ttf`` / ``Arial.Unicode.ttf`` into Ultralytics' user folder (atomic copies)."""
    user_dir.mkdir(parents=True, exist_ok=True)
    src: Path | None = None
    for name in FONT_NAMES:
        dest = user_dir / name
        if dest.is_file() and dest.stat().st_size > 0:
            continue
        src = src or find_ttf()
        if src is None:
            return  # nothing to copy; Ultralytics only needs the font for plots, which we turn off
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=user_dir)
        os.close(fd)
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, dest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def _disable_integrations() -> None:
    from ultralytics.utils import SETTINGS

    changes = {k: False for k in DISABLED_SETTINGS if k in SETTINGS and SETTINGS[k] is not False}
    if changes:
        SETTINGS.update(changes)


def _force_offline_flags() -> None:
    for mod_name in ("ultralytics.utils", "ultralytics.utils.checks", "ultralytics.utils.events"):
        mod = sys.modules.get(mod_name)
        if mod is None:
            continue
        for flag in ("ONLINE", "AUTOINSTALL"):
            if hasattr(mod, flag):
                setattr(mod, flag, False)


def prepare_ultralytics() -> Path:
    """Set up the offline environment (see the module doc) and import Ultralytics once.

    Returns Ultralytics' user config folder (``<YOLO_CONFIG_DIR>/Ultralytics``).
    """
    global _done
    with _lock:
        already_imported = "ultralytics" in sys.modules
        if not _done:
            os.environ.setdefault("YOLO_OFFLINE", "1")
            os.environ.setdefault("YOLO_AUTOINSTALL", "false")
            if not os.environ.get("YOLO_CONFIG_DIR"):
                cfg = default_config_dir()
                cfg.mkdir(parents=True, exist_ok=True)
                os.environ["YOLO_CONFIG_DIR"] = str(cfg)
        import ultralytics  # noqa: F401  (after the environment is set)
        from ultralytics.utils import USER_CONFIG_DIR

        user_dir = Path(USER_CONFIG_DIR)
        if not _done:
            install_fonts(user_dir)
            if already_imported:
                _force_offline_flags()
            _disable_integrations()
            _done = True
        return user_dir
