"""Bilingual reply texts of the dialogue (Korean and English), chosen by the user's language.

`say(lang, key, **values)` formats one template; `lang` is "ko" or "en" (anything else -> "en").
Formatting helpers (`task_label`, `duration`, `metrics_line`, ...) keep numbers and names the same
in both languages. Templates never contain user input unformatted by `str.format`, so a message
with braces cannot break them.
"""

from __future__ import annotations

from typing import Any

from agent import wording

Lang = str

TASK_LABELS: dict[str, dict[str, str]] = {
    "image_classification": {"en": "image classification", "ko": "이미지 분류"},
    "object_detection": {"en": "object detection", "ko": "객체 탐지"},
    "instance_segmentation": {"en": "instance segmentation", "ko": "인스턴스 세그멘테이션"},
    "pose_estimation": {"en": "pose estimation", "ko": "포즈 추정"},
    "oriented_object_detection": {"en": "oriented object detection", "ko": "회전 박스 탐지(OBB)"},
}

STATUS_LABELS: dict[str, dict[str, str]] = {
    "queued": {"en": "queued", "ko": "대기 중"},
    "preparing": {"en": "preparing", "ko": "준비 중"},
    "running": {"en": "running", "ko": "학습 중"},
    "completed": {"en": "completed", "ko": "완료"},
    "failed": {"en": "failed", "ko": "실패"},
    "stopped": {"en": "stopped", "ko": "중지됨"},
    "interrupted": {"en": "interrupted", "ko": "중단됨(재시작 대기)"},
    "resuming": {"en": "resuming", "ko": "재개 중"},
}

