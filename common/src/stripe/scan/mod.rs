//! A validating JSON scanner over raw text: one pass checks a whole document against RFC 8259's
//! grammar (what serde_json and Postgres's `json` accept) and hands the caller the raw text of the
//! members it reads, never decoding, allocating or recursing for the values it skips.

use std::borrow::Cow;
use std::fmt;

mod nesting;

use nesting::Nesting;

/// Where a text stops being JSON, and what was expected there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Syntax {
    pub at: usize,
    pub expected: &'static str,
}

impl fmt::Display for Syntax {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "expected {} at byte {}", self.expected, self.at)
    }
}

/// Bytes that end a run of plain string content: the closing quote, an escape, and the control
/// characters that JSON forbids unescaped.
static STRING_STOP: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The index of the first of 8 bytes (little-endian in `word`) that may be in [`STRING_STOP`],
/// if any: a byte below `#` (the control characters and the quote, but also a space and `!`,
/// which the caller then checks one by one) or a backslash. Each test flags a byte by its high
/// bit; a borrow can flag a byte wrongly only above a byte flagged rightly, so the lowest flag is
/// exact.
#[inline(always)]
fn first_stop(word: u64) -> Option<usize> {
    let below = |v: u64, n: u8| v.wrapping_sub(ONES * u64::from(n)) & !v;
    let low = below(word, b'#');
    let escape = below(word ^ (ONES * u64::from(b'\\')), 1);
    let hits = (low | escape) & HIGHS;
    (hits != 0).then(|| (hits.trailing_zeros() / 8) as usize)
}

fn error(at: usize, expected: &'static str) -> Syntax {
    Syntax { at, expected }
}

/// Moves past whitespace. Any byte above a space is none, which ends the loop with one
/// comparison for texts without whitespace.
#[inline(always)]
fn skip_whitespace(b: &[u8], mut i: usize) -> usize {
    while let Some(&c) = b.get(i) {
        if c > b' ' || !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
            break;
        }
        i += 1;
    }
    i
}

/// Moves past a string (at its opening quote): where it ends, and whether it holds no escape.
#[inline(always)]
fn string(b: &[u8], mut i: usize) -> Result<(usize, bool), Syntax> {
    i += 1;
    let mut plain = true;
    loop {
        while let Some(chunk) = b.get(i..).and_then(<[u8]>::first_chunk::<8>) {
            match first_stop(u64::from_le_bytes(*chunk)) {
                Some(n) => {
                    i += n;
                    break;
                }
                None => i += 8,
            }
        }
        while b.get(i).is_some_and(|&c| !STRING_STOP[usize::from(c)]) {
            i += 1;
        }
        match b.get(i) {
            Some(b'"') => return Ok((i + 1, plain)),
            Some(b'\\') => {
                plain = false;
                i = escape(b, i)?;
            }
            Some(_) => return Err(error(i, "no control character in a string")),
            None => return Err(error(i, "the end of a string")),
        }
    }
}

/// Moves past one escape (at its backslash).
fn escape(b: &[u8], i: usize) -> Result<usize, Syntax> {
    match b.get(i + 1) {
        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(i + 2),
        Some(b'u') => {
            let hex = b
                .get(i + 2..i + 6)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit));
            hex.map(|_| i + 6)
                .ok_or(error(i + 2, "four hex digits in a \\u escape"))
        }
        _ => Err(error(i + 1, "an escape")),
    }
}

fn digits(b: &[u8], mut i: usize) -> Result<usize, Syntax> {
    let start = i;
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    if i == start {
        return Err(error(i, "a digit"));
    }
    Ok(i)
}

fn number(b: &[u8], mut i: usize) -> Result<usize, Syntax> {
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    i = match b.get(i) {
        Some(b'0') => i + 1,
        Some(b'1'..=b'9') => digits(b, i)?,
        _ => return Err(error(i, "a digit")),
    };
    if b.get(i) == Some(&b'.') {
        i = digits(b, i + 1)?;
    }
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = b.get(i) {
            i += 1;
        }
        i = digits(b, i)?;
    }
    Ok(i)
}

fn literal(b: &[u8], i: usize, word: &'static str) -> Result<usize, Syntax> {
    if b.get(i..).unwrap_or_default().starts_with(word.as_bytes()) {
        Ok(i + word.len())
    } else {
        Err(error(i, word))
    }
}

/// Moves past an object's key and its colon (at the key's opening quote, or at whitespace before
/// it), up to the whitespace before its value.
#[inline(always)]
fn key(b: &[u8], i: usize) -> Result<usize, Syntax> {
    let i = skip_whitespace(b, i);
    if b.get(i) != Some(&b'"') {
        return Err(error(i, "a string"));
    }
    let (i, _) = string(b, i)?;
    let i = skip_whitespace(b, i);
    match b.get(i) {
        Some(b':') => Ok(i + 1),
        _ => Err(error(i, "':' after a key")),
    }
}

