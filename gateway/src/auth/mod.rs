//! Who may call what: bearer API keys, each with a role.
//!
//! The role a method needs is decided here and nowhere else; the guard in
//! front of the service ([`guard`]) applies it before any handler runs.
//! Health is not behind it (probes carry no key), and reflection is
//! governed by its own flag.

pub mod guard;
pub mod keys;

use std::{fmt, str::FromStr};

/// What a key may do. Each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Searches and descriptions: nothing that changes stored data.
    Read,
    /// Read, plus adding and deleting rows.
    Write,
    /// Everything, creating (over an existing collection too) and dropping
    /// collections included.
    Admin,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        })
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "read" => Ok(Role::Read),
            "write" => Ok(Role::Write),
            "admin" => Ok(Role::Admin),
            other => Err(format!("unknown role {other:?} (read, write or admin)")),
        }
    }
}

/// The role each `imgsearch.v1.ImageSearch` method needs. A method missing
/// here (one added later and not yet given a role) needs admin: new calls
/// start closed.
pub fn required_role(method: &str) -> Role {
    match method {
        "Search" | "SearchStream" | "DescribeCollection" | "ListCollections" | "FindFilepaths"
        | "Count" | "FindDuplicates" => Role::Read,
        "Insert" | "Delete" => Role::Write,
        _ => Role::Admin,
    }
}

/// Whether a key confined to a tenant may call `method`: not the calls
/// that make or drop collections, which every tenant shares.
pub fn tenant_may_call(method: &str) -> bool {
    !matches!(method, "CreateCollection" | "DropCollection")
}

/// Who is calling, as the handlers and the logs see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The key's name from the keys file; `anonymous` when the gateway
    /// checks no keys.
    pub key: String,
    pub role: Role,
    /// The tenant the key is confined to; `None` sees every row.
    pub tenant: Option<String>,
}

impl Caller {
    /// A caller of a gateway that checks no keys (loopback, or told to).
    pub fn anonymous() -> Self {
        Self {
            key: "anonymous".into(),
            role: Role::Admin,
            tenant: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_include_the_ones_below() {
        assert!(Role::Admin > Role::Write && Role::Write > Role::Read);
    }

    #[test]
    fn methods_without_a_role_need_admin() {
        assert_eq!(required_role("Search"), Role::Read);
        assert_eq!(required_role("Insert"), Role::Write);
        assert_eq!(required_role("DropCollection"), Role::Admin);
        assert_eq!(required_role("SomethingNew"), Role::Admin);
    }
}
