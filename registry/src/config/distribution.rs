//! registry:2 / registry:3 configuration files (CNCF Distribution's YAML,
//! `version: 0.1`), mapped onto [`Config`], so a `config.yml` written for
//! them starts this registry unchanged.
//!
//! The file is read into a tree, `REGISTRY_*` variables are applied to the
//! tree the way Distribution applies them (sorted by name, so
//! `REGISTRY_STORAGE` replaces the section before
//! `REGISTRY_STORAGE_S3_BUCKET` adds to it; names matched case-insensitively;
//! new keys lower-cased; `_0_` indexes a list, one past its end appends; the
//! value parsed as YAML), then every key is taken by the mapping below.
//! A key that is not taken is never dropped silently: it is either a
//! warning saying what happens instead, or, where ignoring it would change
//! security or what is stored (an auth mode or storage driver we lack,
//! client certificates, encryption at rest), an error naming it.
//!
//! YAML is parsed with `yaml-rust2`: pure Rust, maintained, YAML 1.2 (the
//! serde bridges were weighed: `serde_yaml` is archived, `serde_yml` is
//! flagged unsound and unmaintained, `serde_norway` is a fork of the archived
//! crate on a C-to-Rust translation of libyaml). A tree is what the variable
//! overrides need anyway. Scalars are read by the key's type, so YAML 1.1
//! spellings Distribution accepts (`yes`, `on`) still work.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use yaml_rust2::{Yaml, YamlLoader};

use super::{AuthMode, Config, ConfigError, LogFormat, StorageBackend, Tls};

/// Where registry:3, then registry:2, images keep their configuration.
pub const DEFAULT_PATHS: [&str; 2] = [
    "/etc/distribution/config.yml",
    "/etc/docker/registry/config.yml",
];

/// Where a key's effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File,
    Variable(String),
    Default,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File => f.write_str("file"),
            Source::Variable(name) => write!(f, "variable {name}"),
            Source::Default => f.write_str("default"),
        }
    }
}

/// One line of `registry check-config`: a key, its effective value (secrets
/// masked), and its source.
#[derive(Debug, Clone)]
pub struct Row {
    pub key: &'static str,
    pub value: String,
    pub source: Source,
}

/// A distribution file, mapped.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// Sources of the keys `config` was built from, by dotted YAML path.
    sources: BTreeMap<String, Source>,
}

impl Loaded {
    /// The effective configuration, key by key, with sources.
    pub fn rows(&self) -> Vec<Row> {
        effective(&self.config)
            .into_iter()
            .map(|(key, value)| {
                let source = self.source_of(key);
                Row { key, value, source }
            })
            .collect()
    }

    fn source_of(&self, key: &str) -> Source {
        // A variable anywhere at or beneath the key wins (a map set in the
        // file with one entry from a variable shows the variable); else the
        // key's own source, or that of what lies beneath it.
        let prefix = format!("{key}.");
        let mut below = None;
        for (k, s) in self.sources.range(key.to_owned()..) {
            if k != key && !k.starts_with(&prefix) {
                break;
            }
            if matches!(s, Source::Variable(_)) {
                return s.clone();
            }
            below.get_or_insert_with(|| s.clone());
        }
        below.unwrap_or(Source::Default)
    }
}

/// Whether `text` (read from `path`) is a Distribution file rather than our
/// TOML: a `.yml`/`.yaml` name, or a first key `version:`.
pub fn is_distribution_file(path: &Path, text: &str) -> bool {
    if matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yml" | "yaml")
    ) {
        return true;
    }
    text.lines()
        .map(str::trim_start)
        .find(|l| !l.is_empty() && !l.starts_with('#') && l != &"---")
        .is_some_and(|l| l.starts_with("version:"))
}

// ----- the tree -----

#[derive(Debug, Clone)]
enum Value {
    Null,
    Str(String),
    Int(i64),
    Float(String),
    Bool(bool),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

#[derive(Debug, Clone)]
struct Node {
    value: Value,
    source: Source,
    /// The variable's text, for keys read as strings (a password with `#`
    /// or `: ` is not YAML to be parsed).
    raw: Option<String>,
}

impl Node {
    fn new(value: Value, source: Source) -> Node {
        Node {
            value,
            source,
            raw: None,
        }
    }

    fn from_yaml(y: &Yaml, source: &Source) -> Result<Node, String> {
        let value = match y {
            Yaml::Null => Value::Null,
            Yaml::String(s) => Value::Str(s.clone()),
            Yaml::Integer(i) => Value::Int(*i),
            Yaml::Real(r) => Value::Float(r.clone()),
            Yaml::Boolean(b) => Value::Bool(*b),
            Yaml::Array(items) => Value::Seq(
                items
                    .iter()
                    .map(|i| Node::from_yaml(i, source))
                    .collect::<Result<_, _>>()?,
            ),
            Yaml::Hash(h) => {
                let mut entries = Vec::new();
                for (k, v) in h {
                    let key = match k {
                        Yaml::String(s) | Yaml::Real(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        Yaml::Boolean(b) => b.to_string(),
                        _ => return Err("a mapping key is not a scalar".into()),
                    };
                    entries.push((key, Node::from_yaml(v, source)?));
                }
                Value::Map(entries)
            }
            Yaml::Alias(_) | Yaml::BadValue => return Err("unresolved alias".into()),
        };
        Ok(Node::new(value, source.clone()))
    }

    fn child(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v),
            Value::Seq(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        }
    }

    fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    fn scalar_text(&self) -> Option<String> {
        if let Some(raw) = &self.raw {
            return Some(raw.clone());
        }
        match &self.value {
            Value::Str(s) | Value::Float(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// As JSON, for our own sections (`gc`, `metrics`, `acl`) that serde
    /// reads into their native types.
    fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Str(s) => J::String(s.clone()),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => f
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map_or(J::String(f.clone()), J::Number),
            Value::Bool(b) => J::Bool(*b),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }

    fn set_source(&mut self, source: &Source) {
        self.source = source.clone();
        match &mut self.value {
            Value::Seq(items) => items.iter_mut().for_each(|i| i.set_source(source)),
            Value::Map(entries) => entries.iter_mut().for_each(|(_, v)| v.set_source(source)),
            _ => {}
        }
    }
}

/// Our own keys whose names hold an underscore, which a variable's name
/// cannot tell from a level: `REGISTRY_GC_GRACE_PERIOD` is `gc.grace_period`.
const UNDERSCORE_KEYS: &[&str] = &[
    "grace_period",
    "delete_untagged",
    "trusted_proxies",
    "header_read_timeout",
    "idle_timeout",
    "max_connections",
    "max_concurrent_streams",
    "keepalive_interval",
    "keepalive_timeout",
];

fn env_path(name: &str) -> Vec<String> {
    let parts: Vec<&str> = name.split('_').skip(1).collect();
    let mut path = Vec::new();
    let mut i = 0;
    'next: while i < parts.len() {
        // The longest underscore key that starts here (three words, then two).
        for words in [3, 2] {
            if i + words <= parts.len() {
                let joined = parts[i..i + words].join("_").to_ascii_lowercase();
                if UNDERSCORE_KEYS.contains(&joined.as_str()) {
                    path.push(joined);
                    i += words;
                    continue 'next;
                }
            }
        }
        path.push(parts[i].to_owned());
        i += 1;
    }
    path
}

/// Sets `path` under `node` to `payload`, as Distribution's
/// `overwriteFields` does. Returns a warning when the variable cannot apply.
fn overwrite(node: &mut Node, path: &[String], payload: Node) -> Result<(), String> {
    let Some((first, rest)) = path.split_first() else {
        *node = payload;
        return Ok(());
    };
    let numeric = first.parse::<usize>().ok();
    match (&mut node.value, numeric) {
        (Value::Map(entries), _) => {
            if let Some((_, child)) = entries
                .iter_mut()
                .find(|(k, _)| k.eq_ignore_ascii_case(first))
            {
                return overwrite(child, rest, payload);
            }
            let mut child = Node::new(Value::Null, payload.source.clone());
            overwrite(&mut child, rest, payload)?;
            entries.push((first.to_ascii_lowercase(), child));
            Ok(())
        }
        (Value::Seq(items), Some(i)) => {
            if i > items.len() {
                return Err(format!(
                    "undefined index {i} (the list has {})",
                    items.len()
                ));
            }
            if i == items.len() {
                items.push(Node::new(Value::Null, payload.source.clone()));
            }
            overwrite(&mut items[i], rest, payload)
        }
        (Value::Seq(_), None) => Err(format!("{first:?} is not a list index")),
        (Value::Null, Some(_)) => {
            node.value = Value::Seq(Vec::new());
            overwrite(node, path, payload)
        }
        (Value::Null, None) => {
            node.value = Value::Map(Vec::new());
            overwrite(node, path, payload)
        }
        // Distribution skips a variable that goes below a scalar.
        _ => Err("it names a key below a plain value".into()),
    }
}

fn payload(name: &str, value: &str) -> Node {
    let source = Source::Variable(name.to_owned());
    let parsed = if value.trim().is_empty() {
        None
    } else {
        YamlLoader::load_from_str(value)
            .ok()
            .filter(|docs| docs.len() == 1)
            .and_then(|docs| Node::from_yaml(&docs[0], &source).ok())
    };
    let mut node =
        parsed.unwrap_or_else(|| Node::new(Value::Str(value.to_owned()), source.clone()));
    node.set_source(&source);
    node.raw = Some(value.to_owned());
    node
}

/// Variables of ours that are not keys of the file.
const NOT_KEYS: &[&str] = &[
    "REGISTRY_CONFIGURATION_PATH",
    "REGISTRY_CONFIG_FILE",
    "REGISTRY_VERSION",
];

fn apply_env(
    root: &mut Node,
    env: impl IntoIterator<Item = (String, String)>,
    warnings: &mut Vec<String>,
) {
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with("REGISTRY_") && !NOT_KEYS.contains(&k.as_str()))
        .collect();
    // Distribution's order: lexical, so a section is replaced before the
    // keys below it are set.
    vars.sort();
    for (name, value) in vars {
        let path = env_path(&name);
        if path
            .first()
            .is_some_and(|p| p.eq_ignore_ascii_case("version"))
        {
            warnings.push(format!(
                "{name}: the version cannot be set by a variable; ignored"
            ));
            continue;
        }
        let mut payload = payload(&name, &value);
        // `storage` and `auth` are maps from a driver (mode) to its
        // parameters; a plain name stands for that driver without any.
        if let (Value::Str(kind), [section]) = (&payload.value, path.as_slice()) {
            if section.eq_ignore_ascii_case("storage") || section.eq_ignore_ascii_case("auth") {
                let empty = Node::new(Value::Map(Vec::new()), payload.source.clone());
                payload.value = Value::Map(vec![(kind.to_ascii_lowercase(), empty)]);
                payload.raw = None;
            }
        }
        if let Err(why) = overwrite(root, &path, payload) {
            warnings.push(format!("{name}: not applied: {why}"));
        }
    }
}

// ----- reading keys -----

struct Reader<'a> {
    root: &'a Node,
    used: BTreeSet<String>,
    sources: BTreeMap<String, Source>,
    warnings: Vec<String>,
}

impl<'a> Reader<'a> {
    fn node(&mut self, path: &str) -> Option<&'a Node> {
        // Taken even when absent: an empty section above it is then known.
        self.used.insert(path.to_owned());
        let mut node = self.root;
        for part in path.split('.') {
            node = node.child(part)?;
        }
        self.sources.insert(path.to_owned(), node.source.clone());
        if let Value::Map(_) | Value::Seq(_) = node.value {
            record_sources(node, path, &mut self.sources);
        }
        Some(node).filter(|n| !n.is_null())
    }

    fn err(&self, path: &str, message: impl std::fmt::Display) -> ConfigError {
        let key = match self.sources.get(path) {
            Some(Source::Variable(name)) => format!("{name} ({path})"),
            _ => path.to_owned(),
        };
        ConfigError::Invalid {
            key,
            message: message.to_string(),
        }
    }

    fn str(&mut self, path: &str) -> Result<Option<String>, ConfigError> {
        match self.node(path) {
            None => Ok(None),
            Some(n) => n
                .scalar_text()
                .map(Some)
                .ok_or_else(|| self.err(path, "must be a plain value, not a list or map")),
        }
    }

    fn bool(&mut self, path: &str) -> Result<Option<bool>, ConfigError> {
        let Some(text) = self.str(path)? else {
            return Ok(None);
        };
        super::parse_bool(path, &text)
            .map(Some)
            .map_err(|_| self.err(path, format!("{text:?} is not a boolean")))
    }

    /// Go's `time.Duration` in YAML: a string such as `10s`, or an integer
    /// of nanoseconds.
    fn duration(&mut self, path: &str) -> Result<Option<Duration>, ConfigError> {
        let Some(node) = self.node(path) else {
            return Ok(None);
        };
        if let (Value::Int(ns), None) = (&node.value, &node.raw) {
            return u64::try_from(*ns)
                .map(|ns| Some(Duration::from_nanos(ns)))
                .map_err(|_| self.err(path, "must not be negative"));
        }
        let text = self.str(path)?.unwrap_or_default();
        if let Ok(ns) = text.trim().parse::<u64>() {
            return Ok(Some(Duration::from_nanos(ns)));
        }
        humantime::parse_duration(text.trim())
            .map(Some)
            .map_err(|e| {
                self.err(
                    path,
                    format!("{text:?} is not a duration ({e}), e.g. 10s, 5m, 168h"),
                )
            })
    }

    fn u64(&mut self, path: &str) -> Result<Option<u64>, ConfigError> {
        let Some(text) = self.str(path)? else {
            return Ok(None);
        };
        text.trim()
            .parse()
            .map(Some)
            .map_err(|_| self.err(path, format!("{text:?} is not a whole number")))
    }

    fn strings(&mut self, path: &str) -> Result<Vec<String>, ConfigError> {
        let Some(node) = self.node(path) else {
            return Ok(Vec::new());
        };
        match &node.value {
            Value::Seq(items) => items
                .iter()
                .map(|i| {
                    i.scalar_text()
                        .ok_or_else(|| self.err(path, "must be a list of plain values"))
                })
                .collect(),
            _ => Ok(vec![node.scalar_text().unwrap_or_default()]),
        }
    }

    fn keys(&mut self, path: &str) -> Vec<String> {
        let mut node = self.root;
        for part in path.split('.') {
            match node.child(part) {
                Some(n) => node = n,
                None => return Vec::new(),
            }
        }
        match &node.value {
            Value::Map(entries) => entries
                .iter()
                .map(|(k, v)| {
                    let k = k.to_ascii_lowercase();
                    self.sources.insert(format!("{path}.{k}"), v.source.clone());
                    k
                })
                .collect(),
            Value::Str(s) => {
                // `storage: s3` (REGISTRY_STORAGE=s3): the driver alone.
                self.used.insert(path.to_owned());
                self.sources.insert(path.to_owned(), node.source.clone());
                vec![s.to_ascii_lowercase()]
            }
            _ => Vec::new(),
        }
    }

    fn warn(&mut self, path: &str, message: &str) {
        self.used.insert(path.to_owned());
        self.warnings.push(format!("{path}: {message}"));
    }

    /// Takes our own section at `path` with serde, as its native type.
    fn native<T: serde::de::DeserializeOwned>(
        &mut self,
        path: &str,
    ) -> Result<Option<T>, ConfigError> {
        let Some(node) = self.node(path) else {
            return Ok(None);
        };
        serde_json::from_value(node.to_json())
            .map(Some)
            .map_err(|e| self.err(path, e))
    }
}

