//! WAL continuity: which segments a restore from a given start needs, and
//! which of them the archive lacks. Pure: it works on names, not objects.
//!
//! Timelines. A timeline T+1 that branched from T at LSN X owns every segment
//! from the one containing X onwards: at promotion the server copies the
//! segment containing X to the new timeline's name, and recovery reads a
//! segment from the newest timeline on its path whose first segment is not
//! after it (`XLogFileReadAnyTLI`). So T is needed for segment numbers below
//! `segno(X)` and T+1 from `segno(X)` on; T's own copy of `segno(X)` (a
//! `.partial` after a promotion) is never needed. When X falls on a segment
//! boundary the rule is the same: T's last needed segment is `segno(X) - 1`.

use crate::pg::history::TimelineSwitch;
use crate::pg::walname::{Segment, WalFileName};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A run of consecutive segments of one timeline that the archive lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub timeline: u32,
    pub first_missing: Segment,
    pub last_missing: Segment,
}

impl fmt::Display for Gap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first_missing == self.last_missing {
            write!(f, "{}", self.first_missing)
        } else {
            write!(
                f,
                "{} to {} (timeline {})",
                self.first_missing, self.last_missing, self.timeline
            )
        }
    }
}

/// One stretch of the path from a start segment to the newest timeline:
/// segment numbers `first..end` are read from `timeline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stretch {
    pub timeline: u32,
    pub first: u64,
    /// Exclusive; `None` for the last stretch (it runs to the newest segment).
    pub end: Option<u64>,
}

/// The timeline a restore from `start` ends on with `recovery_target_timeline
/// = 'latest'`: the highest timeline whose history passes through start's
/// timeline after `start`, among those with archived segments (a timeline
/// whose history file is archived but none of its WAL yet is not followed).
pub fn newest_timeline(
    start: Segment,
    archived: &[WalFileName],
    histories: &BTreeMap<u32, Vec<TimelineSwitch>>,
    segment_size: u64,
) -> u32 {
    let with_segments: BTreeSet<u32> = archived
        .iter()
        .filter(|n| matches!(n, WalFileName::Segment(_)))
        .map(|n| n.timeline())
        .collect();
    with_segments
        .iter()
        .rev()
        .copied()
        .find(|&tli| {
            tli == start.timeline
                || path(start, tli, histories, segment_size).is_some_and(|p| p.len() > 1)
        })
        .unwrap_or(start.timeline)
}

/// The stretches a restore from `start` reads to reach `target`, or `None`
/// when `target` does not descend from start's timeline after `start`.
pub fn path(
    start: Segment,
    target: u32,
    histories: &BTreeMap<u32, Vec<TimelineSwitch>>,
    segment_size: u64,
) -> Option<Vec<Stretch>> {
    let first = start.number(segment_size);
    if target == start.timeline {
        return Some(vec![Stretch {
            timeline: target,
            first,
            end: None,
        }]);
    }
    let history = histories.get(&target)?;
    let from = history.iter().position(|s| s.parent == start.timeline)?;
    let mut stretches = Vec::new();
    let mut position = first;
    for switch in &history[from..] {
        let switch_seg = switch.switch_point.segment_number(segment_size);
        // A branch taken before the start is another history, not this one's.
        if switch_seg < position {
            return None;
        }
        stretches.push(Stretch {
            timeline: switch.parent,
            first: position,
            end: Some(switch_seg),
        });
        position = switch_seg;
    }
    stretches.push(Stretch {
        timeline: target,
        first: position,
        end: None,
    });
    Some(stretches)
}

/// Segments missing between `start` and the newest archived segment of the
/// newest timeline descending from start's timeline, following timeline
/// switches from the history files (timeline -> its parsed history, as
/// `pg::history::parse_timeline_history` gives). The start segment itself
/// is always needed. Only full segments count as present.
/// `gaps`, for a backup that may carry its start segment itself (an
/// offline backup holds the WAL of its shutdown checkpoint in pg_wal): it
/// needs archived WAL only to replay past its start, so its start segment
/// is missing only once the archive holds a later segment.
pub fn gaps_from(
    start: Segment,
    carries_start: bool,
    archived: &[WalFileName],
    histories: &BTreeMap<u32, Vec<TimelineSwitch>>,
    segment_size: u64,
) -> Vec<Gap> {
    let found = gaps(start, archived, histories, segment_size);
    if !carries_start {
        return found;
    }
    let later_archived = archived.iter().any(|n| match n {
        WalFileName::Segment(s) => {
            s.timeline >= start.timeline && s.number(segment_size) > start.number(segment_size)
        }
        _ => false,
    });
    found
        .into_iter()
        .filter(|g| later_archived || g.first_missing != start || g.last_missing != start)
        .collect()
}

