//! The pages, as maud templates: plain data in, HTML out. maud escapes
//! every interpolated string, which is what keeps repository names,
//! labels and annotations (all chosen by whoever pushes) text.

use std::time::SystemTime;

use maud::{html, Markup, DOCTYPE};
use serde_json::Value;

use crate::storage::listing::{RepoInfo, Sort, TagInfo};

/// Who is looking, for the header and the forms.
pub struct Chrome<'a> {
    /// The logged-in user; None when anonymous (or in an open registry).
    pub user: Option<&'a str>,
    /// CSRF token for the session's forms (logout, delete).
    pub csrf: Option<&'a str>,
    /// Whether a login form exists (htpasswd users to check against).
    pub can_login: bool,
}

pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1024.0 && unit < UNITS.len() - 1 {
        size /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{size:.1} {}", UNITS[unit])
    }
}

pub fn time(t: Option<SystemTime>) -> String {
    match t {
        Some(t) => humantime::format_rfc3339_seconds(t)
            .to_string()
            .replace('T', " ")
            .replace('Z', " UTC"),
        None => "never".into(),
    }
}

fn short_digest(d: &str) -> &str {
    let hex = d.split_once(':').map_or(d, |(_, h)| h);
    &hex[..hex.len().min(12)]
}

/// `/ui/r/<name>`, `/ui/r/<name>:<tag>`, `/ui/r/<name>@<digest>`.
pub fn repo_href(name: &str) -> String {
    format!("/ui/r/{name}")
}
pub fn tag_href(name: &str, tag: &str) -> String {
    format!("/ui/r/{name}:{tag}")
}
pub fn digest_href(name: &str, digest: &str) -> String {
    format!("/ui/r/{name}@{digest}")
}

fn kind_of(media_type: &str) -> &'static str {
    if media_type.contains("index") || media_type.contains("manifest.list") {
        "index"
    } else {
        "image"
    }
}

pub fn layout(title: &str, chrome: &Chrome, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · registry" }
                link rel="stylesheet" href="/ui/static/style.css";
                script src="/ui/static/ui.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header {
                    nav aria-label="site" {
                        a.brand href="/ui/" { "registry" }
                        div.who {
                            @if let Some(user) = chrome.user {
                                span { "Signed in as " strong #user { (user) } }
                                form.inline method="post" action="/ui/logout" {
                                    input type="hidden" name="csrf" value=(chrome.csrf.unwrap_or_default());
                                    button type="submit" #logout { "Log out" }
                                }
                            } @else if chrome.can_login {
                                a #login-link href="/ui/login" { "Log in" }
                            }
                        }
                    }
                }
                main #main { (body) }
            }
        }
    }
}

/// A command with a button that copies it (the button appears with JS).
fn copyable(id: &str, command: &str) -> Markup {
    html! {
        div.copy {
            code #(id) { (command) }
            button type="button" class="copy-button" data-copy=(id) hidden { "Copy" }
        }
    }
}

pub fn message(title: &str, chrome: &Chrome, text: &str) -> Markup {
    layout(
        title,
        chrome,
        html! {
            h1 { (title) }
            p.message { (text) }
            p { a href="/ui/" { "Back to repositories" } }
        },
    )
}

pub fn login(chrome: &Chrome, csrf: &str, next: &str, error: Option<&str>) -> Markup {
    layout(
        "Log in",
        chrome,
        html! {
            h1 { "Log in" }
            @if let Some(e) = error {
                p.error role="alert" #login-error { (e) }
            }
            form.login method="post" action="/ui/login" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="next" value=(next);
                label for="username" { "User" }
                input #username type="text" name="username" autocomplete="username" required autofocus;
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="current-password" required;
                button type="submit" #login-submit { "Log in" }
            }
        },
    )
}

fn open_by_name() -> Markup {
    html! {
        form.filter method="get" action="/ui/open" {
            label for="open-name" { "Open a repository by name" }
            input #open-name type="text" name="name" placeholder="team/app";
            button type="submit" { "Open" }
        }
    }
}

pub struct RepoList<'a> {
    pub repositories: &'a [RepoInfo],
    pub filter: &'a str,
    pub sort: Sort,
    pub next: Option<String>,
    /// False when the user may not list the catalog.
    pub listable: bool,
}

