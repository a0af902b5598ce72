//! Every REST route the client calls, in one table: the typed calls build their URLs from
//! these, and a test compares [`ALL`] with the server's `/openapi.json` so a new route
//! without a client call is noticed.

use std::fmt::Display;

/// One route of the OpenAPI document: its method, path template and success statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub method: &'static str,
    /// The template as the OpenAPI document spells it, e.g. `/rooms/{room_id}`.
    pub path: &'static str,
    /// The 2xx statuses the document gives for it (e.g. `[201]` for creating a room, `[200,
    /// 201]` where an existing resource is answered too): a typed call treats any other status
    /// as an error ([`crate::Error::UnexpectedStatus`]). Empty for the WebSocket upgrades (101).
    pub success: &'static [u16],
}

impl Route {
    /// The path with each `{parameter}` replaced, in order, by the next of `args`
    /// (percent-encoded: an emoji or a name may be anything).
    pub fn fill(&self, args: &[&(dyn Display + Sync)]) -> String {
        let mut out = String::with_capacity(self.path.len() + 40);
        let mut args = args.iter();
        let mut rest = self.path;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let close = rest[open..].find('}').map_or(rest.len(), |c| open + c + 1);
            match args.next() {
                Some(arg) => out.push_str(&percent_encode(&arg.to_string())),
                None => out.push_str(&rest[open..close]),
            }
            rest = &rest[close..];
        }
        out.push_str(rest);
        out
    }

    pub(crate) fn method(&self) -> reqwest::Method {
        reqwest::Method::from_bytes(self.method.as_bytes()).unwrap_or(reqwest::Method::GET)
    }
}

/// Every byte that is not unreserved in a URL as `%XX`.
pub fn percent_encode(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char);
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

macro_rules! routes {
    ($($name:ident = $method:literal $path:literal [$($status:literal),*];)*) => {
        $(pub const $name: Route = Route { method: $method, path: $path, success: &[$($status),*] };)*
        /// Every route this crate has a call for.
        pub const ALL: &[Route] = &[$($name),*];
    };
}

