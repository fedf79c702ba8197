//! Deterministic fact extraction: title, headings, CSV columns, JSON keys, `key: value`
//! lines, ISO dates and numbers, each with the byte span of the text it came from (the text
//! at the span contains the value) and the chunk that holds it. Two aggregate kinds,
//! `word_count` and `row_count` (CSV), are computed over their span instead of quoted from
//! it: their value is the count of whitespace-separated words, or of CSV data rows, in the
//! text at the span ([`AGGREGATE_KINDS`]).

use super::chunk::chunk_of;
use super::parse::{Format, Parsed};

/// Most facts one document yields.
pub const FACTS_MAX: usize = 2_000;
/// Longest fact value, in bytes (longer spans are not facts).
pub const FACT_VALUE_BYTES_MAX: usize = 300;

pub use crate::agents::Fact;

/// Fact kinds whose value is computed over the span rather than found in it.
pub const AGGREGATE_KINDS: [&str; 2] = ["word_count", "row_count"];

/// The id of chunk `i` of a document.
pub fn chunk_id(document_id: &str, i: usize) -> String {
    format!("{document_id}-c{i}")
}

/// Extracts the facts of a parsed document whose chunks are `chunks`.
pub fn extract(document_id: &str, parsed: &Parsed, chunks: &[(usize, usize)]) -> Vec<Fact> {
    let text = parsed.text.as_str();
    let mut found: Vec<(&'static str, (usize, usize))> = Vec::new();
    if let Some(t) = parsed.title {
        found.push(("title", t));
    }
    found.extend(parsed.headings.iter().map(|h| ("heading", h.span)));
    found.extend(parsed.csv_columns.iter().map(|s| ("csv_column", *s)));
    found.extend(parsed.json_keys.iter().map(|s| ("json_key", *s)));
    if !matches!(parsed.format, Format::Json | Format::Csv) {
        key_values(text, &mut found);
    }
    let dates = dates(text);
    numbers(text, &dates, &mut found);
    found.extend(dates.into_iter().map(|d| ("date", d)));
    found.sort_by_key(|(kind, (s, e))| (*s, *e, *kind));
    found.dedup();
    let mut aggregates = vec![("word_count", (0, text.len()), words_in(text))];
    if let (Some(rows), Some(span)) = (parsed.csv_rows, parsed.csv_rows_span) {
        aggregates.push(("row_count", span, rows));
    }
    let mut out = Vec::new();
    for (kind, (s, e)) in found {
        if out.len() + aggregates.len() >= FACTS_MAX {
            break;
        }
        if e <= s
            || e - s > FACT_VALUE_BYTES_MAX
            || !text.is_char_boundary(s)
            || !text.is_char_boundary(e)
        {
            continue;
        }
        let Some(c) = chunk_of(chunks, s) else {
            continue;
        };
        out.push(Fact {
            fact_id: format!("{document_id}-f{}", out.len()),
            kind: kind.to_string(),
            value: text[s..e].to_string(),
            document_id: document_id.to_string(),
            chunk_id: chunk_id(document_id, c),
            span: [s, e],
        });
    }
    for (kind, (s, e), count) in aggregates {
        let Some(c) = chunk_of(chunks, s) else {
            continue;
        };
        out.push(Fact {
            fact_id: format!("{document_id}-f{}", out.len()),
            kind: kind.to_string(),
            value: count.to_string(),
            document_id: document_id.to_string(),
            chunk_id: chunk_id(document_id, c),
            span: [s, e],
        });
    }
    out
}

/// Whitespace-separated words in `text` (what a `word_count` fact counts).
pub fn words_in(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// `Key: value` lines (a short key of letters, digits, spaces, `_` or `-`).
fn key_values(text: &str, out: &mut Vec<(&'static str, (usize, usize))>) {
    let mut offset = 0;
    for raw in text.split_inclusive('\n') {
        let line = raw.trim_end_matches(['\n', '\r']);
        let lead = line.len() - line.trim_start().len();
        let body = line.trim();
        if let Some(colon) = body.find(": ") {
            let key = &body[..colon];
            let value = body[colon + 2..].trim();
            let key_ok = !key.is_empty()
                && key.len() <= 40
                && key.chars().next().is_some_and(char::is_alphabetic)
                && key
                    .chars()
                    .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '_' | '-'));
            if key_ok && !value.is_empty() {
                out.push(("key_value", (offset + lead, offset + lead + body.len())));
            }
        }
        offset += raw.len();
    }
}

/// ISO dates `YYYY-MM-DD` with a valid month and day.
fn dates(text: &str) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    let mut i = 0;
    while i + 10 <= b.len() {
        let shape = (0..4).all(|k| digit(i + k))
            && b[i + 4] == b'-'
            && digit(i + 5)
            && digit(i + 6)
            && b[i + 7] == b'-'
            && digit(i + 8)
            && digit(i + 9);
        let bounded = (i == 0 || !b[i - 1].is_ascii_alphanumeric())
            && b.get(i + 10).is_none_or(|c| !c.is_ascii_alphanumeric());
        if shape && bounded {
            let month = (b[i + 5] - b'0') * 10 + (b[i + 6] - b'0');
            let day = (b[i + 8] - b'0') * 10 + (b[i + 9] - b'0');
            if (1..=12).contains(&month) && (1..=31).contains(&day) {
                out.push((i, i + 10));
                i += 10;
                continue;
            }
        }
        i += 1;
    }
    out
}

