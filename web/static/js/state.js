/* The page's session state S (token, email, chat session, server config, open tab, the Test
 * tab's job), first read from localStorage.
 */
import { KEYS } from './constants.js';

export const S = {
  token: localStorage.getItem(KEYS.token),
  email: localStorage.getItem(KEYS.email),
  sessionId: localStorage.getItem(KEYS.session),
  config: { mlflow_ui_url: null },
  tab: 'jobs',
};
