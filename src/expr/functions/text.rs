//! Text and binary functions: case (`lower`, `upper`, `capitalize`, `startcase`), `length`,
//! `trim`, `replace` (plain or `/regex/flags`), `substring`, `indexOf`, `split`, `contains`,
//! `ascii`, `base64`, `toBinary`, URL and HTML escaping, `stripHTML`, hashes (`md5`, `sha1`,
//! `sha256`, `sha512`, with HMAC) and `replaceEmojiCharacters`. Positions count characters
//! and are 0-based, as in Make's documentation.
//!
//! Functions whose result can outgrow their arguments (`replace`, `split`, `base64`,
//! `toBinary`, `encodeURL`, `escapeHTML`, `replaceEmojiCharacters`) measure it first and refuse
//! one over [`value::MAX_VALUE_BYTES`]; the others never outgrow their text argument by more
//! than a few bytes per character.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde_json::Value;
use sha2::Digest;
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use super::{
    FnCtx, FnError, FnResult, Function, arg, arity, ensure_fits, number_arg, push_capped, short,
    text_arg, too_large,
};
use crate::expr::regexp::{self, NamedReferences, RegexError, ReplaceError};
use crate::expr::value::{self, loose_eq};

pub fn lookup(name: &str) -> Option<Function> {
    Some(match name {
        "lower" => lower,
        "upper" => upper,
        "capitalize" => capitalize,
        "startcase" => startcase,
        "length" => length,
        "trim" => trim,
        "replace" => replace,
        "substring" => substring,
        "indexOf" => index_of,
        "split" => split,
        "contains" => contains,
        "ascii" => ascii,
        "base64" => base64,
        "toBinary" => to_binary,
        "encodeURL" => encode_url,
        "decodeURL" => decode_url,
        "escapeHTML" => escape_html,
        "stripHTML" => strip_html,
        "md5" => md5,
        "sha1" => sha1,
        "sha256" => sha256,
        "sha512" => sha512,
        "replaceEmojiCharacters" => replace_emoji_characters,
        _ => return None,
    })
}

fn one_text(args: &[Value]) -> Result<String, FnError> {
    arity(args, 1, 1)?;
    Ok(text_arg(args, 0))
}

fn lower(args: &[Value], _: &FnCtx) -> FnResult {
    Ok(Value::String(one_text(args)?.to_lowercase()))
}

fn upper(args: &[Value], _: &FnCtx) -> FnResult {
    Ok(Value::String(one_text(args)?.to_uppercase()))
}

/// First character upper-case, the rest unchanged.
fn capitalize(args: &[Value], _: &FnCtx) -> FnResult {
    let s = one_text(args)?;
    let mut chars = s.chars();
    Ok(Value::String(match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }))
}

/// Every word's first letter upper-case and the rest lower-case; spacing is kept.
fn startcase(args: &[Value], _: &FnCtx) -> FnResult {
    let s = one_text(args)?;
    let mut out = String::with_capacity(s.len());
    let mut at_word_start = true;
    for c in s.chars() {
        if c.is_alphanumeric() {
            if at_word_start {
                out.extend(c.to_uppercase());
            } else {
                out.extend(c.to_lowercase());
            }
            at_word_start = false;
        } else {
            out.push(c);
            at_word_start = c.is_whitespace() || matches!(c, '-' | '_');
        }
    }
    Ok(Value::String(out))
}

/// Characters of text, bytes of a buffer, elements of an array, keys of a collection.
fn length(args: &[Value], _: &FnCtx) -> FnResult {
    arity(args, 1, 1)?;
    let v = arg(args, 0);
    let n = match v {
        Value::Null => 0,
        Value::String(s) => s.chars().count(),
        Value::Array(items) => items.len(),
        Value::Object(map) => match value::binary_len(v) {
            Some(size) => usize::try_from(size).unwrap_or(usize::MAX),
            None => map.len(),
        },
        other => value::to_text(other).chars().count(),
    };
    Ok(Value::from(n))
}

fn trim(args: &[Value], _: &FnCtx) -> FnResult {
    Ok(Value::String(one_text(args)?.trim().to_string()))
}

// ---- replace --------------------------------------------------------------------------

/// `/pattern/flags` written as text: the pattern and its flags, when `s` has that shape.
fn regex_literal(s: &str) -> Option<(&str, &str)> {
    let body = s.strip_prefix('/')?;
    let close = body.rfind('/')?;
    let (pattern, flags) = (&body[..close], &body[close + 1..]);
    if pattern.is_empty() || !flags.chars().all(|c| "gimsuy".contains(c)) {
        return None;
    }
    Some((pattern, flags))
}