/// Numbers: digits with `,` thousands and one `.` decimal part, an optional leading `$`
/// or `€` and trailing `%`; not inside dates or words.
fn numbers(text: &str, dates: &[(usize, usize)], out: &mut Vec<(&'static str, (usize, usize))>) {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit()
            || (i > 0
                && (b[i - 1].is_ascii_alphanumeric()
                    || b[i - 1] == b'.'
                    || b[i - 1] == b'-' && i > 1 && b[i - 2].is_ascii_digit()))
        {
            i += 1;
            continue;
        }
        let mut j = i;
        let mut seen_dot = false;
        while j < b.len() {
            let c = b[j];
            let next_digit = b.get(j + 1).is_some_and(u8::is_ascii_digit);
            if c.is_ascii_digit()
                || (c == b',' && next_digit)
                || (c == b'.' && !seen_dot && next_digit)
            {
                seen_dot |= c == b'.';
                j += 1;
            } else {
                break;
            }
        }
        if b.get(j)
            .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
        {
            i = j;
            continue;
        }
        let mut start = i;
        if start > 0 && b[start - 1] == b'$' {
            start -= 1;
        } else if text[..start].ends_with('€') {
            start -= '€'.len_utf8();
        }
        let end = if b.get(j) == Some(&b'%') { j + 1 } else { j };
        if !dates.iter().any(|(s, e)| i >= *s && i < *e) {
            out.push(("number", (start, end)));
        }
        i = j.max(i + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{chunk::chunk, parse::parse};
    use super::*;

    fn facts(format: Format, text: &str) -> Vec<Fact> {
        let parsed = parse(format, text.as_bytes()).unwrap();
        extract("D", &parsed, &chunk(&parsed.text))
    }

    fn kinds<'a>(facts: &'a [Fact], kind: &str) -> Vec<&'a str> {
        facts
            .iter()
            .filter(|f| f.kind == kind)
            .map(|f| f.value.as_str())
            .collect()
    }

    #[test]
    fn markdown_facts_with_spans() {
        let text = "# Acme Report\n\nOwner: Jane Doe\nDate of review: 2026-03-15\n\n## Sales\nRevenue was $1,250.50 up 12% from 900 units in 2025-13-01.\n";
        let f = facts(Format::Md, text);
        assert_eq!(kinds(&f, "title"), ["Acme Report"]);
        assert_eq!(kinds(&f, "heading"), ["Acme Report", "Sales"]);
        assert_eq!(
            kinds(&f, "key_value"),
            ["Owner: Jane Doe", "Date of review: 2026-03-15"]
        );
        assert_eq!(kinds(&f, "date"), ["2026-03-15"]);
        assert!(kinds(&f, "number").contains(&"$1,250.50"));
        assert!(kinds(&f, "number").contains(&"12%"));
        assert!(kinds(&f, "number").contains(&"900"));
        assert_eq!(kinds(&f, "word_count"), ["22"]);
        for fact in f
            .iter()
            .filter(|f| !AGGREGATE_KINDS.contains(&f.kind.as_str()))
        {
            assert_eq!(&text[fact.span[0]..fact.span[1]], fact.value, "{fact:?}");
            assert!(fact.fact_id.starts_with("D-f") && fact.chunk_id.starts_with("D-c"));
        }
        let ids: std::collections::BTreeSet<_> = f.iter().map(|x| &x.fact_id).collect();
        assert_eq!(ids.len(), f.len());
    }

    #[test]
    fn csv_and_json_facts() {
        let f = facts(Format::Csv, "sku,price\nA1,10\nB2,20\n");
        assert_eq!(kinds(&f, "csv_column"), ["sku", "price"]);
        assert_eq!(kinds(&f, "row_count"), ["2"]);
        let rows = f.iter().find(|f| f.kind == "row_count").unwrap();
        assert_eq!(rows.span, [10, 21], "the two data rows");
        assert_eq!(kinds(&f, "word_count"), ["3"]);
        let f = facts(Format::Json, r#"{"customer": "Initech", "total": 42}"#);
        assert_eq!(kinds(&f, "json_key"), ["customer", "total"]);
        assert_eq!(kinds(&f, "number"), ["42"]);
    }
}
