//! Repository URLs: `file:///absolute/path` and `s3://bucket/prefix`.

use crate::error::{Error, Result};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoUrl {
    File(PathBuf),
    S3 { bucket: String, prefix: String },
}

const URL_HINT: &str = "a repository is file:///absolute/path or s3://bucket/prefix";

impl FromStr for RepoUrl {
    type Err = Error;

    fn from_str(s: &str) -> Result<RepoUrl> {
        let url = url::Url::parse(s.trim()).map_err(|e| {
            Error::config(format!("repository URL is not a URL ({e})")).with_hint(URL_HINT)
        })?;
        if !url.username().is_empty() || url.password().is_some() {
            // Never echo the URL: it holds what looks like a secret.
            return Err(Error::config("the repository URL contains credentials").with_hint(
                "remove them from the URL; S3 credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
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
                let bucket = url.host_str().unwrap_or_default().to_string();
                if bucket.is_empty() {
                    return Err(
                        Error::config(format!("S3 URL {s:?} names no bucket")).with_hint(URL_HINT)
                    );
                }
                let prefix = url.path().trim_matches('/').to_string();
                Ok(RepoUrl::S3 { bucket, prefix })
            }
            other => Err(
                Error::config(format!("repository scheme {other:?} is not supported"))
                    .with_hint(URL_HINT),
            ),
        }
    }
}

impl fmt::Display for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RepoUrl::File(path) => write!(f, "file://{}", path.display()),
            RepoUrl::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            RepoUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
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
    }

    #[test]
    fn refuses_bad_urls_with_a_hint() {
        for bad in [
            "",
            "/srv/backup",
            "file://server/share",
            "gs://bucket",
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
