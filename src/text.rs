//! Untrusted text made fit to show: what containers, senders, users and the API server write
//! goes through here before it reaches status, Events, logs or a terminal. Pure.

/// Longest message kept, in characters. Kubernetes caps termination messages at 4 KiB;
/// status and Events should stay readable.
pub(crate) const MAX_MESSAGE_CHARS: usize = 1024;

/// Makes text from a container or a user safe for status, Events, logs and terminals: line
/// breaks and tabs become spaces, other control characters (escape sequences, NUL) and the
/// bidirectional-override characters that can disguise text are dropped.
pub(crate) fn printable(s: &str) -> String {
    s.chars()
        .filter_map(|c| match c {
            '\n' | '\r' | '\t' => Some(' '),
            c if c.is_control() => None,
            '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' => None,
            c => Some(c),
        })
        .collect()
}

/// Cuts a message to [`MAX_MESSAGE_CHARS`], marking the cut.
pub(crate) fn truncate(s: &str) -> String {
    if s.chars().count() <= MAX_MESSAGE_CHARS {
        return s.to_string();
    }
    let mut out: String = s.chars().take(MAX_MESSAGE_CHARS).collect();
    out.push_str("… (truncated)");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_text_keeps_its_words_and_loses_what_could_disguise_it() {
        assert_eq!(printable("step a: ok ✓"), "step a: ok ✓");
        assert_eq!(
            printable("ok\u{1b}[2J\u{0} done\r\nnext\tcol\u{202e}evil\u{2066}\u{200f}"),
            "ok[2J done  next colevil"
        );
    }

    #[test]
    fn a_long_message_is_cut_at_the_limit_and_says_so() {
        let at_limit = "é".repeat(MAX_MESSAGE_CHARS);
        assert_eq!(truncate(&at_limit), at_limit);
        let cut = truncate(&"é".repeat(MAX_MESSAGE_CHARS + 1));
        assert_eq!(cut, format!("{at_limit}… (truncated)"));
    }
}