pub fn repositories(chrome: &Chrome, list: &RepoList) -> Markup {
    let sort_link = |sort: Sort| {
        let q = serde_urlencoded::to_string([("q", list.filter), ("sort", sort.as_str())])
            .unwrap_or_default();
        format!("/ui/?{q}")
    };
    layout(
        "Repositories",
        chrome,
        html! {
            h1 { "Repositories" }
            @if !list.listable {
                p.message #not-listable {
                    @if chrome.user.is_some() {
                        "You may not list the repositories of this registry."
                    } @else {
                        "Log in to see the repositories you may pull."
                    }
                }
                (open_by_name())
            } @else {
                form.filter method="get" action="/ui/" role="search" {
                    label for="q" { "Filter" }
                    input #q type="search" name="q" value=(list.filter) placeholder="name contains…";
                    input type="hidden" name="sort" value=(list.sort.as_str());
                    button type="submit" { "Filter" }
                }
                p.sort {
                    "Sort: "
                    @if list.sort == Sort::Name { strong { "name" } } @else { a href=(sort_link(Sort::Name)) { "name" } }
                    " · "
                    @if list.sort == Sort::Pushed { strong { "last push" } } @else { a href=(sort_link(Sort::Pushed)) { "last push" } }
                }
                @if list.repositories.is_empty() {
                    p.message #no-repositories { "No repositories." }
                } @else {
                    div.scroll {
                        table #repositories {
                            thead { tr { th scope="col" { "Name" } th scope="col" { "Tags" } th scope="col" { "Size" } th scope="col" { "Last push" } } }
                            tbody {
                                @for r in list.repositories {
                                    tr {
                                        td { a.repo href=(repo_href(&r.name)) { (r.name) } }
                                        td.num { (r.tags) }
                                        td.num { (human_size(r.size)) }
                                        td.time { (time(r.last_push)) }
                                    }
                                }
                            }
                        }
                    }
                }
                @if let Some(next) = &list.next {
                    p.pages { a #next rel="next" href=(next) { "Next page" } }
                }
            }
        },
    )
}

pub struct RepoPage<'a> {
    pub name: &'a str,
    pub host: &'a str,
    pub tags: &'a [TagInfo],
    /// Per tag: whether an immutable-tag rule protects it (`[policies]`).
    pub immutable: &'a [bool],
    pub sort: Sort,
    pub can_delete: bool,
    /// The next page of tags, if more follow.
    pub next: Option<String>,
}