T: dict[str, dict[str, str]] = {
    # ------------------------------------------------------------------ asking for slots
    "ask_dataset": {
        "en": "Which dataset should I train on?",
        "ko": "어떤 데이터셋으로 학습할까요?",
    },
    "ask_dataset_matching": {
        "en": "Which dataset should I train on? These datasets you can use have the classes you named ({classes}):",
        "ko": "어떤 데이터셋으로 학습할까요? 말씀하신 클래스({classes})가 있는 데이터셋입니다:",
    },
    "ask_dataset_list": {
        "en": "Which dataset should I train on? Datasets you can use{for_task}:",
        "ko": "어떤 데이터셋으로 학습할까요? 사용할 수 있는 데이터셋{for_task}:",
    },
    "for_task": {"en": " for {task}", "ko": " ({task} 가능)"},
    "no_datasets": {
        "en": (
            "You have no dataset I can use yet: upload one (POST /api/v1/datasets, then .../upload) "
            "or name a public one."
        ),
        "ko": (
            "아직 사용할 수 있는 데이터셋이 없습니다. "
            "데이터셋을 업로드하거나(POST /api/v1/datasets 후 .../upload) 공개 데이터셋 이름을 알려주세요."
        ),
    },
    "dataset_line": {
        "en": "{n}. {name} — {images} images, classes: {classes}{public}",
        "ko": "{n}. {name} — 이미지 {images}장, 클래스: {classes}{public}",
    },
    "public_mark": {"en": " (public)", "ko": " (공개)"},
    "answer_with_number": {
        "en": "Answer with a name or a number.",
        "ko": "이름이나 번호로 답해 주세요.",
    },
    "ask_task": {
        "en": "What should the model learn on {dataset}? It can train: {options}. (Default: {default}.)",
        "ko": "{dataset}(으)로 어떤 작업을 학습할까요? 가능한 작업: {options}. (기본: {default})",
    },
    "task_implied": {
        "en": "Task: {task} (the only task the labels of {dataset} serve).",
        "ko": "작업: {task} ({dataset}의 라벨로 가능한 유일한 작업입니다).",
    },
    "ask_model": {
        "en": (
            "Which model? I suggest {model} ({framework}), the default for {task}: {why}. "
            'Say "yes" to use it, or name another ({others}).'
        ),
        "ko": (
            "어떤 모델을 쓸까요? {task}의 기본 모델인 {model}({framework})을(를) 추천합니다: {why}. "
            '그대로 쓰려면 "네", 다른 모델은 이름으로 알려주세요({others}).'
        ),
    },
    "model_why": {
        "en": "{params}small and fast, a good first run{desc}",
        "ko": "{params}작고 빨라서 첫 학습에 적합합니다{desc}",
    },
    "ask_epochs": {
        "en": (
            "How many epochs? The default is {epochs} ({why}); "
            'say "yes" to keep the default or give a number.{preset_note}'
        ),
        "ko": (
            "몇 에폭 학습할까요? 기본값은 {epochs}에폭입니다({why}). "
            '기본값이면 "네", 아니면 숫자로 알려주세요.{preset_note}'
        ),
    },
    "epochs_why_preset": {"en": "the default of preset {preset}", "ko": "{preset} 프리셋의 기본값"},
    "epochs_why_none": {"en": "the default without a preset", "ko": "프리셋이 없을 때의 기본값"},
    "preset_note": {
        "en": " Preset {preset} sets: {values}.",
        "ko": " {preset} 프리셋 설정: {values}.",
    },
    # ------------------------------------------------------------------ confirmation
    "confirm_head": {"en": "Ready to train:", "ko": "다음과 같이 학습을 시작할까요?"},
    "confirm_model": {"en": "- model: {model} ({framework})", "ko": "- 모델: {model} ({framework})"},
    "confirm_task": {"en": "- task: {task}", "ko": "- 작업: {task}"},
    "confirm_pretrained": {"en": "- weights: {text}", "ko": "- 가중치: {text}"},
    "pretrained_job": {"en": "Job {job_id} ({model}): {text}.", "ko": "{job_id}번 작업 ({model}): {text}."},
    "pretrained_pending": {"en": "This request ({model}): {text}.", "ko": "이번 요청 ({model}): {text}."},
    "confirm_init_from": {
        "en": "- starting from job {job_id}'s {checkpoint} ({model} on {dataset}); the head is rebuilt for the classes",
        "ko": "- {job_id}번 작업의 {checkpoint}에서 시작 ({model}, {dataset}); 분류 헤드는 클래스에 맞게 새로 만듭니다",
    },
    # ------------------------------------------------------------------ the user's own weights
    "ask_user_weights": {
        "en": "You have {count} weights files for {what}. Which one should the job start from?\n{lines}\n"
        "Answer with its number.",
        "ko": "{what} 가중치 파일이 {count}개 있습니다. 어떤 것으로 시작할까요?\n{lines}\n번호로 답해 주세요.",
    },
    "user_weights_line": {
        "en": "{n}. #{id} {name} ({model}, sha {sha}, uploaded {created})",
        "ko": "{n}. #{id} {name} ({model}, sha {sha}, {created} 업로드)",
    },
    "user_weights_taken": {
        "en": "Using your weights {name} (#{id}, {model}).",
        "ko": "내가 올린 가중치 {name}(#{id}, {model})을(를) 사용합니다.",
    },
    "user_weights_none": {
        "en": "You have not uploaded weights for {what}, so I left that out. Upload a .safetensors or .pt "
        "file in 'My weights' on the page (or {hint}), then ask again.",
        "ko": "{what}에 쓸 올린 가중치가 없어 그 부분은 뺐습니다. 페이지의 '내 가중치'에서 .safetensors 또는 .pt "
        "파일을 올린 뒤(또는 POST /api/v1/weights/mine, multipart 필드 model과 file) 다시 요청해 주세요.",
    },
    "user_weights_not_found": {
        "en": "Your weights #{id} were not found (only your own uploads can be used).",
        "ko": "가중치 #{id}을(를) 찾을 수 없습니다 (내가 올린 가중치만 쓸 수 있습니다).",
    },
    "user_weights_list": {
        "en": 'Your uploaded weights:\n{lines}\nSay e.g. "train {model} on DATASET with my weights".',
        "ko": '내가 올린 가중치:\n{lines}\n예: "DATASET 으로 {model} 학습, 내 가중치로"',
    },
    "user_weights_list_none": {
        "en": "You have not uploaded any weights. Upload a .safetensors or .pt file in 'My weights' on the page "
        "(or {hint}).",
        "ko": "올린 가중치가 없습니다. 페이지의 '내 가중치'에서 .safetensors 또는 .pt 파일을 올려 주세요 "
        "(또는 POST /api/v1/weights/mine, multipart 필드 model과 file).",
    },
    "init_job_not_found": {
        "en": "Job {job_id} to start from was not found (only your own jobs can be fine-tuned).",
        "ko": "시작할 {job_id}번 작업을 찾을 수 없습니다 (내 작업에서만 이어서 학습할 수 있습니다).",
    },
    "confirm_dataset": {
        "en": "- dataset: {dataset} ({images} images){conversion}; a snapshot will be taken at launch",
        "ko": "- 데이터셋: {dataset} (이미지 {images}장){conversion}; 시작할 때 스냅샷을 만듭니다",
    },
    "confirm_conversion": {"en": ", converted: {conversion}", "ko": ", 변환: {conversion}"},
    "confirm_epochs": {"en": "- epochs: {epochs}{default}", "ko": "- 에폭: {epochs}{default}"},
    "default_mark": {"en": " (default)", "ko": " (기본값)"},
    "confirm_hparams": {
        "en": "- batch size {batch}, image size {size}, learning rate {lr}",
        "ko": "- 배치 크기 {batch}, 이미지 크기 {size}, 학습률 {lr}",
    },
    "confirm_defaults": {"en": "- chosen for your data: {items}", "ko": "- 데이터에 맞춘 설정: {items}"},
    "image_size_label": {"en": "image size", "ko": "이미지 크기"},
    "batch_size_label": {"en": "batch", "ko": "배치"},
    "epochs_label": {"en": "epochs", "ko": "에폭"},
    "nbs_label": {"en": "nominal batch", "ko": "명목 배치"},
    "optimizer_label": {"en": "optimizer", "ko": "옵티마이저"},
    "confirm_preset": {"en": "- preset {preset}: {values}", "ko": "- 프리셋 {preset}: {values}"},
    "confirm_no_preset": {"en": "- settings (no preset): {values}", "ko": "- 설정 (프리셋 없음): {values}"},
    "confirm_advanced": {"en": "- your settings: {values}", "ko": "- 지정한 설정: {values}"},
    "confirm_estimate": {
        "en": "- estimated duration: {low} to {high}, most likely about {expected} ({basis})",
        "ko": "- 예상 소요 시간: {low} ~ {high}, 대략 {expected} ({basis})",
    },
    "confirm_question": {
        "en": 'Start training? (yes / no — or correct something, e.g. "epochs 30", "use yolo11s instead")',
        "ko": '학습을 시작할까요? (네 / 아니오 — 수정하려면 예: "에폭은 30으로", "데이터셋은 shapes-demo로")',
    },
    "updated": {"en": "Updated: {changes}.", "ko": "변경했습니다: {changes}."},
    "confirm_wait": {
        "en": 'OK, I\'ll wait; nothing has been started. Say "yes" when you are ready, or tell me what to change.',
        "ko": '알겠습니다. 아직 아무것도 시작하지 않았습니다. 준비되면 "네"라고 하시거나 바꿀 내용을 말씀해 주세요.',
    },
    "pending_no": {
        "en": "All right, something else then. {question}",
        "ko": "알겠습니다, 그럼 다른 걸로 하죠. {question}",
    },
    "pending_wait": {
        "en": "OK, take your time. ({question})",
        "ko": "네, 천천히 생각해 보세요. ({question})",
    },
    # ------------------------------------------------------------------ launch / cancel
    "launched": {
        "en": "Started job {job_id}: {model} on {dataset}, {epochs} epochs — {status}{queue}. "
        'Ask "how is it going?" for progress, "stop it" to stop.',
        "ko": "{job_id}번 작업을 시작했습니다: {model}, 데이터셋 {dataset}, {epochs}에폭 — {status}{queue}. "
        '진행 상황은 "진행 상황 알려줘", 중지는 "멈춰"라고 하세요.',
    },
    "queue_pos": {"en": ", position {pos} in the queue", "ko": ", 대기열 {pos}번째"},
    "cancelled": {
        "en": "Cancelled; nothing was started. Tell me what to train when you are ready.",
        "ko": "취소했습니다. 아무것도 시작하지 않았습니다. 준비되면 무엇을 학습할지 알려주세요.",
    },
    "nothing_to_cancel": {"en": "There is nothing to cancel.", "ko": "취소할 것이 없습니다."},
    "still_pending": {
        "en": "(Still waiting for your answer: {question})",
        "ko": "(아직 답을 기다리고 있습니다: {question})",
    },
    "pending_confirm": {"en": "start the training? yes/no", "ko": "학습을 시작할까요? 네/아니오"},
    # ------------------------------------------------------------------ errors / refusals
    "dataset_not_found": {
        "en": "I can't find a dataset named {name!r} among the datasets you can use.{hint}",
        "ko": "사용할 수 있는 데이터셋 중에 {name!r}이(가) 없습니다.{hint}",
    },
    "did_you_mean": {"en": " Did you mean {names}?", "ko": " 혹시 {names}인가요?"},
    "dataset_ambiguous": {
        "en": "Several datasets are named {name!r}; tell me which one by its id: {ids}.",
        "ko": "{name!r}(이)라는 데이터셋이 여러 개입니다. id로 알려주세요: {ids}.",
    },
    "incompatible": {
        "en": "{dataset} can't train {task}: {reason}",
        "ko": "{dataset}(으)로는 {task}을(를) 학습할 수 없습니다: {reason}",
    },
    "incompatible_next": {
        "en": "Choose another dataset{datasets} or another task ({dataset} can train: {tasks}).",
        "ko": "다른 데이터셋{datasets}(이)나 다른 작업을 골라 주세요({dataset}(으)로 가능한 작업: {tasks}).",
    },
    "e_g": {"en": " (e.g. {names})", "ko": " (예: {names})"},
    "invalid_request": {
        "en": "That request can't be trained as it is: {reason}",
        "ko": "이 요청으로는 학습할 수 없습니다: {reason}",
    },
    "not_understood": {
        "en": "I didn't understand that. {help_short}",
        "ko": "잘 이해하지 못했습니다. {help_short}",
    },
    "not_understood_pending": {
        "en": "I didn't get that. {question}",
        "ko": "잘 이해하지 못했습니다. {question}",
    },
    "help_short": {
        "en": 'Try "train resnet18 on digits for 5 epochs", "what datasets do I have?" or "help".',
        "ko": '"digits 데이터셋으로 resnet18 5에폭 학습해줘", "내 데이터셋", "도움말"처럼 말해 보세요.',
    },
    "help": {
        "en": (
            "I train computer-vision models for you. You can say:\n"
            '- "train yolo11n on shapes-demo for 20 epochs" (I ask for what is missing and confirm before starting)\n'
            '- "what datasets do I have?", "what models can I use?"\n'
            '- "can I train detection on digits?"\n'
            '- "how is it going?", "show metrics", "stop it", "resume job 15"\n'
            '- "test it on this image" (inference with a finished job)\n'
            'Corrections work any time before the start: "epochs 30", "use yolo11s instead".\n'
            'Say "cancel" to drop a request.'
        ),
        "ko": (
            "컴퓨터 비전 모델 학습을 도와드립니다. 이렇게 말해 보세요:\n"
            '- "shapes-demo로 yolo11n 20에폭 학습해줘" (빠진 정보는 물어보고, 시작 전에 확인합니다)\n'
            '- "내 데이터셋", "쓸 수 있는 모델"\n'
            '- "digits로 탐지 학습 가능해?"\n'
            '- "진행 상황 알려줘", "지표 보여줘", "멈춰", "15번 재개"\n'
            '- "이 이미지로 테스트해줘" (완료된 작업으로 추론)\n'
            '시작 전에는 언제든 수정할 수 있습니다: "에폭은 30으로", "모델은 yolo11s로". 요청을 버리려면 "취소".'
        ),
    },
    # ------------------------------------------------------------------ jobs
    "no_job": {
        "en": 'This chat has not started a job yet; name one ("job 15") or start training first.',
        "ko": '이 대화에서 시작한 작업이 아직 없습니다. 작업 번호("15번")를 알려주거나 먼저 학습을 시작하세요.',
    },
    "job_not_found": {"en": "Job {job_id} not found.", "ko": "{job_id}번 작업을 찾을 수 없습니다."},
    "progress_head": {
        "en": "Job {job_id} ({model} on {dataset}): {status}",
        "ko": "{job_id}번 작업 ({model}, {dataset}): {status}",
    },
    "progress_epoch": {"en": "epoch {epoch}/{epochs}", "ko": "에폭 {epoch}/{epochs}"},
    "progress_batch": {"en": "batch {batch}/{batches}", "ko": "배치 {batch}/{batches}"},
    "progress_eta": {"en": "about {eta} left", "ko": "남은 시간 약 {eta}"},
    "progress_queue": {"en": "position {pos} in the queue", "ko": "대기열 {pos}번째"},
    "progress_metrics": {"en": "latest metrics: {metrics}", "ko": "최근 지표: {metrics}"},
    "progress_best": {
        "en": "best {name} {value} at epoch {epoch}",
        "ko": "최고 {name} {value} (에폭 {epoch})",
    },
    "progress_error": {"en": "error: {error}", "ko": "오류: `{error}`"},
    "progress_none_yet": {"en": "no epoch finished yet", "ko": "아직 끝난 에폭이 없습니다"},
    "stopping": {
        "en": "Stopping job {job_id}: it finishes the current batch and keeps best.pt and last.pt. {status}.",
        "ko": "{job_id}번 작업을 중지합니다. 현재 배치를 마치고 best.pt와 last.pt를 저장합니다. 상태: {status}.",
    },
    "resumed": {
        "en": "Job {job_id} is queued again; it continues from its last checkpoint.",
        "ko": "{job_id}번 작업을 다시 대기열에 넣었습니다. 마지막 체크포인트부터 이어서 학습합니다.",
    },
    "conflict": {"en": "Can't do that: {reason}", "ko": "할 수 없습니다. 서버가 알려 준 이유: `{reason}`"},
    "resume_which": {
        "en": 'Which job should I resume? Say e.g. "resume job 15".',
        "ko": '어떤 작업을 재개할까요? 예: "15번 재개".',
    },
    "metrics_head": {"en": "Metrics of job {job_id} ({status}):", "ko": "{job_id}번 작업 지표 ({status}):"},
    "metrics_epoch": {"en": "- epoch {epoch}: {metrics}", "ko": "- 에폭 {epoch}: {metrics}"},
    "metrics_none": {"en": "No epoch has finished yet.", "ko": "아직 끝난 에폭이 없습니다."},
    # ------------------------------------------------------------------ catalog / datasets
    "datasets_head": {"en": "Datasets you can use ({total}):", "ko": "사용할 수 있는 데이터셋 ({total}개):"},
    "models_head": {"en": "Models you can train{filter}:", "ko": "학습할 수 있는 모델{filter}:"},
    "models_line": {"en": "- {task}: {models}", "ko": "- {task}: {models}"},
    "compat_ok": {
        "en": "Yes: {dataset} can train {task} ({status}). {reason}",
        "ko": "네, {dataset}(으)로 {task} 학습이 가능합니다({status}). {reason}",
    },
    "compat_no": {
        "en": "No: {dataset} can't train {task}. {reason}",
        "ko": "아니요, {dataset}(으)로는 {task} 학습을 할 수 없습니다. {reason}",
    },
    "compat_all": {
        "en": "{dataset} can train: {tasks}.",
        "ko": "{dataset}(으)로 가능한 작업: {tasks}.",
    },
    "compat_which": {
        "en": 'Which dataset? Ask e.g. "can I train detection on shapes-demo?"',
        "ko": '어떤 데이터셋인가요? 예: "shapes-demo로 탐지 학습 가능해?"',
    },
    "status_native": {"en": "natively", "ko": "그대로 사용"},
    "status_convertible": {"en": "after conversion", "ko": "변환 후 사용"},
    # ------------------------------------------------------------------ inference
    "inference_how": {
        "en": (
            "To test job {job_id}, attach an image: in the terminal client type `/image PATH`, "
            "or upload it with POST /api/v1/jobs/{job_id}/inference (multipart field `file`)."
        ),
        "ko": (
            "{job_id}번 작업을 테스트하려면 이미지를 첨부하세요: 터미널 클라이언트에서 `/image 경로`를 입력하거나 "
            "POST /api/v1/jobs/{job_id}/inference (multipart 필드 `file`)로 업로드하세요."
        ),
    },
    "inference_chat_attach": {
        "en": "In the chat API, send the image with your message as `image_base64` (POST /api/v1/chat or WS /ws/chat).",
        "ko": "채팅 API에서는 메시지와 함께 이미지를 `image_base64`로 보내세요 (POST /api/v1/chat 또는 WS /ws/chat).",
    },
    "inference_not_ready": {
        "en": "Job {job_id} is {status}; inference needs a finished job with a checkpoint.",
        "ko": "{job_id}번 작업은 {status} 상태입니다. 추론은 체크포인트가 있는 완료된 작업에서 가능합니다.",
    },
    "inference_result": {
        "en": "Predictions of job {job_id} ({ms} ms): {predictions}",
        "ko": "{job_id}번 작업의 예측 ({ms} ms): {predictions}",
    },
    "inference_head": {
        "en": "Job {job_id} ({model}, {checkpoint} checkpoint) on {image}: {predictions} ({ms} ms)",
        "ko": "{job_id}번 작업({model}, {checkpoint} 체크포인트)으로 {image} 추론 결과: {predictions} ({ms} ms)",
    },
    "inference_top": {
        "en": "it is most likely {label} ({conf}); top {n}: {top}",
        "ko": "가장 가능성이 높은 것은 {label}({conf})입니다. 상위 {n}개: {top}",
    },
    "inference_found": {
        "en": "{total} found — {counts}. Top boxes (x1, y1, x2, y2 px): {boxes}",
        "ko": "{total}개 검출 — {counts}. 상위 박스 (x1, y1, x2, y2 px): {boxes}",
    },
    "inference_none": {
        "en": "nothing found above the confidence threshold",
        "ko": "신뢰도 기준을 넘는 객체가 없습니다",
    },
    "inference_error": {
        "en": "Inference with job {job_id} failed: {reason}",
        "ko": "{job_id}번 작업으로 추론하지 못했습니다. 오류: `{reason}`",
    },
    "test_run_started": {
        "en": (
            "Started test run {run_id}: job {job_id} ({checkpoint} checkpoint) on {dataset}, {total} images. "
            'It runs in the background; ask "how is the test going?" or see GET /api/v1/test-runs/{run_id} '
            "for progress and metrics."
        ),
        "ko": (
            "테스트 실행 {run_id}번을 시작했습니다: {job_id}번 작업({checkpoint} 체크포인트)으로 {dataset} "
            '이미지 {total}장. 백그라운드에서 실행됩니다. "테스트 어떻게 되고 있어?"라고 묻거나 '
            "GET /api/v1/test-runs/{run_id}에서 진행 상황과 지표를 볼 수 있습니다."
        ),
    },
    "test_run_status": {
        "en": "Test run {run_id} (job {job_id}) is {status}: {processed}/{total} images",
        "ko": "테스트 실행 {run_id}번({job_id}번 작업)은 {status} 상태입니다: 이미지 {processed}/{total}장",
    },
    "test_run_metrics": {"en": "metrics: {metrics}", "ko": "지표: {metrics}"},
    "test_run_report": {"en": "report: {url}", "ko": "리포트: {url}"},
    "test_run_error": {"en": "error: {error}", "ko": "오류: `{error}`"},
    "test_run_which_dataset": {
        "en": 'Job {job_id} has no dataset of its own; name one, e.g. "run a test on digits with job {job_id}".',
        "ko": '{job_id}번 작업에는 연결된 데이터셋이 없습니다. 예: "{job_id}번 작업 모델로 digits 테스트해줘".',
    },
    "no_test_run": {
        "en": 'No test run in this chat yet; say e.g. "run a test on digits with job 15".',
        "ko": '이 대화에서 시작한 테스트가 없습니다. 예: "15번 작업 모델로 digits 테스트해줘".',
    },
    "export_done": {
        "en": (
            "Exported job {job_id} ({checkpoint} checkpoint) to {fmt}, {size}. Parity with PyTorch: max abs diff "
            "{diff} (tolerance {tol}, {verdict}). Download: {url}"
        ),
        "ko": (
            "{job_id}번 작업({checkpoint} 체크포인트)을 {fmt}(으)로 내보냈습니다, {size}. PyTorch 대비 최대 절대 오차 "
            "{diff} (허용 {tol}, {verdict}). 다운로드: {url}"
        ),
    },
    "download_link": {
        "en": (
            "Download {what} of job {job_id} ({model}): {url}\nThe link works in a browser for {minutes} min, "
            "for you only. Model card (classes, preprocessing, metrics): {card_url}"
        ),
        "ko": (
            "{job_id}번 작업({model})의 {what} 다운로드: {url}\n이 링크는 {minutes}분 동안 본인만 브라우저에서 열 수 "
            "있습니다. 모델 카드(클래스, 전처리, 지표): {card_url}"
        ),
    },
    "download_card_link": {
        "en": "Model card of job {job_id} ({model}): {url}\nThe link works in a browser for {minutes} min, for you "
        "only.",
        "ko": "{job_id}번 작업({model})의 모델 카드: {url}\n이 링크는 {minutes}분 동안 본인만 브라우저에서 열 수 "
        "있습니다.",
    },
    "download_unavailable": {
        "en": "Download links cannot be made here; use GET /api/v1/jobs/{job_id}/checkpoints/best with your token.",
        "ko": "여기서는 다운로드 링크를 만들 수 없습니다. 토큰과 함께 GET /api/v1/jobs/{job_id}/checkpoints/best "
        "를 쓰세요.",
    },
    "export_failed": {
        "en": "Exporting job {job_id} to {fmt} failed: {error}",
        "ko": "{job_id}번 작업을 {fmt}(으)로 내보내지 못했습니다. 오류: `{error}`",
    },
    "parity_ok": {"en": "ok", "ko": "통과"},
    "parity_bad": {"en": "over the tolerance", "ko": "허용치 초과"},
    "inference_unavailable": {
        "en": "Inference is not available on this server yet.",
        "ko": "이 서버에서는 아직 추론을 사용할 수 없습니다.",
    },
    # ------------------------------------------------------------------ LLM
    "llm_fallback": {
        "en": "(Note: the language model could not answer — {why} — so I used the built-in rules.)",
        "ko": "(참고: 언어 모델이 응답하지 못해서(`{why}`) 기본 규칙으로 답했습니다.)",
    },
}