/// The IML message of a pattern that failed: a syntax error keeps the wording
/// "invalid regular expression /…/: why".
fn regex_error(error: RegexError) -> FnError {
    match &error {
        RegexError::Syntax {
            pattern,
            flags,
            reason,
        } => FnError::new(format!(
            "invalid regular expression /{pattern}/{flags}: {reason}"
        )),
        RegexError::TooComplex { .. } => FnError::new(error.to_string()),
    }
}

/// `replace(text; search; replacement)`: every occurrence of plain `search`; or, when
/// `search` is `/pattern/flags`, a JavaScript regular expression ([`regexp`]), the first
/// match (every match with `g`), with `$&`, `` $` ``, `$'` and `$1`… in the replacement
/// (`$<name>` is an error, as Make documents). The result's size is known (plain) or checked piece by piece
/// (regex) before it is built: an empty `search` matches between every two characters, so
/// `replace(A; ""; A)` is quadratic.
fn replace(args: &[Value], _: &FnCtx) -> FnResult {
    arity(args, 3, 3)?;
    let text = text_arg(args, 0);
    let search = text_arg(args, 1);
    let replacement = text_arg(args, 2);
    let Some((pattern, flags)) = regex_literal(&search) else {
        let matches = if search.is_empty() {
            text.chars().count() + 1
        } else {
            text.matches(search.as_str()).count()
        };
        ensure_fits(
            (text.len() - matches * search.len())
                .saturating_add(matches.saturating_mul(replacement.len())),
        )?;
        return Ok(Value::String(text.replace(&search, &replacement)));
    };
    let re = regexp::cached(pattern, regexp::Flags::from_letters(flags)).map_err(regex_error)?;
    let all = flags.contains('g');
    match re.replace(
        &text,
        &replacement,
        all,
        NamedReferences::Refuse,
        value::MAX_VALUE_BYTES,
    ) {
        Ok(out) => Ok(Value::String(out)),
        Err(ReplaceError::Regex(e)) => Err(regex_error(e)),
        // Measured piece by piece: the size reached is at least the limit.
        Err(ReplaceError::TooLarge(limit)) => Err(too_large(limit + 1)),
        Err(e @ ReplaceError::NamedReference) => Err(FnError::new(e.to_string())),
    }
}

// ---- positions ------------------------------------------------------------------------

/// A position argument as a character index clamped to `0..=len` (JavaScript `substring`).
fn position(args: &[Value], i: usize, len: usize) -> Result<usize, FnError> {
    let f = number_arg(args, i)?;
    Ok(if f.is_nan() || f <= 0.0 {
        0
    } else if f >= len as f64 {
        len
    } else {
        f as usize
    })
}

/// `substring(text; start; [end])`: characters `start..end`, 0-based, end exclusive.
fn substring(args: &[Value], _: &FnCtx) -> FnResult {
    arity(args, 2, 3)?;
    let text = text_arg(args, 0);
    let len = text.chars().count();
    let mut start = position(args, 1, len)?;
    let mut end = if value::is_empty(arg(args, 2)) {
        len
    } else {
        position(args, 2, len)?
    };
    if start > end {
        std::mem::swap(&mut start, &mut end);
    }
    Ok(Value::String(
        text.chars().skip(start).take(end - start).collect(),
    ))
}

/// `indexOf(text; search; [from])`: 0-based character position of `search`, or `-1`.
fn index_of(args: &[Value], _: &FnCtx) -> FnResult {
    arity(args, 2, 3)?;
    let text = text_arg(args, 0);
    let search = text_arg(args, 1);
    let len = text.chars().count();
    let from = if value::is_empty(arg(args, 2)) {
        0
    } else {
        position(args, 2, len)?
    };
    let byte_from = text.char_indices().nth(from).map_or(text.len(), |(b, _)| b);
    let found = text
        .get(byte_from..)
        .and_then(|rest| rest.find(&search))
        .map(|b| text.get(..byte_from + b).map_or(0, |s| s.chars().count()));
    Ok(match found {
        Some(i) => Value::from(i),
        None => Value::from(-1),
    })
}

