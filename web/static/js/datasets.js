/* The Datasets panel: the searchable, sortable table, a dataset's details (compatibility,
 * snapshots, owner actions, gallery with annotation overlays) and the create-and-upload form.
 */
import { COLORS, GALLERY_PAGE, TASKS } from './constants.js';
import { $, $$, h, progressBar, toast } from './dom.js';
import { t, taskLabel } from './i18n.js';
import { fmtBytes, fmtDate } from './format.js';
import { api, uploadWithProgress } from './api.js';

// ---------------------------------------------------------------------------------- datasets
export const DS = { items: [], total: 0, q: '', sort: '-updated_at', mine: false, open: new Set(), pages: new Map(), newId: null, loaded: false, seq: 0 };
const blobUrls = new Map(); // dataset id -> [object URLs] of its gallery

export async function loadDatasets() {
  const mySeq = ++DS.seq;
  const params = new URLSearchParams({ sort: DS.sort, limit: '200' });
  if (DS.q) params.set('q', DS.q);
  if (DS.mine) params.set('mine', 'true');
  try {
    const { data, headers } = await api('/datasets?' + params.toString(), { withHeaders: true });
    if (mySeq !== DS.seq) return; // a newer search answered first
    DS.items = data || [];
    DS.total = Number(headers.get('X-Total-Count') || DS.items.length);
    DS.loaded = true;
    renderDatasets();
  } catch (e) {
    if (e.status !== 401) toast(e.message, 'error');
  }
}

function className(ds, cid) {
  const names = ds.class_names || [];
  return names[Number(cid) - 1] !== undefined ? names[Number(cid) - 1] : `#${cid}`;
}

export function renderDatasets() {
  $$('.ds-table th[data-sort]').forEach((th) => {
    const key = th.dataset.sort;
    th.classList.toggle('sorted-asc', DS.sort === key);
    th.classList.toggle('sorted-desc', DS.sort === '-' + key);
  });
  const body = $('#ds-rows');
  DS.items.forEach((d) => { if (!DS.open.has(d.id)) releaseGallery(d.id); });
  const rows = [];
  if (!DS.items.length) rows.push(h('tr', {}, h('td', { colspan: 5, class: 'muted', text: t('no_datasets') })));
  DS.items.forEach((d) => {
    const open = DS.open.has(d.id);
    const classes = d.class_names || [];
    const row = h('tr', {
      class: `ds-row${open ? ' open' : ''}${DS.newId === d.id ? ' new' : ''}`,
      'data-testid': 'ds-row', 'data-dataset-id': d.id, 'data-name': d.name, tabindex: 0, 'aria-expanded': String(open),
      onclick: () => toggleDataset(d.id),
      onkeydown: (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); toggleDataset(d.id); } },
    },
    h('td', {}, h('strong', { text: d.name }), d.is_owner ? '' : h('span', { class: 'tag', text: t('owner_other') })),
    h('td', { class: 'num', text: d.num_images }),
    h('td', {}, classes.slice(0, 4).map((c) => h('span', { class: 'tag', text: c })), (d.class_count || classes.length) > 4 ? `+${(d.class_count || classes.length) - 4}` : ''),
    h('td', { text: t(d.visibility) }),
    h('td', { text: fmtDate(d.updated_at) }));
    rows.push(row);
    if (open) rows.push(h('tr', { class: 'ds-detail', 'data-testid': 'ds-detail', 'data-dataset-id': d.id }, h('td', { colspan: 5 }, datasetDetail(d))));
  });
  body.replaceChildren(...rows);
  DS.newId = null;
  $('#ds-pager').textContent = DS.total > DS.items.length ? `${DS.items.length} / ${DS.total}` : '';
}

function toggleDataset(id) {
  if (DS.open.has(id)) DS.open.delete(id); else DS.open.add(id);
  renderDatasets();
}

function section(title, ...content) {
  return h('div', { class: 'section' }, h('h4', { text: title }), ...content);
}

