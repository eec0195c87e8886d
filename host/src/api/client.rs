//! A client of this API, for the commands that drive a running host (`waymark deploy`,
//! `waymark buckets backfill`): they speak HTTP with an API key and must not open the
//! database.

use anyhow::{Context, bail};
use reqwest::{Method, RequestBuilder};
use serde_json::Value;

pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl ApiClient {
    pub fn new(url: &str, key: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: url.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
        }
    }

    /// A request to `path` (under `/v1`, with its leading slash), authenticated.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key)
    }

    /// Send `request`; its JSON answer, or an error with the status and the host's reason.
    pub async fn send(&self, request: RequestBuilder) -> anyhow::Result<Value> {
        let response = request
            .send()
            .await
            .with_context(|| format!("reaching {}", self.base))?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!(
                "{status}: {}",
                answer["error"].as_str().unwrap_or("request refused")
            );
        }
        Ok(answer)
    }
}