fn record_sources(node: &Node, path: &str, out: &mut BTreeMap<String, Source>) {
    let children: Vec<(String, &Node)> = match &node.value {
        Value::Map(entries) => entries
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect(),
        Value::Seq(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v))
            .collect(),
        _ => return,
    };
    for (k, child) in children {
        let p = format!("{path}.{k}");
        out.insert(p.clone(), child.source.clone());
        record_sources(child, &p, out);
    }
}

/// Every leaf (a scalar, an empty list or map) with its dotted path.
fn leaves(node: &Node, path: String, out: &mut Vec<(String, Source)>) {
    match &node.value {
        Value::Map(entries) if !entries.is_empty() => {
            for (k, v) in entries {
                let p = if path.is_empty() {
                    k.to_ascii_lowercase()
                } else {
                    format!("{path}.{}", k.to_ascii_lowercase())
                };
                leaves(v, p, out);
            }
        }
        Value::Seq(items) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                leaves(v, format!("{path}.{i}"), out);
            }
        }
        _ => out.push((path, node.source.clone())),
    }
}

/// Keys we read but do not implement: what happens instead.
const WARNINGS: &[(&str, &str)] = &[
    ("log.fields", "not added to log lines here (every line has its own fields)"),
    ("log.hooks", "log hooks (mail) are not supported; nothing is sent"),
    ("log.reportcaller", "log lines carry no caller"),
    ("loglevel", "read as log.level"),
    ("storage.filesystem.maxthreads", "file I/O runs on a bounded blocking pool (32 threads)"),
    ("storage.cache.blobdescriptorsize", "the in-process manifest cache has a fixed bound (8 MiB)"),
    ("storage.tag", "tag lookups are not limited in concurrency"),
    ("storage.s3.v4auth", "requests are always signed with AWS Signature V4"),
    ("storage.s3.skipverify", "TLS certificates of the S3 endpoint are always verified"),
    ("storage.s3.storageclass", "objects get the bucket's default storage class"),
    ("storage.s3.objectacl", "objects get the bucket's default ACL"),
    ("storage.s3.multipartcopychunksize", "large copies use S3's own limits"),
    ("storage.s3.multipartcopymaxconcurrency", "large copies use S3's own limits"),
    ("storage.s3.multipartcopythresholdsize", "large copies use S3's own limits"),
    ("storage.s3.maxconcurrency", "uploads keep at most two parts in flight each"),
    ("storage.s3.loglevel", "S3 requests are logged with log.level"),
    ("storage.s3.useragent", "the S3 client's own user agent is sent"),
    ("storage.s3.usedualstack", "the endpoint is used as configured (set regionendpoint)"),
    ("storage.s3.accelerate", "the endpoint is used as configured (set regionendpoint)"),
    ("storage.s3.sessiontoken", "not read from the file: set AWS_SESSION_TOKEN"),
    ("storage.s3.checksumdisabled", "the S3 client's default checksums are used"),
    ("http.tls.clientauth", "client certificates are not requested (http.tls.clientcas is refused)"),
    ("proxy.exec", "credential helpers are not run: the upstream is logged in to with proxy.username and proxy.password, or anonymously"),
    ("http.tls.ciphersuites", "rustls's default cipher suites (all TLS 1.2 AEAD and TLS 1.3) are used"),
    ("http.http2", "HTTP/2 is offered over TLS by ALPN"),
    ("http.h2c", "HTTP/2 without TLS is accepted with prior knowledge"),
    ("http.debug.prometheus.enabled", "metrics are served on http.debug.addr"),
    ("health", "/livez and /readyz answer probes; /readyz checks storage on each call"),
    ("validation", "manifests are validated by this registry's own rules (foreign layer URLs are stored as given; index platforms are not required)"),
    ("redis", "not used: caches are in the process (the blob descriptor cache too); the section is accepted so the file starts"),
    ("reporting", "errors are not reported to external services"),
    ("middleware", "no middleware: blobs are served by the registry (or by S3 redirects)"),
    ("compatibility", "schema1 manifests are refused"),
    ("catalog.maxentries", "the catalog paginates with n (at most 10000 per page)"),
    ("notifications.events", "events carry no references list"),
];

/// Keys that would change security or data if ignored: refused at start.
const REFUSED: &[(&str, &str)] = &[
    (
        "auth.silly",
        "silly auth lets any Authorization header in; use htpasswd or token",
    ),
    (
        "http.tls.clientcas",
        "client certificate authentication is not supported",
    ),
    (
        "http.tls.letsencrypt",
        "Let's Encrypt certificates are not obtained; give certificate and key",
    ),
    (
        "proxy.remotenamespace",
        "upstream names are not prefixed with a namespace; ignoring it would cache other images under these names",
    ),
    (
        "storage.s3.keyid",
        "server-side encryption with a KMS key is not supported",
    ),
];

fn table_lookup<'t>(table: &'t [(&str, &str)], path: &str) -> Option<(&'t str, &'t str)> {
    table
        .iter()
        .filter(|(k, _)| path == *k || path.starts_with(&format!("{k}.")))
        .max_by_key(|(k, _)| k.len())
        .map(|(k, m)| (*k, *m))
}

