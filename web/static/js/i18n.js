/* The page's texts in English and Korean (I18N), the current language (lang, setLang), t() and
 * applyI18n() (fills [data-i18n] / [data-i18n-placeholder] elements).
 */
import { KEYS } from './constants.js';
import { $ } from './dom.js';

// ------------------------------------------------------------------------------------ i18n
const I18N = {
  en: {
    app_title: 'Vision Training Agent',
    tab_jobs: 'Jobs', tab_datasets: 'Datasets', tab_test: 'Test',
    sign_in: 'Sign in', sign_up: 'Sign up', sign_out: 'Sign out', email: 'Email', password: 'Password',
    password_hint: 'At least 8 characters.', no_account: 'No account yet?', have_account: 'Already have an account?',
    bad_credentials: 'Wrong email or password.', email_taken: 'This email is already registered.',
    session_expired: 'Your session ended. Please sign in again.', fill_both: 'Enter your email and a password.',
    link_slack: 'Link Slack', chat: 'Chat', new_chat: 'New chat', send: 'Send',
    chat_placeholder: 'e.g. train resnet18 on digits for 1 epoch',
    welcome: 'Hi! Tell me what to train, e.g. "train resnet18 on digits for 1 epoch". I will ask for anything missing, show a summary to confirm, and start the job.',
    ex_train: 'train resnet18 on digits for 1 epoch', ex_datasets: 'what datasets do I have?',
    ex_models: 'what models can I use?',
    confirm: 'Confirm', change: 'Change', cancel: 'Cancel',
    change_hint: 'Say what to change, e.g. "epochs 5", "batch size 16", "use resnet34"',
    summary_model: 'Model', summary_task: 'Task', summary_dataset: 'Dataset', summary_epochs: 'Epochs',
    summary_batch: 'Batch size', summary_image_size: 'Image size', summary_lr: 'Learning rate',
    summary_optimizer: 'Optimizer', summary_nbs: 'Nominal batch',
    summary_preset: 'Preset', summary_estimate: 'Estimated time', summary_conversion: 'Conversion',
    summary_weights: 'Weights', weights_pretrained: 'pretrained on {p} ({d})', weights_pretrained_plain: 'pretrained ({d})',
    weights_scratch: 'from scratch', weights_job: 'fine-tuned from {d}',
    weights_user: 'from your weights {f} (sha {s})',
    mw_title: 'My weights', mw_model: 'Model', mw_upload: 'Upload', mw_delete: 'Delete',
    mw_hint: 'Your own .safetensors or .pt file for one model (Ultralytics: .pt). Then say "use my weights" in the chat.',
    mw_none: 'You have not uploaded any weights.', mw_need: 'Name the model and choose a file.',
    mw_done: 'Uploaded {name} (#{id}).',
    summary_snapshot: 'Snapshot', snapshot_at_launch: 'taken at launch', default_mark: '(default)',
    images_n: '{n} images',
    refresh: 'Refresh', no_jobs: 'No jobs yet. Ask the agent in the chat to train something.',
    queue_pos: 'queue #{n}', stop: 'Stop', resume: 'Resume', test_it: 'Test', mlflow: 'MLflow run',
    dl_best: 'best.pt', dl_last: 'last.pt', dl_card: 'Model card', dl_title: 'Download (a link valid for a few minutes)',
    epoch_of: 'epoch {e}/{n}', batch_of: 'batch {b}/{n}', eta: 'ETA {t}', done_pct: '{p}%',
    loss_chart: 'Loss', metrics_chart: 'Validation metrics', no_points: 'no epochs yet',
    per_epoch: 'Per-epoch metrics', epoch: 'Epoch', checkpoint: 'Checkpoint', best: 'best',
    reconnecting: 'reconnecting…', live: 'live', stop_requested: 'stopping…',
    status_queued: 'queued', status_preparing: 'preparing', status_running: 'running',
    status_completed: 'completed', status_failed: 'failed', status_stopped: 'stopped',
    status_interrupted: 'interrupted', status_resuming: 'resuming',
    task_image_classification: 'Classification', task_object_detection: 'Detection',
    task_instance_segmentation: 'Segmentation', task_pose_estimation: 'Pose',
    task_oriented_object_detection: 'Oriented detection',
    compat_native: 'ready', compat_convertible: 'convertible', compat_incompatible: 'not possible',
    search: 'Search', mine_only: 'Mine only', new_dataset: 'New dataset', name: 'Name',
    visibility: 'Visibility', private: 'private', public: 'public', description: 'Description',
    upload_folder: 'Folder', upload_zip: 'Zip file', create_upload: 'Create and upload',
    upload_hint: 'A folder with images/ and annotations.json (DICE), YOLO, COCO, ImageFolder or plain images; sub-folders are kept.',
    images: 'Images', classes: 'Classes', updated: 'Updated', no_datasets: 'No datasets match.',
    need_name: 'Give the dataset a name.', need_files: 'Choose a folder or a zip file to upload.',
    uploading: 'Uploading {p}% ({a} / {b})', processing: 'Processing on the server…',
    ds_created: 'Dataset "{name}" created with {n} images.',
    ds_created_upload_failed: 'Dataset "{name}" was created, but the upload failed: {err}',
    owner_you: 'yours', owner_other: 'shared', labeled: 'labeled', unlabeled: 'unlabeled',
    annotations: 'annotations', compatibility: 'What it can train', snapshots: 'Snapshots',
    no_snapshots: 'No snapshots yet (one is taken when a job starts).', create_snapshot: 'Create snapshot',
    gallery: 'Gallery', prev: 'Previous', next: 'Next', page_of: '{a}–{b} of {n}',
    delete: 'Delete', really_delete: 'Really delete?', deleted: 'Dataset "{name}" deleted.',
    owner_actions: 'Owner', add_files: 'Add files', no_images: 'No images.', broken: 'broken',
    trained_job: 'Trained job', no_trained_jobs: 'No finished jobs with a checkpoint yet', drop_image: 'Drop an image here, or click to choose one',
    running_inference: 'Running the model…', predicted: 'Prediction', confidence: 'Confidence',
    detections: '{n} detections', inference_ms: 'Inference: {ms} ms', label: 'Label', box: 'Box',
    batch_test: 'Batch test run', dataset: 'Dataset', start_test_run: 'Start test run',
    test_run_n: 'Test run #{id}', report: 'Report', choose_job: 'Choose a trained job first.',
    export_title: 'Export the model', export_format: 'Format', export_start: 'Export',
    export_hint: 'Each export is run with its own runtime on a few images and compared with the PyTorch model.',
    exporting: 'Exporting and checking against PyTorch…', no_exports: 'No exports yet.',
    export_parity: 'Parity with PyTorch', export_diff: 'max abs diff {d} (tolerance {t}, {n} images)',
    export_ok: 'parity ok', export_bad: 'over the tolerance', export_download: 'Download',
    close: 'Close', slack_title: 'Link Slack', slack_intro: 'Send this code to the bot in Slack:',
    slack_expires: 'Expires {at}.', slack_unavailable: 'Slack linking is not available on this server yet.',
    error: 'Error', network_error: 'The server could not be reached.',
  },
  ko: {
    app_title: '비전 학습 에이전트',
    tab_jobs: '작업', tab_datasets: '데이터셋', tab_test: '테스트',
    sign_in: '로그인', sign_up: '회원가입', sign_out: '로그아웃', email: '이메일', password: '비밀번호',
    password_hint: '8자 이상 입력하세요.', no_account: '계정이 없으신가요?', have_account: '이미 계정이 있으신가요?',
    bad_credentials: '이메일 또는 비밀번호가 틀렸습니다.', email_taken: '이미 가입된 이메일입니다.',
    session_expired: '세션이 끝났습니다. 다시 로그인하세요.', fill_both: '이메일과 비밀번호를 입력하세요.',
    link_slack: 'Slack 연결', chat: '채팅', new_chat: '새 대화', send: '보내기',
    chat_placeholder: '예: digits 데이터셋으로 resnet18 1에폭 학습해줘',
    welcome: '안녕하세요! 무엇을 학습할지 말씀해 주세요. 예: "digits 데이터셋으로 resnet18 1에폭 학습해줘". 빠진 정보는 물어보고, 요약을 보여 드린 뒤 확인을 받으면 학습을 시작합니다.',
    ex_train: 'digits 데이터셋으로 resnet18 1에폭 학습해줘', ex_datasets: '내 데이터셋 보여줘',
    ex_models: '어떤 모델을 쓸 수 있어?',
    confirm: '확인', change: '변경', cancel: '취소',
    change_hint: '바꿀 내용을 말씀하세요. 예: "에폭은 5로", "배치 16", "resnet34로 바꿔줘"',
    summary_model: '모델', summary_task: '작업', summary_dataset: '데이터셋', summary_epochs: '에폭',
    summary_batch: '배치 크기', summary_image_size: '이미지 크기', summary_lr: '학습률',
    summary_optimizer: '옵티마이저', summary_nbs: '명목 배치',
    summary_preset: '프리셋', summary_estimate: '예상 시간', summary_conversion: '변환',
    summary_weights: '가중치', weights_pretrained: '{p} 사전학습 ({d})', weights_pretrained_plain: '사전학습 ({d})',
    weights_scratch: '처음부터 학습', weights_job: '{d}에서 이어서 학습',
    weights_user: '내가 올린 가중치 {f} 사용 (sha {s})',
    mw_title: '내 가중치', mw_model: '모델', mw_upload: '올리기', mw_delete: '삭제',
    mw_hint: '모델 하나에 쓸 내 .safetensors 또는 .pt 파일 (Ultralytics: .pt). 올린 뒤 채팅에서 "내 가중치로" 라고 말하세요.',
    mw_none: '올린 가중치가 없습니다.', mw_need: '모델 이름을 쓰고 파일을 고르세요.',
    mw_done: '가중치 {name} (#{id}) 업로드 완료.',
    summary_snapshot: '스냅샷', snapshot_at_launch: '시작할 때 생성', default_mark: '(기본값)',
    images_n: '이미지 {n}장',
    refresh: '새로고침', no_jobs: '아직 작업이 없습니다. 채팅에서 학습을 요청해 보세요.',
    queue_pos: '대기 {n}번째', stop: '중지', resume: '재개', test_it: '테스트', mlflow: 'MLflow 실행',
    dl_best: 'best.pt', dl_last: 'last.pt', dl_card: '모델 카드', dl_title: '다운로드 (몇 분 동안 유효한 링크)',
    epoch_of: '에폭 {e}/{n}', batch_of: '배치 {b}/{n}', eta: '남은 시간 {t}', done_pct: '{p}%',
    loss_chart: '손실', metrics_chart: '검증 지표', no_points: '아직 에폭이 없습니다',
    per_epoch: '에폭별 지표', epoch: '에폭', checkpoint: '체크포인트', best: '최고',
    reconnecting: '다시 연결 중…', live: '실시간', stop_requested: '중지 중…',
    status_queued: '대기 중', status_preparing: '준비 중', status_running: '학습 중',
    status_completed: '완료', status_failed: '실패', status_stopped: '중지됨',
    status_interrupted: '중단됨', status_resuming: '재개 중',
    task_image_classification: '분류', task_object_detection: '객체 탐지',
    task_instance_segmentation: '인스턴스 분할', task_pose_estimation: '자세 추정',
    task_oriented_object_detection: '회전 박스 탐지',
    compat_native: '바로 가능', compat_convertible: '변환 가능', compat_incompatible: '불가',
    search: '검색', mine_only: '내 것만', new_dataset: '새 데이터셋', name: '이름',
    visibility: '공개 범위', private: '비공개', public: '공개', description: '설명',
    upload_folder: '폴더', upload_zip: 'Zip 파일', create_upload: '만들고 업로드',
    upload_hint: 'images/와 annotations.json(DICE), YOLO, COCO, ImageFolder 또는 이미지만 있는 폴더; 하위 폴더 구조는 유지됩니다.',
    images: '이미지', classes: '클래스', updated: '수정', no_datasets: '조건에 맞는 데이터셋이 없습니다.',
    need_name: '데이터셋 이름을 입력하세요.', need_files: '업로드할 폴더나 zip 파일을 고르세요.',
    uploading: '업로드 중 {p}% ({a} / {b})', processing: '서버에서 처리 중…',
    ds_created: '데이터셋 "{name}" 생성 완료 (이미지 {n}장).',
    ds_created_upload_failed: '데이터셋 "{name}" 생성은 됐지만 업로드에 실패했습니다: {err}',
    owner_you: '내 것', owner_other: '공유됨', labeled: '라벨 있음', unlabeled: '라벨 없음',
    annotations: '어노테이션', compatibility: '학습 가능한 작업', snapshots: '스냅샷',
    no_snapshots: '스냅샷이 없습니다 (작업을 시작할 때 만들어집니다).', create_snapshot: '스냅샷 만들기',
    gallery: '갤러리', prev: '이전', next: '다음', page_of: '{a}–{b} / {n}',
    delete: '삭제', really_delete: '정말 삭제할까요?', deleted: '데이터셋 "{name}" 삭제 완료.',
    owner_actions: '소유자', add_files: '파일 추가', no_images: '이미지가 없습니다.', broken: '손상됨',
    trained_job: '학습된 작업', no_trained_jobs: '체크포인트가 있는 끝난 작업이 없습니다', drop_image: '이미지를 여기에 끌어다 놓거나 클릭해서 고르세요',
    running_inference: '모델 실행 중…', predicted: '예측', confidence: '신뢰도',
    detections: '검출 {n}개', inference_ms: '추론: {ms} ms', label: '라벨', box: '박스',
    batch_test: '배치 테스트', dataset: '데이터셋', start_test_run: '테스트 시작',
    test_run_n: '테스트 #{id}', report: '리포트', choose_job: '먼저 학습된 작업을 고르세요.',
    export_title: '모델 내보내기', export_format: '형식', export_start: '내보내기',
    export_hint: '내보낸 모델은 각 형식의 런타임으로 이미지 몇 장에서 실행해 PyTorch 모델과 비교합니다.',
    exporting: '내보내고 PyTorch와 비교하는 중…', no_exports: '아직 내보낸 모델이 없습니다.',
    export_parity: 'PyTorch 대비 일치도', export_diff: '최대 절대 오차 {d} (허용 {t}, 이미지 {n}장)',
    export_ok: '일치 확인', export_bad: '허용치 초과', export_download: '다운로드',
    close: '닫기', slack_title: 'Slack 연결', slack_intro: 'Slack에서 봇에게 이 코드를 보내세요:',
    slack_expires: '{at}에 만료됩니다.', slack_unavailable: '이 서버에서는 아직 Slack 연결을 사용할 수 없습니다.',
    error: '오류', network_error: '서버에 연결할 수 없습니다.',
  },
};

