//! Authentication: password hashing, access tokens, and the extractor that checks them.

mod extract;
mod password;
pub mod standing;
mod token;
pub mod totp;

pub use extract::{AuthUser, bearer_token};
pub use password::{HashError, HashLoad, Passwords};
pub use standing::{SocketWatch, Standing, Standings};
pub use token::{Claims, TokenError, Tokens};