/// `split(text; separator)`: an array of the pieces; an empty separator splits characters.
/// Each piece is a value of its own (72 bytes and more), so a text of separators would take
/// 72 times its length as an array: the pieces are counted first.
fn split(args: &[Value], _: &FnCtx) -> FnResult {
    arity(args, 2, 2)?;
    let text = text_arg(args, 0);
    let sep = text_arg(args, 1);
    let pieces = if sep.is_empty() {
        text.chars().count()
    } else {
        text.matches(sep.as_str()).count() + 1
    };
    ensure_fits(
        (pieces + 1)
            .saturating_mul(value::VALUE_BYTES)
            .saturating_add(text.len()),
    )?;
    let pieces: Vec<Value> = if sep.is_empty() {
        text.chars().map(|c| Value::String(c.to_string())).collect()
    } else {
        text.split(sep.as_str()).map(Value::from).collect()
    };
    Ok(Value::Array(pieces))
}

/// `contains(text; search)` (substring) or `contains(array; value)` (an equal element).
fn contains(args: &[Value], _: &FnCtx) -> FnResult {
    arity(args, 2, 2)?;
    let needle = arg(args, 1);
    Ok(Value::Bool(match arg(args, 0) {
        Value::Null => false,
        Value::Array(items) => items.iter().any(|v| loose_eq(v, needle)),
        haystack => value::to_text(haystack).contains(&value::to_text(needle)),
    }))
}

// ---- ascii ----------------------------------------------------------------------------

/// Letters that do not decompose into a base letter and marks.
fn transliterate(c: char) -> Option<&'static str> {
    Some(match c {
        'ß' => "ss",
        'æ' => "ae",
        'Æ' => "AE",
        'œ' => "oe",
        'Œ' => "OE",
        'ø' => "o",
        'Ø' => "O",
        'ł' => "l",
        'Ł' => "L",
        'đ' | 'ð' => "d",
        'Đ' | 'Ð' => "D",
        'þ' => "th",
        'Þ' => "Th",
        'ı' => "i",
        'ħ' => "h",
        'Ħ' => "H",
        'ŧ' => "t",
        'Ŧ' => "T",
        'ŋ' => "n",
        'Ŋ' => "N",
        'ĸ' => "k",
        'ſ' => "s",
        'ĳ' => "ij",
        'Ĳ' => "IJ",
        'ŀ' => "l",
        'Ŀ' => "L",
        _ => return None,
    })
}

/// `ascii(text; [transliterate])`: drops every non-ASCII character; with `true`, letters
/// with diacritics first become their base letters (`ěščřž` → `escrz`).
fn ascii(args: &[Value], _: &FnCtx) -> FnResult {
    arity(args, 1, 2)?;
    let text = text_arg(args, 0);
    let out: String = if value::truthy(arg(args, 1)) {
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            if let Some(t) = transliterate(c) {
                out.push_str(t);
            } else {
                out.extend(
                    std::iter::once(c)
                        .nfd()
                        .filter(|d| d.is_ascii() && !is_combining_mark(*d)),
                );
            }
        }
        out
    } else {
        text.chars().filter(char::is_ascii).collect()
    };
    Ok(Value::String(out))
}

// ---- binary ---------------------------------------------------------------------------

/// `base64(text or buffer)`: standard Base64 of the UTF-8 text or the buffer's bytes.
fn base64(args: &[Value], _: &FnCtx) -> FnResult {
    arity(args, 1, 1)?;
    // A stored file is measured before it is read.
    if let Some(size) = crate::expr::binary::Binary::from_value(arg(args, 0)).map(|f| f.size) {
        ensure_fits(usize::try_from(size.div_ceil(3).saturating_mul(4)).unwrap_or(usize::MAX))?;
    }
    let bytes = value::to_bytes(arg(args, 0));
    ensure_fits(bytes.len().div_ceil(3).saturating_mul(4))?;
    Ok(Value::String(STANDARD.encode(bytes)))
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(&s).ok())
}

/// Text of single-byte characters (`binary`/`latin1`) as bytes.
fn latin1_bytes(s: &str) -> Option<Vec<u8>> {
    s.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect()
}

/// Bytes of `value` read in `encoding` (`utf8` by default; `hex`, `base64`, `binary`).
fn decode_bytes(value: &Value, encoding: &str, what: &str) -> Result<Vec<u8>, FnError> {
    if let Some(bytes) = value::as_buffer(value) {
        return Ok(bytes);
    }
    let text = value::to_text(value);
    let bad = |enc: &str| {
        FnError::new(format!(
            "{what} is not valid {enc}: {}",
            short(&Value::from(text.as_str()))
        ))
    };
    match encoding.to_ascii_lowercase().as_str() {
        "" | "utf8" | "utf-8" | "text" => Ok(text.into_bytes()),
        "hex" => {
            let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            hex::decode(compact).map_err(|_| bad("hex"))
        }
        "base64" => decode_base64(&text).ok_or_else(|| bad("Base64")),
        "binary" | "latin1" | "ascii" => latin1_bytes(&text).ok_or_else(|| bad("binary text")),
        other => Err(FnError::new(format!(
            "unknown encoding {:?} (expected utf8, hex, base64 or binary)",
            other
        ))),
    }
}

