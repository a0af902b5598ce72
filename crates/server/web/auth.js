// auth.js — the login / sign-up screen: the two modes, checks before asking the server, the
// two-factor code the server may ask for (`totp_required`: a 6-digit code or a recovery
// code), and readable messages for the problem codes. A success keeps the session (api.js)
// and hands over to the app (`onSignedIn`).

import { api, setSession } from './api.js';
import { hidePages } from './pages.js';
import { $, state } from './state.js';

export function showAuth(message = '') {
  document.body.classList.remove('in-room');
  hidePages();
  $('user-box').hidden = true;
  $('conn-status').hidden = true;
  $('auth-screen').hidden = false;
  $('auth-error').textContent = message;
  $('auth-password').value = '';
  showSecondFactor(false);
  document.title = 'Nebula';
  setAuthMode(state.authMode);
  $('auth-username').focus();
}

function setAuthMode(mode) {
  state.authMode = mode;
  const register = mode === 'register';
  $('auth-mode-login').setAttribute('aria-selected', String(!register));
  $('auth-mode-register').setAttribute('aria-selected', String(register));
  $('auth-submit').textContent = register ? 'Create account' : 'Log in';
  $('auth-password').setAttribute('autocomplete', register ? 'new-password' : 'current-password');
  $('auth-hint').hidden = !register;
  if (register) showSecondFactor(false);
}

/** The login form's field for a two-factor code (after the server answered `totp_required`). */
function showSecondFactor(on) {
  $('auth-totp-field').hidden = !on;
  $('auth-totp-hint').hidden = !on;
  if (!on) $('auth-totp').value = '';
}

/** `{totp_code}` for six digits, else `{recovery_code}`; nothing when the field is not asked for. */
function secondFactor() {
  if ($('auth-totp-field').hidden) return {};
  const code = $('auth-totp').value.trim();
  if (!code) return {};
  return /^\d{6}$/.test(code.replace(/\s+/g, '')) ? { totp_code: code.replace(/\s+/g, '') } : { recovery_code: code };
}

const AUTH_ERRORS = {
  invalid_credentials: 'Wrong username or password.',
  username_taken: 'That username is taken.',
  invalid_totp: 'That code is wrong or was already used.',
  account_deactivated: 'This account has been deactivated by an administrator.',
  service_unavailable: 'The server is busy. Try again in a moment.',
};

export function bindAuth({ onSignedIn }) {
  $('auth-mode-login').addEventListener('click', () => setAuthMode('login'));
  $('auth-mode-register').addEventListener('click', () => setAuthMode('register'));
  $('auth-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const username = $('auth-username').value.trim();
    const password = $('auth-password').value;
    const err = $('auth-error');
    err.textContent = '';
    if (state.authMode === 'register') {
      if (!/^[A-Za-z0-9_.-]{3,32}$/.test(username)) {
        err.textContent = 'Usernames are 3–32 letters, digits, "_", "." or "-".';
        return;
      }
      if (password.length < 8 || password.length > 128) {
        err.textContent = 'Passwords are 8–128 characters.';
        return;
      }
    } else if (!username || !password) {
      err.textContent = 'Enter your username and password.';
      return;
    }
    const btn = $('auth-submit');
    btn.disabled = true;
    try {
      const auth =
        state.authMode === 'register'
          ? await api.register(username, password)
          : await api.login(username, password, secondFactor());
      setSession(auth);
      onSignedIn();
    } catch (ex) {
      if (ex.code === 'totp_required') {
        showSecondFactor(true);
        err.textContent = 'Enter your authentication code.';
        $('auth-totp').focus();
      } else if (AUTH_ERRORS[ex.code]) err.textContent = AUTH_ERRORS[ex.code];
      else if (ex.status === 429) err.textContent = `Too many attempts. Try again in ${ex.retryAfter || 60} s.`;
      else err.textContent = ex.detail || 'Something went wrong.';
    } finally {
      btn.disabled = false;
    }
  });
}
