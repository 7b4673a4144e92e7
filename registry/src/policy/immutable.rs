//! Immutable tags: once a tag a rule protects points at a digest, a push of
//! another digest to it, its deletion and the deletion of the manifest it
//! names are refused (409 `DENIED`, naming the rule). Pushing the same
//! digest again is accepted, so CI re-runs stay idempotent.

use crate::config::ImmutableRule;
use crate::glob::glob_match;

#[derive(Debug, Default)]
pub struct Immutable {
    rules: Vec<ImmutableRule>,
}

/// The rule that protects a tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protection {
    /// `policies.immutable[<i>]`, with the rule's repository and patterns,
    /// for the error message.
    pub rule: String,
    pub admin_override: bool,
}

impl Protection {
    /// Just `policies.immutable[<i>]`.
    pub fn rule_name(&self) -> &str {
        self.rule.split(" (").next().unwrap_or(&self.rule)
    }

    /// Whether `admin` (the requester is an `[acl] admins` member) lifts it.
    pub fn binds(&self, admin: bool) -> bool {
        !(admin && self.admin_override)
    }
}

fn matches_any(patterns: &[String], tag: &str) -> bool {
    patterns
        .iter()
        .any(|p| glob_match(p.as_bytes(), tag.as_bytes()))
}

impl Immutable {
    pub fn new(rules: Vec<ImmutableRule>) -> Immutable {
        Immutable { rules }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The first rule (in config order) that protects `tag` in
    /// `repository`: its repository glob and a tag pattern match, and none
    /// of its exceptions does.
    pub fn protection(&self, repository: &str, tag: &str) -> Option<Protection> {
        self.rules.iter().enumerate().find_map(|(i, r)| {
            let applies = glob_match(r.repository.as_bytes(), repository.as_bytes())
                && matches_any(&r.tags, tag)
                && !matches_any(&r.exceptions, tag);
            applies.then(|| Protection {
                rule: format!(
                    "policies.immutable[{i}] (repository {:?}, tags {:?}{})",
                    r.repository,
                    r.tags,
                    if r.exceptions.is_empty() {
                        String::new()
                    } else {
                        format!(", exceptions {:?}", r.exceptions)
                    }
                ),
                admin_override: r.admin_override,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(repository: &str, tags: &[&str], exceptions: &[&str]) -> ImmutableRule {
        ImmutableRule {
            repository: repository.into(),
            tags: tags.iter().map(|s| s.to_string()).collect(),
            exceptions: exceptions.iter().map(|s| s.to_string()).collect(),
            admin_override: false,
        }
    }

    #[test]
    fn patterns_and_exceptions() {
        let p = Immutable::new(vec![
            rule("team-a/**", &["v*", "release-*"], &["latest", "*-rc*"]),
            rule("exact", &["*"], &[]),
        ]);
        for (repo, tag, protected) in [
            ("team-a/app", "v1.0.0", true),
            ("team-a/x/y", "release-2024", true),
            ("team-a/app", "v1.0.0-rc1", false),
            ("team-a/app", "latest", false),
            ("team-a/app", "main", false),
            ("team-b/app", "v1.0.0", false),
            ("team-a", "v1", false),
            ("exact", "anything", true),
            ("exact/sub", "anything", false),
        ] {
            assert_eq!(p.protection(repo, tag).is_some(), protected, "{repo}:{tag}");
        }
        let found = p.protection("team-a/app", "v2").unwrap();
        assert!(
            found.rule.starts_with("policies.immutable[0]"),
            "{}",
            found.rule
        );
        assert!(found.binds(true) && found.binds(false));
    }
}
