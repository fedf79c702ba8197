//! Parsers: bytes of a file -> UTF-8 text plus the structure facts are drawn from. Text formats
//! (txt, md, csv, json) keep their bytes as the text, so a span into the text is a span into
//! the file; HTML is reduced to its visible text (spans point into that text).

use serde::{Deserialize, Serialize};

/// Largest file the parsers accept, 16 MiB.
pub const PARSE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// A parse failure: a stable code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub code: &'static str,
    pub message: String,
}

impl ParseError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Formats the realm reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Txt,
    Md,
    Csv,
    Json,
    Html,
    Pdf,
}

impl Format {
    pub fn media_type(self) -> &'static str {
        match self {
            Self::Txt => "text/plain",
            Self::Md => "text/markdown",
            Self::Csv => "text/csv",
            Self::Json => "application/json",
            Self::Html => "text/html",
            Self::Pdf => "application/pdf",
        }
    }

    /// Whether the text facts point into is derived from the file (not the file itself).
    pub fn derives_text(self) -> bool {
        matches!(self, Self::Html | Self::Pdf)
    }

    /// The format from the file name, else the media type, else the first bytes.
    pub fn detect(
        filename: &str,
        media_type: Option<&str>,
        bytes: &[u8],
    ) -> Result<Self, ParseError> {
        let ext = filename
            .rsplit_once('.')
            .map(|(_, e)| e.to_ascii_lowercase());
        let by_ext = match ext.as_deref() {
            Some("txt" | "text" | "log") => Some(Self::Txt),
            Some("md" | "markdown") => Some(Self::Md),
            Some("csv") => Some(Self::Csv),
            Some("json") => Some(Self::Json),
            Some("html" | "htm") => Some(Self::Html),
            Some("pdf") => Some(Self::Pdf),
            _ => None,
        };
        if let Some(f) = by_ext {
            return Ok(f);
        }
        let by_type = match media_type.map(|m| m.split(';').next().unwrap_or("").trim()) {
            Some("text/plain") => Some(Self::Txt),
            Some("text/markdown") => Some(Self::Md),
            Some("text/csv") => Some(Self::Csv),
            Some("application/json") => Some(Self::Json),
            Some("text/html") => Some(Self::Html),
            Some("application/pdf") => Some(Self::Pdf),
            _ => None,
        };
        if let Some(f) = by_type {
            return Ok(f);
        }
        let head = String::from_utf8_lossy(&bytes[..bytes.len().min(256)]).to_ascii_lowercase();
        let trimmed = head.trim_start();
        if bytes.starts_with(b"%PDF-") {
            Ok(Self::Pdf)
        } else if trimmed.starts_with("<!doctype html") || trimmed.starts_with("<html") {
            Ok(Self::Html)
        } else if ext.is_none() && (trimmed.starts_with('{') || trimmed.starts_with('[')) {
            Ok(Self::Json)
        } else if ext.is_none() {
            Ok(Self::Txt)
        } else {
            Err(ParseError::new(
                "unsupported_format",
                format!("{filename:?}: only txt, md, csv, json, html and pdf files are supported"),
            ))
        }
    }
}

/// A heading found in the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heading {
    pub level: u8,
    pub span: (usize, usize),
}

/// What a parser found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    pub format: Format,
    pub text: String,
    pub title: Option<(usize, usize)>,
    pub headings: Vec<Heading>,
    /// CSV: header cells and the number of data rows.
    pub csv_columns: Vec<(usize, usize)>,
    pub csv_rows: Option<u64>,
    /// CSV: the span the rows were counted over (the data rows, or the header when none).
    pub csv_rows_span: Option<(usize, usize)>,
    /// CSV: the first [`CSV_ROW_SPANS_MAX`] data rows (each a line, without its line break).
    pub csv_row_spans: Vec<(usize, usize)>,
    /// JSON: spans of object keys (inside the quotes), in document order.
    pub json_keys: Vec<(usize, usize)>,
}

