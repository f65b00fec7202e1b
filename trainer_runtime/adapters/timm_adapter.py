"""timm image classification: timm's own model, optimizer, scheduler, Mixup/CutMix, EMA factories
in our epoch loop (`_torch_loop.EpochLoop`).

Models are built with ``timm.create_model(name, pretrained=False, num_classes=N)`` (``img_size`` for
ViT/DeiT when the image size differs from 224): the adapter never downloads. Pretrained weights
the runner resolved (`TrainContext.pretrained`: registry or hub, `trainer_runtime.weights`) are
loaded by `pretrained.load_timm` (all but the classifier); else local weights are used when
``$VTA_WEIGHTS_DIR/<name>.safetensors`` (or ``.pth``/``.pt``/``.bin``) exists: loaded non-strictly,
tensors whose shape differs (the classifier, position embeddings of another size) are skipped.

Config (timm's train.py names): ``opt``, ``lr``, ``weight_decay``, ``momentum``, ``sched``,
``warmup_epochs``, ``min_lr``, ``decay_epochs``, ``decay_rate``, ``mixup_alpha``, ``cutmix_alpha``,
``mixup_prob``, ``smoothing``, ``model_ema``, ``model_ema_decay``, ``amp``, ``hflip``, ``scale_min``,
``drop_rate``, ``clip_grad``, ``patience``. Canonical advanced_config keys map onto them
(`TimmAdapter.map_canonical`); ``mosaic``/``copy_paste`` are rejected. Scheduler names: ``linear`` is timm's
``poly`` with power 1; ``step`` decays by ``decay_rate`` every ``decay_epochs`` (default a third
of the run); ``plateau`` is torch's ``ReduceLROnPlateau`` on val/accuracy_top1 (timm's plateau
scheduler keeps no checkpointable state; no warm-up with it). Schedulers step once per epoch.

Module import needs neither torch nor timm (catalog, schema and presets are plain data).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from trainer_runtime.adapters import _torch_checkpoints as checkpoints
from trainer_runtime.adapters import _torch_data as data
from trainer_runtime.adapters import _torch_loop as loop
from trainer_runtime.adapters import init_weights, pretrained
from trainer_runtime.adapters._torch_adapter import TorchAdapter
from trainer_runtime.adapters.base import ConfigField, ModelInfo, TrainContext
from trainer_runtime.formats.schema import IMAGE_CLASSIFICATION
from trainer_runtime.spec import TIMM

TASK = IMAGE_CLASSIFICATION
PRIMARY = "val/accuracy_top1"

_MODELS: tuple[tuple[str, str, float, int], ...] = (
    ("resnet18", "ResNet-18: small, fast residual CNN; a good first baseline", 11.7, 224),
    ("resnet34", "ResNet-34: a deeper basic-block ResNet", 21.8, 224),
    ("resnet50", "ResNet-50: the classic bottleneck ResNet, strong all-round baseline", 25.6, 224),
    ("resnet101", "ResNet-101: deeper ResNet for larger datasets", 44.5, 224),
    ("resnet152", "ResNet-152: the deepest ResNet; slow, for large datasets", 60.2, 224),
    ("efficientnet_b0", "EfficientNet-B0: very efficient compound-scaled CNN", 5.3, 224),
    ("efficientnet_b1", "EfficientNet-B1: slightly larger EfficientNet (native 240 px)", 7.8, 240),
    ("efficientnet_b2", "EfficientNet-B2: larger EfficientNet (native 256 px)", 9.1, 256),
    ("efficientnet_b3", "EfficientNet-B3: larger EfficientNet (native 288 px)", 12.2, 288),
    ("mobilenetv3_large_100", "MobileNetV3-Large: tiny and fast, for CPUs and edge devices", 5.5, 224),
    ("convnext_tiny", "ConvNeXt-Tiny: modern CNN with transformer-style design", 28.6, 224),
    ("vit_small_patch16_224", "ViT-Small/16: vision transformer; needs data or pretrained weights", 22.1, 224),
    ("vit_base_patch16_224", "ViT-Base/16: the standard vision transformer", 86.6, 224),
    ("deit_small_patch16_224", "DeiT-Small/16: data-efficient vision transformer", 22.1, 224),
)
_VIT_PREFIXES = ("vit_", "deit_")
MAX_IMAGE_SIZE_CNN = 2048
MAX_IMAGE_SIZE_VIT = 1024  # (patch 16: 4096 tokens, quadratic attention)

_OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "lamb", "adabelief", "lion")
_SCHEDULERS = ("cosine", "step", "plateau", "linear", "constant", "none")

_SCHEMA: tuple[ConfigField, ...] = (
    ConfigField("opt", "select", "adamw", "optimizer (timm.optim.create_optimizer_v2)", _OPTIMIZERS),
    ConfigField("lr", "float", 1e-3, "base learning rate", minimum=0.0),
    ConfigField("weight_decay", "float", 0.05, "weight decay (not applied to biases and norms)", minimum=0.0),
    ConfigField("momentum", "float", 0.9, "momentum for sgd / rmsprop", minimum=0.0, maximum=1.0),
    ConfigField("sched", "select", "cosine", "learning-rate schedule, stepped per epoch", _SCHEDULERS),
    ConfigField("warmup_epochs", "int", 0, "epochs of linear warm-up from warmup_lr", minimum=0),
    ConfigField("min_lr", "float", 1e-6, "lowest learning rate of cosine / linear schedules", minimum=0.0),
    ConfigField(
        "decay_epochs", "float", 0.0, "step schedule: epochs between decays (0: a third of the run)", minimum=0.0
    ),
    ConfigField("decay_rate", "float", 0.1, "step / plateau schedule: lr multiplier at each decay", minimum=0.0),
    ConfigField("mixup_alpha", "float", 0.0, "mixup alpha (0: off); timm.data.Mixup", minimum=0.0),
    ConfigField("cutmix_alpha", "float", 0.0, "cutmix alpha (0: off); timm.data.Mixup", minimum=0.0),
    ConfigField(
        "mixup_prob", "float", 1.0, "probability of mixing a batch when mixup/cutmix is on", minimum=0.0, maximum=1.0
    ),
    ConfigField("smoothing", "float", 0.0, "label smoothing", minimum=0.0, maximum=0.5),
    ConfigField(
        "model_ema",
        "bool",
        False,
        "keep an exponential moving average of the weights (ModelEmaV3); it is validated and saved as best",
    ),
    ConfigField("model_ema_decay", "float", 0.998, "EMA decay", minimum=0.0, maximum=1.0),
    ConfigField("amp", "bool", True, "mixed precision on CUDA (ignored on CPU)"),
    ConfigField("hflip", "float", 0.5, "horizontal flip probability", minimum=0.0, maximum=1.0),
    ConfigField(
        "scale_min",
        "float",
        0.5,
        "random-resized-crop: smallest area fraction (1.0: plain resize)",
        minimum=0.05,
        maximum=1.0,
    ),
    ConfigField("drop_rate", "float", 0.0, "dropout before the classifier", minimum=0.0, maximum=0.9),
    ConfigField("clip_grad", "float", 0.0, "clip the gradient norm (0: off)", minimum=0.0),
    ConfigField(
        "patience", "int", 0, "early stop after this many epochs without a better val/accuracy_top1 (0: off)", minimum=0
    ),
    ConfigField("freeze_backbone", "bool", False, pretrained.FREEZE_FIELD_HELP),
    ConfigField("backbone_lr_mult", "float", 1.0, pretrained.LR_MULT_HELP, minimum=0.0, maximum=1.0),
)

_PRESETS: dict[str, dict[str, Any]] = {
    "easy": {
        "opt": "adam",
        "lr": 1e-3,
        "weight_decay": 0.0,
        "sched": "cosine",
        "mixup_alpha": 0.0,
        "cutmix_alpha": 0.0,
        "smoothing": 0.0,
        "model_ema": False,
        "warmup_epochs": 0,
    },
    "medium": {
        "opt": "adamw",
        "lr": 1e-3,
        "weight_decay": 0.05,
        "sched": "cosine",
        "mixup_alpha": 0.2,
        "cutmix_alpha": 0.0,
        "smoothing": 0.1,
        "model_ema": False,
        "warmup_epochs": 1,
    },
    "advanced": {
        "opt": "adamw",
        "lr": 5e-4,
        "weight_decay": 0.05,
        "sched": "cosine",
        "mixup_alpha": 0.8,
        "cutmix_alpha": 1.0,
        "smoothing": 0.1,
        "model_ema": True,
        "warmup_epochs": 2,
        "patience": 10,
    },
}

_OPT_MAP = {"adam": "adam", "adamw": "adamw", "sgd": "sgd", "rmsprop": "rmsprop"}
_SCHED_MAP = {"cosine": "cosine", "step": "step", "plateau": "plateau", "linear": "linear"}


class TimmAdapter(TorchAdapter):
    """Image classification with timm models, trained by the shared torch loop."""

    framework: ClassVar[str] = TIMM
    tasks: ClassVar[tuple[str, ...]] = (TASK,)
    primary_metric: ClassVar[dict[str, str]] = {TASK: PRIMARY}
    catalog: ClassVar[tuple[ModelInfo, ...]] = tuple(
        ModelInfo(
            name=n,
            framework=TIMM,
            task_type=TASK,
            description=d,
            params_m=p,
            default_image_size=s,
            max_image_size=MAX_IMAGE_SIZE_VIT if n.startswith(_VIT_PREFIXES) else MAX_IMAGE_SIZE_CNN,
        )
        for n, d, p, s in _MODELS
    )
    schema = _SCHEMA
    preset_values = _PRESETS
    aliases: ClassVar[Mapping[str, str]] = {"learning_rate": "lr", "optimizer_name": "opt"}

    canonical_names: ClassVar[Mapping[str, str]] = {
        "optimizer": "opt",
        "scheduler": "sched",
        "label_smoothing": "smoothing",
    }
    optimizers = _OPT_MAP
    schedulers = _SCHED_MAP

    def make_loop(self, ctx: TrainContext) -> loop.EpochLoop:
        return _TimmLoop(ctx)

    @classmethod
    def model_from_checkpoint(cls, ckpt: Mapping[str, Any]) -> Any:
        return _create_model(ckpt["model_name"], len(ckpt["class_names"]), int(ckpt["image_size"]), 0.0)


def _default_image_size(name: str) -> int:
    for n, _, _, s in _MODELS:
        if n == name:
            return s
    return 224


def _create_model(name: str, num_classes: int, image_size: int, drop_rate: float) -> Any:
    import timm

    kwargs: dict[str, Any] = {"pretrained": False, "num_classes": num_classes, "drop_rate": drop_rate}
    if name.startswith(_VIT_PREFIXES) and image_size != 224:
        kwargs["img_size"] = image_size
    return timm.create_model(name, **kwargs)


class _TimmLoop(loop.EpochLoop):
    def __init__(self, ctx: TrainContext) -> None:
        spec = ctx.spec
        hp = spec.hyperparameters
        self.data = data.build_classification_data(ctx.dataset, hp.val_fraction, hp.seed)
        image_size = int(hp.image_size or _default_image_size(spec.model_name))
        super().__init__(
            ctx,
            loop.LoopMeta(
                framework=TIMM,
                task_type=TASK,
                model_name=spec.model_name,
                class_names=self.data.class_names,
                image_size=image_size,
                epochs=hp.epochs,
                primary_metric=PRIMARY,
                patience=int(ctx.config.get("patience") or 0),
            ),
        )
        self.cfg: Mapping[str, Any] = ctx.config
        self.num_classes = len(self.data.class_names)
        self.batch_size = int(hp.batch_size or 32)

    def setup(self) -> None:
        import torch
        from timm.data import Mixup, create_transform
        from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
        from timm.optim import create_optimizer_v2
        from timm.scheduler import create_scheduler_v2

        cfg, ctx = self.cfg, self.ctx
        hp = ctx.spec.hyperparameters
        size = self.meta.image_size
        self.log(self.data.split.report.get("message", "split done"))
        if self.data.converted:
            self.log(
                f"{self.data.converted} images labeled by their dominant class (detection/segmentation annotations)"
            )
        if self.data.val_is_train:
            self.log("no image could be held out for validation: validating on the training images", "warning")
        no_jitter: Any = None  # timm accepts None (no ColorJitter); its annotation says float
        train_tf = create_transform(
            size,
            is_training=True,
            scale=(float(cfg["scale_min"]), 1.0),
            ratio=(3 / 4, 4 / 3) if cfg["scale_min"] < 1.0 else (1.0, 1.0),
            hflip=float(cfg["hflip"]),
            color_jitter=no_jitter,
        )
        eval_tf = create_transform(size, is_training=False, crop_pct=1.0)
        train_ds = data.ImageListDataset(ctx.dataset_dir, self.data.train, train_tf)
        val_ds = data.ImageListDataset(ctx.dataset_dir, self.data.val, eval_tf)
        workers = int(hp.workers)
        pin = self.device.type == "cuda"
        # drop a last batch of 1 (BatchNorm cannot train on it) when there is more than one batch
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
            val_ds, batch_size=self.batch_size, shuffle=False, seed=self.seed, workers=workers, pin_memory=pin
        )

        model = _create_model(self.meta.model_name, self.num_classes, size, float(cfg["drop_rate"]))
        weights = checkpoints.find_local_weights(self.meta.model_name, (".safetensors", ".pth", ".pt", ".bin"))
        if ctx.pretrained is not None and ctx.pretrained.path is not None:
            pretrained.load_timm(model, ctx.pretrained, self.log)
        elif weights is not None:
            loaded, skipped = checkpoints.load_partial_state(model, checkpoints.read_weights_file(weights))
            self.log(f"local weights {weights.name}: {loaded} tensors loaded, {len(skipped)} skipped (classifier)")
        elif init_weights.init_source(ctx) is None:
            self.log(f"{self.meta.model_name} built from its architecture (pretrained=False), trained from scratch")
        init_weights.init_torch_model(ctx, model, self.log, list(self.meta.class_names))
        self.model = model.to(self.device)

        params = pretrained.backbone_params(
            self.model,
            pretrained.timm_classifier_prefixes(self.model),
            freeze=bool(cfg["freeze_backbone"]),
            lr_mult=float(cfg["backbone_lr_mult"]),
            lr=float(cfg["lr"]),
            log=self.log,
        )
        self.optimizer = create_optimizer_v2(
            params,
            opt=str(cfg["opt"]),
            lr=float(cfg["lr"]),
            weight_decay=float(cfg["weight_decay"]),
            momentum=float(cfg["momentum"]),
        )
        sched = str(cfg["sched"])
        epochs = self.meta.epochs
        self.scheduler = None
        if sched == "plateau":
            # torch's plateau scheduler: its state (best, bad epochs) is saved in last.pt, timm's is not
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer,
                mode="max",
                factor=min(max(float(cfg["decay_rate"]), 1e-3), 0.99),
                patience=max(1, int(cfg["patience"]) // 2 or 2),
                min_lr=float(cfg["min_lr"]),
            )
        elif sched != "none":
            timm_sched = {"linear": "poly"}.get(sched, sched)
            decay_epochs = float(cfg["decay_epochs"]) or max(1.0, epochs / 3)
            self.scheduler, _ = create_scheduler_v2(
                self.optimizer,
                sched=timm_sched,
                num_epochs=epochs,
                decay_epochs=decay_epochs,
                decay_rate=1.0 if sched == "linear" else float(cfg["decay_rate"]),
                min_lr=float(cfg["min_lr"]),
                warmup_epochs=int(cfg["warmup_epochs"]),
                warmup_lr=min(1e-5, float(cfg["lr"])),
            )
        self.scaler = self.make_scaler()
        self.ema = None
        if cfg["model_ema"]:
            from timm.utils import ModelEmaV3

            # warm-up: the decay grows with the step count, so a short run's EMA is not the init weights
            self.ema = ModelEmaV3(self.model, decay=float(cfg["model_ema_decay"]), use_warmup=True, device=self.device)

        mixup_on = float(cfg["mixup_alpha"]) > 0 or float(cfg["cutmix_alpha"]) > 0
        smoothing = float(cfg["smoothing"])
        self.mixup: Any = None
        if mixup_on:
            self.mixup = Mixup(
                mixup_alpha=float(cfg["mixup_alpha"]),
                cutmix_alpha=float(cfg["cutmix_alpha"]),
                prob=float(cfg["mixup_prob"]),
                label_smoothing=smoothing,
                num_classes=self.num_classes,
            )
            self.train_loss: Any = SoftTargetCrossEntropy()
        elif smoothing > 0:
            self.train_loss = LabelSmoothingCrossEntropy(smoothing=smoothing)
        else:
            self.train_loss = torch.nn.CrossEntropyLoss()
        self.val_loss = torch.nn.CrossEntropyLoss(reduction="sum")
        self.clip_grad = float(cfg["clip_grad"]) or None

    def train_step(self, batch: Any) -> float:
        x, y = batch
        x = x.to(self.device, non_blocking=True)
        y = y.to(self.device, non_blocking=True)
        if self.mixup is not None:
            # timm's Mixup needs an even batch; a lone odd sample is dropped from this step
            if x.shape[0] % 2:
                if x.shape[0] == 1:
                    return float("nan")
                x, y = x[:-1], y[:-1]
            x, y = self.mixup(x, y)
        with self.autocast():
            loss = self.train_loss(self.model(x), y)
        self.backward_step(loss, clip_grad=self.clip_grad)
        return float(loss.detach())

    def validate(self) -> dict[str, float]:
        import torch

        model = self.eval_model()
        model.eval()
        logits: list[Any] = []
        targets: list[Any] = []
        loss_sum = 0.0
        for x, y in self.val_loader:
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            with self.autocast():
                out = model(x)
            out = out.float()
            loss_sum += float(self.val_loss(out, y))
            logits.append(out.cpu())
            targets.append(y.cpu())
        n = sum(len(t) for t in targets)
        all_logits = torch.cat(logits).numpy() if logits else None
        all_targets = torch.cat(targets).numpy() if targets else None
        if all_logits is None or all_targets is None or n == 0:
            return {"val/loss": float("nan"), "val/accuracy_top1": 0.0, "val/accuracy_top5": 0.0}
        return loop.classification_metrics(all_logits, all_targets, loss_sum / n)

    def end_of_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        import torch

        if self.scheduler is None:
            return
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            value = metrics.get(PRIMARY)
            if value is not None:
                self.scheduler.step(value)
        else:
            self.scheduler.step(epoch, metrics.get(PRIMARY))
