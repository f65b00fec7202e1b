/* The Test tab: trained jobs to pick, single-image inference, batch test runs (live over
 * WS /ws/test-runs/{id}, polling as the fallback) and model exports with their parity check.
 */
import { API, METRIC_ORDER, TERMINAL } from './constants.js';
import { $, h, progressBar, toast } from './dom.js';
import { statusLabel, t, taskLabel } from './i18n.js';
import { fmtBytes, fmtNum } from './format.js';
import { S } from './state.js';
import { api, downloadLink, streamTicket } from './api.js';

// -------------------------------------------------------------------------------------- test
export const testRuns = {
  timers: new Map(),
  sockets: new Map(),
  stopAll() {
    this.timers.forEach((tm) => clearTimeout(tm)); this.timers.clear();
    this.sockets.forEach((ws) => { if (ws) { ws.onclose = null; ws.close(1000); } }); this.sockets.clear();
  },
};

export async function loadTestJobs() {
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

export async function refreshTestPanel() {
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

export async function loadExports() {
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

export async function startExport() {
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

export function predictionNumbers(result) {
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

export async function runInference(file) {
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

export function testRunMini(run) {
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


export async function loadRunsOfJob() {
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

export async function startTestRun() {
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