impl Parsed {
    fn new(format: Format, text: String) -> Self {
        Self {
            format,
            text,
            title: None,
            headings: Vec::new(),
            csv_columns: Vec::new(),
            csv_rows: None,
            csv_rows_span: None,
            csv_row_spans: Vec::new(),
            json_keys: Vec::new(),
        }
    }
}

/// Parses a file.
pub fn parse(format: Format, bytes: &[u8]) -> Result<Parsed, ParseError> {
    if bytes.is_empty() {
        return Err(ParseError::new("empty_file", "the file is empty"));
    }
    if bytes.len() > PARSE_BYTES_MAX {
        return Err(ParseError::new(
            "file_too_large",
            format!(
                "{} bytes exceeds the parser limit of {PARSE_BYTES_MAX} bytes",
                bytes.len()
            ),
        ));
    }
    if format == Format::Pdf {
        return parse_pdf(bytes);
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        ParseError::new(
            "unreadable_file",
            format!(
                "not UTF-8 text (invalid byte at offset {})",
                e.valid_up_to()
            ),
        )
    })?;
    if text.bytes().filter(|b| *b == 0 || (*b < 9)).count() > 0 {
        return Err(ParseError::new(
            "unreadable_file",
            "binary content (control bytes) in a text file",
        ));
    }
    match format {
        Format::Txt => Ok(parse_txt(text)),
        Format::Md => Ok(parse_md(text)),
        Format::Csv => parse_csv(text),
        Format::Json => parse_json(text),
        Format::Html => Ok(parse_html(text)),
        Format::Pdf => parse_pdf(bytes),
    }
}

/// Lines with their byte offsets (without the line break).
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut offset = 0;
    text.split_inclusive('\n').map(move |raw| {
        let start = offset;
        offset += raw.len();
        (start, raw.trim_end_matches(['\n', '\r']))
    })
}

fn trimmed_span(start: usize, s: &str) -> Option<(usize, usize)> {
    let lead = s.len() - s.trim_start().len();
    let t = s.trim();
    (!t.is_empty()).then(|| (start + lead, start + lead + t.len()))
}

fn parse_txt(text: &str) -> Parsed {
    let mut p = Parsed::new(Format::Txt, text.to_string());
    p.title = lines(text).find_map(|(o, l)| trimmed_span(o, l));
    p
}

fn parse_md(text: &str) -> Parsed {
    let mut p = Parsed::new(Format::Md, text.to_string());
    let mut in_code = false;
    for (offset, line) in lines(text) {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        let hashes = line.bytes().take_while(|b| *b == b'#').count();
        if (1..=6).contains(&hashes)
            && line[hashes..].starts_with(' ')
            && let Some(span) = trimmed_span(offset + hashes, &line[hashes..])
        {
            if hashes == 1 && p.title.is_none() {
                p.title = Some(span);
            }
            p.headings.push(Heading {
                level: hashes as u8,
                span,
            });
        }
    }
    if p.title.is_none() {
        p.title = lines(text).find_map(|(o, l)| trimmed_span(o, l));
    }
    p
}

/// Most CSV data rows whose spans [`Parsed::csv_row_spans`] keeps: no document yields more
/// facts than this anyway.
pub const CSV_ROW_SPANS_MAX: usize = super::facts::FACTS_MAX;

/// Splits one CSV line into cell spans ([`crate::csv::cells`]).
fn csv_cells(offset: usize, line: &str) -> Result<Vec<(usize, usize)>, ParseError> {
    crate::csv::cells(offset, line).map_err(|why| ParseError::new("corrupt_file", why))
}

