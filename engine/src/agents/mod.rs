//! The agent foundation (shared by realms): agents reason over facts and propose; they never
//! act. An agent is given a read-only [`FactView`] and a question and returns a [`Proposal`];
//! its methods take no handle to state, storage, the clock or the network, so by construction
//! it cannot execute a side effect. A tool an agent wants run is a [`ToolRequest`] in its
//! proposal: the runtime decides, records it and runs it as a saga step.

use serde::{Deserialize, Serialize};

/// A fact (CONTRACT section 5): a value found in a document, with the byte span of the
/// document text that contains it and the chunk that holds it. Realms produce facts; agents
/// only read them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fact {
    pub fact_id: String,
    pub kind: String,
    pub value: String,
    pub document_id: String,
    pub chunk_id: String,
    pub span: [usize; 2],
}

/// Lowercase alphanumeric words.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Facts an agent may read, and nothing else.
#[derive(Debug, Clone, Copy)]
pub struct FactView<'a> {
    facts: &'a [Fact],
}

impl<'a> FactView<'a> {
    pub fn new(facts: &'a [Fact]) -> Self {
        Self { facts }
    }

    pub fn facts(&self) -> &'a [Fact] {
        self.facts
    }

    pub fn get(&self, fact_id: &str) -> Option<&'a Fact> {
        self.facts.iter().find(|f| f.fact_id == fact_id)
    }
}

/// A statement and the facts it rests on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub text: String,
    pub citations: Vec<String>,
}

/// A tool the agent would like the runtime to run (recorded, decided and run by the runtime).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolRequest {
    pub intent_type: String,
    pub payload_json: String,
}

/// What an agent returns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Proposal {
    pub answer: String,
    pub claims: Vec<Claim>,
    #[serde(default)]
    pub tool_requests: Vec<ToolRequest>,
}

