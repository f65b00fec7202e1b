/* Linking a Slack account (a one-time code shown in a modal) and the user menu.
 */
import { $, h, showModal } from './dom.js';
import { t } from './i18n.js';
import { fmtDate } from './format.js';
import { api } from './api.js';

// ------------------------------------------------------------------------------------- slack
export async function linkSlack() {
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

export function closeMenu() {
  $('#user-dropdown').hidden = true;
  $('#user-button').setAttribute('aria-expanded', 'false');
}
