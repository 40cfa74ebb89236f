//! How text from a record is shown to people: one function, used by the
//! terminal output, alerts, and the Markdown and HTML reports.

use std::borrow::Cow;
use std::fmt::Write;

/// Text from a record (a file name, a reason that names one) as a terminal, a
/// plain-text alert or a Markdown line may show it: on one line, with nothing
/// a terminal acts on, and two different names never alike. Records keep the
/// exact text; only what people read is escaped.
///
/// A backslash is `\\`; newline, carriage return and tab are `\n`, `\r`,
/// `\t`; other C0 controls and DEL are `\xNN` (ESC is `\x1b`); C1 controls,
/// the line and paragraph separators and the bidirectional controls are
/// `\u{NNNN}`. A byte that is not UTF-8, which a record holds as NUL and two
/// hex digits (80-ff; no file name contains NUL), is `\xff`.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        rest = &rest[c.len_utf8()..];
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => match invalid_byte(rest) {
                Some(b) => {
                    let _ = write!(out, "\\x{b:02x}");
                    rest = &rest[2..];
                }
                None => out.push_str("\\x00"),
            },
            c if (c as u32) < 0x20 || c == '\x7f' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c == '\\'
        || c.is_control()
        || matches!(
            c,
            '\u{2028}'
                | '\u{2029}'
                | '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// The byte a record's NUL + two lowercase hex digits stands for: only 80-ff,
/// the bytes that can be invalid UTF-8.
fn invalid_byte(after_nul: &str) -> Option<u8> {
    let hex = after_nul.get(..2)?;
    if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u8::from_str_radix(hex, 16).ok().filter(|b| *b >= 0x80)
}
