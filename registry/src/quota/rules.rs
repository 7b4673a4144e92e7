//! Quota rules: which limits a repository is under. A `namespace` rule
//! covers every repository under the namespace together, a `repository`
//! rule (a glob) each matching repository on its own, and
//! `total_max_bytes` the whole registry; every rule that applies must
//! allow a write. What is counted and where it is kept: `crate::quota`.

use std::fmt;

use crate::config;
use crate::glob::glob_match;

/// What one usage figure covers. A blob counts once per scope, however
/// many of the scope's repositories link it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScopeKey {
    /// `team-a`: `team-a` and every repository under `team-a/`.
    Namespace(String),
    /// One repository (of a `repository` glob rule).
    Repository(String),
    /// Every repository.
    Total,
}

impl ScopeKey {
    /// Whether `repository` is in the scope.
    pub fn contains(&self, repository: &str) -> bool {
        match self {
            ScopeKey::Namespace(ns) => {
                repository == ns
                    || repository
                        .strip_prefix(ns.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            }
            ScopeKey::Repository(r) => r == repository,
            ScopeKey::Total => true,
        }
    }

    /// The repository-name prefix whose repositories may be in the scope
    /// (None: all of them).
    pub fn prefix(&self) -> Option<&str> {
        match self {
            ScopeKey::Namespace(n) | ScopeKey::Repository(n) => Some(n),
            ScopeKey::Total => None,
        }
    }
}

impl fmt::Display for ScopeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScopeKey::Namespace(n) => write!(f, "namespace {n}"),
            ScopeKey::Repository(r) => write!(f, "repository {r}"),
            ScopeKey::Total => f.write_str("all repositories"),
        }
    }
}

/// One limit that applies to a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    /// `policies.quota[<i>]` or `policies.total_max_bytes`.
    pub rule: String,
    pub scope: ScopeKey,
    pub max_bytes: Option<u64>,
    pub max_repositories: Option<u64>,
}

/// The quota rules in force.
#[derive(Debug, Default, Clone)]
pub struct Quotas {
    rules: Vec<config::QuotaRule>,
    total_max_bytes: Option<u64>,
}

