//! The web UI over plain HTTP (the browser test covers the pages): off
//! when `[ui] enabled = false`, security headers on every page, and failed
//! form logins counted by the same throttle as Basic auth.

use crate::support;

use support::TestServer;

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn form_login(s: &TestServer, user: &str, password: &str) -> reqwest::Response {
    support::ui_login(&s.base, user, password).await
}

#[tokio::test]
async fn ui_can_be_switched_off() {
    let s = TestServer::start_with(|c| c.ui.enabled = false).await;
    for path in ["/ui/", "/ui/login", "/ui/static/style.css"] {
        let r = reqwest::get(s.url(path)).await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
}

#[tokio::test]
async fn pages_carry_a_strict_policy() {
    let s = TestServer::start().await;
    let r = no_redirects().get(s.url("/ui")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/ui/");
    for path in ["/ui/", "/ui/login", "/ui/static/ui.js"] {
        let r = reqwest::get(s.url(path)).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let csp = r.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.starts_with("default-src 'none'"), "{csp}");
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    }
    let r = reqwest::get(s.url("/ui/login")).await.unwrap();
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let r = form_login(&s, support::USER, support::PASSWORD).await;
    assert_eq!(r.status(), 303);
    let session = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|v| v.starts_with("registry_session="))
        .unwrap()
        .to_owned();
    assert!(
        session.contains("HttpOnly")
            && session.contains("SameSite=Strict")
            && session.contains("Max-Age=3600"),
        "{session}"
    );
}

#[tokio::test]
async fn form_logins_share_the_basic_auth_throttle() {
    let s = TestServer::start_with(|c| c.auth.htpasswd.max_failures_per_minute = 3).await;
    for _ in 0..3 {
        assert_eq!(form_login(&s, support::USER, "wrong").await.status(), 401);
    }
    let r = form_login(&s, support::USER, "wrong").await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    // The API's Basic auth counts the same failures from this address.
    let mut c = s.anonymous();
    c.auth = Some((support::USER.into(), "wrong".into()));
    let r = c.get("/v2/").send().await.unwrap();
    assert_eq!(r.status(), 429);
}

#[tokio::test]
async fn open_registry_pages_and_posts_need_a_token() {
    let s = TestServer::start_with(|c| c.auth.mode = registry::config::AuthMode::None).await;
    let c = s.anonymous();
    for i in 0..51 {
        c.push_image(
            &format!("many/r{i:02}"),
            "v1",
            &[format!("layer {i}").as_bytes()],
        )
        .await;
    }
    // 50 repositories a page, and a link to the next.
    let page = reqwest::get(s.url("/ui/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(page.matches("class=\"repo\"").count(), 50);
    let next = support::href_of(&page, "next");
    let page = reqwest::get(s.url(&next))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(page.matches("class=\"repo\"").count(), 1);
    assert!(page.contains(">many/r50<"), "{page}");
    // A delete without the page's token is refused; with it, done.
    let confirm = reqwest::get(s.url("/ui/delete?name=many%2Fr00&reference=v1"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let token = support::hidden(&confirm, "csrf");
    let post = |fields: Vec<(&'static str, String)>| {
        let s = &s;
        async move {
            let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            no_redirects()
                .post(s.url("/ui/delete"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(support::form_body(&fields))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let target = || {
        vec![
            ("name", "many/r00".to_owned()),
            ("reference", "v1".to_owned()),
        ]
    };
    assert_eq!(post(target()).await, 403);
    let mut with_token = target();
    with_token.push(("csrf", token));
    assert_eq!(post(with_token).await, 303);
    let r = c.get("/v2/many/r00/manifests/v1").send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn token_mode_logs_in_the_endpoint_users() {
    let s = TestServer::start_with(|c| {
        c.auth.mode = registry::config::AuthMode::Token;
        c.auth.token.signing_key = c.auth.htpasswd.path.with_file_name("token-signing-key.pem");
    })
    .await;
    assert_eq!(form_login(&s, support::USER, "wrong").await.status(), 401);
    let (cookie, _) = support::ui_session(&s.base, support::USER, support::PASSWORD).await;
    let page = support::ui_page(&s.url("/ui/"), &cookie).await;
    assert!(
        page.contains("Signed in as <strong id=\"user\">alice</strong>"),
        "{page}"
    );
}

/// distribution-spec main: a sha512 image pushed by digest with `?tag=`
/// shows in the UI like a sha256 one: every tag in the repository page with
/// its sha512 digest, the image page by tag and by digest.
#[tokio::test]
async fn a_sha512_image_pushed_with_several_tags_shows_in_the_ui() {
    let s = TestServer::start_with(|c| c.auth.mode = registry::config::AuthMode::None).await;
    let c = s.anonymous();
    let config = br#"{"architecture":"arm64","os":"linux"}"#;
    let (digest, _) = c
        .push_sha512_image("ui/sha", config, &[], &["v1", "latest"])
        .await;
    let page = |path: String| {
        let url = s.url(&path);
        async move {
            let r = reqwest::get(url).await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (status, repo) = page("/ui/r/ui/sha".into()).await;
    assert_eq!(status, 200);
    assert!(repo.contains(">v1<") && repo.contains(">latest<"), "{repo}");
    let short = &digest[..19];
    assert!(repo.contains(short), "no {short} in {repo}");
    for path in [
        "/ui/r/ui/sha:v1".to_owned(),
        format!("/ui/r/ui/sha@{digest}"),
    ] {
        let (status, image) = page(path.clone()).await;
        assert_eq!(status, 200, "{path}");
        assert!(image.contains(&digest), "{path}: {image}");
        assert!(image.contains("arm64"), "{path}: {image}");
    }
}
