/* The chat: messages, suggestion chips, the confirmation card, restoring the last conversation
 * and sending a message (POST /api/v1/chat).
 */
import { KEYS, TASKS } from './constants.js';
import { $, $$, h } from './dom.js';
import { lang, t, taskLabel } from './i18n.js';
import { fmtDuration, fmtNum, weightsText } from './format.js';
import { S } from './state.js';
import { api } from './api.js';
import { addJobToPanel, jobStore, JobView } from './jobs.js';
import { loadTestJobs, predictionNumbers, testRunMini } from './test.js';

// -------------------------------------------------------------------------------------- chat
export let sending = false;

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

export function showWelcome() {
  const el = h('div', { class: 'msg agent', 'data-testid': 'welcome' }, h('div', { class: 'text', text: t('welcome') }));
  el.append(chips([t('ex_train'), t('ex_datasets'), t('ex_models')], (s) => s, (s) => sendChat(s)));
  $('#messages').append(el);
}

export async function restoreChat() {
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

export async function sendChat(text) {
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
