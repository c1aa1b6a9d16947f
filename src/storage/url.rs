//! Repository URLs: `file:///absolute/path`, `s3://bucket/prefix` and
//! `az://container/prefix` (or `azure://`).

use crate::error::{Error, Result};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoUrl {
    File(PathBuf),
    S3 {
        bucket: String,
        prefix: String,
    },
    /// Azure Blob Storage: a container of the account the environment names.
    Azure {
        container: String,
        prefix: String,
    },
}

const URL_HINT: &str =
    "a repository is file:///absolute/path, s3://bucket/prefix or az://container/prefix";

impl RepoUrl {
    /// Whether the repository is reached over the network (every backend
    /// but a filesystem path): its requests are retried and listed a page
    /// at a time.
    pub fn is_remote(&self) -> bool {
        !matches!(self, RepoUrl::File(_))
    }
}

/// Azure's rule for container names (the URL parser has lower-cased it).
fn is_container_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

/// The bucket (or container) and prefix of an object-store URL.
fn bucket_and_prefix(url: &url::Url, s: &str, what: &str) -> Result<(String, String)> {
    let bucket = url.host_str().unwrap_or_default().to_string();
    if bucket.is_empty() {
        return Err(Error::config(format!("{s:?} names no {what}")).with_hint(URL_HINT));
    }
    Ok((bucket, url.path().trim_matches('/').to_string()))
}

impl FromStr for RepoUrl {
    type Err = Error;

    fn from_str(s: &str) -> Result<RepoUrl> {
        let url = url::Url::parse(s.trim()).map_err(|e| {
            Error::config(format!("repository URL is not a URL ({e})")).with_hint(URL_HINT)
        })?;
        if !url.username().is_empty() || url.password().is_some() {
            // Never echo the URL: it holds what looks like a secret.
            return Err(Error::config("the repository URL contains credentials").with_hint(
                "remove them from the URL; credentials come from the environment (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AZURE_STORAGE_ACCOUNT_KEY)",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(
                Error::config(format!("repository URL {s:?} has a query or fragment"))
                    .with_hint(URL_HINT),
            );
        }
        match url.scheme() {
            "file" => {
                if url
                    .host_str()
                    .is_some_and(|h| !h.is_empty() && h != "localhost")
                {
                    return Err(Error::config(format!("file URL {s:?} names a host")).with_hint(
                        "write file:///absolute/path (three slashes); remote filesystems must be mounted",
                    ));
                }
                let path = url.to_file_path().map_err(|_| {
                    Error::config(format!("{s:?} is not an absolute file path")).with_hint(URL_HINT)
                })?;
                Ok(RepoUrl::File(path))
            }
            "s3" => {
                let (bucket, prefix) = bucket_and_prefix(&url, s, "bucket")?;
                Ok(RepoUrl::S3 { bucket, prefix })
            }
            "az" | "azure" => {
                let (container, prefix) = bucket_and_prefix(&url, s, "container")?;
                if !is_container_name(&container) {
                    // Azure answers such a name with a bare 400, which would
                    // look like a failing store and be retried.
                    return Err(Error::config(format!(
                        "{s:?}: {container:?} is not an Azure container name"
                    ))
                    .with_hint("a container name is 3 to 63 lower-case letters, digits and single hyphens, starting and ending with a letter or digit"));
                }
                Ok(RepoUrl::Azure { container, prefix })
            }
            "gs" => Err(Error::config(format!(
                "{s:?}: Google Cloud Storage is not supported yet"
            ))
            .with_hint("no GCS emulator available to pgproof's tests speaks the XML API object_store uses (conditional create, multipart uploads), and pgproof ships no backend its tests do not exercise; use S3, Azure or a filesystem repository")),
            other => Err(
                Error::config(format!("repository scheme {other:?} is not supported"))
                    .with_hint(URL_HINT),
            ),
        }
    }
}

impl fmt::Display for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (scheme, bucket, prefix) = match self {
            RepoUrl::File(path) => return write!(f, "file://{}", path.display()),
            RepoUrl::S3 { bucket, prefix } => ("s3", bucket, prefix),
            RepoUrl::Azure { container, prefix } => ("az", container, prefix),
        };
        if prefix.is_empty() {
            write!(f, "{scheme}://{bucket}")
        } else {
            write!(f, "{scheme}://{bucket}/{prefix}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_supported_urls() {
        assert_eq!(
            "file:///srv/backup".parse::<RepoUrl>().unwrap(),
            RepoUrl::File("/srv/backup".into())
        );
        assert_eq!(
            "s3://bucket/a/b/".parse::<RepoUrl>().unwrap(),
            RepoUrl::S3 {
                bucket: "bucket".into(),
                prefix: "a/b".into()
            }
        );
        assert_eq!(
            "s3://bucket".parse::<RepoUrl>().unwrap().to_string(),
            "s3://bucket"
        );
        assert_eq!(
            "file:///srv/backup".parse::<RepoUrl>().unwrap().to_string(),
            "file:///srv/backup"
        );
        for (given, shown) in [
            ("az://backups/pg/", "az://backups/pg"),
            ("azure://backups/pg", "az://backups/pg"),
            ("az://backups", "az://backups"),
        ] {
            let url = given.parse::<RepoUrl>().unwrap();
            assert!(url.is_remote());
            assert_eq!(url.to_string(), shown);
            assert_eq!(url.to_string().parse::<RepoUrl>().unwrap(), url);
        }
        assert_eq!(
            "azure://abc/p".parse::<RepoUrl>().unwrap(),
            RepoUrl::Azure {
                container: "abc".into(),
                prefix: "p".into()
            }
        );
        assert!(!"file:///x".parse::<RepoUrl>().unwrap().is_remote());
    }

    #[test]
    fn refuses_bad_urls_with_a_hint() {
        for bad in [
            "",
            "/srv/backup",
            "file://server/share",
            "gs://bucket/prefix",
            "az://ab/prefix",
            "az://my_container/prefix",
            "az://-backups/p",
            "az://back--ups/p",
            "az:///prefix",
            "s3:///prefix",
            "ftp://x/y",
        ] {
            let err = bad.parse::<RepoUrl>().unwrap_err();
            assert!(err.hint().is_some(), "{bad}: {err}");
        }
    }

    #[test]
    fn credentials_in_url_are_refused_without_echo() {
        let err = "s3://AKIAXXXX:supersecret@bucket/p"
            .parse::<RepoUrl>()
            .unwrap_err();
        assert!(!err.to_string().contains("supersecret"));
        assert!(!err.to_string().contains("AKIAXXXX"));
    }
}
