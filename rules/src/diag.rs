//! Located errors in nft's format.
//!
//! `nft -c -f bad.nft` prints
//! ```text
//! bad.nft:4:24-29: Error: Could not parse conntrack state
//! \t\tct state established,relatd accept
//! \t\t                     ^^^^^^
//! ```
//! Columns are 1-based byte columns, the end column is inclusive, and the caret line copies tabs from
//! the source line so the carets line up whatever the tab width.

use std::fmt;

/// A byte range in one source text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    /// Index into the parser's list of sources (0 = the main file).
    pub src: u16,
    pub lo: u32,
    pub hi: u32,
}

impl Span {
    pub fn new(src: u16, lo: usize, hi: usize) -> Span {
        Span {
            src,
            lo: lo as u32,
            hi: hi as u32,
        }
    }
    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        if self.src != other.src {
            return self;
        }
        Span {
            src: self.src,
            lo: self.lo.min(other.lo),
            hi: self.hi.max(other.hi),
        }
    }
}

/// One error, located in a source file, printed exactly like nft prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: u32,
    pub col_start: u32,
    pub col_end: u32,
    pub message: String,
    pub source_line: String,
    /// Related ranges on the same line, underlined with `~` (nft's secondary locations), as
    /// (col_start, col_end).
    pub secondary: Vec<(u32, u32)>,
    /// Where the file was included from, and the errors that follow this one (boxed: most
    /// diagnostics have neither, and results carrying a diagnostic stay small).
    pub extra: Option<Box<Extra>>,
}

/// The rarer parts of a [`Diagnostic`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extra {
    /// The `include` statements that led to this file, innermost first, as (file, line, col_start,
    /// col_end): printed as nft's `In file included from …` lines.
    pub included_from: Vec<(String, u32, u32, u32)>,
    /// The errors that follow this one in the same input (nft reports every error of a file, up to
    /// its limit): printed after this one, in order.
    pub more: Vec<Diagnostic>,
}

impl Diagnostic {
    /// Builds a diagnostic for `span` (byte offsets) in `text`.
    pub fn at(
        file: &str,
        text: &str,
        lo: usize,
        hi: usize,
        message: impl Into<String>,
    ) -> Diagnostic {
        let lo = lo.min(text.len());
        let hi = hi.max(lo + 1);
        let line_start = text[..lo].rfind('\n').map(|i| i + 1).unwrap_or(0);
        let line_end = text[line_start..]
            .find('\n')
            .map(|i| line_start + i)
            .unwrap_or(text.len());
        let line = text[..line_start].bytes().filter(|&b| b == b'\n').count() as u32 + 1;
        let col_start = (lo - line_start) as u32 + 1;
        // At the end of a file that ends with a newline nft locates the error on the (empty) line
        // after the last one but prints the last line's text.
        let shown = if lo == text.len() && line_start == lo && lo > 0 {
            let prev = text[..lo - 1].rfind('\n').map(|i| i + 1).unwrap_or(0);
            &text[prev..lo - 1]
        } else {
            &text[line_start..line_end]
        };
        // nft never marks past the end of the first line of the span.
        let hi_clamped = hi.min(line_end.max(lo + 1));
        let col_end = (hi_clamped - line_start) as u32;
        Diagnostic {
            file: file.to_string(),
            line,
            col_start,
            col_end,
            message: message.into(),
            source_line: shown.to_string(),
            secondary: Vec::new(),
            extra: None,
        }
    }

    /// Adds a related range (byte offsets in the same text) shown with `~` when on the same line.
    pub fn with_secondary(mut self, text: &str, lo: usize, hi: usize) -> Diagnostic {
        let other = Diagnostic::at(&self.file, text, lo, hi, "");
        if other.line == self.line {
            self.secondary.push((other.col_start, other.col_end));
        }
        self
    }

    /// A diagnostic with no location in any source (printed as `Error: message`).
    pub fn bare(message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: String::new(),
            line: 0,
            col_start: 0,
            col_end: 0,
            message: message.into(),
            source_line: String::new(),
            secondary: Vec::new(),
            extra: None,
        }
    }
}