/// `toBinary(value; [encoding])`: a buffer of the text's UTF-8 bytes, or of the text decoded
/// from `hex` or `base64`.
fn to_binary(args: &[Value], _: &FnCtx) -> FnResult {
    arity(args, 1, 2)?;
    // A binary already: the same bytes, stored once.
    if crate::expr::binary::Binary::from_value(arg(args, 0)).is_some() {
        return Ok(arg(args, 0).clone());
    }
    let bytes = decode_bytes(arg(args, 0), &text_arg(args, 1), "argument 1")?;
    // The bytes go to the binaries directory; the bundle holds a handle.
    ensure_fits(bytes.len())?;
    Ok(value::buffer(&bytes))
}

// ---- URL and HTML ---------------------------------------------------------------------

/// What JavaScript's `encodeURIComponent` leaves alone: `A-Z a-z 0-9 - _ . ! ~ * ' ( )`.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

fn encode_url(args: &[Value], _: &FnCtx) -> FnResult {
    let s = one_text(args)?;
    // Up to three times the text (`%XX` per byte): measured from the pieces, not built.
    ensure_fits(utf8_percent_encode(&s, URI_COMPONENT).map(str::len).sum())?;
    Ok(Value::String(
        utf8_percent_encode(&s, URI_COMPONENT).to_string(),
    ))
}

fn decode_url(args: &[Value], _: &FnCtx) -> FnResult {
    let s = one_text(args)?;
    Ok(Value::String(
        percent_decode_str(&s).decode_utf8_lossy().into_owned(),
    ))
}

/// The entity `escapeHTML` writes for a character, if any.
fn html_entity(c: char) -> Option<&'static str> {
    Some(match c {
        '&' => "&amp;",
        '<' => "&lt;",
        '>' => "&gt;",
        '"' => "&quot;",
        '\'' => "&#39;",
        _ => return None,
    })
}

fn escape_html(args: &[Value], _: &FnCtx) -> FnResult {
    let s = one_text(args)?;
    // Up to six times the text (`&quot;`): measured before it is built.
    let len = s
        .chars()
        .map(|c| html_entity(c).map_or(c.len_utf8(), str::len))
        .fold(0usize, usize::saturating_add);
    ensure_fits(len)?;
    let mut out = String::with_capacity(len);
    for c in s.chars() {
        match html_entity(c) {
            Some(entity) => out.push_str(entity),
            None => out.push(c),
        }
    }
    Ok(Value::String(out))
}

/// Removes tags (`<b>`, `</p>`, `<br/>`, `<!-- … -->`); a `<` that starts no tag is kept.
fn strip_html(args: &[Value], _: &FnCtx) -> FnResult {
    let s = one_text(args)?;
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        let starts_tag = c == '<'
            && chars
                .get(i + 1)
                .is_some_and(|n| n.is_ascii_alphabetic() || matches!(n, '/' | '!' | '?'));
        if !starts_tag {
            out.push(c);
            i += 1;
            continue;
        }
        let comment = chars.get(i + 1..i + 4) == Some(&['!', '-', '-'][..]);
        let mut j = i + 1;
        if comment {
            while j < chars.len()
                && chars.get(j.saturating_sub(2)..=j) != Some(&['-', '-', '>'][..])
            {
                j += 1;
            }
        } else {
            while chars.get(j).is_some_and(|c| *c != '>') {
                j += 1;
            }
        }
        i = j + 1;
    }
    Ok(Value::String(out))
}

// ---- hashes ---------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Algo {
    Md5,
    Sha1,
    Sha256,
    Sha512,
}

fn digest(algo: Algo, data: &[u8], key: Option<&[u8]>) -> Result<Vec<u8>, FnError> {
    fn hmac<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Result<Vec<u8>, FnError> {
        let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
            .map_err(|_| FnError::new("invalid HMAC key"))?;
        mac.update(data);
        Ok(mac.finalize().into_bytes().to_vec())
    }
    Ok(match (algo, key) {
        (Algo::Md5, None) => md5::Md5::digest(data).to_vec(),
        (Algo::Sha1, None) => sha1::Sha1::digest(data).to_vec(),
        (Algo::Sha256, None) => sha2::Sha256::digest(data).to_vec(),
        (Algo::Sha512, None) => sha2::Sha512::digest(data).to_vec(),
        (Algo::Md5, Some(k)) => hmac::<Hmac<md5::Md5>>(k, data)?,
        (Algo::Sha1, Some(k)) => hmac::<Hmac<sha1::Sha1>>(k, data)?,
        (Algo::Sha256, Some(k)) => hmac::<Hmac<sha2::Sha256>>(k, data)?,
        (Algo::Sha512, Some(k)) => hmac::<Hmac<sha2::Sha512>>(k, data)?,
    })
}

