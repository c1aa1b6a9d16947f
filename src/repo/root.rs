//! A repository's root: the one place storage is opened, and where its
//! cluster prefixes are found. Commands reach storage only through this and
//! `Repository`, so that the retry, timeout and listing policy of storage
//! applies to every command alike.

use super::{ClusterName, Repository, layout};
use crate::error::Result;
use crate::storage::{RepoUrl, RetryPolicy, Storage};

#[derive(Debug, Clone)]
pub struct Root {
    storage: Storage,
}

impl Root {
    pub fn open(url: &RepoUrl, policy: RetryPolicy) -> Result<Root> {
        Ok(Root {
            storage: Storage::open(url, policy)?,
        })
    }

    pub fn url(&self) -> &RepoUrl {
        self.storage.url()
    }

    /// The prefix of one cluster.
    pub fn cluster(&self, name: ClusterName) -> Repository {
        Repository::new(self.storage.clone(), name)
    }

    /// The prefixes directly under the root that hold an identity record,
    /// by name.
    pub async fn cluster_prefixes(&self) -> Result<Vec<ClusterName>> {
        let mut names = Vec::new();
        for dir in self.storage.list_subdirs("").await? {
            let Ok(name) = ClusterName::new(&dir) else {
                continue;
            };
            if self
                .storage
                .head(&layout::identity_record(&name))
                .await?
                .is_some()
            {
                names.push(name);
            }
        }
        names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        Ok(names)
    }
}

/// Opens the repository at `url` and the prefix of `cluster` in it.
pub fn open(url: &RepoUrl, policy: RetryPolicy, cluster: ClusterName) -> Result<Repository> {
    Ok(Root::open(url, policy)?.cluster(cluster))
}
