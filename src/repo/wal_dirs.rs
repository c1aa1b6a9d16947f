//! One binding's WAL archive read by directory: the names of its segment
//! directories from one delimiter listing, then only the directories a
//! question needs, each listed at most once. Finding the newest segment, or
//! the gaps since a backup's start, so costs requests in proportion to the
//! WAL since that start (plus one listing page per thousand directories),
//! never to the whole archive. `verify` and `delete`, which must see every
//! object, use `Repository::list_wal_and_claims` instead.

use super::Repository;
use super::continuity::{self, Gap};
use super::layout;
use super::wal::{StoredWal, stored_wal};
use crate::error::{ErrorKind, Result};
use crate::pg::history::TimelineSwitch;
use crate::pg::walname::{Segment, WalFileName};
use std::collections::{BTreeMap, BTreeSet};

/// A segment directory (`TTTTTTTTLLLLLLLL`, `Segment::directory`): one log
/// of one timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WalDir {
    pub timeline: u32,
    pub log: u32,
}

impl WalDir {
    pub fn parse(name: &str) -> Option<WalDir> {
        if name.len() != 16 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(WalDir {
            timeline: u32::from_str_radix(&name[..8], 16).ok()?,
            log: u32::from_str_radix(&name[8..], 16).ok()?,
        })
    }

    pub fn of(seg: Segment) -> WalDir {
        WalDir {
            timeline: seg.timeline,
            log: seg.log,
        }
    }

    /// The directory's name, as `Segment::directory` spells it.
    pub fn name(self) -> String {
        Segment {
            timeline: self.timeline,
            log: self.log,
            seg: 0,
        }
        .directory()
    }
}

/// The directories among `dirs` that can hold segments of the stretch:
/// its timeline, from the log of its first segment to the log of its last
/// (all later logs for the open-ended last stretch).
pub fn dirs_of_stretch(
    dirs: &BTreeSet<WalDir>,
    stretch: &continuity::Stretch,
    segment_size: u64,
) -> Vec<WalDir> {
    let log_of = |n: u64| Segment::from_number(stretch.timeline, n, segment_size).log;
    let first = log_of(stretch.first);
    let last = match stretch.end {
        Some(end) if end <= stretch.first => return Vec::new(),
        Some(end) => log_of(end - 1),
        None => u32::MAX,
    };
    let from = WalDir {
        timeline: stretch.timeline,
        log: first,
    };
    let to = WalDir {
        timeline: stretch.timeline,
        log: last,
    };
    dirs.range(from..=to).copied().collect()
}

/// Whether `name` lies on `stretches` (a segment, `.partial` or `.backup`
/// file of a stretch's timeline within its segment numbers).
pub fn on_path(name: WalFileName, stretches: &[continuity::Stretch], segment_size: u64) -> bool {
    let Some(seg) = name.segment() else {
        return false;
    };
    let n = seg.number(segment_size);
    stretches
        .iter()
        .any(|s| s.timeline == seg.timeline && n >= s.first && s.end.is_none_or(|end| n < end))
}

/// What the WAL since a start segment looks like.
#[derive(Debug, Clone, Default)]
pub struct Since {
    /// Missing segments, as `continuity::gaps` finds them.
    pub gaps: Vec<Gap>,
    /// The stored files on the path from the start to the newest segment.
    pub files: usize,
    pub stored_bytes: u64,
}

/// The directory listings of one binding's WAL, read on demand.
pub struct WalArchive<'a> {
    repo: &'a Repository,
    binding: &'a str,
    dirs: BTreeSet<WalDir>,
    listed: BTreeMap<WalDir, Vec<StoredWal>>,
    /// Files at the binding's WAL root (history files), once listed.
    root: Option<Vec<StoredWal>>,
    histories: BTreeMap<u32, Vec<TimelineSwitch>>,
}

impl<'a> WalArchive<'a> {
    /// Lists the names of the binding's segment directories (one request
    /// per thousand directories).
    pub async fn open(repo: &'a Repository, binding: &'a str) -> Result<WalArchive<'a>> {
        let root = layout::wal_root(&repo.cluster, binding);
        let names = match repo.storage.list_subdirs(&root).await {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(WalArchive {
            repo,
            binding,
            dirs: names.iter().filter_map(|n| WalDir::parse(n)).collect(),
            listed: BTreeMap::new(),
            root: None,
            histories: BTreeMap::new(),
        })
    }

