/* Switching the workspace tabs (Jobs, Datasets, Test); each tab loads what it shows.
 */
import { $$ } from './dom.js';
import { S } from './state.js';
import { loadMyWeights } from './weights.js';
import { DS, loadDatasets } from './datasets.js';
import { refreshTestPanel } from './test.js';

// ----------------------------------------------------------------------------------- tabs
export function setTab(name) {
  S.tab = name;
  $$('.tab').forEach((b) => b.classList.toggle('active', b.dataset.tab === name));
  $$('.panel').forEach((p) => { p.hidden = p.dataset.panel !== name; });
  if (location.hash !== '#' + name) history.replaceState(null, '', '#' + name);
  if (name === 'test') refreshTestPanel();
  if (name === 'datasets' && !DS.loaded) loadDatasets();
  if (name === 'datasets') loadMyWeights();
}

export function openTestFor(jobId) {
  S.testJobId = String(jobId);
  setTab('test');
}
