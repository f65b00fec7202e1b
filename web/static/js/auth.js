/* Sign in / sign up, entering the app and signing out.
 */
import { API, KEYS } from './constants.js';
import { $ } from './dom.js';
import { applyI18n, t } from './i18n.js';
import { S } from './state.js';
import { api, detailText, setSessionExpiredHandler } from './api.js';
import { jobStore, loadJobs } from './jobs.js';
import { DS, loadDatasets } from './datasets.js';
import { testRuns } from './test.js';
import { setTab } from './tabs.js';
import { restoreChat } from './chat.js';
import { closeMenu } from './slack.js';

// ------------------------------------------------------------------------------------- auth
export let authMode = 'signin';

export function setAuthMode(mode) {
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

export async function submitAuth(ev) {
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

export function showAuth(message) {
  $('#app-view').hidden = true;
  $('#tabs').hidden = true;
  $('#user-menu').hidden = true;
  $('#auth-view').hidden = false;
  setAuthMode(authMode);
  if (message) $('#auth-error').textContent = message;
  $('#auth-email').focus();
}

export async function enterApp() {
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

export function signOut(message) {
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

setSessionExpiredHandler(signOut);
