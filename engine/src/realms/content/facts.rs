//! Deterministic fact extraction: title, headings, sentences, CSV columns and rows, JSON
//! keys, `key: value` lines, ISO dates and numbers, each with the byte span of the text it
//! came from (the text at the span contains the value) and the chunk that holds it. Two
//! aggregate kinds, `word_count` and `row_count` (CSV), are computed over their span instead
//! of quoted from it: their value is the count of whitespace-separated words, or of CSV data
//! rows, in the text at the span ([`AGGREGATE_KINDS`]).

use super::chunk::chunk_of;
use super::parse::{Format, Parsed};

/// Most facts one document yields.
pub const FACTS_MAX: usize = 2_000;
/// Longest fact value, in bytes (longer spans are not facts).
pub const FACT_VALUE_BYTES_MAX: usize = 300;
/// Fewest words a sentence fact has (shorter runs are labels, not statements).
pub const SENTENCE_WORDS_MIN: usize = 3;

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
    found.extend(parsed.csv_row_spans.iter().map(|s| ("csv_row", *s)));
    found.extend(parsed.json_keys.iter().map(|s| ("json_key", *s)));
    if !matches!(parsed.format, Format::Json | Format::Csv) {
        key_values(text, &mut found);
        let labels: std::collections::BTreeSet<_> = found.iter().map(|(_, span)| *span).collect();
        for span in sentences(text, parsed.format == Format::Md) {
            if !labels.contains(&span) {
                found.push(("sentence", span));
            }
        }
    }
    let dates = dates(text);
    if parsed.format == Format::Csv {
        // Numbers within cells: a comma between two cells never joins them into one.
        let header = parsed.csv_columns.iter().copied();
        for cell in header.chain(
            parsed
                .csv_row_spans
                .iter()
                .flat_map(|&(s, e)| crate::csv::cells(s, &text[s..e]).unwrap_or_default()),
        ) {
            numbers(text, cell, &dates, &mut found);
        }
    } else {
        numbers(text, (0, text.len()), &dates, &mut found);
    }
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
        if is_key_value(line) {
            let lead = line.len() - line.trim_start().len();
            out.push((
                "key_value",
                (offset + lead, offset + lead + line.trim().len()),
            ));
        }
        offset += raw.len();
    }
}

/// Whether a line is a `key: value` fact.
fn is_key_value(line: &str) -> bool {
    let body = line.trim();
    let Some((key, value)) = body.split_once(": ") else {
        return false;
    };
    !key.is_empty()
        && key.len() <= 40
        && key.chars().next().is_some_and(char::is_alphabetic)
        && key
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '_' | '-'))
        && !value.trim().is_empty()
}

/// Sentences of prose: paragraphs (runs of lines up to a blank line) and list items, split
/// after `.`, `!` or `?` followed by a space and a capital letter, digit or quote; headings,
/// `key: value` lines, table rows and (in markdown) code blocks are not prose. Sentences of
/// fewer than [`SENTENCE_WORDS_MIN`] words are left out.
fn sentences(text: &str, markdown: bool) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut paragraph: Option<(usize, usize)> = None;
    let mut in_code = false;
    let mut offset = 0;
    let flush = |paragraph: &mut Option<(usize, usize)>, out: &mut Vec<(usize, usize)>| {
        if let Some((s, e)) = paragraph.take() {
            split_sentences(text, s, e, out);
        }
    };
    for raw in text.split_inclusive('\n') {
        let line = raw.trim_end_matches(['\n', '\r']);
        let start = offset;
        offset += raw.len();
        let body = line.trim();
        if markdown && body.starts_with("```") {
            in_code = !in_code;
            flush(&mut paragraph, &mut out);
            continue;
        }
        let heading = markdown && body.starts_with('#');
        if in_code || body.is_empty() || heading || body.starts_with('|') || is_key_value(line) {
            flush(&mut paragraph, &mut out);
            continue;
        }
        let lead = line.len() - line.trim_start().len();
        let marker = list_marker(body);
        let (s, e) = (start + lead + marker, start + lead + body.len());
        if marker > 0 {
            flush(&mut paragraph, &mut out);
        }
        paragraph = Some(match paragraph {
            Some((ps, _)) => (ps, e),
            None => (s, e),
        });
    }
    flush(&mut paragraph, &mut out);
    out
}

/// Bytes of a list item's marker and the spaces after it (`- `, `* `, `+ `, `1. `, `2) `).
fn list_marker(body: &str) -> usize {
    let b = body.as_bytes();
    let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    let marker = match b.first() {
        Some(b'-' | b'*' | b'+') => 1,
        Some(_) if (1..=3).contains(&digits) && matches!(b.get(digits), Some(b'.' | b')')) => {
            digits + 1
        }
        _ => return 0,
    };
    if b.get(marker) != Some(&b' ') {
        return 0;
    }
    marker + body[marker..].len() - body[marker..].trim_start().len()
}

/// Splits the paragraph at `text[s..e]` into sentences.
fn split_sentences(text: &str, s: usize, e: usize, out: &mut Vec<(usize, usize)>) {
    let b = text.as_bytes();
    let mut push = |from: usize, to: usize| {
        let piece = &text[from..to];
        let lead = piece.len() - piece.trim_start().len();
        let t = piece.trim();
        if words_in(t) as usize >= SENTENCE_WORDS_MIN {
            out.push((from + lead, from + lead + t.len()));
        }
    };
    let mut from = s;
    let mut i = s;
    while i < e {
        if matches!(b[i], b'.' | b'!' | b'?')
            && b.get(i + 1).is_some_and(u8::is_ascii_whitespace)
            && i + 1 < e
        {
            let next = text[i + 1..e].trim_start();
            if next
                .chars()
                .next()
                .is_some_and(|c| c.is_uppercase() || c.is_ascii_digit() || c == '"')
            {
                push(from, i + 1);
                from = i + 1;
            }
        }
        i += 1;
    }
    if from < e {
        push(from, e);
    }
}

