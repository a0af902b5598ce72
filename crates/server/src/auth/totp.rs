//! TOTP two-factor authentication (RFC 6238: SHA-1, 6 digits, 30-second steps, one step of
//! clock skew either way) and recovery codes.
//!
//! The crate checks a code; accepting each code once is ours: the store keeps the last step
//! whose code was accepted and accepts only later steps (`Store::accept_totp_step`).

use rand::Rng as _;
use sha2::{Digest, Sha256};
use totp_rs::{Builder, Secret, Totp};

/// Shown as the issuer in authenticator apps.
const ISSUER: &str = "Nebula";
/// Recovery codes handed out when 2FA is enabled.
pub const RECOVERY_CODES: usize = 10;

/// A fresh 160-bit secret, base32 as stored and as authenticator apps take it.
pub fn new_secret() -> String {
    let bytes: [u8; 20] = rand::rng().random();
    Secret::from(bytes).to_base32()
}

fn totp(secret: &str, username: &str) -> anyhow::Result<Totp> {
    let secret = Secret::try_from_base32(secret)
        .map_err(|err| anyhow::anyhow!("stored TOTP secret unreadable: {err}"))?;
    Builder::new()
        .with_secret(secret)
        .with_account_name(username)
        .with_issuer(Some(ISSUER))
        .build()
        .map_err(|err| anyhow::anyhow!("TOTP parameters: {err}"))
}

/// The `otpauth://` URL of a secret, for a QR code.
pub fn otpauth_url(secret: &str, username: &str) -> anyhow::Result<String> {
    totp(secret, username)?
        .to_url()
        .map_err(|err| anyhow::anyhow!("otpauth URL: {err}"))
}

/// The step whose code `code` is (now, or one step either side), if it is one.
pub fn matching_step(secret: &str, username: &str, code: &str) -> anyhow::Result<Option<i64>> {
    let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0);
    let step = totp(secret, username)?.check(code.trim(), now);
    Ok(step.and_then(|step| i64::try_from(step).ok()))
}

/// Ten random codes of the form `xxxxx-xxxxx` (lowercase letters and digits, 51 bits each).
pub fn new_recovery_codes() -> Vec<String> {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..RECOVERY_CODES)
        .map(|_| {
            let mut code = String::with_capacity(11);
            for index in 0..10 {
                if index == 5 {
                    code.push('-');
                }
                let pick = rng.random_range(0..ALPHABET.len());
                code.push(char::from(ALPHABET[pick]));
            }
            code
        })
        .collect()
}

/// What is stored of a recovery code or a password-reset token: random enough that a fast
/// hash cannot be reversed by guessing.
pub fn digest(secret: &str) -> String {
    let normalized = secret.trim().to_ascii_lowercase();
    let hash = Sha256::digest(normalized.as_bytes());
    hash.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_code_matches_and_others_do_not() {
        let secret = new_secret();
        let totp = totp(&secret, "alice").expect("totp");
        let now = u64::try_from(chrono::Utc::now().timestamp()).expect("time");
        let code = totp.generate(now).to_string();
        assert!(
            matching_step(&secret, "alice", &code)
                .expect("check")
                .is_some()
        );
        assert_eq!(
            matching_step(&secret, "alice", "12345x").expect("check"),
            None
        );
        assert!(
            otpauth_url(&secret, "alice")
                .expect("url")
                .starts_with("otpauth://totp/")
        );
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        assert_eq!(digest(&codes[0]), digest(&codes[0].to_uppercase()));
    }
}
