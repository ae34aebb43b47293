//! `${VAR}` substitution, applied to each scalar *value*
//! once the file is parsed: a variable's value becomes exactly that value's
//! text, so quotes, `#`, `: ` or newlines in it can never change the file's
//! structure. Keys and comments are never substituted.

use std::borrow::Cow;

/// A `${VAR}` whose variable is not set.
#[derive(Debug, PartialEq, Eq)]
pub struct UnsetVariable {
    pub name: String,
}

/// Replaces `${VAR}` in one scalar value with the variable's value (`$${`
/// writes a literal `${`), looking variables up with `lookup`.
pub fn substitute<'a>(value: &'a str, lookup: &impl Fn(&str) -> Option<String>) -> Result<Cow<'a, str>, UnsetVariable> {
    if !value.contains('$') {
        return Ok(Cow::Borrowed(value));
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some((name, after)) = variable(tail) {
            let value = lookup(name).ok_or_else(|| UnsetVariable { name: name.to_string() })?;
            out.push_str(&value);
            rest = after;
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

/// `${NAME}` at the start of `text` → (NAME, text after the `}`).
fn variable(text: &str) -> Option<(&str, &str)> {
    let body = text.strip_prefix("${")?;
    let end = body.find('}')?;
    let name = &body[..end];
    let valid = name
        .chars()
        .enumerate()
        .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
    (valid && !name.is_empty()).then(|| (name, &body[end + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("api.example.com".into()),
            "PORT" => Some("8080".into()),
            _ => None,
        }
    }

    fn sub(value: &str) -> Result<Cow<'_, str>, UnsetVariable> {
        substitute(value, &env)
    }

    #[test]
    fn substitutes_values() {
        assert_eq!(sub("${HOST}:${PORT}").unwrap(), "api.example.com:8080");
    }

    #[test]
    fn unset_variable_names_it() {
        assert_eq!(sub("x ${NOPE}").unwrap_err(), UnsetVariable { name: "NOPE".into() });
    }

    #[test]
    fn escapes_and_lone_dollars() {
        assert_eq!(sub("$${HOST}").unwrap(), "${HOST}");
        assert_eq!(sub("price: $5 and $").unwrap(), "price: $5 and $");
        assert_eq!(sub("${1X} ${} ${A-B}").unwrap(), "${1X} ${} ${A-B}");
    }
}