    async fn listing(&mut self, dir: WalDir) -> Result<&[StoredWal]> {
        if !self.listed.contains_key(&dir) {
            let key = format!(
                "{}/{}",
                layout::wal_root(&self.repo.cluster, self.binding),
                dir.name()
            );
            let objects = match self.repo.storage.list_dir(&key).await {
                Ok(o) => o,
                Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(e),
            };
            self.listed
                .insert(dir, objects.into_iter().filter_map(stored_wal).collect());
        }
        Ok(&self.listed[&dir])
    }

    /// The newest full segment stored among `dirs`, searched newest first.
    async fn newest_in(&mut self, dirs: Vec<WalDir>) -> Result<Option<StoredWal>> {
        for dir in dirs.into_iter().rev() {
            let newest = self
                .listing(dir)
                .await?
                .iter()
                .filter(|s| matches!(s.name, WalFileName::Segment(_)))
                .max_by(|a, b| a.name.cmp(&b.name).then(a.key.cmp(&b.key)));
            if let Some(s) = newest {
                return Ok(Some(s.clone()));
            }
        }
        Ok(None)
    }

    /// The newest full segment of the binding: of its highest timeline that
    /// has one, the highest.
    pub async fn newest_segment(&mut self) -> Result<Option<StoredWal>> {
        let dirs = self.dirs.iter().copied().collect();
        self.newest_in(dirs).await
    }

    /// The newest full segment of one timeline.
    pub async fn newest_segment_of(&mut self, timeline: u32) -> Result<Option<StoredWal>> {
        let dirs = self
            .dirs
            .iter()
            .filter(|d| d.timeline == timeline)
            .copied()
            .collect();
        self.newest_in(dirs).await
    }

    /// The newest full segment of each timeline.
    pub async fn newest_segments(&mut self) -> Result<BTreeMap<u32, Segment>> {
        let timelines: BTreeSet<u32> = self.dirs.iter().map(|d| d.timeline).collect();
        let mut newest = BTreeMap::new();
        for tli in timelines {
            if let Some(s) = self.newest_segment_of(tli).await?
                && let Some(seg) = s.name.segment()
            {
                newest.insert(tli, seg);
            }
        }
        Ok(newest)
    }

    /// The parsed history of `timeline`, read and verified once; `None`
    /// when its history file is not archived.
    async fn history(&mut self, timeline: u32) -> Result<Option<&[TimelineSwitch]>> {
        if self.root.is_none() {
            let root = layout::wal_root(&self.repo.cluster, self.binding);
            let objects = match self.repo.storage.list_dir(&root).await {
                Ok(o) => o,
                Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(e),
            };
            self.root = Some(objects.into_iter().filter_map(stored_wal).collect());
        }
        if !self.histories.contains_key(&timeline) {
            let stored = self
                .root
                .as_ref()
                .into_iter()
                .flatten()
                .find(|s| s.name == WalFileName::History(timeline))
                .cloned();
            let Some(stored) = stored else {
                return Ok(None);
            };
            let parsed = self.repo.read_history(&stored).await?;
            self.histories.insert(timeline, parsed);
        }
        Ok(self.histories.get(&timeline).map(Vec::as_slice))
    }

    /// Gaps and stored files from `start` to the newest segment of the
    /// newest timeline descending from start's timeline: the same answer as
    /// `continuity::gaps` over the whole archive, from the directories on
    /// the path and the history files of the timelines considered.
    /// `carries_start` for an offline backup, which holds its start segment
    /// itself (`continuity::gaps_from`).
    pub async fn since(
        &mut self,
        start: Segment,
        carries_start: bool,
        segment_size: u64,
    ) -> Result<Since> {
        let candidates: BTreeSet<u32> = self
            .dirs
            .iter()
            .map(|d| d.timeline)
            .filter(|&t| t >= start.timeline)
            .collect();
        // `continuity::newest_timeline`, asking storage only for what each
        // candidate needs: its history, then whether it holds a segment.
        for tli in candidates.into_iter().rev() {
            if tli != start.timeline {
                if self.history(tli).await?.is_none() {
                    continue;
                }
                let descends = continuity::path(start, tli, &self.histories, segment_size)
                    .is_some_and(|p| p.len() > 1);
                if !descends {
                    continue;
                }
            }
            if self.newest_segment_of(tli).await?.is_some() {
                break;
            }
        }
        // Every listing made so far takes part: the candidates rejected
        // above are rejected again by `gaps` for the same reason.
        let target =
            continuity::newest_timeline(start, &self.listed_names(), &self.histories, segment_size);
        let Some(stretches) = continuity::path(start, target, &self.histories, segment_size) else {
            return Ok(Since::default());
        };
        for stretch in &stretches {
            for dir in dirs_of_stretch(&self.dirs, stretch, segment_size) {
                self.listing(dir).await?;
            }
        }
        let names = self.listed_names();
        let gaps =
            continuity::gaps_from(start, carries_start, &names, &self.histories, segment_size);
        let on = self
            .listed
            .values()
            .flatten()
            .filter(|s| on_path(s.name, &stretches, segment_size));
        let (files, stored_bytes) = on.fold((0, 0), |(n, b), s| (n + 1, b + s.stored_size));
        Ok(Since {
            gaps,
            files,
            stored_bytes,
        })
    }

