//! The web UI in a real browser: Debian's headless Chromium driven over
//! WebDriver (`chromedriver`, the `fantoccini` crate), against a registry
//! filled by skopeo (an image with labels and history, one label holding
//! `<script>`, a multi-arch index) and an artifact pushed with a subject.
//! Checks what issue 17 lists: login wrong and right, the repository list
//! per user as the ACL allows, a tag's digest and platforms, exact pull
//! commands, delete with and without delete access (and a forged POST),
//! escaping, logout, CSRF-less posts refused, HTML validity (`tidy`),
//! keyboard login and phone width.
//!
//! `UI_SCREENSHOTS=<dir>` also saves a PNG of each page there
//! (`scripts/ui-screenshots.sh` writes `docs/ui/` so).

use crate::support;

use crate::support::oci_layout;
use crate::support::skopeo;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client as Browser, ClientBuilder, Locator};
use oci_layout::{Layer, Layout, Tar, Written};
use registry::config::Config;
use serde_json::{json, Value};
use skopeo::Skopeo;
use support::{free_port, TestServer};

const USERS: &[(&str, &str)] = &[("alice", "secret"), ("bob", "bobpw")];

const ACL: &str = r#"
catalog = ["*"]
[[rules]]
repository = "team-a/**"
pull = ["alice", "bob"]
push = ["alice"]
delete = ["alice"]
[[rules]]
repository = "team-b/**"
pull = ["bob"]
push = ["bob"]
[[rules]]
repository = "public/**"
pull = ["*"]
push = ["alice"]
anonymous = ["pull"]
"#;

const SCRIPT_LABEL: &str = "<script>window.pwned=1</script><b>bold</b>";
const COSIGN: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";

/// chromedriver on a free port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_driver() -> Driver {
    for tool in [
        "/usr/bin/chromedriver",
        "/usr/bin/chromium",
        "/usr/bin/tidy",
    ] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: run scripts/ci-deps.sh (apt packages chromium, chromium-driver, tidy)"
        );
    }
    let port = free_port();
    let child = Command::new("/usr/bin/chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    // Readiness probe: chromedriver's /status says ready.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = reqwest::get(format!("{}/status", driver.url)).await {
            if let Ok(v) = r.json::<Value>().await {
                if v["value"]["ready"] == true {
                    break;
                }
            }
        }
        assert!(Instant::now() < deadline, "chromedriver did not get ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    driver
}

async fn browser(driver: &Driver) -> Browser {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1024,768",
                     "--hide-scrollbars", "--force-device-scale-factor=1"],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

fn with_acl(c: &mut Config) {
    support::users_and_acl(c, USERS, ACL);
    // public/base's releases cannot change: the UI marks them.
    c.policies =
        toml::from_str("[[immutable]]\nrepository = \"public/**\"\ntags = [\"v*\"]").unwrap();
}

