"""Hugging Face transformers: image classification (ViT, ResNet) and object detection (DETR).

Loop choice: our own epoch loop (`_torch_loop.EpochLoop`, shared with timm) around the
transformers model, not ``transformers.Trainer``. Reasons: Trainer needs ``accelerate`` (not part
of the per-framework venv), it checkpoints into directories of separate files (optimizer, scheduler,
rng) that would have to be kept beside last.pt, and it can only stop at its own step boundaries
after its callback returns. With the shared loop, stop/resume/best/last/patience behave exactly
as for timm, and last.pt is one self-contained file. transformers' own mechanics are used where
they fit: models built from their configs (``AutoModelForImageClassification.from_config``,
``DetrForObjectDetection(config)``), the model's own losses (DETR's Hungarian-matched loss),
``transformers.get_scheduler`` for cosine / linear / constant schedules.

Models (the adapter never reaches the hub: HF_HUB_OFFLINE=1 and TRANSFORMERS_OFFLINE=1 are set
first; pretrained weights the runner fetched, `TrainContext.pretrained`, are a local folder):
- ``google/vit-base-patch16-224``: ``ViTConfig()`` (ViT-Base/16), ``image_size`` = the training size;
- ``microsoft/resnet-50``: ``ResNetConfig()`` (bottleneck ResNet-50);
- ``facebook/detr-resnet-50``: ``DetrConfig()`` — the real architecture: ResNet-50 backbone (timm's
  ``resnet50`` through transformers' timm backbone, ``use_pretrained_backbone=False``, as the hub
  checkpoint does; transformers' own ResNet backbone when timm is not installed or
  ``detr_backbone="transformers"``), 6+6 transformer layers, 100 queries.
``model_config`` (a dict in the advanced settings) overrides config fields, e.g.
``{"num_queries": 20}``; the model name stays the same. Only the architecture fields of
`hf_model_config` are accepted, with their types and ranges (never loader options such as
``trust_remote_code``): checked by `resolve_config` and `validate_spec` (at job creation and in the
trainer) and again in `build_model`. Image sizes are limited per model (`_MAX_IMAGE_SIZE`: ViT
1024, ResNet-50 2048, DETR 1333, the usual longest side of DETR). Pretrained weights: the folder
of `TrainContext.pretrained` (registry or hub: ``config.json`` + ``model.safetensors``), else a folder
``$VTA_WEIGHTS_DIR/<hub id with / -> __>/`` (``config.json`` + weights), is loaded with
``from_pretrained(local_path)`` (classifier resized to the dataset's classes); a hub id that the
catalog does not know is accepted only when such a folder exists.

DETR data: images resized to ``image_size`` x ``image_size`` (boxes are normalised ``cxcywh``, so
they survive the resize), ImageNet normalisation, an all-ones pixel mask; boxes come from DICE
``bbox`` or the box around a polygon / rotated box / keypoints (contract 3 conversions). Validation
post-processes like ``DetrImageProcessor.post_process_object_detection`` (softmax without the
no-object class, boxes scaled back to the original image) and computes COCO-style
val/mAP50 / val/mAP50-95 with `trainer_runtime.metrics`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from trainer_runtime.adapters import _detr_data as detr_data
from trainer_runtime.adapters import _torch_data as data
from trainer_runtime.adapters import _torch_loop as loop
from trainer_runtime.adapters import init_weights, pretrained
from trainer_runtime.adapters._torch_adapter import TorchAdapter
from trainer_runtime.adapters.base import ConfigError, ConfigField, ModelInfo, TrainContext
from trainer_runtime.adapters.hf_model_config import check_model_config, family_of
from trainer_runtime.formats.schema import IMAGE_CLASSIFICATION as CLS
from trainer_runtime.formats.schema import OBJECT_DETECTION as DET
from trainer_runtime.spec import TRANSFORMERS, JobSpec
from trainer_runtime.weights import ResolvedWeights, local_weights_dir

_MODELS: tuple[tuple[str, str, str, float, int], ...] = (
    ("google/vit-base-patch16-224", CLS, "ViT-Base/16 (Hugging Face), built from ViTConfig", 86.6, 224),
    ("microsoft/resnet-50", CLS, "ResNet-50 (Hugging Face), built from ResNetConfig", 25.6, 224),
    ("facebook/detr-resnet-50", DET, "DETR with a ResNet-50 backbone: end-to-end transformer detector", 41.5, 512),
)
_MAX_IMAGE_SIZE = {"google/vit-base-patch16-224": 1024, "microsoft/resnet-50": 2048, "facebook/detr-resnet-50": 1333}

_OPTIMIZERS = ("adamw", "adam", "sgd")
_SCHEDULERS = ("cosine", "linear", "constant", "step", "plateau")

_SCHEMA: tuple[ConfigField, ...] = (
    ConfigField("optimizer", "select", "adamw", "torch.optim optimizer", _OPTIMIZERS),
    ConfigField(
        "learning_rate",
        "float",
        5e-5,
        "base learning rate (DETR: transformer; backbone uses backbone_lr_factor)",
        minimum=0.0,
    ),
    ConfigField("weight_decay", "float", 1e-4, "weight decay", minimum=0.0),
    ConfigField("momentum", "float", 0.9, "sgd momentum", minimum=0.0, maximum=1.0),
    ConfigField(
        "lr_scheduler_type",
        "select",
        "cosine",
        "cosine / linear / constant (transformers.get_scheduler, per step); step / plateau (per epoch)",
        _SCHEDULERS,
    ),
    ConfigField(
        "warmup_epochs", "float", 0.0, "linear warm-up length in epochs (cosine / linear / constant)", minimum=0.0
    ),
    ConfigField("label_smoothing_factor", "float", 0.0, "label smoothing (classification)", minimum=0.0, maximum=0.5),
    ConfigField("mixup_alpha", "float", 0.0, "mixup alpha (classification; 0: off)", minimum=0.0),
    ConfigField("cutmix_alpha", "float", 0.0, "cutmix alpha (classification; 0: off)", minimum=0.0),
    ConfigField("max_grad_norm", "float", 1.0, "gradient clipping norm (0: off; DETR usually 0.1)", minimum=0.0),
    ConfigField("backbone_lr_factor", "float", 0.1, "DETR: backbone learning rate = learning_rate x this", minimum=0.0),
    ConfigField("freeze_backbone", "bool", False, "classification: " + pretrained.FREEZE_FIELD_HELP),
    ConfigField(
        "backbone_lr_mult", "float", 1.0, "classification: " + pretrained.LR_MULT_HELP, minimum=0.0, maximum=1.0
    ),
    ConfigField("hflip", "float", 0.5, "horizontal flip probability", minimum=0.0, maximum=1.0),
    ConfigField("amp", "bool", True, "mixed precision on CUDA (ignored on CPU)"),
    ConfigField(
        "patience",
        "int",
        0,
        "early stop after this many epochs without improvement of the primary metric (0: off)",
        minimum=0,
    ),
    ConfigField(
        "detr_backbone",
        "select",
        "auto",
        "DETR backbone implementation: timm resnet50 (as the hub checkpoint), transformers ResNet, or auto",
        ("auto", "timm", "transformers"),
    ),
    ConfigField("model_config", "dict", None, 'overrides of the model config fields, e.g. {"num_queries": 20}'),
)

_PRESETS: dict[str, dict[str, Any]] = {
    "easy": {
        "optimizer": "adam",
        "learning_rate": 1e-4,
        "lr_scheduler_type": "constant",
        "warmup_epochs": 0.0,
        "mixup_alpha": 0.0,
        "cutmix_alpha": 0.0,
        "label_smoothing_factor": 0.0,
    },
    "medium": {
        "optimizer": "adamw",
        "learning_rate": 1e-4,
        "lr_scheduler_type": "cosine",
        "warmup_epochs": 1.0,
        "mixup_alpha": 0.2,
        "cutmix_alpha": 0.0,
        "label_smoothing_factor": 0.1,
    },
    "advanced": {
        "optimizer": "adamw",
        "learning_rate": 5e-5,
        "lr_scheduler_type": "cosine",
        "warmup_epochs": 2.0,
        "mixup_alpha": 0.8,
        "cutmix_alpha": 1.0,
        "label_smoothing_factor": 0.1,
        "patience": 10,
    },
}

_OPT_MAP = {"adam": "adam", "adamw": "adamw", "sgd": "sgd"}
_SCHED_MAP = {"cosine": "cosine", "linear": "linear", "step": "step", "plateau": "plateau"}


def local_model_dir(model_name: str) -> Path | None:
    """``$VTA_WEIGHTS_DIR/<hub id with / -> __>/`` when it holds a config.json."""
    root = local_weights_dir()
    if root is None:
        return None
    p = root / model_name.replace("/", "__")
    return p if (p / "config.json").is_file() else None


class TransformersAdapter(TorchAdapter):
    """Image classification and object detection (DETR) with Hugging Face transformers models, trained by
    the shared torch loop."""

    framework: ClassVar[str] = TRANSFORMERS
    tasks: ClassVar[tuple[str, ...]] = (CLS, DET)
    primary_metric: ClassVar[dict[str, str]] = {CLS: "val/accuracy_top1", DET: "val/mAP50-95"}
    catalog: ClassVar[tuple[ModelInfo, ...]] = tuple(
        ModelInfo(
            name=n,
            framework=TRANSFORMERS,
            task_type=t,
            description=d,
            params_m=p,
            default_image_size=s,
            max_image_size=_MAX_IMAGE_SIZE[n],
        )
        for n, t, d, p, s in _MODELS
    )
    schema = _SCHEMA
    preset_values = _PRESETS
    aliases: ClassVar[Mapping[str, str]] = {"lr": "learning_rate"}

    canonical_names: ClassVar[Mapping[str, str]] = {
        "scheduler": "lr_scheduler_type",
        "label_smoothing": "label_smoothing_factor",
    }
    optimizers = _OPT_MAP
    schedulers = _SCHED_MAP

    @classmethod
    def map_canonical(cls, key: str, value: Any) -> dict[str, Any]:
        """As `TorchAdapter.map_canonical`, with a clearer answer for rmsprop, which timm offers."""
        if key == "optimizer" and isinstance(value, str) and value.strip().lower() == "rmsprop":
            raise ConfigError("optimizer 'rmsprop' is not offered for transformers models; use adamw, adam or sgd")
        return super().map_canonical(key, value)

    @classmethod
    def extra_model_ok(cls, name: str) -> bool:
        return local_model_dir(name) is not None

    @classmethod
    def resolve_config(
        cls, preset: str | None, advanced_config: dict[str, Any], hyperparameters: dict[str, Any]
    ) -> dict[str, Any]:
        resolved = super().resolve_config(preset, advanced_config, hyperparameters)
        # the model is not known here: every architecture's fields (validate_spec narrows it down)
        resolved["model_config"] = check_model_config(resolved.get("model_config")) or None
        return resolved

    @classmethod
    def validate_spec(cls, spec: JobSpec, dataset_summary: dict[str, Any]) -> None:
        cls.check_framework(spec)
        if spec.task_type not in cls.tasks:
            raise ConfigError(f"transformers here trains {', '.join(cls.tasks)}, not {spec.task_type}")
        super().validate_spec(spec, dataset_summary)
        model_model_config(spec.model_name, spec.task_type, spec.hyperparameters.advanced_config.get("model_config"))

    def make_loop(self, ctx: TrainContext) -> loop.EpochLoop:
        return _HFClassificationLoop(ctx) if ctx.spec.task_type == CLS else _DetrLoop(ctx)

    @classmethod
    def model_from_checkpoint(cls, ckpt: Mapping[str, Any]) -> Any:
        return _model_from_hf_config(ckpt["hf_config"], ckpt["task_type"])


# ---------------------------------------------------------------------------------- models


def model_model_config(model_name: str, task: str, value: Any, local: Path | None = None) -> dict[str, Any]:
    """`value` (a ``model_config``) checked against the allow-list of `model_name`'s architecture
    (`hf_model_config`); ConfigError naming the key that is not allowed or out of range."""
    if not value:
        return check_model_config(value)
    family = family_of(model_name, task, local if local is not None else local_model_dir(model_name))
    if family is None:
        raise ConfigError(f"model_config is not supported for {model_name} (its architecture is not known here)")
    return check_model_config(value, family, model_name)


def _model_from_hf_config(hf_config: Mapping[str, Any], task: str) -> Any:
    from transformers import AutoConfig, AutoModelForImageClassification, DetrForObjectDetection

    d = dict(hf_config)
    config = AutoConfig.for_model(d.pop("model_type"), **d)
    if task == DET:
        return DetrForObjectDetection(config)  # type: ignore[arg-type]  # AutoConfig built a DetrConfig
    return AutoModelForImageClassification.from_config(config)


def _labels(class_names: list[str]) -> dict[str, Any]:
    return {
        "num_labels": len(class_names),
        "id2label": dict(enumerate(class_names)),
        "label2id": {n: i for i, n in enumerate(class_names)},
    }


def _timm_available() -> bool:
    try:
        import timm  # noqa: F401
    except ImportError:
        return False
    return True


def build_model(
    model_name: str,
    task: str,
    class_names: list[str],
    image_size: int,
    cfg: Mapping[str, Any],
    weights: ResolvedWeights | None = None,
) -> tuple[Any, str]:
    """The model (fresh from its config, or from pretrained `weights`: a folder with config.json,
    or a local weights folder) and a line saying which."""
    local = weights.folder if weights is not None and weights.path is not None else local_model_dir(model_name)
    overrides = model_model_config(model_name, task, cfg.get("model_config"), local)  # (again: defence in depth)
    labels = _labels(class_names)
    if local is not None:
        from transformers import AutoModelForImageClassification, DetrForObjectDetection

        loader: Any = DetrForObjectDetection if task == DET else AutoModelForImageClassification
        model, info = loader.from_pretrained(
            str(local), ignore_mismatched_sizes=True, output_loading_info=True, **labels, **overrides
        )
        if weights is not None and weights.path is not None:
            lines: list[str] = []
            pretrained.report_transformers(info, model, weights, lines.append)
            return model, lines[0]
        return model, f"{model_name}: weights from {local}"
    if task == CLS:
        from transformers import AutoModelForImageClassification, ResNetConfig, ViTConfig

        if model_name == "google/vit-base-patch16-224":
            config: Any = ViTConfig(image_size=image_size, **labels)
        elif model_name == "microsoft/resnet-50":
            config = ResNetConfig(**labels)
        else:
            raise ConfigError(f"no architecture known for {model_name!r}")
        for k, v in overrides.items():
            setattr(config, k, v)
        model = AutoModelForImageClassification.from_config(config)
        return model, f"{model_name} built from {type(config).__name__} (no pretrained weights), trained from scratch"
    if model_name != "facebook/detr-resnet-50":
        raise ConfigError(f"no architecture known for {model_name!r}")
    from transformers import DetrConfig, DetrForObjectDetection

    backbone = str(cfg.get("detr_backbone") or "auto")
    if backbone == "auto":
        backbone = "timm" if _timm_available() else "transformers"
    kwargs: dict[str, Any] = {**labels}
    if backbone == "transformers":
        from transformers import ResNetConfig

        stages: dict[str, Any] = {"out_features": ["stage1", "stage2", "stage3", "stage4"]}
        kwargs["backbone_config"] = ResNetConfig(**stages)
    elif not _timm_available():
        raise ConfigError("detr_backbone 'timm' needs the timm package; use detr_backbone 'transformers'")
    config = DetrConfig(**kwargs, **overrides)
    model = DetrForObjectDetection(config)
    return model, (
        f"{model_name} built from DetrConfig ({backbone} ResNet-50 backbone, no pretrained weights,"
        f" {config.num_queries} queries), trained from scratch"
    )


def _hf_config_dict(model: Any) -> dict[str, Any]:
    d = model.config.to_dict()
    d.pop("transformers_version", None)
    plain: dict[str, Any] = _plain(d)
    return plain


def _plain(v: Any) -> Any:
    """A JSON-like copy (checkpoints load with weights_only=True: no custom classes)."""
    if isinstance(v, Mapping):
        return {str(k) if not isinstance(k, int) else k: _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if v is None or isinstance(v, bool | int | float | str):
        return v
    return str(v)


# ----------------------------------------------------------------------------- optimisation


class _HFLoopMixin(loop.EpochLoop):
    cfg: Mapping[str, Any]
    per_step_scheduler: bool = False

    def make_optimizer(self, params: Any) -> Any:
        import torch

        cfg = self.cfg
        lr = float(cfg["learning_rate"])
        wd = float(cfg["weight_decay"])
        name = str(cfg["optimizer"])
        if name == "sgd":
            return torch.optim.SGD(params, lr=lr, momentum=float(cfg["momentum"]), weight_decay=wd)
        if name == "adam":
            return torch.optim.Adam(params, lr=lr, weight_decay=wd)
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)

    def make_scheduler(self, steps_per_epoch: int) -> Any:
        import torch

        name = str(self.cfg["lr_scheduler_type"])
        epochs = self.meta.epochs
        if name == "step":
            return torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=max(1, epochs // 3), gamma=0.1)
        if name == "plateau":
            mode: Literal["min", "max"] = "min" if self.meta.mode == "min" else "max"
            return torch.optim.lr_scheduler.ReduceLROnPlateau(self.optimizer, mode=mode, factor=0.1, patience=2)
        from transformers import get_scheduler

        self.per_step_scheduler = True
        warmup = round(float(self.cfg["warmup_epochs"]) * steps_per_epoch)
        hf_name = "constant_with_warmup" if name == "constant" else name
        return get_scheduler(
            hf_name, self.optimizer, num_warmup_steps=warmup, num_training_steps=max(1, epochs * steps_per_epoch)
        )

    def step_batch_scheduler(self) -> None:
        if self.per_step_scheduler and self.scheduler is not None:
            self.scheduler.step()

    def end_of_epoch(self, _epoch: int, metrics: Mapping[str, float]) -> None:
        import torch

        if self.scheduler is None or self.per_step_scheduler:
            return
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            value = metrics.get(self.meta.primary_metric)
            if value is not None:
                self.scheduler.step(value)
        else:
            self.scheduler.step()


# --------------------------------------------------------------------------- classification


class _HFClassificationLoop(_HFLoopMixin):
    def __init__(self, ctx: TrainContext) -> None:
        spec = ctx.spec
        hp = spec.hyperparameters
        self.data = data.build_classification_data(ctx.dataset, hp.val_fraction, hp.seed)
        image_size = int(hp.image_size or 224)
        super().__init__(
            ctx,
            loop.LoopMeta(
                framework=TRANSFORMERS,
                task_type=CLS,
                model_name=spec.model_name,
                class_names=self.data.class_names,
                image_size=image_size,
                epochs=hp.epochs,
                primary_metric="val/accuracy_top1",
                patience=int(ctx.config.get("patience") or 0),
            ),
        )
        self.cfg = ctx.config
        self.num_classes = len(self.data.class_names)
        self.batch_size = int(hp.batch_size or 16)

    def setup(self) -> None:
        import torch
        from torchvision import transforms as T

        cfg, ctx = self.cfg, self.ctx
        size = self.meta.image_size
        self.log(self.data.split.report.get("message", "split done"))
        if self.data.converted:
            self.log(f"{self.data.converted} images labeled by their dominant class")
        if self.data.val_is_train:
            self.log("no image could be held out for validation: validating on the training images", "warning")
        model, how = build_model(self.meta.model_name, CLS, self.data.class_names, size, cfg, ctx.pretrained)
        if init_weights.init_source(ctx) is not None:  # fine-tuning: its own log line follows
            how = how.replace(", trained from scratch", "")
        self.log(how)
        vit_like = getattr(model.config, "model_type", "") in ("vit", "deit")
        mean, std = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)) if vit_like else (data.IMAGENET_MEAN, data.IMAGENET_STD)
        train_tf = T.Compose(
            [T.Resize((size, size)), T.RandomHorizontalFlip(float(cfg["hflip"])), T.ToTensor(), T.Normalize(mean, std)]
        )
        eval_tf = T.Compose([T.Resize((size, size)), T.ToTensor(), T.Normalize(mean, std)])
        workers = int(ctx.spec.hyperparameters.workers)
        pin = self.device.type == "cuda"
        train_ds = data.ImageListDataset(ctx.dataset_dir, self.data.train, train_tf)
        drop_last = len(train_ds) > self.batch_size and len(train_ds) % self.batch_size == 1
        self.train_loader = data.seeded_loader(
            train_ds,
            batch_size=self.batch_size,
            shuffle=True,
            seed=self.seed,
            workers=workers,
            drop_last=drop_last,
            pin_memory=pin,
        )
        self.val_loader = data.seeded_loader(
            data.ImageListDataset(ctx.dataset_dir, self.data.val, eval_tf),
            batch_size=self.batch_size,
            shuffle=False,
            seed=self.seed,
            workers=workers,
            pin_memory=pin,
        )
        init_weights.init_torch_model(ctx, model, self.log, list(self.meta.class_names))
        self.model = model.to(self.device)
        self.meta.extra["hf_config"] = _hf_config_dict(model)
        params = pretrained.backbone_params(
            self.model,
            ("classifier",),
            freeze=bool(cfg["freeze_backbone"]),
            lr_mult=float(cfg["backbone_lr_mult"]),
            lr=float(cfg["learning_rate"]),
            log=self.log,
        )
        self.optimizer = self.make_optimizer(params.parameters() if params is self.model else params)
        self.scheduler = self.make_scheduler(len(self.train_loader))
        self.scaler = self.make_scaler()
        self.smoothing = float(cfg["label_smoothing_factor"])
        self.mixup_alpha = float(cfg["mixup_alpha"])
        self.cutmix_alpha = float(cfg["cutmix_alpha"])
        self.loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=self.smoothing)
        self.clip = float(cfg["max_grad_norm"]) or None

    def train_step(self, batch: Any) -> float:
        import torch

        x, y = batch
        x = x.to(self.device, non_blocking=True)
        y = y.to(self.device, non_blocking=True)
        target: Any = y
        if (self.mixup_alpha > 0 or self.cutmix_alpha > 0) and x.shape[0] > 1:
            x, target = data.simple_mixup(
                x,
                y,
                self.num_classes,
                mixup_alpha=self.mixup_alpha,
                cutmix_alpha=self.cutmix_alpha,
                smoothing=self.smoothing,
            )
        with self.autocast():
            logits = self.model(pixel_values=x).logits
            if target.dtype == torch.long:
                loss = self.loss_fn(logits.float(), target)
            else:
                loss = torch.sum(-target * torch.log_softmax(logits.float(), dim=-1), dim=-1).mean()
        self.backward_step(loss, clip_grad=self.clip)
        self.step_batch_scheduler()
        return float(loss.detach())

    def validate(self) -> dict[str, float]:
        import torch

        self.model.eval()
        logits: list[Any] = []
        targets: list[Any] = []
        loss_sum = 0.0
        ce = torch.nn.CrossEntropyLoss(reduction="sum")
        for x, y in self.val_loader:
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            with self.autocast():
                out = self.model(pixel_values=x).logits
            out = out.float()
            loss_sum += float(ce(out, y))
            logits.append(out.cpu())
            targets.append(y.cpu())
        n = sum(len(t) for t in targets)
        if n == 0:
            return {"val/loss": float("nan"), "val/accuracy_top1": 0.0, "val/accuracy_top5": 0.0}
        return loop.classification_metrics(torch.cat(logits).numpy(), torch.cat(targets).numpy(), loss_sum / n)


# -------------------------------------------------------------------------------- detection


class _DetrLoop(_HFLoopMixin):
    def __init__(self, ctx: TrainContext) -> None:
        spec = ctx.spec
        hp = spec.hyperparameters
        self.class_names, self.train_items, self.val_items, self.split_msg = detr_data.build_detection_items(ctx)
        super().__init__(
            ctx,
            loop.LoopMeta(
                framework=TRANSFORMERS,
                task_type=DET,
                model_name=spec.model_name,
                class_names=self.class_names,
                image_size=int(hp.image_size or 512),
                epochs=hp.epochs,
                primary_metric="val/mAP50-95",
                patience=int(ctx.config.get("patience") or 0),
            ),
        )
        self.cfg = ctx.config
        self.batch_size = int(hp.batch_size or 4)

    def setup(self) -> None:
        cfg, ctx = self.cfg, self.ctx
        size = self.meta.image_size
        self.log(self.split_msg)
        if ctx.conversion:
            self.log(f"boxes derived from the annotations ({ctx.conversion})")
        model, how = build_model(self.meta.model_name, DET, self.class_names, size, cfg, ctx.pretrained)
        if init_weights.init_source(ctx) is not None:  # fine-tuning: its own log line follows
            how = how.replace(", trained from scratch", "")
        self.log(how)
        workers = int(ctx.spec.hyperparameters.workers)
        pin = self.device.type == "cuda"
        self.train_loader = data.seeded_loader(
            detr_data.DetrDataset(ctx.dataset_dir, self.train_items, size, float(cfg["hflip"]), True),
            batch_size=self.batch_size,
            shuffle=True,
            seed=self.seed,
            workers=workers,
            collate_fn=detr_data.detr_collate,
            pin_memory=pin,
        )
        self.val_loader = data.seeded_loader(
            detr_data.DetrDataset(ctx.dataset_dir, self.val_items, size, 0.0, False),
            batch_size=self.batch_size,
            shuffle=False,
            seed=self.seed,
            workers=workers,
            collate_fn=detr_data.detr_collate,
            pin_memory=pin,
        )
        init_weights.init_torch_model(ctx, model, self.log, list(self.meta.class_names))
        self.model = model.to(self.device)
        self.meta.extra["hf_config"] = _hf_config_dict(model)
        lr = float(cfg["learning_rate"])
        backbone = [p for n, p in self.model.named_parameters() if "backbone" in n and p.requires_grad]
        rest = [p for n, p in self.model.named_parameters() if "backbone" not in n and p.requires_grad]
        groups = [{"params": rest, "lr": lr}]
        if backbone:
            groups.append({"params": backbone, "lr": lr * float(cfg["backbone_lr_factor"])})
        self.optimizer = self.make_optimizer(groups)
        self.scheduler = self.make_scheduler(len(self.train_loader))
        self.scaler = self.make_scaler()
        self.clip = float(cfg["max_grad_norm"]) or None

    def _targets(self, targets: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v.to(self.device) for k, v in t.items()} for t in targets]

    def train_step(self, batch: Any) -> float:
        x, targets, _ = batch
        x = x.to(self.device, non_blocking=True)
        with self.autocast():
            out = self.model(pixel_values=x, labels=self._targets(targets))
        loss = out.loss
        self.backward_step(loss, clip_grad=self.clip)
        self.step_batch_scheduler()
        return float(loss.detach())

    def validate(self) -> dict[str, float]:
        import torch

        from trainer_runtime.metrics import evaluate_detections

        self.model.eval()
        preds: list[dict[str, Any]] = []
        gts: list[dict[str, Any]] = []
        loss_sum, n_batches = 0.0, 0
        for x, targets, idx in self.val_loader:
            x = x.to(self.device, non_blocking=True)
            with self.autocast():
                out = self.model(pixel_values=x, labels=self._targets(targets))
            loss_sum += float(out.loss)
            n_batches += 1
            probs = out.logits.float().softmax(-1)[..., :-1]  # drop the no-object class
            scores, labels = probs.max(-1)
            boxes = out.pred_boxes.float()
            for k, i in enumerate(idx):
                it = self.val_items[i]
                cx, cy, w, h = boxes[k].unbind(-1)
                xyxy = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)
                xyxy = xyxy * torch.tensor([it.width, it.height, it.width, it.height], device=xyxy.device)
                preds.append(
                    {"boxes": xyxy.cpu().numpy(), "scores": scores[k].cpu().numpy(), "labels": labels[k].cpu().numpy()}
                )
                gts.append({"boxes": it.boxes, "labels": it.labels})
        result = evaluate_detections(
            preds, gts, class_ids=list(range(len(self.class_names))), class_names=dict(enumerate(self.class_names))
        )
        metrics = result.as_metrics("val/")
        metrics["val/loss"] = loss_sum / max(n_batches, 1)
        return metrics
