//! The search page at `/` (`--web`): served where it should be, and used
//! in a real browser (Debian's chromium over WebDriver) the way a person
//! would: key, upload, grid, "more like this", next page. The browser test
//! saves the README's screenshot in `target/tmp/search_page.png`.

use std::path::Path;

use imgsearch_tests::{
    browser::Browser,
    cli::keys_file,
    deps,
    gateway::GatewayFlags,
    rest::{base64, Rest},
    stack::Stack,
};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_on_loopback_with_a_strict_content_policy() {
    let stack = Stack::shared().await;
    let page = stack.gateway.rest().get("/").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
    let policy = page.headers["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(page.text.contains("data-media=\"off\""), "{}", page.text);
    let script = stack.gateway.rest().get("/page.js").await;
    assert_eq!(script.status, 200);
    assert!(script.text.contains("sessionStorage"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_off_serves_no_page() {
    let stack = Stack::shared().await;
    let gateway = stack
        .another_gateway_with(&GatewayFlags {
            web: Some("off"),
            ..Default::default()
        })
        .await;
    let page = gateway.rest().get("/").await;
    assert_eq!((page.status, page.code()), (404, "NOT_FOUND".into()));
}

/// The hits the grid shows: (id, filepath, distance).
async fn grid(browser: &Browser) -> Vec<(String, String, f64)> {
    let hits = browser
        .eval(
            "[...document.querySelectorAll('#grid .hit')].map(h => \
             [h.dataset.id, h.dataset.filepath, Number(h.dataset.distance)])",
        )
        .await;
    serde_json::from_value::<Vec<(String, String, f64)>>(hits).unwrap()
}

async fn searched(browser: &Browser, n: u32) {
    browser
        .until(&format!(
            "document.body.dataset.searches === '{n}' && document.body.dataset.state !== 'searching'"
        ))
        .await;
    let status = browser
        .eval("document.getElementById('status').textContent")
        .await;
    assert_eq!(
        browser.eval("document.body.dataset.state").await,
        json!("done"),
        "search {n}: {status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_finds_an_uploaded_photo_then_more_like_it_then_the_next_page() {
    let stack = Stack::shared().await;
    let photos = deps::fixture_images();
    let keys_dir = tempfile::tempdir().unwrap();
    let (keys, secrets) = keys_file(keys_dir.path(), &[("viewer", "read"), ("loader", "write")]);
    let gateway = stack
        .another_gateway_with(&GatewayFlags {
            api_keys_file: Some(keys),
            media_root: photos[0].parent().map(Path::to_path_buf),
            ..Default::default()
        })
        .await;
    stack.collection("page_photos").await;
    let name = |p: &Path| p.file_name().unwrap().to_str().unwrap().to_owned();
    let lines: Vec<Value> = photos
        .iter()
        .map(|p| json!({"filepath": name(p), "image": base64(&std::fs::read(p).unwrap())}))
        .collect();
    let loaded = Rest::new(&format!("http://127.0.0.1:{}", gateway.http_port))
        .key(Some(&secrets[1]))
        .post_lines("/v1/collections/page_photos:insert", &lines)
        .await;
    assert!(loaded.text.contains("\"OK\""), "{}", loaded.text);

    let browser = Browser::start(1280, 1000).await;
    let page = format!("http://127.0.0.1:{}/", gateway.http_port);
    browser.client.goto(&page).await.unwrap();
    // Without a key, listing the collections fails, and the page says so.
    browser
        .until("document.getElementById('status').textContent.includes('UNAUTHENTICATED')")
        .await;
    browser
        .find("#key")
        .await
        .send_keys(&secrets[0])
        .await
        .unwrap();
    browser.find("#save-key").await.click().await.unwrap();
    browser
        .until("[...document.querySelectorAll('#collection option')].some(o => o.value === 'page_photos')")
        .await;
    assert_eq!(
        browser
            .eval("sessionStorage.getItem('imgsearch.key')")
            .await,
        json!(secrets[0]),
        "the key is kept for the tab"
    );
    assert_eq!(browser.eval("localStorage.length").await, json!(0));
    browser
        .find("#collection")
        .await
        .select_by_value("page_photos")
        .await
        .unwrap();

    let query = &photos[4];
    let file = browser.find("#file").await;
    file.send_keys(&query.display().to_string()).await.unwrap();
    searched(&browser, 1).await;
    let hits = grid(&browser).await;
    assert_eq!(hits.len(), 12, "a page of the default size");
    assert_eq!(hits[0].1, name(query), "the photo itself comes first");
    assert!(hits[0].2 < 1e-3, "its distance: {}", hits[0].2);
    browser
        .until(
            "[...document.querySelectorAll('#grid .hit img')].filter(i => i.complete && \
             i.naturalWidth > 0).length === 12",
        )
        .await;
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("search_page.png");
    browser.screenshot(&shot).await;
    eprintln!("screenshot: {}", shot.display());

    browser.find("#grid .hit").await.click().await.unwrap();
    searched(&browser, 2).await;
    let label = browser
        .eval("document.getElementById('query-label').textContent")
        .await;
    assert_eq!(
        label,
        json!(format!("More like #{} {}", hits[0].0, hits[0].1))
    );
    let like = grid(&browser).await;
    assert_eq!(like.len(), 12);
    assert!(
        like.iter().all(|h| h.0 != hits[0].0),
        "the row itself is left out"
    );
    assert_eq!(
        like[0].1, hits[1].1,
        "its nearest neighbour is the query's next hit"
    );

    browser.find("#next").await.click().await.unwrap();
    searched(&browser, 3).await;
    assert_eq!(
        browser
            .eval("document.getElementById('page').textContent")
            .await,
        json!("Page 2")
    );
    let next = grid(&browser).await;
    assert!(!next.is_empty());
    assert!(
        next.iter().all(|h| like.iter().all(|l| l.0 != h.0)),
        "a new page"
    );
    assert!(next[0].2 >= like[11].2, "farther than the first page");
    browser.close().await;
}
