/* Vision Training Agent: the chat page.
 *
 * Plain JavaScript (no build step, no framework, no network beyond this server). It speaks the
 * server's public API: REST under /api/v1 with the bearer token kept in localStorage, and
 * WS /ws/jobs/{id}?after=SEQ&ticket=T for live job progress (reconnecting with the last seq seen,
 * so no event, and no chart point, is lost when a socket drops), WS /ws/test-runs/{id} for test runs.
 * Each socket opens with a fresh single-use ticket (POST /api/v1/stream-tickets), so the bearer
 * token never appears in a URL (access logs); close 4410 means the job was deleted.
 *
 * Parts: i18n (en/ko) -> DOM helpers -> API -> auth -> chat -> jobs (model per job, views per
 * card, SVG charts) -> datasets panel -> test panel -> Slack linking -> start-up.
 */
(() => {
  'use strict';

  const API = '/api/v1';
  const KEYS = { token: 'vta.token', email: 'vta.email', lang: 'vta.lang', session: 'vta.session' };
  const TERMINAL = new Set(['completed', 'failed', 'stopped']);
  const RESUMABLE = new Set(['stopped', 'failed', 'interrupted']);
  const TASKS = ['image_classification', 'object_detection', 'instance_segmentation', 'pose_estimation',
    'oriented_object_detection'];
  const GALLERY_PAGE = 12;
  const METRIC_ORDER = [/accuracy_top1|^accuracy$/, /accuracy/, /map50-95|map_50_95/i, /map/i, /precision/, /recall/, /f1/, /^images$/];
  const COLORS = ['#2f5bea', '#e8590c', '#12805c', '#ae3ec9', '#c92a2a', '#1098ad', '#5c940d', '#d6336c'];

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
      mw_done: '{name} (#{id}) 을(를) 올렸습니다.',
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
      ds_created: '데이터셋 "{name}"을(를) 만들었습니다 (이미지 {n}장).',
      ds_created_upload_failed: '데이터셋 "{name}"은(는) 만들었지만 업로드에 실패했습니다: {err}',
      owner_you: '내 것', owner_other: '공유됨', labeled: '라벨 있음', unlabeled: '라벨 없음',
      annotations: '어노테이션', compatibility: '학습 가능한 작업', snapshots: '스냅샷',
      no_snapshots: '스냅샷이 없습니다 (작업을 시작할 때 만들어집니다).', create_snapshot: '스냅샷 만들기',
      gallery: '갤러리', prev: '이전', next: '다음', page_of: '{a}–{b} / {n}',
      delete: '삭제', really_delete: '정말 삭제할까요?', deleted: '데이터셋 "{name}"을(를) 삭제했습니다.',
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

  let lang = initialLang();

  function t(key, vars) {
    let s = (I18N[lang] && I18N[lang][key]) || I18N.en[key] || key;
    if (vars) s = s.replace(/\{(\w+)\}/g, (m, k) => (vars[k] === undefined || vars[k] === null ? '' : String(vars[k])));
    return s;
  }

  function applyI18n(root) {
    (root || document).querySelectorAll('[data-i18n]').forEach((el) => { el.textContent = t(el.dataset.i18n); });
    (root || document).querySelectorAll('[data-i18n-placeholder]').forEach((el) => {
      el.placeholder = t(el.dataset.i18nPlaceholder);
    });
    document.documentElement.lang = lang;
    document.title = t('app_title');
    $('#lang-toggle').textContent = lang === 'ko' ? 'English' : '한국어';
  }

  const taskLabel = (task) => (task ? t('task_' + task) : '-');
  const statusLabel = (status) => (status ? t('status_' + status) : '');

  // ------------------------------------------------------------------------------ DOM helpers
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k === 'html') el.innerHTML = v;
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'hidden' || k === 'disabled' || k === 'checked' || k === 'selected') el[k] = Boolean(v);
      else if (k === 'value') el.value = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat(Infinity)) {
      if (c === undefined || c === null || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));

  function fmtNum(v) {
    if (v === null || v === undefined || v === '') return '-';
    const n = Number(v);
    if (!Number.isFinite(n)) return String(v);
    if (Number.isInteger(n)) return String(n);
    const a = Math.abs(n);
    if (a >= 1000) return n.toFixed(0);
    if (a >= 1) return String(parseFloat(n.toFixed(3)));
    return String(parseFloat(n.toPrecision(3)));
  }

  function fmtDuration(sec) {
    if (sec === null || sec === undefined || !Number.isFinite(Number(sec))) return '-';
    let s = Math.max(0, Math.round(Number(sec)));
    const hh = Math.floor(s / 3600); s -= hh * 3600;
    const mm = Math.floor(s / 60); s -= mm * 60;
    if (lang === 'ko') return hh ? `${hh}시간 ${mm}분` : mm ? `${mm}분 ${s}초` : `${s}초`;
    return hh ? `${hh}h ${mm}m` : mm ? `${mm}m ${s}s` : `${s}s`;
  }

  function fmtBytes(n) {
    n = Number(n) || 0;
    if (n < 1024) return `${n} B`;
    if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KB`;
    if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MB`;
    return `${(n / 1024 ** 3).toFixed(2)} GB`;
  }

  function fmtDate(iso) {
    if (!iso) return '-';
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return String(iso);
    return new Intl.DateTimeFormat(lang === 'ko' ? 'ko-KR' : 'en-US', { dateStyle: 'short', timeStyle: 'short' }).format(d);
  }

  function toast(message, kind) {
    const el = h('div', { class: 'toast' + (kind === 'error' ? ' error' : ''), role: 'status', text: message });
    $('#toasts').append(el);
    setTimeout(() => el.remove(), kind === 'error' ? 6000 : 3500);
  }

  function showModal(title, ...body) {
    $('#modal-title').textContent = title;
    $('#modal-body').replaceChildren(...body.flat());
    $('#modal').hidden = false;
    $('#modal-close').focus();
  }

  // -------------------------------------------------------------------------------------- API
  class ApiError extends Error {
    constructor(status, message, body) {
      super(message);
      this.status = status;
      this.body = body;
    }
  }

  function detailText(body, fallback) {
    if (!body) return fallback || '';
    const d = body.detail;
    if (typeof d === 'string') {
      const loc = body.location;
      if (loc && (loc.file || loc.field)) return `${d} (${[loc.file, loc.line, loc.field].filter((x) => x !== null && x !== undefined).join(':')})`;
      return d;
    }
    if (Array.isArray(d)) return d.map((e) => `${(e.loc || []).slice(1).join('.')}: ${e.msg}`).join('; ');
    return fallback || JSON.stringify(body);
  }

  const S = {
    token: localStorage.getItem(KEYS.token),
    email: localStorage.getItem(KEYS.email),
    sessionId: localStorage.getItem(KEYS.session),
    config: { mlflow_ui_url: null },
    tab: 'jobs',
  };

  function authHeaders() {
    return S.token ? { Authorization: 'Bearer ' + S.token } : {};
  }

  /** A single-use ticket (valid a minute) that opens one stream: kind 'job' | 'test_run' | 'chat'. */
  async function streamTicket(kind, id) {
    const body = await api('/stream-tickets', { json: id === undefined ? { kind } : { kind, id } });
    return body.ticket;
  }

  async function api(path, opts) {
    const o = opts || {};
    const headers = authHeaders();
    let body;
    if (o.json !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(o.json);
    } else if (o.form) {
      body = o.form;
    }
    let res;
    try {
      res = await fetch(API + path, { method: o.method || (body ? 'POST' : 'GET'), headers, body });
    } catch (err) {
      throw new ApiError(0, t('network_error'), null);
    }
    if (res.status === 401 && !o.noSignOut && S.token) {
      signOut(t('session_expired'));
      throw new ApiError(401, t('session_expired'), null);
    }
    if (o.blob && res.ok) return res.blob();
    const text = await res.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (err) { data = { detail: text }; }
    }
    if (!res.ok) throw new ApiError(res.status, detailText(data, `${res.status} ${res.statusText}`), data);
    if (o.withHeaders) return { data, headers: res.headers };
    return data;
  }

  // ------------------------------------------------------------------------------------- auth
  let authMode = 'signin';

  function setAuthMode(mode) {
    authMode = mode;
    const up = mode === 'signup';
    $('#auth-title').dataset.i18n = up ? 'sign_up' : 'sign_in';
    $('#auth-submit').dataset.i18n = up ? 'sign_up' : 'sign_in';
    $('#auth-switch').dataset.i18n = up ? 'sign_in' : 'sign_up';
    $('#auth-switch-text').dataset.i18n = up ? 'have_account' : 'no_account';
    $('#auth-hint').hidden = !up;
    $('#auth-password').autocomplete = up ? 'new-password' : 'current-password';
    $('#auth-error').textContent = '';
    applyI18n($('#auth-form'));
  }

  async function signInWith(email, password) {
    const form = new URLSearchParams({ username: email, password });
    let res;
    try {
      res = await fetch(API + '/auth/token', { method: 'POST', body: form });
    } catch (err) {
      throw new Error(t('network_error'));
    }
    const data = await res.json().catch(() => null);
    if (res.status === 401) throw new Error(t('bad_credentials'));
    if (!res.ok) throw new Error(detailText(data, res.statusText));
    return data.access_token;
  }

  async function submitAuth(ev) {
    ev.preventDefault();
    const email = $('#auth-email').value.trim();
    const password = $('#auth-password').value;
    const err = $('#auth-error');
    err.textContent = '';
    if (!email || !password) { err.textContent = t('fill_both'); return; }
    const button = $('#auth-submit');
    button.disabled = true;
    try {
      if (authMode === 'signup') {
        try {
          await api('/auth/register', { json: { email, password }, noSignOut: true });
        } catch (e) {
          throw new Error(e.status === 409 ? t('email_taken') : e.message);
        }
      }
      S.token = await signInWith(email, password);
      S.email = email;
      localStorage.setItem(KEYS.token, S.token);
      localStorage.setItem(KEYS.email, email);
      $('#auth-password').value = '';
      await enterApp();
    } catch (e) {
      err.textContent = e.message;
    } finally {
      button.disabled = false;
    }
  }

  function showAuth(message) {
    $('#app-view').hidden = true;
    $('#tabs').hidden = true;
    $('#user-menu').hidden = true;
    $('#auth-view').hidden = false;
    setAuthMode(authMode);
    if (message) $('#auth-error').textContent = message;
    $('#auth-email').focus();
  }

  async function enterApp() {
    $('#auth-view').hidden = true;
    $('#app-view').hidden = false;
    $('#tabs').hidden = false;
    $('#user-menu').hidden = false;
    $('#user-button').textContent = S.email || '';
    api('/ui/config').then((c) => { S.config = c || S.config; jobStore.renderAll(); }).catch(() => {});
    try {
      const me = await api('/auth/me');
      S.email = me.email;
      localStorage.setItem(KEYS.email, me.email);
      $('#user-button').textContent = me.email;
    } catch (e) {
      if (e.status === 401) return;
    }
    if (!S.token) return;
    const hash = location.hash.replace('#', '');
    setTab(['jobs', 'datasets', 'test'].includes(hash) ? hash : 'jobs');
    restoreChat();
    loadJobs();
    loadDatasets();
    $('#chat-input').focus();
  }

  function signOut(message) {
    jobStore.closeAll();
    testRuns.stopAll();
    S.token = null;
    S.sessionId = null;
    S.testJobId = null;
    localStorage.removeItem(KEYS.token);
    localStorage.removeItem(KEYS.session);
    $('#messages').replaceChildren();
    $('#jobs-list').replaceChildren();
    $('#ds-rows').replaceChildren();
    $('#test-result').replaceChildren();
    $('#test-runs').replaceChildren();
    DS.items = [];
    DS.open.clear();
    closeMenu();
    authMode = 'signin';
    showAuth(message);
  }

  // ----------------------------------------------------------------------------------- tabs
  function setTab(name) {
    S.tab = name;
    $$('.tab').forEach((b) => b.classList.toggle('active', b.dataset.tab === name));
    $$('.panel').forEach((p) => { p.hidden = p.dataset.panel !== name; });
    if (location.hash !== '#' + name) history.replaceState(null, '', '#' + name);
    if (name === 'test') refreshTestPanel();
    if (name === 'datasets' && !DS.loaded) loadDatasets();
    if (name === 'datasets') loadMyWeights();
  }

  // -------------------------------------------------------------------------------------- chat
  let sending = false;

  function scrollChat() {
    const m = $('#messages');
    m.scrollTop = m.scrollHeight;
  }

  function retireActions() {
    $$('#messages .chip, #messages .confirm-actions button').forEach((b) => { b.disabled = true; });
  }

  function addUserMsg(text) {
    const el = h('div', { class: 'msg user', 'data-testid': 'msg-user' }, h('div', { class: 'text', text }));
    $('#messages').append(el);
    scrollChat();
    return el;
  }

  function chips(items, labelOf, onPick) {
    return h('div', { class: 'suggestions' }, items.map((s) => h('button', {
      type: 'button', class: 'chip', 'data-testid': 'suggestion', 'data-value': s, text: labelOf(s), onclick: () => onPick(s),
    })));
  }

  // a job's (or a confirmation's) `pretrained`: {source, detail, pretraining, warning?}
  function weightsText(p) {
    if (!p || !p.source) return '';
    if (p.source === 'scratch') return t('weights_scratch') + (p.warning ? `: ${p.warning}` : '');
    if (p.source === 'job') return t('weights_job', { d: p.detail || '' });
    if (p.source === 'user upload') return t('weights_user', { f: p.file || p.detail || '', s: String(p.sha256 || '').slice(0, 12) });
    return p.pretraining ? t('weights_pretrained', { p: p.pretraining, d: p.detail || '' }) : t('weights_pretrained_plain', { d: p.detail || '' });
  }

  function confirmCard(turn) {
    const s = turn.summary || {};
    const ds = s.dataset || {};
    // settings the server chose from the data (tools.defaults) carry their reason
    const why = (key) => {
      const c = (s.defaults || {})[key];
      return c ? ` — ${lang === 'ko' ? c.why_ko : c.why}` : '';
    };
    const rows = [
      [t('summary_model'), `${s.model_name || '-'}${s.framework ? ` (${s.framework})` : ''}`],
      [t('summary_task'), taskLabel(s.task_type)],
      [t('summary_dataset'), `${ds.name || '-'}${ds.num_images !== undefined ? ` · ${t('images_n', { n: ds.num_images })}` : ''}`],
      [t('summary_epochs'), `${fmtNum(s.epochs)}${s.epochs_default ? ' ' + t('default_mark') : ''}${why('epochs')}`],
      [t('summary_batch'), fmtNum(s.batch_size) + why('batch_size')],
      [t('summary_image_size'), fmtNum(s.image_size) + why('image_size')],
      [t('summary_lr'), fmtNum(s.learning_rate)],
    ];
    for (const [key, label] of [['optimizer', 'summary_optimizer'], ['nbs', 'summary_nbs']]) {
      const c = (s.defaults || {})[key];
      if (c) rows.push([t(label), String(c.value) + why(key)]);
    }
    if (s.preset) rows.push([t('summary_preset'), s.preset]);
    if (s.conversion) rows.push([t('summary_conversion'), s.conversion]);
    if (s.pretrained) rows.push([t('summary_weights'), s.pretrained_text || weightsText(s.pretrained)]);
    rows.push([t('summary_snapshot'), t('snapshot_at_launch')]);
    const est = s.estimate;
    if (est) {
      // a range from the measured speed of earlier jobs, and what it is based on
      const basis = lang === 'ko' ? est.basis_ko : est.basis;
      rows.push([t('summary_estimate'), `${fmtDuration(est.low_s)} – ${fmtDuration(est.high_s)} (~${fmtDuration(est.expected_s)}; ${basis})`]);
    } else if (s.estimated_duration_s !== undefined) rows.push([t('summary_estimate'), '~' + fmtDuration(s.estimated_duration_s)]);
    const ko = turn.language === 'ko';
    const actions = h('div', { class: 'confirm-actions' },
      h('button', { type: 'button', class: 'primary small', 'data-testid': 'confirm', text: t('confirm'), onclick: () => sendChat(ko ? '네' : 'yes') }),
      h('button', {
        type: 'button', class: 'small', 'data-testid': 'change', text: t('change'),
        onclick: () => { const i = $('#chat-input'); i.placeholder = t('change_hint'); i.focus(); },
      }),
      h('button', { type: 'button', class: 'ghost small', 'data-testid': 'cancel', text: t('cancel'), onclick: () => sendChat(ko ? '취소' : 'cancel') }));
    return h('div', { class: 'confirm-card', 'data-testid': 'confirm-card' },
      h('table', {}, h('tbody', {}, rows.map(([k, v]) => h('tr', {}, h('td', { text: k }), h('td', { text: v }))))),
      actions);
  }

  function addAgentMsg(turn, live) {
    const el = h('div', { class: 'msg agent', 'data-testid': 'msg-agent' }, h('div', { class: 'text', text: turn.reply || '' }));
    const confirming = turn.state === 'confirming' && turn.pending === 'confirm' && turn.summary && turn.summary.model_name;
    if (confirming) {
      el.append(confirmCard(turn));
    } else if (turn.suggestions && turn.suggestions.length) {
      const label = (s) => (TASKS.includes(s) ? taskLabel(s) : s);
      el.append(chips(turn.suggestions, label, (s) => sendChat(s)));
    }
    const summary = turn.summary || {};
    if (summary.inference) el.append(predictionNumbers(summary.inference));
    if (summary.test_run) el.append(testRunMini(summary.test_run));
    if (turn.launched && turn.job_id) {
      const model = jobStore.get(turn.job_id);
      el.append(new JobView(model, { compact: true }).el);
      addJobToPanel(model);
    }
    if (!live) $$('.chip, .confirm-actions button', el).forEach((b) => { b.disabled = true; });
    $('#messages').append(el);
    scrollChat();
    return el;
  }

  function addErrorMsg(message) {
    $('#messages').append(h('div', { class: 'msg agent error', 'data-testid': 'msg-error' }, h('div', { class: 'text', text: message })));
    scrollChat();
  }

  function showWelcome() {
    const el = h('div', { class: 'msg agent', 'data-testid': 'welcome' }, h('div', { class: 'text', text: t('welcome') }));
    el.append(chips([t('ex_train'), t('ex_datasets'), t('ex_models')], (s) => s, (s) => sendChat(s)));
    $('#messages').append(el);
  }

  async function restoreChat() {
    $('#messages').replaceChildren();
    if (!S.sessionId) {
      // a new browser: continue the most recent conversation, if any
      try {
        const page = await api('/chat/sessions?limit=1');
        if (page.items && page.items.length) S.sessionId = page.items[0].id;
      } catch (e) { /* start a new one */ }
    }
    if (!S.sessionId) { if (S.token) showWelcome(); return; }
    try {
      const s = await api('/chat/sessions/' + encodeURIComponent(S.sessionId));
      const msgs = s.messages || [];
      msgs.forEach((m, i) => {
        if (m.role === 'user') addUserMsg(m.content);
        else addAgentMsg(Object.assign({}, m.data || {}, { reply: m.content }), i === msgs.length - 1);
      });
      if (!msgs.length) showWelcome();
    } catch (e) {
      S.sessionId = null;
      localStorage.removeItem(KEYS.session);
      if (S.token) showWelcome();
    }
  }

  async function sendChat(text) {
    const message = (text || '').trim();
    if (!message || sending) return;
    sending = true;
    $('#chat-send').disabled = true;
    retireActions();
    addUserMsg(message);
    const thinking = h('div', { class: 'msg agent thinking', 'data-testid': 'thinking' }, h('div', { class: 'text' }));
    $('#messages').append(thinking);
    scrollChat();
    try {
      const body = { message };
      if (S.sessionId) body.session_id = S.sessionId;
      let turn;
      try {
        turn = await api('/chat', { json: body });
      } catch (e) {
        if (e.status !== 404 || !body.session_id) throw e;
        S.sessionId = null; // the session is gone (another server, deleted): start a new one
        delete body.session_id;
        turn = await api('/chat', { json: body });
      }
      S.sessionId = turn.session_id;
      localStorage.setItem(KEYS.session, turn.session_id);
      thinking.remove();
      addAgentMsg(turn, true);
      if (turn.job_id && !turn.launched && jobStore.has(turn.job_id)) jobStore.get(turn.job_id).refresh();
      if (turn.launched) loadTestJobs();
    } catch (e) {
      thinking.remove();
      if (S.token) addErrorMsg(e.message);
    } finally {
      sending = false;
      $('#chat-send').disabled = false;
      $('#chat-input').placeholder = t('chat_placeholder');
    }
  }

  // -------------------------------------------------------------------------------------- jobs
  function splitSeries(names) {
    const loss = names.filter((n) => /loss/i.test(n));
    const other = names.filter((n) => !/loss/i.test(n) && !/^lr\b|\/lr|^lr\//i.test(n) && !/time|epoch/i.test(n));
    return { loss, other: other.slice(0, 5) };
  }

  /** An SVG line chart: one polyline per series over the epochs, a circle per point. */
  function chartSvg(kind, title, epochs, series) {
    const W = 300; const H = 172; const L = 40; const R = 10; const T = 22; const B = 122;
    const names = Object.keys(series);
    const values = [];
    names.forEach((n) => series[n].forEach((v) => { if (Number.isFinite(v)) values.push(v); }));
    let svg = `<svg class="chart chart-${kind}" data-testid="chart-${kind}" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(title)}">`;
    svg += `<text class="title" x="${L}" y="14">${esc(title)}</text>`;
    if (!epochs.length || !values.length) {
      svg += `<text class="empty" x="${W / 2}" y="${(T + B) / 2}" text-anchor="middle">${esc(t('no_points'))}</text></svg>`;
      return svg;
    }
    let lo = Math.min(...values); let hi = Math.max(...values);
    if (lo === hi) { const d = Math.abs(lo) * 0.1 || 1; lo -= d; hi += d; }
    const pad = (hi - lo) * 0.08; lo -= pad; hi += pad;
    const e0 = epochs[0]; const e1 = epochs[epochs.length - 1];
    const x = (e) => (e1 === e0 ? (L + W - R) / 2 : L + ((e - e0) / (e1 - e0)) * (W - R - L));
    const y = (v) => B - ((v - lo) / (hi - lo)) * (B - T);
    for (let i = 0; i <= 3; i++) {
      const v = lo + ((hi - lo) * i) / 3; const yy = y(v).toFixed(1);
      svg += `<line class="grid" x1="${L}" x2="${W - R}" y1="${yy}" y2="${yy}"/><text x="${L - 4}" y="${yy}" dy="3" text-anchor="end">${esc(fmtNum(v))}</text>`;
    }
    const step = Math.max(1, Math.ceil(epochs.length / 8));
    epochs.forEach((e, i) => {
      if (i % step === 0 || i === epochs.length - 1) svg += `<text x="${x(e).toFixed(1)}" y="${B + 13}" text-anchor="middle">${e}</text>`;
    });
    names.forEach((n, si) => {
      const color = COLORS[si % COLORS.length];
      let d = ''; let pen = false;
      series[n].forEach((v, i) => {
        if (!Number.isFinite(v)) { pen = false; return; }
        d += `${pen ? 'L' : 'M'}${x(epochs[i]).toFixed(1)} ${y(v).toFixed(1)} `;
        pen = true;
      });
      if (d) svg += `<path d="${d.trim()}" fill="none" stroke="${color}" stroke-width="2" stroke-linejoin="round"/>`;
      series[n].forEach((v, i) => {
        if (!Number.isFinite(v)) return;
        svg += `<circle class="pt" data-series="${esc(n)}" data-epoch="${epochs[i]}" cx="${x(epochs[i]).toFixed(1)}" cy="${y(v).toFixed(1)}" r="3" fill="${color}"><title>${esc(n)} @ ${epochs[i]}: ${esc(fmtNum(v))}</title></circle>`;
      });
      const lx = L + (si % 2) * 130; const ly = B + 28 + Math.floor(si / 2) * 12;
      svg += `<rect x="${lx}" y="${ly - 7}" width="10" height="3" fill="${color}"/><text x="${lx + 14}" y="${ly - 3}">${esc(n)}</text>`;
    });
    return svg + '</svg>';
  }

  class JobModel {
    constructor(id) {
      this.id = id;
      this.job = null;
      this.epochs = new Map(); // epoch -> metrics
      this.ckpt = new Map(); // epoch -> Set(names)
      this.lastSeq = 0;
      this.seqs = []; // every seq received over the socket, in order (tests check it is gapless)
      this.progress = null;
      this.ws = null;
      this.connected = false;
      this.retries = 0;
      this.timer = null;
      this.pollTimer = null;
      this.views = new Set();
      this.dead = false;
      this.loaded = null;
      this.error = null;
      this.raf = 0;
      this.hasLast = false;
      this.hasBest = false;
    }

    get status() { return this.job ? this.job.status : 'queued'; }

    get active() { return !TERMINAL.has(this.status); }

    load() {
      if (!this.loaded) this.loaded = this.refresh();
      return this.loaded;
    }

    seed(job) {
      this.job = Object.assign({}, job);
      this.mergeCheckpoints(job.checkpoints);
      if (!this.loaded) this.loaded = this.loadMetrics().then(() => this.ensureLive());
      this.render();
    }

    async refresh() {
      try {
        const job = await api(`/jobs/${this.id}`);
        this.job = Object.assign(this.job || {}, job);
        this.mergeCheckpoints(job.checkpoints);
        await this.loadMetrics();
        this.error = null;
      } catch (e) {
        this.error = e.message;
        if (e.status === 404 || e.status === 401) this.dead = true;
      }
      this.render();
      this.ensureLive();
    }

    async loadMetrics() {
      try {
        const m = await api(`/jobs/${this.id}/metrics`);
        (m.epochs || []).forEach((e, i) => {
          const vals = {};
          for (const [k, arr] of Object.entries(m.series || {})) {
            const v = arr[i];
            if (v !== null && v !== undefined) vals[k] = v;
          }
          if (!this.epochs.has(e) || Object.keys(vals).length) this.epochs.set(e, vals);
        });
        for (const [e, names] of Object.entries(m.checkpoints || {})) names.forEach((n) => this.addCkpt(Number(e), n));
        if (this.job && m.best_epoch !== undefined && m.best_epoch !== null) this.job.best_epoch = m.best_epoch;
      } catch (e) {
        this.error = e.message;
      }
      this.render();
    }

    mergeCheckpoints(list) {
      (list || []).forEach((c) => {
        if (c.name === 'last.pt') this.hasLast = true;
        if (c.name === 'best.pt') this.hasBest = true;
        if (c.epoch !== null && c.epoch !== undefined) this.addCkpt(Number(c.epoch), c.name);
      });
    }

    /** best.pt / last.pt of `epoch`: a name lives at one epoch (a later upload moves it). */
    addCkpt(epoch, name) {
      const short = String(name || '').replace(/\.pt$/, '');
      if (short === 'last') this.hasLast = true;
      if (short === 'best') this.hasBest = true;
      this.ckpt.forEach((names, e) => { if (e !== epoch) { names.delete(short); if (!names.size) this.ckpt.delete(e); } });
      if (!this.ckpt.has(epoch)) this.ckpt.set(epoch, new Set());
      this.ckpt.get(epoch).add(short);
    }

    ensureLive() {
      if (this.dead || !S.token) return;
      if (this.active && !this.ws && !this.timer && !this.connecting) this.connect();
      this.pollQueue();
    }

    pollQueue() {
      if (this.pollTimer || this.status !== 'queued' || this.dead) return;
      this.pollTimer = setTimeout(async () => {
        this.pollTimer = null;
        if (this.dead || !S.token || this.status !== 'queued') return;
        try {
          const job = await api(`/jobs/${this.id}`);
          if (this.status === 'queued') { this.job = Object.assign(this.job || {}, job); this.render(); }
        } catch (e) { /* the socket reports changes anyway */ }
        this.pollQueue();
      }, 3000);
    }

    /** A ticket first (the token stays out of the URL), then the socket. */
    connect() {
      if (this.connecting) return;
      this.connecting = true;
      streamTicket('job', this.id).then((ticket) => {
        this.connecting = false;
        if (!this.dead && !this.ws && S.token) this.open(ticket);
      }, (e) => {
        this.connecting = false;
        if (this.dead || !S.token) return;
        if (e && (e.status === 404 || e.status === 401)) { this.render(); return; } // deleted, or signed out
        this.retry();
      });
    }

    retry() {
      const delay = Math.min(400 * 2 ** this.retries, 5000);
      this.retries += 1;
      this.render();
      this.timer = setTimeout(() => { this.timer = null; if (!this.dead && !this.ws && S.token) this.connect(); }, delay);
    }

    open(ticket) {
      const proto = location.protocol === 'https:' ? 'wss' : 'ws';
      const url = `${proto}://${location.host}/ws/jobs/${this.id}?after=${this.lastSeq}&ticket=${encodeURIComponent(ticket)}`;
      const ws = new WebSocket(url);
      this.ws = ws;
      ws.onopen = () => { if (this.ws === ws) { this.retries = 0; this.connected = true; this.render(); } };
      ws.onmessage = (msg) => {
        if (this.ws !== ws) return;
        let ev;
        try { ev = JSON.parse(msg.data); } catch (e) { return; }
        this.handle(ev);
      };
      ws.onclose = (e) => {
        if (this.ws !== ws) return;
        this.ws = null;
        this.connected = false;
        if (this.dead || !S.token) return;
        if (e.code === 4404 || e.code === 4410 || e.code === 1008) { this.render(); return; } // 4410: deleted
        if (e.code === 1000) {
          // the job finished (or had nothing after `after`): the REST view has its checkpoints; a
          // job resumed meanwhile is followed again from the last seq
          this.timer = setTimeout(() => { this.timer = null; this.refresh(); }, 150);
          return;
        }
        this.retry();
      };
    }

    /** Drop the socket as a network failure would (the model reconnects with after=lastSeq). */
    drop() {
      if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.close(4000, 'dropped');
    }

    close() {
      this.dead = true;
      clearTimeout(this.timer);
      clearTimeout(this.pollTimer);
      this.timer = null;
      this.pollTimer = null;
      const ws = this.ws;
      this.ws = null;
      if (ws) {
        if (ws.readyState === WebSocket.CONNECTING) ws.onopen = () => ws.close(1000);
        else if (ws.readyState === WebSocket.OPEN) ws.close(1000);
      }
    }

    handle(ev) {
      if (!ev || typeof ev.seq !== 'number' || ev.type === 'ping') return;
      if (ev.seq <= this.lastSeq) return; // already seen (a replay overlapping the live stream)
      this.lastSeq = ev.seq;
      this.seqs.push(ev.seq);
      const d = ev.data || {};
      const job = this.job || (this.job = { id: this.id, status: 'queued', epochs: 0, epochs_completed: 0 });
      switch (ev.type) {
        case 'status':
          if (d.status && !d.ignored) {
            job.status = d.status;
            if (d.status !== 'queued') job.queue_position = 0;
            if (d.status === 'failed' && (d.error || d.message)) job.error = d.error || d.message;
            if (TERMINAL.has(d.status)) this.progress = null;
          }
          if (d.queue_position !== undefined) job.queue_position = d.queue_position;
          break;
        case 'epoch': {
          const e = Number(d.epoch);
          if (e) {
            const m = d.metrics || {};
            if (!this.epochs.has(e) || Object.keys(m).length) this.epochs.set(e, m);
            job.epochs_completed = Math.max(job.epochs_completed || 0, e);
          }
          if (d.epochs) job.epochs = d.epochs;
          this.progress = { epoch: e, batch: null, batches: null, eta_s: d.eta_s, at: Date.now() };
          break;
        }
        case 'batch':
          this.progress = { epoch: d.epoch, batch: d.batch, batches: d.batches, eta_s: d.eta_s, at: Date.now() };
          break;
        case 'checkpoint':
          if (d.epoch !== null && d.epoch !== undefined) this.addCkpt(Number(d.epoch), d.name);
          break;
        case 'done':
          if (d.best_epoch !== undefined) job.best_epoch = d.best_epoch;
          if (d.best_metric_name) { job.best_metric_name = d.best_metric_name; job.best_metric = d.best_metric; }
          break;
        case 'error':
          job.error = d.message || job.error;
          break;
        default:
          break;
      }
      this.render();
    }

    fraction() {
      const job = this.job || {};
      if (job.status === 'completed') return 1;
      const n = Number(job.epochs) || 0;
      if (!n) return 0;
      const p = this.progress;
      if (p && p.batch && p.batches && p.epoch) return Math.min(1, (Number(p.epoch) - 1 + p.batch / p.batches) / n);
      return Math.min(1, (Number(job.epochs_completed) || 0) / n);
    }

    eta() {
      const p = this.progress;
      if (!p || p.eta_s === null || p.eta_s === undefined || !this.active) return null;
      return Math.max(0, Number(p.eta_s) - (Date.now() - p.at) / 1000);
    }

    render() {
      if (this.raf) return;
      this.raf = requestAnimationFrame(() => {
        this.raf = 0;
        this.views.forEach((v) => (v.el.isConnected ? v.update() : this.views.delete(v)));
      });
    }
  }

  const jobStore = {
    map: new Map(),
    has(id) { return this.map.has(Number(id)); },
    get(id, seed) {
      const key = Number(id);
      let m = this.map.get(key);
      if (!m) {
        m = new JobModel(key);
        this.map.set(key, m);
        if (seed) m.seed(seed); else m.load();
      }
      return m;
    },
    renderAll() { this.map.forEach((m) => m.render()); },
    closeAll() { this.map.forEach((m) => m.close()); this.map.clear(); },
  };

  class JobView {
    constructor(model, opts) {
      this.model = model;
      this.compact = Boolean(opts && opts.compact);
      const el = h('div', { class: 'job-card', 'data-testid': 'job-card', 'data-job-id': model.id });
      this.title = h('span', { class: 'job-title' });
      this.badge = h('span', { class: 'badge', 'data-testid': 'job-status' });
      this.queue = h('span', { class: 'badge queued', 'data-testid': 'job-queue', hidden: true });
      this.conn = h('span', { class: 'muted small' });
      this.weights = h('p', { class: 'muted small', 'data-testid': 'job-weights', hidden: true });
      this.stopBtn = h('button', { type: 'button', class: 'small danger', 'data-testid': 'job-stop', onclick: () => this.act('stop') });
      this.resumeBtn = h('button', { type: 'button', class: 'small', 'data-testid': 'job-resume', onclick: () => this.act('resume') });
      this.testBtn = h('button', { type: 'button', class: 'small', 'data-testid': 'job-test', onclick: () => openTestFor(model.id) });
      this.mlflow = h('a', { class: 'small', target: '_blank', rel: 'noopener', 'data-testid': 'job-mlflow', hidden: true });
      // downloads: each click asks for a short-lived signed link and opens it (no token in the URL)
      const dl = (what, key) => h('button', { type: 'button', class: 'small', 'data-testid': `job-download-${what}`,
        hidden: true, text: t(key), title: t('dl_title'), onclick: () => downloadLink(model.id, what) });
      this.dlBest = dl('best', 'dl_best');
      this.dlLast = dl('last', 'dl_last');
      this.dlCard = dl('model-card', 'dl_card');
      this.bar = h('div', { class: 'bar' });
      this.barLabel = h('span', { class: 'label', 'data-testid': 'job-progress-label' });
      this.progress = h('div', { class: 'progress', 'data-testid': 'job-progress' }, this.bar, this.barLabel);
      this.errorEl = h('p', { class: 'error', 'data-testid': 'job-error' });
      this.charts = h('div', { class: 'charts' });
      this.tableBody = h('tbody');
      this.tableHead = h('thead');
      this.summary = h('summary', {});
      this.details = h('details', { class: 'epochs', 'data-testid': 'job-epochs', hidden: true, open: !this.compact }, this.summary,
        h('div', { class: 'scroll-x' }, h('table', { class: 'table' }, this.tableHead, this.tableBody)));
      el.append(
        h('div', { class: 'job-head' }, this.title, this.badge, this.queue, this.conn,
          h('div', { class: 'job-actions' }, this.mlflow, this.dlBest, this.dlLast, this.dlCard, this.testBtn, this.stopBtn,
            this.resumeBtn)),
        this.weights, this.progress, this.errorEl, this.charts, this.details);
      this.el = el;
      this.chartKey = '';
      this.tableKey = '';
      model.views.add(this);
      this.update();
    }

    async act(what) {
      const b = what === 'stop' ? this.stopBtn : this.resumeBtn;
      b.disabled = true;
      try {
        const job = await api(`/jobs/${this.model.id}/${what}`, { method: 'POST' });
        this.model.job = Object.assign(this.model.job || {}, job);
        if (what === 'resume') { this.model.dead = false; this.model.ensureLive(); }
      } catch (e) {
        toast(e.message, 'error');
      } finally {
        b.disabled = false;
        this.model.render();
      }
    }

    update() {
      const m = this.model;
      const job = m.job || { status: 'queued' };
      this.title.textContent = `#${m.id} ${job.model_name || ''}${job.dataset_name ? ' · ' + job.dataset_name : ''}`;
      this.badge.textContent = statusLabel(job.status);
      this.weights.textContent = weightsText(job.pretrained);
      this.weights.hidden = !this.weights.textContent;
      this.badge.className = 'badge ' + job.status;
      this.badge.dataset.status = job.status;
      this.el.dataset.status = job.status;
      const qp = Number(job.queue_position) || 0;
      this.queue.hidden = !(job.status === 'queued' && qp > 0);
      this.queue.textContent = t('queue_pos', { n: qp });
      this.conn.textContent = m.active && !m.connected && m.ws === null && m.retries > 0 ? t('reconnecting') : '';
      this.stopBtn.textContent = job.stop_requested && m.active ? t('stop_requested') : t('stop');
      this.stopBtn.hidden = !m.active;
      this.stopBtn.disabled = Boolean(job.stop_requested);
      this.resumeBtn.textContent = t('resume');
      this.resumeBtn.hidden = !(RESUMABLE.has(job.status) && m.hasLast); // resuming needs a stored last.pt
      this.testBtn.textContent = t('test_it');
      const usable = TERMINAL.has(job.status) && (m.hasBest || m.hasLast); // stopped/failed jobs keep their checkpoints
      this.testBtn.hidden = !usable;
      this.dlBest.hidden = !(TERMINAL.has(job.status) && m.hasBest);
      this.dlLast.hidden = !(TERMINAL.has(job.status) && m.hasLast);
      this.dlCard.hidden = !usable;
      [this.dlBest, this.dlLast, this.dlCard].forEach((b, i) => { b.textContent = t(['dl_best', 'dl_last', 'dl_card'][i]); });
      const base = S.config && S.config.mlflow_ui_url;
      this.mlflow.hidden = !(base && job.mlflow_run_id);
      if (base && job.mlflow_run_id) {
        this.mlflow.href = `${base}/#/runs/${encodeURIComponent(job.mlflow_run_id)}`;
        this.mlflow.textContent = t('mlflow');
      }
      // progress bar with ETA
      const frac = m.fraction();
      this.bar.style.width = `${(frac * 100).toFixed(1)}%`;
      this.progress.dataset.fraction = frac.toFixed(3);
      const parts = [];
      const n = Number(job.epochs) || 0;
      const p = m.progress;
      const epochNow = p && p.batch ? p.epoch : job.epochs_completed || 0;
      if (n) parts.push(t('epoch_of', { e: epochNow || 0, n }));
      if (p && p.batch && p.batches && m.active) parts.push(t('batch_of', { b: p.batch, n: p.batches }));
      parts.push(t('done_pct', { p: Math.round(frac * 100) }));
      const eta = m.eta();
      if (eta !== null) parts.push(t('eta', { t: fmtDuration(eta) }));
      this.barLabel.textContent = parts.join(' · ');
      this.errorEl.textContent = job.status === 'failed' ? job.error || '' : m.error && !m.job ? m.error : '';
      this.updateCharts();
    }

    updateCharts() {
      const m = this.model;
      const epochs = Array.from(m.epochs.keys()).sort((a, b) => a - b);
      const names = [];
      epochs.forEach((e) => Object.keys(m.epochs.get(e) || {}).forEach((k) => { if (!names.includes(k)) names.push(k); }));
      const ck = Array.from(m.ckpt.entries()).map(([e, s]) => `${e}:${Array.from(s).sort().join('+')}`).join(',');
      const key = `${lang}|${m.active}|${epochs.join(',')}|${names.join(',')}|${ck}|${JSON.stringify(epochs.map((e) => m.epochs.get(e)))}`;
      if (key === this.chartKey) return;
      this.chartKey = key;
      const { loss, other } = splitSeries(names);
      const pick = (list) => Object.fromEntries(list.map((k) => [k, epochs.map((e) => {
        const v = (m.epochs.get(e) || {})[k];
        return v === null || v === undefined ? NaN : Number(v);
      })]));
      this.charts.innerHTML = chartSvg('loss', t('loss_chart'), epochs, pick(loss))
        + chartSvg('metrics', t('metrics_chart'), epochs, pick(other));
      this.charts.hidden = !epochs.length && !m.active; // a job that ended before its first epoch
      // per-epoch table with checkmarks where checkpoints are stored
      this.details.hidden = !epochs.length;
      this.summary.textContent = `${t('per_epoch')} (${epochs.length})`;
      const cols = [...loss, ...other].slice(0, this.compact ? 4 : 7);
      this.tableHead.replaceChildren(h('tr', {}, h('th', { text: t('epoch') }),
        cols.map((c) => h('th', { class: 'num', text: c })), h('th', { text: t('checkpoint') })));
      this.tableBody.replaceChildren(...epochs.map((e) => {
        const vals = m.epochs.get(e) || {};
        const names2 = m.ckpt.get(e);
        return h('tr', { 'data-epoch': e },
          h('td', { text: e }),
          cols.map((c) => h('td', { class: 'num', text: fmtNum(vals[c]) })),
          h('td', { class: 'ckpt', 'data-testid': names2 ? 'ckpt-mark' : null, title: names2 ? Array.from(names2).join(', ') : null, text: names2 ? `✓ ${Array.from(names2).sort().join(', ')}` : '' }));
      }));
    }
  }

  function addJobToPanel(model) {
    const list = $('#jobs-list');
    if ($(`.job-card[data-job-id="${model.id}"]`, list)) return;
    const empty = $('.empty-jobs', list);
    if (empty) empty.remove();
    list.prepend(new JobView(model).el);
  }

  async function loadJobs() {
    const list = $('#jobs-list');
    try {
      const page = await api('/jobs?limit=50');
      const items = page.items || [];
      list.replaceChildren();
      if (!items.length) list.append(h('p', { class: 'muted empty-jobs', text: t('no_jobs') }));
      items.forEach((job) => {
        const model = jobStore.has(job.id) ? jobStore.get(job.id) : jobStore.get(job.id, job);
        list.append(new JobView(model).el);
        if (jobStore.has(job.id) && model.loaded) model.ensureLive();
      });
    } catch (e) {
      if (e.status !== 401) toast(e.message, 'error');
    }
  }

  setInterval(() => { jobStore.map.forEach((m) => { if (m.active && m.progress && m.progress.eta_s !== undefined) m.render(); }); }, 1000);

  // ---------------------------------------------------------------------------------- datasets
  const DS = { items: [], total: 0, q: '', sort: '-updated_at', mine: false, open: new Set(), pages: new Map(), newId: null, loaded: false, seq: 0 };
  const blobUrls = new Map(); // dataset id -> [object URLs] of its gallery

  // ------------------------------------------------------------------------- my weights
  // the user's own weights files (POST/GET/DELETE /weights/mine): a job starts from one when the
  // chat hears "use my weights" (or the intent names init_weights)
  async function loadMyWeights() {
    const list = $('#mw-list');
    try {
      const items = (await api('/weights/mine')) || [];
      list.replaceChildren(...(items.length ? items.map((w) => h('div', { class: 'row mw-item', 'data-testid': 'mw-item' },
        h('span', { text: `#${w.id} ${w.name} · ${w.model_name} · ${fmtBytes(w.size)} · sha ${String(w.sha256).slice(0, 12)}` }),
        h('button', { type: 'button', class: 'ghost small', text: t('mw_delete'), onclick: () => deleteMyWeights(w.id) }),
      )) : [h('p', { class: 'muted small', text: t('mw_none') })]));
    } catch (err) {
      list.replaceChildren(h('p', { class: 'error', text: err.message }));
    }
  }

  async function deleteMyWeights(id) {
    try { await api(`/weights/mine/${Number(id)}`, { method: 'DELETE' }); } catch (err) { toast(err.message, 'error'); }
    loadMyWeights();
  }

  async function submitMyWeights(e) {
    e.preventDefault();
    const file = $('#mw-file').files[0];
    const model = $('#mw-model').value.trim();
    $('#mw-error').textContent = '';
    if (!model || !file) { $('#mw-error').textContent = t('mw_need'); return; }
    const form = new FormData();
    form.append('model', model);
    form.append('file', file);
    $('#mw-submit').disabled = true;
    try {
      const w = await api('/weights/mine', { form });
      toast(t('mw_done', { name: w.name, id: w.id }));
      $('#mw-file').value = '';
      loadMyWeights();
    } catch (err) {
      $('#mw-error').textContent = err.message;
    } finally {
      $('#mw-submit').disabled = false;
    }
  }

  async function loadDatasets() {
    const mySeq = ++DS.seq;
    const params = new URLSearchParams({ sort: DS.sort, limit: '200' });
    if (DS.q) params.set('q', DS.q);
    if (DS.mine) params.set('mine', 'true');
    try {
      const { data, headers } = await api('/datasets?' + params.toString(), { withHeaders: true });
      if (mySeq !== DS.seq) return; // a newer search answered first
      DS.items = data || [];
      DS.total = Number(headers.get('X-Total-Count') || DS.items.length);
      DS.loaded = true;
      renderDatasets();
    } catch (e) {
      if (e.status !== 401) toast(e.message, 'error');
    }
  }

  function className(ds, cid) {
    const names = ds.class_names || [];
    return names[Number(cid) - 1] !== undefined ? names[Number(cid) - 1] : `#${cid}`;
  }

  function renderDatasets() {
    $$('.ds-table th[data-sort]').forEach((th) => {
      const key = th.dataset.sort;
      th.classList.toggle('sorted-asc', DS.sort === key);
      th.classList.toggle('sorted-desc', DS.sort === '-' + key);
    });
    const body = $('#ds-rows');
    DS.items.forEach((d) => { if (!DS.open.has(d.id)) releaseGallery(d.id); });
    const rows = [];
    if (!DS.items.length) rows.push(h('tr', {}, h('td', { colspan: 5, class: 'muted', text: t('no_datasets') })));
    DS.items.forEach((d) => {
      const open = DS.open.has(d.id);
      const classes = d.class_names || [];
      const row = h('tr', {
        class: `ds-row${open ? ' open' : ''}${DS.newId === d.id ? ' new' : ''}`,
        'data-testid': 'ds-row', 'data-dataset-id': d.id, 'data-name': d.name, tabindex: 0, 'aria-expanded': String(open),
        onclick: () => toggleDataset(d.id),
        onkeydown: (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); toggleDataset(d.id); } },
      },
      h('td', {}, h('strong', { text: d.name }), d.is_owner ? '' : h('span', { class: 'tag', text: t('owner_other') })),
      h('td', { class: 'num', text: d.num_images }),
      h('td', {}, classes.slice(0, 4).map((c) => h('span', { class: 'tag', text: c })), (d.class_count || classes.length) > 4 ? `+${(d.class_count || classes.length) - 4}` : ''),
      h('td', { text: t(d.visibility) }),
      h('td', { text: fmtDate(d.updated_at) }));
      rows.push(row);
      if (open) rows.push(h('tr', { class: 'ds-detail', 'data-testid': 'ds-detail', 'data-dataset-id': d.id }, h('td', { colspan: 5 }, datasetDetail(d))));
    });
    body.replaceChildren(...rows);
    DS.newId = null;
    $('#ds-pager').textContent = DS.total > DS.items.length ? `${DS.items.length} / ${DS.total}` : '';
  }

  function toggleDataset(id) {
    if (DS.open.has(id)) DS.open.delete(id); else DS.open.add(id);
    renderDatasets();
  }

  function section(title, ...content) {
    return h('div', { class: 'section' }, h('h4', { text: title }), ...content);
  }

  function datasetDetail(d) {
    const wrap = h('div', {});
    if (d.description) wrap.append(h('p', { text: d.description }));
    wrap.append(h('p', { class: 'muted' },
      `${d.is_owner ? t('owner_you') : t('owner_other')} · ${d.labeled ? t('labeled') : t('unlabeled')} · ${d.num_annotations} ${t('annotations')} · ${fmtBytes(d.total_bytes)}${d.format_version ? ' · DICE ' + d.format_version : ''}`));
    const caps = d.capabilities || {};
    wrap.append(section(t('compatibility'), h('div', { class: 'compat', 'data-testid': 'ds-compat' }, TASKS.map((task) => {
      const c = caps[task] || { status: 'incompatible', reason: '' };
      const tip = [c.conversion, c.reason].filter(Boolean).join(' — ');
      return h('span', { class: `badge ${c.status}`, title: tip, 'data-task': task, 'data-status': c.status },
        `${taskLabel(task)}: ${t('compat_' + c.status)}`);
    }))));
    const snaps = h('div', { 'data-testid': 'ds-snapshots' }, h('span', { class: 'muted', text: '…' }));
    const snapActions = d.is_owner && d.labeled ? h('button', {
      type: 'button', class: 'small', text: t('create_snapshot'),
      onclick: async (e) => {
        e.target.disabled = true;
        try { await api(`/datasets/${d.id}/snapshots`, { method: 'POST', json: {} }); loadSnapshots(d, snaps); } catch (err) { toast(err.message, 'error'); }
        e.target.disabled = false;
      },
    }) : null;
    wrap.append(section(t('snapshots'), snaps, snapActions));
    loadSnapshots(d, snaps);
    if (d.is_owner) wrap.append(section(t('owner_actions'), ownerActions(d)));
    const gallery = h('div', { class: 'gallery', 'data-testid': 'gallery' });
    const pager = h('div', { class: 'pager' });
    wrap.append(section(t('gallery'), gallery, pager));
    loadGallery(d, gallery, pager, DS.pages.get(d.id) || 0);
    return wrap;
  }

  async function loadSnapshots(d, el) {
    try {
      const list = await api(`/datasets/${d.id}/snapshots`);
      if (!list.length) { el.replaceChildren(h('span', { class: 'muted', text: t('no_snapshots') })); return; }
      el.replaceChildren(h('ul', {}, list.map((s) => h('li', { 'data-testid': 'snapshot' },
        `v${s.version} ${s.name} · ${s.num_images} ${t('images').toLowerCase()} · ${s.num_annotations} ${t('annotations')} · ${fmtDate(s.created_at)}`,
        s.status === 'broken' ? h('span', { class: 'badge failed', text: ` ${t('broken')}` }) : ''))));
    } catch (e) {
      el.replaceChildren(h('span', { class: 'error', text: e.message }));
    }
  }

  function ownerActions(d) {
    const vis = h('select', { 'data-testid': 'ds-visibility-edit', onclick: (e) => e.stopPropagation() },
      ['private', 'public'].map((v) => h('option', { value: v, selected: d.visibility === v, text: t(v) })));
    vis.addEventListener('change', async () => {
      try {
        const updated = await api(`/datasets/${d.id}`, { method: 'PATCH', json: { visibility: vis.value } });
        Object.assign(d, updated);
        renderDatasets();
      } catch (e) { toast(e.message, 'error'); vis.value = d.visibility; }
    });
    const del = h('button', { type: 'button', class: 'small danger', 'data-testid': 'ds-delete', text: t('delete') });
    del.addEventListener('click', async () => {
      if (!del.classList.contains('armed')) {
        del.classList.add('armed');
        del.textContent = t('really_delete');
        setTimeout(() => { if (del.isConnected) { del.classList.remove('armed'); del.textContent = t('delete'); } }, 4000);
        return;
      }
      del.disabled = true;
      try {
        await api(`/datasets/${d.id}`, { method: 'DELETE' });
        DS.open.delete(d.id);
        releaseGallery(d.id);
        toast(t('deleted', { name: d.name }));
        loadDatasets();
      } catch (e) { toast(e.message, 'error'); del.disabled = false; }
    });
    const add = h('input', { type: 'file', multiple: true, hidden: true, webkitdirectory: true });
    const prog = progressBar();
    const addBtn = h('button', { type: 'button', class: 'small', text: t('add_files'), onclick: () => add.click() });
    add.addEventListener('change', async () => {
      if (!add.files.length) return;
      const fd = new FormData();
      Array.from(add.files).forEach((f) => fd.append('files', f, f.webkitRelativePath || f.name));
      try {
        await uploadWithProgress(d.id, fd, prog);
        loadDatasets();
      } catch (e) { toast(e.message, 'error'); }
      prog.el.hidden = true;
    });
    return h('div', { class: 'row' },
      h('label', { class: 'check' }, t('visibility'), vis), addBtn, add, del, prog.el);
  }

  function releaseGallery(id) {
    (blobUrls.get(id) || []).forEach((u) => URL.revokeObjectURL(u));
    blobUrls.delete(id);
  }

  function overlay(img, anns, ds) {
    const W = img.width || 1; const H = img.height || 1;
    const unit = Math.max(W, H);
    const ns = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
    svg.setAttribute('preserveAspectRatio', 'none');
    svg.setAttribute('class', 'overlay');
    const add = (tag, attrs) => {
      const el = document.createElementNS(ns, tag);
      for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
      svg.append(el);
      return el;
    };
    (anns || []).forEach((a) => {
      const color = COLORS[(Number(a.category_id) || 0) % COLORS.length];
      const stroke = { fill: 'none', stroke: color, 'stroke-width': 2, 'vector-effect': 'non-scaling-stroke' };
      if (Array.isArray(a.segmentation)) {
        a.segmentation.forEach((poly) => {
          if (!Array.isArray(poly) || poly.length < 6) return;
          const pts = [];
          for (let i = 0; i + 1 < poly.length; i += 2) pts.push(`${poly[i]},${poly[i + 1]}`);
          add('polygon', Object.assign({}, stroke, { points: pts.join(' '), fill: color, 'fill-opacity': 0.2, class: 'ann-polygon' }));
        });
      }
      if (Array.isArray(a.rotated_bbox) && a.rotated_bbox.length >= 5) {
        const [cx, cy, w, hh, ang] = a.rotated_bbox.map(Number);
        const r = (ang * Math.PI) / 180; const c = Math.cos(r); const s = Math.sin(r);
        const pts = [[-w / 2, -hh / 2], [w / 2, -hh / 2], [w / 2, hh / 2], [-w / 2, hh / 2]]
          .map(([px, py]) => `${cx + px * c - py * s},${cy + px * s + py * c}`);
        add('polygon', Object.assign({}, stroke, { points: pts.join(' '), class: 'ann-rbox' }));
      } else if (Array.isArray(a.bbox) && a.bbox.length === 4) {
        const [bx, by, bw, bh] = a.bbox.map(Number);
        add('rect', Object.assign({}, stroke, { x: bx, y: by, width: bw, height: bh, class: 'ann-box' }));
        const label = add('text', { x: bx + unit * 0.01, y: by + unit * 0.07, fill: color, 'font-size': unit * 0.07, class: 'ann-label' });
        label.textContent = className(ds, a.category_id);
      }
      if (Array.isArray(a.keypoints)) {
        for (let i = 0; i + 2 < a.keypoints.length; i += 3) {
          const [kx, ky, v] = [a.keypoints[i], a.keypoints[i + 1], a.keypoints[i + 2]];
          if (!v || kx === undefined) continue;
          add('circle', { cx: kx, cy: ky, r: unit * 0.015, fill: color, stroke: '#fff', 'stroke-width': 1, 'vector-effect': 'non-scaling-stroke', class: 'ann-kp' });
        }
      }
    });
    return svg;
  }

  async function loadGallery(d, grid, pager, page) {
    DS.pages.set(d.id, page);
    releaseGallery(d.id);
    grid.replaceChildren(h('span', { class: 'muted', text: '…' }));
    let data;
    try {
      data = await api(`/datasets/${d.id}/images?offset=${page * GALLERY_PAGE}&limit=${GALLERY_PAGE}&include_annotations=true`);
    } catch (e) {
      grid.replaceChildren(h('span', { class: 'error', text: e.message }));
      return;
    }
    if (!grid.isConnected) return;
    const urls = [];
    blobUrls.set(d.id, urls);
    grid.replaceChildren(...(data.items.length ? [] : [h('span', { class: 'muted', text: t('no_images') })]));
    data.items.forEach((img) => {
      const im = h('img', { alt: img.file_name, loading: 'lazy' });
      const thumb = h('div', { class: 'thumb', style: `aspect-ratio: ${img.width || 1} / ${img.height || 1}` }, im, overlay(img, img.annotations, d));
      const labels = (img.annotations || []).filter((a) => !a.bbox && !a.segmentation && !a.keypoints && !a.rotated_bbox)
        .map((a) => className(d, a.category_id));
      grid.append(h('figure', { 'data-testid': 'gallery-item', 'data-image-id': img.id },
        thumb, h('figcaption', { title: img.file_name, text: labels.length ? `${labels.join(', ')} · ${img.file_name}` : img.file_name })));
      api(`/datasets/${d.id}/images/${img.id}/thumbnail?size=256`, { blob: true }).then((blob) => {
        const u = URL.createObjectURL(blob);
        if (blobUrls.get(d.id) === urls) { urls.push(u); im.src = u; } else URL.revokeObjectURL(u);
      }).catch(() => {});
    });
    const from = data.total ? page * GALLERY_PAGE + 1 : 0;
    const to = Math.min(data.total, (page + 1) * GALLERY_PAGE);
    pager.replaceChildren(
      h('button', { type: 'button', class: 'small', disabled: page === 0, text: t('prev'), 'data-testid': 'gallery-prev', onclick: () => loadGallery(d, grid, pager, page - 1) }),
      h('span', { 'data-testid': 'gallery-range', text: t('page_of', { a: from, b: to, n: data.total }) }),
      h('button', { type: 'button', class: 'small', disabled: to >= data.total, text: t('next'), 'data-testid': 'gallery-next', onclick: () => loadGallery(d, grid, pager, page + 1) }));
  }

  function progressBar() {
    const bar = h('div', { class: 'bar' });
    const label = h('span', { class: 'label' });
    const el = h('div', { class: 'progress', hidden: true }, bar, label);
    return {
      el,
      set(frac, text) { el.hidden = false; bar.style.width = `${(frac * 100).toFixed(1)}%`; label.textContent = text; el.dataset.fraction = frac.toFixed(3); },
    };
  }

  /** POST the form to /datasets/{id}/upload with XMLHttpRequest, for its upload progress events. */
  function uploadWithProgress(id, form, prog) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open('POST', `${API}/datasets/${encodeURIComponent(id)}/upload`);
      if (S.token) xhr.setRequestHeader('Authorization', 'Bearer ' + S.token);
      prog.set(0, t('uploading', { p: 0, a: fmtBytes(0), b: '…' }));
      xhr.upload.onprogress = (e) => {
        if (!e.lengthComputable) return;
        const frac = e.total ? e.loaded / e.total : 0;
        prog.set(frac, frac >= 1 ? t('processing') : t('uploading', { p: Math.round(frac * 100), a: fmtBytes(e.loaded), b: fmtBytes(e.total) }));
      };
      xhr.upload.onload = () => prog.set(1, t('processing'));
      xhr.onload = () => {
        let body = null;
        try { body = JSON.parse(xhr.responseText); } catch (e) { body = { detail: xhr.responseText }; }
        if (xhr.status >= 200 && xhr.status < 300) { prog.set(1, '100%'); resolve(body); } else reject(new ApiError(xhr.status, detailText(body, String(xhr.status)), body));
      };
      xhr.onerror = () => reject(new ApiError(0, t('network_error'), null));
      xhr.send(form);
    });
  }

  const createProgress = { el: null, set: null };

  function sourceKind() {
    const r = $('input[name="ds-source"]:checked');
    return r ? r.value : 'folder';
  }

  function resetCreateForm() {
    $('#ds-create').reset();
    $('#ds-folder').hidden = false;
    $('#ds-zip').hidden = true;
    $('#ds-create-error').textContent = '';
    $('#ds-progress').hidden = true;
  }

  async function submitCreate(ev) {
    ev.preventDefault();
    const err = $('#ds-create-error');
    err.textContent = '';
    const name = $('#ds-name').value.trim();
    if (!name) { err.textContent = t('need_name'); return; }
    const kind = sourceKind();
    const files = kind === 'zip' ? Array.from($('#ds-zip').files).slice(0, 1) : Array.from($('#ds-folder').files);
    if (!files.length) { err.textContent = t('need_files'); return; }
    const fd = new FormData();
    if (kind === 'zip') fd.append('archive', files[0], files[0].name);
    else files.forEach((f) => fd.append('files', f, f.webkitRelativePath || f.name)); // keeps the folder tree
    const submit = $('#ds-submit');
    submit.disabled = true;
    let created = null;
    try {
      created = await api('/datasets', { json: { name, description: $('#ds-description').value, visibility: $('#ds-visibility').value } });
      const out = await uploadWithProgress(created.id, fd, createProgress);
      const ds = out.dataset || created;
      $('#ds-create').hidden = true;
      resetCreateForm();
      const notice = $('#ds-notice');
      notice.textContent = t('ds_created', { name: ds.name, n: ds.num_images });
      notice.hidden = false;
      DS.newId = ds.id; // highlighted in the table; nothing opens, nothing navigates
      await loadDatasets();
    } catch (e) {
      err.textContent = created ? t('ds_created_upload_failed', { name: created.name, err: e.message }) : e.message;
      if (created) loadDatasets();
    } finally {
      submit.disabled = false;
    }
  }

  // -------------------------------------------------------------------------------------- test
  const testRuns = {
    timers: new Map(),
    sockets: new Map(),
    stopAll() {
      this.timers.forEach((tm) => clearTimeout(tm)); this.timers.clear();
      this.sockets.forEach((ws) => { if (ws) { ws.onclose = null; ws.close(1000); } }); this.sockets.clear();
    },
  };

  /** Ask for a signed link to one download of a job (best | last | model-card) and open it: the
   * browser downloads it without the bearer token (the link itself is the short-lived credential). */
  async function downloadLink(jobId, what, exportId) {
    try {
      const req = { job_id: Number(jobId), object: what };
      if (exportId !== undefined) req.export_id = Number(exportId);
      const link = await api('/downloads', { json: req });
      const a = h('a', { href: link.path, download: link.filename, rel: 'noopener' });
      document.body.append(a); a.click(); a.remove();
    } catch (e) {
      toast(e.message, 'error');
    }
  }

  async function loadTestJobs() {
    const sel = $('#test-job');
    try {
      const page = await api('/jobs?limit=100');
      const keep = S.testJobId || sel.value;
      // completed, stopped and failed jobs that uploaded a checkpoint can all be tested
      const items = (page.items || []).filter((j) => TERMINAL.has(j.status) && (j.checkpoints || []).length);
      S.testJobs = Object.fromEntries(items.map((j) => [String(j.id), j]));
      sel.replaceChildren(...(items.length ? items.map((j) => h('option', {
        value: j.id, text: `#${j.id} ${j.model_name} · ${j.dataset_name} (${taskLabel(j.task_type)})${j.status === 'completed' ? '' : ' · ' + statusLabel(j.status)}`,
      })) : [h('option', { value: '', text: t('no_trained_jobs') })]));
      if (keep && items.some((j) => String(j.id) === String(keep))) sel.value = String(keep);
      S.testJobId = sel.value || null;
    } catch (e) {
      if (e.status !== 401) toast(e.message, 'error');
    }
  }

  async function loadTestDatasets() {
    const sel = $('#test-dataset');
    try {
      const items = await api('/datasets?limit=200&sort=name');
      const keep = sel.value;
      sel.replaceChildren(...items.filter((d) => d.labeled || d.num_images).map((d) => h('option', { value: d.id, text: `${d.name} (${d.num_images})` })));
      if (keep) sel.value = keep;
    } catch (e) {
      if (e.status !== 401) toast(e.message, 'error');
    }
  }

  async function refreshTestPanel() {
    await Promise.all([loadTestJobs(), loadTestDatasets()]);
    loadRunsOfJob();
    loadExports();
  }

  // ----------------------------------------------------------------------------------- exports
  // the formats the server makes per framework (tools.inference / trainer_runtime.inference.export)
  const EXPORT_FORMATS = {
    ultralytics: ['onnx', 'torchscript', 'openvino'],
    timm: ['onnx', 'torchscript', 'openvino'],
    transformers: ['onnx', 'torchscript', 'openvino'],
  };
  const FORMAT_LABEL = { onnx: 'ONNX', torchscript: 'TorchScript', openvino: 'OpenVINO (zip)' };

  function fillExportFormats() {
    const sel = $('#export-format');
    const job = (S.testJobs || {})[$('#test-job').value];
    const fmts = EXPORT_FORMATS[job && job.framework] || ['onnx'];
    const keep = sel.value;
    sel.replaceChildren(...fmts.map((f) => h('option', { value: f, text: FORMAT_LABEL[f] || f })));
    if (fmts.includes(keep)) sel.value = keep;
  }

  function exportRow(rec) {
    const p = rec.parity || {};
    const done = rec.status === 'completed';
    const hasDiff = p.max_abs_diff !== undefined && p.max_abs_diff !== null;
    return h('div', { class: 'export-row', 'data-testid': 'export-row', 'data-export-id': rec.id, 'data-format': rec.format, 'data-status': rec.status },
      h('strong', { text: `${FORMAT_LABEL[rec.format] || rec.format} · ${rec.checkpoint}` }),
      h('span', { class: `badge ${done && p.ok ? 'completed' : 'failed'}`, 'data-testid': 'export-verdict', 'data-ok': String(Boolean(done && p.ok)),
        text: done ? t(p.ok ? 'export_ok' : 'export_bad') : statusLabel(rec.status) || rec.status }),
      hasDiff ? h('span', { class: 'muted small', 'data-testid': 'export-parity',
        text: `${t('export_parity')}: ${t('export_diff', { d: Number(p.max_abs_diff).toExponential(2), t: p.tolerance, n: p.images || 1 })}` }) : '',
      rec.size ? h('span', { class: 'muted small', text: fmtBytes(rec.size) }) : '',
      done ? h('button', { type: 'button', class: 'small', 'data-testid': 'export-download', text: t('export_download'),
        title: t('dl_title'), onclick: () => downloadLink(rec.job_id, 'export', rec.id) }) : '',
      rec.error ? h('p', { class: 'error', text: rec.error }) : '');
  }

  async function loadExports() {
    const jobId = $('#test-job').value;
    const list = $('#exports');
    fillExportFormats();
    if (!jobId) { list.replaceChildren(); return; }
    try {
      const recs = await api(`/jobs/${jobId}/exports`);
      if ($('#test-job').value !== jobId) return;
      list.replaceChildren(...(recs.length ? recs.slice().reverse().map(exportRow) : [h('p', { class: 'muted', text: t('no_exports') })]));
    } catch (e) { list.replaceChildren(); }
  }

  async function startExport() {
    const jobId = $('#test-job').value;
    if (!jobId) { toast(t('choose_job'), 'error'); return; }
    const b = $('#export-start');
    b.disabled = true;
    const busy = h('p', { class: 'muted', 'data-testid': 'export-running', text: t('exporting') });
    $('#exports').prepend(busy);
    try {
      await api(`/jobs/${jobId}/export`, { json: { format: $('#export-format').value || 'onnx' } });
    } catch (e) {
      toast(e.message, 'error');
    } finally {
      b.disabled = false;
      busy.remove();
      loadExports();
    }
  }

  function openTestFor(jobId) {
    S.testJobId = String(jobId);
    setTab('test');
  }

  function predictionNumbers(result) {
    const preds = result.predictions || [];
    const box = h('div', { class: 'numbers', 'data-testid': 'prediction-numbers' });
    const model = result.model || {};
    if (result.task_type === 'image_classification' || result.predicted_label !== undefined) {
      box.append(h('div', {}, h('span', { class: 'muted', text: t('predicted') + ': ' }),
        h('span', { class: 'predicted', 'data-testid': 'predicted-label', text: result.predicted_label ?? '-' }),
        result.confidence !== undefined ? h('span', { class: 'muted', text: ` (${(Number(result.confidence) * 100).toFixed(1)}%)` }) : ''));
      box.append(h('table', { class: 'table' },
        h('thead', {}, h('tr', {}, h('th', { text: t('label') }), h('th', { class: 'num', text: t('confidence') }), h('th', {}))),
        h('tbody', {}, preds.slice(0, 5).map((p) => h('tr', { 'data-testid': 'prediction-row' },
          h('td', { text: p.label }), h('td', { class: 'num', text: `${(Number(p.confidence) * 100).toFixed(1)}%` }),
          h('td', { style: 'width:40%' }, h('div', { class: 'conf-bar', style: `width:${Math.max(1, Number(p.confidence) * 100).toFixed(1)}%` })))))));
    } else {
      box.append(h('div', { class: 'predicted', 'data-testid': 'predicted-label', text: t('detections', { n: preds.length }) }));
      box.append(h('table', { class: 'table' },
        h('thead', {}, h('tr', {}, h('th', { text: t('label') }), h('th', { class: 'num', text: t('confidence') }), h('th', { text: t('box') }))),
        h('tbody', {}, preds.slice(0, 20).map((p) => h('tr', { 'data-testid': 'prediction-row' },
          h('td', { text: p.label }), h('td', { class: 'num', text: `${(Number(p.confidence) * 100).toFixed(1)}%` }),
          h('td', { text: p.box ? p.box.map((v) => Math.round(v)).join(', ') : '' }))))));
    }
    const facts = [];
    if (result.inference_time_ms !== undefined) facts.push(t('inference_ms', { ms: fmtNum(result.inference_time_ms) }));
    if (model.model_name) facts.push(`${model.model_name}${result.checkpoint ? ' · ' + result.checkpoint : ''}${model.device ? ' · ' + model.device : ''}`);
    if (facts.length) box.append(h('p', { class: 'muted', text: facts.join(' · ') }));
    return box;
  }

  async function runInference(file) {
    const jobId = $('#test-job').value;
    const out = $('#test-result');
    if (!jobId) { toast(t('choose_job'), 'error'); return; }
    if (!file) return;
    out.replaceChildren(h('p', { class: 'muted', 'data-testid': 'inference-running', text: t('running_inference') }));
    const form = () => { const fd = new FormData(); fd.append('file', file, file.name || 'image.png'); return fd; };
    try {
      const result = await api(`/jobs/${jobId}/inference`, { form: form() });
      const blob = await api(`/jobs/${jobId}/inference?render=true`, { form: form(), blob: true });
      const old = $('img.rendered', out);
      if (old) URL.revokeObjectURL(old.src);
      const img = h('img', { class: 'rendered', 'data-testid': 'rendered', alt: file.name || 'prediction' });
      img.src = URL.createObjectURL(blob);
      out.replaceChildren(h('div', {}, img), predictionNumbers(result));
    } catch (e) {
      out.replaceChildren(h('p', { class: 'error', 'data-testid': 'inference-error', text: e.message }));
    }
  }

  function testRunMini(run) {
    const p = run.progress || {};
    return h('p', { class: 'muted', text: `${t('test_run_n', { id: run.id })} · ${statusLabel(run.status) || run.status} · ${p.processed || 0}/${p.total || 0}` });
  }

  function renderRun(run, el) {
    const p = run.progress || {};
    const prog = progressBar();
    prog.set(run.status === 'completed' ? 1 : Number(p.fraction) || 0, `${p.processed || 0} / ${p.total || 0}`);
    const rank = (k) => { const i = METRIC_ORDER.findIndex((rx) => rx.test(k)); return i < 0 ? METRIC_ORDER.length : i; };
    const metrics = Object.entries(run.metrics || {}).filter(([, v]) => typeof v === 'number')
      .sort((a, b) => rank(a[0]) - rank(b[0])).slice(0, 8);
    const report = run.report_url ? h('button', {
      type: 'button', class: 'small link', text: t('report'),
      onclick: async () => {
        try {
          const blob = await api(run.report_url.replace(API, ''), { blob: true });
          const u = URL.createObjectURL(blob);
          const a = h('a', { href: u, download: `test-run-${run.id}.json` });
          document.body.append(a); a.click(); a.remove();
          setTimeout(() => URL.revokeObjectURL(u), 5000);
        } catch (e) { toast(e.message, 'error'); }
      },
    }) : null;
    el.replaceChildren(
      h('div', { class: 'job-head' }, h('strong', { text: t('test_run_n', { id: run.id }) }),
        h('span', { class: `badge ${run.status}`, 'data-testid': 'test-run-status', 'data-status': run.status, text: statusLabel(run.status) || run.status }),
        report),
      prog.el,
      metrics.length ? h('dl', { class: 'kv' }, metrics.map(([k, v]) => [h('dt', { text: k }), h('dd', { text: fmtNum(v) })])) : '',
      run.error ? h('p', { class: 'error', text: run.error }) : '');
  }

  function watchRun(run) {
    const list = $('#test-runs');
    let el = $(`.test-run[data-run-id="${run.id}"]`, list);
    if (!el) {
      el = h('div', { class: 'test-run', 'data-testid': 'test-run', 'data-run-id': run.id });
      list.prepend(el);
    }
    renderRun(run, el);
    clearTimeout(testRuns.timers.get(run.id));
    if (['completed', 'failed', 'stopped'].includes(run.status)) return;
    const refresh = async () => {
      try {
        const fresh = await api(`/test-runs/${run.id}`);
        if (el.isConnected) watchRun(fresh);
      } catch (e) { /* try again on the next event or tick */ }
    };
    const poll = () => testRuns.timers.set(run.id, setTimeout(refresh, 1000));
    if (testRuns.sockets.has(run.id) || !S.token) { if (!S.token) poll(); return; }
    // live: WS /ws/test-runs/{id} (replayed, then live); each event refreshes the card (at most
    // every 250 ms); polling every second is the fallback when the socket cannot be kept
    testRuns.sockets.set(run.id, null); // a ticket is on its way: no second socket meanwhile
    streamTicket('test_run', run.id).then((ticket) => {
      if (!testRuns.sockets.has(run.id) || !el.isConnected) { testRuns.sockets.delete(run.id); return; }
      openRunSocket(run, el, ticket, refresh, poll);
    }, () => { testRuns.sockets.delete(run.id); if (el.isConnected) poll(); });
  }

  function openRunSocket(run, el, ticket, refresh, poll) {
    const proto = location.protocol === 'https:' ? 'wss' : 'ws';
    const ws = new WebSocket(`${proto}://${location.host}/ws/test-runs/${run.id}?ticket=${encodeURIComponent(ticket)}`);
    testRuns.sockets.set(run.id, ws);
    let pending = null;
    ws.onmessage = () => {
      if (pending) return;
      pending = setTimeout(() => { pending = null; refresh(); }, 250);
    };
    ws.onclose = (e) => {
      testRuns.sockets.delete(run.id);
      clearTimeout(pending);
      if (!el.isConnected) return;
      if (e.code === 1000) refresh(); else poll();
    };
  }


  async function loadRunsOfJob() {
    const jobId = $('#test-job').value;
    const list = $('#test-runs');
    list.replaceChildren();
    testRuns.stopAll();
    if (!jobId) return;
    try {
      const runs = await api(`/test-runs?job_id=${encodeURIComponent(jobId)}`);
      runs.slice(0, 5).reverse().forEach((r) => watchRun(r));
    } catch (e) { /* no runs shown */ }
  }

  async function startTestRun() {
    const jobId = $('#test-job').value;
    const datasetId = $('#test-dataset').value;
    if (!jobId) { toast(t('choose_job'), 'error'); return; }
    const b = $('#test-run-start');
    b.disabled = true;
    try {
      const run = await api('/test-runs', { json: { job_id: Number(jobId), dataset_id: datasetId || null } });
      watchRun(run);
    } catch (e) {
      toast(e.message, 'error');
    } finally {
      b.disabled = false;
    }
  }

  // ------------------------------------------------------------------------------------- slack
  async function linkSlack() {
    closeMenu();
    try {
      const r = await api('/slack/link', { method: 'POST' });
      showModal(t('slack_title'),
        h('p', { text: t('slack_intro') }),
        h('div', { class: 'code', 'data-testid': 'slack-code', text: r.code }),
        r.instructions ? h('p', { class: 'pre', text: r.instructions }) : '',
        r.expires_at ? h('p', { class: 'muted', text: t('slack_expires', { at: fmtDate(r.expires_at) }) }) : '');
    } catch (e) {
      if (e.status === 401) return;
      const missing = e.status === 404 || e.status === 405 || e.status === 501 || e.status === 503;
      showModal(t('slack_title'), h('p', { class: missing ? 'muted' : 'error', 'data-testid': 'slack-message', text: missing ? t('slack_unavailable') : e.message }));
    }
  }

  function closeMenu() {
    $('#user-dropdown').hidden = true;
    $('#user-button').setAttribute('aria-expanded', 'false');
  }

  // ------------------------------------------------------------------------------------ wiring
  function wire() {
    $('#auth-form').addEventListener('submit', submitAuth);
    $('#auth-switch').addEventListener('click', () => setAuthMode(authMode === 'signin' ? 'signup' : 'signin'));
    $('#lang-toggle').addEventListener('click', () => {
      lang = lang === 'ko' ? 'en' : 'ko';
      localStorage.setItem(KEYS.lang, lang);
      applyI18n();
      jobStore.renderAll();
      if (DS.loaded) renderDatasets();
      $$('#messages [data-testid="welcome"]').forEach((w) => w.remove());
      if (!$('#messages').children.length && S.token) showWelcome();
      if (S.tab === 'test' && S.token) { loadTestJobs(); loadExports(); }
    });
    $('#user-button').addEventListener('click', (e) => {
      e.stopPropagation();
      const dd = $('#user-dropdown');
      dd.hidden = !dd.hidden;
      $('#user-button').setAttribute('aria-expanded', String(!dd.hidden));
    });
    document.addEventListener('click', (e) => { if (!$('#user-menu').contains(e.target)) closeMenu(); });
    $('#sign-out').addEventListener('click', () => signOut());
    $('#slack-link').addEventListener('click', linkSlack);
    $('#modal-close').addEventListener('click', () => { $('#modal').hidden = true; });
    $('#modal').addEventListener('click', (e) => { if (e.target === $('#modal')) $('#modal').hidden = true; });
    document.addEventListener('keydown', (e) => { if (e.key === 'Escape') { $('#modal').hidden = true; closeMenu(); } });
    $$('.tab').forEach((b) => b.addEventListener('click', () => setTab(b.dataset.tab)));

    $('#composer').addEventListener('submit', (e) => {
      e.preventDefault();
      const input = $('#chat-input');
      const text = input.value;
      if (!text.trim() || sending) return;
      input.value = '';
      sendChat(text);
    });
    $('#chat-input').addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); $('#composer').requestSubmit(); }
    });
    $('#new-chat').addEventListener('click', () => {
      S.sessionId = null;
      localStorage.removeItem(KEYS.session);
      $('#messages').replaceChildren();
      showWelcome();
      $('#chat-input').focus();
    });
    $('#jobs-refresh').addEventListener('click', loadJobs);

    // datasets
    let searchTimer = 0;
    $('#ds-search').addEventListener('input', () => {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(() => { DS.q = $('#ds-search').value.trim(); loadDatasets(); }, 250);
    });
    $('#ds-mine').addEventListener('change', () => { DS.mine = $('#ds-mine').checked; loadDatasets(); });
    $$('.ds-table th[data-sort]').forEach((th) => th.addEventListener('click', () => {
      const key = th.dataset.sort;
      DS.sort = DS.sort === key ? '-' + key : DS.sort === '-' + key ? key : key === 'name' ? key : '-' + key;
      loadDatasets();
    }));
    $('#ds-new').addEventListener('click', () => {
      const f = $('#ds-create');
      f.hidden = !f.hidden;
      $('#ds-notice').hidden = true;
      if (!f.hidden) $('#ds-name').focus();
    });
    $('#ds-cancel').addEventListener('click', () => { resetCreateForm(); $('#ds-create').hidden = true; });
    $$('input[name="ds-source"]').forEach((r) => r.addEventListener('change', () => {
      const zip = sourceKind() === 'zip';
      $('#ds-folder').hidden = zip;
      $('#ds-zip').hidden = !zip;
    }));
    $('#ds-create').addEventListener('submit', submitCreate);
    $('#mw-form').addEventListener('submit', submitMyWeights);
    const cp = progressBar();
    cp.el.id = 'ds-progress';
    cp.el.dataset.testid = 'ds-progress';
    $('#ds-progress').replaceWith(cp.el);
    createProgress.el = cp.el;
    createProgress.set = cp.set;

    // test panel
    const dz = $('#dropzone');
    const fileInput = $('#test-file');
    dz.addEventListener('click', () => fileInput.click());
    dz.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); fileInput.click(); } });
    dz.addEventListener('dragover', (e) => { e.preventDefault(); dz.classList.add('over'); });
    dz.addEventListener('dragleave', () => dz.classList.remove('over'));
    dz.addEventListener('drop', (e) => {
      e.preventDefault();
      dz.classList.remove('over');
      const f = e.dataTransfer && e.dataTransfer.files && e.dataTransfer.files[0];
      if (f) runInference(f);
    });
    fileInput.addEventListener('change', () => { if (fileInput.files[0]) runInference(fileInput.files[0]); fileInput.value = ''; });
    $('#test-job').addEventListener('change', () => { S.testJobId = $('#test-job').value; $('#test-result').replaceChildren(); loadRunsOfJob(); loadExports(); });
    $('#export-start').addEventListener('click', startExport);
    $('#test-run-start').addEventListener('click', startTestRun);
  }

  // a small hook for the browser tests (and for people debugging a socket in the console)
  window.vta = {
    jobSeqs: (id) => (jobStore.has(id) ? jobStore.get(id).seqs.slice() : []),
    dropJobSocket: (id) => { if (jobStore.has(id)) jobStore.get(id).drop(); },
  };

  function start() {
    wire();
    applyI18n();
    if (S.token) enterApp(); else showAuth();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start); else start();
})();