impl Quotas {
    pub fn new(rules: Vec<config::QuotaRule>, total_max_bytes: Option<u64>) -> Quotas {
        Quotas {
            rules,
            total_max_bytes,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.total_max_bytes.is_none()
    }

    /// Every limit `repository` is under, in config order (the total last).
    pub fn limits(&self, repository: &str) -> Vec<Limit> {
        let mut limits: Vec<Limit> = self
            .rules
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let scope = match (&r.namespace, &r.repository) {
                    (Some(ns), _) => {
                        let scope = ScopeKey::Namespace(ns.clone());
                        scope.contains(repository).then_some(scope)?
                    }
                    (None, Some(glob)) => glob_match(glob.as_bytes(), repository.as_bytes())
                        .then(|| ScopeKey::Repository(repository.to_string()))?,
                    (None, None) => return None,
                };
                Some(Limit {
                    rule: format!("policies.quota[{i}]"),
                    scope,
                    max_bytes: r.max_bytes,
                    max_repositories: r.max_repositories,
                })
            })
            .collect();
        if let Some(max) = self.total_max_bytes {
            limits.push(Limit {
                rule: "policies.total_max_bytes".into(),
                scope: ScopeKey::Total,
                max_bytes: Some(max),
                max_repositories: None,
            });
        }
        limits
    }

    /// The scopes whose bytes are counted for `repository` (those of the
    /// limits on bytes).
    pub fn counted_scopes(&self, repository: &str) -> Vec<ScopeKey> {
        let mut scopes: Vec<ScopeKey> = self
            .limits(repository)
            .into_iter()
            .filter(|l| l.max_bytes.is_some())
            .map(|l| l.scope)
            .collect();
        scopes.sort();
        scopes.dedup();
        scopes
    }

    /// The scopes that can be named without knowing the repositories
    /// (namespaces and the total), and the globs of the per-repository
    /// rules, for whole-registry passes (`registry usage`, after GC).
    pub fn fixed_scopes(&self) -> (Vec<Limit>, Vec<(String, config::QuotaRule)>) {
        let mut fixed = Vec::new();
        let mut globs = Vec::new();
        for (i, r) in self.rules.iter().enumerate() {
            let rule = format!("policies.quota[{i}]");
            match (&r.namespace, &r.repository) {
                (Some(ns), _) => fixed.push(Limit {
                    rule,
                    scope: ScopeKey::Namespace(ns.clone()),
                    max_bytes: r.max_bytes,
                    max_repositories: r.max_repositories,
                }),
                (None, Some(_)) => globs.push((rule, r.clone())),
                (None, None) => {}
            }
        }
        if let Some(max) = self.total_max_bytes {
            fixed.push(Limit {
                rule: "policies.total_max_bytes".into(),
                scope: ScopeKey::Total,
                max_bytes: Some(max),
                max_repositories: None,
            });
        }
        (fixed, globs)
    }

    /// The limits of a per-repository rule over the repositories that
    /// exist (`names`).
    pub fn repository_limits(&self, names: &[String]) -> Vec<Limit> {
        let (_, globs) = self.fixed_scopes();
        let mut limits = Vec::new();
        for name in names {
            for (rule, r) in &globs {
                let glob = r.repository.as_deref().unwrap_or_default();
                if glob_match(glob.as_bytes(), name.as_bytes()) {
                    limits.push(Limit {
                        rule: rule.clone(),
                        scope: ScopeKey::Repository(name.clone()),
                        max_bytes: r.max_bytes,
                        max_repositories: None,
                    });
                }
            }
        }
        limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(namespace: Option<&str>, repository: Option<&str>, bytes: u64) -> config::QuotaRule {
        config::QuotaRule {
            namespace: namespace.map(Into::into),
            repository: repository.map(Into::into),
            max_bytes: Some(bytes),
            max_repositories: None,
        }
    }

    #[test]
    fn which_limits_apply() {
        let q = Quotas::new(
            vec![
                rule(Some("team-a"), None, 10),
                rule(None, Some("ci/*"), 20),
                rule(Some("team-a/big"), None, 30),
            ],
            Some(100),
        );
        let cases: [(&str, &[(&str, ScopeKey)]); 6] = [
            (
                "team-a/app",
                &[
                    ("policies.quota[0]", ScopeKey::Namespace("team-a".into())),
                    ("policies.total_max_bytes", ScopeKey::Total),
                ],
            ),
            (
                "team-a",
                &[
                    ("policies.quota[0]", ScopeKey::Namespace("team-a".into())),
                    ("policies.total_max_bytes", ScopeKey::Total),
                ],
            ),
            (
                "team-ab/app",
                &[("policies.total_max_bytes", ScopeKey::Total)],
            ),
            (
                "team-a/big/x",
                &[
                    ("policies.quota[0]", ScopeKey::Namespace("team-a".into())),
                    (
                        "policies.quota[2]",
                        ScopeKey::Namespace("team-a/big".into()),
                    ),
                    ("policies.total_max_bytes", ScopeKey::Total),
                ],
            ),
            (
                "ci/web",
                &[
                    ("policies.quota[1]", ScopeKey::Repository("ci/web".into())),
                    ("policies.total_max_bytes", ScopeKey::Total),
                ],
            ),
            (
                "ci/web/sub",
                &[("policies.total_max_bytes", ScopeKey::Total)],
            ),
        ];
        for (repo, expected) in cases {
            let got: Vec<(String, ScopeKey)> = q
                .limits(repo)
                .into_iter()
                .map(|l| (l.rule, l.scope))
                .collect();
            let expected: Vec<(String, ScopeKey)> = expected
                .iter()
                .map(|(r, s)| (r.to_string(), s.clone()))
                .collect();
            assert_eq!(got, expected, "{repo}");
        }
        assert!(Quotas::default().is_empty());
        assert!(Quotas::default().limits("a").is_empty());
    }
}
