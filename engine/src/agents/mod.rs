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

/// The deterministic reasoner: ranks facts by the question's words they share (title and
/// headings break ties), and answers with the best ones, each claim citing its fact.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExtractiveReasoner;

/// Most claims the extractive reasoner makes.
pub const EXTRACTIVE_CLAIMS_MAX: usize = 3;

impl Reasoner for ExtractiveReasoner {
    fn reason(&self, question: &str, facts: FactView<'_>) -> Proposal {
        let asked: std::collections::BTreeSet<String> = words(question).into_iter().collect();
        let mut scored: Vec<(usize, usize, &Fact)> = facts
            .facts()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let words = words(&f.value);
                let overlap = words.iter().filter(|w| asked.contains(*w)).count();
                let bonus = usize::from(matches!(f.kind.as_str(), "title" | "heading"));
                (overlap * 2 + bonus, i, f)
            })
            .filter(|(score, _, _)| *score > 0)
            .collect();
        scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let claims: Vec<Claim> = scored
            .into_iter()
            .take(EXTRACTIVE_CLAIMS_MAX)
            .map(|(_, _, f)| Claim {
                text: format!("{}: {}", f.kind.replace('_', " "), f.value),
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

    fn fact(id: &str, kind: &str, value: &str) -> Fact {
        Fact {
            fact_id: id.into(),
            kind: kind.into(),
            value: value.into(),
            document_id: "D".into(),
            chunk_id: "D-c0".into(),
            span: [0, value.len()],
        }
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
