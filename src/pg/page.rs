//! Data page checksums (`storage/checksum_impl.h`): FNV-1a-like mixing over
//! 32 parallel lanes, folded, mixed with the block number, reduced to 16
//! bits. Identical in 13 to 18.

use crate::pg::lsn::Lsn;

const N_SUMS: usize = 32;
const FNV_PRIME: u32 = 16_777_619;
const BASE_OFFSETS: [u32; N_SUMS] = [
    0x5B1F36E9, 0xB8525960, 0x02AB50AA, 0x1DE66D2A, 0x79FF467A, 0x9BB9F8A3, 0x217E7CD2, 0x83E13D2C,
    0xF8D4474F, 0xE39EB970, 0x42C6AE16, 0x993216FA, 0x7B093B5D, 0x98DAFF3C, 0xF718902A, 0x0B1C9CDB,
    0xE58F764B, 0x187636BC, 0x5D7B3BB1, 0xE73DE7DE, 0x92BEC979, 0xCCA6C0B2, 0x304A0979, 0x85AA43D4,
    0x783125BB, 0x6CA8EAA2, 0xE407EAC6, 0x4B5CFC3E, 0x9FBF8C76, 0x15CA20BE, 0xF2CA9FD3, 0x959BD756,
];

/// Blocks per relation segment file (1 GiB of 8 KiB pages, the default build).
pub const RELSEG_BLOCKS: u64 = 131_072;

fn mix(sum: u32, value: u32) -> u32 {
    let tmp = sum ^ value;
    tmp.wrapping_mul(FNV_PRIME) ^ (tmp >> 17)
}

/// `pg_checksum_page`: the checksum a page should carry at `block`.
pub fn checksum(page: &[u8], block: u32) -> u16 {
    let mut sums = BASE_OFFSETS;
    let words = page.len() / 4;
    for i in 0..words / N_SUMS {
        for (j, sum) in sums.iter_mut().enumerate() {
            let at = (i * N_SUMS + j) * 4;
            // The stored checksum (bytes 8..10) counts as zero.
            let mut word = [page[at], page[at + 1], page[at + 2], page[at + 3]];
            if at == 8 {
                word[0] = 0;
                word[1] = 0;
            }
            *sum = mix(*sum, u32::from_le_bytes(word));
        }
    }
    for _ in 0..2 {
        for sum in sums.iter_mut() {
            *sum = mix(*sum, 0);
        }
    }
    let folded = sums.iter().fold(0u32, |acc, s| acc ^ s) ^ block;
    ((folded % 65535) + 1) as u16
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageCheck {
    Valid,
    /// Never initialised (all zeros): fine.
    New,
    /// Written since the backup started: WAL replay will rewrite it.
    TooRecent,
    Invalid {
        stored: u16,
        computed: u16,
    },
}

/// Checks one page read for a backup that started at `backup_start`.
pub fn check(page: &[u8], block: u32, backup_start: Lsn) -> PageCheck {
    let pd_upper = u16::from_le_bytes([page[14], page[15]]);
    if pd_upper == 0 {
        return if page.iter().all(|&b| b == 0) {
            PageCheck::New
        } else {
            PageCheck::Invalid {
                stored: 0,
                computed: checksum(page, block),
            }
        };
    }
    let lsn_hi = u32::from_le_bytes([page[0], page[1], page[2], page[3]]);
    let lsn_lo = u32::from_le_bytes([page[4], page[5], page[6], page[7]]);
    if Lsn((u64::from(lsn_hi) << 32) | u64::from(lsn_lo)) >= backup_start {
        return PageCheck::TooRecent;
    }
    let stored = u16::from_le_bytes([page[8], page[9]]);
    let computed = checksum(page, block);
    if stored == computed {
        PageCheck::Valid
    } else {
        PageCheck::Invalid { stored, computed }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_pages_of_every_major_verify() {
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pg");
        for major in 13..=18 {
            let path = base.join(format!("{major}-csum32/page.bin"));
            let page = std::fs::read(&path).unwrap();
            let block: u32 =
                std::fs::read_to_string(base.join(format!("{major}-csum32/page.block")))
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap();
            assert_eq!(
                check(&page, block, Lsn(u64::MAX)),
                PageCheck::Valid,
                "PostgreSQL {major}"
            );
            let mut damaged = page.clone();
            damaged[4000] ^= 1;
            assert!(matches!(
                check(&damaged, block, Lsn(u64::MAX)),
                PageCheck::Invalid { .. }
            ));
            assert!(
                matches!(
                    check(&page, block + 1, Lsn(u64::MAX)),
                    PageCheck::Invalid { .. }
                ),
                "the block number is mixed in"
            );
            assert_eq!(check(&damaged, block, Lsn(0)), PageCheck::TooRecent);
        }
        assert_eq!(check(&[0u8; 8192], 7, Lsn(1)), PageCheck::New);
    }
}
