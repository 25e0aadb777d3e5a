//! The did-you-mean hint of every "unknown …" problem (fields, operators, metrics, actions,
//! segments, variants).

/// `" (did you mean \"x\"?)"` when one candidate is a likely typo of `word`, else `""`.
pub(super) fn did_you_mean(word: &str, candidates: &[&str]) -> String {
    closest(word, candidates)
        .map(|s| format!(" (did you mean \"{s}\"?)"))
        .unwrap_or_default()
}

/// More candidates than this (a document with thousands of segments) get no hint: comparing
/// against each would make one typo cost as much as the whole document.
const MAX_CANDIDATES: usize = 256;

/// The closest candidate by edit distance, when it is close enough to be a likely typo.
fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    // A word far longer than every candidate cannot be a typo of one (and would cost
    // length × length to compare).
    if word.len() > 64 || candidates.len() > MAX_CANDIDATES {
        return None;
    }
    candidates
        .iter()
        .filter(|c| c.len() <= 64)
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4) && *d > 0)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b_chars: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b_chars.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b_chars.iter().enumerate() {
            let next = (prev + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b_chars.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_close_words_only() {
        assert_eq!(
            did_you_mean("atr", &["attr", "op"]),
            " (did you mean \"attr\"?)"
        );
        assert_eq!(did_you_mean("equalz", &["eq", "ne"]), "");
        assert_eq!(did_you_mean("eq", &["eq"]), "");
        assert_eq!(did_you_mean(&"x".repeat(100), &["x"]), "");
    }
}