    fn listed_names(&self) -> Vec<WalFileName> {
        self.listed.values().flatten().map(|s| s.name).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use continuity::Stretch;

    const MIB16: u64 = 16 << 20;

    fn dirs(names: &[&str]) -> BTreeSet<WalDir> {
        names.iter().map(|n| WalDir::parse(n).unwrap()).collect()
    }

    fn names(list: &[WalDir]) -> Vec<String> {
        list.iter().map(|d| d.name()).collect()
    }

    #[test]
    fn directory_names_round_trip_and_junk_is_ignored() {
        let seg = WalFileName::parse("0000000A000001FF000000C0")
            .unwrap()
            .segment()
            .unwrap();
        let d = WalDir::of(seg);
        assert_eq!(d.name(), seg.directory());
        assert_eq!(WalDir::parse(&d.name()), Some(d));
        for junk in [
            "",
            "0000000100000000x",
            "000000010000000",
            "0000000G00000000",
        ] {
            assert_eq!(WalDir::parse(junk), None, "{junk}");
        }
    }

    #[test]
    fn a_stretch_takes_the_logs_it_spans_on_its_timeline_only() {
        let all = dirs(&[
            "0000000100000000",
            "0000000100000001",
            "0000000100000002",
            "0000000100000003",
            "0000000200000002",
            "0000000200000003",
            "0000000200000004",
        ]);
        // Timeline 1 from segment 0x1FE (log 1) up to, not including, 0x300 (log 3).
        let closed = Stretch {
            timeline: 1,
            first: 0x1FE,
            end: Some(0x300),
        };
        assert_eq!(
            names(&dirs_of_stretch(&all, &closed, MIB16)),
            ["0000000100000001", "0000000100000002"]
        );
        // Ending one past the first segment of log 3 reaches into it.
        let into = Stretch {
            end: Some(0x301),
            ..closed
        };
        assert_eq!(dirs_of_stretch(&all, &into, MIB16).len(), 3);
        let open = Stretch {
            timeline: 2,
            first: 0x300,
            end: None,
        };
        assert_eq!(
            names(&dirs_of_stretch(&all, &open, MIB16)),
            ["0000000200000003", "0000000200000004"]
        );
        let empty = Stretch {
            timeline: 1,
            first: 0x300,
            end: Some(0x300),
        };
        assert!(dirs_of_stretch(&all, &empty, MIB16).is_empty());
    }

    #[test]
    fn logs_hold_fewer_segments_when_segments_are_larger() {
        // 1 GiB segments: 4 per log, so segment 9 is in log 2.
        let all = dirs(&["0000000100000001", "0000000100000002", "0000000100000003"]);
        let s = Stretch {
            timeline: 1,
            first: 9,
            end: Some(12),
        };
        assert_eq!(
            names(&dirs_of_stretch(&all, &s, 1 << 30)),
            ["0000000100000002"]
        );
    }

    /// Random archives (three timelines, holes, `.partial` files, a
    /// timeline whose history is missing, one that branched elsewhere) in a
    /// filesystem repository: the directory-wise answers equal the ones
    /// computed from a listing of everything.
    #[tokio::test]
    async fn directory_wise_answers_equal_whole_archive_answers() {
        use crate::codec::{Compression, ContentChecksum};
        use crate::storage::{RepoUrl, Storage};
        // 1 GiB segments: four per log, so that a few segments span many directories.
        const SEG: u64 = 1 << 30;
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut rand = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        for round in 0..12 {
            let dir = tempfile::tempdir().unwrap();
            let storage = Storage::open(
                &RepoUrl::File(dir.path().to_path_buf()),
                crate::storage::RetryPolicy::default(),
            )
            .unwrap();
            let repo = Repository::new(storage.clone(), layout::ClusterName::new("c").unwrap());
            let put = |name: String, body: Vec<u8>| {
                let name = WalFileName::parse(&name).unwrap();
                let key = layout::wal_object(
                    &repo.cluster,
                    "b",
                    name,
                    ContentChecksum::of(&body),
                    Compression::None,
                );
                let storage = storage.clone();
                async move { storage.put_new(&key, body.into()).await.unwrap() }
            };
            // Timeline 2 leaves 1 at segment s2, 3 leaves 2 at s3; timeline 4
            // leaves 1 at s4 < s2 (another branch); timeline 5 has segments
            // but no history file.
            let s2 = 8 + rand(20);
            let s3 = s2 + 1 + rand(20);
            let s4 = 2 + rand(6);
            let mut lsn = |n: u64| crate::pg::lsn::Lsn(n * SEG + rand(2) * 4096);
            let (l2, l3, l4) = (lsn(s2), lsn(s3), lsn(s4));
            put(
                "00000002.history".into(),
                format!("1\t{l2}\tx\n").into_bytes(),
            )
            .await;
            put(
                "00000003.history".into(),
                format!("1\t{l2}\tx\n2\t{l3}\ty\n").into_bytes(),
            )
            .await;
            put(
                "00000004.history".into(),
                format!("1\t{l4}\tz\n").into_bytes(),
            )
            .await;
            let on_3 = rand(30);
            let mut seg = |tli: u32, from: u64, to: u64| {
                let mut names = Vec::new();
                for n in from..to {
                    if rand(9) != 0 {
                        names.push(Segment::from_number(tli, n, SEG).to_string());
                    }
                }
                names
            };
            let mut all = seg(1, 0, s2 + 1);
            all.extend(seg(2, s2, s3 + 1));
            if round % 3 != 0 {
                all.extend(seg(3, s3, s3 + 1 + on_3));
            }
            all.extend(seg(4, s4, s4 + 3));
            if round % 4 == 1 {
                all.extend(seg(5, s3, s3 + 2));
            }
            all.push(format!("{}.partial", Segment::from_number(1, s2, SEG)));
            for (i, name) in all.iter().enumerate() {
                put(name.clone(), i.to_le_bytes().to_vec()).await;
            }

            let everything = repo.list_wal("b").await.unwrap();
            let histories = repo.timeline_histories(&everything).await.unwrap();
            let names: Vec<WalFileName> = everything.iter().map(|s| s.name).collect();
            let newest_all = everything
                .iter()
                .filter(|s| matches!(s.name, WalFileName::Segment(_)))
                .max_by(|a, b| a.name.cmp(&b.name))
                .map(|s| s.name);
            let mut archive = WalArchive::open(&repo, "b").await.unwrap();
            assert_eq!(
                archive.newest_segment().await.unwrap().map(|s| s.name),
                newest_all,
                "round {round}"
            );
            let mut per_timeline = BTreeMap::new();
            for n in &names {
                if let WalFileName::Segment(s) = *n {
                    let e = per_timeline.entry(s.timeline).or_insert(s);
                    *e = (*e).max(s);
                }
            }
            assert_eq!(
                archive.newest_segments().await.unwrap(),
                per_timeline,
                "round {round}"
            );
            for start in [0, 1, s4, s2 - 1, s2, s3, s3 + 3] {
                for tli in 1..=3 {
                    let start = Segment::from_number(tli, start, SEG);
                    let mut fresh = WalArchive::open(&repo, "b").await.unwrap();
                    let since = fresh.since(start, false, SEG).await.unwrap();
                    let expected = continuity::gaps(start, &names, &histories, SEG);
                    assert_eq!(since.gaps, expected, "round {round}, start {start}");
                    let target = continuity::newest_timeline(start, &names, &histories, SEG);
                    let on: Vec<_> = continuity::path(start, target, &histories, SEG)
                        .map(|p| {
                            everything
                                .iter()
                                .filter(|s| on_path(s.name, &p, SEG))
                                .collect()
                        })
                        .unwrap_or_default();
                    assert_eq!(since.files, on.len(), "round {round}, start {start}");
                }
            }
        }
    }

    #[test]
    fn on_path_follows_each_stretch() {
        let stretches = [
            Stretch {
                timeline: 1,
                first: 4,
                end: Some(7),
            },
            Stretch {
                timeline: 2,
                first: 7,
                end: None,
            },
        ];
        let on = |n: &str| on_path(WalFileName::parse(n).unwrap(), &stretches, MIB16);
        assert!(on("000000010000000000000004"));
        assert!(on("000000010000000000000006"));
        assert!(!on("000000010000000000000003"));
        assert!(!on("000000010000000000000007.partial"));
        assert!(on("000000020000000000000007"));
        assert!(on("000000020000000500000000"));
        assert!(!on("000000020000000000000006"));
        assert!(!on("00000002.history"));
    }
}
