//! Tokens of the nft language.
//!
//! Like nft's scanner, addresses (IPv4, IPv6, MAC) and time strings are single tokens, words may contain
//! `-`, `.`, `/` and a trailing `*`, and `#` starts a comment. Newlines are tokens: they separate
//! commands and rules.

use crate::diag::Span;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tok {
    /// identifier-like word (`accept`, `echo-request`, `eth*`), time string (`1h30m`)
    Word,
    /// decimal or 0x hex number
    Num,
    /// IPv4/IPv6/MAC address or other colon/dot separated literal
    Addr,
    /// `"..."` (span covers the quotes)
    Quoted,
    /// `$name`
    Var,
    /// `@name`
    At,
    Newline,
    Semi,
    LBrace,
    RBrace,
    LParen,
    RParen,
    LBrack,
    RBrack,
    Comma,
    Slash,
    Dash,
    Dot,
    Colon,
    Star,
    Bang,
    Ne,
    EqEq,
    Eq,
    Lt,
    Gt,
    Le,
    Ge,
    Amp,
    Pipe,
    Caret,
    Shl,
    Shr,
    Tilde,
    Plus,
    Eof,
    /// a byte nft's scanner does not accept
    Junk,
}

#[derive(Clone, Copy, Debug)]
pub struct Token {
    pub kind: Tok,
    pub span: Span,
}

/// Byte classes, one bit each (a table lookup per byte: the lexer's loops are the parser's hottest).
const WORD: u8 = 1;
const ADDR: u8 = 2;
/// hex digits and `.`: a run of them followed by `:` may be an address
const HEXDOT: u8 = 4;
const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b'/') {
            t[b] |= WORD;
        }
        if c.is_ascii_hexdigit() || c == b':' || c == b'.' {
            t[b] |= ADDR;
        }
        if c.is_ascii_hexdigit() || c == b'.' {
            t[b] |= HEXDOT;
        }
        b += 1;
    }
    t
};

fn is_word_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}
#[inline]
fn is_word_char(b: u8) -> bool {
    CLASS[b as usize] & WORD != 0
}
#[inline]
fn is_addr_char(b: u8) -> bool {
    CLASS[b as usize] & ADDR != 0
}

