//! Unguessable values (state, nonce, PKCE verifier, assertion `jti`, lock owner ids)
//! from the operating system's generator, through `ring`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};

/// `bytes` random bytes, base64url without padding (16 bytes: 22 characters).
pub(crate) fn token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // The system generator failing is not recoverable: there is nothing safe to fall back to.
    SystemRandom::new()
        .fill(&mut buf)
        .expect("the operating system's random generator failed");
    URL_SAFE_NO_PAD.encode(&buf)
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_have_the_asked_length_and_differ() {
        let a = super::token(32);
        assert_eq!(a.len(), 43);
        assert_ne!(a, super::token(32));
        assert!(a
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }
}
