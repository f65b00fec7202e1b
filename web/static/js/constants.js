/* Constants shared by the page's modules: the API prefix, localStorage keys, job states, task
 * types, metric ordering and the chart palette.
 */

export const API = '/api/v1';
export const KEYS = { token: 'vta.token', email: 'vta.email', lang: 'vta.lang', session: 'vta.session' };
export const TERMINAL = new Set(['completed', 'failed', 'stopped']);
export const RESUMABLE = new Set(['stopped', 'failed', 'interrupted']);
export const TASKS = ['image_classification', 'object_detection', 'instance_segmentation', 'pose_estimation',
  'oriented_object_detection'];
export const GALLERY_PAGE = 12;
export const METRIC_ORDER = [/accuracy_top1|^accuracy$/, /accuracy/, /map50-95|map_50_95/i, /map/i, /precision/, /recall/, /f1/, /^images$/];
export const COLORS = ['#2f5bea', '#e8590c', '#12805c', '#ae3ec9', '#c92a2a', '#1098ad', '#5c940d', '#d6336c'];