/// Reads a Distribution file with the environment applied.
pub fn load(
    path: &Path,
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Loaded, ConfigError> {
    let parse = |message: String| ConfigError::Parse {
        path: path.to_owned(),
        message,
    };
    let docs = YamlLoader::load_from_str(text).map_err(|e| parse(e.to_string()))?;
    let mut root = match docs.as_slice() {
        [doc] => Node::from_yaml(doc, &Source::File).map_err(parse)?,
        [] => return Err(parse("empty".into())),
        _ => return Err(parse("holds more than one YAML document".into())),
    };
    if !matches!(root.value, Value::Map(_)) {
        return Err(parse("is not a YAML mapping".into()));
    }
    match root.child("version").and_then(Node::scalar_text).as_deref() {
        Some("0.1") => {}
        Some(v) => return Err(parse(format!("version {v:?} is not supported (0.1)"))),
        None => {
            return Err(parse(
                "has no version (registry:2 files say version: 0.1)".into(),
            ))
        }
    }
    let mut warnings = Vec::new();
    apply_env(&mut root, env, &mut warnings);
    let mut r = Reader {
        root: &root,
        used: BTreeSet::from(["version".to_owned()]),
        sources: BTreeMap::new(),
        warnings,
    };
    let mut config = Config::default();
    map(&mut r, &mut config)?;

    // Whatever was not taken: a refusal, a known warning, or unknown.
    let mut all = Vec::new();
    leaves(&root, String::new(), &mut all);
    let mut warned = BTreeSet::new();
    for (leaf, source) in all {
        let taken = r.used.iter().any(|u| {
            leaf == *u || leaf.starts_with(&format!("{u}.")) || u.starts_with(&format!("{leaf}."))
        });
        if taken {
            continue;
        }
        let from = match &source {
            Source::Variable(name) => format!(" (from {name})"),
            _ => String::new(),
        };
        if let Some((key, message)) = table_lookup(REFUSED, &leaf) {
            return Err(ConfigError::Invalid {
                key: format!("{key}{from}"),
                message: message.into(),
            });
        }
        match table_lookup(WARNINGS, &leaf) {
            Some((key, message)) => {
                if warned.insert(key) {
                    r.warnings.push(format!("{key}{from}: {message}"));
                }
            }
            None => r.warnings.push(format!(
                "{leaf}{from}: not a key this registry knows; ignored"
            )),
        }
    }
    config.warnings = std::mem::take(&mut r.warnings);
    config.validate()?;
    Ok(Loaded {
        config,
        sources: r.sources,
    })
}

fn map(r: &mut Reader<'_>, c: &mut Config) -> Result<(), ConfigError> {
    map_log(r, c)?;
    map_storage(r, c)?;
    map_http(r, c)?;
    map_auth(r, c)?;
    // Our own sections, under their native names and types.
    if let Some(gc) = r.native("gc")? {
        c.gc = gc;
    }
    if let Some(metrics) = r.native("metrics")? {
        c.metrics = metrics;
    }
    c.acl = r.native("acl")?;
    if let Some(policies) = r.native("policies")? {
        c.policies = policies;
    }
    if let Some(ui) = r.native("ui")? {
        c.ui = ui;
    }
    if let Some(endpoints) = r.native("notifications.endpoints")? {
        c.notifications.endpoints = endpoints;
    }
    // registry:2's pull-through cache keys; our `ttl` default is kept
    // when the file has none. Our own proxy keys (`tag_ttl`, `spool_dir`,
    // `upstreams`) are read under their TOML names.
    if let Some(url) = r.str("proxy.remoteurl")? {
        c.proxy.remoteurl = Some(url).filter(|u| !u.trim().is_empty());
        c.proxy.username = r.str("proxy.username")?;
        c.proxy.password = r.str("proxy.password")?;
    }
    if let Some(ttl) = r.duration("proxy.ttl")? {
        c.proxy.ttl = ttl;
    }
    if let Some(ttl) = r.duration("proxy.tag_ttl")? {
        c.proxy.tag_ttl = ttl;
    }
    if let Some(dir) = r.str("proxy.spool_dir")? {
        c.proxy.spool_dir = Some(dir.into());
    }
    if let Some(upstreams) = r.native("proxy.upstreams")? {
        c.proxy.upstreams = upstreams;
    }
    Ok(())
}

fn map_log(r: &mut Reader<'_>, c: &mut Config) -> Result<(), ConfigError> {
    let level = match r.str("log.level")? {
        Some(l) => Some(l),
        None => r.str("loglevel")?,
    };
    if let Some(level) = level {
        // logrus's levels; tracing has no panic or fatal.
        c.log.level = match level.to_ascii_lowercase().as_str() {
            "panic" | "fatal" => "error".into(),
            "warning" => "warn".into(),
            other => other.to_owned(),
        };
    }
    if let Some(f) = r.str("log.formatter")? {
        c.log.format = match f.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            "logstash" => {
                r.warn(
                    "log.formatter",
                    "logstash is written as json (the same fields, one object per line)",
                );
                LogFormat::Json
            }
            other => {
                return Err(r.err(
                    "log.formatter",
                    format!("{other:?} is not text, json or logstash"),
                ))
            }
        };
    }
    if r.bool("log.accesslog.disabled")? == Some(true) {
        // The access log is the `access` tracing target.
        c.log.level = format!("{},access=off", c.log.level);
    }
    Ok(())
}

fn map_storage(r: &mut Reader<'_>, c: &mut Config) -> Result<(), ConfigError> {
    const PARAMS: [&str; 5] = ["maintenance", "cache", "delete", "redirect", "tag"];
    let drivers: Vec<String> = r
        .keys("storage")
        .into_iter()
        .filter(|k| !PARAMS.contains(&k.as_str()))
        .collect();
    let driver = match drivers.as_slice() {
        [one] => one.clone(),
        [] => return Err(r.err("storage", "must name one storage driver (filesystem or s3)")),
        more => {
            return Err(r.err(
                "storage",
                format!(
                    "names several storage drivers ({}); give exactly one",
                    more.join(", ")
                ),
            ))
        }
    };
    // Distribution's own default root.
    c.storage.filesystem.rootdirectory = PathBuf::from("/var/lib/registry");
    // Distribution redirects blob GETs to S3 unless told not to.
    c.storage.s3.redirect = true;
    match driver.as_str() {
        "filesystem" => {
            c.storage.backend = StorageBackend::Filesystem;
            if let Some(root) = r.str("storage.filesystem.rootdirectory")? {
                c.storage.filesystem.rootdirectory = root.into();
            }
            if let Some(v) = r.bool("storage.filesystem.fsync")? {
                c.storage.filesystem.fsync = v;
            }
            if let Some(v) = r.bool("storage.filesystem.directio")? {
                c.storage.filesystem.directio = v;
            }
            if r.node("storage.filesystem.maxthreads").is_some() {
                r.warn("storage.filesystem.maxthreads", "file I/O runs on a bounded blocking pool (32 threads)");
            }
        }
        "s3" | "s3-aws" => map_s3(r, c, &driver)?,
        other => {
            return Err(r.err(
                &format!("storage.{other}"),
                format!("storage driver {other:?} is not supported here (filesystem or s3); its data would not be found"),
            ))
        }
    }
    if let Some(v) = r.bool("storage.delete.enabled")? {
        c.storage.delete_enabled = v;
    }
    if let Some(v) = r.bool("storage.redirect.disable")? {
        c.storage.s3.redirect = !v;
    }
    let m = &mut c.storage.maintenance;
    let p = "storage.maintenance.uploadpurging";
    if let Some(v) = r.bool(&format!("{p}.enabled"))? {
        m.uploadpurging.enabled = v;
    }
    if let Some(v) = r.duration(&format!("{p}.age"))? {
        m.uploadpurging.age = v;
    }
    if let Some(v) = r.duration(&format!("{p}.interval"))? {
        m.uploadpurging.interval = v;
    }
    if let Some(v) = r.bool(&format!("{p}.dryrun"))? {
        m.uploadpurging.dryrun = v;
    }
    if let Some(v) = r.bool("storage.maintenance.readonly.enabled")? {
        m.readonly.enabled = v;
    }
    match r.str("storage.cache.blobdescriptor")?.as_deref() {
        // What we do anyway: manifests and metadata are cached in process.
        None | Some("inmemory") => {}
        Some(other) => r.warn(
            "storage.cache.blobdescriptor",
            &format!("{other:?}: the cache is in the process here (as inmemory)"),
        ),
    }
    Ok(())
}

