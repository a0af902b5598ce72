// stories.js — the stories bar at the top of the room list: my stories and my contacts'
// (`GET /stories`, unexpired, newest first), one circle per author. Opening one shows that
// author's stories one at a time and records a view of each (`POST /stories/{id}/views`); on
// my own, the viewer lists who has seen it and can delete it. "Your story" posts text and/or
// an image (uploaded first, with its progress). The list is fetched again every minute, when
// the window gets the focus and after my own changes (the server sends no story events).

import { api, uploadMedia } from './api.js';
import { formatSize } from './attachments.js';
import { $, state } from './state.js';
import * as ui from './ui.js';
import { maxUploadBytes } from './uploads.js';

const REFRESH_MS = 60_000;
const TEXT_MAX = 4000;

let stories = [];
let timer = null;
/** Stories this page has shown (their circles turn grey), by id. */
const seen = new Set();
/** The open viewer: the author's stories and which one is shown. */
let viewing = null;
let loading = null;

export function bindStories() {
  $('story-post-form').addEventListener('submit', (e) => {
    e.preventDefault();
    postStory();
  });
  $('story-post-cancel').addEventListener('click', () => $('story-post-dialog').close());
  $('story-post-dialog').addEventListener('close', resetPostForm);
  $('story-image').addEventListener('change', () => {
    const f = $('story-image').files[0];
    $('story-image-name').textContent = f ? `${f.name} · ${formatSize(f.size)}` : '';
  });
  $('story-close').addEventListener('click', () => $('story-viewer').close());
  $('story-prev').addEventListener('click', () => step(-1));
  $('story-next').addEventListener('click', () => step(1));
  $('story-delete').addEventListener('click', deleteShown);
  $('story-viewer').addEventListener('keydown', (e) => {
    if (e.key === 'ArrowLeft') step(-1);
    else if (e.key === 'ArrowRight') step(1);
  });
  $('story-viewer').addEventListener('close', () => {
    viewing = null;
    $('story-media').replaceChildren();
    render();
  });
  window.addEventListener('focus', () => {
    if (state.me) refreshStories();
  });
}

/** After logging in: fetch now and every minute. */
export function startStories() {
  stopStories();
  refreshStories();
  timer = setInterval(refreshStories, REFRESH_MS);
}

/** On logging out. */
export function stopStories() {
  clearInterval(timer);
  timer = null;
  stories = [];
  seen.clear();
  viewing = null;
  $('stories-bar').replaceChildren();
}

/** Fetch the list again (one request at a time). */
export function refreshStories() {
  if (loading) return loading;
  loading = api
    .stories()
    .then((res) => {
      stories = res.stories || [];
      render();
    })
    .catch(() => {
      /* offline or logged out: keep what is shown */
    })
    .finally(() => {
      loading = null;
    });
  return loading;
}

/** The authors in the bar: me first, then by their newest story. */
function authors() {
  const byUser = new Map();
  for (const s of stories) {
    if (!byUser.has(s.user.id)) byUser.set(s.user.id, { user: s.user, stories: [] });
    byUser.get(s.user.id).stories.push(s);
  }
  for (const a of byUser.values()) a.stories.reverse(); // oldest first, to watch in order
  const list = [...byUser.values()];
  list.sort((a, b) => (a.user.id === state.me?.id ? -1 : b.user.id === state.me?.id ? 1 : 0));
  return list;
}

function render() {
  const bar = $('stories-bar');
  if (!state.me) return;
  const add = ui.el(
    'li',
    { class: 'story-item story-add' },
    ui.el(
      'button',
      {
        class: 'story-btn',
        attrs: { type: 'button', 'aria-label': 'Post a story', title: 'Post a story' },
        on: { click: openPostDialog },
      },
      ui.el('span', { class: 'story-ring' }, ui.avatar(state.me.username), ui.el('span', { class: 'story-plus' }, ui.icon('plus', 12))),
      ui.el('span', { class: 'story-name', text: 'Your story' }),
    ),
  );
  const items = authors().map((a) => {
    const mine = a.user.id === state.me.id;
    const unseen = a.stories.some((s) => !seen.has(s.id));
    return ui.el(
      'li',
      { class: `story-item${unseen && !mine ? ' unseen' : ''}`, dataset: { user: a.user.username } },
      ui.el(
        'button',
        {
          class: 'story-btn',
          attrs: {
            type: 'button',
            'aria-label': `${mine ? 'Your' : `${a.user.username}’s`} stories (${a.stories.length})`,
            title: mine ? 'Your stories' : a.user.username,
          },
          on: { click: () => openViewer(a) },
        },
        ui.el('span', { class: 'story-ring' }, ui.avatar(a.user.username)),
        ui.el('span', { class: 'story-name', text: mine ? 'You' : a.user.username }),
      ),
    );
  });
  bar.replaceChildren(add, ...items);
}

// ---------------------------------------------------------------------------------------------
// Posting

function openPostDialog() {
  resetPostForm();
  $('story-post-dialog').showModal();
  $('story-text').focus();
}

