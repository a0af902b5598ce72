// settings.js — the settings page: my e-mail address (and its verification), my password,
// two-factor authentication (QR code drawn here, recovery codes shown once), logging out
// everywhere, exporting my data and deleting my account.
//
// A password change revokes every token, this page's too: the page logs in again with the
// new password (the server answers 204, no token) and carries on with the new token; with
// two-factor on, that would need a fresh code, so it goes back to the login screen instead.

import { api, setSession } from './api.js';
import { onPageShown } from './pages.js';
import { qrSvg } from './qr.js';
import { $, state } from './state.js';
import * as ui from './ui.js';

/** What the server's problem `code`s mean to someone on this page. */
const MESSAGES = {
  invalid_password: 'That password is wrong.',
  invalid_verification_code: 'That code is wrong, expired or used up. Send a new one.',
  invalid_totp: 'That code is wrong or was already used. Wait for the next one.',
  no_email: 'Save an address first.',
  totp_state: 'Two-factor authentication was changed elsewhere. Reload the page.',
  rate_limited: 'Too many attempts. Try again in a minute.',
  service_unavailable: 'The server is busy. Try again in a moment.',
  network_error: 'Could not reach the server.',
};

export function problemText(e, fallback = 'Something went wrong.') {
  return MESSAGES[e?.code] || e?.message || fallback;
}

let handlers = null;

/**
 * handlers: logout(message) — end this page's session and show the login screen;
 * sessionReplaced() — the token changed: reconnect the socket with the new one.
 */
export function bindSettings(h) {
  handlers = h;
  onPageShown('settings', () => {
    resetForms();
    render();
    refreshAccount();
  });
  $('email-form').addEventListener('submit', saveEmail);
  $('email-send-code').addEventListener('click', sendEmailCode);
  $('email-confirm-form').addEventListener('submit', confirmEmail);
  $('password-form').addEventListener('submit', changePassword);
  $('totp-setup').addEventListener('click', setupTotp);
  $('totp-enable-form').addEventListener('submit', enableTotp);
  $('totp-recovery-done').addEventListener('click', () => {
    $('totp-recovery').hidden = true;
    $('totp-recovery-codes').replaceChildren();
    render();
  });
  $('totp-disable-form').addEventListener('submit', disableTotp);
  $('logout-all').addEventListener('click', logoutAll);
  $('export-data').addEventListener('click', exportData);
  $('delete-form').addEventListener('submit', deleteAccount);
}

/** Fetch `/me` (after signing in, and when the page opens). */
export async function refreshAccount() {
  try {
    const account = await api.me();
    if (!state.me || account.id !== state.me.id) return state.account;
    state.account = account;
    render();
  } catch {
    /* a 401 logs out; otherwise the page shows what it has */
  }
  return state.account;
}

function resetForms() {
  for (const id of ['email-error', 'password-error', 'totp-error', 'sessions-error', 'export-error', 'delete-error']) $(id).textContent = '';
  for (const id of ['password-current', 'password-new', 'delete-password', 'totp-disable-password', 'totp-disable-code', 'email-code']) $(id).value = '';
  $('email-input').value = state.account?.email || '';
}

function render() {
  const account = state.account;
  if (!account) return;
  if (document.activeElement !== $('email-input') && !$('email-input').value) $('email-input').value = account.email || '';
  $('email-status').textContent = account.email
    ? `${account.email} — ${account.email_verified ? 'verified' : 'not verified yet'}`
    : 'No address saved.';
  $('email-send-code').hidden = !account.email || account.email_verified;
  const settingUp = !$('totp-setup-box').hidden || !$('totp-recovery').hidden;
  $('totp-status').textContent = account.totp_enabled
    ? 'On: logging in asks for a code from your authenticator app.'
    : 'Off: your password alone logs you in.';
  $('totp-off').hidden = account.totp_enabled || settingUp;
  $('totp-disable-form').hidden = !account.totp_enabled || !$('totp-recovery').hidden;
}

/** Run `fn` with `button` disabled, showing a failure in `errorId`. */
async function busy(button, errorId, fn) {
  $(errorId).textContent = '';
  button.disabled = true;
  try {
    await fn();
  } catch (e) {
    if (e.status !== 401 || state.reauthing) $(errorId).textContent = problemText(e);
  } finally {
    button.disabled = false;
  }
}

// E-mail

function saveEmail(e) {
  e.preventDefault();
  const raw = $('email-input').value.trim();
  return busy($('email-save'), 'email-error', async () => {
    if (raw && !/^[^\s@]+@[^\s@]+$/.test(raw)) throw new Error('That does not look like an e-mail address.');
    state.account = await api.setEmail(raw || null);
    $('email-confirm-form').hidden = true;
    ui.toast(raw ? 'Address saved.' : 'Address removed.', 'info', 3000);
    render();
  });
}

