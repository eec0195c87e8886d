//! A local stand-in for Postmark's email API: `POST /email` with the server token in
//! `X-Postmark-Server-Token`. It keeps what it was sent and answers as Postmark does — `200`
//! with `ErrorCode` 0, or `401` with `ErrorCode` 10 and a message for a wrong token.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

pub const WRONG_TOKEN: &str = "Request does not contain a valid Server token.";

/// What the provider was sent: the token and the JSON body.
#[derive(Debug, Clone)]
pub struct ProviderCall {
    pub token: Option<String>,
    pub body: Value,
}

#[derive(Clone)]
pub struct FakePostmark {
    /// The API's base URL, to be given as the transport's `endpoint`.
    pub url: String,
    calls: Arc<Mutex<Vec<ProviderCall>>>,
}

#[derive(Clone)]
struct Account {
    token: String,
    calls: Arc<Mutex<Vec<ProviderCall>>>,
}

impl FakePostmark {
    /// Accepts email sent with `token` only.
    pub async fn start(token: &str) -> FakePostmark {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let account = Account {
            token: token.to_owned(),
            calls: calls.clone(),
        };
        let app = axum::Router::new()
            .route("/email", post(send))
            .with_state(account);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        FakePostmark { url, calls }
    }

    /// The calls that carried an email to `address`.
    pub fn calls_to(&self, address: &str) -> Vec<ProviderCall> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|call| call.body["To"] == address)
            .cloned()
            .collect()
    }
}

async fn send(
    State(account): State<Account>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let token = headers
        .get("x-postmark-server-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let accepted = token.as_deref() == Some(account.token.as_str());
    account
        .calls
        .lock()
        .unwrap()
        .push(ProviderCall { token, body });
    if accepted {
        (
            StatusCode::OK,
            Json(
                json!({ "ErrorCode": 0, "Message": "OK", "MessageID": uuid::Uuid::now_v7().to_string() }),
            ),
        )
    } else {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "ErrorCode": 10, "Message": WRONG_TOKEN })),
        )
    }
}