fn parse_csv(text: &str) -> Result<Parsed, ParseError> {
    let mut p = Parsed::new(Format::Csv, text.to_string());
    let mut rows = lines(text).filter(|(_, l)| !l.trim().is_empty());
    let Some((offset, header)) = rows.next() else {
        return Err(ParseError::new("empty_file", "the CSV file has no header"));
    };
    let header_cells = csv_cells(offset, header)?;
    // Every row has as many cells as the header, named or not.
    let width = header_cells.len();
    p.csv_columns = header_cells.into_iter().filter(|(s, e)| e > s).collect();
    let mut count = 0;
    let mut rows_span = (offset, offset + header.len());
    for (offset, row) in rows {
        let cells = csv_cells(offset, row)?;
        if cells.len() != width {
            return Err(ParseError::new(
                "corrupt_file",
                format!(
                    "CSV: row {} has {} cells, the header has {width}",
                    count + 2,
                    cells.len()
                ),
            ));
        }
        if p.csv_row_spans.len() < CSV_ROW_SPANS_MAX
            && let Some(span) = trimmed_span(offset, row)
        {
            p.csv_row_spans.push(span);
        }
        rows_span = if count == 0 {
            (offset, offset + row.len())
        } else {
            (rows_span.0, offset + row.len())
        };
        count += 1;
    }
    p.csv_rows = Some(count);
    p.csv_rows_span = Some(rows_span);
    // A CSV file has no title: its first column's name is not one.
    Ok(p)
}

fn parse_json(text: &str) -> Result<Parsed, ParseError> {
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map_err(|e| ParseError::new("corrupt_file", format!("JSON: {e}")))?;
    let mut p = Parsed::new(Format::Json, text.to_string());
    // The text is valid JSON: scan its strings; a string followed by ':' is a key.
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'"' {
            let start = i + 1;
            let mut j = start;
            while j < bytes.len() && bytes[j] != b'"' {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            let end = j.min(bytes.len());
            let mut k = end + 1;
            while k < bytes.len() && bytes[k].is_ascii_whitespace() {
                k += 1;
            }
            if bytes.get(k) == Some(&b':') && end > start {
                p.json_keys.push((start, end));
            }
            i = end + 1;
        } else {
            i += 1;
        }
    }
    p.title = p.json_keys.first().copied();
    Ok(p)
}

/// PDF to text with `pdf-extract`, isolated: the parser is known to panic on many real files,
/// so a panic is caught and reported as a corrupt file (the step also runs on a blocking
/// thread under the step timeout, so a hang costs one thread, never the server).
fn parse_pdf(bytes: &[u8]) -> Result<Parsed, ParseError> {
    if !bytes.starts_with(b"%PDF-") {
        return Err(ParseError::new(
            "corrupt_file",
            "not a PDF file (no %PDF- header)",
        ));
    }
    let extracted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pdf_extract::extract_text_from_mem(bytes)
    }));
    let text = match extracted {
        Ok(Ok(text)) => text,
        Ok(Err(e)) => return Err(ParseError::new("corrupt_file", format!("PDF: {e}"))),
        Err(_) => {
            return Err(ParseError::new(
                "corrupt_file",
                "PDF: the parser could not read this file",
            ));
        }
    };
    // Control characters other than line breaks and tabs are dropped.
    let text: String = text
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
        .collect();
    if text.trim().is_empty() {
        return Err(ParseError::new("empty_file", "the PDF holds no text"));
    }
    let mut p = parse_txt(&text);
    p.format = Format::Pdf;
    Ok(p)
}

