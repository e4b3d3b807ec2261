//! Milvus boolean expressions built from caller data, quoted so that no
//! filepath or name can change what an expression means.

use crate::{
    error::GatewayError,
    filter::{Condition, Filter, Literal, Subject, Test},
    schema::{ATTRIBUTES_FIELD, FILEPATH_FIELD, TENANT_FIELD},
};

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

/// A filter as a Milvus expression; `None` for the empty filter. Each
/// condition is parenthesised (Milvus's `exists` binds looser than `&&`).
pub fn filter_expression(filter: &Filter) -> Option<String> {
    if filter.is_empty() {
        return None;
    }
    let parts: Vec<String> = filter.all.iter().map(condition).collect();
    Some(parts.join(" && "))
}

/// Rows of `tenant`.
pub fn tenant_is(tenant: &str) -> String {
    format!("{TENANT_FIELD} == {}", string_literal(tenant))
}

/// `a` and `b`, either of which may be absent.
pub fn both(a: Option<String>, b: Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => Some(format!("({a}) && ({b})")),
        (a, b) => a.or(b),
    }
}

/// `e`, within `scope` when there is one.
pub fn within(e: String, scope: Option<String>) -> String {
    match scope {
        Some(scope) => format!("({e}) && ({scope})"),
        None => e,
    }
}

fn condition(c: &Condition) -> String {
    let subject = match &c.subject {
        Subject::Attribute(key) => format!("{ATTRIBUTES_FIELD}[{}]", string_literal(key)),
        Subject::Filepath => FILEPATH_FIELD.to_string(),
    };
    let s = &subject;
    match &c.test {
        Test::Eq(l) => format!("({s} == {})", literal(l)),
        // An attribute a row lacks is not "different": Milvus would say so.
        Test::Ne(l) if c.subject == Subject::Filepath => format!("({s} != {})", literal(l)),
        Test::Ne(l) => format!("((exists {s}) && {s} != {})", literal(l)),
        // Milvus 2.3 asserts (and fails the query) on a JSON `in` list of
        // mixed types: those become a disjunction.
        Test::In(ls) if !same_type(ls) => {
            let each: Vec<String> = ls
                .iter()
                .map(|l| format!("{s} == {}", literal(l)))
                .collect();
            format!("({})", each.join(" || "))
        }
        Test::In(ls) => {
            let list: Vec<String> = ls.iter().map(literal).collect();
            format!("({s} in [{}])", list.join(", "))
        }
        Test::Lt(l) => format!("({s} < {})", literal(l)),
        Test::Le(l) => format!("({s} <= {})", literal(l)),
        Test::Gt(l) => format!("({s} > {})", literal(l)),
        Test::Ge(l) => format!("({s} >= {})", literal(l)),
        // A range rather than `like`, whose wildcards (`%`, `_`) a prefix
        // would have to escape: byte order is code point order in UTF-8.
        Test::Prefix(p) => match successor(p) {
            Some(end) => format!(
                "({s} >= {} && {s} < {})",
                string_literal(p),
                string_literal(&end)
            ),
            None => format!("({s} >= {})", string_literal(p)),
        },
        Test::Exists(true) => format!("(exists {s})"),
        Test::Exists(false) => format!("(not (exists {s}))"),
        Test::Contains(t) => format!("json_contains({s}, {})", string_literal(t)),
    }
}

/// Whether an `in` list is all of one type, as Milvus writes it (i64::MIN
/// goes as a float).
fn same_type(ls: &[Literal]) -> bool {
    !ls.contains(&Literal::Integer(i64::MIN))
        && ls
            .windows(2)
            .all(|w| std::mem::discriminant(&w[0]) == std::mem::discriminant(&w[1]))
}

fn literal(l: &Literal) -> String {
    match l {
        Literal::Text(t) => string_literal(t),
        // Milvus parses the digits before the sign: i64::MIN's digits
        // overflow, so it goes as the float it equals.
        Literal::Integer(i64::MIN) => "-9.223372036854775808e18".into(),
        Literal::Integer(i) => i.to_string(),
        // Rust's shortest round-trip form ("1.5", "3.0", "1e300"), which
        // Milvus reads back to the same double.
        Literal::Number(f) => format!("{f:?}"),
        Literal::Flag(b) => b.to_string(),
    }
}

/// The least string greater than every string starting with `p`, if any:
/// `p` with its last character that can grow grown by one.
fn successor(p: &str) -> Option<String> {
    let mut chars: Vec<char> = p.chars().collect();
    while let Some(last) = chars.pop() {
        let next = (last as u32 + 1..=char::MAX as u32).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_become_ranges_that_hold_exactly_their_extensions() {
        assert_eq!(successor("a/"), Some("a0".into()));
        assert_eq!(successor("a\u{10FFFF}"), Some("b".into()));
        assert_eq!(successor("\u{10FFFF}"), None);
        assert_eq!(successor("\u{D7FF}"), Some("\u{E000}".into()));
        assert_eq!(successor(""), None);
    }

    #[test]
    fn conditions_compile_to_quoted_parenthesised_expressions() {
        let attr = |k: &str, test| Condition {
            subject: Subject::Attribute(k.into()),
            test,
        };
        let f = Filter {
            all: vec![
                attr("cat", Test::Ne(Literal::Text("x\" or 1==1".into()))),
                attr("n", Test::Ge(Literal::Integer(i64::MIN))),
                attr("tags", Test::Exists(false)),
                Condition {
                    subject: Subject::Filepath,
                    test: Test::Prefix("c/".into()),
                },
            ],
        };
        assert_eq!(
            filter_expression(&f).unwrap(),
            r#"((exists attributes["cat"]) && attributes["cat"] != "x\" or 1==1") && (attributes["n"] >= -9.223372036854775808e18) && (not (exists attributes["tags"])) && (filepath >= "c/" && filepath < "c0")"#
        );
        assert_eq!(filter_expression(&Filter::default()), None);
    }

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