function datasetDetail(d) {
  const wrap = h('div', {});
  if (d.description) wrap.append(h('p', { text: d.description }));
  wrap.append(h('p', { class: 'muted' },
    `${d.is_owner ? t('owner_you') : t('owner_other')} · ${d.labeled ? t('labeled') : t('unlabeled')} · ${d.num_annotations} ${t('annotations')} · ${fmtBytes(d.total_bytes)}${d.format_version ? ' · DICE ' + d.format_version : ''}`));
  const caps = d.capabilities || {};
  wrap.append(section(t('compatibility'), h('div', { class: 'compat', 'data-testid': 'ds-compat' }, TASKS.map((task) => {
    const c = caps[task] || { status: 'incompatible', reason: '' };
    const tip = [c.conversion, c.reason].filter(Boolean).join(' — ');
    return h('span', { class: `badge ${c.status}`, title: tip, 'data-task': task, 'data-status': c.status },
      `${taskLabel(task)}: ${t('compat_' + c.status)}`);
  }))));
  const snaps = h('div', { 'data-testid': 'ds-snapshots' }, h('span', { class: 'muted', text: '…' }));
  const snapActions = d.is_owner && d.labeled ? h('button', {
    type: 'button', class: 'small', text: t('create_snapshot'),
    onclick: async (e) => {
      e.target.disabled = true;
      try { await api(`/datasets/${d.id}/snapshots`, { method: 'POST', json: {} }); loadSnapshots(d, snaps); } catch (err) { toast(err.message, 'error'); }
      e.target.disabled = false;
    },
  }) : null;
  wrap.append(section(t('snapshots'), snaps, snapActions));
  loadSnapshots(d, snaps);
  if (d.is_owner) wrap.append(section(t('owner_actions'), ownerActions(d)));
  const gallery = h('div', { class: 'gallery', 'data-testid': 'gallery' });
  const pager = h('div', { class: 'pager' });
  wrap.append(section(t('gallery'), gallery, pager));
  loadGallery(d, gallery, pager, DS.pages.get(d.id) || 0);
  return wrap;
}

async function loadSnapshots(d, el) {
  try {
    const list = await api(`/datasets/${d.id}/snapshots`);
    if (!list.length) { el.replaceChildren(h('span', { class: 'muted', text: t('no_snapshots') })); return; }
    el.replaceChildren(h('ul', {}, list.map((s) => h('li', { 'data-testid': 'snapshot' },
      `v${s.version} ${s.name} · ${s.num_images} ${t('images').toLowerCase()} · ${s.num_annotations} ${t('annotations')} · ${fmtDate(s.created_at)}`,
      s.status === 'broken' ? h('span', { class: 'badge failed', text: ` ${t('broken')}` }) : ''))));
  } catch (e) {
    el.replaceChildren(h('span', { class: 'error', text: e.message }));
  }
}

function ownerActions(d) {
  const vis = h('select', { 'data-testid': 'ds-visibility-edit', onclick: (e) => e.stopPropagation() },
    ['private', 'public'].map((v) => h('option', { value: v, selected: d.visibility === v, text: t(v) })));
  vis.addEventListener('change', async () => {
    try {
      const updated = await api(`/datasets/${d.id}`, { method: 'PATCH', json: { visibility: vis.value } });
      Object.assign(d, updated);
      renderDatasets();
    } catch (e) { toast(e.message, 'error'); vis.value = d.visibility; }
  });
  const del = h('button', { type: 'button', class: 'small danger', 'data-testid': 'ds-delete', text: t('delete') });
  del.addEventListener('click', async () => {
    if (!del.classList.contains('armed')) {
      del.classList.add('armed');
      del.textContent = t('really_delete');
      setTimeout(() => { if (del.isConnected) { del.classList.remove('armed'); del.textContent = t('delete'); } }, 4000);
      return;
    }
    del.disabled = true;
    try {
      await api(`/datasets/${d.id}`, { method: 'DELETE' });
      DS.open.delete(d.id);
      releaseGallery(d.id);
      toast(t('deleted', { name: d.name }));
      loadDatasets();
    } catch (e) { toast(e.message, 'error'); del.disabled = false; }
  });
  const add = h('input', { type: 'file', multiple: true, hidden: true, webkitdirectory: true });
  const prog = progressBar();
  const addBtn = h('button', { type: 'button', class: 'small', text: t('add_files'), onclick: () => add.click() });
  add.addEventListener('change', async () => {
    if (!add.files.length) return;
    const fd = new FormData();
    Array.from(add.files).forEach((f) => fd.append('files', f, f.webkitRelativePath || f.name));
    try {
      await uploadWithProgress(d.id, fd, prog);
      loadDatasets();
    } catch (e) { toast(e.message, 'error'); }
    prog.el.hidden = true;
  });
  return h('div', { class: 'row' },
    h('label', { class: 'check' }, t('visibility'), vis), addBtn, add, del, prog.el);
}