/// HTML to visible text: tags dropped (block tags become line breaks), `script`/`style`
/// skipped, the common entities decoded; `<title>` and `<h1>`-`<h6>` recorded as spans of
/// the text.
fn parse_html(html: &str) -> Parsed {
    let mut text = String::with_capacity(html.len() / 2);
    let mut title = None;
    let mut headings = Vec::new();
    let mut open: Option<(u8, usize)> = None; // heading level (0 = title), text start
    let mut skip: Option<&str> = None;
    let mut i = 0;
    let bytes = html.as_bytes();
    while i < bytes.len() {
        if bytes[i] == b'<' {
            // The tag runs to its `>`, or to the end of a file that never closes it.
            let (body_end, end) = html[i..]
                .find('>')
                .map_or((html.len(), html.len()), |k| (i + k, i + k + 1));
            let tag = html[i + 1..body_end].trim().to_ascii_lowercase();
            let closing = tag.starts_with('/');
            let name: String = tag
                .trim_start_matches('/')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            i = end;
            if let Some(s) = skip {
                if closing && name == s {
                    skip = None;
                }
                continue;
            }
            match (closing, name.as_str()) {
                (false, "script" | "style") => {
                    skip = Some(if name == "script" { "script" } else { "style" })
                }
                (false, "title") => open = Some((0, text.len())),
                (false, h)
                    if h.len() == 2
                        && h.starts_with('h')
                        && (b'1'..=b'6').contains(&h.as_bytes()[1]) =>
                {
                    if !text.ends_with('\n') && !text.is_empty() {
                        text.push('\n');
                    }
                    open = Some((h.as_bytes()[1] - b'0', text.len()));
                }
                (true, n) => {
                    if let Some((level, start)) = open {
                        let matches = (level == 0 && n == "title")
                            || (n.len() == 2 && n.as_bytes()[1] == b'0' + level && level > 0);
                        if matches {
                            if let Some(span) = trimmed_span(start, &text[start..]) {
                                if level == 0 {
                                    title = Some(span);
                                } else {
                                    if level == 1 && title.is_none() {
                                        title = Some(span);
                                    }
                                    headings.push(Heading { level, span });
                                }
                            }
                            open = None;
                            text.push('\n');
                        }
                    }
                    if matches!(
                        n,
                        "p" | "div"
                            | "li"
                            | "tr"
                            | "br"
                            | "section"
                            | "article"
                            | "ul"
                            | "ol"
                            | "table"
                    ) {
                        text.push('\n');
                    }
                }
                (false, "br" | "p" | "div" | "li" | "tr") => text.push('\n'),
                _ => {}
            }
        } else {
            let end = html[i..].find('<').map_or(html.len(), |k| i + k);
            if skip.is_none() {
                push_decoded(&mut text, &html[i..end]);
            }
            i = end;
        }
    }
    let mut p = Parsed::new(Format::Html, text);
    p.title = title;
    p.headings = headings;
    p
}

