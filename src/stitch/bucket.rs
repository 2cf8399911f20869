//! Cutting a byte-joined output into the parts of an S3 multipart upload.
//!
//! S3 refuses parts under 5 MiB except the last, allows at most 10,000, and a part copied
//! server-side (UploadPartCopy) comes from one object. So a segment of at least the minimum
//! part size that starts a part is copied as it is; every other run of objects — the init
//! the orchestrator wrote, segments too small on their own, the audio and index tail — is
//! joined into one object by a worker (an assembly task) and that object is copied. No
//! padding is ever added and no segment's bytes pass through the orchestrator.

/// S3's smallest part but the last.
pub const MIN_PART_BYTES: u64 = 5 * 1024 * 1024;
/// S3's most parts in one upload.
pub const MAX_PARTS: u64 = 10_000;

/// One object of the output, in output order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Storage key.
    pub key: String,
    /// Size.
    pub bytes: u64,
    /// Hex SHA-256 as committed.
    pub sha256: String,
    /// Hex MD5, when known: a copied part's ETag must equal it.
    pub md5: Option<String>,
    /// The chunk whose segment it is, if it is one.
    pub chunk: Option<u32>,
}

/// One part of the upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Copy this item (by index) as it is.
    Copy(usize),
    /// Join these items (consecutive indices) with an assembly task, then copy the result.
    Join(Vec<usize>),
}

/// The smallest part size that keeps `total` bytes within S3's part count.
pub fn min_part(total: u64) -> u64 {
    MIN_PART_BYTES.max(total.div_ceil(MAX_PARTS - 1))
}

/// Cuts `items` into parts: every part but the last holds at least `min` bytes; a segment
/// of at least `min` bytes that would start a part is copied alone; everything else is
/// joined in runs. The first item (the init) always starts a joined run unless it is large
/// enough on its own.
pub fn partition(items: &[Item], min: u64) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut run: Vec<usize> = Vec::new();
    let mut run_bytes = 0u64;
    for (i, item) in items.iter().enumerate() {
        if run.is_empty() && item.bytes >= min {
            parts.push(Part::Copy(i));
            continue;
        }
        run.push(i);
        run_bytes += item.bytes;
        if run_bytes >= min {
            parts.push(Part::Join(std::mem::take(&mut run)));
            run_bytes = 0;
        }
    }
    match run.len() {
        0 => {}
        // The last part may be small, and one object needs no joining.
        1 => parts.push(Part::Copy(run[0])),
        _ => parts.push(Part::Join(run)),
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn item(bytes: u64, chunk: Option<u32>) -> Item {
        Item {
            key: String::new(),
            bytes,
            sha256: String::new(),
            md5: None,
            chunk,
        }
    }

    #[test]
    fn big_segments_are_copied_small_ones_joined() {
        const M: u64 = MIN_PART_BYTES;
        let items = vec![
            item(1_000, None), // init
            item(6 * M, Some(0)),
            item(7 * M, Some(1)),
            item(M / 3, Some(2)),
            item(M / 3, Some(3)),
            item(M, Some(4)),
            item(9_000, None), // tail
        ];
        assert_eq!(
            partition(&items, M),
            vec![
                Part::Join(vec![0, 1]),
                Part::Copy(2),
                Part::Join(vec![3, 4, 5]),
                Part::Copy(6),
            ]
        );
    }

    #[test]
    fn a_small_job_is_one_joined_part() {
        let items: Vec<Item> = (0..5).map(|c| item(1_000, Some(c))).collect();
        assert_eq!(
            partition(&items, MIN_PART_BYTES),
            vec![Part::Join(vec![0, 1, 2, 3, 4])]
        );
        assert_eq!(min_part(100 * 1024 * 1024 * 1024), 10_738_493);
    }

    proptest! {
        #[test]
        fn parts_cover_every_item_once_in_order_and_only_the_last_is_small(
            sizes in proptest::collection::vec(1u64..20_000_000, 1..200),
        ) {
            let items: Vec<Item> = sizes.iter().map(|b| item(*b, Some(0))).collect();
            let parts = partition(&items, MIN_PART_BYTES);
            let order: Vec<usize> = parts.iter().flat_map(|p| match p {
                Part::Copy(i) => vec![*i],
                Part::Join(v) => v.clone(),
            }).collect();
            prop_assert_eq!(order, (0..items.len()).collect::<Vec<_>>());
            for p in &parts[..parts.len() - 1] {
                let bytes: u64 = match p {
                    Part::Copy(i) => items[*i].bytes,
                    Part::Join(v) => v.iter().map(|i| items[*i].bytes).sum(),
                };
                prop_assert!(bytes >= MIN_PART_BYTES);
            }
            prop_assert!(parts.len() as u64 <= MAX_PARTS);
        }
    }
}
