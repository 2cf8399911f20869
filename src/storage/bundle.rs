//! Composition bundles: a directory packed as a deterministic tar + zstd archive, named by
//! the SHA-256 of its bytes, and unpacked safely on workers.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

/// Bundle packing and unpacking failures.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The directory could not be read or the archive written.
    #[error("cannot pack bundle from {dir}: {source}")]
    Pack {
        /// Directory being packed.
        dir: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The bundle holds an entry that could escape or alias the destination.
    #[error("bundle entry {entry:?} rejected: {reason}")]
    Unsafe {
        /// Path as stored in the archive.
        entry: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The archive is corrupt or could not be written out.
    #[error("cannot unpack bundle: {0}")]
    Unpack(#[source] std::io::Error),
}

/// A packed bundle ready to upload.
#[derive(Debug, Clone)]
pub struct PackedBundle {
    /// `tar.zst` bytes.
    pub bytes: Vec<u8>,
    /// Hex SHA-256 of `bytes`: the content address.
    pub sha256: String,
}

/// Packs a directory deterministically: sorted entries, zero mtimes and owners, modes
/// reduced to 0644/0755. Symbolic links are refused, so that what the worker sees is what
/// was in the folder. `node_modules` folders and hidden entries (`.git`, `.cache`…) are
/// left out: a page cannot import from `node_modules` without a bundler anyway.
pub fn pack_dir(dir: &Path) -> Result<PackedBundle, BundleError> {
    let io = |source| BundleError::Pack {
        dir: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    collect(dir, Path::new(""), &mut files).map_err(io)?;
    files.sort();
    let mut tar = tar::Builder::new(Vec::new());
    for rel in files {
        let full = dir.join(&rel);
        let meta = std::fs::metadata(&full).map_err(io)?;
        let mut header = tar::Header::new_gnu();
        header.set_size(meta.len());
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mode(if is_executable(&meta) { 0o755 } else { 0o644 });
        header.set_entry_type(tar::EntryType::Regular);
        let file = std::fs::File::open(&full).map_err(io)?;
        tar.append_data(&mut header, &rel, file).map_err(io)?;
    }
    let raw = tar.into_inner().map_err(io)?;
    let bytes = zstd::encode_all(&raw[..], 3).map_err(io)?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    Ok(PackedBundle { bytes, sha256 })
}

fn collect(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(root.join(rel))? {
        let entry = entry?;
        let name = entry.file_name();
        if name == "node_modules" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        let rel_path = rel.join(&name);
        let ty = entry.file_type()?;
        if ty.is_symlink() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "{} is a symbolic link; bundles hold regular files only",
                    rel_path.display()
                ),
            ));
        } else if ty.is_dir() {
            collect(root, &rel_path, out)?;
        } else if ty.is_file() {
            out.push(rel_path);
        }
    }
    Ok(())
}

#[cfg(unix)]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_: &std::fs::Metadata) -> bool {
    false
}

/// Unpacks a bundle into `dest`, rejecting absolute paths, `..`, links and special files
/// before anything is written outside `dest`.
pub fn unpack(bytes: &[u8], dest: &Path) -> Result<(), BundleError> {
    let decoder = zstd::Decoder::new(bytes).map_err(BundleError::Unpack)?;
    let mut archive = tar::Archive::new(decoder);
    for entry in archive.entries().map_err(BundleError::Unpack)? {
        let mut entry = entry.map_err(BundleError::Unpack)?;
        let path = entry.path().map_err(BundleError::Unpack)?.into_owned();
        let shown = path.display().to_string();
        let unsafe_entry = |reason| BundleError::Unsafe {
            entry: shown.clone(),
            reason,
        };
        for c in path.components() {
            match c {
                Component::Normal(_) | Component::CurDir => {}
                Component::ParentDir => return Err(unsafe_entry("contains '..'")),
                Component::RootDir | Component::Prefix(_) => {
                    return Err(unsafe_entry("is an absolute path"))
                }
            }
        }
        let ty = entry.header().entry_type();
        match ty {
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            tar::EntryType::Directory => {
                std::fs::create_dir_all(dest.join(&path)).map_err(BundleError::Unpack)?;
                continue;
            }
            tar::EntryType::Symlink => return Err(unsafe_entry("is a symbolic link")),
            tar::EntryType::Link => return Err(unsafe_entry("is a hard link")),
            _ => return Err(unsafe_entry("is not a regular file or directory")),
        }
        let out = dest.join(&path);
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent).map_err(BundleError::Unpack)?;
        }
        let mut data = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut data).map_err(BundleError::Unpack)?;
        std::fs::write(&out, data).map_err(BundleError::Unpack)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = if entry.header().mode().unwrap_or(0o644) & 0o111 != 0 {
                0o755
            } else {
                0o644
            };
            std::fs::set_permissions(&out, std::fs::Permissions::from_mode(mode))
                .map_err(BundleError::Unpack)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_is_deterministic_and_round_trips() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("a/b")).unwrap();
        std::fs::write(src.path().join("index.html"), "<p>hi</p>").unwrap();
        std::fs::write(src.path().join("a/b/c.js"), "x=1").unwrap();
        let one = pack_dir(src.path()).unwrap();
        let two = pack_dir(src.path()).unwrap();
        assert_eq!(one.sha256, two.sha256);
        let dest = tempfile::tempdir().unwrap();
        unpack(&one.bytes, dest.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(dest.path().join("a/b/c.js")).unwrap(),
            "x=1"
        );
    }

    fn archive_with(name: &str, ty: tar::EntryType, link: Option<&str>) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(ty);
        h.set_size(0);
        h.set_mode(0o644);
        // Bypass the builder's own path checks to craft hostile entries.
        let bytes = name.as_bytes();
        h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        h.set_cksum();
        tar.append(&h, &[][..]).unwrap();
        zstd::encode_all(&tar.into_inner().unwrap()[..], 1).unwrap()
    }

    #[test]
    fn hostile_entries_are_rejected() {
        let dest = tempfile::tempdir().unwrap();
        for (name, ty, link, why) in [
            ("../evil", tar::EntryType::Regular, None, ".."),
            ("/etc/evil", tar::EntryType::Regular, None, "absolute"),
            (
                "ln",
                tar::EntryType::Symlink,
                Some("/etc/passwd"),
                "symbolic",
            ),
            ("hl", tar::EntryType::Link, Some("x"), "hard link"),
        ] {
            let e = unpack(&archive_with(name, ty, link), dest.path())
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{name}: {e}");
        }
        assert_eq!(std::fs::read_dir(dest.path()).unwrap().count(), 0);
    }
}