/// `shaN(text; [encoding]; [key]; [keyEncoding])`: the digest as `hex` (default), `base64`
/// or `latin1`/`binary` text; an HMAC when a key is given (key read as `text` by default,
/// or `hex`, `base64`, `binary`).
fn hash(algo: Algo, args: &[Value]) -> FnResult {
    arity(args, 1, 4)?;
    let data = value::to_bytes(arg(args, 0));
    let key = if value::is_empty(arg(args, 2)) {
        None
    } else {
        Some(decode_bytes(arg(args, 2), &text_arg(args, 3), "the key")?)
    };
    let bytes = digest(algo, &data, key.as_deref())?;
    let encoding = text_arg(args, 1).to_ascii_lowercase();
    Ok(Value::String(match encoding.as_str() {
        "" | "hex" => hex::encode(bytes),
        "base64" => STANDARD.encode(bytes),
        "latin1" | "binary" => bytes.iter().map(|b| char::from(*b)).collect(),
        other => {
            return Err(FnError::new(format!(
                "unknown encoding {other:?} (expected hex, base64 or latin1)"
            )));
        }
    }))
}

fn md5(args: &[Value], _: &FnCtx) -> FnResult {
    arity(args, 1, 1)?;
    hash(Algo::Md5, args)
}

fn sha1(args: &[Value], _: &FnCtx) -> FnResult {
    hash(Algo::Sha1, args)
}

fn sha256(args: &[Value], _: &FnCtx) -> FnResult {
    hash(Algo::Sha256, args)
}

fn sha512(args: &[Value], _: &FnCtx) -> FnResult {
    hash(Algo::Sha512, args)
}

// ---- emoji ----------------------------------------------------------------------------

/// Characters that are emoji on their own (pictographs, dingbats, flags' letters …).
fn is_emoji_base(c: char) -> bool {
    matches!(
        u32::from(c),
        0x1F000..=0x1FAFF
            | 0x2600..=0x27BF
            | 0x231A..=0x231B
            | 0x2328
            | 0x23CF
            | 0x23E9..=0x23F3
            | 0x23F8..=0x23FA
            | 0x2B05..=0x2B07
            | 0x2B1B..=0x2B1C
            | 0x2B50
            | 0x2B55
            | 0x3030
            | 0x303D
            | 0x3297
            | 0x3299
    )
}

/// Characters that only modify the emoji before them (variation selectors, keycap, skin
/// tones, tags).
fn is_emoji_modifier(c: char) -> bool {
    matches!(u32::from(c), 0xFE0E | 0xFE0F | 0x20E3 | 0x1F3FB..=0x1F3FF | 0xE0020..=0xE007F)
}

/// `replaceEmojiCharacters(text; replacement)`: every emoji — including a sequence joined
/// with zero-width joiners, a flag, a keycap, or a character shown as emoji with U+FE0F —
/// becomes `replacement` once.
fn replace_emoji_characters(args: &[Value], _: &FnCtx) -> FnResult {
    arity(args, 1, 2)?;
    let text = text_arg(args, 0);
    let replacement = text_arg(args, 1);
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        let next = chars.get(i + 1).copied();
        let presentation = next.is_some_and(|n| n == '\u{FE0F}' || n == '\u{20E3}');
        if !(is_emoji_base(c) || presentation) {
            out.push(c);
            i += 1;
            continue;
        }
        // One emoji sequence: base, modifiers, and further bases joined by U+200D; two
        // regional indicators make one flag.
        let regional = |ch: char| (0x1F1E6..=0x1F1FF).contains(&u32::from(ch));
        i += if regional(c) && next.is_some_and(regional) {
            2
        } else {
            1
        };
        loop {
            match chars.get(i).copied() {
                Some(m) if is_emoji_modifier(m) => i += 1,
                Some('\u{200D}') if chars.get(i + 1).is_some_and(|n| is_emoji_base(*n)) => i += 2,
                _ => break,
            }
        }
        push_capped(&mut out, &replacement)?;
    }
    Ok(Value::String(out))
}
