/* DOM helpers: $ / $$ (query), h() (build an element), esc() (HTML-escape), toast(), showModal()
 * and progressBar(). No imports: every other module may use it.
 */

export const $ = (sel, root) => (root || document).querySelector(sel);
export const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

export function h(tag, attrs, ...children) {
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

export const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));

export function toast(message, kind) {
  const el = h('div', { class: 'toast' + (kind === 'error' ? ' error' : ''), role: 'status', text: message });
  $('#toasts').append(el);
  setTimeout(() => el.remove(), kind === 'error' ? 6000 : 3500);
}

export function showModal(title, ...body) {
  $('#modal-title').textContent = title;
  $('#modal-body').replaceChildren(...body.flat());
  $('#modal').hidden = false;
  $('#modal-close').focus();
}

export function progressBar() {
  const bar = h('div', { class: 'bar' });
  const label = h('span', { class: 'label' });
  const el = h('div', { class: 'progress', hidden: true }, bar, label);
  return {
    el,
    set(frac, text) { el.hidden = false; bar.style.width = `${(frac * 100).toFixed(1)}%`; label.textContent = text; el.dataset.fraction = frac.toFixed(3); },
  };
}
