"""Bilingual texts of the questions the dialogue answers (`agent.dialogue.questions`): upload help,
what a dataset can train, job comparisons, the best job, deleting a job, advice on weak results,
repeating a job, and the "what I can do" answer to a message it does not understand.

`say(lang, key, **values)` works like `agent.replies.say` (Korean for "ko", else English). Values
are names and numbers from tools; the Korean texts put a fixed noun (작업, 데이터셋, 에폭) after
every value, so no particle depends on how a value ends.
"""

from __future__ import annotations

from typing import Any

from agent import replies as R
from agent import wording as W

Q: dict[str, dict[str, str]] = {
    # ------------------------------------------------------------------ upload
    "upload_head": {
        "en": "To upload your own data, open the Datasets tab: {page}",
        "ko": "내 데이터를 올리려면 데이터셋 탭을 여세요: {page}",
    },
    "upload_steps": {
        "en": (
            '1. Press "New dataset", give it a name (private or public).\n'
            "2. Choose a folder, or a .zip of one (at most {max_upload}; one image at most {max_file}).\n"
            '3. Press "Create and upload": everything is checked first; on an error nothing is stored and '
            "the message names the file and line."
        ),
        "ko": (
            '1. "새 데이터셋"을 누르고 이름과 공개 범위(비공개/공개)를 정합니다.\n'
            "2. 폴더나 폴더를 묶은 .zip 파일을 고릅니다 (최대 {max_upload}, 이미지 한 장은 최대 {max_file}).\n"
            '3. "만들고 업로드"를 누르면 먼저 전부 검사합니다. 오류가 있으면 아무것도 저장되지 않고 '
            "파일과 줄 번호를 알려 드립니다."
        ),
    },
    "upload_formats_head": {
        "en": "Formats (a zip may have one top folder around them):",
        "ko": "형식 (zip 안에 최상위 폴더가 하나 있어도 됩니다):",
    },
    "upload_format_line": {"en": "- {name}: {layout}{auto}", "ko": "- {name}: {layout}{auto}"},
    "upload_not_auto": {
        "en": " — not detected by itself: upload through the API with ?format={name} (the page would store "
        "the class folders as unlabeled images)",
        "ko": " — 자동으로 인식되지 않습니다. API로 ?format={name}을 붙여 올리세요 (페이지에서 올리면 클래스 "
        "폴더가 라벨 없는 이미지로 저장됩니다)",
    },
    "upload_api": {
        "en": "By API: {steps}. Reference: {docs}",
        "ko": "API로 올리기: {steps}. 참고 문서: {docs}",
    },
    # ------------------------------------------------------------------ what can I train
    "fit_head": {
        "en": "{dataset}: {images} images, {classes} ({names}). It can train:",
        "ko": "{dataset} 데이터셋: 이미지 {images}장, 클래스 {classes}개 ({names}). 학습할 수 있는 작업:",
    },
    "fit_task": {
        "en": "- {task} ({status}): {models}",
        "ko": "- {task} ({status}): {models}",
    },
    "fit_conversion": {"en": " — {reason}", "ko": " — {reason}"},
    "fit_none": {
        "en": "{dataset} has no labels a task can use ({reason}). Upload annotations, or pick another dataset.",
        "ko": "{dataset} 데이터셋에는 학습에 쓸 수 있는 라벨이 없습니다 ({reason}). 라벨을 올리거나 다른 데이터셋을 "
        "고르세요.",
    },
    "fit_not": {"en": "Not possible: {tasks}.", "ko": "불가능한 작업: {tasks}."},
    "fit_models_note": {
        "en": "(* the default model of the task)",
        "ko": "(* 그 작업의 기본 모델)",
    },
    "fit_which": {
        "en": "Which dataset? What each of yours can train:",
        "ko": "어떤 데이터셋인가요? 데이터셋별로 학습할 수 있는 작업:",
    },
    "fit_which_line": {"en": "- {dataset}: {tasks}", "ko": "- {dataset}: {tasks}"},
    "status_native": {"en": "native", "ko": "그대로 가능"},
    "status_convertible": {"en": "after conversion", "ko": "변환 후 가능"},
    # ------------------------------------------------------------------ compare
    "compare_head": {"en": "Jobs {ids} side by side:", "ko": "{ids}번 작업 비교:"},
    "compare_which": {
        "en": 'Which jobs should I compare? Name two, e.g. "compare job {a} and job {b}", or say "compare my last '
        'two jobs".',
        "ko": '어떤 작업을 비교할까요? "{a}번이랑 {b}번 작업 비교해줘"처럼 두 개를 말하거나 "최근 작업 두 개 비교해줘"'
        "라고 하세요.",
    },
    "compare_too_few": {
        "en": "You have {n} so far; a comparison needs two.",
        "ko": "지금까지 작업이 {n}개뿐입니다. 비교하려면 작업이 두 개 있어야 합니다.",
    },
    "compare_same": {
        "en": "That is the same job twice ({job_id}); name two different jobs to compare.",
        "ko": "같은 작업({job_id}번 작업)을 두 번 말씀하셨습니다. 서로 다른 작업 두 개를 알려 주세요.",
    },
    "compare_too_many": {
        "en": "I compare at most {n} jobs at once.",
        "ko": "한 번에 최대 {n}개 작업까지 비교합니다.",
    },
    "compare_differ": {"en": "Settings that differ: {items}.", "ko": "다른 설정: {items}."},
    "compare_no_differ": {
        "en": "Their settings are the same (apart from the rows above).",
        "ko": "위 표의 항목 말고는 설정이 같습니다.",
    },
    "compare_leader": {
        "en": "Best by {metric}: job {job_id}.",
        "ko": "{metric} 기준 최고: {job_id}번 작업.",
    },
    "compare_tasks_differ": {
        "en": "They train different tasks, so their metrics do not compare directly.",
        "ko": "서로 다른 작업을 학습했기 때문에 지표를 직접 비교할 수 없습니다.",
    },
    "row_job": {"en": "job", "ko": "작업"},
    "row_model": {"en": "model", "ko": "모델"},
    "row_data": {"en": "data", "ko": "데이터"},
    "row_status": {"en": "status", "ko": "상태"},
    "row_epochs": {"en": "epochs", "ko": "에폭"},
    "row_time": {"en": "time", "ko": "시간"},
    "row_best": {"en": "best {metric}", "ko": "최고 {metric}"},
    # ------------------------------------------------------------------ best job
    "best_head": {
        "en": "Your best job on {dataset} for {task}: job {job_id} ({model}), {metric} {value}{epoch}.",
        "ko": "{dataset} 데이터셋의 {task} 최고 작업: {job_id}번 작업({model}), {metric} {value}{epoch}.",
    },
    "best_epoch": {"en": " at epoch {epoch}", "ko": " (에폭 {epoch})"},
    "best_rest": {"en": "Then: {items}.", "ko": "그다음: {items}."},
    "best_rest_item": {"en": "job {job_id} ({model}) {value}", "ko": "{job_id}번 작업({model}) {value}"},
    "best_unranked": {
        "en": "Without a {metric} yet: {ids}.",
        "ko": "아직 {metric} 값이 없는 작업: {ids}.",
    },
    "best_none": {
        "en": "You have no job on {dataset} with a {metric} yet{unranked}.",
        "ko": "{dataset} 데이터셋에서 {metric} 값이 나온 작업이 아직 없습니다{unranked}.",
    },
    "best_no_jobs": {
        "en": "You have not trained on {dataset} yet.",
        "ko": "{dataset} 데이터셋으로 학습한 작업이 아직 없습니다.",
    },
    "best_which": {
        "en": "Best on which dataset? You have trained on: {names}.",
        "ko": "어느 데이터셋 기준으로 볼까요? 학습한 데이터셋: {names}.",
    },
    "best_by": {
        "en": "(Ranked by {metric}, the headline metric of {task}.)",
        "ko": "({task}의 대표 지표인 {metric} 기준입니다.)",
    },
    # ------------------------------------------------------------------ delete
    "delete_ask": {
        "en": (
            "Delete job {job_id} ({model} on {dataset}, {status})? Its checkpoints, exports and test runs go with "
            'it and cannot be restored. Say "yes" to delete it, or "no" to keep it.'
        ),
        "ko": (
            "{job_id}번 작업({model}, {dataset} 데이터셋, {status})을 삭제할까요? 체크포인트, 내보낸 파일, 테스트 "
            '결과도 함께 지워지고 되돌릴 수 없습니다. 삭제하려면 "네", 남기려면 "아니요"라고 하세요.'
        ),
    },
    "delete_ask_pending": {
        "en": (
            "Delete job {job_id} ({model} on {dataset}, {status})? Its checkpoints, exports and test runs go with "
            'it and cannot be restored. A training request is waiting for your yes, so say "delete job {job_id}" '
            "again to delete it; anything else keeps it."
        ),
        "ko": (
            "{job_id}번 작업({model}, {dataset} 데이터셋, {status})을 삭제할까요? 체크포인트, 내보낸 파일, 테스트 "
            '결과도 함께 지워지고 되돌릴 수 없습니다. 확인을 기다리는 학습 요청이 있으니, 삭제하려면 "{job_id}번 '
            '작업 삭제"라고 한 번 더 말해 주세요. 다른 말을 하면 작업은 그대로 둡니다.'
        ),
    },
    "deleted": {
        "en": "Deleted job {job_id} with {checkpoints}, {exports} and {runs}.",
        "ko": "{job_id}번 작업을 삭제했습니다 (체크포인트 파일 {checkpoints}개, 내보낸 파일 {exports}개, "
        "테스트 실행 {runs}개).",
    },
    "deleted_kept": {"en": "Kept: {items}.", "ko": "남겨 둔 것: {items}."},
    "delete_kept": {"en": "OK, job {job_id} stays.", "ko": "알겠습니다. {job_id}번 작업은 그대로 둡니다."},
    "delete_which": {
        "en": 'Which job should I delete? Name it, e.g. "delete job {job_id}".',
        "ko": '어떤 작업을 삭제할까요? "{job_id}번 작업 삭제"처럼 번호를 알려 주세요.',
    },
    "delete_other": {
        "en": "Here I delete training jobs only; delete datasets, images and weights on the page: {page}",
        "ko": "여기서는 학습 작업만 삭제합니다. 데이터셋, 이미지, 가중치는 페이지에서 삭제하세요: {page}",
    },
    "delete_which_none": {
        "en": "You have no jobs to delete.",
        "ko": "삭제할 작업이 없습니다.",
    },
    # ------------------------------------------------------------------ why is it low
    "advice_head": {
        "en": "Job {job_id} ({model} on {dataset}): best {metric} {value}. What I see in its own data:",
        "ko": "{job_id}번 작업({model}, {dataset} 데이터셋): 최고 {metric} {value}. 이 작업의 기록에서 보이는 점:",
    },
    "advice_not_finished": {
        "en": "- It did not finish ({status}, {done} of {epochs} epochs){error}: resume it or train again.",
        "ko": "- 학습이 끝나지 않았습니다 ({status}, {epochs}에폭 중 {done}에폭){error}. 재개하거나 다시 학습하세요.",
    },
    "advice_no_metrics": {
        "en": "- No epoch reported {metric} yet, so there is nothing to judge.",
        "ko": "- 아직 {metric} 값을 보고한 에폭이 없어서 판단할 수 없습니다.",
    },
    "advice_scratch": {
        "en": "- {model} started from random weights (no pretrained weights). Pretrained weights usually help a lot "
        "on small data: upload your own weights or enable downloads.",
        "ko": "- {model} 모델을 사전학습 가중치 없이 처음부터 학습했습니다. 데이터가 적을 때는 사전학습 가중치가 "
        "큰 도움이 됩니다. 가중치를 직접 올리거나 다운로드를 허용하세요.",
    },
    "advice_still_improving": {
        "en": "- {metric} was still rising at the last epoch (+{gain} over the last {span}): train for more epochs.",
        "ko": "- 마지막 에폭까지 {metric} 값이 오르고 있었습니다 (마지막 {span} 동안 +{gain}). 에폭을 늘려 보세요.",
    },
    "advice_few_epochs": {
        "en": "- Only {epochs} ran: too short to learn much; try 20 or more.",
        "ko": "- {epochs}만 돌았습니다. 충분히 배우기에는 짧으니 20에폭 이상으로 해 보세요.",
    },
    "advice_peaked_early": {
        "en": "- {metric} peaked at {best}{epoch} and fell to {last} by the end: it overfits after that; fewer "
        "epochs, early stopping (patience) or more augmentation help.",
        "ko": "- {metric} 값이 {best}{epoch}에서 최고였다가 끝에는 {last}까지 떨어졌습니다. 그 뒤로 과적합된 것이니 "
        "에폭을 줄이거나 조기 종료(patience), 데이터 증강을 늘려 보세요.",
    },
    "advice_overfitting": {
        "en": "- Overfitting: validation loss {val} against training loss {train} at the end (its lowest was {vmin} "
        "at epoch {vepoch}). More data or augmentation, weight decay, or fewer epochs help.",
        "ko": "- 과적합: 마지막 검증 손실 {val}, 학습 손실 {train} (검증 손실 최저는 에폭 {vepoch}의 {vmin}). "
        "데이터나 증강을 늘리거나, weight decay를 높이거나, 에폭을 줄여 보세요.",
    },
    "advice_small_dataset": {
        "en": "- Small dataset: {images} images for {classes}{per_class}. More labelled images is the surest "
        "improvement; pretrained weights and augmentation help meanwhile.",
        "ko": "- 데이터가 적습니다: 클래스 {classes}개에 이미지 {images}장{per_class}. 라벨된 이미지를 늘리는 것이 "
        "가장 확실하고, 그동안은 사전학습 가중치와 데이터 증강이 도움이 됩니다.",
    },
    "advice_per_class": {"en": " (about {n} per class)", "ko": " (클래스당 약 {n}장)"},
    "advice_imbalance": {
        "en": "- Unbalanced classes: {most} has {most_n} examples, {least} only {least_n}. Add examples of the rare "
        "classes (or weight them).",
        "ko": "- 클래스 불균형: {most} 클래스는 {most_n}개, {least} 클래스는 {least_n}개뿐입니다. 적은 클래스의 "
        "예시를 늘리세요.",
    },
    "advice_image_smaller": {
        "en": "- Images are trained at {size} px, while your images are about {side} px on the longer side: small "
        "details are lost; try image size {suggest}.",
        "ko": "- 원본 이미지는 긴 변이 약 {side}px인데 {size}px로 줄여 학습했습니다. 작은 특징이 사라지니 "
        "이미지 크기를 {suggest}로 올려 보세요.",
    },
    "advice_image_larger": {
        "en": "- Images are trained at {size} px but are only about {side} px: upscaling adds no detail and slows "
        "training; image size {suggest} is enough.",
        "ko": "- 원본 이미지는 약 {side}px인데 {size}px로 키워 학습했습니다. 키워도 정보가 늘지 않고 느려지기만 하니 "
        "이미지 크기 {suggest}면 충분합니다.",
    },
    "advice_no_clear_cause": {
        "en": "- Nothing stands out in its curve, weights or data. Try a larger model or more epochs, and check a "
        "few labels by hand.",
        "ko": "- 학습 곡선, 가중치, 데이터에서 눈에 띄는 문제는 없습니다. 더 큰 모델이나 더 많은 에폭을 시도하고, "
        "라벨 몇 개를 직접 확인해 보세요.",
    },
    "advice_no_job": {
        "en": "You have no job yet to look at; train one first.",
        "ko": "아직 살펴볼 작업이 없습니다. 먼저 학습을 시작하세요.",
    },
    # ------------------------------------------------------------------ repeat a job
    "rerun_from": {
        "en": "Starting from job {job_id}'s settings ({model} on {dataset}, {epochs}).",
        "ko": "{job_id}번 작업의 설정({model}, {dataset} 데이터셋, {epochs})에서 시작합니다.",
    },
    "rerun_changed": {"en": "Changed: {changes}.", "ko": "바꾼 것: {changes}."},
    "rerun_no_job": {
        "en": "There is no earlier job to start from yet.",
        "ko": "아직 기준으로 삼을 이전 작업이 없습니다.",
    },
    # ------------------------------------------------------------------ not understood
    "fallback": {
        "en": (
            "I'm not sure what you mean. I can train image models on your datasets (I ask for what is missing and "
            "confirm before starting), answer questions about your jobs (progress, metrics, comparisons, why "
            "results are weak), and help you upload data. For example:"
        ),
        "ko": (
            "무슨 말씀인지 정확히 모르겠습니다. 데이터셋으로 이미지 모델을 학습하고(빠진 정보는 묻고 시작 전에 "
            "확인합니다), 작업에 대한 질문(진행 상황, 지표, 비교, 결과가 낮은 이유)에 답하고, 데이터 업로드를 "
            "도와드릴 수 있습니다. 예를 들어:"
        ),
    },
}