def lang_of(lang: str | None) -> str:
    """The template language for a requested `lang`: "ko" for Korean, "en" for anything else."""
    return "ko" if lang == "ko" else "en"


def say(lang: str | None, key: str, **values: Any) -> str:
    """The template `key` in `lang`, formatted with `values` and `polish`ed."""
    return polish(T[key][lang_of(lang)].format(**values), lang)


def polish(text: str, lang: str | None) -> str:
    """A reply as its language wants it (`agent.wording`): Korean particles resolved from the word
    before them, English counts of one in the singular. Idempotent, so a turn's whole reply (with
    texts the tools wrote) goes through it again."""
    if lang_of(lang) == "ko":
        return wording.resolve_particles(text)
    return wording.singular_ones(text)


def task_label(task: str | None, lang: str | None) -> str:
    """A task type as users read it in `lang` ("image classification", "이미지 분류"); an unknown type
    with its underscores as spaces, "?" when there is none."""
    if not task:
        return "?"
    return TASK_LABELS.get(task, {}).get(lang_of(lang), task.replace("_", " "))


def status_label(status: str | None, lang: str | None) -> str:
    """A job status in `lang` (the raw status when it has no label); "?" when there is none."""
    if not status:
        return "?"
    return STATUS_LABELS.get(status, {}).get(lang_of(lang), status)


