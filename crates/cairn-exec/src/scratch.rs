//! Where a run's output file (`$CAIRN_OUTPUT`) lives while its command runs.
//!
//! The file is deleted when the attempt ends, but a launcher killed with SIGKILL cannot
//! delete it, and what a command reports there (data versions, metadata) may be PHI. So
//! the files live in one private directory per user (`$TMPDIR/cairn-UID`, mode 0700,
//! refused if another user owns it or it is a symbolic link: a hostile neighbour could
//! otherwise read them or plant one), each named after its run, and recovery deletes
//! those of the runs it takes over.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::PathBuf;

use tempfile::NamedTempFile;

/// The private directory, created if missing.
pub fn dir() -> io::Result<PathBuf> {
    let uid = nix::unistd::getuid().as_raw();
    let dir = std::env::temp_dir().join(format!("cairn-{uid}"));
    match fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = fs::symlink_metadata(&dir)?;
    let refuse = |why: &str| {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} {why}; run output files must be private (remove it, Cairn recreates it)",
                dir.display()
            ),
        ))
    };
    if !meta.is_dir() {
        return refuse("is not a directory");
    }
    if meta.uid() != uid {
        return refuse("belongs to another user");
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return refuse("is readable or writable by other users");
    }
    Ok(dir)
}

/// A new output file for `run_id` (mode 0600, deleted when dropped).
pub fn output_file(run_id: &str) -> io::Result<NamedTempFile> {
    tempfile::Builder::new()
        .prefix(&prefix(run_id))
        .suffix(".jsonl")
        .tempfile_in(dir()?)
}

/// Deletes the output files an earlier attempt of `run_id` left behind (its launcher was
/// killed); how many.
pub fn remove_leftovers(run_id: &str) -> io::Result<usize> {
    let prefix = prefix(run_id);
    let mut removed = 0;
    for entry in fs::read_dir(dir()?)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            match fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(removed)
}

/// `output-RUN.`: a run id keeps only characters that are safe in a file name, and the dot
/// ends it, so one id's prefix never names another's files (`run-a.` is not a prefix of
/// `run-a-b.`).
fn prefix(run_id: &str) -> String {
    let safe: String = run_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("output-{safe}.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_of_one_run_are_removed_and_no_other() {
        let a = output_file("run-a").unwrap();
        let b = output_file("run-a-b").unwrap();
        let (a, b) = (a.keep().unwrap().1, b.keep().unwrap().1);
        assert_eq!(remove_leftovers("run-a").unwrap(), 1);
        assert!(!a.exists());
        assert!(b.exists());
        assert_eq!(remove_leftovers("run-a-b").unwrap(), 1);
        assert!(!b.exists());
    }

    #[test]
    fn files_are_private() {
        let f = output_file("run-private").unwrap();
        let mode = fs::metadata(f.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
        let dir = fs::metadata(dir().unwrap()).unwrap().permissions().mode();
        assert_eq!(dir & 0o077, 0, "{dir:o}");
    }
}