def say(lang: str | None, key: str, **values: Any) -> str:
    """The template `key` in `lang` ("ko" or English), formatted with `values` and polished like
    every reply (`agent.replies.polish`: Korean particles, English singulars)."""
    return R.polish(Q[key][R.lang_of(lang)].format(**values), lang)


LAYOUTS_KO: dict[str, str] = {
    "dice": "images/ (하위 폴더 가능) + format_version이 있는 annotations.json",
    "coco": "images/ + COCO json (annotations.json 또는 annotations/instances_<split>.json)",
    "yolo": "data.yaml + images/<split>/ + labels/<split>/*.txt (이미지마다 라벨 파일 하나)",
    "imagefolder": "클래스마다 폴더 하나: <클래스>/*.jpg 또는 train/<클래스>/*.jpg",
    "images": "이미지만 (라벨 없음; 라벨은 다른 곳에서 붙이거나 나중에 올리세요)",
}
"""The upload layouts (`tools.upload_guide.LAYOUTS`) in Korean."""


def layout(name: str, english: str, lang: str | None) -> str:
    """An upload format's folder layout in `lang` (the tool's English one when there is no other)."""
    return LAYOUTS_KO.get(name, english) if R.lang_of(lang) == "ko" else english


SETTING_WORDS: dict[str, tuple[str, str]] = {
    "weights": ("starting weights", "시작 가중치"),
    "init_from": ("started from", "시작점"),
    "seed": ("seed", "시드"),
    "val_fraction": ("validation share", "검증 비율"),
}
"""Labels of the comparison's own setting keys (the rest are `agent.wording.setting_label`'s)."""


