//! HTTP Basic authentication against the htpasswd file: nothing is
//! reachable anonymously, wrong credentials are refused with the challenge,
//! the file is re-read when it changes, and repeated failures from one
//! address are throttled with 429.

use crate::support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use support::{
    expect_error, sha256_digest, status, Client, TestServer, OCI_MANIFEST, PASSWORD, USER,
};

const REPO: &str = "auth/test";
const CHALLENGE: &str = "Basic realm=\"Registry Realm\"";

fn with_credentials(s: &TestServer, user: &str, password: &str) -> Client {
    let mut c = s.anonymous();
    c.auth = Some((user.to_owned(), password.to_owned()));
    c
}

fn htpasswd_line(user: &str, password: &str) -> String {
    format!("{user}:{}\n", htpasswd::hash_bcrypt(password, 4).unwrap())
}

/// Polls `check` until it holds or `deadline` passes; returns whether it held.
async fn eventually<F, Fut>(deadline: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check().await
}

fn assert_challenge(r: &reqwest::Response, what: &str) {
    assert_eq!(r.status(), 401, "{what}");
    let challenge = r
        .headers()
        .get("www-authenticate")
        .unwrap_or_else(|| panic!("{what}: 401 without WWW-Authenticate"))
        .to_str()
        .unwrap();
    assert_eq!(challenge, CHALLENGE, "{what}");
    assert_eq!(
        r.headers()["docker-distribution-api-version"],
        "registry/2.0",
        "{what}: the API version header SHOULD be on 401 too"
    );
}

/// Every endpoint of the spec, anonymously, against existing content:
/// 401 with the Basic challenge and an `UNAUTHORIZED` body, and nothing
/// changes in storage.
#[tokio::test]
async fn anonymous_requests_are_refused_everywhere() {
    let s = TestServer::start().await;
    let c = s.client();
    let (digest, manifest) = c.push_image(REPO, "v1", &[b"secret layer"]).await;
    let layer = sha256_digest(b"secret layer");
    let upload = c.start_upload(REPO).await;
    let before = s.stored().await;
    let a = s.anonymous();
    let new_blob = sha256_digest(b"anonymous data");
    let requests: Vec<(&str, reqwest::RequestBuilder)> = vec![
        ("GET /v2/", a.get("/v2/")),
        ("GET /v2", a.get("/v2")),
        ("GET catalog", a.get("/v2/_catalog")),
        ("GET tags", a.get(&format!("/v2/{REPO}/tags/list"))),
        (
            "GET manifest tag",
            a.get(&format!("/v2/{REPO}/manifests/v1")),
        ),
        (
            "GET manifest digest",
            a.get(&format!("/v2/{REPO}/manifests/{digest}")),
        ),
        (
            "PUT manifest",
            a.put(&format!("/v2/{REPO}/manifests/v2"))
                .header("content-type", OCI_MANIFEST)
                .body(manifest.clone()),
        ),
        (
            "DELETE manifest",
            a.delete(&format!("/v2/{REPO}/manifests/{digest}")),
        ),
        ("DELETE tag", a.delete(&format!("/v2/{REPO}/manifests/v1"))),
        ("GET blob", a.get(&format!("/v2/{REPO}/blobs/{layer}"))),
        (
            "GET blob range",
            a.get(&format!("/v2/{REPO}/blobs/{layer}"))
                .header("range", "bytes=0-3"),
        ),
        (
            "DELETE blob",
            a.delete(&format!("/v2/{REPO}/blobs/{layer}")),
        ),
        ("POST upload", a.post(&format!("/v2/{REPO}/blobs/uploads/"))),
        (
            "POST monolithic",
            a.post(&format!("/v2/{REPO}/blobs/uploads/?digest={new_blob}"))
                .body("anonymous data"),
        ),
        (
            "POST mount",
            a.post(&format!(
                "/v2/other/blobs/uploads/?mount={layer}&from={REPO}"
            )),
        ),
        ("GET upload", a.get(&upload)),
        ("PATCH upload", a.patch(&upload).body("anonymous data")),
        (
            "PUT upload",
            a.put(&format!("{upload}?digest={new_blob}"))
                .body("anonymous data"),
        ),
        ("DELETE upload", a.delete(&upload)),
        (
            "GET referrers",
            a.get(&format!("/v2/{REPO}/referrers/{digest}")),
        ),
    ];
    for (what, request) in requests {
        let r = request.send().await.unwrap();
        assert_challenge(&r, what);
        assert_eq!(expect_error(r, 401).await, "UNAUTHORIZED", "{what}");
    }
    for (what, path) in [
        ("HEAD /v2/", "/v2/".to_owned()),
        ("HEAD manifest", format!("/v2/{REPO}/manifests/v1")),
        ("HEAD blob", format!("/v2/{REPO}/blobs/{layer}")),
    ] {
        let r = a.head(&path).send().await.unwrap();
        assert_challenge(&r, what);
    }
    s.assert_stored_unchanged(&before, "anonymous requests")
        .await;
    // Refused requests for things that do not exist are 401 too, not 404:
    // anonymous clients learn nothing about what is stored.
    let r = a.get("/v2/no/such/repo/tags/list").send().await.unwrap();
    assert_challenge(&r, "unknown repository");
    let r = a.get("/v2/Invalid/tags/list").send().await.unwrap();
    assert_challenge(&r, "invalid name");
}