fn push_decoded(out: &mut String, s: &str) {
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let tail = &rest[amp..];
        let semi = tail.find(';').filter(|k| *k <= 8);
        let decoded = semi.and_then(|k| match &tail[..=k] {
            "&amp;" => Some('&'),
            "&lt;" => Some('<'),
            "&gt;" => Some('>'),
            "&quot;" => Some('"'),
            "&#39;" | "&apos;" => Some('\''),
            "&nbsp;" => Some(' '),
            _ => None,
        });
        match (decoded, semi) {
            (Some(c), Some(k)) => {
                out.push(c);
                rest = &tail[k + 1..];
            }
            _ => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(p: &Parsed, span: (usize, usize)) -> &str {
        &p.text[span.0..span.1]
    }

    #[test]
    fn markdown_title_and_headings() {
        let p = parse(
            Format::Md,
            b"# Quarterly report\n\nIntro.\n\n## Revenue\n```\n# not a heading\n```\n",
        )
        .unwrap();
        assert_eq!(at(&p, p.title.unwrap()), "Quarterly report");
        let names: Vec<_> = p.headings.iter().map(|h| at(&p, h.span)).collect();
        assert_eq!(names, ["Quarterly report", "Revenue"]);
    }

    #[test]
    fn csv_columns_rows_and_errors() {
        let p = parse(
            Format::Csv,
            b"name,\"unit price\",qty\nwidget,2.50,4\ngizmo,3,1\n",
        )
        .unwrap();
        let cols: Vec<_> = p.csv_columns.iter().map(|s| at(&p, *s)).collect();
        assert_eq!(cols, ["name", "unit price", "qty"]);
        assert_eq!(p.csv_rows, Some(2));
        assert_eq!(
            parse(Format::Csv, b"a,b\n1,2,3\n").unwrap_err().code,
            "corrupt_file"
        );
        assert_eq!(
            parse(Format::Csv, b"a,\"b\n").unwrap_err().code,
            "corrupt_file"
        );
        let rows: Vec<_> = p.csv_row_spans.iter().map(|s| at(&p, *s)).collect();
        assert_eq!(rows, ["widget,2.50,4", "gizmo,3,1"]);
        assert_eq!(p.title, None, "a CSV file has no title");
        // A header cell without a name still counts: its rows have as many cells.
        let p = parse(Format::Csv, b"id,,note\n1,,x\n2,3,y\n").unwrap();
        let cols: Vec<_> = p.csv_columns.iter().map(|s| at(&p, *s)).collect();
        assert_eq!((cols, p.csv_rows), (vec!["id", "note"], Some(2)));
        assert_eq!(
            parse(Format::Csv, b"id,,note\n1,2\n").unwrap_err().code,
            "corrupt_file"
        );
    }

    #[test]
    fn json_keys_and_corrupt_json() {
        let p = parse(
            Format::Json,
            br#"{"name": "x", "nested": {"inner\"key": 1}, "list": ["not:key"]}"#,
        )
        .unwrap();
        let keys: Vec<_> = p.json_keys.iter().map(|s| at(&p, *s)).collect();
        assert_eq!(keys, ["name", "nested", "inner\\\"key", "list"]);
        assert_eq!(
            parse(Format::Json, b"{\"a\": ").unwrap_err().code,
            "corrupt_file"
        );
    }

    #[test]
    fn html_visible_text() {
        let html = b"<html><head><title>The Title</title><style>p{}</style></head><body><h1>Main &amp; more</h1><p>Body text.</p><script>var x = '<h2>no</h2>';</script><h2>Second</h2></body></html>";
        let p = parse(Format::Html, html).unwrap();
        assert_eq!(at(&p, p.title.unwrap()), "The Title");
        let names: Vec<_> = p.headings.iter().map(|h| at(&p, h.span)).collect();
        assert_eq!(names, ["Main & more", "Second"]);
        assert!(p.text.contains("Body text."));
        assert!(!p.text.contains("var x"));
    }

    #[test]
    fn pdf_text_is_extracted() {
        let pdf = crate::testing::minimal_pdf(&["Saffron Ledger", "Total: 77 coins"]);
        assert_eq!(Format::detect("scan", None, &pdf).unwrap(), Format::Pdf);
        let p = parse(Format::Pdf, &pdf).unwrap();
        assert!(p.text.contains("Saffron Ledger"), "{:?}", p.text);
        assert_eq!(at(&p, p.title.unwrap()), "Saffron Ledger");
        // Truncated in the middle: refused, not a crash.
        let cut = &pdf[..pdf.len() / 2];
        assert_eq!(parse(Format::Pdf, cut).unwrap_err().code, "corrupt_file");
    }

    #[test]
    fn bad_inputs_fail_cleanly() {
        assert_eq!(parse(Format::Txt, b"").unwrap_err().code, "empty_file");
        assert_eq!(
            parse(Format::Txt, &[0xff, 0xfe, 0x00, 0x41])
                .unwrap_err()
                .code,
            "unreadable_file"
        );
        assert_eq!(
            parse(Format::Txt, b"abc\x00def").unwrap_err().code,
            "unreadable_file"
        );
        assert_eq!(
            Format::detect("x.exe", None, b"MZ").unwrap_err().code,
            "unsupported_format"
        );
        assert_eq!(
            Format::detect("notes", None, b"{\"a\":1}").unwrap(),
            Format::Json
        );
        assert_eq!(
            Format::detect("page", Some("text/html; charset=utf-8"), b"").unwrap(),
            Format::Html
        );
    }
}
