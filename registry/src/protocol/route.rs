//! Parses `/v2/<rest>` into a resource. Repository names have any number of
//! components, so the path is read from its end: the last one or two
//! components say what the resource is, everything before is the name.

use crate::oci::name::{NameError, RepoName};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Catalog,
    Tags(RepoName),
    Manifest(RepoName, String),
    Blob(RepoName, String),
    UploadStart(RepoName),
    Upload(RepoName, String),
    Referrers(RepoName, String),
    /// `/v2/_ext/repositories`: the catalog with sizes and push times.
    ExtRepositories,
    /// `/v2/<name>/_ext/tags`: tags with digest, size and push time.
    ExtTags(RepoName),
    /// `_ext/repositories/<name>`: the whole repository (DELETE).
    Repository(RepoName),
}

impl Route {
    /// A short label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Route::Catalog => "catalog",
            Route::Tags(_) => "tags",
            Route::Manifest(..) => "manifest",
            Route::Blob(..) => "blob",
            Route::UploadStart(_) => "upload_start",
            Route::Upload(..) => "upload",
            Route::Referrers(..) => "referrers",
            Route::ExtRepositories => "ext_repositories",
            Route::ExtTags(_) => "ext_tags",
            Route::Repository(_) => "repository",
        }
    }

    /// The route as OpenTelemetry's `http.route`: the path with its
    /// variable parts named, so spans of one endpoint group together.
    pub fn template(&self) -> &'static str {
        match self {
            Route::Catalog => "/v2/_catalog",
            Route::Tags(_) => "/v2/{name}/tags/list",
            Route::Manifest(..) => "/v2/{name}/manifests/{reference}",
            Route::Blob(..) => "/v2/{name}/blobs/{digest}",
            Route::UploadStart(_) => "/v2/{name}/blobs/uploads/",
            Route::Upload(..) => "/v2/{name}/blobs/uploads/{uuid}",
            Route::Referrers(..) => "/v2/{name}/referrers/{digest}",
            Route::ExtRepositories => "/v2/_ext/repositories",
            Route::ExtTags(_) => "/v2/{name}/_ext/tags",
            Route::Repository(_) => "/v2/_ext/repositories/{name}",
        }
    }

    /// The repository the request is about, if any.
    pub fn repository(&self) -> Option<&RepoName> {
        match self {
            Route::Catalog | Route::ExtRepositories => None,
            Route::Tags(n)
            | Route::Manifest(n, _)
            | Route::Blob(n, _)
            | Route::UploadStart(n)
            | Route::Upload(n, _)
            | Route::Referrers(n, _)
            | Route::ExtTags(n)
            | Route::Repository(n) => Some(n),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum RouteError {
    NoSuchEndpoint,
    Name(NameError),
}

/// `rest` is the raw (still percent-encoded) path after `/v2/`, so an encoded
/// slash or dot never becomes a name separator.
pub fn parse(rest: &str) -> Result<Route, RouteError> {
    if rest == "_catalog" {
        return Ok(Route::Catalog);
    }
    if rest == "_ext/repositories" {
        return Ok(Route::ExtRepositories);
    }
    if let Some(name) = rest.strip_prefix("_ext/repositories/") {
        return name
            .parse()
            .map(Route::Repository)
            .map_err(RouteError::Name);
    }
    let parts: Vec<&str> = rest.split('/').collect();
    let n = parts.len();
    let name_of = |k: usize| -> Result<RepoName, RouteError> {
        if n <= k {
            return Err(RouteError::NoSuchEndpoint);
        }
        parts[..n - k].join("/").parse().map_err(RouteError::Name)
    };
    let last = |i: usize| parts.get(n.wrapping_sub(i)).copied();
    let owned = |s: Option<&str>| s.unwrap_or_default().to_owned();
    match (last(3), last(2), last(1)) {
        (Some("blobs"), Some("uploads"), Some("")) => Ok(Route::UploadStart(name_of(3)?)),
        (Some("blobs"), Some("uploads"), id) => Ok(Route::Upload(name_of(3)?, owned(id))),
        (_, Some("blobs"), Some("uploads")) => Ok(Route::UploadStart(name_of(2)?)),
        (_, Some("tags"), Some("list")) => Ok(Route::Tags(name_of(2)?)),
        (_, Some("_ext"), Some("tags")) => Ok(Route::ExtTags(name_of(2)?)),
        (_, Some("manifests"), r) => Ok(Route::Manifest(name_of(2)?, owned(r))),
        (_, Some("blobs"), d) => Ok(Route::Blob(name_of(2)?, owned(d))),
        (_, Some("referrers"), d) => Ok(Route::Referrers(name_of(2)?, owned(d))),
        _ => Err(RouteError::NoSuchEndpoint),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> RepoName {
        s.parse().unwrap()
    }

    #[test]
    fn parses_from_the_right() {
        assert_eq!(parse("_catalog"), Ok(Route::Catalog));
        assert_eq!(
            parse("_ext/repositories/a/b"),
            Ok(Route::Repository(name("a/b")))
        );
        assert_eq!(parse("a/b/c/tags/list"), Ok(Route::Tags(name("a/b/c"))));
        assert_eq!(
            parse("a/manifests/b/manifests/latest"),
            Ok(Route::Manifest(name("a/manifests/b"), "latest".into()))
        );
        assert_eq!(
            parse("x/y/blobs/uploads/"),
            Ok(Route::UploadStart(name("x/y")))
        );
        assert_eq!(
            parse("x/y/blobs/uploads"),
            Ok(Route::UploadStart(name("x/y")))
        );
        assert_eq!(
            parse("x/blobs/uploads/abc"),
            Ok(Route::Upload(name("x"), "abc".into()))
        );
        assert_eq!(
            parse("blobs/blobs/sha256:1"),
            Ok(Route::Blob(name("blobs"), "sha256:1".into()))
        );
        assert_eq!(
            parse("r/referrers/sha256:1"),
            Ok(Route::Referrers(name("r"), "sha256:1".into()))
        );
        assert_eq!(parse("_ext/repositories"), Ok(Route::ExtRepositories));
        assert_eq!(parse("a/b/_ext/tags"), Ok(Route::ExtTags(name("a/b"))));
    }

    #[test]
    fn refuses_bad_names_and_unknown_paths() {
        assert!(matches!(parse("../x/tags/list"), Err(RouteError::Name(_))));
        assert!(matches!(parse("A/tags/list"), Err(RouteError::Name(_))));
        assert!(matches!(parse("a%2fb/tags/list"), Err(RouteError::Name(_))));
        assert_eq!(parse("tags/list"), Err(RouteError::NoSuchEndpoint));
        assert_eq!(parse("a/b"), Err(RouteError::NoSuchEndpoint));
        assert_eq!(parse(""), Err(RouteError::NoSuchEndpoint));
    }
}