def duration(seconds: float | None, lang: str | None) -> str:
    """Seconds as "1 h 5 min" / "1시간 5분" (seconds shown under ten minutes)."""
    if seconds is None:
        return "?"
    s = max(0, round(float(seconds)))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    ko = lang_of(lang) == "ko"
    parts: list[str] = []
    if h:
        parts.append(f"{h}시간" if ko else f"{h} h")
    if m:
        parts.append(f"{m}분" if ko else f"{m} min")
    if sec and not h and m < 10:
        parts.append(f"{sec}초" if ko else f"{sec} s")
    if not parts:
        parts.append("0초" if ko else "0 s")
    return " ".join(parts)


def rounded_s(seconds: float) -> float:
    """An estimate's seconds at the precision it deserves: whole seconds under a minute, 5 s under
    ten minutes, whole minutes above."""
    step = 1 if seconds < 60 else 5 if seconds < 600 else 60
    return max(1.0, round(float(seconds) / step) * step)


def estimate_line(estimate: Any, lang: str | None) -> str:
    """The confirmation line of a `tools.estimates.Estimate`: range, likely value, basis."""
    return say(
        lang,
        "confirm_estimate",
        low=duration(rounded_s(estimate.low_s), lang),
        high=duration(rounded_s(estimate.high_s), lang),
        expected=duration(rounded_s(estimate.expected_s), lang),
        basis=estimate.basis_text(lang_of(lang)),
    )


