//! Chunking: the text cut into pieces of at most [`CHUNK_BYTES_MAX`] bytes at paragraph, then
//! line, then word boundaries (a word longer than the limit is cut at a character boundary).
//! Each chunk is a byte range of the text; together they cover every non-blank byte.

/// Largest chunk, in bytes.
pub const CHUNK_BYTES_MAX: usize = 1_000;
/// Most chunks one document may have.
pub const CHUNKS_MAX: usize = 20_000;

/// Byte ranges `[start, end)` of the chunks of `text`, in order.
pub fn chunk(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let (mut start, mut end) = (None::<usize>, 0usize);
    let flush = |start: &mut Option<usize>, end: usize, out: &mut Vec<(usize, usize)>| {
        if let Some(s) = start.take() {
            let piece = &text[s..end];
            let lead = piece.len() - piece.trim_start().len();
            let t = piece.trim();
            if !t.is_empty() {
                out.push((s + lead, s + lead + t.len()));
            }
        }
    };
    for (offset, unit) in units(text) {
        let unit_end = offset + unit.len();
        match start {
            Some(s) if unit_end - s > CHUNK_BYTES_MAX => {
                flush(&mut start, end, &mut out);
                start = Some(offset);
            }
            None => start = Some(offset),
            _ => {}
        }
        end = unit_end;
        if out.len() >= CHUNKS_MAX {
            return out;
        }
    }
    flush(&mut start, end, &mut out);
    out.truncate(CHUNKS_MAX);
    out
}

/// The text as pieces no longer than the limit: words with their trailing whitespace, with a
/// paragraph break ending a piece run.
fn units(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut offset = 0;
    for word in text.split_inclusive(char::is_whitespace) {
        let mut w = word;
        let mut o = offset;
        while w.len() > CHUNK_BYTES_MAX {
            let mut cut = CHUNK_BYTES_MAX;
            while !w.is_char_boundary(cut) {
                cut -= 1;
            }
            out.push((o, &w[..cut]));
            o += cut;
            w = &w[cut..];
        }
        out.push((o, w));
        offset += word.len();
    }
    out
}

/// The chunk holding byte `at`, if any.
pub fn chunk_of(chunks: &[(usize, usize)], at: usize) -> Option<usize> {
    let i = chunks.partition_point(|(_, end)| *end <= at);
    chunks.get(i).filter(|(s, _)| *s <= at).map(|_| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_respect_the_limit_and_cover_the_words() {
        let text = "alpha beta gamma. ".repeat(300) + &"x".repeat(2_500) + " tail";
        let chunks = chunk(&text);
        assert!(chunks.len() > 3);
        for w in chunks.windows(2) {
            assert!(w[0].1 <= w[1].0, "ordered, not overlapping");
        }
        for (s, e) in &chunks {
            assert!(e - s <= CHUNK_BYTES_MAX);
        }
        let joined: String = chunks
            .iter()
            .map(|(s, e)| &text[*s..*e])
            .collect::<Vec<_>>()
            .join(" ");
        let words = |t: &str| t.split_whitespace().map(str::len).sum::<usize>();
        assert_eq!(words(&joined), words(&text));
        assert_eq!(chunk_of(&chunks, chunks[1].0), Some(1));
        assert!(chunk("   \n\n ").is_empty());
    }

    #[test]
    fn multibyte_text_is_cut_at_char_boundaries() {
        let text = "é".repeat(1_500);
        for (s, e) in chunk(&text) {
            assert!(text.is_char_boundary(s) && text.is_char_boundary(e));
        }
    }
}
