//! `enable --write-config`: the cluster's `[clusters.NAME]` section in the
//! configuration file. The file is only ever appended to, so that an
//! operator's comments and layout survive; a section of that name that says
//! something else is refused rather than edited.

use crate::error::{Error, Result};
use crate::settings::{FileConfig, canonical};
use std::path::{Path, PathBuf};

/// What the section must say: key and value, in the order written.
pub type Entries = Vec<(&'static str, toml::Value)>;

/// What writing the section comes down to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionPlan {
    /// The file gains the section (and is created when absent).
    Append {
        path: PathBuf,
        /// The file's text as read (`None`: no file yet), to notice a
        /// change between the plan and the write.
        before: Option<String>,
        after: String,
        section: String,
    },
    /// A section of that name says the same already (it may say less).
    AlreadyThere { path: PathBuf },
}

impl SectionPlan {
    /// The file as it will read.
    pub fn config(&self) -> Result<FileConfig> {
        match self {
            SectionPlan::Append { path, after, .. } => FileConfig::parse(after, path),
            SectionPlan::AlreadyThere { path } => read(path)?
                .map(|t| FileConfig::parse(&t, path))
                .unwrap_or_else(|| Ok(FileConfig::default())),
        }
    }
}

fn read(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("reading the configuration file", path, e)),
    }
}

/// The section header's key: bare when TOML allows, else quoted (a `.` in
/// a cluster name would otherwise make a nested table).
fn header_key(name: &str) -> String {
    if !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        name.to_string()
    } else {
        toml::Value::String(name.to_string()).to_string()
    }
}

/// Two values of `key` that mean the same: data directories through
/// symbolic links, repositories as parsed URLs.
fn same(key: &str, ours: &toml::Value, theirs: &toml::Value) -> bool {
    match (key, ours.as_str(), theirs.as_str()) {
        ("pgdata", Some(a), Some(b)) => canonical(Path::new(a)) == canonical(Path::new(b)),
        ("repo", Some(a), Some(b)) => {
            match (
                a.parse::<crate::storage::RepoUrl>(),
                b.parse::<crate::storage::RepoUrl>(),
            ) {
                (Ok(a), Ok(b)) => a == b,
                _ => a == b,
            }
        }
        _ => ours == theirs,
    }
}

/// Plans the section `name` with `entries` in the file at `path`, whose
/// current text is `text` (`None`: it does not exist).
pub fn plan_text(
    path: &Path,
    text: Option<&str>,
    name: &str,
    entries: &Entries,
) -> Result<SectionPlan> {
    let existing: toml::Table = match text {
        Some(t) => {
            // The same reading every command gives it, errors and all.
            FileConfig::parse(t, path)?;
            t.parse().map_err(|e: toml::de::Error| {
                Error::config(format!(
                    "{} is not valid TOML: {}",
                    path.display(),
                    e.message()
                ))
            })?
        }
        None => toml::Table::new(),
    };
    let section = existing
        .get("clusters")
        .and_then(|c| c.as_table())
        .and_then(|c| c.get(name))
        .and_then(|s| s.as_table());
    if let Some(section) = section {
        let disagree: Vec<String> = entries
            .iter()
            .filter_map(|(key, ours)| {
                let theirs = section.get(*key)?;
                (!same(key, ours, theirs)).then(|| format!("{key} is {theirs} there, {ours} here"))
            })
            .collect();
        if !disagree.is_empty() {
            return Err(Error::config(format!(
                "{} already has a section [clusters.{}] that disagrees: {}",
                path.display(),
                header_key(name),
                disagree.join("; ")
            ))
            .with_hint(
                "nothing was changed; edit that section yourself, or give this cluster another name with --cluster",
            ));
        }
        return Ok(SectionPlan::AlreadyThere {
            path: path.to_path_buf(),
        });
    }

    let mut section = format!("[clusters.{}]\n", header_key(name));
    for (key, value) in entries {
        section.push_str(&format!("{key} = {value}\n"));
    }
    let mut after = text.unwrap_or_default().to_string();
    if !after.is_empty() {
        if !after.ends_with('\n') {
            after.push('\n');
        }
        after.push('\n');
    }
    after.push_str("# added by pgproof enable\n");
    after.push_str(&section);
    // An appended table can still clash with what is there (`clusters`
    // written as an inline table); what is written must read back.
    let parsed = FileConfig::parse(&after, path).map_err(|e| {
        e.context(format!(
            "the section [clusters.{}] cannot be appended to {}",
            header_key(name),
            path.display()
        ))
    })?;
    if !parsed.clusters.contains_key(name) {
        return Err(Error::config(format!(
            "the section [clusters.{}] appended to {} does not read back",
            header_key(name),
            path.display()
        )));
    }
    Ok(SectionPlan::Append {
        path: path.to_path_buf(),
        before: text.map(str::to_string),
        after,
        section,
    })
}

/// Plans the section in the file as it is now.
pub fn plan(path: &Path, name: &str, entries: &Entries) -> Result<SectionPlan> {
    let text = read(path)?;
    plan_text(path, text.as_deref(), name, entries)
}

