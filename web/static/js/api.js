/* The API client: api() (REST under /api/v1 with the bearer token; ApiError with the server's
 * detail text; a 401 signs the user out), stream tickets for WebSockets, uploads with progress
 * (XMLHttpRequest) and signed download links.
 */
import { API } from './constants.js';
import { h, toast } from './dom.js';
import { t } from './i18n.js';
import { fmtBytes } from './format.js';
import { S } from './state.js';

// -------------------------------------------------------------------------------------- API
class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

export function detailText(body, fallback) {
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

function authHeaders() {
  return S.token ? { Authorization: 'Bearer ' + S.token } : {};
}

/** A single-use ticket (valid a minute) that opens one stream: kind 'job' | 'test_run' | 'chat'. */
export async function streamTicket(kind, id) {
  const body = await api('/stream-tickets', { json: id === undefined ? { kind } : { kind, id } });
  return body.ticket;
}

// what a 401 on a signed-in request does (auth.js registers signOut; a hook, so that the API client
// does not import the page's views)
let onSessionExpired = () => {};

export function setSessionExpiredHandler(fn) {
  onSessionExpired = fn;
}

export async function api(path, opts) {
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
    onSessionExpired(t('session_expired'));
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

/** POST the form to /datasets/{id}/upload with XMLHttpRequest, for its upload progress events. */
export function uploadWithProgress(id, form, prog) {
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

/** Ask for a signed link to one download of a job (best | last | model-card) and open it: the
 * browser downloads it without the bearer token (the link itself is the short-lived credential). */
export async function downloadLink(jobId, what, exportId) {
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
