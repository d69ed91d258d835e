//! A small tmpfs file system that a test can fill and free: a real full disk, for the
//! store's behaviour when writes fail. Mounting needs root (CAP_SYS_ADMIN); without it
//! the test says so loudly (`CAIRN_MOUNT_SKIPPED`, which `.ci/run`, running as root,
//! treats as a failure) and is skipped.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// A tmpfs of `size` (such as `"8m"`), or `None` after saying why it could not be had.
    pub fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(out) if out.status.success() => Some(SmallDisk { dir }),
            Ok(out) => {
                eprintln!(
                    "CAIRN_MOUNT_SKIPPED: cannot mount a small tmpfs to fill ({}); this test needs root",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("CAIRN_MOUNT_SKIPPED: cannot run mount ({e}); this test needs root");
                None
            }
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn filler(&self) -> PathBuf {
        self.dir.path().join("filler")
    }

    /// Writes a file until the file system is full.
    pub fn fill(&self) {
        use std::io::Write as _;
        let mut file = std::fs::File::create(self.filler()).unwrap();
        let block = vec![0xa5u8; 64 << 10];
        loop {
            match file.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        // What is left is less than a block: take it a byte at a time.
        while let Ok(n) = file.write(&[0xa5]) {
            if n == 0 {
                break;
            }
        }
    }

    /// Removes what [`fill`](Self::fill) wrote.
    pub fn free(&self) {
        std::fs::remove_file(self.filler()).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