/// Moves past one value of any kind (at it, or at whitespace before it), checking all of it,
/// without recursion: the arrays and objects open inside it are counted in `nesting`, which it
/// leaves as it found it.
fn skip(b: &[u8], mut i: usize, nesting: &mut Nesting) -> Result<usize, Syntax> {
    let floor = nesting.depth;
    loop {
        i = skip_whitespace(b, i);
        match b.get(i) {
            Some(b'"') => i = string(b, i)?.0,
            Some(b'{') => {
                i = skip_whitespace(b, i + 1);
                if b.get(i) == Some(&b'}') {
                    i += 1;
                } else {
                    nesting.push(true);
                    i = key(b, i)?;
                    continue;
                }
            }
            Some(b'[') => {
                i = skip_whitespace(b, i + 1);
                if b.get(i) == Some(&b']') {
                    i += 1;
                } else {
                    nesting.push(false);
                    continue;
                }
            }
            Some(b'-' | b'0'..=b'9') => i = number(b, i)?,
            Some(b't') => i = literal(b, i, "true")?,
            Some(b'f') => i = literal(b, i, "false")?,
            Some(b'n') => i = literal(b, i, "null")?,
            _ => return Err(error(i, "a value")),
        }
        // After a value: close what it ends, or go on to the next one.
        loop {
            if nesting.depth == floor {
                return Ok(i);
            }
            let object = nesting.top();
            i = skip_whitespace(b, i);
            match b.get(i) {
                Some(b',') if object => {
                    i = key(b, i + 1)?;
                    break;
                }
                Some(b',') => {
                    i += 1;
                    break;
                }
                Some(b'}') if object => {
                    i += 1;
                    nesting.pop();
                }
                Some(b']') if !object => {
                    i += 1;
                    nesting.pop();
                }
                _ if object => return Err(error(i, "',' or '}'")),
                _ => return Err(error(i, "',' or ']'")),
            }
        }
    }
}

/// A position in a JSON text. Each method reads one piece of grammar at the position (after any
/// whitespace) and moves past it, or says where the text stops being JSON.
pub struct Scanner<'a> {
    text: &'a str,
    pos: usize,
    nesting: Nesting,
}

/// An object's member name as it stands in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key<'a> {
    /// Between the quotes, escapes undecoded.
    pub raw: &'a str,
    /// Whether `raw` holds no escape (it is then the name itself).
    pub plain: bool,
}

impl<'a> Key<'a> {
    /// The name decoded; `None` when an escape does not decode (a lone surrogate).
    pub fn name(&self) -> Option<Cow<'a, str>> {
        if self.plain {
            Some(Cow::Borrowed(self.raw))
        } else {
            decode(self.raw)
        }
    }
}

impl<'a> Scanner<'a> {
    pub fn new(text: &'a str) -> Self {
        Scanner {
            text,
            pos: 0,
            nesting: Nesting::default(),
        }
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    /// The next byte that is not whitespace, left in place.
    pub fn peek(&mut self) -> Option<u8> {
        self.pos = skip_whitespace(self.bytes(), self.pos);
        self.bytes().get(self.pos).copied()
    }

    /// The end of the document: nothing but whitespace may follow.
    pub fn end(&mut self) -> Result<(), Syntax> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(error(self.pos, "the end of the text")),
        }
    }

    /// Moves past one value of any kind, checking all of it.
    pub fn skip(&mut self) -> Result<(), Syntax> {
        self.pos = skip(self.bytes(), self.pos, &mut self.nesting)?;
        Ok(())
    }

    /// Moves past one value and returns its raw text.
    pub fn value(&mut self) -> Result<&'a str, Syntax> {
        let start = skip_whitespace(self.bytes(), self.pos);
        self.pos = skip(self.bytes(), start, &mut self.nesting)?;
        Ok(&self.text[start..self.pos])
    }

    /// Reads an object (the next value must be one), calling `member` with each key and the
    /// scanner at its value, which `member` must move past.
    pub fn object<E: From<Syntax>>(
        &mut self,
        mut member: impl FnMut(&mut Self, Key<'a>) -> Result<(), E>,
    ) -> Result<(), E> {
        let b = self.bytes();
        if self.peek() != Some(b'{') {
            return Err(error(self.pos, "'{'").into());
        }
        self.pos = skip_whitespace(b, self.pos + 1);
        if b.get(self.pos) == Some(&b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            // The key is read here rather than by `key()`, which the skipping loop uses: this one
            // keeps the name. One function returning the name's position for both cost the
            // skipping loop 730-1,200 instructions per webhook event (callgrind).
            let start = self.pos;
            if b.get(start) != Some(&b'"') {
                return Err(error(start, "a string").into());
            }
            let (end, plain) = string(b, start)?;
            let raw = &self.text[start + 1..end - 1];
            self.pos = skip_whitespace(b, end);
            if b.get(self.pos) != Some(&b':') {
                return Err(error(self.pos, "':' after a key").into());
            }
            self.pos += 1;
            member(self, Key { raw, plain })?;
            self.pos = skip_whitespace(b, self.pos);
            match b.get(self.pos) {
                Some(b',') => self.pos = skip_whitespace(b, self.pos + 1),
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(error(self.pos, "',' or '}'").into()),
            }
        }
    }
}

/// A string's raw content (a key, or a value between its quotes) decoded: borrowed when it holds
/// no escape, `None` when an escape does not decode (a lone surrogate).
pub fn decode(raw: &str) -> Option<Cow<'_, str>> {
    if !raw.contains('\\') {
        return Some(Cow::Borrowed(raw));
    }
    let quoted = format!("\"{raw}\"");
    serde_json::from_str::<String>(&quoted).ok().map(Cow::Owned)
}

#[cfg(test)]
mod tests;
