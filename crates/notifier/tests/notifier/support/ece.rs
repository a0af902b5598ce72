//! Decrypting a Web Push message the way a browser does (RFC 8291 over RFC 8188
//! `aes128gcm`), written independently of the crate under test so a bug there cannot hide.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes128Gcm, Nonce};
use hkdf::Hkdf;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use sha2::Sha256;

/// The plaintext of `body`, encrypted for the browser holding `ua_secret` and `auth`.
pub fn decrypt(
    body: &[u8],
    ua_secret: &p256::SecretKey,
    auth: &[u8; 16],
) -> Result<Vec<u8>, String> {
    // Header: salt (16) | record size (4, big endian) | key id length (1) | key id.
    if body.len() < 21 {
        return Err("body shorter than the aes128gcm header".into());
    }
    let salt = &body[..16];
    let record_size = u32::from_be_bytes([body[16], body[17], body[18], body[19]]) as usize;
    let id_len = usize::from(body[20]);
    if id_len != 65 || body.len() < 21 + id_len {
        return Err(format!(
            "key id must be the sender's 65-byte public key, got {id_len} bytes"
        ));
    }
    let sender_public_bytes = &body[21..21 + id_len];
    let ciphertext = &body[21 + id_len..];
    // RFC 8291 §4: a push message is a single record.
    if ciphertext.len() > record_size || ciphertext.len() < 17 {
        return Err(format!(
            "expected one record of at most {record_size} bytes, got {}",
            ciphertext.len()
        ));
    }
    let sender_public = p256::PublicKey::from_sec1_bytes(sender_public_bytes)
        .map_err(|_| "key id is not a P-256 point".to_owned())?;

    // RFC 8291 §3.3: IKM from the ECDH secret, keyed by the auth secret.
    let shared =
        p256::ecdh::diffie_hellman(ua_secret.to_nonzero_scalar(), sender_public.as_affine());
    let ua_public = ua_secret.public_key().to_encoded_point(false);
    let mut key_info = b"WebPush: info\0".to_vec();
    key_info.extend_from_slice(ua_public.as_bytes());
    key_info.extend_from_slice(sender_public_bytes);
    let mut ikm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(auth), shared.raw_secret_bytes())
        .expand(&key_info, &mut ikm)
        .map_err(|_| "hkdf ikm".to_owned())?;

    // RFC 8188 §2.2 / §2.3: content encryption key and nonce from the salt.
    let prk = Hkdf::<Sha256>::new(Some(salt), &ikm);
    let mut cek = [0u8; 16];
    prk.expand(b"Content-Encoding: aes128gcm\0", &mut cek)
        .map_err(|_| "hkdf cek".to_owned())?;
    let mut nonce = [0u8; 12];
    prk.expand(b"Content-Encoding: nonce\0", &mut nonce)
        .map_err(|_| "hkdf nonce".to_owned())?;

    let cipher = Aes128Gcm::new_from_slice(&cek).map_err(|_| "aes key".to_owned())?;
    let padded = cipher
        .decrypt(&Nonce::from(nonce), ciphertext)
        .map_err(|_| "AES-GCM authentication failed".to_owned())?;
    // The last (only) record ends with the delimiter 0x02, then zero padding.
    let end = padded
        .iter()
        .rposition(|byte| *byte != 0)
        .ok_or("record is all padding")?;
    if padded[end] != 2 {
        return Err(format!(
            "last record delimiter must be 0x02, got {:#04x}",
            padded[end]
        ));
    }
    Ok(padded[..end].to_vec())
}