def number(value: Any) -> str:
    """A metric or hyper-parameter value, short (4 significant digits for floats)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def values_line(values: dict[str, Any], limit: int = 12) -> str:
    """Up to `limit` hyper-parameters as "name value, ..." ("-" when there are none)."""
    items = list(values.items())[:limit]
    return ", ".join(f"{k} {number(v)}" for k, v in items) or "-"


def metrics_line(metrics: dict[str, Any], limit: int = 6) -> str:
    """Up to `limit` metrics that have a value, as "name value, ..." ("-" when none has)."""
    items = [(k, v) for k, v in metrics.items() if v is not None][:limit]
    return ", ".join(f"{k} {number(v)}" for k, v in items) or "-"


def percent(value: Any) -> str:
    """A fraction (0.873) as a percentage with one decimal ("87.3%"); "?" when it is not a number."""
    try:
        return f"{float(value) * 100:.1f}%"
    except (TypeError, ValueError):
        return "?"


def size_text(num_bytes: Any) -> str:
    """A byte count in B, KB, MB or GB (1024-based) for a reply; "?" when it is not a number."""
    try:
        n = float(num_bytes)
    except (TypeError, ValueError):
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return "?"  # pragma: no cover


def predictions_text(result: dict[str, Any], lang: str | None, top: int = 3, boxes: int = 3) -> str:
    """An InferenceResult in words: classification -> the top labels with confidences; boxes
    (detection, segmentation, pose, oriented boxes) -> counts per class and the top boxes."""
    preds = [p for p in result.get("predictions") or [] if isinstance(p, dict)]
    if result.get("task_type") == "image_classification":
        if not preds:
            return say(lang, "inference_none")
        best = preds[:top]
        listed = ", ".join(f"{p.get('label')} {percent(p.get('confidence'))}" for p in best)
        return say(
            lang,
            "inference_top",
            label=best[0].get("label"),
            conf=percent(best[0].get("confidence")),
            n=len(best),
            top=listed,
        )
    if not preds:
        return say(lang, "inference_none")
    counts: dict[str, int] = {}
    for p in preds:
        counts[str(p.get("label"))] = counts.get(str(p.get("label")), 0) + 1
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    counts_line = ", ".join(f"{label} x{n}" for label, n in ordered)
    ranked = sorted(preds, key=lambda p: -float(p.get("confidence") or 0.0))[:boxes]
    box_line = "; ".join(
        f"{p.get('label')} {percent(p.get('confidence'))} [{', '.join(f'{float(v):.0f}' for v in p.get('box') or [])}]"
        for p in ranked
    )
    return say(lang, "inference_found", total=len(preds), counts=counts_line, boxes=box_line)