/// Pushes the test's content; returns (image digest, index digest,
/// signature digest, [amd64, arm64] child digests).
async fn fill(s: &TestServer) -> (String, String, String) {
    let sk = Skopeo::new();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("layout");
    let mut layout = Layout::create(&src);
    let layer = |seed: u64| {
        Layer::tar_gz(
            Tar::new()
                .file("hello.txt", 0o644, &oci_layout::pseudo_random(seed, 3000))
                .finish(),
        )
    };
    let image = layout.add_image_with_config(
        "linux",
        "amd64",
        json!({
            "author": "UI test",
            "config": {
                "Entrypoint": ["/bin/app"],
                "Cmd": ["--serve"],
                "Env": ["PATH=/bin", "MODE=test"],
                "ExposedPorts": {"8080/tcp": {}},
                "Labels": {"org.example.note": SCRIPT_LABEL, "maintainer": "team-a"},
            },
            "history": [
                {"created": "2024-01-01T00:00:00Z", "created_by": "ADD hello.txt /"},
                {"created": "2024-01-01T00:00:01Z", "created_by": "LABEL note", "empty_layer": true},
            ],
        }),
        &[layer(1)],
    );
    layout.tag("v1", &image);
    let old = layout.add_image("linux", "amd64", &[layer(2)]);
    layout.tag("v2", &old);
    let amd = layout.add_image("linux", "amd64", &[layer(3)]);
    let arm = layout.add_image("linux", "arm64", &[layer(4)]);
    let index = layout.add_index(&[&amd, &arm]);
    layout.tag("multi", &index);
    let public = layout.add_image("linux", "amd64", &[layer(5)]);
    layout.tag("public", &public);

    let host = s.addr.to_string();
    let copy = |tag: &'static str, dest: String, user: &'static str| {
        let src = src.clone();
        let sk = &sk;
        async move {
            let password = USERS.iter().find(|(u, _)| *u == user).unwrap().1;
            sk.ok(&[
                "copy",
                "--all",
                "--preserve-digests",
                "--dest-creds",
                &format!("{user}:{password}"),
                "--dest-tls-verify=false",
                &format!("oci:{}:{tag}", src.display()),
                &dest,
            ])
            .await;
        }
    };
    copy("v1", format!("docker://{host}/team-a/app:v1"), "alice").await;
    copy("v2", format!("docker://{host}/team-a/app:v2"), "alice").await;
    copy(
        "multi",
        format!("docker://{host}/team-a/multi:latest"),
        "alice",
    )
    .await;
    copy("v1", format!("docker://{host}/team-b/secret:v1"), "bob").await;
    copy("public", format!("docker://{host}/public/base:v1"), "alice").await;

    // A cosign-style signature of v1, an OCI 1.1 artifact with a subject.
    let alice = support::client_as(s, USERS, "alice");
    let empty = alice.push_blob("team-a/app", b"{}").await;
    let payload = br#"{"critical":{"image":{"docker-manifest-digest":"x"}}}"#;
    let sig_layer = alice.push_blob("team-a/app", payload).await;
    let artifact = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": COSIGN,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                    "digest": sig_layer, "size": payload.len()}],
        "subject": {"mediaType": image.media_type, "digest": image.digest, "size": image.bytes.len()},
        "annotations": {"dev.sigstore.cosign/signature": "MEUCIQ<x>"},
    });
    let sig = alice
        .push_manifest(
            "team-a/app",
            &format!("sha256-{}.sig", &image.digest[7..]),
            "application/vnd.oci.image.manifest.v1+json",
            &serde_json::to_vec(&artifact).unwrap(),
        )
        .await;
    check_platform_digests(&index, &amd, &arm);
    (image.digest, index.digest, sig)
}

fn check_platform_digests(index: &Written, amd: &Written, arm: &Written) {
    let v: Value = serde_json::from_slice(&index.bytes).unwrap();
    assert_eq!(v["manifests"][0]["digest"], amd.digest.as_str());
    assert_eq!(v["manifests"][1]["digest"], arm.digest.as_str());
}

/// Where screenshots go, when asked for.
fn screenshot_dir() -> Option<PathBuf> {
    std::env::var_os("UI_SCREENSHOTS").map(PathBuf::from)
}

