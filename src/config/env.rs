//! `${VAR}` substitution in the config text (SPEC §2, §9.2). Done on the raw
//! text before parsing so every line keeps its number; comments are left
//! alone so a commented-out `${VAR}` never needs to be set.

/// A `${VAR}` whose variable is not set.
#[derive(Debug, PartialEq, Eq)]
pub struct UnsetVariable {
    pub name: String,
    pub line: usize,
}

/// Replaces `${VAR}` with the variable's value (`$${` writes a literal `${`),
/// looking variables up with `lookup`.
pub fn substitute(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, UnsetVariable> {
    let mut out = String::with_capacity(text.len());
    for (number, line) in text.split_inclusive('\n').enumerate() {
        let (content, comment) = line.split_at(comment_start(line));
        substitute_line(content, number + 1, &lookup, &mut out)?;
        out.push_str(comment);
    }
    Ok(out)
}

fn substitute_line(
    line: &str,
    number: usize,
    lookup: &impl Fn(&str) -> Option<String>,
    out: &mut String,
) -> Result<(), UnsetVariable> {
    let mut rest = line;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some((name, after)) = variable(tail) {
            let value = lookup(name).ok_or_else(|| UnsetVariable {
                name: name.to_string(),
                line: number,
            })?;
            out.push_str(&value);
            rest = after;
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(())
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

/// Byte offset where a YAML comment starts on this line (or its length): a
/// `#` at the start or after whitespace, outside quotes.
fn comment_start(line: &str) -> usize {
    let mut quote: Option<char> = None;
    let mut previous = ' ';
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' && previous.is_whitespace() => return i,
            None => {}
        }
        previous = c;
    }
    line.len()
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

    #[test]
    fn substitutes_values() {
        let out = substitute("host: ${HOST}:${PORT}\n", env).unwrap();
        assert_eq!(out, "host: api.example.com:8080\n");
    }

    #[test]
    fn unset_variable_names_it_and_its_line() {
        let err = substitute("a: 1\nkey: \"${NOPE}\"\n", env).unwrap_err();
        assert_eq!(err, UnsetVariable { name: "NOPE".into(), line: 2 });
    }

    #[test]
    fn escapes_and_comments() {
        assert_eq!(substitute("a: $${HOST}\n", env).unwrap(), "a: ${HOST}\n");
        assert_eq!(substitute("a: 1 # ${NOPE}\n", env).unwrap(), "a: 1 # ${NOPE}\n");
        assert_eq!(substitute("# ${NOPE}\n", env).unwrap(), "# ${NOPE}\n");
        assert_eq!(substitute("a: \"x # ${HOST}\"\n", env).unwrap(), "a: \"x # api.example.com\"\n");
        assert_eq!(substitute("price: $5 and $\n", env).unwrap(), "price: $5 and $\n");
    }
}
