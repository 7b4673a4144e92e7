//! What a request needs: actions (pull, push, delete) on resources (a
//! repository, or the catalog), derived from the route and method the way
//! registry:2 derives token scopes, and the scope strings of Docker's token
//! spec (`repository:team/app:pull,push`, `registry:catalog:*`).

use std::fmt;

use axum::http::Method;

use crate::oci::RepoName;
use crate::protocol::route::{self, Route};

/// A set of actions on one resource.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Actions(u8);

impl Actions {
    pub const NONE: Actions = Actions(0);
    pub const PULL: Actions = Actions(1);
    pub const PUSH: Actions = Actions(2);
    pub const DELETE: Actions = Actions(4);
    pub const ALL: Actions = Actions(7);

    pub fn contains(self, other: Actions) -> bool {
        self.0 & other.0 == other.0
    }
    pub fn union(self, other: Actions) -> Actions {
        Actions(self.0 | other.0)
    }
    pub fn intersect(self, other: Actions) -> Actions {
        Actions(self.0 & other.0)
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// One action name of a scope or an ACL; `*` means all of them.
    pub fn parse_one(name: &str) -> Option<Actions> {
        match name {
            "pull" => Some(Actions::PULL),
            "push" => Some(Actions::PUSH),
            "delete" => Some(Actions::DELETE),
            "*" => Some(Actions::ALL),
            _ => None,
        }
    }

    /// A comma-separated list; unknown names are ignored (registry:2 does
    /// the same, and they grant nothing).
    pub fn parse_list(list: &str) -> Actions {
        list.split(',')
            .filter_map(|a| Actions::parse_one(a.trim()))
            .fold(Actions::NONE, Actions::union)
    }

    pub fn names(self) -> Vec<&'static str> {
        [
            (Actions::PULL, "pull"),
            (Actions::PUSH, "push"),
            (Actions::DELETE, "delete"),
        ]
        .into_iter()
        .filter(|(a, _)| self.contains(*a))
        .map(|(_, n)| n)
        .collect()
    }
}

impl fmt::Display for Actions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(","))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    Repository(RepoName),
    /// `registry:catalog:*`: listing every repository.
    Catalog,
}

/// Actions needed (or granted) on one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub resource: Resource,
    pub actions: Actions,
}

impl Access {
    /// The scope string of the token spec.
    pub fn scope(&self) -> String {
        match &self.resource {
            Resource::Repository(name) => format!("repository:{name}:{}", self.actions),
            Resource::Catalog => "registry:catalog:*".to_owned(),
        }
    }
}

/// What a `/v2` request needs before a handler may see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needed {
    /// Empty for `/v2/` itself (and for paths that are no resource): then
    /// only authentication is needed, and the handler answers.
    pub accesses: Vec<Access>,
    /// The route, when the path names one.
    pub route: Option<Route>,
}

/// Derives the access a request needs from its method and path, as
/// registry:2 does: GET/HEAD → pull; POST/PUT/PATCH → pull,push;
/// DELETE → delete; the catalog → `registry:catalog:*`. Cancelling an
/// upload (DELETE on an upload session) needs push, not delete: it removes
/// only the caller's own unfinished upload, never content.
pub fn needed(method: &Method, path: &str) -> Needed {
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Needed {
            accesses: Vec::new(),
            route: None,
        };
    };
    let Ok(route) = route::parse(rest) else {
        return Needed {
            accesses: Vec::new(),
            route: None,
        };
    };
    let by_method = match *method {
        Method::GET | Method::HEAD => Actions::PULL,
        Method::DELETE => Actions::DELETE,
        _ => Actions::PULL.union(Actions::PUSH),
    };
    let repository = |name: &RepoName, actions| Access {
        resource: Resource::Repository(name.clone()),
        actions,
    };
    let accesses = match &route {
        Route::Catalog | Route::ExtRepositories => vec![Access {
            resource: Resource::Catalog,
            actions: Actions::ALL,
        }],
        Route::Upload(name, _) if *method == Method::DELETE => {
            vec![repository(name, Actions::PUSH)]
        }
        Route::Tags(name)
        | Route::ExtTags(name)
        | Route::Manifest(name, _)
        | Route::Blob(name, _)
        | Route::UploadStart(name)
        | Route::Upload(name, _)
        | Route::Referrers(name, _)
        | Route::Repository(name) => vec![repository(name, by_method)],
    };
    Needed {
        accesses,
        route: Some(route),
    }
}