def setting(key: str, lang: str | None) -> str:
    """A setting's name as the page says it, in `lang`."""
    pair = SETTING_WORDS.get(key)
    if pair is not None:
        return pair[1] if R.lang_of(lang) == "ko" else pair[0]
    return W.setting_label(key, R.lang_of(lang))


def settings_change(key: str, values: list[Any], lang: str | None) -> str:
    """ "learning rate 0.001 / 0.01": one setting's value per job (or before / after)."""
    shown = [W.setting_value(key, v, R.lang_of(lang)) if v is not None else "-" for v in values]
    return f"{setting(key, lang)} " + " / ".join(shown)


def epochs_text(n: int, lang: str | None) -> str:
    """ "1 epoch", "3 epochs", "3에폭"."""
    if R.lang_of(lang) == "ko":
        return f"{n}에폭"
    return f"{n} epoch" if n == 1 else f"{n} epochs"


def classes_text(n: int, lang: str | None) -> str:
    """ "1 class", "4 classes" (Korean uses its own template)."""
    if R.lang_of(lang) == "ko":
        return str(n)
    return f"{n} class" if n == 1 else f"{n} classes"


def count_text(n: int, word: str, lang: str | None) -> str:
    """ "no jobs", "1 job", "3 jobs" in English; the bare number in Korean (its template says 개)."""
    if R.lang_of(lang) == "ko":
        return str(n)
    if n == 0:
        return f"no {word}s"
    return f"1 {word}" if n == 1 else f"{n} {word}s"