function sendEmailCode() {
  return busy($('email-send-code'), 'email-error', async () => {
    await api.sendEmailCode();
    $('email-confirm-form').hidden = false;
    $('email-code').focus();
    ui.toast(`A code is on its way to ${state.account?.email || 'your address'}.`, 'info', 4000);
  });
}

function confirmEmail(e) {
  e.preventDefault();
  const code = $('email-code').value.trim();
  return busy(e.submitter || $('email-send-code'), 'email-error', async () => {
    if (!code) throw new Error('Enter the code from the e-mail.');
    state.account = await api.confirmEmail(code);
    $('email-confirm-form').hidden = true;
    $('email-code').value = '';
    ui.toast('Address verified.', 'info', 3000);
    render();
  });
}

// Password

function changePassword(e) {
  e.preventDefault();
  const current = $('password-current').value;
  const next = $('password-new').value;
  return busy($('password-submit'), 'password-error', async () => {
    if (!current) throw new Error('Enter your current password.');
    if (next.length < 8 || next.length > 128) throw new Error('New passwords are 8–128 characters.');
    const username = state.me.username;
    const twoFactor = !!state.account?.totp_enabled;
    state.reauthing = true;
    try {
      await api.changePassword(current, next);
    } catch (ex) {
      state.reauthing = false;
      throw ex;
    }
    // Every token is revoked now, ours too.
    if (twoFactor) {
      state.reauthing = false;
      handlers.logout('Password changed. Log in with your new password.');
      return;
    }
    try {
      setSession(await api.login(username, next));
    } catch {
      state.reauthing = false;
      handlers.logout('Password changed. Log in with your new password.');
      return;
    }
    state.reauthing = false;
    handlers.sessionReplaced();
    $('password-current').value = '';
    $('password-new').value = '';
    ui.toast('Password changed. Your other sessions are logged out.', 'info', 5000);
  });
}

// Two-factor

function setupTotp() {
  return busy($('totp-setup'), 'totp-error', async () => {
    const setup = await api.totpSetup();
    $('totp-qr').replaceChildren(qrSvg(setup.otpauth_url, { label: 'QR code for your authenticator app' }));
    $('totp-secret').textContent = setup.secret;
    $('totp-enable-code').value = '';
    $('totp-setup-box').hidden = false;
    render();
    $('totp-enable-code').focus();
  });
}

function enableTotp(e) {
  e.preventDefault();
  const code = $('totp-enable-code').value.replace(/\s+/g, '');
  return busy(e.submitter || $('totp-setup'), 'totp-error', async () => {
    if (!/^\d{6}$/.test(code)) throw new Error('Enter the 6-digit code your app shows.');
    const { recovery_codes: codes } = await api.totpEnable(code);
    if (state.account) state.account.totp_enabled = true;
    $('totp-setup-box').hidden = true;
    $('totp-qr').replaceChildren();
    $('totp-secret').textContent = '';
    $('totp-recovery-codes').replaceChildren(...codes.map((c) => ui.el('li', { text: c })));
    $('totp-recovery').hidden = false;
    render();
  });
}

function disableTotp(e) {
  e.preventDefault();
  const password = $('totp-disable-password').value;
  const code = $('totp-disable-code').value.trim();
  return busy(e.submitter || $('totp-setup'), 'totp-error', async () => {
    if (!password || !code) throw new Error('Enter your password and a code.');
    await api.totpDisable(password, code);
    if (state.account) state.account.totp_enabled = false;
    $('totp-disable-password').value = '';
    $('totp-disable-code').value = '';
    ui.toast('Two-factor authentication is off.', 'info', 3000);
    render();
  });
}

// Sessions, data, account

function logoutAll() {
  return busy($('logout-all'), 'sessions-error', async () => {
    state.reauthing = true;
    try {
      await api.logoutAll();
    } finally {
      state.reauthing = false;
    }
    handlers.logout('You have been logged out everywhere.');
  });
}

function exportData() {
  return busy($('export-data'), 'export-error', async () => {
    const data = await api.exportData();
    const blob = new Blob([JSON.stringify(data, null, 2)], { type: 'application/json' });
    const url = URL.createObjectURL(blob);
    const link = ui.el('a', { attrs: { href: url, download: `nebula-${state.me?.username || 'me'}-export.json` } });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  });
}

function deleteAccount(e) {
  e.preventDefault();
  const password = $('delete-password').value;
  return busy($('delete-submit'), 'delete-error', async () => {
    if (!password) throw new Error('Enter your password to confirm.');
    const ok = await ui.confirm({
      title: 'Delete your account?',
      text: 'Your messages are deleted and you cannot log in again. This cannot be undone.',
      confirmLabel: 'Delete account',
    });
    if (!ok) return;
    state.reauthing = true;
    try {
      await api.deleteAccount(password);
    } finally {
      state.reauthing = false;
    }
    handlers.logout('Your account has been deleted.');
  });
}