pub fn repository(chrome: &Chrome, page: &RepoPage) -> Markup {
    let name = page.name;
    layout(
        name,
        chrome,
        html! {
            p.crumbs { a href="/ui/" { "Repositories" } " / " }
            h1 #repository { (name) }
            p.sort {
                "Sort: "
                @if page.sort == Sort::Pushed { strong { "newest first" } } @else { a href=(format!("{}?sort=pushed", repo_href(name))) { "newest first" } }
                " · "
                @if page.sort == Sort::Name { strong { "name" } } @else { a href=(format!("{}?sort=name", repo_href(name))) { "name" } }
            }
            @if page.tags.is_empty() {
                p.message { "No tags." }
            } @else {
                div.scroll {
                    table #tags {
                        thead { tr {
                            th scope="col" { "Tag" } th scope="col" { "Digest" } th scope="col" { "Kind" }
                            th scope="col" { "Platforms" } th scope="col" { "Size" } th scope="col" { "Pushed" }
                            th scope="col" { "Pull" }
                            @if page.can_delete { th scope="col" { span.sr { "Delete" } } }
                        } }
                        tbody {
                            @for (i, t) in page.tags.iter().enumerate() {
                                tr data-tag=(t.tag) {
                                    td {
                                        a.tag href=(tag_href(name, &t.tag)) { (t.tag) }
                                        @if page.immutable.get(i).copied().unwrap_or(false) {
                                            " " span.badge title="An immutable-tag rule protects this tag" { "immutable" }
                                        }
                                    }
                                    td { a.digest href=(digest_href(name, &t.digest.to_string())) title=(t.digest.to_string()) { code { (short_digest(&t.digest.to_string())) } } }
                                    td { (kind_of(&t.media_type)) }
                                    td.platforms { (t.platforms.join(", ")) }
                                    td.num { (human_size(t.size)) }
                                    td.time { (time(t.pushed)) }
                                    td { (copyable(&format!("pull-{i}"), &format!("docker pull {}/{name}:{}", page.host, t.tag))) }
                                    @if page.can_delete {
                                        td { a.delete href=(delete_href(name, &t.tag)) { "Delete" span.sr { " tag " (t.tag) } } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if let Some(next) = &page.next {
                p.pages { a #next rel="next" href=(next) { "Next page" } }
            }
        },
    )
}

fn delete_href(name: &str, reference: &str) -> String {
    let q =
        serde_urlencoded::to_string([("name", name), ("reference", reference)]).unwrap_or_default();
    format!("/ui/delete?{q}")
}

/// A referrer of an image, for its page.
pub struct Referrer {
    pub digest: String,
    pub artifact_type: String,
}

/// What an artifact type is, for people.
fn artifact_kind(t: &str) -> &'static str {
    match t {
        t if t.contains("cosign") && t.contains("sig") => "signature (cosign)",
        t if t.contains("notary") => "signature (notation)",
        t if t.contains("spdx") || t.contains("cyclonedx") || t.contains("syft") => "SBOM",
        t if t.contains("in-toto") || t.contains("attestation") || t.contains("dsse") => {
            "attestation"
        }
        _ => "artifact",
    }
}

pub struct ImagePage<'a> {
    pub name: &'a str,
    pub host: &'a str,
    /// The tag the page was opened by, if any.
    pub tag: Option<&'a str>,
    pub digest: &'a str,
    pub media_type: &'a str,
    pub manifest: &'a Value,
    pub raw_manifest: &'a str,
    /// The image config, when this is an image whose config is stored.
    pub config: Option<&'a Value>,
    pub referrers: &'a [Referrer],
    pub can_delete: bool,
}

fn annotations(value: &Value) -> Markup {
    html! {
        @if let Some(map) = value.get("annotations").and_then(Value::as_object).filter(|m| !m.is_empty()) {
            h2 { "Annotations" }
            dl #annotations {
                @for (k, v) in map {
                    dt { (k) }
                    dd { (v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())) }
                }
            }
        }
    }
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(text_of).collect::<Vec<_>>().join(" "),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn config_section(config: &Value) -> Markup {
    let c = config.get("config").unwrap_or(&Value::Null);
    let field = |v: Option<&Value>| v.map(text_of).filter(|s| !s.is_empty());
    let platform = [
        config.get("os"),
        config.get("architecture"),
        config.get("variant"),
    ]
    .into_iter()
    .flatten()
    .map(text_of)
    .filter(|s| !s.is_empty())
    .collect::<Vec<_>>()
    .join("/");
    let rows: Vec<(&str, Option<String>)> = vec![
        ("Created", field(config.get("created"))),
        ("Author", field(config.get("author"))),
        ("Platform", Some(platform).filter(|p| !p.is_empty())),
        ("Entrypoint", field(c.get("Entrypoint"))),
        ("Cmd", field(c.get("Cmd"))),
        ("Working dir", field(c.get("WorkingDir"))),
        ("User", field(c.get("User"))),
        (
            "Exposed ports",
            c.get("ExposedPorts")
                .and_then(Value::as_object)
                .map(|m| m.keys().cloned().collect::<Vec<_>>().join(", ")),
        ),
    ];
    html! {
        h2 { "Config" }
        dl #config {
            @for (k, v) in &rows {
                @if let Some(v) = v { dt { (k) } dd { (v) } }
            }
        }
        @if let Some(env) = c.get("Env").and_then(Value::as_array).filter(|e| !e.is_empty()) {
            h3 { "Environment" }
            ul #env { @for e in env { li { code { (text_of(e)) } } } }
        }
        @if let Some(labels) = c.get("Labels").and_then(Value::as_object).filter(|l| !l.is_empty()) {
            h3 { "Labels" }
            dl #labels {
                @for (k, v) in labels { dt { (k) } dd { (text_of(v)) } }
            }
        }
        @if let Some(history) = config.get("history").and_then(Value::as_array).filter(|h| !h.is_empty()) {
            h3 { "History" }
            div.scroll {
                table #history {
                    thead { tr { th scope="col" { "Created" } th scope="col" { "Created by" } th scope="col" { "Comment" } } }
                    tbody {
                        @for h in history {
                            tr {
                                td { (field(h.get("created")).unwrap_or_default()) }
                                td { code { (field(h.get("created_by")).unwrap_or_default()) } @if h.get("empty_layer").and_then(Value::as_bool) == Some(true) { " " span.muted { "(no layer)" } } }
                                td { (field(h.get("comment")).unwrap_or_default()) }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub fn image(chrome: &Chrome, page: &ImagePage) -> Markup {
    let name = page.name;
    let m = page.manifest;
    let descriptor_size = |d: &Value| d.get("size").and_then(Value::as_u64).unwrap_or(0);
    let title = match page.tag {
        Some(tag) => format!("{name}:{tag}"),
        None => format!("{name}@{}", short_digest(page.digest)),
    };
    html! {
        (layout(&title, chrome, html! {
            p.crumbs { a href="/ui/" { "Repositories" } " / " a href=(repo_href(name)) { (name) } " / " }
            h1 { (title) }
            dl.facts {
                dt { "Digest" } dd { code #digest { (page.digest) } }
                dt { "Media type" } dd { code #media-type { (page.media_type) } }
                @if let Some(t) = m.get("artifactType").and_then(Value::as_str) {
                    dt { "Artifact type" } dd { code { (t) } }
                }
                @if let Some(s) = m.get("subject").and_then(|s| s.get("digest")).and_then(Value::as_str) {
                    dt { "Subject" } dd { a #subject href=(digest_href(name, s)) { code { (s) } } }
                }
            }
            h2 { "Pull" }
            @if let Some(tag) = page.tag {
                (copyable("pull-tag", &format!("docker pull {}/{name}:{tag}", page.host)))
            }
            (copyable("pull-digest", &format!("docker pull {}/{name}@{}", page.host, page.digest)))

            @if let Some(children) = m.get("manifests").and_then(Value::as_array) {
                h2 { "Platforms" }
                div.scroll {
                    table #platforms {
                        thead { tr { th scope="col" { "Platform" } th scope="col" { "Digest" } th scope="col" { "Media type" } th scope="col" { "Size" } } }
                        tbody {
                            @for c in children {
                                @let digest = c.get("digest").and_then(Value::as_str).unwrap_or_default();
                                @let p = c.get("platform");
                                @let platform = p.map(|p| [p.get("os"), p.get("architecture"), p.get("variant")].into_iter().flatten().map(text_of).filter(|s| !s.is_empty()).collect::<Vec<_>>().join("/")).unwrap_or_default();
                                tr {
                                    td.platform { (platform) }
                                    td { a href=(digest_href(name, digest)) title=(digest) { code { (short_digest(digest)) } } }
                                    td { code { (c.get("mediaType").map(text_of).unwrap_or_default()) } }
                                    td.num { (human_size(descriptor_size(c))) }
                                }
                            }
                        }
                    }
                }
            }
            @if let Some(layers) = m.get("layers").and_then(Value::as_array) {
                h2 { "Layers" }
                div.scroll {
                    table #layers {
                        thead { tr { th scope="col" { "#" } th scope="col" { "Digest" } th scope="col" { "Media type" } th scope="col" { "Size" } } }
                        tbody {
                            @for (i, l) in layers.iter().enumerate() {
                                @let digest = l.get("digest").and_then(Value::as_str).unwrap_or_default();
                                tr {
                                    td.num { (i + 1) }
                                    td { code title=(digest) { (short_digest(digest)) } }
                                    td { code { (l.get("mediaType").map(text_of).unwrap_or_default()) } }
                                    td.num { (human_size(descriptor_size(l))) }
                                }
                            }
                        }
                        tfoot { tr { td {} td {} th scope="row" { "Total" } td.num { (human_size(layers.iter().map(descriptor_size).sum())) } } }
                    }
                }
            }
            @if let Some(config) = page.config { (config_section(config)) }
            (annotations(m))
            h2 { "Referrers" }
            @if page.referrers.is_empty() {
                p.muted #no-referrers { "No signatures, SBOMs or attestations refer to this manifest." }
            } @else {
                div.scroll {
                    table #referrers {
                        thead { tr { th scope="col" { "Kind" } th scope="col" { "Artifact type" } th scope="col" { "Digest" } } }
                        tbody {
                            @for r in page.referrers {
                                tr {
                                    td { (artifact_kind(&r.artifact_type)) }
                                    td { code { (r.artifact_type) } }
                                    td { a.referrer href=(digest_href(name, &r.digest)) title=(r.digest) { code { (short_digest(&r.digest)) } } }
                                }
                            }
                        }
                    }
                }
            }
            details #raw {
                summary { "Raw manifest" }
                pre { code { (page.raw_manifest) } }
            }
            @if let Some(config) = page.config {
                details #raw-config {
                    summary { "Raw config" }
                    pre { code { (serde_json::to_string_pretty(config).unwrap_or_default()) } }
                }
            }
            @if page.can_delete {
                h2 { "Delete" }
                p {
                    @if let Some(tag) = page.tag {
                        a.delete #delete-tag href=(delete_href(name, tag)) { "Delete tag " (tag) }
                        " (the manifest stays) · "
                    }
                    a.delete #delete-manifest href=(delete_href(name, page.digest)) { "Delete manifest" }
                    " (and every tag pointing at it)"
                }
            }
        }))
    }
}

pub fn confirm_delete(chrome: &Chrome, name: &str, reference: &str, is_digest: bool) -> Markup {
    let what = if is_digest {
        format!("the manifest {name}@{reference} and every tag pointing at it")
    } else {
        format!("the tag {name}:{reference}")
    };
    layout(
        "Delete",
        chrome,
        html! {
            h1 { "Delete?" }
            p #confirm-text { "This removes " (what) ". It cannot be undone." }
            form method="post" action="/ui/delete" {
                input type="hidden" name="csrf" value=(chrome.csrf.unwrap_or_default());
                input type="hidden" name="name" value=(name);
                input type="hidden" name="reference" value=(reference);
                button.danger type="submit" #confirm-delete { "Delete" }
                " "
                a href=(repo_href(name)) { "Cancel" }
            }
        },
    )
}

/// Pretty-printed JSON, or the text as it is when it does not parse.
pub fn pretty(raw: &[u8]) -> String {
    serde_json::from_slice::<Value>(raw)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| String::from_utf8_lossy(raw).into_owned())
}
