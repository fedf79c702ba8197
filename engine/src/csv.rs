//! One CSV line split into cells: shared by the content realm's parser (which finds cells by
//! their spans) and the reasoner (which reads a CSV row fact's cells).

/// Splits one CSV line into cell spans (quoted cells: the span is inside the quotes).
pub fn cells(offset: usize, line: &str) -> Result<Vec<(usize, usize)>, &'static str> {
    let mut cells = Vec::new();
    let bytes = line.as_bytes();
    let mut i = 0;
    loop {
        if i < bytes.len() && bytes[i] == b'"' {
            let start = i + 1;
            let mut j = start;
            loop {
                match bytes.get(j) {
                    None => {
                        return Err("CSV: unterminated quoted cell");
                    }
                    Some(b'"') if bytes.get(j + 1) == Some(&b'"') => j += 2,
                    Some(b'"') => break,
                    Some(_) => j += 1,
                }
            }
            cells.push((offset + start, offset + j));
            i = j + 1;
            if i < bytes.len() && bytes[i] != b',' {
                return Err("CSV: text after a closing quote");
            }
        } else {
            let end = line[i..].find(',').map_or(line.len(), |k| i + k);
            let cell = &line[i..end];
            let lead = cell.len() - cell.trim_start().len();
            cells.push((offset + i + lead, offset + i + lead + cell.trim().len()));
            i = end;
        }
        if i >= bytes.len() {
            break;
        }
        i += 1; // the comma
    }
    Ok(cells)
}

/// The cells' text of a CSV line, a quoted cell's `""` read as `"`; `None` if the line is not
/// CSV.
pub fn cell_texts(line: &str) -> Option<Vec<String>> {
    let spans = cells(0, line).ok()?;
    Some(
        spans
            .into_iter()
            .map(|(s, e)| {
                let text = &line[s..e];
                if s > 0 && line.as_bytes()[s - 1] == b'"' {
                    text.replace("\"\"", "\"")
                } else {
                    text.to_string()
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_and_their_text() {
        assert_eq!(
            cells(0, r#"a,"b"x"#),
            Err("CSV: text after a closing quote")
        );
        let line = r#"a,"b,c","say ""hi""",,d "#;
        assert_eq!(
            cell_texts(line),
            Some(
                vec!["a", "b,c", r#"say "hi""#, "", "d"]
                    .into_iter()
                    .map(String::from)
                    .collect()
            )
        );
        assert_eq!(cells(10, "x,y"), Ok(vec![(10, 11), (12, 13)]));
        assert_eq!(cell_texts(r#"a,"b"#), None);
    }
}