fn map_s3(r: &mut Reader<'_>, c: &mut Config, driver: &str) -> Result<(), ConfigError> {
    c.storage.backend = StorageBackend::S3;
    let k = |key: &str| format!("storage.{driver}.{key}");
    let s3 = &mut c.storage.s3;
    s3.bucket = r.str(&k("bucket"))?.unwrap_or_default();
    if let Some(v) = r.str(&k("region"))? {
        s3.region = v;
    }
    let secure = r.bool(&k("secure"))?.unwrap_or(true);
    if let Some(endpoint) = r.str(&k("regionendpoint"))?.filter(|e| !e.is_empty()) {
        // Distribution takes a bare host and picks the scheme from `secure`.
        s3.regionendpoint = Some(if endpoint.contains("://") {
            endpoint
        } else if secure {
            format!("https://{endpoint}")
        } else {
            format!("http://{endpoint}")
        });
    }
    s3.accesskey = r.str(&k("accesskey"))?.filter(|v| !v.is_empty());
    s3.secretkey = r.str(&k("secretkey"))?.filter(|v| !v.is_empty());
    if let Some(v) = r.str(&k("rootdirectory"))? {
        s3.rootdirectory = v;
    }
    if let Some(v) = r.bool(&k("forcepathstyle"))?.or(r.bool(&k("pathstyle"))?) {
        s3.forcepathstyle = v;
    }
    if let Some(v) = r.u64(&k("chunksize"))? {
        s3.chunksize = v as usize;
    }
    if r.bool(&k("encrypt"))? == Some(true) {
        return Err(r.err(
            &k("encrypt"),
            "server-side encryption is not requested by this registry: enable default encryption on the bucket and remove this key",
        ));
    }
    if r.bool(&k("usefipsendpoint"))? == Some(true) {
        if c.storage.s3.regionendpoint.is_none() {
            return Err(r.err(
                &k("usefipsendpoint"),
                "FIPS endpoints are not chosen by this registry: set regionendpoint to the region's FIPS endpoint (e.g. https://s3-fips.us-east-1.amazonaws.com)",
            ));
        }
        r.warn(
            &k("usefipsendpoint"),
            "regionendpoint is used as given (make it the FIPS endpoint)",
        );
    }
    if r.bool(&k("v4auth"))? == Some(false) {
        r.warn(
            &k("v4auth"),
            "requests are always signed with AWS Signature V4",
        );
    }
    Ok(())
}

fn map_http(r: &mut Reader<'_>, c: &mut Config) -> Result<(), ConfigError> {
    // Distribution's images listen on :5000.
    c.http.addr = ":5000".into();
    if let Some(addr) = r.str("http.addr")? {
        c.http.addr = addr;
    }
    match r.str("http.net")?.as_deref() {
        None | Some("") => {}
        Some(net @ ("tcp" | "tcp4" | "tcp6" | "unix")) => c.http.net = net.to_owned(),
        Some(other) => {
            return Err(r.err(
                "http.net",
                format!("{other:?}: the listener's network is tcp or unix"),
            ))
        }
    }
    match r.str("http.prefix")?.as_deref() {
        None | Some("" | "/") => {}
        Some(p) => {
            return Err(r.err(
                "http.prefix",
                format!(
                    "{p:?}: the API is served at /v2/ only; strip the prefix in the proxy in front"
                ),
            ))
        }
    }
    c.http.secret = r.str("http.secret")?.filter(|s| !s.is_empty());
    c.http.host = r.str("http.host")?.filter(|s| !s.is_empty());
    if r.bool("http.relativeurls")? == Some(false) {
        r.warn(
            "http.relativeurls",
            "Location headers are relative anyway (as with true)",
        );
    }
    let cert = r.str("http.tls.certificate")?.filter(|s| !s.is_empty());
    let key = r.str("http.tls.key")?.filter(|s| !s.is_empty());
    if cert.is_some() || key.is_some() {
        c.http.tls = Some(Tls {
            certificate: cert.unwrap_or_default().into(),
            key: key.unwrap_or_default().into(),
        });
    }
    if !r.strings("http.tls.clientcas")?.is_empty() {
        return Err(r.err(
            "http.tls.clientcas",
            "client certificate authentication is not supported",
        ));
    }
    match r.str("http.tls.minimumtls")?.as_deref() {
        None | Some("" | "tls1.2") => {}
        Some("tls1.0" | "tls1.1") => r.warn("http.tls.minimumtls", "TLS 1.2 is the minimum here"),
        Some(other) => {
            return Err(r.err(
                "http.tls.minimumtls",
                format!("{other:?}: this registry accepts TLS 1.2 and 1.3; a higher minimum is not supported"),
            ))
        }
    }
    if let Some(node) = r.node("http.headers") {
        let Value::Map(entries) = &node.value else {
            return Err(r.err("http.headers", "must map header names to lists of values"));
        };
        for (name, values) in entries {
            let list = match &values.value {
                Value::Seq(items) => items.iter().filter_map(Node::scalar_text).collect(),
                _ => values.scalar_text().into_iter().collect(),
            };
            c.http.headers.insert(name.clone(), list);
        }
    }
    if let Some(addr) = r.str("http.debug.addr")?.filter(|a| !a.is_empty()) {
        c.metrics.addr = Some(addr);
        if r.bool("http.debug.prometheus.enabled")? != Some(true) {
            r.warn(
                "http.debug.prometheus.enabled",
                "metrics are served on http.debug.addr even without it",
            );
        }
        if let Some(path) = r.str("http.debug.prometheus.path")? {
            c.metrics.path = path;
        }
    }
    if let Some(d) = r.duration("http.draintimeout")? {
        c.http.drain_timeout = d;
    }
    // Ours: what a connection may hold (`conn_limits`), under the TOML
    // file's names (`REGISTRY_HTTP_HEADER_READ_TIMEOUT` and so on).
    if let Some(d) = r.duration("http.header_read_timeout")? {
        c.http.header_read_timeout = d;
    }
    if let Some(d) = r.duration("http.idle_timeout")? {
        c.http.idle_timeout = d;
    }
    if let Some(n) = r.u64("http.max_connections")? {
        c.http.max_connections = n as usize;
    }
    if let Some(n) = r.u64("http.http2.max_concurrent_streams")? {
        c.http.http2.max_concurrent_streams = n.min(u32::MAX as u64) as u32;
    }
    if let Some(d) = r.duration("http.http2.keepalive_interval")? {
        c.http.http2.keepalive_interval = d;
    }
    if let Some(d) = r.duration("http.http2.keepalive_timeout")? {
        c.http.http2.keepalive_timeout = d;
    }
    // Ours (Distribution believes `X-Forwarded-For` from anyone): a list,
    // or CIDRs separated by commas (`REGISTRY_HTTP_TRUSTED_PROXIES`).
    c.http.trusted_proxies = r
        .strings("http.trusted_proxies")?
        .iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    Ok(())
}