routes! {
    SERVICE_INFO = "GET" "/" [200];
    HEALTH = "GET" "/health" [200];
    HEALTH_LIVE = "GET" "/health/live" [200];
    HEALTH_READY = "GET" "/health/ready" [200];
    ASYNCAPI = "GET" "/asyncapi.json" [200];
    REGISTER = "POST" "/auth/register" [201];
    LOGIN = "POST" "/auth/login" [200];
    LOGOUT_ALL = "POST" "/auth/logout-all" [204];
    PASSWORD_RESET = "POST" "/auth/password-reset" [202];
    PASSWORD_RESET_CONFIRM = "POST" "/auth/password-reset/confirm" [204];
    ME = "GET" "/me" [200];
    UPDATE_ME = "PATCH" "/me" [200];
    DELETE_ME = "DELETE" "/me" [204];
    EXPORT = "GET" "/me/export" [200];
    CHANGE_PASSWORD = "POST" "/me/password" [204];
    EMAIL_VERIFY = "POST" "/me/email/verify" [202];
    EMAIL_CONFIRM = "POST" "/me/email/confirm" [200];
    NOTIFICATION_SETTINGS = "GET" "/me/notifications" [200];
    UPDATE_NOTIFICATION_SETTINGS = "PUT" "/me/notifications" [200];
    ROOM_NOTIFICATIONS = "PUT" "/rooms/{room_id}/notifications" [200];
    TOTP_SETUP = "POST" "/me/2fa/setup" [200];
    TOTP_ENABLE = "POST" "/me/2fa/enable" [200];
    TOTP_DISABLE = "POST" "/me/2fa/disable" [204];
    MY_ROOMS = "GET" "/rooms" [200];
    CREATE_ROOM = "POST" "/rooms" [201];
    PUBLIC_ROOMS = "GET" "/rooms/public" [200];
    ROOM = "GET" "/rooms/{room_id}" [200];
    CHANGES = "GET" "/rooms/{room_id}/changes" [200];
    ONLINE = "GET" "/rooms/{room_id}/online" [200];
    MEMBERS = "GET" "/rooms/{room_id}/members" [200];
    ADD_MEMBER = "POST" "/rooms/{room_id}/members" [200, 201];
    LEAVE = "DELETE" "/rooms/{room_id}/members/me" [204];
    REMOVE_MEMBER = "DELETE" "/rooms/{room_id}/members/{user_id}" [204];
    UPDATE_MEMBER = "PATCH" "/rooms/{room_id}/members/{user_id}" [200];
    HISTORY = "GET" "/rooms/{room_id}/messages" [200];
    POST_MESSAGE = "POST" "/rooms/{room_id}/messages" [200, 201];
    MESSAGE = "GET" "/rooms/{room_id}/messages/{message_id}" [200];
    EDIT_MESSAGE = "PATCH" "/rooms/{room_id}/messages/{message_id}" [200];
    DELETE_MESSAGE = "DELETE" "/rooms/{room_id}/messages/{message_id}" [204];
    MESSAGE_HISTORY = "GET" "/rooms/{room_id}/messages/{message_id}/history" [200];
    REACTIONS = "GET" "/rooms/{room_id}/messages/{message_id}/reactions" [200];
    REACT = "PUT" "/rooms/{room_id}/messages/{message_id}/reactions/{emoji}" [204];
    UNREACT = "DELETE" "/rooms/{room_id}/messages/{message_id}/reactions/{emoji}" [204];
    REPORT_MESSAGE = "POST" "/rooms/{room_id}/messages/{message_id}/report" [201];
    DMS = "GET" "/dms" [200];
    OPEN_DM = "POST" "/dms" [200, 201];
    SEARCH_USERS = "GET" "/users" [200];
    USER = "GET" "/users/{user_id}" [200];
    REPORT_USER = "POST" "/users/{user_id}/report" [201];
    BLOCKS = "GET" "/blocks" [200];
    BLOCK = "PUT" "/blocks/{user_id}" [204];
    UNBLOCK = "DELETE" "/blocks/{user_id}" [204];
    CONTACTS = "GET" "/contacts" [200];
    REMOVE_CONTACT = "DELETE" "/contacts/{user_id}" [204];
    CONTACT_REQUESTS = "GET" "/contacts/requests" [200];
    REQUEST_CONTACT = "POST" "/contacts/requests" [200, 201];
    ACCEPT_CONTACT = "POST" "/contacts/requests/{request_id}/accept" [200];
    DECLINE_CONTACT = "POST" "/contacts/requests/{request_id}/decline" [204];
    UPLOAD = "POST" "/media" [201];
    MEDIA_LIMITS = "GET" "/media/limits" [200];
    DOWNLOAD = "GET" "/media/{media_id}" [200];
    MEDIA_INFO = "GET" "/media/{media_id}/info" [200];
    THUMBNAIL = "GET" "/media/{media_id}/thumbnail" [200];
    STORIES = "GET" "/stories" [200];
    CREATE_STORY = "POST" "/stories" [201];
    DELETE_STORY = "DELETE" "/stories/{story_id}" [204];
    STORY_VIEWS = "GET" "/stories/{story_id}/views" [200];
    VIEW_STORY = "POST" "/stories/{story_id}/views" [204];
    TURN = "GET" "/voip/turn" [200];
    ADMIN_USERS = "GET" "/admin/users" [200];
    DEACTIVATE = "POST" "/admin/users/{user_id}/deactivate" [200];
    REACTIVATE = "POST" "/admin/users/{user_id}/reactivate" [200];
    ADMIN_ROOMS = "GET" "/admin/rooms" [200];
    ADMIN_DELETE_ROOM = "DELETE" "/admin/rooms/{room_id}" [204];
    REPORTS = "GET" "/admin/reports" [200];
    RESOLVE_REPORT = "POST" "/admin/reports/{report_id}/resolve" [200];
    AUDIT = "GET" "/admin/audit" [200];
    WS = "GET" "/ws" [];
    WS_ROOM = "GET" "/ws/rooms/{room_id}" [];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_parameters_in_order_and_encodes_them() {
        let room = "r1";
        assert_eq!(
            REACT.fill(&[&room, &"m 2", &"👍"]),
            "/rooms/r1/messages/m%202/reactions/%F0%9F%91%8D"
        );
        assert_eq!(MY_ROOMS.fill(&[]), "/rooms");
    }

    #[test]
    fn no_route_is_listed_twice() {
        for (i, a) in ALL.iter().enumerate() {
            assert!(!ALL[i + 1..].contains(a), "{a:?} twice");
        }
    }
}