/// Produces a proposal from a question and facts.
pub trait Reasoner: Send + Sync + std::fmt::Debug {
    fn reason(&self, question: &str, facts: FactView<'_>) -> Proposal;
}

/// The deterministic reasoner: ranks facts by the question's words they share (in their
/// value or kind, a CSV row's also in its columns' names), compared by stem ("owns" finds
/// "Owner"), each word weighing more the fewer facts hold it, a word in a `key: value` fact's
/// key twice as much; a date or number also by half the words of the line (sentence, `key:
/// value`, CSV row) it stands in. A "when" question also ranks dates, and the relevant lines
/// holding one; a "how many / how much" question numbers likewise. When any fact shares a
/// word, those sharing none are left out; title and headings break ties. Answers with the
/// best ones (at most three, each at least half as relevant as the first, a date or number
/// inside a line already cited left out), each claim citing its fact. Integer arithmetic
/// only: the same facts and question give the same answer on every machine.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExtractiveReasoner;

/// Most claims the extractive reasoner makes.
pub const EXTRACTIVE_CLAIMS_MAX: usize = 3;

/// Words that say nothing about what is asked: question words, articles, auxiliaries,
/// pronouns and prepositions.
const STOP_WORDS: [&str; 48] = [
    "a", "about", "an", "and", "any", "are", "as", "at", "be", "by", "can", "did", "do", "does",
    "for", "from", "had", "has", "have", "how", "i", "in", "is", "it", "its", "many", "much", "of",
    "on", "or", "tell", "that", "the", "their", "there", "this", "to", "was", "were", "what",
    "when", "where", "which", "who", "whom", "whose", "why", "with",
];

/// A word's stem: common English endings taken off, so inflections of a word compare equal
/// ("owns", "owner", "owned" -> "own"; "date", "dates", "dated" -> "dat").
fn stem(word: &str) -> &str {
    let long_enough = |s: &str| s.chars().count() >= 3;
    let mut w = word;
    for suffix in ["ings", "ing", "ers", "er", "ed", "es", "s"] {
        if let Some(rest) = w.strip_suffix(suffix)
            && long_enough(rest)
            // "process", "business": a double s is not a plural.
            && !(suffix == "s" && rest.ends_with('s'))
        {
            w = rest;
            break;
        }
    }
    w.strip_suffix('e').filter(|s| long_enough(s)).unwrap_or(w)
}

/// The distinct stems of a text's words, stop words left out.
fn stems(text: &str) -> std::collections::BTreeSet<String> {
    words(text)
        .iter()
        .filter(|w| !STOP_WORDS.contains(&w.as_str()))
        .map(|w| stem(w).to_string())
        .collect()
}

/// Fact kinds that state something whole (a line, a sentence, a row) and so are the context
/// of the dates and numbers inside them.
const CONTEXT_KINDS: [&str; 3] = ["sentence", "key_value", "csv_row"];

/// Whether fact `inner` lies within fact `outer`'s span of the same document.
fn within(inner: &Fact, outer: &Fact) -> bool {
    inner.document_id == outer.document_id
        && outer.span[0] <= inner.span[0]
        && inner.span[1] <= outer.span[1]
}

/// The column names of each CSV document among `facts`, in order.
fn csv_columns(facts: &[Fact]) -> std::collections::BTreeMap<&str, Vec<&str>> {
    let mut columns = std::collections::BTreeMap::<&str, Vec<&str>>::new();
    for f in facts.iter().filter(|f| f.kind == "csv_column") {
        columns.entry(&f.document_id).or_default().push(&f.value);
    }
    columns
}

impl ExtractiveReasoner {
    /// Scores every fact for `question` (0: unrelated); `columns` are [`csv_columns`] of
    /// `facts`.
    fn scores(
        question: &str,
        facts: &[Fact],
        columns: &std::collections::BTreeMap<&str, Vec<&str>>,
    ) -> Vec<u64> {
        let asked = stems(question);
        let said = words(question);
        let says = |w: &str| said.iter().any(|s| s == w);
        let wants_date = says("when") || asked.contains(stem("date"));
        let wants_number = says("how") && (says("many") || says("much"));
        let wanted = |f: &Fact| {
            (wants_date && f.kind == "date")
                || (wants_number
                    && matches!(f.kind.as_str(), "number" | "word_count" | "row_count"))
        };
        // A fact's words are its value's and, but for a line's, its kind's ("word_count"
        // answers "how many words", "title" answers "what is the title"); a CSV row's also its
        // columns' names.
        let per_fact: Vec<_> = facts
            .iter()
            .map(|f| {
                let mut held = stems(&f.value);
                if !CONTEXT_KINDS.contains(&f.kind.as_str()) {
                    held.extend(stems(&f.kind));
                }
                if f.kind == "csv_row" {
                    for name in columns.get(f.document_id.as_str()).into_iter().flatten() {
                        held.extend(stems(name));
                    }
                }
                held
            })
            .collect();
        // Rarer words weigh more: a word every fact holds tells the facts apart least. Each
        // asked word's weight is counted once, over all facts.
        let n = facts.len() as u64;
        let weights: Vec<(&String, u64)> = asked
            .iter()
            .map(|stem| {
                let holding = per_fact.iter().filter(|s| s.contains(stem)).count() as u64;
                (stem, (n * 8) / holding.max(1))
            })
            .collect();
        // What each fact's own words are worth.
        let worded: Vec<u64> = facts
            .iter()
            .zip(&per_fact)
            .map(|(f, held)| {
                let key = (f.kind == "key_value")
                    .then(|| f.value.split_once(':').map(|(k, _)| stems(k)))
                    .flatten()
                    .unwrap_or_default();
                weights
                    .iter()
                    .filter(|(s, _)| held.contains(*s))
                    .map(|(s, w)| w * if key.contains(*s) { 2 } else { 1 })
                    .sum()
            })
            .collect();
        let contexts: Vec<usize> = (0..facts.len())
            .filter(|i| CONTEXT_KINDS.contains(&facts[*i].kind.as_str()))
            .collect();
        let any_worded = worded.iter().any(|w| *w > 0);
        facts
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let mut score = worded[i];
                if matches!(f.kind.as_str(), "date" | "number") {
                    // A date or number is as relevant as half the line it stands in.
                    score += contexts
                        .iter()
                        .filter(|c| within(f, &facts[**c]))
                        .map(|c| worded[*c])
                        .max()
                        .unwrap_or(0)
                        / 2;
                }
                // With words in common somewhere, a fact sharing none is unrelated, whatever
                // its kind; a relevant line holding the kind of value asked for ranks higher.
                if any_worded && score == 0 {
                    return 0;
                }
                let holds_wanted = CONTEXT_KINDS.contains(&f.kind.as_str())
                    && score > 0
                    && facts.iter().any(|inner| wanted(inner) && within(inner, f));
                if wanted(f) || holds_wanted {
                    score += n * 4;
                }
                if score > 0 && matches!(f.kind.as_str(), "title" | "heading") {
                    score += 1;
                }
                score
            })
            .collect()
    }

    /// A claim's text: a `key: value` line or a sentence says what it is, a CSV row is read
    /// against its columns, other facts are named by their kind.
    fn claim_text(f: &Fact, columns: &std::collections::BTreeMap<&str, Vec<&str>>) -> String {
        match f.kind.as_str() {
            "key_value" | "sentence" => f.value.clone(),
            "csv_row" => {
                let cells = crate::csv::cell_texts(&f.value).unwrap_or_default();
                match columns.get(f.document_id.as_str()) {
                    Some(names) if names.len() == cells.len() => names
                        .iter()
                        .zip(&cells)
                        .map(|(name, cell)| format!("{name}: {cell}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    _ => format!("csv row: {}", f.value),
                }
            }
            kind => format!("{}: {}", kind.replace('_', " "), f.value),
        }
    }
}

impl Reasoner for ExtractiveReasoner {
    fn reason(&self, question: &str, facts: FactView<'_>) -> Proposal {
        let all = facts.facts();
        let columns = csv_columns(all);
        let mut scored: Vec<(u64, usize, &Fact)> = Self::scores(question, all, &columns)
            .into_iter()
            .zip(all.iter().enumerate())
            .map(|(score, (i, f))| (score, i, f))
            .filter(|(score, _, _)| *score > 0)
            .collect();
        scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        // Only facts at least half as relevant as the best: a title that merely repeats the
        // question's subject does not ride along with the fact that answers it. A date or
        // number inside a line already cited says nothing more.
        let best = scored.first().map_or(0, |s| s.0);
        let mut cited: Vec<&Fact> = Vec::new();
        for (_, _, f) in scored
            .into_iter()
            .take_while(|(score, _, _)| score * 2 >= best)
        {
            if cited.len() == EXTRACTIVE_CLAIMS_MAX {
                break;
            }
            let said =
                matches!(f.kind.as_str(), "date" | "number") && cited.iter().any(|c| within(f, c));
            if !said {
                cited.push(f);
            }
        }
        let claims: Vec<Claim> = cited
            .into_iter()
            .map(|f| Claim {
                text: Self::claim_text(f, &columns),
                citations: vec![f.fact_id.clone()],
            })
            .collect();
        let answer = if claims.is_empty() {
            "The document's facts do not answer this question.".to_string()
        } else {
            claims
                .iter()
                .map(|c| c.text.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        };
        Proposal {
            answer,
            claims,
            tool_requests: Vec::new(),
        }
    }
}

/// The outcome of validation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validated {
    pub answer: String,
    /// Claims whose every citation names a fact of the view (and that cite at least one).
    pub claims: Vec<Claim>,
    /// Claims validation refused, with why.
    pub rejected: Vec<(Claim, String)>,
    /// True when nothing was refused.
    pub validated: bool,
}

/// Keeps the claims that cite at least one fact and only facts that exist.
pub fn validate(proposal: Proposal, facts: FactView<'_>) -> Validated {
    let (mut claims, mut rejected) = (Vec::new(), Vec::new());
    for claim in proposal.claims {
        if claim.citations.is_empty() {
            rejected.push((claim, "cites no fact".to_string()));
        } else if let Some(missing) = claim.citations.iter().find(|c| facts.get(c).is_none()) {
            let why = format!("cites {missing}, which is not a fact of the document");
            rejected.push((claim, why));
        } else {
            claims.push(claim);
        }
    }
    Validated {
        answer: proposal.answer,
        validated: rejected.is_empty(),
        claims,
        rejected,
    }
}

/// What every agent is: three phases over read-only inputs.
pub trait BaseAgent: Send + Sync + std::fmt::Debug {
    fn name(&self) -> &'static str;
    /// Picks the facts relevant to the question.
    fn gather<'a>(&self, question: &str, facts: FactView<'a>) -> Vec<Fact> {
        let _ = question;
        facts.facts().to_vec()
    }
    /// Reasons over the gathered facts.
    fn reason(&self, question: &str, facts: FactView<'_>) -> Proposal;
    /// Checks a proposal against the facts (switched on by policy).
    fn validate(&self, proposal: Proposal, facts: FactView<'_>) -> Validated {
        validate(proposal, facts)
    }
}

/// An agent that answers from facts through a [`Reasoner`], citing them.
#[derive(Debug)]
pub struct GroundedReasoningAgent<R: Reasoner> {
    pub reasoner: R,
}

impl<R: Reasoner> BaseAgent for GroundedReasoningAgent<R> {
    fn name(&self) -> &'static str {
        "grounded_reasoning"
    }

    fn reason(&self, question: &str, facts: FactView<'_>) -> Proposal {
        self.reasoner.reason(question, facts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fact whose span is line `id`'s number of a document of 100-byte lines.
    fn fact(id: &str, kind: &str, value: &str) -> Fact {
        let line: usize = id.trim_start_matches("D-f").parse().unwrap();
        Fact {
            fact_id: id.into(),
            kind: kind.into(),
            value: value.into(),
            document_id: "D".into(),
            chunk_id: "D-c0".into(),
            span: [line * 100, line * 100 + value.len()],
        }
    }

    #[test]
    fn stems_make_inflections_equal() {
        for (a, b) in [
            ("owns", "owner"),
            ("owned", "own"),
            ("date", "dated"),
            ("dates", "date"),
            ("reports", "report"),
            ("revenues", "revenue"),
            ("processes", "process"),
            ("reviewed", "review"),
        ] {
            assert_eq!(stem(a), stem(b), "{a} {b}");
        }
        assert_eq!(stem("process"), "process");
        assert_eq!(stem("is"), "is");
        assert_eq!(stem("uses"), "use");
    }

    // The fact that answers ranks first: a key naming what is asked beats a title that only
    // repeats the subject; a "when" question finds dates, a "how many" one numbers; words
    // every fact holds and question words count for nothing.
    #[test]
    fn the_answering_fact_ranks_first() {
        let facts = vec![
            fact("D-f0", "heading", "Saffron Report"),
            fact("D-f1", "title", "Saffron Report"),
            fact("D-f2", "key_value", "Owner: Ada Lovelace"),
            fact("D-f3", "key_value", "Review date: 2026-05-04"),
            // Inside the line above.
            Fact {
                span: [313, 323],
                ..fact("D-f4", "date", "2026-05-04")
            },
            fact("D-f5", "number", "1,250"),
            fact("D-f6", "heading", "Findings"),
            fact("D-f7", "word_count", "412"),
        ];
        let view = FactView::new(&facts);
        let first = |q: &str| ExtractiveReasoner.reason(q, view).claims[0].citations[0].clone();
        assert_eq!(first("Who owns the report?"), "D-f2");
        assert_eq!(first("When was the report reviewed?"), "D-f3");
        assert_eq!(first("When is it due?"), "D-f4");
        assert_eq!(first("How many were sold?"), "D-f5");
        assert_eq!(first("What are the findings?"), "D-f6");
        assert_eq!(first("What is the title?"), "D-f1");
        assert_eq!(first("How many words does it have?"), "D-f7");
        let proposal = ExtractiveReasoner.reason("Who owns the report?", view);
        assert_eq!(proposal.claims[0].text, "Owner: Ada Lovelace");
        assert_eq!(
            proposal.claims.len(),
            1,
            "the title rides along: {proposal:?}"
        );
        assert_eq!(proposal.answer, "Owner: Ada Lovelace");
        // Equally relevant facts are all cited.
        let both = ExtractiveReasoner.reason("What is the saffron report?", view);
        let cited: Vec<_> = both
            .claims
            .iter()
            .map(|c| c.citations[0].as_str())
            .collect();
        assert_eq!(cited, ["D-f0", "D-f1"]);
        // Nothing shared: no claim, not the title by default.
        let none = ExtractiveReasoner.reason("What is the weather in Oslo?", view);
        assert!(none.claims.is_empty(), "{none:?}");
        assert!(
            ExtractiveReasoner
                .reason("what is the", view)
                .claims
                .is_empty()
        );
    }

    #[test]
    fn extractive_answers_cite_and_validation_rejects_inventions() {
        let facts = vec![
            fact("D-f0", "title", "Acme quarterly report"),
            fact("D-f1", "key_value", "Revenue: 1,250 dollars"),
            fact("D-f2", "key_value", "Owner: Jane"),
        ];
        let agent = GroundedReasoningAgent {
            reasoner: ExtractiveReasoner,
        };
        let view = FactView::new(&facts);
        let proposal = agent.reason("What was the revenue?", view);
        assert_eq!(proposal.claims[0].citations, ["D-f1"]);
        assert_eq!(proposal.claims.len(), 1, "{proposal:?}");
        let checked = agent.validate(proposal, view);
        assert!(checked.validated);

        #[derive(Debug)]
        struct Inventive;
        impl Reasoner for Inventive {
            fn reason(&self, _: &str, _: FactView<'_>) -> Proposal {
                Proposal {
                    answer: "made up".into(),
                    claims: vec![
                        Claim {
                            text: "real".into(),
                            citations: vec!["D-f0".into()],
                        },
                        Claim {
                            text: "invented".into(),
                            citations: vec!["D-f99".into()],
                        },
                        Claim {
                            text: "uncited".into(),
                            citations: vec![],
                        },
                    ],
                    tool_requests: vec![],
                }
            }
        }
        let bad = GroundedReasoningAgent {
            reasoner: Inventive,
        };
        let checked = bad.validate(bad.reason("q", view), view);
        assert!(!checked.validated);
        assert_eq!(checked.claims.len(), 1);
        assert_eq!(checked.rejected.len(), 2);
    }
}