/// ISO dates `YYYY-MM-DD` with a valid month and day, in text order, none overlapping.
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

/// Numbers in `text[region]`: digits with `,` thousands separators (a first group of one
/// to three digits, then groups of exactly three) and one `.` decimal part, an optional
/// leading `$` or `€` and trailing `%`; not inside dates or words.
fn numbers(
    text: &str,
    region: (usize, usize),
    dates: &[(usize, usize)],
    out: &mut Vec<(&'static str, (usize, usize))>,
) {
    let (from, to) = region;
    let b = &text.as_bytes()[..to];
    let digit_at = |k: usize| b.get(k).is_some_and(u8::is_ascii_digit);
    let mut i = from;
    while i < to {
        if !b[i].is_ascii_digit()
            || (i > from
                && (b[i - 1].is_ascii_alphanumeric()
                    || b[i - 1] == b'.'
                    || b[i - 1] == b'-' && i > from + 1 && b[i - 2].is_ascii_digit()))
        {
            i += 1;
            continue;
        }
        let mut j = i;
        let mut seen_dot = false;
        // Digits in the current group, and whether a separator was seen.
        let mut group = 0;
        let mut grouped = false;
        while j < to {
            let c = b[j];
            if c.is_ascii_digit() {
                group += 1;
                j += 1;
            } else if c == b','
                && !seen_dot
                && (if grouped {
                    group == 3
                } else {
                    (1..=3).contains(&group)
                })
                && (1..=3).all(|k| digit_at(j + k))
                && !digit_at(j + 4)
            {
                grouped = true;
                group = 0;
                j += 1;
            } else if c == b'.' && !seen_dot && digit_at(j + 1) {
                seen_dot = true;
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
        if start > from && b[start - 1] == b'$' {
            start -= 1;
        } else if text[from..start].ends_with('€') {
            start -= '€'.len_utf8();
        }
        let end = if b.get(j) == Some(&b'%') { j + 1 } else { j };
        // Dates are in text order and never overlap: only the last one starting at or
        // before `i` can hold it (a linear scan made a text of dates and numbers quadratic).
        let in_date = dates[..dates.partition_point(|(s, _)| *s <= i)]
            .last()
            .is_some_and(|(_, e)| i < *e);
        if !in_date {
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
        assert_eq!(kinds(&f, "csv_row"), ["A1,10", "B2,20"]);
        assert_eq!(kinds(&f, "title"), Vec::<&str>::new());
        // Numbers are read cell by cell: the comma between two cells joins nothing, while a
        // quoted cell's thousands separator does.
        let f = facts(
            Format::Csv,
            "region,revenue,units\nnorth,1200,30\nsouth,\"1,500\",4\n",
        );
        assert_eq!(kinds(&f, "number"), ["1200", "30", "1,500", "4"]);
        assert_eq!(kinds(&f, "csv_row"), ["north,1200,30", "south,\"1,500\",4"]);
        let f = facts(Format::Json, r#"{"customer": "Initech", "total": 42}"#);
        assert_eq!(kinds(&f, "json_key"), ["customer", "total"]);
        assert_eq!(kinds(&f, "number"), ["42"]);
    }

    #[test]
    fn numbers_group_thousands_by_three() {
        let f = facts(
            Format::Txt,
            "n\n1200,30 and 12,34 and 1,250,000.5 and $1,250.50 and 1,2345 and 3.14.\n\
             On 2026-03-15 we sold 7, then 2026-04-01 and 2026-05-02 8 times.\n",
        );
        assert_eq!(
            kinds(&f, "date"),
            ["2026-03-15", "2026-04-01", "2026-05-02"]
        );
        assert_eq!(
            kinds(&f, "number"),
            [
                "1200",
                "30",
                "12",
                "34",
                "1,250,000.5",
                "$1,250.50",
                "1",
                "2345",
                "3.14",
                "7",
                "8"
            ]
        );
    }

    #[test]
    fn sentences_of_prose_only() {
        let text = "# Quarterly report\n\nOwner: Grace Hopper\n\nRevenue grew 12% to 4.2 million \
                    euros. The largest customer,\nInitech, renewed for three years! See e.g. the \
                    annex.\nIntro only.\n\n- Supplier delays may push the launch.\n2. Hiring is \
                    on track\n\n| a | table row here |\n```\nlet code = \"not a sentence\";\n```\n";
        let f = facts(Format::Md, text);
        assert_eq!(
            kinds(&f, "sentence"),
            [
                "Revenue grew 12% to 4.2 million euros.",
                "The largest customer,\nInitech, renewed for three years!",
                "See e.g. the annex.",
                "Supplier delays may push the launch.",
                "Hiring is on track",
            ]
        );
        for fact in f.iter().filter(|f| f.kind == "sentence") {
            assert_eq!(&text[fact.span[0]..fact.span[1]], fact.value, "{fact:?}");
        }
        // A plain text file's first line is its title, not also a sentence.
        let f = facts(
            Format::Txt,
            "Meeting notes of today\n\nWe agreed on the plan.\n",
        );
        assert_eq!(kinds(&f, "title"), ["Meeting notes of today"]);
        assert_eq!(kinds(&f, "sentence"), ["We agreed on the plan."]);
    }
}