/// Writes the planned file: a temporary file beside it, synced, renamed over
/// it, so that a reader (an archive_command running now) sees the old file
/// or the new one, never half of it. Owner and mode are kept.
pub fn apply(plan: &SectionPlan) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let SectionPlan::Append {
        path,
        before,
        after,
        ..
    } = plan
    else {
        return Ok(());
    };
    if read(path)? != *before {
        return Err(Error::new(
            crate::error::ErrorKind::Conflict,
            format!("{} changed while enable ran", path.display()),
        )
        .with_hint("run enable again and look at what it shows"));
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io("creating the directory", dir, e))?;
    let old = std::fs::metadata(path).ok();
    let tmp = dir.join(format!(
        ".{}.pgproof-{}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("config"),
        std::process::id()
    ));
    let result: Result<()> = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io("creating", &tmp, e))?;
        f.write_all(after.as_bytes())
            .map_err(|e| Error::io("writing", &tmp, e))?;
        let mode = old.as_ref().map(|m| m.mode() & 0o7777).unwrap_or(0o644);
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io("setting the mode of", &tmp, e))?;
        if let Some(m) = &old {
            // Only root can give a file away; anyone else keeps owning it.
            let _ = std::os::unix::fs::chown(&tmp, Some(m.uid()), Some(m.gid()));
        }
        f.sync_all().map_err(|e| Error::io("syncing", &tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io("renaming into place", path, e))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(pgdata: &str, repo: &str) -> Entries {
        vec![
            ("pgdata", toml::Value::String(pgdata.into())),
            ("repo", toml::Value::String(repo.into())),
        ]
    }

    #[test]
    fn a_new_file_gets_the_section() {
        let p = plan_text(
            Path::new("/x/pgproof.toml"),
            None,
            "main",
            &entries("/srv/pg", "file:///r"),
        )
        .unwrap();
        let SectionPlan::Append { after, .. } = &p else {
            panic!("{p:?}")
        };
        assert!(after.contains("[clusters.main]\npgdata = \"/srv/pg\"\nrepo = \"file:///r\"\n"));
        let c = p.config().unwrap();
        let s = &c.clusters["main"];
        assert_eq!(s.pgdata.as_deref(), Some(Path::new("/srv/pg")));
        assert_eq!(s.repo.as_deref(), Some("file:///r"));
    }

    #[test]
    fn an_existing_file_is_extended_and_keeps_its_text() {
        let text = "# ours\nrepo = \"s3://b/p\"\n[clusters.other]\npgdata = \"/srv/o\"";
        let p = plan_text(
            Path::new("/x/pgproof.toml"),
            Some(text),
            "db.reports",
            &entries("/srv/pg", "file:///r"),
        )
        .unwrap();
        let SectionPlan::Append { after, .. } = &p else {
            panic!("{p:?}")
        };
        assert!(after.starts_with(text), "{after}");
        assert!(after.contains("[clusters.\"db.reports\"]"), "{after}");
        let c = p.config().unwrap();
        assert_eq!(c.repo.as_deref(), Some("s3://b/p"));
        assert!(c.clusters.contains_key("other"));
        assert_eq!(
            c.clusters["db.reports"].repo.as_deref(),
            Some("file:///r"),
            "the dot does not make a nested table"
        );
    }

    #[test]
    fn an_agreeing_section_is_left_alone() {
        let text = "[clusters.main]\npgdata = \"/srv/pg/\"\nrepo = \"file:///r\"\nport = 5433\n";
        let p = plan_text(
            Path::new("/x/pgproof.toml"),
            Some(text),
            "main",
            &entries("/srv/pg", "file:///r"),
        )
        .unwrap();
        assert_eq!(
            p,
            SectionPlan::AlreadyThere {
                path: "/x/pgproof.toml".into()
            }
        );
        // A section that leaves a key out agrees too.
        let p = plan_text(
            Path::new("/x/pgproof.toml"),
            Some("[clusters.main]\npgdata = \"/srv/pg\"\n"),
            "main",
            &entries("/srv/pg", "file:///r"),
        )
        .unwrap();
        assert!(matches!(p, SectionPlan::AlreadyThere { .. }), "{p:?}");
    }

    #[test]
    fn a_disagreeing_section_is_refused() {
        let text = "[clusters.main]\npgdata = \"/srv/other\"\nrepo = \"file:///r\"\n";
        let err = plan_text(
            Path::new("/x/pgproof.toml"),
            Some(text),
            "main",
            &entries("/srv/pg", "file:///r"),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("[clusters.main]")
                && msg.contains("/srv/other")
                && msg.contains("/srv/pg"),
            "{msg}"
        );
        assert!(
            !msg.contains("repo is"),
            "only what disagrees is named: {msg}"
        );
        assert_eq!(err.kind().exit_code(), 3);
    }

    #[test]
    fn a_file_it_cannot_extend_is_refused() {
        for text in [
            "clusters = { other = { pgdata = \"/srv/o\" } }\n",
            "repo = \n",
            "reppo = \"x\"\n",
        ] {
            let r = plan_text(
                Path::new("/x/pgproof.toml"),
                Some(text),
                "main",
                &entries("/srv/pg", "file:///r"),
            );
            assert!(r.is_err(), "{text}: {r:?}");
        }
    }

    #[test]
    fn apply_writes_and_notices_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("pgproof.toml");
        let e = entries("/srv/pg", "file:///r");
        let p = plan(&path, "main", &e).unwrap();
        apply(&p).unwrap();
        let written = std::fs::read_to_string(&path).unwrap();
        assert!(written.contains("[clusters.main]"));
        assert!(matches!(
            plan(&path, "main", &e).unwrap(),
            SectionPlan::AlreadyThere { .. }
        ));
        let p = plan(&path, "second", &e).unwrap();
        std::fs::write(&path, "repo = \"file:///other\"\n").unwrap();
        assert!(apply(&p).is_err(), "the file changed since the plan");
    }
}
