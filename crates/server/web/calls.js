// calls.js — audio calls between the two people of a direct room: WebRTC for the media (peer
// to peer), the WebSocket for the signalling (`call.invite` / `.answer` / `.candidate` /
// `.reject` / `.hangup`, relayed by the server with `from`; see CONTRACT.md and
// docs/WEBSOCKET.md "Calls").
//
// One call at a time. The caller: microphone → RTCPeerConnection (ICE servers from
// `GET /voip/turn` when the server has TURN, else host candidates only) → offer in
// `call.invite` → the answer's SDP in `call.answer`. The callee: `call.invite` rings (the
// panel with Accept / Decline); Accept does the same with the offer and sends `call.answer`.
// ICE candidates travel as `call.candidate` both ways; those that arrive before the remote
// description is set (the caller's, while the callee's phone still rings) wait in a queue.
//
// The panel's `data-state` is the call's (`outgoing`, `incoming`, `connecting`, `connected`,
// `ended`) and `data-pc-state` the RTCPeerConnection's `connectionState`.

import { api } from './api.js';
import { $, state } from './state.js';
import * as ui from './ui.js';

/** How long the "call ended" panel stays up. */
const ENDED_SHOW_MS = 6_000;
/** After `turn_not_configured`, calls go without TURN for this long before asking again. */
const NO_TURN_RECHECK_MS = 10 * 60_000;

const REASONS = {
  timeout: (c) => (c.role === 'caller' ? 'No answer.' : 'Missed call.'),
  answered_elsewhere: () => 'Answered on another device.',
  rejected_elsewhere: () => 'Declined on another device.',
  disconnected: (c) => `${c.peer.username} was disconnected.`,
};

const ERRORS = {
  cannot_message_user: 'You cannot call this person.',
  call_not_found: 'This call is over.',
  call_exists: 'This call is already going on.',
  invalid_call_state: 'The call could not go on.',
};

/**
 * The call going on, or null: `{id, role: 'caller'|'callee', peer, state, pc, stream, offer,
 * remoteSet, queued: [candidate], outgoingOpen, outgoing: [candidate]}`.
 */
let call = null;
let hideTimer = null;
let noTurnUntil = 0;

export function bindCalls({ currentPeer }) {
  $('call-btn').append(ui.icon('phone', 18));
  $('call-btn').addEventListener('click', () => {
    const peer = currentPeer();
    if (peer) startCall(peer);
  });
  $('call-accept').addEventListener('click', accept);
  $('call-reject').addEventListener('click', reject);
  $('call-hangup').addEventListener('click', () => hangUp());
  $('call-dismiss').addEventListener('click', hidePanel);
}

/** Show the call button when the open room is a direct one. */
export function renderCallButton(peer) {
  $('call-btn').hidden = !peer;
  if (peer) $('call-btn').setAttribute('aria-label', `Call ${peer.username}`);
}

/** Every `call.*` event from the server. */
export function handleCallEvent(ev) {
  switch (ev.type) {
    case 'call.invite':
      return onInvite(ev);
    case 'call.answer':
      return onAnswer(ev);
    case 'call.candidate':
      return onCandidate(ev);
    case 'call.reject':
      if (call?.id === ev.call_id) finish(`${ev.from?.username || call.peer.username} declined the call.`);
      return undefined;
    case 'call.hangup':
      if (call?.id !== ev.call_id) return undefined;
      if (ev.reason) return finish((REASONS[ev.reason] || (() => `Call ended (${ev.reason}).`))(call), ev.reason);
      return finish(`${ev.from?.username || call.peer.username} hung up.`);
    default:
      return undefined;
  }
}

/** A WebSocket `error` whose `ref` is my call: true when it was (and the call is over). */
export function handleCallError(ev) {
  if (!call || ev.ref !== call.id) return false;
  finish(ERRORS[ev.code] || ev.message || 'The call failed.', ev.code);
  return true;
}

/** The socket closed: the server ends the call for the other side too. */
export function socketClosed() {
  if (call) finish('Connection lost.');
}

/** Logging out. */
export function endCalls() {
  if (call && call.state !== 'ended') send({ type: 'call.hangup', call_id: call.id });
  if (call) teardown();
  call = null;
  hidePanel();
}

