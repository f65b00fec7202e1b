/* Jobs: JobModel (one per job: REST state, per-epoch metrics, checkpoints, and the live
 * WS /ws/jobs/{id}?after=SEQ socket that reconnects from the last seq seen), jobStore, JobView
 * (a job card: status, progress with ETA, charts, per-epoch table, actions) and the Jobs panel.
 */
import { RESUMABLE, TERMINAL } from './constants.js';
import { $, h, toast } from './dom.js';
import { lang, statusLabel, t } from './i18n.js';
import { fmtDuration, fmtNum, weightsText } from './format.js';
import { S } from './state.js';
import { api, downloadLink, streamTicket } from './api.js';
import { chartSvg, splitSeries } from './charts.js';
import { openTestFor } from './tabs.js';

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

export const jobStore = {
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

export class JobView {
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

export function addJobToPanel(model) {
  const list = $('#jobs-list');
  if ($(`.job-card[data-job-id="${model.id}"]`, list)) return;
  const empty = $('.empty-jobs', list);
  if (empty) empty.remove();
  list.prepend(new JobView(model).el);
}

export async function loadJobs() {
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
