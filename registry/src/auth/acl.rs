//! Who may do what where: rules by repository glob naming users and
//! groups per action (pull, push, delete). The most specific matching rule
//! decides; admins may do everything; anonymous requests get what a rule's
//! `anonymous` list (or the top-level one) grants, by default nothing.
//!
//! Without an `[acl]` section every authenticated user may do everything
//! and anonymous requests nothing: the behaviour of htpasswd mode before
//! ACLs existed.

use std::collections::{BTreeMap, HashSet};

use super::access::Actions;
pub use crate::config::{AclAction as Action, AclConfig, RuleConfig};
use crate::glob::glob_match;

impl Action {
    fn actions(self) -> Actions {
        match self {
            Action::Pull => Actions::PULL,
            Action::Push => Actions::PUSH,
            Action::Delete => Actions::DELETE,
        }
    }
}

fn fold(list: &[Action]) -> Actions {
    list.iter()
        .map(|a| a.actions())
        .fold(Actions::NONE, Actions::union)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Principal {
    Everyone,
    User(String),
    Group(String),
}

impl Principal {
    fn parse(s: &str) -> Principal {
        if s == "*" {
            Principal::Everyone
        } else if let Some(g) = s.strip_prefix('@') {
            Principal::Group(g.to_owned())
        } else {
            Principal::User(s.to_owned())
        }
    }
}

#[derive(Debug)]
struct Rule {
    pattern: String,
    /// Exact names beat globs; then more literal characters win.
    specificity: (bool, usize),
    grants: Vec<(Actions, Vec<Principal>)>,
    anonymous: Actions,
}

#[derive(Debug)]
pub struct Acl {
    /// False when no `[acl]` section exists: authenticated users may do
    /// everything.
    configured: bool,
    admins: Vec<Principal>,
    default: Actions,
    anonymous: Actions,
    catalog: Vec<Principal>,
    groups: BTreeMap<String, HashSet<String>>,
    rules: Vec<Rule>,
}

impl Acl {
    /// Every authenticated user may do everything; anonymous nothing.
    pub fn open_to_users() -> Acl {
        Acl {
            configured: false,
            admins: Vec::new(),
            default: Actions::ALL,
            anonymous: Actions::NONE,
            catalog: vec![Principal::Everyone],
            groups: BTreeMap::new(),
            rules: Vec::new(),
        }
    }

    /// Builds the ACL from a configuration that `AclConfig::validate`
    /// accepts (checked again here, so a caller cannot skip it); errors
    /// name the key.
    pub fn from_config(config: Option<&AclConfig>) -> Result<Acl, (String, String)> {
        let Some(config) = config else {
            return Ok(Acl::open_to_users());
        };
        config.validate()?;
        let principals = |list: &[String]| list.iter().map(|s| Principal::parse(s)).collect();
        let rules = config
            .rules
            .iter()
            .map(|r| {
                let p = r.repository.as_str();
                let literal = p.bytes().filter(|b| !matches!(b, b'*' | b'?')).count();
                Rule {
                    pattern: p.to_owned(),
                    specificity: (literal == p.len(), literal),
                    grants: vec![
                        (Actions::PULL, principals(&r.pull)),
                        (Actions::PUSH, principals(&r.push)),
                        (Actions::DELETE, principals(&r.delete)),
                    ],
                    anonymous: fold(&r.anonymous),
                }
            })
            .collect();
        Ok(Acl {
            configured: true,
            admins: principals(&config.admins),
            default: fold(&config.default),
            anonymous: fold(&config.anonymous),
            catalog: principals(&config.catalog),
            groups: config
                .groups
                .iter()
                .map(|(g, users)| (g.clone(), users.iter().cloned().collect()))
                .collect(),
            rules,
        })
    }

    fn names(&self, principals: &[Principal], user: &str) -> bool {
        principals.iter().any(|p| match p {
            Principal::Everyone => true,
            Principal::User(u) => u == user,
            Principal::Group(g) => self.groups.get(g).is_some_and(|m| m.contains(user)),
        })
    }

    pub fn is_admin(&self, user: Option<&str>) -> bool {
        user.is_some_and(|u| self.names(&self.admins, u))
    }

    /// The most specific rule matching `repository`.
    fn rule_for(&self, repository: &str) -> Option<&Rule> {
        let mut best: Option<&Rule> = None;
        for rule in &self.rules {
            if glob_match(rule.pattern.as_bytes(), repository.as_bytes())
                && best.is_none_or(|b| rule.specificity > b.specificity)
            {
                best = Some(rule);
            }
        }
        best
    }

    /// What `user` (`None`: anonymous) may do on `repository`.
    pub fn actions(&self, user: Option<&str>, repository: &str) -> Actions {
        if self.is_admin(user) {
            return Actions::ALL;
        }
        match (self.rule_for(repository), user) {
            (Some(rule), Some(user)) => rule
                .grants
                .iter()
                .filter(|(_, who)| self.names(who, user))
                .fold(Actions::NONE, |acc, (a, _)| acc.union(*a)),
            (Some(rule), None) => rule.anonymous,
            (None, Some(_)) => self.default,
            (None, None) => self.anonymous,
        }
    }

    /// Whether `user` may list the catalog.
    pub fn catalog(&self, user: Option<&str>) -> bool {
        match user {
            Some(u) => self.is_admin(Some(u)) || self.names(&self.catalog, u),
            None => false,
        }
    }

    /// Whether `user` may pull every repository there is or will be: the
    /// condition for mounting a blob without naming where it comes from
    /// (which would otherwise reveal content of repositories the user
    /// cannot read).
    pub fn pulls_everything(&self, user: Option<&str>) -> bool {
        if self.is_admin(user) {
            return true;
        }
        let default = if user.is_some() {
            self.default
        } else {
            self.anonymous
        };
        default.contains(Actions::PULL)
            && self.rules.iter().all(|r| match user {
                Some(u) => r
                    .grants
                    .iter()
                    .any(|(a, who)| *a == Actions::PULL && self.names(who, u)),
                None => r.anonymous.contains(Actions::PULL),
            })
    }

    pub fn is_configured(&self) -> bool {
        self.configured
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(toml_text: &str) -> Acl {
        let config: AclConfig = toml::from_str(toml_text).unwrap();
        Acl::from_config(Some(&config)).unwrap()
    }

    const TEAMS: &str = r#"
        admins = ["root"]
        default = ["pull"]
        catalog = ["@ops"]
        [groups]
        team-a = ["alice", "carol"]
        ops = ["olga"]
        [[rules]]
        repository = "team-a/**"
        pull = ["*"]
        push = ["@team-a"]
        delete = ["alice"]
        [[rules]]
        repository = "team-a/secret"
        pull = ["alice"]
        push = ["alice"]
        [[rules]]
        repository = "public/**"
        pull = ["*"]
        anonymous = ["pull"]
        [[rules]]
        repository = "team-b/**"
        push = ["bob"]
        pull = ["bob"]
    "#;

    #[test]
    fn most_specific_rule_wins() {
        let a = acl(TEAMS);
        let all = Actions::ALL;
        let pull = Actions::PULL;
        let pull_push = Actions::PULL.union(Actions::PUSH);
        assert_eq!(a.actions(Some("alice"), "team-a/app"), all);
        assert_eq!(a.actions(Some("carol"), "team-a/app"), pull_push);
        assert_eq!(a.actions(Some("bob"), "team-a/app"), pull);
        // The exact rule overrides the glob: carol loses push and pull.
        assert_eq!(a.actions(Some("carol"), "team-a/secret"), Actions::NONE);
        assert_eq!(a.actions(Some("alice"), "team-a/secret"), pull_push);
        assert_eq!(a.actions(Some("alice"), "team-b/app"), Actions::NONE);
        assert_eq!(a.actions(Some("bob"), "team-b/app"), pull_push);
        // No rule: the default.
        assert_eq!(a.actions(Some("alice"), "elsewhere"), pull);
        assert_eq!(a.actions(Some("root"), "team-b/app"), all);
        // Anonymous: only where a rule says so.
        assert_eq!(a.actions(None, "public/x"), pull);
        assert_eq!(a.actions(None, "team-a/app"), Actions::NONE);
        assert_eq!(a.actions(None, "elsewhere"), Actions::NONE);
        assert!(a.catalog(Some("olga")));
        assert!(a.catalog(Some("root")));
        assert!(!a.catalog(Some("alice")));
        assert!(!a.catalog(None));
        assert!(a.pulls_everything(Some("root")));
        assert!(!a.pulls_everything(Some("alice")));
        assert!(!a.pulls_everything(None));
    }

    #[test]
    fn without_a_section_users_may_do_everything() {
        let a = Acl::from_config(None).unwrap();
        assert_eq!(a.actions(Some("anyone"), "x/y"), Actions::ALL);
        assert_eq!(a.actions(None, "x/y"), Actions::NONE);
        assert!(a.catalog(Some("anyone")));
        assert!(a.pulls_everything(Some("anyone")));
        assert!(!a.pulls_everything(None));
    }

    #[test]
    fn configured_section_defaults_to_nothing() {
        let a = acl("");
        assert_eq!(a.actions(Some("alice"), "x"), Actions::NONE);
        assert!(!a.catalog(Some("alice")));
    }

    #[test]
    fn bad_config_names_its_key() {
        let config: AclConfig =
            toml::from_str("[[rules]]\nrepository = \"a/**\"\npush = [\"@nobody\"]").unwrap();
        let (key, message) = Acl::from_config(Some(&config)).unwrap_err();
        assert_eq!(key, "acl.rules[0].push");
        assert!(message.contains("nobody"), "{message}");
        let config: AclConfig = toml::from_str("[[rules]]\nrepository = \"A/**\"").unwrap();
        assert_eq!(
            Acl::from_config(Some(&config)).unwrap_err().0,
            "acl.rules[0].repository"
        );
        assert!(toml::from_str::<AclConfig>("default = [\"write\"]").is_err());
    }
}
