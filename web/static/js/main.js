/* Vision Training Agent: the chat page, start-up module (loaded by index.html as
 * <script type="module">).
 *
 * Plain JavaScript ES modules (no build step, no framework, no network beyond this server). It
 * speaks the server's public API: REST under /api/v1 with the bearer token kept in localStorage, and
 * WS /ws/jobs/{id}?after=SEQ&ticket=T for live job progress (reconnecting with the last seq seen,
 * so no event, and no chart point, is lost when a socket drops), WS /ws/test-runs/{id} for test runs.
 * Each socket opens with a fresh single-use ticket (POST /api/v1/stream-tickets), so the bearer
 * token never appears in a URL (access logs); close 4410 means the job was deleted.
 *
 * Modules (web/static/js/; contracts in docs/architecture.md): constants, dom, i18n (en/ko),
 * format, state, api -> charts, jobs, datasets, weights, test, tabs, chat, slack, auth -> main
 * (this file: wires the page's controls and shows the sign-in form or the app). window.vta is a
 * small hook for the browser tests.
 */
import { KEYS } from './constants.js';
import { $, $$, progressBar } from './dom.js';
import { applyI18n, lang, setLang } from './i18n.js';
import { S } from './state.js';
import { jobStore, loadJobs } from './jobs.js';
import { submitMyWeights } from './weights.js';
import { createProgress, DS, loadDatasets, renderDatasets, resetCreateForm, sourceKind, submitCreate } from './datasets.js';
import { loadExports, loadRunsOfJob, loadTestJobs, runInference, startExport, startTestRun } from './test.js';
import { setTab } from './tabs.js';
import { sendChat, sending, showWelcome } from './chat.js';
import { closeMenu, linkSlack } from './slack.js';
import { authMode, enterApp, setAuthMode, showAuth, signOut, submitAuth } from './auth.js';

// ------------------------------------------------------------------------------------ wiring
function wire() {
  $('#auth-form').addEventListener('submit', submitAuth);
  $('#auth-switch').addEventListener('click', () => setAuthMode(authMode === 'signin' ? 'signup' : 'signin'));
  $('#lang-toggle').addEventListener('click', () => {
    setLang(lang === 'ko' ? 'en' : 'ko');
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
