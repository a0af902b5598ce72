// connection.js — the connection badge (#conn-status): online, connecting, offline, or
// reconnecting with a countdown to the next attempt and a "retry now" button.

import { announce } from './announce.js';
import { $, state } from './state.js';

const CONN_ANNOUNCE = {
  online: 'Connected.',
  reconnecting: 'Connection lost. Reconnecting…',
};

export function renderConnState(stateName, info = {}) {
  const box = $('conn-status');
  // Screen readers hear transitions only, not the countdown.
  if (box.dataset.state !== stateName && CONN_ANNOUNCE[stateName] && !(stateName === 'online' && box.dataset.state === 'connecting')) {
    announce(CONN_ANNOUNCE[stateName]);
  }
  box.dataset.state = stateName;
  const text = $('conn-text');
  const retry = $('conn-retry');
  clearInterval(state.connTick);
  retry.hidden = true;
  if (stateName === 'online') text.textContent = 'Online';
  else if (stateName === 'connecting') text.textContent = 'Connecting…';
  else if (stateName === 'offline') text.textContent = 'Offline';
  else if (stateName === 'reconnecting') {
    const paint = () => {
      const left = info.retryAt ? Math.ceil((info.retryAt - Date.now()) / 1000) : 0;
      text.textContent = left > 0 ? `Reconnecting in ${left} s…` : 'Reconnecting…';
    };
    paint();
    if (info.retryAt) {
      retry.hidden = false;
      state.connTick = setInterval(paint, 500);
    }
  }
  document.body.dataset.conn = stateName;
}