function initialLang() {
  const saved = localStorage.getItem(KEYS.lang);
  if (saved === 'ko' || saved === 'en') return saved;
  const nav = (navigator.languages && navigator.languages[0]) || navigator.language || 'en';
  return nav.toLowerCase().startsWith('ko') ? 'ko' : 'en';
}

export let lang = initialLang();

/** Switch the page's language ('en' | 'ko'); the caller stores it and redraws. */
export function setLang(value) {
  lang = value;
}

export function t(key, vars) {
  let s = (I18N[lang] && I18N[lang][key]) || I18N.en[key] || key;
  if (vars) s = s.replace(/\{(\w+)\}/g, (m, k) => (vars[k] === undefined || vars[k] === null ? '' : String(vars[k])));
  return s;
}

export function applyI18n(root) {
  (root || document).querySelectorAll('[data-i18n]').forEach((el) => { el.textContent = t(el.dataset.i18n); });
  (root || document).querySelectorAll('[data-i18n-placeholder]').forEach((el) => {
    el.placeholder = t(el.dataset.i18nPlaceholder);
  });
  document.documentElement.lang = lang;
  document.title = t('app_title');
  $('#lang-toggle').textContent = lang === 'ko' ? 'English' : '한국어';
}

export const taskLabel = (task) => (task ? t('task_' + task) : '-');
export const statusLabel = (status) => (status ? t('status_' + status) : '');