function resetPostForm() {
  $('story-text').value = '';
  $('story-image').value = '';
  $('story-image-name').textContent = '';
  $('story-post-error').textContent = '';
  $('story-progress').hidden = true;
  $('story-post-submit').disabled = false;
}

async function postStory() {
  const text = $('story-text').value.trim();
  const file = $('story-image').files[0] || null;
  const err = $('story-post-error');
  err.textContent = '';
  if (!text && !file) {
    err.textContent = 'Write something or choose an image.';
    return;
  }
  if ([...text].length > TEXT_MAX) {
    err.textContent = `At most ${TEXT_MAX} characters.`;
    return;
  }
  if (file && file.size > maxUploadBytes()) {
    err.textContent = `The image is too large (at most ${formatSize(maxUploadBytes())}).`;
    return;
  }
  const submit = $('story-post-submit');
  submit.disabled = true;
  try {
    let mediaId = null;
    if (file) {
      const progress = $('story-progress');
      progress.hidden = false;
      progress.value = 0;
      const media = await uploadMedia(file, {
        onProgress: (sent, total) => {
          progress.value = Math.round((sent / (total || 1)) * 100);
        },
      });
      mediaId = media.id;
    }
    await api.postStory({ text, mediaId });
    $('story-post-dialog').close();
    ui.toast('Story posted.', 'info', 2500);
    refreshStories();
  } catch (ex) {
    err.textContent = ex.code === 'payload_too_large' ? 'The image is too large.' : ex.detail || 'Could not post the story.';
    submit.disabled = false;
  }
}

// ---------------------------------------------------------------------------------------------
// Viewing

function openViewer(author) {
  viewing = { author, index: Math.max(0, author.stories.findIndex((s) => !seen.has(s.id))) };
  const dialog = $('story-viewer');
  if (!dialog.open) dialog.showModal();
  show();
}

function step(delta) {
  if (!viewing) return;
  const next = viewing.index + delta;
  if (next < 0 || next >= viewing.author.stories.length) return;
  viewing.index = next;
  show();
}

function show() {
  const { author, index } = viewing;
  const story = author.stories[index];
  const mine = story.user.id === state.me.id;
  $('story-viewer').dataset.storyId = story.id;
  $('story-author').replaceChildren(ui.avatar(story.user.username, 'sm'), ' ', ui.el('strong', { text: mine ? 'You' : story.user.username }));
  $('story-time').replaceChildren(ui.timeEl(ui.parseDate(story.created_at)));
  $('story-counter').textContent = author.stories.length > 1 ? `${index + 1} / ${author.stories.length}` : '';
  $('story-body').textContent = story.text || '';
  $('story-body').hidden = !story.text;
  const media = story.media;
  $('story-media').replaceChildren(
    media?.url ? ui.el('img', { class: 'story-img', attrs: { src: media.url, alt: media.filename } }) : '',
  );
  $('story-prev').disabled = index === 0;
  $('story-next').disabled = index === author.stories.length - 1;
  $('story-delete').hidden = !mine;
  $('story-views-box').hidden = !mine;
  $('story-views').replaceChildren();
  seen.add(story.id);
  if (mine) loadViews(story);
  else
    api.viewStory(story.id).catch((e) => {
      if (e.code === 'story_not_found') gone(story);
    });
}

async function loadViews(story) {
  $('story-views-title').textContent = 'Seen by …';
  try {
    const { views } = await api.storyViews(story.id);
    if ($('story-viewer').dataset.storyId !== story.id) return;
    $('story-views-title').textContent = views.length ? `Seen by ${views.length}` : 'No views yet';
    $('story-views').replaceChildren(
      ...views.map((v) =>
        ui.el(
          'li',
          { class: 'story-view', dataset: { user: v.user.username } },
          ui.avatar(v.user.username, 'sm'),
          ui.el('span', { class: 'story-view-name', text: v.user.username }),
          ui.timeEl(ui.parseDate(v.viewed_at)),
        ),
      ),
    );
  } catch (e) {
    if (e.code === 'story_not_found') gone(story);
    else $('story-views-title').textContent = 'Could not load who has seen it.';
  }
}

async function deleteShown() {
  if (!viewing) return;
  const story = viewing.author.stories[viewing.index];
  const ok = await ui.confirm({ title: 'Delete this story?', text: 'Nobody will see it any more.', confirmLabel: 'Delete' });
  if (!ok) return;
  try {
    await api.deleteStory(story.id);
  } catch (e) {
    if (e.code !== 'story_not_found') {
      ui.toast(e.detail || 'Could not delete the story.', 'error');
      return;
    }
  }
  gone(story);
}

/** A story deleted or expired: out of the list and the viewer. */
function gone(story) {
  stories = stories.filter((s) => s.id !== story.id);
  if (viewing) {
    const left = viewing.author.stories.filter((s) => s.id !== story.id);
    if (left.length === 0) $('story-viewer').close();
    else {
      viewing.author.stories = left;
      viewing.index = Math.min(viewing.index, left.length - 1);
      show();
    }
  }
  render();
}