pub fn gaps(
    start: Segment,
    archived: &[WalFileName],
    histories: &BTreeMap<u32, Vec<TimelineSwitch>>,
    segment_size: u64,
) -> Vec<Gap> {
    let target = newest_timeline(start, archived, histories, segment_size);
    let Some(stretches) = path(start, target, histories, segment_size) else {
        return Vec::new();
    };
    let present: BTreeSet<(u32, u64)> = archived
        .iter()
        .filter_map(|n| match n {
            WalFileName::Segment(s) => Some((s.timeline, s.number(segment_size))),
            _ => None,
        })
        .collect();
    let newest_on_target = present
        .range((target, 0)..=(target, u64::MAX))
        .next_back()
        .map(|&(_, n)| n);
    let mut gaps = Vec::new();
    for stretch in stretches {
        let end = match stretch.end {
            Some(end) => end,
            None => newest_on_target
                .map_or(stretch.first, |n| n + 1)
                .max(stretch.first + 1),
        };
        let mut run: Option<(u64, u64)> = None;
        for n in stretch.first..end {
            if present.contains(&(stretch.timeline, n)) {
                if let Some((a, b)) = run.take() {
                    gaps.push(gap(stretch.timeline, a, b, segment_size));
                }
            } else {
                run = Some(run.map_or((n, n), |(a, _)| (a, n)));
            }
        }
        if let Some((a, b)) = run {
            gaps.push(gap(stretch.timeline, a, b, segment_size));
        }
    }
    gaps
}