fn map_auth(r: &mut Reader<'_>, c: &mut Config) -> Result<(), ConfigError> {
    let kinds = r.keys("auth");
    match kinds.as_slice() {
        [kind] if kind == "none" => {
            // registry:3's explicit `auth: none`: what no section means.
            r.node("auth.none");
            c.auth.mode = AuthMode::None;
            r.warnings
                .push("auth.none: every request is allowed without a login".into());
        }
        [] => {
            // registry:2 without `auth` serves everyone; so does this.
            c.auth.mode = AuthMode::None;
            r.warnings.push(
                "auth: not set: as with registry:2, every request is allowed without a login"
                    .into(),
            );
        }
        [kind] if kind == "htpasswd" => {
            c.auth.mode = AuthMode::Htpasswd;
            c.auth.htpasswd.realm = r
                .str("auth.htpasswd.realm")?
                .ok_or_else(|| r.err("auth.htpasswd.realm", "must be set"))?;
            c.auth.htpasswd.path = r
                .str("auth.htpasswd.path")?
                .ok_or_else(|| r.err("auth.htpasswd.path", "must be set"))?
                .into();
        }
        [kind] if kind == "token" => {
            c.auth.mode = AuthMode::Token;
            let t = &mut c.auth.token;
            // An external issuer: this registry only verifies.
            t.endpoint = Some(false);
            let need = |r: &mut Reader<'_>, key: &str| -> Result<String, ConfigError> {
                r.str(key)?
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| r.err(key, "must be set"))
            };
            t.service = need(r, "auth.token.service")?;
            t.issuer = need(r, "auth.token.issuer")?;
            t.rootcertbundle = r.str("auth.token.rootcertbundle")?.filter(|v| !v.is_empty()).map(PathBuf::from);
            t.jwks = r.str("auth.token.jwks")?.filter(|v| !v.is_empty());
            t.signingalgorithms = r.strings("auth.token.signingalgorithms")?;
            if t.rootcertbundle.is_none() && t.jwks.is_none() {
                return Err(r.err("auth.token.rootcertbundle", "rootcertbundle or jwks must be set"));
            }
            let autoredirect = r.bool("auth.token.autoredirect")? == Some(true);
            let path = r.str("auth.token.autoredirectpath")?;
            if autoredirect {
                // Our unset realm is exactly that: /auth/token on the host
                // and scheme the client used.
                c.auth.token.realm = None;
                if path.as_deref().is_some_and(|p| p != "/auth/token") {
                    r.warn("auth.token.autoredirectpath", "the realm is /auth/token on the request's host");
                }
            } else {
                c.auth.token.realm = Some(need(r, "auth.token.realm")?);
            }
        }
        [kind] => {
            return Err(r.err(
                &format!("auth.{kind}"),
                format!("auth {kind:?} is not supported (htpasswd, token); starting without it would change who gets in"),
            ))
        }
        more => {
            return Err(r.err(
                "auth",
                format!("names several auth modes ({}); give exactly one", more.join(", ")),
            ))
        }
    }
    Ok(())
}

// ----- the effective configuration -----

/// What `registry check-config` prints: the validated configuration and
/// its keys with their sources. A Distribution file knows each key's
/// source; for our TOML (or none) a key is from a variable when the
/// environment changed it, from the file when the file did, else default.
pub fn check(
    file: Option<&Path>,
    env: Vec<(String, String)>,
) -> Result<(Config, Vec<Row>), ConfigError> {
    let text = match file {
        Some(path) => Some(
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.into(),
                source,
            })?,
        ),
        None => None,
    };
    if let (Some(path), Some(text)) = (file, &text) {
        if is_distribution_file(path, text) {
            let loaded = load(path, text, env)?;
            let rows = loaded.rows();
            return Ok((loaded.config, rows));
        }
    }
    let full = Config::load(file, env.clone())?;
    let from_file = match (file, &text) {
        (Some(path), Some(text)) => {
            Config::from_toml(text).map_err(|message| ConfigError::Parse {
                path: path.into(),
                message,
            })?
        }
        _ => Config::default(),
    };
    let file_rows: BTreeMap<_, _> = effective(&from_file).into_iter().collect();
    let default_rows: BTreeMap<_, _> = effective(&Config::default()).into_iter().collect();
    let rows = effective(&full)
        .into_iter()
        .map(|(key, value)| {
            let source = if file_rows.get(key) != Some(&value) {
                let guess = format!("REGISTRY_{}", key.replace('.', "_").to_ascii_uppercase());
                let name = env
                    .iter()
                    .find(|(k, _)| *k == guess)
                    .map_or("REGISTRY_*".to_owned(), |(k, _)| k.clone());
                Source::Variable(name)
            } else if default_rows.get(key) != Some(&value) {
                Source::File
            } else {
                Source::Default
            };
            Row { key, value, source }
        })
        .collect();
    Ok((full, rows))
}

/// Keys whose values `check-config` never prints.
const SECRETS: &[&str] = &[
    "http.secret",
    "proxy.password",
    "storage.s3.accesskey",
    "storage.s3.secretkey",
];