impl Diagnostic {
    /// Joins errors into one value that prints them all, in order (`None` if there are none).
    pub fn join(errors: Vec<Diagnostic>) -> Option<Diagnostic> {
        let mut it = errors.into_iter();
        let mut first = it.next()?;
        let more: Vec<Diagnostic> = it.collect();
        if !more.is_empty() {
            first.extra_mut().more.extend(more);
        }
        Some(first)
    }

    /// The errors that follow this one.
    pub fn more(&self) -> &[Diagnostic] {
        self.extra.as_ref().map_or(&[], |e| &e.more)
    }

    /// This error and the ones that follow it.
    pub fn all(&self) -> impl Iterator<Item = &Diagnostic> {
        std::iter::once(self).chain(self.more().iter())
    }

    /// The include statements that led to this error's file, innermost first.
    pub fn included_from(&self) -> &[(String, u32, u32, u32)] {
        self.extra.as_ref().map_or(&[], |e| &e.included_from)
    }

    pub fn extra_mut(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Default::default)
    }

    fn fmt_one(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            return write!(f, "Error: {}", self.message);
        }
        // like nft's print_location
        let mut prefix = "In file included from";
        for (file, line, a, b) in self.included_from() {
            writeln!(f, "{prefix} {file}:{line}:{a}-{b}:")?;
            prefix = "                 from";
        }
        writeln!(
            f,
            "{}:{}:{}-{}: Error: {}",
            self.file, self.line, self.col_start, self.col_end, self.message
        )?;
        writeln!(f, "{}", self.source_line)?;
        // like nft's erec_print: tabs kept, `^` under the error, `~` under related locations
        let width = self
            .secondary
            .iter()
            .map(|&(_, e)| e)
            .chain(std::iter::once(self.col_end.max(self.col_start)))
            .max()
            .unwrap_or(0) as usize;
        let line = self.source_line.as_bytes();
        let mut marks: Vec<char> = (0..width)
            .map(|i| {
                if line.get(i) == Some(&b'\t') {
                    '\t'
                } else {
                    ' '
                }
            })
            .collect();
        for &(a, b) in &self.secondary {
            for i in a..=b {
                if let Some(m) = marks.get_mut(i as usize - 1) {
                    *m = '~';
                }
            }
        }
        for i in self.col_start..=self.col_end.max(self.col_start) {
            if let Some(m) = marks.get_mut(i as usize - 1) {
                *m = '^';
            }
        }
        let caret: String = marks.into_iter().collect();
        write!(f, "{caret}")
    }
}

impl fmt::Display for Diagnostic {
    /// Every error, each as nft prints it, one after the other.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_one(f)?;
        for d in self.more() {
            writeln!(f)?;
            d.fmt_one(f)?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostic {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caret_line_copies_tabs() {
        let src =
            "table inet filter {\n\tchain forward {\n\t\tct state established,relatd accept\n";
        let lo = src.find("relatd").unwrap();
        let d = Diagnostic::at("a.nft", src, lo, lo + 6, "Could not parse conntrack state");
        assert_eq!(
            d.to_string(),
            "a.nft:3:24-29: Error: Could not parse conntrack state\n\
             \t\tct state established,relatd accept\n\
             \t\t                     ^^^^^^"
        );
    }

    #[test]
    fn end_of_file_after_newline_is_next_line() {
        let src = "table ip x {\n";
        let d = Diagnostic::at(
            "f",
            src,
            src.len(),
            src.len(),
            "syntax error, unexpected end of file",
        );
        assert_eq!((d.line, d.col_start, d.col_end), (2, 1, 1));
        // nft 1.0.6 prints the last line's text under the location of the line after it
        assert_eq!(
            d.to_string(),
            "f:2:1-1: Error: syntax error, unexpected end of file\ntable ip x {\n^"
        );
    }
}