function send(frame) {
  return !!state.socket?.send(frame);
}

function newCallId() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function busy() {
  return !!call && call.state !== 'ended';
}

async function startCall(peer) {
  if (busy()) return ui.toast('You are already in a call.', 'warn');
  if (!state.socket?.isOpen) return ui.toast('You are offline: calls need the connection.', 'error');
  if (!navigator.mediaDevices?.getUserMedia || !window.RTCPeerConnection) {
    return ui.toast('This browser (or a page not served over HTTPS) cannot make calls.', 'error');
  }
  const c = newCall(newCallId(), 'caller', peer);
  setState('outgoing', `Calling ${peer.username}…`);
  try {
    await openMedia(c);
    if (call !== c) return;
    const offer = await c.pc.createOffer();
    await c.pc.setLocalDescription(offer);
    if (call !== c) return;
    if (!send({ type: 'call.invite', call_id: c.id, to_user_id: peer.id, media: 'audio', sdp: offer.sdp })) {
      return finish('You are offline.');
    }
    flushOutgoing(c);
  } catch (e) {
    if (call === c) finish(mediaError(e));
  }
}

function onInvite(ev) {
  if (!ev.from || !ev.call_id) return;
  if (busy()) {
    // Already on a call here: say no (the server stops it ringing on my other devices too).
    send({ type: 'call.reject', call_id: ev.call_id });
    return;
  }
  const c = newCall(ev.call_id, 'callee', ev.from);
  c.offer = ev.sdp;
  setState('incoming', `${ev.from.username} is calling…`);
  announce(`Incoming call from ${ev.from.username}`);
}

async function accept() {
  const c = call;
  if (!c || c.role !== 'callee' || c.state !== 'incoming') return;
  setState('connecting', 'Connecting…');
  try {
    await openMedia(c);
    if (call !== c) return;
    await c.pc.setRemoteDescription({ type: 'offer', sdp: c.offer });
    await remoteReady(c);
    const answer = await c.pc.createAnswer();
    await c.pc.setLocalDescription(answer);
    if (call !== c) return;
    if (!send({ type: 'call.answer', call_id: c.id, sdp: answer.sdp })) return finish('You are offline.');
    flushOutgoing(c);
  } catch (e) {
    if (call !== c) return;
    send({ type: 'call.hangup', call_id: c.id });
    finish(mediaError(e));
  }
}

function reject() {
  const c = call;
  if (!c || c.role !== 'callee' || c.state !== 'incoming') return;
  send({ type: 'call.reject', call_id: c.id });
  finish('You declined the call.');
}

function hangUp() {
  const c = call;
  if (!c || c.state === 'ended') return;
  send({ type: 'call.hangup', call_id: c.id });
  finish(c.state === 'outgoing' ? 'Call cancelled.' : 'You hung up.');
}

async function onAnswer(ev) {
  const c = call;
  if (!c || c.id !== ev.call_id || c.role !== 'caller' || !c.pc) return;
  setState('connecting', 'Connecting…');
  try {
    await c.pc.setRemoteDescription({ type: 'answer', sdp: ev.sdp });
    await remoteReady(c);
  } catch {
    if (call !== c) return;
    send({ type: 'call.hangup', call_id: c.id });
    finish('The call could not be set up.');
  }
}

async function onCandidate(ev) {
  const c = call;
  if (!c || c.id !== ev.call_id || !ev.candidate) return;
  if (!c.remoteSet) {
    c.queued.push(ev.candidate);
    return;
  }
  try {
    await c.pc.addIceCandidate(ev.candidate);
  } catch {
    /* a candidate the browser cannot use: others may do */
  }
}

/** The remote description is set: add the candidates that came before it. */
async function remoteReady(c) {
  c.remoteSet = true;
  const queued = c.queued.splice(0);
  for (const cand of queued) {
    try {
      await c.pc.addIceCandidate(cand);
    } catch {
      /* as in onCandidate */
    }
  }
}

