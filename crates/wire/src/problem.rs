//! RFC 9457 problem details, the body of every error response.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An error response (`Content-Type: application/problem+json`).
///
/// `code` is the stable, machine-readable part; `title` and `detail` are for humans and may
/// change wording between releases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// A URI reference naming the problem type.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable snake_case error code, e.g. `room_not_found`.
    pub code: String,
}
