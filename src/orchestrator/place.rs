//! The "stitch" of image outputs: every committed image is checked against its worker's
//! hash and placed — at the user's path (named by the pattern) and in storage
//! (`jobs/<id>/frames/<name>`, or `jobs/<id>/output.<ext>` for a still). In S3 and Cloud
//! Storage the copy is made inside the bucket and checked by the MD5 the store keeps;
//! nothing passes through this machine unless it is downloaded.

use std::path::{Path, PathBuf};

use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};

use super::{ChunkRecord, JobRecord, OrchestratorError};
use crate::spec::OutputKind;
use crate::stitch::SegmentProblem;
use crate::storage::{keys, Storage, StorageError};
use crate::worker::ImageFile;

/// Images placed at once.
const PARALLEL: usize = 8;
/// Prefix of the temporary files images are written through at the user's path.
const PART_PREFIX: &str = ".helios-part-";

/// One committed image on its way to its places.
struct Item {
    chunk: u32,
    source: String,
    file: ImageFile,
}

/// Checks and places every committed image of an image job; a file whose bytes are not
/// the ones its worker reported is a problem of its chunk, which is rendered again.
pub(super) async fn place_images(
    job: &JobRecord,
    storage: &Storage,
    chunks: &[ChunkRecord],
) -> Result<Result<PathBuf, Vec<SegmentProblem>>, OrchestratorError> {
    let mut items = Vec::new();
    let mut problems = Vec::new();
    for c in chunks {
        match c
            .segment
            .as_ref()
            .and_then(|s| Some((s, s.media.as_ref()?.files.as_ref()?)))
        {
            Some((seg, files)) => items.extend(files.iter().map(|f| Item {
                chunk: c.chunk.index,
                source: format!("{}/{}", seg.key, f.name),
                file: f.clone(),
            })),
            None => problems.push(SegmentProblem {
                index: c.chunk.index as usize,
                reason: format!("chunk {} has no committed images", c.chunk.index),
            }),
        }
    }
    if !problems.is_empty() {
        return Ok(Err(problems));
    }
    let still = job.spec.output.kind == OutputKind::Still;
    let output = PathBuf::from(&job.output);
    let folder = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    if job.download {
        tokio::fs::create_dir_all(&folder)
            .await
            .map_err(|e| io(format!("cannot create {}", folder.display()), e))?;
        remove_stale_parts(&folder).await;
    }
    let mut items = items.into_iter();
    // The first image alone, then (for crash tests) a point where some are placed.
    let first: Vec<Item> = items.by_ref().take(1).collect();
    let mut placed = place_all(job, storage, first, &output, &folder, still).await?;
    crate::failpoint::hit("mid-placement");
    placed.extend(place_all(job, storage, items.collect(), &output, &folder, still).await?);
    let problems: Vec<SegmentProblem> = placed.into_iter().flatten().collect();
    if !problems.is_empty() {
        return Ok(Err(problems));
    }
    Ok(Ok(output))
}

/// Places `items`, a few at a time; returns each one's problem, if it has one.
async fn place_all(
    job: &JobRecord,
    storage: &Storage,
    items: Vec<Item>,
    output: &Path,
    folder: &Path,
    still: bool,
) -> Result<Vec<Option<SegmentProblem>>, OrchestratorError> {
    futures::stream::iter(items.into_iter().map(|it| {
        let dest = job.download.then(|| match still {
            true => output.to_path_buf(),
            false => folder.join(&it.file.name),
        });
        let key = match still {
            true => job.output_key(),
            false => keys::frame_file(&job.id, &it.file.name),
        };
        async move { place(storage, &it, dest.as_deref(), &key).await }
    }))
    .buffered(PARALLEL)
    .try_collect()
    .await
}

/// Places one image: downloaded (hash checked) to `dest` when there is one, and copied to
/// `key` in storage (a link in local storage; in a bucket a server-side copy checked by MD5).
async fn place(
    storage: &Storage,
    it: &Item,
    dest: Option<&Path>,
    key: &str,
) -> Result<Option<SegmentProblem>, OrchestratorError> {
    let lying = |what: String| {
        Ok(Some(SegmentProblem {
            index: it.chunk as usize,
            reason: format!("image {} {what}", it.file.name),
        }))
    };
    if let Some(src) = storage.local_path(&it.source) {
        let bytes = match tokio::fs::read(&src).await {
            Ok(b) => b,
            Err(e) => return lying(format!("cannot be read: {e}")),
        };
        if let Some(why) = mismatch(&bytes, &it.file) {
            return lying(why);
        }
        if let Some(dest) = dest {
            write_atomically(dest, &bytes).await?;
        }
        storage.put_file_linked(key, &src).await?;
        return Ok(None);
    }
    if let Some(dest) = dest {
        let bytes = match storage.get(&it.source).await {
            Ok(b) => b,
            Err(StorageError::NotFound { .. }) => return lying("is missing from storage".into()),
            Err(e) => return Err(e.into()),
        };
        if let Some(why) = mismatch(&bytes, &it.file) {
            return lying(why);
        }
        write_atomically(dest, &bytes).await?;
    }
    match storage.copy(&it.source, key).await {
        Ok(()) => {}
        Err(StorageError::NotFound { .. }) => return lying("is missing from storage".into()),
        Err(e) => return Err(e.into()),
    }
    if dest.is_none() {
        // Not downloaded: the bucket's own MD5 of the copy stands for its bytes.
        match storage.stored_md5(key).await? {
            Some(md5) if md5 != it.file.md5 => {
                let _ = storage.delete(key).await;
                return lying(format!(
                    "has MD5 {md5} in storage, its worker reported {}",
                    it.file.md5
                ));
            }
            Some(_) => {}
            None => {
                let bytes = storage.get(key).await?;
                if let Some(why) = mismatch(&bytes, &it.file) {
                    let _ = storage.delete(key).await;
                    return lying(why);
                }
            }
        }
    }
    Ok(None)
}

/// How `bytes` differ from what the worker reported, if they do.
fn mismatch(bytes: &[u8], f: &ImageFile) -> Option<String> {
    if bytes.len() as u64 != f.bytes {
        return Some(format!(
            "has {} bytes, its worker reported {}",
            bytes.len(),
            f.bytes
        ));
    }
    let sha = hex::encode(Sha256::digest(bytes));
    (sha != f.sha256).then(|| format!("has content hash {sha}, its worker reported {}", f.sha256))
}

/// Writes `dest` through a temporary file beside it and a rename: a reader (or a crash)
/// sees the old file or the whole new one.
async fn write_atomically(dest: &Path, bytes: &[u8]) -> Result<(), OrchestratorError> {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dest.with_file_name(format!("{PART_PREFIX}{name}"));
    let written = async {
        tokio::fs::write(&tmp, bytes).await?;
        tokio::fs::rename(&tmp, dest).await
    }
    .await;
    if let Err(e) = written {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(io(format!("cannot write {}", dest.display()), e));
    }
    Ok(())
}

/// Removes temporary files an interrupted placement left in `folder`.
async fn remove_stale_parts(folder: &Path) {
    let Ok(mut dir) = tokio::fs::read_dir(folder).await else {
        return;
    };
    while let Ok(Some(entry)) = dir.next_entry().await {
        if entry.file_name().to_string_lossy().starts_with(PART_PREFIX) {
            let _ = tokio::fs::remove_file(entry.path()).await;
        }
    }
}

fn io(context: String, source: std::io::Error) -> OrchestratorError {
    OrchestratorError::Io { context, source }
}