fn gap(timeline: u32, first: u64, last: u64, segment_size: u64) -> Gap {
    Gap {
        timeline,
        first_missing: Segment::from_number(timeline, first, segment_size),
        last_missing: Segment::from_number(timeline, last, segment_size),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::history::parse_timeline_history;

    const MIB16: u64 = 16 << 20;

    fn names(list: &[&str]) -> Vec<WalFileName> {
        list.iter()
            .map(|n| WalFileName::parse(n).unwrap())
            .collect()
    }

    fn seg(name: &str) -> Segment {
        WalFileName::parse(name).unwrap().segment().unwrap()
    }

    fn histories(list: &[(u32, &str)]) -> BTreeMap<u32, Vec<TimelineSwitch>> {
        list.iter()
            .map(|(t, text)| (*t, parse_timeline_history(text).unwrap()))
            .collect()
    }

    #[test]
    fn a_backup_carrying_its_start_needs_it_archived_only_to_go_past_it() {
        let start = seg("000000010000000000000005");
        let none: Vec<WalFileName> = Vec::new();
        assert_eq!(gaps(start, &none, &BTreeMap::new(), MIB16).len(), 1);
        assert!(gaps_from(start, true, &none, &BTreeMap::new(), MIB16).is_empty());
        assert_eq!(
            gaps_from(start, false, &none, &BTreeMap::new(), MIB16).len(),
            1
        );
        // Older WAL does not make the start needed; a later segment does.
        let older = names(&["000000010000000000000003", "000000010000000000000004"]);
        assert!(gaps_from(start, true, &older, &BTreeMap::new(), MIB16).is_empty());
        let later = names(&["000000010000000000000006"]);
        let found = gaps_from(start, true, &later, &BTreeMap::new(), MIB16);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].first_missing, start);
        let whole = names(&["000000010000000000000005", "000000010000000000000007"]);
        let found = gaps_from(start, true, &whole, &BTreeMap::new(), MIB16);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].first_missing, seg("000000010000000000000006"));
    }

    #[test]
    fn one_timeline_without_and_with_gaps() {
        let archived = names(&[
            "000000010000000000000002",
            "000000010000000000000003",
            "000000010000000000000004",
            "000000010000000000000004.00000028.backup",
        ]);
        let start = seg("000000010000000000000002");
        assert!(gaps(start, &archived, &BTreeMap::new(), MIB16).is_empty());

        let archived = names(&[
            "000000010000000000000002",
            "000000010000000000000005",
            "000000010000000000000008",
            "000000010000000000000009",
        ]);
        let found = gaps(start, &archived, &BTreeMap::new(), MIB16);
        let shown: Vec<String> = found.iter().map(|g| g.to_string()).collect();
        assert_eq!(
            shown,
            [
                "000000010000000000000003 to 000000010000000000000004 (timeline 1)",
                "000000010000000000000006 to 000000010000000000000007 (timeline 1)",
            ]
        );
        let single = names(&["000000010000000000000002", "000000010000000000000004"]);
        let found = gaps(start, &single, &BTreeMap::new(), MIB16);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].to_string(), "000000010000000000000003");
    }

    #[test]
    fn a_missing_start_is_a_gap() {
        let start = seg("000000010000000000000005");
        let found = gaps(start, &[], &BTreeMap::new(), MIB16);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].first_missing, start);
    }

    #[test]
    fn follows_a_promotion_mid_segment() {
        // Timeline 1 ended inside segment 5: timeline 2 owns 5 onwards, and
        // timeline 1's segment 5 is only a .partial.
        let h = histories(&[(2, "1\t0/5000158\tno recovery target specified\n")]);
        let archived = names(&[
            "000000010000000000000003",
            "000000010000000000000004",
            "000000010000000000000005.partial",
            "00000002.history",
            "000000020000000000000005",
            "000000020000000000000006",
        ]);
        let start = seg("000000010000000000000003");
        assert!(gaps(start, &archived, &h, MIB16).is_empty());
        assert_eq!(newest_timeline(start, &archived, &h, MIB16), 2);

        // Losing timeline 2's copy of the switch segment is a gap on timeline 2.
        let without: Vec<WalFileName> = archived
            .iter()
            .copied()
            .filter(|n| n.to_string() != "000000020000000000000005")
            .collect();
        let found = gaps(start, &without, &h, MIB16);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].timeline, 2);
        assert_eq!(found[0].to_string(), "000000020000000000000005");

        // And a missing segment of timeline 1 before the switch.
        let without: Vec<WalFileName> = archived
            .iter()
            .copied()
            .filter(|n| n.to_string() != "000000010000000000000004")
            .collect();
        let found = gaps(start, &without, &h, MIB16);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].to_string(), "000000010000000000000004");
    }

    #[test]
    fn follows_a_switch_on_a_segment_boundary_and_two_switches() {
        let h = histories(&[
            (2, "1\t0/5000000\tx\n"),
            (3, "1\t0/5000000\tx\n2\t0/7000100\ty\n"),
        ]);
        let archived = names(&[
            "000000010000000000000004",
            "000000020000000000000005",
            "000000020000000000000006",
            "000000020000000000000007.partial",
            "000000030000000000000007",
            "000000030000000000000008",
        ]);
        let start = seg("000000010000000000000004");
        assert_eq!(newest_timeline(start, &archived, &h, MIB16), 3);
        assert!(gaps(start, &archived, &h, MIB16).is_empty());
        // A backup taken on timeline 2 follows the same path from there.
        assert!(gaps(seg("000000020000000000000006"), &archived, &h, MIB16).is_empty());
    }

    #[test]
    fn ignores_a_branch_taken_before_the_start() {
        // Timeline 2 left timeline 1 at segment 3; a backup of timeline 1
        // starting at segment 6 is on timeline 1's own, later history.
        let h = histories(&[(2, "1\t0/3000000\tx\n")]);
        let archived = names(&[
            "000000010000000000000006",
            "000000010000000000000007",
            "000000020000000000000003",
            "000000020000000000000009",
        ]);
        let start = seg("000000010000000000000006");
        assert_eq!(newest_timeline(start, &archived, &h, MIB16), 1);
        assert!(gaps(start, &archived, &h, MIB16).is_empty());
    }
}