function releaseGallery(id) {
  (blobUrls.get(id) || []).forEach((u) => URL.revokeObjectURL(u));
  blobUrls.delete(id);
}

function overlay(img, anns, ds) {
  const W = img.width || 1; const H = img.height || 1;
  const unit = Math.max(W, H);
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('class', 'overlay');
  const add = (tag, attrs) => {
    const el = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    svg.append(el);
    return el;
  };
  (anns || []).forEach((a) => {
    const color = COLORS[(Number(a.category_id) || 0) % COLORS.length];
    const stroke = { fill: 'none', stroke: color, 'stroke-width': 2, 'vector-effect': 'non-scaling-stroke' };
    if (Array.isArray(a.segmentation)) {
      a.segmentation.forEach((poly) => {
        if (!Array.isArray(poly) || poly.length < 6) return;
        const pts = [];
        for (let i = 0; i + 1 < poly.length; i += 2) pts.push(`${poly[i]},${poly[i + 1]}`);
        add('polygon', Object.assign({}, stroke, { points: pts.join(' '), fill: color, 'fill-opacity': 0.2, class: 'ann-polygon' }));
      });
    }
    if (Array.isArray(a.rotated_bbox) && a.rotated_bbox.length >= 5) {
      const [cx, cy, w, hh, ang] = a.rotated_bbox.map(Number);
      const r = (ang * Math.PI) / 180; const c = Math.cos(r); const s = Math.sin(r);
      const pts = [[-w / 2, -hh / 2], [w / 2, -hh / 2], [w / 2, hh / 2], [-w / 2, hh / 2]]
        .map(([px, py]) => `${cx + px * c - py * s},${cy + px * s + py * c}`);
      add('polygon', Object.assign({}, stroke, { points: pts.join(' '), class: 'ann-rbox' }));
    } else if (Array.isArray(a.bbox) && a.bbox.length === 4) {
      const [bx, by, bw, bh] = a.bbox.map(Number);
      add('rect', Object.assign({}, stroke, { x: bx, y: by, width: bw, height: bh, class: 'ann-box' }));
      const label = add('text', { x: bx + unit * 0.01, y: by + unit * 0.07, fill: color, 'font-size': unit * 0.07, class: 'ann-label' });
      label.textContent = className(ds, a.category_id);
    }
    if (Array.isArray(a.keypoints)) {
      for (let i = 0; i + 2 < a.keypoints.length; i += 3) {
        const [kx, ky, v] = [a.keypoints[i], a.keypoints[i + 1], a.keypoints[i + 2]];
        if (!v || kx === undefined) continue;
        add('circle', { cx: kx, cy: ky, r: unit * 0.015, fill: color, stroke: '#fff', 'stroke-width': 1, 'vector-effect': 'non-scaling-stroke', class: 'ann-kp' });
      }
    }
  });
  return svg;
}

