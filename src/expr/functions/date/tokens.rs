//! Splitting a moment.js format string into tokens and literal text, exactly as moment does,
//! so `formatDate` and `parseDate` read a format the way Make does:
//! - `[text]` is literal (up to the last `]` before the next `[`), `\X` escapes one token or
//!   character;
//! - the English long-date tokens are expanded first: `LT` `h:mm A`, `LTS` `h:mm:ss A`,
//!   `L` `MM/DD/YYYY`, `LL` `MMMM D, YYYY`, `LLL` `MMMM D, YYYY h:mm A`,
//!   `LLLL` `dddd, MMMM D, YYYY h:mm A`, and `l` … `llll` the same with short names;
//! - tokens are matched in moment's order (not longest-first), so `YYY` is `YY` then `Y`;
//! - any other character is literal, except line breaks, which moment's tokenizer drops.

/// A piece of a format string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Piece {
    /// A formatting token such as `YYYY` or `Do` (which may still have no formatter, e.g.
    /// `w|`, in which case it is written as is).
    Token(String),
    /// Literal text.
    Literal(String),
}

/// Tokenizes a format string.
pub(super) fn tokenize(format: &str) -> Vec<Piece> {
    let expanded = expand_long_dates(format);
    let mut pieces = Vec::new();
    let mut rest = expanded.as_str();
    while let Some(c) = rest.chars().next() {
        if c == '['
            && let Some(len) = bracket_len(rest)
        {
            pieces.push(Piece::Literal(rest[1..len - 1].to_string()));
            rest = &rest[len..];
            continue;
        }
        if c == '\\' {
            let after = &rest[1..];
            match after.chars().next() {
                Some(next) if !is_line_break(next) => {
                    let len = token_len(after).unwrap_or(next.len_utf8());
                    pieces.push(Piece::Literal(after[..len].replace('\\', "")));
                    rest = &after[len..];
                }
                // A trailing backslash, or one before a line break, matches as itself and is
                // removed as an escape character: it writes nothing.
                _ => rest = after,
            }
            continue;
        }
        if is_line_break(c) {
            rest = &rest[c.len_utf8()..];
            continue;
        }
        match token_len(rest) {
            Some(len) => {
                pieces.push(Piece::Token(rest[..len].to_string()));
                rest = &rest[len..];
            }
            None => {
                pieces.push(Piece::Literal(c.to_string()));
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    pieces
}

/// JavaScript's `.` does not match these.
fn is_line_break(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{2028}' | '\u{2029}')
}

/// Length of a `[…]` literal at the start of `s`: up to the last `]` before the next `[`.
fn bracket_len(s: &str) -> Option<usize> {
    let body = &s[1..];
    let end = body.find('[').unwrap_or(body.len());
    body[..end].rfind(']').map(|close| close + 2)
}

/// moment's `localFormattingTokens` pass (English locale): replaces `LT`, `LTS`, `L` … `LLLL`
/// and `l` … `llll`, leaving bracketed and escaped ones alone.
fn expand_long_dates(format: &str) -> String {
    let mut out = String::with_capacity(format.len());
    let mut rest = format;
    while let Some(c) = rest.chars().next() {
        if c == '['
            && let Some(len) = bracket_len(rest)
        {
            out.push_str(&rest[..len]);
            rest = &rest[len..];
            continue;
        }
        let escaped = c == '\\';
        let candidate = if escaped { &rest[1..] } else { rest };
        if let Some((len, expansion)) = long_date_token(candidate) {
            let consumed = len + usize::from(escaped);
            if escaped {
                out.push_str(&rest[..consumed]);
            } else {
                out.push_str(expansion);
            }
            rest = &rest[consumed..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// `LTS|LT|LL?L?L?|l{1,4}` and its English expansion.
fn long_date_token(s: &str) -> Option<(usize, &'static str)> {
    const TABLE: [(&str, &str); 10] = [
        ("LTS", "h:mm:ss A"),
        ("LT", "h:mm A"),
        ("LLLL", "dddd, MMMM D, YYYY h:mm A"),
        ("LLL", "MMMM D, YYYY h:mm A"),
        ("LL", "MMMM D, YYYY"),
        ("L", "MM/DD/YYYY"),
        ("llll", "ddd, MMM D, YYYY h:mm A"),
        ("lll", "MMM D, YYYY h:mm A"),
        ("ll", "MMM D, YYYY"),
        ("l", "M/D/YYYY"),
    ];
    TABLE
        .iter()
        .find(|(token, _)| s.starts_with(token))
        .map(|(token, expansion)| (token.len(), *expansion))
}

/// Number of leading bytes equal to `c`.
fn run(b: &[u8], c: u8) -> usize {
    b.iter().take_while(|&&x| x == c).count()
}

/// The formatting token at the start of `s`, following moment's alternation
/// `[Hh]mm(ss)?|Mo|MM?M?M?|Do|DDDo|DD?D?D?|ddd?d?|do?|w[o|w]?|W[o|W]?|Qo?|N{1,5}|YYYYYY|YYYYY|
/// YYYY|YY|y{2,4}|yo?|gg(ggg?)?|GG(GGG?)?|e|E|a|A|hh?|HH?|kk?|mm?|ss?|S{1,9}|x|X|zz?|ZZ?`.
/// Tokens are ASCII, so the length is in bytes and chars alike.
pub(super) fn token_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let first = *b.first()?;
    let second = b.get(1).copied();
    if (first == b'H' || first == b'h') && b.get(1..3) == Some(b"mm") {
        return Some(if b.get(3..5) == Some(b"ss") { 5 } else { 3 });
    }
    let len = match first {
        b'M' if second == Some(b'o') => 2,
        b'M' => run(b, b'M').min(4),
        b'D' if second == Some(b'o') => 2,
        b'D' if b.starts_with(b"DDDo") => 4,
        b'D' => run(b, b'D').min(4),
        b'd' if second == Some(b'd') => run(b, b'd').min(4),
        b'd' if second == Some(b'o') => 2,
        b'd' => 1,
        b'w' if matches!(second, Some(b'o' | b'|' | b'w')) => 2,
        b'w' => 1,
        b'W' if matches!(second, Some(b'o' | b'|' | b'W')) => 2,
        b'W' => 1,
        b'Q' if second == Some(b'o') => 2,
        b'Q' => 1,
        b'N' => run(b, b'N').min(5),
        b'Y' => match run(b, b'Y') {
            n if n >= 6 => 6,
            5 => 5,
            4 => 4,
            2 | 3 => 2,
            // A lone `Y` is no alternative of the regex, but `.` catches it and moment
            // still finds a formatter for it.
            _ => 1,
        },
        b'y' => match run(b, b'y') {
            1 if second == Some(b'o') => 2,
            1 => 1,
            n => n.min(4),
        },
        b'g' | b'G' => match run(b, first) {
            n if n >= 5 => 5,
            4 => 4,
            2 | 3 => 2,
            _ => return None,
        },
        b'e' | b'E' | b'a' | b'A' | b'x' | b'X' => 1,
        b'h' | b'H' | b'k' | b'm' | b's' | b'z' | b'Z' => run(b, first).min(2),
        b'S' => run(b, b'S').min(9),
        _ => return None,
    };
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::Piece::{Literal as L, Token as T};
    use super::*;

    fn t(s: &str) -> Piece {
        T(s.to_string())
    }
    fn l(s: &str) -> Piece {
        L(s.to_string())
    }

    #[test]
    fn splits_tokens_in_moment_order() {
        assert_eq!(
            tokenize("YYYY-MM-DD hh:mm A"),
            vec![
                t("YYYY"),
                l("-"),
                t("MM"),
                l("-"),
                t("DD"),
                l(" "),
                t("hh"),
                l(":"),
                t("mm"),
                l(" "),
                t("A")
            ]
        );
        assert_eq!(tokenize("YYY"), vec![t("YY"), t("Y")]);
        assert_eq!(tokenize("DDDDo"), vec![t("DDDD"), l("o")]);
        assert_eq!(tokenize("DDDo"), vec![t("DDDo")]);
        assert_eq!(tokenize("Hmmss"), vec![t("Hmmss")]);
        assert_eq!(tokenize("dddd"), vec![t("dddd")]);
        assert_eq!(tokenize("SSSSSSSSSS"), vec![t("SSSSSSSSS"), t("S")]);
        assert_eq!(tokenize("ggg"), vec![t("gg"), l("g")]);
        assert_eq!(tokenize("TZ"), vec![l("T"), t("Z")]);
    }

    #[test]
    fn brackets_and_escapes_are_literal() {
        assert_eq!(
            tokenize("[Today is] dddd"),
            vec![l("Today is"), l(" "), t("dddd")]
        );
        assert_eq!(tokenize("[a] b] c"), vec![l("a] b"), l(" "), l("c")]);
        assert_eq!(tokenize("[]"), vec![l("")]);
        assert_eq!(tokenize("[abc"), vec![l("["), t("a"), l("b"), l("c")]);
        assert_eq!(tokenize("\\YYYY"), vec![l("YYYY")]);
        assert_eq!(tokenize("\\[q"), vec![l("["), l("q")]);
        assert_eq!(tokenize("\\[x"), vec![l("["), t("x")]);
        assert_eq!(tokenize("a\\"), vec![t("a")]);
        assert_eq!(tokenize("ž"), vec![l("ž")]);
    }

    #[test]
    fn long_dates_expand_outside_brackets() {
        assert_eq!(tokenize("LT"), tokenize("h:mm A"));
        assert_eq!(tokenize("LLLL"), tokenize("dddd, MMMM D, YYYY h:mm A"));
        assert_eq!(tokenize("l"), tokenize("M/D/YYYY"));
        assert_eq!(tokenize("[L]"), vec![l("L")]);
        assert_eq!(tokenize("\\LT"), vec![l("L"), l("T")]);
    }

    #[test]
    fn line_breaks_are_dropped() {
        assert_eq!(tokenize("D\nM"), vec![t("D"), t("M")]);
        assert_eq!(tokenize("[a\nb]"), vec![l("a\nb")]);
    }
}
