//! An OpenAI-compatible HTTP reasoner for `content.analyze` (`--reasoner-url`). The analysis'
//! `reason` step is non-deterministic, so what this reasoner answered is recorded in the log
//! as the step's output and replay never calls it again. It sees the question and the
//! gathered facts, nothing else; its citations are checked by the `validate` step like any
//! other reasoner's.

use std::time::Duration;

use serde_json::{Value, json};
use symphainy_engine::agents::{Claim, FactView, Proposal, Reasoner, ToolRequest};

/// Time allowed to one reasoner call (the step's own timeout is longer).
pub const REASONER_TIMEOUT: Duration = Duration::from_secs(20);
/// Facts sent to the reasoner at most (the best-ranked first).
pub const REASONER_FACTS_MAX: usize = 200;

const INSTRUCTIONS: &str = "Answer the question using only the facts given. Reply with a JSON \
object {\"answer\": string, \"claims\": [{\"text\": string, \"citations\": [fact_id, ...]}]}; \
every claim cites the fact_id of each fact it rests on. To search the user's documents, add \
\"tool_requests\": [{\"intent_type\": \"content.search\", \"payload\": {\"q\": string}}]; the runtime \
decides and runs them.";

/// Calls `POST {base_url}/chat/completions`.
#[derive(Debug)]
pub struct HttpReasoner {
    base_url: String,
    model: String,
    api_key: Option<String>,
    http: reqwest::Client,
}

impl HttpReasoner {
    pub fn new(base_url: &str, model: &str, api_key: Option<String>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(REASONER_TIMEOUT)
            .build()?;
        Ok(Self {
            base_url: base_url.trim_end_matches('/').to_string(),
            model: model.to_string(),
            api_key,
            http,
        })
    }

    fn call(&self, question: &str, facts: FactView<'_>) -> Result<Proposal, String> {
        let facts: Vec<Value> = facts
            .facts()
            .iter()
            .take(REASONER_FACTS_MAX)
            .map(|f| json!({"fact_id": f.fact_id, "kind": f.kind, "value": f.value}))
            .collect();
        let body = json!({
            "model": self.model,
            "messages": [
                {"role": "system", "content": INSTRUCTIONS},
                {"role": "user", "content": json!({"question": question, "facts": facts}).to_string()},
            ],
            "response_format": {"type": "json_object"},
            "temperature": 0,
        });
        let mut request = self
            .http
            .post(format!("{}/chat/completions", self.base_url))
            .json(&body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        // Steps call reasoners on a blocking thread of the runtime: wait for the answer there.
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| "the reasoner runs outside the async runtime".to_string())?;
        let (status, answer) = handle.block_on(async {
            let response = request
                .send()
                .await
                .map_err(|e| format!("reasoner call: {e}"))?;
            let status = response.status();
            let answer: Value = response
                .json()
                .await
                .map_err(|e| format!("reasoner answer: {e}"))?;
            Ok::<_, String>((status, answer))
        })?;
        if !status.is_success() {
            return Err(format!("reasoner answered {status}: {answer}"));
        }
        let content = answer["choices"][0]["message"]["content"]
            .as_str()
            .ok_or("reasoner answer has no choices[0].message.content")?;
        let parsed: Value = serde_json::from_str(content).unwrap_or(Value::Null);
        let claims = parsed["claims"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| Claim {
                text: c["text"].as_str().unwrap_or_default().to_string(),
                citations: c["citations"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect(),
            })
            .collect();
        let tool_requests = parsed["tool_requests"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| ToolRequest {
                intent_type: t["intent_type"].as_str().unwrap_or_default().to_string(),
                payload_json: t["payload"].to_string(),
            })
            .collect();
        Ok(Proposal {
            answer: parsed["answer"]
                .as_str()
                .map_or_else(|| content.to_string(), str::to_string),
            claims,
            tool_requests,
        })
    }
}

impl Reasoner for HttpReasoner {
    fn reason(&self, question: &str, facts: FactView<'_>) -> Proposal {
        match self.call(question, facts) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "the reasoner failed; the analysis answers without claims");
                Proposal {
                    answer: format!("no answer: {e}"),
                    claims: Vec::new(),
                    tool_requests: Vec::new(),
                }
            }
        }
    }
}
