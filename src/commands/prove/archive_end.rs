//! Did recovery reach the end of the archive? PostgreSQL ends archive
//! recovery at the first segment `restore_command` cannot supply, and then
//! promotes as if all were well: a gap after the consistency point looks
//! like the end of the archive. The archive is listed before the proving
//! server starts, so segments the source archives meanwhile do not count.

use super::checks::check;
use crate::error::Result;
use crate::pg::walname::{Segment, WalFileName};
use crate::repo::Repository;
use crate::repo::proof::ProofCheck;
use crate::repo::wal_dirs::WalArchive;
use std::collections::BTreeMap;

/// The newest archived segment of each timeline of a binding.
pub async fn newest_segments(repo: &Repository, binding: &str) -> Result<BTreeMap<u32, Segment>> {
    WalArchive::open(repo, binding)
        .await?
        .newest_segments()
        .await
}

/// Compares the last segment the server restored with the newest one the
/// archive held, on the timeline recovery ended on.
pub fn reached_the_end(newest: &BTreeMap<u32, Segment>, last_restored: Option<&str>) -> ProofCheck {
    let name = "archive end";
    let last = last_restored
        .and_then(|n| WalFileName::parse(n).ok())
        .and_then(|n| match n {
            WalFileName::Segment(s) => Some(s),
            _ => None,
        });
    let Some(last) = last else {
        return check(
            name,
            true,
            "not compared: the server log names no segment restored from the archive",
        );
    };
    match newest.get(&last.timeline) {
        Some(&end) if end > last => check(
            name,
            false,
            format!(
                "recovery ended after {last}, but the archive held segments up to {end} on timeline {} when the proof started: the segment after {last} is missing or unreadable, so nothing archived after it can be recovered",
                last.timeline
            ),
        ),
        _ => check(
            name,
            true,
            format!("recovery reached {last}, the newest segment archived on its timeline"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn newest(names: &[&str]) -> BTreeMap<u32, Segment> {
        let mut m = BTreeMap::new();
        for n in names {
            let s = WalFileName::parse(n).unwrap().segment().unwrap();
            m.insert(s.timeline, s);
        }
        m
    }

    #[test]
    fn a_gap_after_consistency_is_found() {
        let archive = newest(&["000000010000000000000009", "000000020000000000000004"]);
        let c = reached_the_end(&archive, Some("000000010000000000000009"));
        assert!(c.passed, "{}", c.detail);
        let c = reached_the_end(&archive, Some("000000010000000000000005"));
        assert!(!c.passed);
        assert!(
            c.detail.contains("000000010000000000000009"),
            "{}",
            c.detail
        );
        // Recovery followed timeline 2: timeline 1's later segments do not count.
        let c = reached_the_end(&archive, Some("000000020000000000000004"));
        assert!(c.passed, "{}", c.detail);
        assert!(reached_the_end(&archive, None).passed);
    }
}