function newCall(id, role, peer) {
  clearTimeout(hideTimer);
  if (call) teardown();
  call = { id, role, peer, state: 'new', pc: null, stream: null, offer: null, remoteSet: false, queued: [], outgoingOpen: false, outgoing: [] };
  $('call-avatar').replaceChildren(ui.avatar(peer.username));
  $('call-peer').textContent = peer.username;
  $('call-panel').dataset.pcState = 'new';
  $('call-panel').dataset.callId = id;
  $('call-panel').dataset.reason = '';
  return call;
}

/** Microphone and peer connection for call `c`. */
async function openMedia(c) {
  const [stream, iceServers] = await Promise.all([navigator.mediaDevices.getUserMedia({ audio: true }), iceServersFor()]);
  if (call !== c) {
    for (const t of stream.getTracks()) t.stop();
    return;
  }
  c.stream = stream;
  const pc = new RTCPeerConnection({ iceServers });
  c.pc = pc;
  for (const track of stream.getTracks()) pc.addTrack(track, stream);
  pc.onicecandidate = (e) => {
    if (!e.candidate || call !== c) return;
    const cand = e.candidate.toJSON();
    // Before the invite (or answer) is out the other side has nowhere to put it.
    if (c.outgoingOpen) send({ type: 'call.candidate', call_id: c.id, candidate: cand });
    else c.outgoing.push(cand);
  };
  pc.ontrack = (e) => {
    if (call === c) $('call-audio').srcObject = e.streams[0] || new MediaStream([e.track]);
  };
  pc.onconnectionstatechange = () => {
    if (call !== c) return;
    $('call-panel').dataset.pcState = pc.connectionState;
    if (pc.connectionState === 'connected') setState('connected', `In call with ${c.peer.username}`);
    else if (pc.connectionState === 'failed') {
      send({ type: 'call.hangup', call_id: c.id });
      finish('The connection failed.');
    }
  };
}

function flushOutgoing(c) {
  c.outgoingOpen = true;
  for (const cand of c.outgoing.splice(0)) send({ type: 'call.candidate', call_id: c.id, candidate: cand });
}

/** TURN credentials when the server has a TURN server; none (host candidates) otherwise. */
async function iceServersFor() {
  if (Date.now() < noTurnUntil) return [];
  try {
    const t = await api.turn();
    return t?.uris?.length ? [{ urls: t.uris, username: t.username, credential: t.password }] : [];
  } catch (e) {
    // Not configured: do not ask again for a while. Unreachable: try without this time.
    if (e.code === 'turn_not_configured') noTurnUntil = Date.now() + NO_TURN_RECHECK_MS;
    return [];
  }
}

function mediaError(e) {
  if (e?.name === 'NotAllowedError') return 'Microphone access was denied.';
  if (e?.name === 'NotFoundError') return 'No microphone found.';
  return 'The call could not be set up.';
}

function setState(name, text) {
  if (!call) return;
  call.state = name;
  const panel = $('call-panel');
  panel.hidden = false;
  panel.dataset.state = name;
  $('call-status').textContent = text;
  $('call-accept').hidden = name !== 'incoming';
  $('call-reject').hidden = name !== 'incoming';
  $('call-hangup').hidden = name === 'incoming' || name === 'ended';
  $('call-dismiss').hidden = name !== 'ended';
}

/** The call is over (for the reason in `text`): release everything, keep the panel a while. */
function finish(text, reason = '') {
  if (!call || call.state === 'ended') return;
  setState('ended', text);
  $('call-panel').dataset.reason = reason;
  teardown();
  announce(text);
  clearTimeout(hideTimer);
  hideTimer = setTimeout(hidePanel, ENDED_SHOW_MS);
}

function teardown() {
  const c = call;
  if (!c) return;
  if (c.pc) {
    c.pc.onicecandidate = c.pc.ontrack = c.pc.onconnectionstatechange = null;
    c.pc.close();
  }
  for (const t of c.stream?.getTracks() || []) t.stop();
  c.pc = null;
  c.stream = null;
  $('call-audio').srcObject = null;
}

function hidePanel() {
  clearTimeout(hideTimer);
  if (busy()) return;
  call = null;
  const panel = $('call-panel');
  panel.hidden = true;
  panel.dataset.state = '';
}

function announce(text) {
  const a = $('announcer');
  a.textContent = text;
}
