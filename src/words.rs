//! Counted nouns in messages: `1 volume`, `2 volumes`, `3 data entries`. Owns English
//! plurals of the nouns devbox counts; never decides what is counted.

/// `n` and `noun`, the noun's last word plural unless `n` is 1.
pub fn count(n: usize, noun: &str) -> String {
    format!("{n} {}", noun_for(n, noun))
}

/// `noun` as it goes with `n`: `entry` → `entries`, `match` → `matches`, `file` → `files`.
pub fn noun_for(n: usize, noun: &str) -> String {
    if n == 1 {
        return noun.to_owned();
    }
    let consonant_y =
        noun.ends_with('y') && !noun[..noun.len() - 1].ends_with(['a', 'e', 'i', 'o', 'u']);
    if consonant_y {
        format!("{}ies", &noun[..noun.len() - 1])
    } else if noun.ends_with(['s', 'x']) || noun.ends_with("ch") || noun.ends_with("sh") {
        format!("{noun}es")
    } else {
        format!("{noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn one_is_singular_everything_else_plural() {
        assert_eq!(count(1, "volume"), "1 volume");
        assert_eq!(count(0, "volume"), "0 volumes");
        assert_eq!(count(2, "data entry"), "2 data entries");
        assert_eq!(count(1, "data entry"), "1 data entry");
        assert_eq!(count(3, "day"), "3 days");
        assert_eq!(count(2, "match"), "2 matches");
        assert_eq!(
            count(2, "critical audit finding"),
            "2 critical audit findings"
        );
    }
}
