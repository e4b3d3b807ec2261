//! The search page (`--web`): plain HTML, CSS and JavaScript compiled into
//! the binary, so there is nothing to build or deploy beside the gateway.
//! It calls the same `/v1/` routes any client does, with the key the user
//! types, so it can do nothing a caller with that key could not.

use axum::{
    http::{header, HeaderValue, Method},
    response::{IntoResponse, Response},
};

const INDEX: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/page.js");
const STYLE: &str = include_str!("page/page.css");

/// Only the page's own files run, and the page may only call its origin;
/// thumbnails are `blob:` URLs of images it fetched with the key.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                      img-src 'self' blob:; connect-src 'self'; form-action 'none'; \
                      frame-ancestors 'none'; base-uri 'none'";

/// The page's files, made once.
#[derive(Debug, Clone)]
pub struct Page {
    index: String,
}

impl Page {
    /// The page; `media` says whether thumbnails can be fetched.
    pub fn new(media: bool) -> Self {
        Self {
            index: INDEX.replace("__MEDIA__", if media { "on" } else { "off" }),
        }
    }

    /// The file at `path`, if the page has one there.
    pub fn answer(&self, method: &Method, path: &str) -> Option<Response> {
        if method != Method::GET && method != Method::HEAD {
            return None;
        }
        let (content_type, body) = match path {
            "/" | "/index.html" => ("text/html; charset=utf-8", self.index.clone()),
            "/page.js" => ("text/javascript; charset=utf-8", SCRIPT.to_owned()),
            "/page.css" => ("text/css; charset=utf-8", STYLE.to_owned()),
            _ => return None,
        };
        let mut response = body.into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(POLICY),
        );
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        Some(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_says_whether_thumbnails_exist() {
        let page = Page::new(true);
        assert!(page.index.contains("data-media=\"on\""));
        assert!(!Page::new(false).index.contains("__MEDIA__"));
    }

    #[test]
    fn only_the_pages_own_files_are_served() {
        let page = Page::new(false);
        assert!(page.answer(&Method::GET, "/page.js").is_some());
        assert!(page.answer(&Method::GET, "/../Cargo.toml").is_none());
        assert!(page.answer(&Method::POST, "/").is_none());
    }
}
