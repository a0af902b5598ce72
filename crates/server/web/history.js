// history.js — loading a room's history through the SDK session: the newest page when a room is
// first opened (`loadLatest`), older pages as the reader scrolls up (`loadOlder`), and enough of
// them to fill the viewport. The session merges each page into the room's timeline (no holes,
// no duplicates, each message in its newest version); feed.js draws what changed.

import { syncRoom } from './feed.js';
import { scheduleRead } from './reads.js';
import { $, state } from './state.js';
import * as timeline from './timeline.js';
import * as ui from './ui.js';

const PAGE_SIZE = 50;

/** The room's newest page, then the whole list drawn (if it is the open room). */
export async function loadLatest(room) {
  if (room.loading) return room.loading;
  const session = state.socket?.session;
  if (!session) return undefined;
  room.loadError = false;
  const run = session.loadLatest(room.id, { limit: PAGE_SIZE });
  room.loading = run;
  if (room.id === state.currentId) timeline.renderHistoryStatus(room);
  try {
    await run;
    room.loaded = true;
  } catch (e) {
    room.loadError = true;
    if (e.status !== 401) ui.toast(`Could not load messages: ${e.detail ?? e.message}`, 'error');
  } finally {
    room.loading = null;
  }
  if (state.rooms.get(room.id) !== room) return undefined;
  syncRoom(room);
  if (room.id === state.currentId) {
    timeline.renderTimeline(room);
    timeline.scrollToUnreadOrBottom(room);
    fillViewport(room);
    scheduleRead();
  }
  return undefined;
}

/** The page below the oldest message held (the list keeps its place: timeline.syncList). */
export async function loadOlder(room) {
  const session = state.socket?.session;
  if (!session || !room.loaded || room.loadingOlder || !room.hasMoreOlder) return;
  room.loadingOlder = true;
  room.loadError = false;
  const current = () => room.id === state.currentId;
  if (current()) timeline.renderHistoryStatus(room);
  try {
    await session.loadOlder(room.id, { limit: PAGE_SIZE });
  } catch (e) {
    room.loadError = true;
    if (e.status !== 401) ui.toast(`Could not load older messages: ${e.detail ?? e.message}`, 'error');
  } finally {
    room.loadingOlder = false;
    syncRoom(room);
    if (current()) {
      timeline.renderHistoryStatus(room);
      timeline.scheduleReceipts();
    }
  }
}

/** Load older pages until the timeline can scroll (so "scroll up for more" works). */
async function fillViewport(room) {
  const scroller = $('scroller');
  for (let i = 0; i < 10 && room.id === state.currentId && room.hasMoreOlder && !room.loadError; i++) {
    if (scroller.scrollHeight > scroller.clientHeight + 40) break;
    await loadOlder(room);
  }
}