/// Does `s` look like an IPv6 address or a MAC-style colon-separated literal?
fn colon_literal(s: &str) -> bool {
    if !s.as_bytes().contains(&b':') || s.ends_with('.') {
        return false;
    }
    if s.parse::<std::net::Ipv6Addr>().is_ok() {
        return true;
    }
    // MAC-like or other hex-group literals: at least 3 groups of 1-2 hex digits
    s.split(':').count() >= 3
        && s.split(':')
            .all(|g| !g.is_empty() && g.len() <= 2 && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A compressed IPv6 address followed by `:` (`1::2:accept`): the length of the longest such address
/// at the start of `run`.
fn ipv6_before_colon(run: &str) -> Option<usize> {
    if !run.contains("::") {
        return None;
    }
    (2..run.len())
        .rev()
        .filter(|&k| run.as_bytes()[k] == b':')
        .find(|&k| run[..k].parse::<std::net::Ipv6Addr>().is_ok())
}

fn is_ip4(s: &[u8]) -> bool {
    // four groups of 1-3 digits
    let (mut groups, mut digits) = (1, 0);
    for &b in s {
        match b {
            b'0'..=b'9' if digits < 3 => digits += 1,
            b'.' if digits > 0 => {
                groups += 1;
                digits = 0;
            }
            _ => return false,
        }
    }
    groups == 4 && digits > 0
}

/// All tokens of `src`, ending with `Eof`.
pub fn lex(src: &str, file: u16) -> Vec<Token> {
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        let t = next_token(src, file, &mut pos);
        out.push(t);
        if t.kind == Tok::Eof {
            return out;
        }
    }
}

/// The token starting at or after byte `*pos` of `src` (skipping blanks and comments), advancing
/// `*pos` past it. At the end: `Eof` (again on every call).
pub fn next_token(src: &str, file: u16, pos: &mut usize) -> Token {
    scan(src, file, pos)
}

/// [`next_token`], inlined into the parser's loop that reads most tokens.
#[inline(always)]
pub(crate) fn scan(src: &str, file: u16, pos: &mut usize) -> Token {
    let b = src.as_bytes();
    let mut i = *pos;
    while let Some(&c) = b.get(i) {
        if c == b' ' || c == b'\t' {
            // blanks first: there is one before most tokens
            i += 1;
            continue;
        }
        let (kind, end) = match c {
            b' ' | b'\t' | b'\r' => {
                i += 1;
                continue;
            }
            b'\n' => (Tok::Newline, i + 1),
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => match word_end(b, i) {
                Some(end) => (Tok::Word, end),
                None => literal(src, i),
            },
            b'0'..=b'9' => number(b, i).unwrap_or_else(|| literal(src, i)),
            b':' if b.get(i + 1) == Some(&b':') => literal(src, i),
            b'\\' if b.get(i + 1) == Some(&b'\n') => {
                i += 2;
                continue;
            }
            b'#' => {
                i += b[i..]
                    .iter()
                    .position(|&x| x == b'\n')
                    .unwrap_or(b.len() - i);
                continue;
            }
            b'"' => {
                let mut j = i + 1;
                // a NUL byte cannot be part of a name: the string is junk
                while j < b.len() && !matches!(b[j], b'"' | b'\n' | 0) {
                    j += 1;
                }
                if j < b.len() && b[j] == b'"' {
                    (Tok::Quoted, j + 1)
                } else {
                    (Tok::Junk, j)
                }
            }
            b'$' | b'@' => {
                let mut j = i + 1;
                while j < b.len()
                    && (b[j].is_ascii_alphanumeric() || matches!(b[j], b'_' | b'-' | b'.'))
                {
                    j += 1;
                }
                (if c == b'$' { Tok::Var } else { Tok::At }, j)
            }
            _ => punct(b, i),
        };
        *pos = end;
        return Token {
            kind,
            span: Span::new(file, i, end),
        };
    }
    *pos = b.len();
    Token {
        kind: Tok::Eof,
        span: Span::new(file, b.len(), b.len()),
    }
}

/// The end of the word starting with the letter or `_` at `i`, unless it may start an address (it
/// is all hex digits and dots, and followed by `:`; [`literal`] decides).
#[inline]
fn word_end(b: &[u8], i: usize) -> Option<usize> {
    let j = b[i + 1..]
        .iter()
        .position(|&c| !is_word_char(c))
        .map_or(b.len(), |n| i + 1 + n);
    match b.get(j) {
        Some(b'*') => Some(j + 1),
        Some(b':') if b[i..j].iter().all(|&c| CLASS[c as usize] & HEXDOT != 0) => None,
        _ => Some(j),
    }
}

/// The number or IPv4 address starting with the digit at `i`, unless its run of digits and dots is
/// followed by a letter, digit or `:` (a time string, a hex number, an IPv6 address...: [`literal`]
/// decides).
#[inline(always)]
fn number(b: &[u8], i: usize) -> Option<(Tok, usize)> {
    let mut j = i + 1;
    while j < b.len() && b[j].is_ascii_digit() {
        j += 1;
    }
    let mut token = (Tok::Num, j);
    if b.get(j) == Some(&b'.') {
        // an IPv4 address: four groups of 1-3 digits (dots after the last one are not part of it)
        let (mut groups, mut ok, mut end) = (1, j - i <= 3, j);
        while b.get(j) == Some(&b'.') {
            j += 1;
            let group = j;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            if j == group {
                // dots at the end, or two in a row (`1..2`: no address); the run goes on
                while j < b.len() && (b[j] == b'.' || b[j].is_ascii_digit()) {
                    ok &= b[j] == b'.';
                    j += 1;
                }
                break;
            }
            groups += 1;
            ok &= j - group <= 3;
            end = j;
        }
        if ok && groups == 4 {
            token = (Tok::Addr, end);
        }
    }
    if b.get(j)
        .is_some_and(|&x| x.is_ascii_alphanumeric() || x == b':')
    {
        return None;
    }
    Some(token)
}

/// The token starting with the letter, digit, `_` or `::` at `i`: address, number or word.
#[cold]
fn literal(src: &str, mut i: usize) -> (Tok, usize) {
    let b = src.as_bytes();
    let c = b[i];
    // addresses first: the longest run of hex digits, colons and dots (only one with a colon can be
    // an IPv6 or MAC address, or a `:`)
    let mut j = i;
    let mut colon = false;
    while j < b.len() && is_addr_char(b[j]) {
        colon |= b[j] == b':';
        j += 1;
    }
    let run = &src[i..j];
    let next_is_word = colon && j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_');
    let kind = if colon && !next_is_word && colon_literal(run) {
        i = j;
        Tok::Addr
    } else if let Some(k) = colon.then(|| ipv6_before_colon(run)).flatten() {
        // `aaaa:::accept` in a verdict map: the address `aaaa::`, then `:`
        i += k;
        Tok::Addr
    } else if c == b':' {
        i += 1;
        Tok::Colon
    } else if c.is_ascii_digit() {
        // ipv4?
        let mut k = i;
        while k < b.len() && (b[k].is_ascii_digit() || b[k] == b'.') {
            k += 1;
        }
        let dotted = src[i..k].trim_end_matches('.');
        if is_ip4(dotted.as_bytes()) && !(k < b.len() && b[k].is_ascii_alphabetic()) {
            i += dotted.len();
            Tok::Addr
        } else if c == b'0'
            && matches!(b.get(i + 1), Some(b'x' | b'X'))
            && b.get(i + 2).is_some_and(|x| x.is_ascii_hexdigit())
        {
            i += 2;
            while i < b.len() && b[i].is_ascii_hexdigit() {
                i += 1;
            }
            Tok::Num
        } else {
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i < b.len() && b[i].is_ascii_alphabetic() {
                // time strings (1h30m), sizes (10kbytes), and other digit-led words
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                Tok::Word
            } else {
                Tok::Num
            }
        }
    } else {
        debug_assert!(is_word_start(c));
        // the run of hex digits and dots before `j` is part of the word (no colon in it)
        if !colon {
            i = j;
        }
        while i < b.len() && is_word_char(b[i]) {
            i += 1;
        }
        if i < b.len() && b[i] == b'*' {
            i += 1;
        }
        Tok::Word
    };
    (kind, i)
}

/// The operator or punctuation at `i` (`Junk` for a byte nft does not accept).
fn punct(b: &[u8], mut i: usize) -> (Tok, usize) {
    let c = b[i];
    let two = match (c, b.get(i + 1)) {
        (b'!', Some(b'=')) => Some(Tok::Ne),
        (b'=', Some(b'=')) => Some(Tok::EqEq),
        (b'<', Some(b'=')) => Some(Tok::Le),
        (b'>', Some(b'=')) => Some(Tok::Ge),
        (b'<', Some(b'<')) => Some(Tok::Shl),
        (b'>', Some(b'>')) => Some(Tok::Shr),
        _ => None,
    };
    if let Some(k) = two {
        return (k, i + 2);
    }
    let k = match c {
        b';' => Tok::Semi,
        b'{' => Tok::LBrace,
        b'}' => Tok::RBrace,
        b'(' => Tok::LParen,
        b')' => Tok::RParen,
        b'[' => Tok::LBrack,
        b']' => Tok::RBrack,
        b',' => Tok::Comma,
        b'/' => Tok::Slash,
        b'-' => Tok::Dash,
        b'.' => Tok::Dot,
        b':' => Tok::Colon,
        b'*' => Tok::Star,
        b'!' => Tok::Bang,
        b'=' => Tok::Eq,
        b'<' => Tok::Lt,
        b'>' => Tok::Gt,
        b'&' => Tok::Amp,
        b'|' => Tok::Pipe,
        b'^' => Tok::Caret,
        b'~' => Tok::Tilde,
        b'+' => Tok::Plus,
        _ => Tok::Junk,
    };
    i += 1;
    if k == Tok::Junk {
        // swallow a whole UTF-8 character
        while i < b.len() && (b[i] & 0xc0) == 0x80 {
            i += 1;
        }
    }
    (k, i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(s: &str) -> Vec<(Tok, &str)> {
        lex(s, 0)
            .into_iter()
            .map(|t| (t.kind, &s[t.span.lo as usize..t.span.hi as usize]))
            .collect()
    }

    /// Tiny deterministic generator (xorshift) for the agreement test.
    fn rand_src(seed: &mut u64, alphabet: &[u8], n: usize) -> String {
        (0..n)
            .map(|_| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                alphabet[(*seed % alphabet.len() as u64) as usize] as char
            })
            .collect()
    }

    /// The fast paths for words and numbers end each token where [`literal`] (which handles every
    /// letter-, digit- or `::`-led token) ends it, or leave it to `literal`.
    #[test]
    fn fast_paths_agree_with_literal() {
        let mut seed = 0x9e37_79b9_7f4a_7c15;
        // all sorts of words, then mostly digits and dots (addresses with long or empty groups)
        let alphabets: [&[u8]; 3] = [
            b"0123456789.:abcdefxXghkmsz_-/*  \n",
            b"0123456789012345.. :a",
            b"1111.",
        ];
        for round in 0..30_000 {
            let s = rand_src(&mut seed, alphabets[round % 3], 24);
            let b = s.as_bytes();
            for i in 0..b.len() {
                let fast = match b[i] {
                    b'a'..=b'z' | b'A'..=b'Z' | b'_' => word_end(b, i).map(|e| (Tok::Word, e)),
                    b'0'..=b'9' => number(b, i),
                    _ => continue,
                };
                if let Some(f) = fast {
                    assert_eq!(f, literal(&s, i), "{s:?} at {i}");
                }
            }
        }
    }

    #[test]
    fn addresses_and_words() {
        assert_eq!(
            kinds("ip saddr 192.0.2.0/24 icmp type echo-request"),
            vec![
                (Tok::Word, "ip"),
                (Tok::Word, "saddr"),
                (Tok::Addr, "192.0.2.0"),
                (Tok::Slash, "/"),
                (Tok::Num, "24"),
                (Tok::Word, "icmp"),
                (Tok::Word, "type"),
                (Tok::Word, "echo-request"),
                (Tok::Eof, ""),
            ]
        );
        assert_eq!(kinds("fe80::1/64")[0], (Tok::Addr, "fe80::1"));
        assert_eq!(kinds("::1")[0], (Tok::Addr, "::1"));
        assert_eq!(
            kinds("00:11:22:33:44:55")[0],
            (Tok::Addr, "00:11:22:33:44:55")
        );
        assert_eq!(
            kinds("80-90")[..3],
            [(Tok::Num, "80"), (Tok::Dash, "-"), (Tok::Num, "90")]
        );
        assert_eq!(
            kinds("1.2.3.4:80")[..3],
            [(Tok::Addr, "1.2.3.4"), (Tok::Colon, ":"), (Tok::Num, "80")]
        );
        assert_eq!(
            kinds("0x10 1h30m")[..2],
            [(Tok::Num, "0x10"), (Tok::Word, "1h30m")]
        );
        assert_eq!(kinds("dead ct")[0], (Tok::Word, "dead"));
        assert_eq!(kinds("a != b # c\n")[1], (Tok::Ne, "!="));
        assert_eq!(kinds("\"eth*\"")[0], (Tok::Quoted, "\"eth*\""));
        assert_eq!(kinds("22 : accept")[1], (Tok::Colon, ":"));
        assert_eq!(
            kinds("1:2:3:4:5:6:a:::accept")[..3],
            [
                (Tok::Addr, "1:2:3:4:5:6:a::"),
                (Tok::Colon, ":"),
                (Tok::Word, "accept")
            ]
        );
        assert_eq!(
            kinds("::1:accept")[..2],
            [(Tok::Addr, "::1"), (Tok::Colon, ":")]
        );
    }
}