/// The effective value of every key we implement, by Distribution's name
/// (ours where Distribution has none).
pub fn effective(c: &Config) -> Vec<(&'static str, String)> {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let path = |p: &Path| p.display().to_string();
    let d = |d: Duration| humantime::format_duration(d).to_string();
    let s3 = &c.storage.s3;
    let m = &c.storage.maintenance;
    let t = &c.auth.token;
    let mode = match c.auth.mode {
        AuthMode::Htpasswd => "htpasswd",
        AuthMode::Token => "token",
        AuthMode::None => "none",
    };
    let backend = match c.storage.backend {
        StorageBackend::Filesystem => "filesystem",
        StorageBackend::S3 => "s3",
    };
    let mut rows = vec![
        ("log.level", c.log.level.clone()),
        (
            "log.formatter",
            format!("{:?}", c.log.format).to_ascii_lowercase(),
        ),
        ("storage", backend.to_owned()),
    ];
    match c.storage.backend {
        StorageBackend::Filesystem => {
            rows.push((
                "storage.filesystem.rootdirectory",
                path(&c.storage.filesystem.rootdirectory),
            ));
            rows.push((
                "storage.filesystem.fsync",
                c.storage.filesystem.fsync.to_string(),
            ));
            rows.push((
                "storage.filesystem.directio",
                c.storage.filesystem.directio.to_string(),
            ));
        }
        StorageBackend::S3 => rows.extend([
            ("storage.s3.bucket", s3.bucket.clone()),
            ("storage.s3.region", s3.region.clone()),
            ("storage.s3.regionendpoint", opt(&s3.regionendpoint)),
            ("storage.s3.accesskey", opt(&s3.accesskey)),
            ("storage.s3.secretkey", opt(&s3.secretkey)),
            ("storage.s3.rootdirectory", s3.rootdirectory.clone()),
            ("storage.s3.forcepathstyle", s3.forcepathstyle.to_string()),
            ("storage.s3.chunksize", s3.chunksize.to_string()),
            ("storage.redirect.disable", (!s3.redirect).to_string()),
        ]),
    }
    rows.extend([
        (
            "storage.delete.enabled",
            c.storage.delete_enabled.to_string(),
        ),
        (
            "storage.maintenance.uploadpurging.enabled",
            m.uploadpurging.enabled.to_string(),
        ),
        (
            "storage.maintenance.uploadpurging.age",
            d(m.uploadpurging.age),
        ),
        (
            "storage.maintenance.uploadpurging.interval",
            d(m.uploadpurging.interval),
        ),
        (
            "storage.maintenance.uploadpurging.dryrun",
            m.uploadpurging.dryrun.to_string(),
        ),
        (
            "storage.maintenance.readonly.enabled",
            m.readonly.enabled.to_string(),
        ),
        ("http.addr", c.http.addr.clone()),
        (
            "http.net",
            if c.http.net.is_empty() {
                "tcp".into()
            } else {
                c.http.net.clone()
            },
        ),
        ("http.secret", opt(&c.http.secret)),
        ("http.host", opt(&c.http.host)),
        (
            "http.tls.certificate",
            c.http
                .tls
                .as_ref()
                .map(|t| path(&t.certificate))
                .unwrap_or_default(),
        ),
        (
            "http.tls.key",
            c.http
                .tls
                .as_ref()
                .map(|t| path(&t.key))
                .unwrap_or_default(),
        ),
        (
            "http.headers",
            c.http
                .headers
                .iter()
                .map(|(k, v)| format!("{k}: {}", v.join(", ")))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        ("http.debug.addr", opt(&c.metrics.addr)),
        ("http.debug.prometheus.path", c.metrics.path.clone()),
        ("http.draintimeout", d(c.http.drain_timeout)),
        ("http.trusted_proxies", c.http.trusted_proxies.join(", ")),
        ("http.header_read_timeout", d(c.http.header_read_timeout)),
        ("http.idle_timeout", d(c.http.idle_timeout)),
        (
            "http.max_connections",
            crate::config::connection_cap::max_connections(&c.http).to_string(),
        ),
        (
            "http.http2.max_concurrent_streams",
            c.http.http2.max_concurrent_streams.to_string(),
        ),
        (
            "http.http2.keepalive_interval",
            d(c.http.http2.keepalive_interval),
        ),
        (
            "http.http2.keepalive_timeout",
            d(c.http.http2.keepalive_timeout),
        ),
        ("auth", mode.to_owned()),
    ]);
    match c.auth.mode {
        AuthMode::Htpasswd => rows.extend([
            ("auth.htpasswd.realm", c.auth.htpasswd.realm.clone()),
            ("auth.htpasswd.path", path(&c.auth.htpasswd.path)),
        ]),
        AuthMode::Token => rows.extend([
            (
                "auth.token.realm",
                t.realm
                    .clone()
                    .unwrap_or_else(|| "(this registry's /auth/token)".into()),
            ),
            ("auth.token.service", t.service.clone()),
            ("auth.token.issuer", t.issuer.clone()),
            (
                "auth.token.rootcertbundle",
                t.rootcertbundle.as_deref().map(path).unwrap_or_default(),
            ),
            ("auth.token.jwks", opt(&t.jwks)),
            (
                "auth.token.signingalgorithms",
                t.signingalgorithms.join(", "),
            ),
        ]),
        AuthMode::None => {}
    }
    rows.extend([
        (
            "proxy.remoteurl",
            super::redact_url(c.proxy.remoteurl.as_deref().unwrap_or_default()),
        ),
        (
            "proxy.username",
            c.proxy.username.clone().unwrap_or_default(),
        ),
        (
            "proxy.password",
            c.proxy.password.clone().unwrap_or_default(),
        ),
        ("proxy.ttl", d(c.proxy.ttl)),
    ]);
    rows.push((
        "notifications.endpoints",
        c.notifications
            .endpoints
            .iter()
            .map(|e| {
                let off = if e.disabled { " (disabled)" } else { "" };
                format!("{} -> {}{off}", e.name, super::redact_url(&e.url))
            })
            .collect::<Vec<_>>()
            .join("; "),
    ));
    rows.extend([
        ("gc.interval", d(c.gc.interval)),
        ("gc.grace_period", d(c.gc.grace_period)),
        ("gc.delete_untagged", c.gc.delete_untagged.to_string()),
    ]);
    for (key, value) in &mut rows {
        if SECRETS.contains(key) && !value.is_empty() {
            *value = "********".into();
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load_str(text: &str, vars: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
        load(Path::new("config.yml"), text, env(vars))
    }

    const DEBIAN: &str = "version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/docker-registry
  delete:
    enabled: true
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
auth:
  htpasswd:
    realm: basic-realm
    path: /etc/docker/registry
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
";

    fn with(extra: &str) -> Result<Loaded, ConfigError> {
        load_str(
            &format!("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /r\n{extra}"),
            &[],
        )
    }

    fn s3(extra: &str) -> Result<Loaded, ConfigError> {
        load_str(
            &format!(
                "version: 0.1\nstorage:\n  s3:\n    bucket: b\n    region: us-east-1\n{extra}"
            ),
            &[],
        )
    }

    /// registry:3's configuration reference, key by key (docs/migrating.md).
    #[test]
    fn registry3_reference_keys_are_carried_out_warned_or_refused() {
        let e = s3("    usefipsendpoint: true\n").unwrap_err().to_string();
        assert!(e.contains("storage.s3.usefipsendpoint"), "{e}");
        let l = s3("    usefipsendpoint: true\n    regionendpoint: https://s3-fips.us-east-1.amazonaws.com\n")
            .unwrap();
        assert!(
            l.config
                .warnings
                .iter()
                .any(|w| w.starts_with("storage.s3.usefipsendpoint: regionendpoint")),
            "{:?}",
            l.config.warnings
        );
        let l = s3("    usefipsendpoint: false\n").unwrap();
        assert!(
            !l.config
                .warnings
                .iter()
                .any(|w| w.contains("usefipsendpoint")),
            "{:?}",
            l.config.warnings
        );
        let e = with("proxy:\n  remoteurl: https://r.example\n  remotenamespace: superhero\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("proxy.remotenamespace"), "{e}");
        let l = with("proxy:\n  remoteurl: https://r.example\n  exec:\n    command: helper\n    lifetime: 1h\n").unwrap();
        assert!(
            l.config
                .warnings
                .iter()
                .any(|w| w.starts_with("proxy.exec: credential helpers")),
            "{:?}",
            l.config.warnings
        );
        let l = with("auth:\n  none:\n").unwrap();
        assert_eq!(l.config.auth.mode, AuthMode::None);
        let l = with("http:\n  tls:\n    certificate: /c\n    key: /k\n    clientauth: require-and-verify-client-cert\n").unwrap();
        assert!(
            l.config
                .warnings
                .iter()
                .any(|w| w.starts_with("http.tls.clientauth: client certificates")),
            "{:?}",
            l.config.warnings
        );
        // Nothing of the reference is "not a key this registry knows".
        for w in &l.config.warnings {
            assert!(!w.contains("not a key"), "{w}");
        }
    }

    #[test]
    fn connection_limits_map_from_the_file_and_the_variables() {
        let base = "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /r\n";
        let file = format!(
            "{base}http:\n  header_read_timeout: 5s\n  http2:\n    max_concurrent_streams: 7\n"
        );
        let l = load_str(&file, &[]).unwrap();
        assert_eq!(l.config.http.header_read_timeout, Duration::from_secs(5));
        assert_eq!(l.config.http.http2.max_concurrent_streams, 7);
        let l = load_str(
            base,
            &[
                ("REGISTRY_HTTP_HEADER_READ_TIMEOUT", "9s"),
                ("REGISTRY_HTTP_IDLE_TIMEOUT", "11s"),
                ("REGISTRY_HTTP_MAX_CONNECTIONS", "123"),
                ("REGISTRY_HTTP_HTTP2_KEEPALIVE_TIMEOUT", "3s"),
            ],
        )
        .unwrap();
        assert_eq!(l.config.http.header_read_timeout, Duration::from_secs(9));
        assert_eq!(l.config.http.idle_timeout, Duration::from_secs(11));
        assert_eq!(l.config.http.max_connections, 123);
        assert_eq!(
            l.config.http.http2.keepalive_timeout,
            Duration::from_secs(3)
        );
        for w in &l.config.warnings {
            assert!(!w.contains("http."), "{w}");
        }
        let row = |key: &str| {
            l.rows()
                .into_iter()
                .find(|r| r.key == key)
                .unwrap_or_else(|| panic!("{key} not shown"))
                .value
        };
        assert_eq!(row("http.max_connections"), "123");
        assert_eq!(row("http.idle_timeout"), "11s");
    }

    #[test]
    fn trusted_proxies_map_from_the_file_and_the_variable() {
        let base = "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /r\n";
        let file = format!("{base}http:\n  trusted_proxies: [10.0.0.0/8, 127.0.0.1]\n");
        let l = load_str(&file, &[]).unwrap();
        assert_eq!(l.config.http.trusted_proxies, ["10.0.0.0/8", "127.0.0.1"]);
        let l = load_str(
            base,
            &[("REGISTRY_HTTP_TRUSTED_PROXIES", "10.0.0.0/8,fd00::/8")],
        )
        .unwrap();
        assert_eq!(l.config.http.trusted_proxies, ["10.0.0.0/8", "fd00::/8"]);
        let row = l
            .rows()
            .into_iter()
            .find(|r| r.key == "http.trusted_proxies")
            .unwrap();
        assert_eq!(row.value, "10.0.0.0/8, fd00::/8");
        assert!(load_str(&format!("{base}http:\n  trusted_proxies: [nope]\n"), &[]).is_err());
    }

    #[test]
    fn debian_file_maps() {
        let l = load_str(DEBIAN, &[]).unwrap();
        let c = &l.config;
        assert_eq!(c.http.addr, ":5000");
        assert_eq!(
            c.storage.filesystem.rootdirectory,
            PathBuf::from("/var/lib/docker-registry")
        );
        assert!(c.storage.delete_enabled);
        assert_eq!(c.auth.mode, AuthMode::Htpasswd);
        assert_eq!(c.auth.htpasswd.realm, "basic-realm");
        assert_eq!(c.http.headers["X-Content-Type-Options"], ["nosniff"]);
        let w = c.warnings.join("\n");
        assert!(w.contains("log.fields"), "{w}");
        assert!(w.contains("health"), "{w}");
        assert_eq!(c.warnings.len(), 2, "{w}");
    }

    #[test]
    fn variables_override_as_distribution_does() {
        let l = load_str(
            DEBIAN,
            &[
                ("REGISTRY_HTTP_ADDR", "127.0.0.1:0"),
                ("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "/data"),
                ("REGISTRY_AUTH_HTPASSWD_REALM", "other # not a comment"),
                ("REGISTRY_HTTP_HEADERS_X-FRAME-OPTIONS", "[DENY]"),
                ("REGISTRY_LOG_LEVEL", "debug"),
            ],
        )
        .unwrap();
        let c = &l.config;
        assert_eq!(c.http.addr, "127.0.0.1:0");
        assert_eq!(c.storage.filesystem.rootdirectory, PathBuf::from("/data"));
        assert_eq!(c.auth.htpasswd.realm, "other # not a comment");
        assert_eq!(c.http.headers["x-frame-options"], ["DENY"]);
        let rows = l.rows();
        let row = |k: &str| rows.iter().find(|r| r.key == k).unwrap().clone();
        assert_eq!(
            row("http.addr").source,
            Source::Variable("REGISTRY_HTTP_ADDR".into())
        );
        assert_eq!(row("storage.delete.enabled").source, Source::File);
        assert_eq!(
            row("storage.maintenance.uploadpurging.age").source,
            Source::Default
        );
        assert_eq!(
            row("http.headers").source,
            Source::Variable("REGISTRY_HTTP_HEADERS_X-FRAME-OPTIONS".into())
        );
    }

    #[test]
    fn a_section_variable_replaces_the_section_then_keys_add() {
        let l = load_str(
            DEBIAN,
            &[
                ("REGISTRY_STORAGE_S3_BUCKET", "b"),
                ("REGISTRY_STORAGE", "s3"),
                ("REGISTRY_STORAGE_S3_REGION", "eu-west-1"),
            ],
        )
        .unwrap();
        assert_eq!(l.config.storage.backend, StorageBackend::S3);
        assert_eq!(l.config.storage.s3.bucket, "b");
        assert_eq!(l.config.storage.s3.region, "eu-west-1");
        // The file's `delete` went with the section, as in Distribution.
        assert!(!l.config.storage.delete_enabled);
    }

    #[test]
    fn list_indexes_append_and_set() {
        let text = "version: 0.1\nstorage: {filesystem: {}}\nauth:\n  token:\n    realm: https://a/t\n    service: s\n    issuer: i\n    jwks: /k.json\n    signingalgorithms: [RS256]\n";
        let l = load_str(
            text,
            &[
                ("REGISTRY_AUTH_TOKEN_SIGNINGALGORITHMS_0", "ES256"),
                ("REGISTRY_AUTH_TOKEN_SIGNINGALGORITHMS_1", "EdDSA"),
            ],
        )
        .unwrap();
        assert_eq!(l.config.auth.token.signingalgorithms, ["ES256", "EdDSA"]);
        let e = load_str(text, &[("REGISTRY_AUTH_TOKEN_SIGNINGALGORITHMS_5", "x")]).unwrap();
        assert!(
            e.config
                .warnings
                .iter()
                .any(|w| w.contains("undefined index 5")),
            "{:?}",
            e.config.warnings
        );
    }

    #[test]
    fn refusals_name_their_key() {
        for (text, key) in [
            ("version: 0.1\nstorage: {gcs: {bucket: b}}\n", "storage.gcs"),
            ("version: 0.1\nstorage: {azure: {}}\n", "storage.azure"),
            ("version: 0.1\nstorage: {filesystem: {}, s3: {}}\n", "storage"),
            ("version: 0.1\nstorage: {filesystem: {}}\nauth: {silly: {realm: r, service: s}}\n", "auth.silly"),
            ("version: 0.1\nstorage: {filesystem: {}}\nauth: {htpasswd: {path: /p}}\n", "auth.htpasswd.realm"),
            ("version: 0.1\nstorage: {filesystem: {}}\nhttp: {tls: {certificate: c, key: k, clientcas: [ca]}}\n", "http.tls.clientcas"),
            ("version: 0.1\nstorage: {s3: {bucket: b, encrypt: true}}\n", "storage.s3.encrypt"),
            ("version: 0.1\nstorage: {filesystem: {}}\nhttp: {prefix: /registry}\n", "http.prefix"),
            ("version: 0.2\nstorage: {filesystem: {}}\n", "version"),
        ] {
            let e = load_str(text, &[]).unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
        let e = load_str(
            "version: 0.1\nstorage: {filesystem: {}}\n",
            &[("REGISTRY_AUTH_SILLY_REALM", "r")],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("REGISTRY_AUTH_SILLY_REALM"), "{e}");
    }

    #[test]
    fn no_auth_section_is_open_with_a_warning_and_unknown_keys_warn() {
        let l = load_str(
            "version: 0.1\nstorage: {filesystem: {}}\nhttp: {adress: x}\n",
            &[],
        )
        .unwrap();
        assert_eq!(l.config.auth.mode, AuthMode::None);
        let w = l.config.warnings.join("\n");
        assert!(w.contains("http.adress: not a key"), "{w}");
        assert!(w.contains("auth: not set"), "{w}");
    }

    #[test]
    fn secrets_are_masked() {
        let l = load_str(
            "version: 0.1\nstorage: {s3: {bucket: b, region: r, accesskey: AK, secretkey: SK}}\nhttp: {secret: hush}\n",
            &[],
        )
        .unwrap();
        let text = format!("{:?}", l.rows());
        assert!(
            !text.contains("SK") && !text.contains("hush") && !text.contains("\"AK\""),
            "{text}"
        );
        assert!(text.contains("********"));
    }

    #[test]
    fn detects_yaml_files() {
        assert!(is_distribution_file(Path::new("/etc/x/config.yml"), ""));
        assert!(is_distribution_file(Path::new("c"), "# hi\nversion: 0.1\n"));
        assert!(!is_distribution_file(
            Path::new("c.toml"),
            "[http]\naddr = \":5000\"\n"
        ));
    }
}
