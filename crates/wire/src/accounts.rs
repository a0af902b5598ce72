//! Accounts and operators: one's own account, two-factor, password resets, reports, and the
//! `/admin/` API.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::{Room, User};

/// One's own account (`GET /me`, `PATCH /me`): a `user` with what only its owner sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Account {
    pub id: Uuid,
    pub username: String,
    pub created_at: DateTime<Utc>,
    pub email: Option<String>,
    /// Whether `email` was confirmed with a mailed code (`POST /me/email/confirm`); only a
    /// verified address gets notification e-mail. Changing the address unverifies it.
    pub email_verified: bool,
    /// Notification e-mail wanted; turned off by the one-click unsubscribe link.
    pub email_notifications: bool,
    pub is_admin: bool,
    pub totp_enabled: bool,
}

/// `POST /me/email/confirm`: the code mailed by `POST /me/email/verify`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConfirmEmailRequest {
    /// The 6 digits from the mail.
    #[schema(max_length = 32)]
    pub code: String,
}

/// `PATCH /me`: the fields to change (absent ones stay; `email: null` removes the address).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct UpdateAccountRequest {
    /// An address of the shape `local@domain`, at most 254 characters, or `null`.
    #[serde(
        default,
        with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(
        value_type = Option<String>,
        max_length = 254,
        pattern = "^[^@\\u0000\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]+@[^@\\u0000\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]+$"
    )]
    pub email: Option<Option<String>>,
}

/// `Option<Option<T>>` that tells an absent field (`None`) from `null` (`Some(None)`).
mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer, T: Serialize>(
        value: &Option<Option<T>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(inner) => inner.serialize(serializer),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        deserializer: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(deserializer).map(Some)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChangePasswordRequest {
    pub current_password: String,
    /// 8–128 characters.
    #[schema(min_length = 8, max_length = 128)]
    pub new_password: String,
}

/// `DELETE /me`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeleteAccountRequest {
    pub password: String,
}

/// `POST /me/2fa/setup`: the secret to put into an authenticator app.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TotpSetup {
    /// Base32, as authenticator apps take it.
    pub secret: String,
    /// `otpauth://totp/…`, for a QR code.
    pub otpauth_url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TotpCodeRequest {
    /// The six digits the authenticator app shows.
    pub code: String,
}

/// `POST /me/2fa/enable`: shown once; each code logs in once instead of a TOTP code.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RecoveryCodes {
    pub recovery_codes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TotpDisableRequest {
    pub password: String,
    pub code: String,
}

/// `POST /auth/password-reset`: one of the two.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct PasswordResetRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PasswordResetConfirm {
    pub token: String,
    /// 8–128 characters.
    #[schema(min_length = 8, max_length = 128)]
    pub new_password: String,
}

/// `POST …/report`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReportRequest {
    /// 1–1000 characters, not blank.
    #[schema(
        min_length = 1,
        max_length = 1000,
        pattern = "^[^\\u0000]*[^\\u0000\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]+[^\\u0000]*$"
    )]
    pub reason: String,
}

/// A report as its author sees it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReportReceipt {
    pub id: Uuid,
    /// `open`.
    pub status: ReportStatus,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportStatus {
    Open,
    Resolved,
}

/// What an admin did about a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportAction {
    None,
    DeleteMessage,
    DeactivateUser,
}

/// A report in the admins' queue.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Report {
    pub id: Uuid,
    /// `message` or `user`.
    pub kind: String,
    pub reporter: User,
    /// The reported user (the message's sender for a message report).
    pub target_user: User,
    pub room_id: Option<Uuid>,
    pub message_id: Option<Uuid>,
    pub reason: String,
    pub status: ReportStatus,
    pub created_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub action: Option<ReportAction>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Reports {
    pub reports: Vec<Report>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ResolveReportRequest {
    pub action: ReportAction,
    /// At most 1000 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 1000, pattern = "^[^\\u0000]*$")]
    pub note: Option<String>,
}

/// A user as admins see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AdminUser {
    pub id: Uuid,
    pub username: String,
    pub created_at: DateTime<Utc>,
    pub is_admin: bool,
    pub deactivated_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AdminUsers {
    pub users: Vec<AdminUser>,
    pub total: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AdminRooms {
    pub rooms: Vec<Room>,
    pub total: i64,
}

/// `?q=&page=&page_size=` of the admin lists.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AdminListQuery {
    /// Names starting with this (case-insensitive).
    #[param(pattern = "^[^\\u0000]*$")]
    pub q: Option<String>,
    /// 1-based, default 1.
    #[param(minimum = 1)]
    pub page: Option<u64>,
    /// 1–100, default 50.
    #[param(minimum = 1, maximum = 100)]
    pub page_size: Option<u64>,
}

/// `?status=` of the reports queue.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportsQuery {
    /// Default `open`.
    pub status: Option<ReportStatus>,
}

/// `?before=&limit=` of the audit log.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Entries with an `id` below this one (the next page).
    pub before: Option<i64>,
    /// 1–100, default 50.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
}

/// One audited action.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// Who acted; `null` for an operator's command or a failed login of an unknown name.
    pub actor: Option<User>,
    /// e.g. `login`, `login_failed`, `password_changed`, `admin.user_deactivated`.
    pub action: String,
    /// What it was done to: `user:{id}`, `room:{id}`, `message:{id}`, `report:{id}`.
    pub target: Option<String>,
    /// The client address of the request.
    pub ip: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditLog {
    pub entries: Vec<AuditEntry>,
}
