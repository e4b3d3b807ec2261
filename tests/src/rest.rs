//! The gateway's HTTP API as a test calls it, with reqwest: each call
//! answers its status, headers and body (JSON, or NDJSON lines).

use base64::Engine;
use reqwest::{header::HeaderMap, multipart, Client, Method};
use serde_json::Value;

/// One gateway's HTTP API, with or without a key.
#[derive(Clone)]
pub struct Rest {
    base: String,
    client: Client,
    key: Option<String>,
}

/// What a call answered.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Answer {
    /// The body as JSON (panics if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    /// The body's NDJSON lines.
    pub fn lines(&self) -> Vec<Value> {
        self.text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("line {l:?}: {e}")))
            .collect()
    }

    /// The gRPC code's name an error body carries (`NOT_FOUND`), or `OK`.
    pub fn code(&self) -> String {
        match serde_json::from_str::<Value>(&self.text) {
            Ok(v) => v["error"]["status"].as_str().unwrap_or("OK").to_string(),
            Err(_) => "OK".into(),
        }
    }
}

/// Base64, as proto3 JSON writes bytes.
pub fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl Rest {
    /// The API at `base` (`http://127.0.0.1:PORT`).
    pub fn new(base: &str) -> Self {
        Self::with_client(base, Client::new())
    }

    pub fn with_client(base: &str, client: Client) -> Self {
        Self {
            base: base.trim_end_matches('/').into(),
            client,
            key: None,
        }
    }

    /// The same API, calling with `key` (`None`: no key).
    pub fn key(&self, key: Option<&str>) -> Self {
        Self {
            key: key.map(str::to_owned),
            ..self.clone()
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request to `path`, with the key.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.request(method, self.url(path));
        match &self.key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    pub async fn send(request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.expect("the HTTP call gets an answer");
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        let text = response.text().await.expect("the whole body");
        Answer {
            status,
            headers,
            text,
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        Self::send(self.request(Method::GET, path)).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        Self::send(self.request(Method::DELETE, path)).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        Self::send(self.request(Method::POST, path).json(body)).await
    }

    /// A multipart form: one `image` part per image, then the fields.
    pub async fn post_form(
        &self,
        path: &str,
        images: &[Vec<u8>],
        fields: &[(&str, &str)],
    ) -> Answer {
        let mut form = multipart::Form::new();
        for (i, image) in images.iter().enumerate() {
            let part = multipart::Part::bytes(image.clone()).file_name(format!("q{i}.jpg"));
            form = form.part("image", part);
        }
        for (name, value) in fields {
            form = form.text(name.to_string(), value.to_string());
        }
        Self::send(self.request(Method::POST, path).multipart(form)).await
    }

    /// NDJSON: one line per value.
    pub async fn post_lines(&self, path: &str, lines: &[Value]) -> Answer {
        let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
        Self::send(
            self.request(Method::POST, path)
                .header("content-type", "application/x-ndjson")
                .body(body),
        )
        .await
    }
}
