"""`vision-agent weights ...` and `vision-agent users ...`: the pretrained weights registry and
administrators, on the server's database and internal store.

    vision-agent weights list [--data-dir D]
    vision-agent weights import FILE --model NAME [--framework F] [--pretraining P] [--license L]
                                [--config CONFIG.json] [--replace] [--data-dir D]
    vision-agent weights pull NAME [--framework F] [--replace] [--data-dir D]
    vision-agent users promote EMAIL [--revoke] [--data-dir D]

``import`` checks the file without torch (safetensors header, or a PyTorch checkpoint's zip and
pickle) and stores it under ``weights/{framework}/{name}/`` (transformers: a folder with
config.json + model.safetensors, or --config). ``pull`` downloads the model's weights from its
framework's source (Hugging Face hub through HF_ENDPOINT; Ultralytics release assets at
ULTRALYTICS_ASSETS_URL) with the WEIGHTS_DOWNLOAD_* timeouts, and imports them. The database is
DATABASE_URL, else the SQLite file under VTA_DATA_DIR / --data-dir (migrated first).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from tools.services import WeightsPolicy
    from trainer_runtime.storage import DualStorageClient


def build_parser(prog: str = "vision-agent weights") -> argparse.ArgumentParser:
    """The `vision-agent weights` command line: list, import or pull registry weights."""
    parser = argparse.ArgumentParser(prog=prog, description="The pretrained weights registry.")
    parser.add_argument("--data-dir", type=Path, default=None, help="the server's data folder (over VTA_DATA_DIR)")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("list", help="list the registry (JSON lines)")
    imp = sub.add_parser("import", help="add a weights file (or a transformers folder) for a catalog model")
    imp.add_argument("file", type=Path, help=".safetensors / .pt / .pth / .bin, or a folder with config.json")
    imp.add_argument("--model", required=True, help="the catalog model, e.g. resnet50, yolo11n, microsoft/resnet-50")
    imp.add_argument("--framework", default=None, choices=["timm", "transformers", "ultralytics"])
    imp.add_argument("--pretraining", default="", help='what it was trained on, e.g. "ImageNet-1k", "COCO"')
    imp.add_argument("--license", default="", help="license note, e.g. apache-2.0")
    imp.add_argument("--config", type=Path, default=None, help="transformers: the model's config.json")
    imp.add_argument("--replace", action="store_true", help="replace the model's entry if there is one")
    pull = sub.add_parser("pull", help="download a catalog model's weights from its framework's source")
    pull.add_argument("model", help="the catalog model, e.g. resnet18")
    pull.add_argument("--framework", default=None, choices=["timm", "transformers", "ultralytics"])
    pull.add_argument("--replace", action="store_true", help="replace the model's entry if there is one")
    return parser


def build_users_parser(prog: str = "vision-agent users") -> argparse.ArgumentParser:
    """The `vision-agent users` command line: promote a user to administrator (or `--revoke` it)."""
    parser = argparse.ArgumentParser(prog=prog, description="Administrators.")
    parser.add_argument("--data-dir", type=Path, default=None, help="the server's data folder (over VTA_DATA_DIR)")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    promote = sub.add_parser("promote", help="make a user an administrator (may upload weights)")
    promote.add_argument("email")
    promote.add_argument("--revoke", action="store_true", help="take the administrator role away instead")
    return parser


def _pull(
    db: Session, storage: DualStorageClient, args: argparse.Namespace, settings_policy: WeightsPolicy
) -> dict[str, Any]:
    from dataclasses import replace

    from tools import catalog
    from tools import weights as weights_tools
    from tools.errors import InvalidInputError
    from trainer_runtime.weights import default_source, fetch

    info = catalog.resolve_model(args.model, args.framework)
    policy = replace(settings_policy, download="on")
    plan = weights_tools.plan_for(db, info.framework, info.name, policy)
    if plan.source == "registry" and not args.replace:
        raise InvalidInputError(f"the registry already has {info.framework} {info.name} ({plan.detail})")
    if plan.source == "registry":
        plan = weights_tools.plan_for(db, info.framework, info.name, policy, registry=False)
    if plan.source == "scratch":
        raise InvalidInputError(f"no source of pretrained weights is known for {info.framework} {info.name}")
    plan = plan.model_copy(update={"cache_key": None})
    with tempfile.TemporaryDirectory() as tmp:
        got = fetch(plan, storage, Path(tmp), log=lambda m, _lvl: print(m, file=sys.stderr))
        assert got.path is not None
        source = f"hub:{plan.hub_repo}" if plan.source == "hub" else f"url:{plan.asset_url}"
        default = default_source(info.framework, info.name)
        return weights_tools.import_weights(
            db,
            storage,
            got.path.parent if info.framework == "transformers" else got.path,
            model=info.name,
            framework=info.framework,
            pretraining=plan.pretraining or "",
            license=default.license if default else "",
            source=source,
            detail=plan.detail,
            replace=args.replace,
        )


def main(argv: Sequence[str] | None = None, prog: str = "vision-agent weights") -> int:
    """Run a `weights` or `users` action (which one `prog` says) against the server's database and
    storage, printing JSON. Returns 1 when the action fails, else 0."""
    users = prog.endswith("users")
    parser = build_users_parser(prog) if users else build_parser(prog)
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    from tools import weights as weights_tools
    from tools.db import create_engine_for_url, make_session_factory, migrate
    from tools.errors import ToolError
    from trainer_runtime.storage import DualStorageClient
    from trainer_runtime.weights import WeightsError
    from web.config import load_settings
    from web.main import weights_policy_from_settings

    settings = load_settings(args.data_dir)
    policy = weights_policy_from_settings(settings)
    engine = create_engine_for_url(settings.resolved_database_url)
    try:
        migrate(engine)
        storage = DualStorageClient.from_config(settings.storage)
        with make_session_factory(engine)() as db:
            try:
                if users:
                    print(json.dumps(weights_tools.set_admin(db, args.email, not args.revoke)))
                elif args.action == "list":
                    for item in weights_tools.list_weights(db):
                        print(json.dumps(item))
                elif args.action == "import":
                    out = weights_tools.import_weights(
                        db,
                        storage,
                        args.file,
                        model=args.model,
                        framework=args.framework,
                        pretraining=args.pretraining,
                        license=args.license,
                        source=f"import:{args.file.name}",
                        config=args.config,
                        replace=args.replace,
                    )
                    print(json.dumps(out))
                else:
                    print(json.dumps(_pull(db, storage, args, policy)))
            except (ToolError, WeightsError) as exc:
                print(f"error: {getattr(exc, 'message', None) or exc}", file=sys.stderr)
                return 1
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