async fn shot(b: &Browser, name: &str) {
    if let Some(dir) = screenshot_dir() {
        std::fs::create_dir_all(&dir).unwrap();
        let png = b.screenshot().await.unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

async fn click(b: &Browser, at: Locator<'_>) {
    b.find(at).await.unwrap().click().await.unwrap();
}

async fn texts(b: &Browser, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in b.find_all(Locator::Css(css)).await.unwrap() {
        out.push(e.text().await.unwrap());
    }
    out
}

async fn text(b: &Browser, css: &str) -> String {
    b.find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn path_of(b: &Browser) -> String {
    let url = b.current_url().await.unwrap();
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    }
}

/// Waits until the browser shows `path` (a submitted form navigates after
/// the click returns).
async fn wait_for_path(b: &Browser, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while path_of(b).await != path {
        assert!(
            Instant::now() < deadline,
            "still on {} instead of {path}",
            path_of(b).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the page shows an element: for a navigation that ends on the
/// path it started from.
async fn wait_for_element(b: &Browser, at: Locator<'_>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.find(at).await.is_err() {
        assert!(Instant::now() < deadline, "{at:?} never appeared");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Logs in through the form, typing as a keyboard user would: Tab from the
/// user field to the password field, Enter to submit.
async fn login(b: &Browser, base: &str, user: &str, password: &str) {
    b.goto(&format!("{base}/ui/login")).await.unwrap();
    let field = b.find(Locator::Id("username")).await.unwrap();
    field.click().await.unwrap();
    field.send_keys(user).await.unwrap();
    let active = b.active_element().await.unwrap();
    active.send_keys("\u{e004}").await.unwrap(); // Tab
    let active = b.active_element().await.unwrap();
    assert_eq!(
        active.attr("id").await.unwrap().as_deref(),
        Some("password")
    );
    active.send_keys(password).await.unwrap();
    active.send_keys("\u{e007}").await.unwrap(); // Enter
                                                 // The form posts and the browser follows the redirect.
    let deadline = Instant::now() + Duration::from_secs(10);
    while path_of(b).await == "/ui/login" && b.find(Locator::Id("login-error")).await.is_err() {
        assert!(Instant::now() < deadline, "login did not answer");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn post_form(
    base: &str,
    cookie: Option<&str>,
    path: &str,
    form: &[(&str, &str)],
) -> (u16, String) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut req = http
        .post(format!("{base}{path}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(support::form_body(form));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn get_page(base: &str, cookie: Option<&str>, path: &str) -> (u16, String) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut req = http.get(format!("{base}{path}"));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// `tidy` finds no errors and no warnings in the page.
fn assert_valid_html(what: &str, page: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("page.html");
    std::fs::write(&file, page).unwrap();
    let out = Command::new("/usr/bin/tidy")
        .args(["-q", "-e", "--drop-empty-elements", "no"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{what}: tidy reports\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn tags_of(s: &TestServer, name: &str) -> Vec<String> {
    let alice = support::client_as(s, USERS, "alice");
    let v: Value = alice.get_json(&format!("/v2/{name}/tags/list")).await;
    v["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect()
}

/// The page is no wider than the window (tables scroll inside it).
async fn assert_fits(b: &Browser, what: &str) {
    let v = b
        .execute(
            "var wide = Array.from(document.querySelectorAll('body *')).find(function (e) { \
               return e.getBoundingClientRect().right > window.innerWidth + 1; }); \
             return [document.documentElement.scrollWidth, window.innerWidth, \
               wide ? wide.tagName + '.' + wide.className + ' ' + wide.textContent.slice(0, 60) : '', \
               Array.from(document.querySelectorAll('.scroll')).map(function (e) { var c = getComputedStyle(e); return c.overflowX + ' ' + e.clientWidth + ' ' + e.scrollWidth + ' ' + c.display; }).join(';') + ' body ' + document.body.scrollWidth + ' main ' + document.querySelector('main').getBoundingClientRect().width];",
            vec![],
        )
        .await
        .unwrap();
    let (scroll, inner) = (v[0].as_u64().unwrap(), v[1].as_u64().unwrap());
    assert!(
        scroll <= inner,
        "{what}: {scroll} px wide in a {inner} px window, past its edge: {} {}",
        v[2],
        v[3]
    );
}

#[tokio::test]
#[ignore = "needs chromium, chromium-driver, tidy and skopeo (scripts/ci-deps.sh)"]
async fn ui_in_a_real_browser() {
    let started = Instant::now();
    let driver = start_driver().await;
    let s = TestServer::start_with(with_acl).await;
    let (image, index, sig) = fill(&s).await;
    let base = s.base.clone();
    let host = s.addr.to_string();
    let b = browser(&driver).await;

    // Anonymous: no list, and a team repository asks for a login; a public
    // one opens (the ACL grants anonymous pull there).
    b.goto(&format!("{base}/ui/")).await.unwrap();
    assert!(text(&b, "#not-listable").await.contains("Log in"));
    b.goto(&format!("{base}/ui/r/team-a/app")).await.unwrap();
    assert_eq!(path_of(&b).await, "/ui/login?next=%2Fui%2Fr%2Fteam-a%2Fapp");
    shot(&b, "login").await;
    b.goto(&format!("{base}/ui/r/public/base")).await.unwrap();
    assert_eq!(texts(&b, "a.tag").await, ["v1"]);
    assert_eq!(texts(&b, "span.badge").await, ["immutable"]);
    assert!(b.find(Locator::Css("a.delete")).await.is_err());

    // Login: wrong, then right.
    login(&b, &base, "alice", "wrong").await;
    assert_eq!(text(&b, "#login-error").await, "Invalid user or password.");
    assert!(b.find(Locator::Id("user")).await.is_err());
    login(&b, &base, "alice", "secret").await;
    assert_eq!(path_of(&b).await, "/ui/");
    assert_eq!(text(&b, "#user").await, "alice");

    // alice's repositories: what the ACL lets her pull.
    assert_eq!(
        texts(&b, "a.repo").await,
        ["public/base", "team-a/app", "team-a/multi"]
    );
    shot(&b, "repositories").await;
    b.goto(&format!("{base}/ui/?q=multi")).await.unwrap();
    assert_eq!(texts(&b, "a.repo").await, ["team-a/multi"]);

    // The repository: tags newest first, exact pull commands, delete links.
    b.goto(&format!("{base}/ui/r/team-a/app")).await.unwrap();
    let tags = texts(&b, "a.tag").await;
    assert_eq!(tags.len(), 3, "{tags:?}");
    assert_eq!(
        tags[0],
        format!("sha256-{}.sig", &image[7..]),
        "newest first"
    );
    assert_eq!(tags[1..], ["v2", "v1"]);
    let pulls = texts(&b, "td .copy code").await;
    assert_eq!(pulls[2], format!("docker pull {host}/team-a/app:v1"));
    assert_eq!(texts(&b, "a.delete").await.len(), 3);
    // With the script running, copy buttons appear.
    assert!(b
        .find(Locator::Css("button.copy-button"))
        .await
        .unwrap()
        .is_displayed()
        .await
        .unwrap());
    shot(&b, "repository").await;
    b.goto(&format!("{base}/ui/r/team-a/app?sort=name"))
        .await
        .unwrap();
    assert_eq!(
        texts(&b, "a.tag").await[..2],
        ["sha256-".to_owned() + &image[7..] + ".sig", "v1".to_owned()]
    );

    // The index: its digest and platforms.
    b.goto(&format!("{base}/ui/r/team-a/multi:latest"))
        .await
        .unwrap();
    assert_eq!(text(&b, "#digest").await, index);
    assert_eq!(
        texts(&b, "#platforms td.platform").await,
        ["linux/amd64", "linux/arm64"]
    );
    assert_eq!(
        text(&b, "#pull-digest").await,
        format!("docker pull {host}/team-a/multi@{index}")
    );
    shot(&b, "index").await;
    b.goto(&format!("{base}/ui/r/team-a/multi")).await.unwrap();
    assert_eq!(
        texts(&b, "td.platforms").await,
        ["linux/amd64, linux/arm64"]
    );

    // The image: config, labels (the HTML one as text), history, layers,
    // the signature among its referrers.
    b.goto(&format!("{base}/ui/r/team-a/app:v1")).await.unwrap();
    assert_eq!(text(&b, "#digest").await, image);
    assert_eq!(
        text(&b, "#pull-tag").await,
        format!("docker pull {host}/team-a/app:v1")
    );
    assert_eq!(
        text(&b, "#pull-digest").await,
        format!("docker pull {host}/team-a/app@{image}")
    );
    let labels = texts(&b, "#labels dd").await;
    assert!(labels.contains(&SCRIPT_LABEL.to_owned()), "{labels:?}");
    let pwned = b.execute("return window.pwned === undefined && document.querySelectorAll('script').length === 1 && document.querySelectorAll('b').length === 0;", vec![]).await.unwrap();
    assert_eq!(pwned, json!(true), "the label's markup ran or rendered");
    let config = texts(&b, "#config dd").await;
    assert!(
        config.contains(&"/bin/app".to_owned()) && config.contains(&"8080/tcp".to_owned()),
        "{config:?}"
    );
    assert_eq!(texts(&b, "#history tbody tr").await.len(), 2);
    assert_eq!(texts(&b, "#layers tbody tr").await.len(), 1);
    assert_eq!(
        texts(&b, "#referrers td:first-child").await,
        ["signature (cosign)"]
    );
    shot(&b, "image").await;
    click(&b, Locator::Css("a.referrer")).await;
    wait_for_path(&b, &format!("/ui/r/team-a/app@{sig}")).await;
    assert_eq!(text(&b, "#digest").await, sig);
    assert_eq!(text(&b, "#subject").await, image);
    assert!(texts(&b, "#annotations dd")
        .await
        .contains(&"MEUCIQ<x>".to_owned()));
    shot(&b, "referrer").await;

    // Phone width: nothing wider than the screen.
    b.set_window_size(390, 844).await.unwrap();
    for path in ["/ui/", "/ui/r/team-a/app", "/ui/r/team-a/app:v1"] {
        b.goto(&format!("{base}{path}")).await.unwrap();
        assert_fits(&b, path).await;
    }
    b.goto(&format!("{base}/ui/r/team-a/app")).await.unwrap();
    shot(&b, "phone").await;
    b.set_window_size(1024, 768).await.unwrap();

    // Delete a tag, through the confirmation page.
    b.goto(&format!("{base}/ui/r/team-a/app")).await.unwrap();
    click(&b, Locator::Css("tr[data-tag='v2'] a.delete")).await;
    wait_for_path(&b, "/ui/delete?name=team-a%2Fapp&reference=v2").await;
    assert!(text(&b, "#confirm-text").await.contains("team-a/app:v2"));
    shot(&b, "delete").await;
    click(&b, Locator::Id("confirm-delete")).await;
    wait_for_path(&b, "/ui/r/team-a/app").await;
    assert!(!texts(&b, "a.tag").await.contains(&"v2".to_owned()));
    assert!(!tags_of(&s, "team-a/app").await.contains(&"v2".to_owned()));

    // HTML validity of every page, as served.
    let (alice_cookie, alice_csrf) = support::ui_session(&base, "alice", "secret").await;
    let confirm = "/ui/delete?name=team-a%2Fapp&reference=v1".to_owned();
    for path in [
        "/ui/".to_owned(),
        "/ui/r/team-a/app".to_owned(),
        "/ui/r/team-a/app:v1".to_owned(),
        format!("/ui/r/team-a/app@{sig}"),
        "/ui/r/team-a/multi:latest".to_owned(),
        confirm,
        "/ui/r/team-a/nothing".to_owned(),
    ] {
        let (_, page) = get_page(&base, Some(&alice_cookie), &path).await;
        assert_valid_html(&path, &page);
    }
    let (_, page) = get_page(&base, None, "/ui/login").await;
    assert_valid_html("/ui/login", &page);

    // CSRF: posts without the token are refused, and change nothing.
    let (status, _) = post_form(
        &base,
        Some(&alice_cookie),
        "/ui/delete",
        &[("name", "team-a/app"), ("reference", "v1")],
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = post_form(
        &base,
        Some(&alice_cookie),
        "/ui/delete",
        &[
            ("name", "team-a/app"),
            ("reference", "v1"),
            ("csrf", "0000"),
        ],
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = post_form(
        &base,
        None,
        "/ui/login",
        &[("username", "alice"), ("password", "secret")],
    )
    .await;
    assert_eq!(status, 403);
    assert!(tags_of(&s, "team-a/app").await.contains(&"v1".to_owned()));
    let _ = alice_csrf;

    // Logout ends the session: the browser's, and the cookie it held.
    let held = b
        .get_named_cookie("registry_session")
        .await
        .unwrap()
        .value()
        .to_owned();
    b.goto(&format!("{base}/ui/")).await.unwrap();
    click(&b, Locator::Id("logout")).await;
    // The page was /ui/ before the click too, so wait for what logout
    // changes: the login link replaces the logout button.
    wait_for_element(&b, Locator::Id("login-link")).await;
    assert_eq!(path_of(&b).await, "/ui/");
    assert!(b.find(Locator::Id("logout")).await.is_err());
    b.goto(&format!("{base}/ui/r/team-a/app")).await.unwrap();
    assert!(path_of(&b).await.starts_with("/ui/login"));
    let (status, _) = get_page(
        &base,
        Some(&format!("registry_session={held}")),
        "/ui/r/team-a/app",
    )
    .await;
    assert_eq!(status, 303, "a logged-out cookie still opened a page");

    // bob: another list, no delete buttons, and a forged delete refused.
    login(&b, &base, "bob", "bobpw").await;
    assert_eq!(
        texts(&b, "a.repo").await,
        ["public/base", "team-a/app", "team-a/multi", "team-b/secret"]
    );
    b.goto(&format!("{base}/ui/r/team-a/app")).await.unwrap();
    assert!(texts(&b, "a.tag").await.contains(&"v1".to_owned()));
    assert!(b.find(Locator::Css("a.delete")).await.is_err());
    b.goto(&format!("{base}/ui/r/team-a/app:v1")).await.unwrap();
    assert!(b.find(Locator::Css("a.delete")).await.is_err());
    let (bob_cookie, bob_csrf) = support::ui_session(&base, "bob", "bobpw").await;
    let (status, page) = post_form(
        &base,
        Some(&bob_cookie),
        "/ui/delete",
        &[
            ("name", "team-a/app"),
            ("reference", "v1"),
            ("csrf", &bob_csrf),
        ],
    )
    .await;
    assert_eq!(status, 403, "{page}");
    let (status, _) = get_page(
        &base,
        Some(&bob_cookie),
        "/ui/delete?name=team-a%2Fapp&reference=v1",
    )
    .await;
    assert_eq!(status, 403);
    assert!(tags_of(&s, "team-a/app").await.contains(&"v1".to_owned()));
    // alice with her token may.
    let (status, _) = post_form(
        &base,
        Some(&alice_cookie),
        "/ui/delete",
        &[
            ("name", "team-a/app"),
            ("reference", "v1"),
            ("csrf", &alice_csrf),
        ],
    )
    .await;
    assert_eq!(status, 303);
    assert!(!tags_of(&s, "team-a/app").await.contains(&"v1".to_owned()));

    b.close().await.unwrap();
    s.stop().await;
    eprintln!(
        "ui_in_a_real_browser: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
