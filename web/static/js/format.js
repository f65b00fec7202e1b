/* Formatting for display: numbers, durations, sizes and dates in the current language, and the
 * one-line text of a job's starting weights.
 */
import { lang, t } from './i18n.js';

export function fmtNum(v) {
  if (v === null || v === undefined || v === '') return '-';
  const n = Number(v);
  if (!Number.isFinite(n)) return String(v);
  if (Number.isInteger(n)) return String(n);
  const a = Math.abs(n);
  if (a >= 1000) return n.toFixed(0);
  if (a >= 1) return String(parseFloat(n.toFixed(3)));
  return String(parseFloat(n.toPrecision(3)));
}

export function fmtDuration(sec) {
  if (sec === null || sec === undefined || !Number.isFinite(Number(sec))) return '-';
  let s = Math.max(0, Math.round(Number(sec)));
  const hh = Math.floor(s / 3600); s -= hh * 3600;
  const mm = Math.floor(s / 60); s -= mm * 60;
  if (lang === 'ko') return hh ? `${hh}시간 ${mm}분` : mm ? `${mm}분 ${s}초` : `${s}초`;
  return hh ? `${hh}h ${mm}m` : mm ? `${mm}m ${s}s` : `${s}s`;
}

export function fmtBytes(n) {
  n = Number(n) || 0;
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MB`;
  return `${(n / 1024 ** 3).toFixed(2)} GB`;
}

export function fmtDate(iso) {
  if (!iso) return '-';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return new Intl.DateTimeFormat(lang === 'ko' ? 'ko-KR' : 'en-US', { dateStyle: 'short', timeStyle: 'short' }).format(d);
}

// a job's (or a confirmation's) `pretrained`: {source, detail, pretraining, warning?}
export function weightsText(p) {
  if (!p || !p.source) return '';
  if (p.source === 'scratch') return t('weights_scratch') + (p.warning ? `: ${p.warning}` : '');
  if (p.source === 'job') return t('weights_job', { d: p.detail || '' });
  if (p.source === 'user upload') return t('weights_user', { f: p.file || p.detail || '', s: String(p.sha256 || '').slice(0, 12) });
  return p.pretraining ? t('weights_pretrained', { p: p.pretraining, d: p.detail || '' }) : t('weights_pretrained_plain', { d: p.detail || '' });
}
