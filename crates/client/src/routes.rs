//! Every REST route the client calls, in one table: the typed calls build their URLs from
//! these, and a test compares [`ALL`] with the server's `/openapi.json` so a new route
//! without a client call is noticed.

use std::fmt::Display;

/// One route of the OpenAPI document: its method and path template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub method: &'static str,
    /// The template as the OpenAPI document spells it, e.g. `/rooms/{room_id}`.
    pub path: &'static str,
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
    ($($name:ident = $method:literal $path:literal;)*) => {
        $(pub const $name: Route = Route { method: $method, path: $path };)*
        /// Every route this crate has a call for.
        pub const ALL: &[Route] = &[$($name),*];
    };
}

routes! {
    SERVICE_INFO = "GET" "/";
    HEALTH = "GET" "/health";
    HEALTH_LIVE = "GET" "/health/live";
    HEALTH_READY = "GET" "/health/ready";
    ASYNCAPI = "GET" "/asyncapi.json";
    REGISTER = "POST" "/auth/register";
    LOGIN = "POST" "/auth/login";
    LOGOUT_ALL = "POST" "/auth/logout-all";
    PASSWORD_RESET = "POST" "/auth/password-reset";
    PASSWORD_RESET_CONFIRM = "POST" "/auth/password-reset/confirm";
    ME = "GET" "/me";
    UPDATE_ME = "PATCH" "/me";
    DELETE_ME = "DELETE" "/me";
    EXPORT = "GET" "/me/export";
    CHANGE_PASSWORD = "POST" "/me/password";
    EMAIL_VERIFY = "POST" "/me/email/verify";
    EMAIL_CONFIRM = "POST" "/me/email/confirm";
    NOTIFICATION_SETTINGS = "GET" "/me/notifications";
    UPDATE_NOTIFICATION_SETTINGS = "PUT" "/me/notifications";
    ROOM_NOTIFICATIONS = "PUT" "/rooms/{room_id}/notifications";
    TOTP_SETUP = "POST" "/me/2fa/setup";
    TOTP_ENABLE = "POST" "/me/2fa/enable";
    TOTP_DISABLE = "POST" "/me/2fa/disable";
    MY_ROOMS = "GET" "/rooms";
    CREATE_ROOM = "POST" "/rooms";
    PUBLIC_ROOMS = "GET" "/rooms/public";
    ROOM = "GET" "/rooms/{room_id}";
    CHANGES = "GET" "/rooms/{room_id}/changes";
    ONLINE = "GET" "/rooms/{room_id}/online";
    MEMBERS = "GET" "/rooms/{room_id}/members";
    ADD_MEMBER = "POST" "/rooms/{room_id}/members";
    LEAVE = "DELETE" "/rooms/{room_id}/members/me";
    REMOVE_MEMBER = "DELETE" "/rooms/{room_id}/members/{user_id}";
    UPDATE_MEMBER = "PATCH" "/rooms/{room_id}/members/{user_id}";
    HISTORY = "GET" "/rooms/{room_id}/messages";
    POST_MESSAGE = "POST" "/rooms/{room_id}/messages";
    MESSAGE = "GET" "/rooms/{room_id}/messages/{message_id}";
    EDIT_MESSAGE = "PATCH" "/rooms/{room_id}/messages/{message_id}";
    DELETE_MESSAGE = "DELETE" "/rooms/{room_id}/messages/{message_id}";
    MESSAGE_HISTORY = "GET" "/rooms/{room_id}/messages/{message_id}/history";
    REACTIONS = "GET" "/rooms/{room_id}/messages/{message_id}/reactions";
    REACT = "PUT" "/rooms/{room_id}/messages/{message_id}/reactions/{emoji}";
    UNREACT = "DELETE" "/rooms/{room_id}/messages/{message_id}/reactions/{emoji}";
    REPORT_MESSAGE = "POST" "/rooms/{room_id}/messages/{message_id}/report";
    DMS = "GET" "/dms";
    OPEN_DM = "POST" "/dms";
    SEARCH_USERS = "GET" "/users";
    USER = "GET" "/users/{user_id}";
    REPORT_USER = "POST" "/users/{user_id}/report";
    BLOCKS = "GET" "/blocks";
    BLOCK = "PUT" "/blocks/{user_id}";
    UNBLOCK = "DELETE" "/blocks/{user_id}";
    CONTACTS = "GET" "/contacts";
    REMOVE_CONTACT = "DELETE" "/contacts/{user_id}";
    CONTACT_REQUESTS = "GET" "/contacts/requests";
    REQUEST_CONTACT = "POST" "/contacts/requests";
    ACCEPT_CONTACT = "POST" "/contacts/requests/{request_id}/accept";
    DECLINE_CONTACT = "POST" "/contacts/requests/{request_id}/decline";
    UPLOAD = "POST" "/media";
    MEDIA_LIMITS = "GET" "/media/limits";
    DOWNLOAD = "GET" "/media/{media_id}";
    MEDIA_INFO = "GET" "/media/{media_id}/info";
    THUMBNAIL = "GET" "/media/{media_id}/thumbnail";
    STORIES = "GET" "/stories";
    CREATE_STORY = "POST" "/stories";
    DELETE_STORY = "DELETE" "/stories/{story_id}";
    STORY_VIEWS = "GET" "/stories/{story_id}/views";
    VIEW_STORY = "POST" "/stories/{story_id}/views";
    TURN = "GET" "/voip/turn";
    ADMIN_USERS = "GET" "/admin/users";
    DEACTIVATE = "POST" "/admin/users/{user_id}/deactivate";
    REACTIVATE = "POST" "/admin/users/{user_id}/reactivate";
    ADMIN_ROOMS = "GET" "/admin/rooms";
    ADMIN_DELETE_ROOM = "DELETE" "/admin/rooms/{room_id}";
    REPORTS = "GET" "/admin/reports";
    RESOLVE_REPORT = "POST" "/admin/reports/{report_id}/resolve";
    AUDIT = "GET" "/admin/audit";
    WS = "GET" "/ws";
    WS_ROOM = "GET" "/ws/rooms/{room_id}";
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
