/* The 'My weights' card: the user's own weights files (POST/GET/DELETE /weights/mine).
 */
import { $, h, toast } from './dom.js';
import { t } from './i18n.js';
import { fmtBytes } from './format.js';
import { api } from './api.js';

// ------------------------------------------------------------------------- my weights
// the user's own weights files (POST/GET/DELETE /weights/mine): a job starts from one when the
// chat hears "use my weights" (or the intent names init_weights)
export async function loadMyWeights() {
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

export async function submitMyWeights(e) {
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
