//! Config load errors must name the offending line: matchers for
//! "line N" / "file:N:" in `keygate check` output and reload logs.

/// True when `text` names line N, as "line N" or compiler-style "file:N:"
/// (and not a longer number such as N0).
pub fn names_line(text: &str, n: usize) -> bool {
    let lower = text.to_lowercase();
    let word = format!("line {n}");
    let by_word = lower
        .match_indices(&word)
        .any(|(i, _)| !lower[i + word.len()..].starts_with(|c: char| c.is_ascii_digit()));
    by_word || lower.contains(&format!(":{n}:"))
}

/// True when `text` names some line of a file (see [`names_line`]).
pub fn names_some_line(text: &str) -> bool {
    (1..1000).any(|n| names_line(text, n))
}
