//! Authentication: password hashing, access tokens, and the extractor that checks them.

mod extract;
mod password;
mod token;

pub use extract::{AuthUser, bearer_token};
pub use password::{HashError, HashLoad, Passwords};
pub use token::{Claims, TokenError, Tokens};
