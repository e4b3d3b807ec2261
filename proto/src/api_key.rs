//! The API key format the gateway and the CLI agree on.
//!
//! A key is [`PREFIX`] and 43 characters of URL-safe base64 (256 random
//! bits). The gateway's keys file holds only each key's [`digest`]: the
//! file can be read by whoever runs the gateway without giving anyone a key.
//! A fast hash is enough because keys are random, not chosen by people.

use base64::Engine;
use sha2::{Digest, Sha256};

/// What every key starts with, so a leaked one is easy to recognise.
pub const PREFIX: &str = "isk_";

/// What a key's name may be made of, as error messages say it.
pub const NAME_RULE: &str = "1 to 64 of A-Z a-z 0-9 . _ - @";

/// A key made from 32 random bytes.
pub fn new_key(random: &[u8; 32]) -> String {
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random);
    format!("{PREFIX}{text}")
}

/// Whether `name` may name a key: it appears in logs and in the keys file,
/// so no spaces or control characters.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

/// How a key is stored: `sha256:` and the hex SHA-256 of the key's bytes.
pub fn digest(key: &str) -> String {
    let hash = Sha256::digest(key.as_bytes());
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_is_the_prefix_and_43_characters() {
        let key = new_key(&[7; 32]);
        assert!(key.starts_with(PREFIX));
        assert_eq!(key.len(), PREFIX.len() + 43);
    }

    #[test]
    fn names_with_spaces_or_controls_are_not_names() {
        assert!(valid_name("ci-reader@team.x"));
        assert!(!valid_name("a b") && !valid_name("a\nb") && !valid_name(""));
    }

    #[test]
    fn a_digest_is_the_sha256_of_the_key() {
        // printf %s isk_test | sha256sum
        assert_eq!(
            digest("isk_test"),
            "sha256:213665887310bbed65a46afeefbb797eda44dba520667e8c8b1e631bd5394133"
        );
    }
}