/// A client refused before its (large) body was read still gets to see the
/// 401, rather than a connection reset in the middle of its upload.
#[tokio::test]
async fn anonymous_large_upload_sees_the_401() {
    let s = TestServer::start().await;
    let data = vec![0x5au8; 8 * 1024 * 1024];
    let digest = sha256_digest(&data);
    let r = s
        .anonymous()
        .post(&format!("/v2/{REPO}/blobs/uploads/?digest={digest}"))
        .header("content-type", "application/octet-stream")
        .body(data)
        .send()
        .await
        .expect("the client receives a response, not a reset");
    assert_challenge(&r, "large anonymous upload");
    assert!(s.stored().await.is_empty());
}

#[tokio::test]
async fn wrong_password_is_401_with_the_challenge() {
    let s = TestServer::start().await;
    let c = with_credentials(&s, USER, "not-the-password");
    let r = c.get("/v2/").send().await.unwrap();
    assert_challenge(&r, "wrong password");
    assert_eq!(expect_error(r, 401).await, "UNAUTHORIZED");
    let r = c
        .post(&format!("/v2/{REPO}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_challenge(&r, "wrong password on push");
    assert!(s.stored().await.is_empty());
}

#[tokio::test]
async fn unknown_user_is_401() {
    let s = TestServer::start().await;
    let r = with_credentials(&s, "mallory", PASSWORD)
        .get("/v2/")
        .send()
        .await
        .unwrap();
    assert_challenge(&r, "unknown user");
    let r = with_credentials(&s, "", PASSWORD)
        .get("/v2/")
        .send()
        .await
        .unwrap();
    assert_challenge(&r, "empty user");
}

#[tokio::test]
async fn malformed_authorization_headers_are_401_not_errors() {
    let s = TestServer::start().await;
    let a = s.anonymous();
    for value in [
        "Basic",
        "Basic ",
        "Basic !!!not-base64!!!",
        "Basic YWxpY2U=",             // "alice" without a colon
        "Basic YWxpY2U6c2VjcmV0IA==", // "alice:secret " (trailing space)
        "Bearer abc.def.ghi",
        "Digest username=\"alice\"",
        "alice:secret",
    ] {
        let r = a
            .get("/v2/")
            .header("authorization", value)
            .send()
            .await
            .unwrap();
        assert_challenge(&r, value);
    }
}

#[tokio::test]
async fn scheme_name_is_case_insensitive() {
    use base64::Engine as _;
    let s = TestServer::start().await;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    for scheme in ["Basic", "basic", "BASIC"] {
        let r = s
            .anonymous()
            .get("/v2/")
            .header("authorization", format!("{scheme} {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{scheme}");
    }
}

/// A successful login is cached, but only for the exact credentials: a
/// wrong password for the same user never rides on it.
#[tokio::test]
async fn cached_login_does_not_admit_a_wrong_password() {
    let s = TestServer::start().await;
    assert_eq!(status(s.client().get("/v2/")).await, 200);
    assert_eq!(status(s.client().get("/v2/")).await, 200);
    for wrong in ["secreT", "secret ", "", "secret\0"] {
        let r = with_credentials(&s, USER, wrong)
            .get("/v2/")
            .send()
            .await
            .unwrap();
        assert_challenge(&r, &format!("password {wrong:?}"));
    }
}

#[tokio::test]
async fn realm_comes_from_the_config() {
    let s = TestServer::start_with(|c| c.auth.htpasswd.realm = "Team Registry".into()).await;
    let r = s.anonymous().get("/v2/").send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Basic realm=\"Team Registry\""
    );
}

/// The htpasswd file is re-read when it changes, without a restart: a new
/// user gets in, and a removed one is out at once (even though its login
/// was cached).
#[tokio::test]
async fn htpasswd_file_is_reloaded_when_it_changes() {
    let s = TestServer::start_with(|c| c.auth.htpasswd.max_failures_per_minute = 100_000).await;
    assert_eq!(status(s.client().get("/v2/")).await, 200, "alice is cached");
    let bob = with_credentials(&s, "bob", "hunter2");
    assert_eq!(status(bob.get("/v2/")).await, 401);

    let path = s.config.auth.htpasswd.path.clone();
    std::fs::write(&path, htpasswd_line("bob", "hunter2")).unwrap();
    let reloaded = eventually(Duration::from_secs(15), || async {
        status(bob.get("/v2/")).await == 200
    })
    .await;
    assert!(
        reloaded,
        "bob was not let in within 15 s of the file changing"
    );
    let r = s.client().get("/v2/").send().await.unwrap();
    assert_challenge(&r, "alice after her removal");

    // And a changed password: the old one stops working, the new one works.
    std::fs::write(&path, htpasswd_line("bob", "correct horse battery staple")).unwrap();
    let bob2 = with_credentials(&s, "bob", "correct horse battery staple");
    let reloaded = eventually(Duration::from_secs(15), || async {
        status(bob2.get("/v2/")).await == 200
    })
    .await;
    assert!(reloaded, "bob's new password did not work within 15 s");
    assert_eq!(status(bob.get("/v2/")).await, 401, "bob's old password");
}

/// The file may be replaced atomically (a new inode, as `htpasswd` tools
/// and config management do it), not only rewritten in place.
#[tokio::test]
async fn htpasswd_file_replaced_by_rename_is_reloaded() {
    let s = TestServer::start_with(|c| c.auth.htpasswd.max_failures_per_minute = 100_000).await;
    let path = s.config.auth.htpasswd.path.clone();
    let contents = format!(
        "{}{}",
        htpasswd_line(USER, PASSWORD),
        htpasswd_line("carol", "pw")
    );
    htpasswd::write_atomic(&path, contents.as_bytes()).unwrap();
    let carol = with_credentials(&s, "carol", "pw");
    let reloaded = eventually(Duration::from_secs(15), || async {
        status(carol.get("/v2/")).await == 200
    })
    .await;
    assert!(reloaded, "carol was not let in within 15 s");
    assert_eq!(
        status(s.client().get("/v2/")).await,
        200,
        "alice is still there"
    );
}

/// Repeated failures from one address: 429 with `Retry-After`, code
/// `TOOMANYREQUESTS`; another address is not affected.
#[tokio::test]
async fn repeated_failures_from_one_address_are_throttled() {
    let s = TestServer::start_with(|c| c.auth.htpasswd.max_failures_per_minute = 3).await;
    let wrong = with_credentials(&s, USER, "guess");
    for i in 0..3 {
        let r = wrong.get("/v2/").send().await.unwrap();
        assert_challenge(&r, &format!("failure {i}"));
    }
    let r = wrong.get("/v2/").send().await.unwrap();
    assert_eq!(r.status(), 429);
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(expect_error(r, 429).await, "TOOMANYREQUESTS");
    // Still throttled on the next guess, whatever the user.
    let r = with_credentials(&s, "someone", "else")
        .get("/v2/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);

    // Another client address is judged on its own.
    let other = support::Client {
        http: reqwest::Client::builder()
            .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
            .build()
            .unwrap(),
        base: s.base.clone(),
        auth: Some((USER.into(), "guess".into())),
    };
    let r = other.get("/v2/").send().await.unwrap();
    assert_challenge(&r, "wrong password from another address");
    let mut other = other;
    other.auth = Some((USER.into(), PASSWORD.into()));
    assert_eq!(status(other.get("/v2/")).await, 200);
}

/// The throttle is about failures: a client whose credentials are known
/// good keeps working while an attacker on the same address is refused.
#[tokio::test]
async fn verified_client_keeps_working_while_its_address_is_throttled() {
    let s = TestServer::start_with(|c| c.auth.htpasswd.max_failures_per_minute = 2).await;
    let c = s.client();
    assert_eq!(status(c.get("/v2/")).await, 200);
    let wrong = with_credentials(&s, USER, "guess");
    for _ in 0..3 {
        wrong.get("/v2/").send().await.unwrap();
    }
    assert_eq!(status(wrong.get("/v2/")).await, 429);
    assert_eq!(status(c.get("/v2/")).await, 200);
}

#[tokio::test]
async fn authenticated_user_can_push_and_pull() {
    let s = TestServer::start().await;
    let c = s.client();
    let (digest, manifest) = c.push_image(REPO, "v1", &[b"layer"]).await;
    let r = c.get_manifest(REPO, "v1").send().await.unwrap();
    support::assert_served(r, &digest, manifest.as_slice()).await;
}

/// curl and others send `Expect: 100-continue` before a large body: an
/// anonymous one is answered 401 at once, without the body being sent.
#[tokio::test]
async fn anonymous_expect_continue_is_refused_before_the_body() {
    let s = TestServer::start().await;
    let r = support::raw_request(
        s.addr,
        &format!(
            "PUT /v2/{REPO}/blobs/uploads/00000000-0000-4000-8000-000000000000?digest={} HTTP/1.1\n\
             Host: registry.test\nContent-Length: 104857600\nExpect: 100-continue",
            sha256_digest(b"x")
        ),
        b"",
        false,
    )
    .await;
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.header("www-authenticate"), Some(CHALLENGE));
    assert_eq!(r.error_code(), "UNAUTHORIZED");
}

/// The audit log's events once `done` holds for them (the file is written
/// by a thread).
async fn audit_events(
    path: &std::path::Path,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let events: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect();
        if done(&events) {
            return events;
        }
        assert!(Instant::now() < deadline, "audit log:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Behind a load balancer every client arrives from the proxy's address.
/// With the proxy in `http.trusted_proxies`, failed logins count against
/// the address it forwarded for: one client guessing does not make
/// another client's right password answer 429, and the audit log names
/// the clients, not the proxy.
#[tokio::test]
async fn one_clients_bad_passwords_behind_a_trusted_proxy_do_not_lock_out_another() {
    let s = TestServer::start_with(|c| {
        c.auth.htpasswd.max_failures_per_minute = 3;
        c.http.trusted_proxies = vec!["127.0.0.1/32".into()];
        c.auth.audit_log = Some(c.auth.htpasswd.path.with_file_name("audit.jsonl"));
    })
    .await;
    let attacker = with_credentials(&s, "mallory", "guess");
    let from_attacker =
        |r: reqwest::RequestBuilder| r.header("x-forwarded-for", "1.1.1.1, 203.0.113.66");
    for i in 0..3 {
        let r = from_attacker(attacker.get("/v2/")).send().await.unwrap();
        assert_challenge(&r, &format!("failure {i}"));
    }
    let r = from_attacker(attacker.get("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 429, "the guessing client itself is throttled");
    // The attacker cannot walk away from its throttle by writing another
    // address in front: the proxy appends the address it saw.
    let r = attacker
        .get("/v2/")
        .header("x-forwarded-for", "192.0.2.1, 203.0.113.66")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);

    // alice, never seen before, arrives through the same proxy.
    let r = s
        .client()
        .get("/v2/")
        .header("x-forwarded-for", "198.51.100.7")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "another client's right password behind the same proxy"
    );
    // RFC 7239 `Forwarded` from a proxy that sets only that.
    let r = s
        .client()
        .get("/v2/")
        .header("forwarded", "for=\"[2001:db8::7]:4711\";proto=https")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let path = s.config.auth.audit_log.clone().unwrap();
    let events = audit_events(&path, |e| {
        e.iter().filter(|e| e["event"] == "throttled").count() == 2
            && e.iter().any(|e| e["event"] == "login")
    })
    .await;
    let clients = |event: &str| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["event"] == event)
            .map(|e| e["client"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(clients("login_failed"), ["203.0.113.66"; 3]);
    assert_eq!(clients("throttled"), ["203.0.113.66"; 2]);
    assert_eq!(clients("login"), ["198.51.100.7"]);
}

/// A client that talks to the registry directly (no trusted proxies, or a
/// peer outside them) cannot choose the address its failures count
/// under: a fresh `X-Forwarded-For` or `Forwarded` on each guess changes
/// nothing, and the audit log records the real peer.
#[tokio::test]
async fn forged_x_forwarded_for_from_an_untrusted_peer_changes_nothing() {
    for trusted in [
        vec![],
        vec!["10.0.0.0/8".to_owned(), "127.0.0.2".to_owned()],
    ] {
        let s = TestServer::start_with(|c| {
            c.auth.htpasswd.max_failures_per_minute = 3;
            c.http.trusted_proxies = trusted.clone();
            c.auth.audit_log = Some(c.auth.htpasswd.path.with_file_name("audit.jsonl"));
        })
        .await;
        let attacker = with_credentials(&s, "mallory", "guess");
        for i in 0..3 {
            let r = attacker
                .get("/v2/")
                .header("x-forwarded-for", format!("203.0.113.{i}"))
                .send()
                .await
                .unwrap();
            assert_challenge(&r, &format!("failure {i} ({trusted:?})"));
        }
        for forged in [
            ("x-forwarded-for", "198.51.100.200"),
            ("forwarded", "for=198.51.100.201"),
        ] {
            let r = attacker
                .get("/v2/")
                .header(forged.0, forged.1)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 429, "{forged:?} ({trusted:?})");
        }
        let path = s.config.auth.audit_log.clone().unwrap();
        let events = audit_events(&path, |e| {
            e.iter().filter(|e| e["event"] == "throttled").count() == 2
        })
        .await;
        for e in &events {
            assert_eq!(e["client"], "127.0.0.1", "{e} ({trusted:?})");
        }
        s.stop().await;
    }
}
