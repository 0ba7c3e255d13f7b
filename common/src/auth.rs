//! Bearer tokens: how a request's token is read and compared (the dispatcher's API and the
//! workers' `/metrics`).

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    header?.strip_prefix("Bearer ")
}

/// Compares the SHA-256 digests of both in constant time: neither the position of the first
/// difference nor the token's length shows in the time taken.
pub fn token_matches(given: &str, expected: &str) -> bool {
    bytes_match(given.as_bytes(), expected.as_bytes())
}

/// [`token_matches`] for bytes (session cookies, form fields).
pub fn bytes_match(given: &[u8], expected: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    let (a, b) = (Sha256::digest(given), Sha256::digest(expected));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_exactly() {
        assert!(token_matches("s3cret", "s3cret"));
        assert!(!token_matches("s3cre", "s3cret"));
        assert!(!token_matches("s3cret ", "s3cret"));
        assert!(!token_matches("", "s3cret"));
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
    }
}
