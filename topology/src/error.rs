//! What a topology file got wrong: every mistake, each with its file, line, column and field.

use std::fmt;
use std::ops::Range;

/// One mistake in a topology file.
///
/// `line` and `column` are 1-based (column counts characters, as editors do). Both are 0 when the
/// mistake is not tied to a place in the text, e.g. the file could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyError {
    /// 1-based line, or 0 for "the whole file".
    pub line: usize,
    /// 1-based column in characters, or 0 for "the whole file".
    pub column: usize,
    /// Where in the document: a field path like `datacentre[1].spoke[0].grpc`, or for a TOML
    /// syntax error the enclosing table header like `[[datacentre.spoke]]`.
    pub field: String,
    /// What is wrong, in one line.
    pub message: String,
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: ", self.line, self.column)?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// Every mistake found in one topology file, in file order.
///
/// Displays as one line per mistake, `file:line:column: field: message`, the shape editors and
/// CI logs turn into clickable locations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.file, .errors))]
pub struct TopologyErrors {
    /// The file label the text was loaded from (a path, or whatever `Topology::parse` was given).
    pub file: String,
    /// Never empty.
    pub errors: Vec<TopologyError>,
}

impl TopologyErrors {
    /// A single mistake not tied to a place in the file (e.g. the file cannot be read).
    pub fn whole_file(file: impl Into<String>, message: impl Into<String>) -> Self {
        TopologyErrors {
            file: file.into(),
            errors: vec![TopologyError {
                line: 0,
                column: 0,
                field: String::new(),
                message: message.into(),
            }],
        }
    }
}

fn render(file: &str, errors: &[TopologyError]) -> String {
    let lines: Vec<String> = errors
        .iter()
        .map(|e| {
            if e.line > 0 {
                format!("{file}:{e}")
            } else {
                format!("{file}: {e}")
            }
        })
        .collect();
    lines.join("\n")
}

/// Collects mistakes while the file is read and checked, so that all of them are reported at once.
///
/// Mistakes are recorded against byte offsets (what the TOML parser's spans give) and turned into
/// line and column here, once, from the text.
pub(crate) struct Diagnostics<'t> {
    text: &'t str,
    /// Byte offset at which each line starts, for offset -> line lookups by binary search.
    line_starts: Vec<usize>,
    found: Vec<(usize, TopologyError)>,
}

impl<'t> Diagnostics<'t> {
    pub(crate) fn new(text: &'t str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Diagnostics {
            text,
            line_starts,
            found: Vec::new(),
        }
    }

    /// Records a mistake at the start of `span`.
    pub(crate) fn error(
        &mut self,
        span: &Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        let offset = span.start.min(self.text.len());
        let (line, column) = self.line_column(offset);
        // Messages are printed one per line: a stray newline would split an error in two.
        let message = message.into().replace('\n', " ");
        self.found.push((
            offset,
            TopologyError {
                line,
                column,
                field: field.into(),
                message,
            },
        ));
    }

    /// The table header (`[hub]`, `[[datacentre.spoke]]`) in force at `offset`, which is the best
    /// "field" a syntax error has: the parser cannot say which key it was reading.
    pub(crate) fn header_before(&self, offset: usize) -> String {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or("");
        before
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| l.starts_with('['))
            .map(|l| l.split('#').next().unwrap_or(l).trim().to_string())
            .unwrap_or_else(|| "(top level)".to_string())
    }

    fn line_column(&self, offset: usize) -> (usize, usize) {
        let line_index = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let start = self.line_starts.get(line_index).copied().unwrap_or(0);
        // Spans from the parser fall on character boundaries; `get` keeps a bad one harmless.
        let column = self.text.get(start..offset).map_or(1, |s| s.chars().count() + 1);
        (line_index + 1, column)
    }

    /// All mistakes, in file order, or `None` if there were none.
    pub(crate) fn finish(mut self, file: &str) -> Option<TopologyErrors> {
        if self.found.is_empty() {
            return None;
        }
        // Stable: mistakes found at the same place keep the order they were found in.
        self.found.sort_by_key(|(offset, _)| *offset);
        Some(TopologyErrors {
            file: file.to_string(),
            errors: self.found.into_iter().map(|(_, e)| e).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based_and_count_characters() {
        let text = "a = 1\nné = \"x\"\n\nb";
        let mut d = Diagnostics::new(text);
        d.error(&(0..1), "a", "first");
        let x = text.find('"').expect("test text has a quote");
        d.error(&(x..x + 1), "né", "second");
        d.error(&(text.len() - 1..text.len()), "b", "third");
        let errs = d.finish("f.toml").expect("three errors");
        let at: Vec<(usize, usize)> = errs.errors.iter().map(|e| (e.line, e.column)).collect();
        assert_eq!(at, vec![(1, 1), (2, 6), (4, 1)]);
    }

    #[test]
    fn display_prints_one_error_per_line_with_file_line_column_and_field() {
        let mut d = Diagnostics::new("x = 1\ny = 2\n");
        d.error(&(6..7), "y", "second");
        d.error(&(0..1), "x", "first");
        let errs = d.finish("t.toml").expect("two errors");
        assert_eq!(errs.to_string(), "t.toml:1:1: x: first\nt.toml:2:1: y: second");
        let io = TopologyErrors::whole_file("t.toml", "cannot read file: not found");
        assert_eq!(io.to_string(), "t.toml: cannot read file: not found");
    }

    #[test]
    fn header_before_names_the_enclosing_table() {
        let text = "[fleet]\nname = 1\n[[datacentre.spoke]] # a spoke\nname = \n";
        let d = Diagnostics::new(text);
        assert_eq!(d.header_before(text.len() - 1), "[[datacentre.spoke]]");
        assert_eq!(d.header_before(0), "(top level)");
    }
}
