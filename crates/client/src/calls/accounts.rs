//! Registration, login, and the caller's own account (`/auth`, `/me`).

use nebula_wire::{
    Account, AuthResponse, ChangePasswordRequest, ConfirmEmailRequest, DeleteAccountRequest,
    LoginRequest, PasswordResetConfirm, PasswordResetRequest, RecoveryCodes, RegisterRequest,
    TotpCodeRequest, TotpDisableRequest, TotpSetup, UpdateAccountRequest,
};

use crate::routes::*;
use crate::{Client, Result};

impl Client {
    /// Creates an account and acts as it from now on.
    pub async fn register(&mut self, username: &str, password: &str) -> Result<AuthResponse> {
        self.register_with(&RegisterRequest {
            username: username.to_owned(),
            password: password.to_owned(),
            email: None,
        })
        .await
    }

    /// [`register`](Client::register) with every field (an email address).
    pub async fn register_with(&mut self, request: &RegisterRequest) -> Result<AuthResponse> {
        let auth: AuthResponse = self.fetch(self.at(REGISTER, &[]).json(request)).await?;
        self.set_token(auth.token.clone());
        Ok(auth)
    }

    /// Logs in and acts as that user from now on.
    pub async fn login(&mut self, username: &str, password: &str) -> Result<AuthResponse> {
        self.login_with(&LoginRequest {
            username: username.to_owned(),
            password: password.to_owned(),
            totp_code: None,
            recovery_code: None,
        })
        .await
    }

    /// [`login`](Client::login) with a second factor.
    pub async fn login_with(&mut self, request: &LoginRequest) -> Result<AuthResponse> {
        let auth: AuthResponse = self.fetch(self.at(LOGIN, &[]).json(request)).await?;
        self.set_token(auth.token.clone());
        Ok(auth)
    }

    /// Ends every session of the caller (every token issued so far stops working).
    pub async fn logout_all(&self) -> Result<()> {
        self.fetch_empty(self.at(LOGOUT_ALL, &[])).await
    }

    /// Mails a reset link to the account, if it has a confirmed address (always 202).
    pub async fn request_password_reset(&self, request: &PasswordResetRequest) -> Result<()> {
        self.fetch_empty(self.at(PASSWORD_RESET, &[]).json(request))
            .await
    }

    pub async fn confirm_password_reset(&self, request: &PasswordResetConfirm) -> Result<()> {
        self.fetch_empty(self.at(PASSWORD_RESET_CONFIRM, &[]).json(request))
            .await
    }

    pub async fn me(&self) -> Result<Account> {
        self.fetch(self.at(ME, &[])).await
    }

    pub async fn update_me(&self, request: &UpdateAccountRequest) -> Result<Account> {
        self.fetch(self.at(UPDATE_ME, &[]).json(request)).await
    }

    /// Deletes the caller's account (the password confirms it).
    pub async fn delete_me(&self, password: &str) -> Result<()> {
        let body = DeleteAccountRequest {
            password: password.to_owned(),
        };
        self.fetch_empty(self.at(DELETE_ME, &[]).json(&body)).await
    }

    /// Everything the server keeps about the caller, as one JSON document.
    pub async fn export(&self) -> Result<serde_json::Value> {
        self.fetch(self.at(EXPORT, &[])).await
    }

    pub async fn change_password(&self, current: &str, new: &str) -> Result<()> {
        let body = ChangePasswordRequest {
            current_password: current.to_owned(),
            new_password: new.to_owned(),
        };
        self.fetch_empty(self.at(CHANGE_PASSWORD, &[]).json(&body))
            .await
    }

    /// Mails a confirmation code to the caller's address.
    pub async fn verify_email(&self) -> Result<()> {
        self.fetch_empty(self.at(EMAIL_VERIFY, &[])).await
    }

    pub async fn confirm_email(&self, code: &str) -> Result<Account> {
        let body = ConfirmEmailRequest {
            code: code.to_owned(),
        };
        self.fetch(self.at(EMAIL_CONFIRM, &[]).json(&body)).await
    }

    /// Starts two-factor setup: the secret to put in an authenticator app.
    pub async fn totp_setup(&self) -> Result<TotpSetup> {
        self.fetch(self.at(TOTP_SETUP, &[])).await
    }

    /// Turns two-factor on with a first code; answers the one-time recovery codes.
    pub async fn totp_enable(&self, code: &str) -> Result<RecoveryCodes> {
        let body = TotpCodeRequest {
            code: code.to_owned(),
        };
        self.fetch(self.at(TOTP_ENABLE, &[]).json(&body)).await
    }

    pub async fn totp_disable(&self, password: &str, code: &str) -> Result<()> {
        let body = TotpDisableRequest {
            password: password.to_owned(),
            code: code.to_owned(),
        };
        self.fetch_empty(self.at(TOTP_DISABLE, &[]).json(&body))
            .await
    }
}
