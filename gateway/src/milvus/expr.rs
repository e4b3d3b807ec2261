//! Milvus boolean expressions built from caller data, quoted so that no
//! filepath or name can change what an expression means.

use crate::{error::GatewayError, schema::FILEPATH_FIELD};

/// Collection names as Milvus takes them, checked before any call so a bad
/// one is INVALID_ARGUMENT rather than whatever Milvus says.
pub fn check_name(name: &str) -> Result<(), GatewayError> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(GatewayError::InvalidArgument(format!(
            "invalid collection name {name:?}: letters, digits and underscores, starting with a letter or underscore"
        )))
    }
}

/// A Milvus expression string literal: double-quoted, with quotes and
/// backslashes escaped, so a filepath can never change the expression, and
/// line breaks written as `\n` and `\r`: Milvus's grammar admits any other
/// character raw inside a literal, but not those two.
pub fn string_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Rows whose primary key is one of `ids`.
pub fn ids_in(ids: &[i64]) -> String {
    let list: Vec<String> = ids.iter().map(i64::to_string).collect();
    format!("id in [{}]", list.join(", "))
}

/// Rows whose filepath is one of `filepaths`.
pub fn filepaths_in(filepaths: &[String]) -> String {
    let list: Vec<String> = filepaths.iter().map(|p| string_literal(p)).collect();
    format!("{FILEPATH_FIELD} in [{}]", list.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_literals_escape_quotes_and_backslashes() {
        assert_eq!(string_literal("a/b.jpg"), r#""a/b.jpg""#);
        assert_eq!(
            string_literal(r#"x" or id > 0 or "#),
            r#""x\" or id > 0 or ""#
        );
        assert_eq!(string_literal(r"c:\dir\"), r#""c:\\dir\\""#);
        assert_eq!(string_literal("a\nb\rc\td\0"), "\"a\\nb\\rc\td\0\"");
    }

    #[test]
    fn id_and_filepath_lists_are_expressions() {
        assert_eq!(ids_in(&[3, -1]), "id in [3, -1]");
        assert_eq!(
            filepaths_in(&["a".into(), "b\"c".into()]),
            r#"filepath in ["a", "b\"c"]"#
        );
    }
}