/// One scope the client asked a token for (`type:name:actions`). The
/// resource class suffix (`repository(plugin)`) is dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedScope {
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl RequestedScope {
    /// Parses one scope; `None` for one that is malformed (ignored, as
    /// registry:2's and docker_auth's token servers do).
    pub fn parse(scope: &str) -> Option<RequestedScope> {
        let (kind, rest) = scope.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        let kind = kind.split('(').next().unwrap_or(kind);
        if kind.is_empty() || name.is_empty() {
            return None;
        }
        Some(RequestedScope {
            kind: kind.to_owned(),
            name: name.to_owned(),
            actions: actions
                .split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect(),
        })
    }

    /// Every scope in `values`, each of which may hold several separated by
    /// spaces (the OAuth2 form) or be one of several `scope=` parameters
    /// (the GET form).
    pub fn parse_all<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<RequestedScope> {
        values
            .into_iter()
            .flat_map(str::split_whitespace)
            .filter_map(RequestedScope::parse)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> RepoName {
        s.parse().unwrap()
    }

    fn scopes(method: Method, path: &str) -> Vec<String> {
        needed(&method, path)
            .accesses
            .iter()
            .map(Access::scope)
            .collect()
    }

    #[test]
    fn scopes_follow_the_request() {
        assert!(scopes(Method::GET, "/v2/").is_empty());
        assert_eq!(scopes(Method::GET, "/v2/_catalog"), ["registry:catalog:*"]);
        assert_eq!(
            scopes(Method::GET, "/v2/a/b/manifests/latest"),
            ["repository:a/b:pull"]
        );
        assert_eq!(
            scopes(Method::HEAD, "/v2/a/blobs/sha256:00"),
            ["repository:a:pull"]
        );
        assert_eq!(
            scopes(Method::PUT, "/v2/a/manifests/v1"),
            ["repository:a:pull,push"]
        );
        assert_eq!(
            scopes(Method::POST, "/v2/a/blobs/uploads/"),
            ["repository:a:pull,push"]
        );
        assert_eq!(
            scopes(Method::PATCH, "/v2/a/blobs/uploads/x"),
            ["repository:a:pull,push"]
        );
        assert_eq!(
            scopes(Method::DELETE, "/v2/a/manifests/v1"),
            ["repository:a:delete"]
        );
        assert_eq!(
            scopes(Method::DELETE, "/v2/a/blobs/uploads/x"),
            ["repository:a:push"]
        );
        assert_eq!(
            scopes(Method::GET, "/v2/a/tags/list"),
            ["repository:a:pull"]
        );
        assert!(scopes(Method::GET, "/v2/Bad/tags/list").is_empty());
        assert_eq!(
            needed(&Method::GET, "/v2/a/tags/list").route,
            Some(Route::Tags(name("a")))
        );
    }

    #[test]
    fn requested_scopes_parse() {
        let s = RequestedScope::parse_all([
            "repository:team/app:pull,push registry:catalog:*",
            "repository(plugin):x:pull",
            "garbage",
            "repository::pull",
        ]);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].kind, "repository");
        assert_eq!(s[0].name, "team/app");
        assert_eq!(s[0].actions, ["pull", "push"]);
        assert_eq!(s[1].kind, "registry");
        assert_eq!(s[1].actions, ["*"]);
        assert_eq!(s[2].kind, "repository");
        assert_eq!(s[2].name, "x");
    }

    #[test]
    fn action_sets() {
        assert_eq!(Actions::parse_list("pull,push"), Actions(3));
        assert_eq!(Actions::parse_list("*"), Actions::ALL);
        assert_eq!(Actions::parse_list("bogus"), Actions::NONE);
        assert_eq!(Actions::ALL.to_string(), "pull,push,delete");
        assert!(Actions::ALL.contains(Actions::PUSH));
        assert!(!Actions::PULL.contains(Actions::PUSH));
    }
}