async function loadGallery(d, grid, pager, page) {
  DS.pages.set(d.id, page);
  releaseGallery(d.id);
  grid.replaceChildren(h('span', { class: 'muted', text: '…' }));
  let data;
  try {
    data = await api(`/datasets/${d.id}/images?offset=${page * GALLERY_PAGE}&limit=${GALLERY_PAGE}&include_annotations=true`);
  } catch (e) {
    grid.replaceChildren(h('span', { class: 'error', text: e.message }));
    return;
  }
  if (!grid.isConnected) return;
  const urls = [];
  blobUrls.set(d.id, urls);
  grid.replaceChildren(...(data.items.length ? [] : [h('span', { class: 'muted', text: t('no_images') })]));
  data.items.forEach((img) => {
    const im = h('img', { alt: img.file_name, loading: 'lazy' });
    const thumb = h('div', { class: 'thumb', style: `aspect-ratio: ${img.width || 1} / ${img.height || 1}` }, im, overlay(img, img.annotations, d));
    const labels = (img.annotations || []).filter((a) => !a.bbox && !a.segmentation && !a.keypoints && !a.rotated_bbox)
      .map((a) => className(d, a.category_id));
    grid.append(h('figure', { 'data-testid': 'gallery-item', 'data-image-id': img.id },
      thumb, h('figcaption', { title: img.file_name, text: labels.length ? `${labels.join(', ')} · ${img.file_name}` : img.file_name })));
    api(`/datasets/${d.id}/images/${img.id}/thumbnail?size=256`, { blob: true }).then((blob) => {
      const u = URL.createObjectURL(blob);
      if (blobUrls.get(d.id) === urls) { urls.push(u); im.src = u; } else URL.revokeObjectURL(u);
    }).catch(() => {});
  });
  const from = data.total ? page * GALLERY_PAGE + 1 : 0;
  const to = Math.min(data.total, (page + 1) * GALLERY_PAGE);
  pager.replaceChildren(
    h('button', { type: 'button', class: 'small', disabled: page === 0, text: t('prev'), 'data-testid': 'gallery-prev', onclick: () => loadGallery(d, grid, pager, page - 1) }),
    h('span', { 'data-testid': 'gallery-range', text: t('page_of', { a: from, b: to, n: data.total }) }),
    h('button', { type: 'button', class: 'small', disabled: to >= data.total, text: t('next'), 'data-testid': 'gallery-next', onclick: () => loadGallery(d, grid, pager, page + 1) }));
}

export const createProgress = { el: null, set: null };

export function sourceKind() {
  const r = $('input[name="ds-source"]:checked');
  return r ? r.value : 'folder';
}

export function resetCreateForm() {
  $('#ds-create').reset();
  $('#ds-folder').hidden = false;
  $('#ds-zip').hidden = true;
  $('#ds-create-error').textContent = '';
  $('#ds-progress').hidden = true;
}

export async function submitCreate(ev) {
  ev.preventDefault();
  const err = $('#ds-create-error');
  err.textContent = '';
  const name = $('#ds-name').value.trim();
  if (!name) { err.textContent = t('need_name'); return; }
  const kind = sourceKind();
  const files = kind === 'zip' ? Array.from($('#ds-zip').files).slice(0, 1) : Array.from($('#ds-folder').files);
  if (!files.length) { err.textContent = t('need_files'); return; }
  const fd = new FormData();
  if (kind === 'zip') fd.append('archive', files[0], files[0].name);
  else files.forEach((f) => fd.append('files', f, f.webkitRelativePath || f.name)); // keeps the folder tree
  const submit = $('#ds-submit');
  submit.disabled = true;
  let created = null;
  try {
    created = await api('/datasets', { json: { name, description: $('#ds-description').value, visibility: $('#ds-visibility').value } });
    const out = await uploadWithProgress(created.id, fd, createProgress);
    const ds = out.dataset || created;
    $('#ds-create').hidden = true;
    resetCreateForm();
    const notice = $('#ds-notice');
    notice.textContent = t('ds_created', { name: ds.name, n: ds.num_images });
    notice.hidden = false;
    DS.newId = ds.id; // highlighted in the table; nothing opens, nothing navigates
    await loadDatasets();
  } catch (e) {
    err.textContent = created ? t('ds_created_upload_failed', { name: created.name, err: e.message }) : e.message;
    if (created) loadDatasets();
  } finally {
    submit.disabled = false;
  }
}
