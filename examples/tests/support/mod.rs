//! Helpers shared by the job tests: where the workspace's binaries are.

use std::path::{Path, PathBuf};

/// Directory of the workspace's binaries (`mprun`, the examples).
pub(crate) fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_hello"))
        .parent()
        .expect("binaries have a directory")
        .to_path_buf()
}

/// `path` as a string, after checking that it was built.
pub(crate) fn binary(path: PathBuf) -> String {
    assert!(
        path.exists(),
        "{} is missing: run `cargo test --workspace`, which builds mprun and the runtime's examples",
        path.display()
    );
    path.to_string_lossy().into_owned()
}
