//! What a Milvus refusal means for the caller, decided from Milvus's codes.
//!
//! A refusal that is not a transport error is one of three things, and each
//! asks for a different answer: throttling or a quota (the rows are fine;
//! wait and send them again), a refusal of what the rows hold (split the
//! batch until the bad row stands alone), or anything else (say Milvus's
//! reason once; splitting would only multiply the calls). Treating all
//! three as the rows' fault had bisected throttled batches into up to
//! 2n - 1 inserts against a Milvus already asking for fewer.

/// Milvus's own error codes (`pkg/util/merr`), as 2.3 and later send them.
mod code {
    pub const MEMORY_LIMIT_EXCEEDED: i32 = 3;
    pub const REQUEST_LIMIT_EXCEEDED: i32 = 4;
    pub const DISK_LIMIT_EXCEEDED: i32 = 7;
    pub const RATE_LIMIT: i32 = 8;
    pub const FORCE_DENY: i32 = 9;
    /// Invalid, missing or out-of-range parameters: 1100 up to 1199.
    pub const PARAMETERS: std::ops::Range<i32> = 1100..1200;
}

/// The deprecated `ErrorCode` enum older servers (and 2.3, alongside the
/// new code) send.
mod legacy {
    pub const ILLEGAL_ARGUMENT: i32 = 5;
    pub const FORCE_DENY: i32 = 48;
    pub const RATE_LIMIT: i32 = 49;
    pub const MEMORY_QUOTA_EXHAUSTED: i32 = 53;
    pub const DISK_QUOTA_EXHAUSTED: i32 = 54;
}

/// Why Milvus refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Rate limits, "deny to write", memory or disk quotas: Milvus asks for
    /// less, later; the request itself is fine.
    Throttled,
    /// What the request holds is invalid (a value too long, a wrong
    /// dimension): another request may pass.
    Rows,
    /// Anything else.
    Other,
}

/// Classifies a refusal from its code, its legacy code and its reason.
/// Servers that fill only one of the codes are understood either way.
pub fn classify(code: i32, legacy_code: i32, reason: &str) -> Refusal {
    let throttled_codes = [
        code::MEMORY_LIMIT_EXCEEDED,
        code::REQUEST_LIMIT_EXCEEDED,
        code::DISK_LIMIT_EXCEEDED,
        code::RATE_LIMIT,
        code::FORCE_DENY,
    ];
    let throttled_legacy = [
        legacy::FORCE_DENY,
        legacy::RATE_LIMIT,
        legacy::MEMORY_QUOTA_EXHAUSTED,
        legacy::DISK_QUOTA_EXHAUSTED,
    ];
    let reason = reason.to_ascii_lowercase();
    let throttled_words = ["rate limit", "deny to write", "quota exhausted"];
    if throttled_codes.contains(&code)
        || throttled_legacy.contains(&legacy_code)
        || throttled_words.iter().any(|w| reason.contains(w))
    {
        Refusal::Throttled
    } else if code::PARAMETERS.contains(&code) || legacy_code == legacy::ILLEGAL_ARGUMENT {
        Refusal::Rows
    } else {
        Refusal::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits_and_quotas_are_throttling_by_either_code() {
        for (code, legacy) in [
            (8, 0),
            (0, 49),
            (9, 0),
            (0, 48),
            (3, 0),
            (7, 0),
            (0, 53),
            (0, 54),
        ] {
            assert_eq!(
                classify(code, legacy, ""),
                Refusal::Throttled,
                "{code}/{legacy}"
            );
        }
    }

    #[test]
    fn a_reason_that_says_deny_to_write_is_throttling_whatever_its_code() {
        assert_eq!(
            classify(65535, 1, "deny to write the message: Force Deny"),
            Refusal::Throttled
        );
    }

    #[test]
    fn invalid_parameters_are_the_rows_fault() {
        assert_eq!(
            classify(1100, 5, "length exceeds max length"),
            Refusal::Rows
        );
        assert_eq!(classify(0, 5, ""), Refusal::Rows);
    }

    #[test]
    fn an_internal_error_is_neither() {
        assert_eq!(classify(5, 1, "service internal error"), Refusal::Other);
        assert_eq!(classify(65535, 1, "unexpected"), Refusal::Other);
    }
}
