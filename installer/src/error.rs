//! Installer failures: every one names the step and the file it was working on.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// A failed step.
#[derive(Debug, Error)]
#[error("step `{step}` failed on {}: {why}", file.display())]
pub struct Failure {
    /// The step (`copy shim`, `write containerd config`, ...).
    pub step: &'static str,
    /// The file or object it was working on.
    pub file: PathBuf,
    /// What went wrong.
    pub why: String,
}

impl Failure {
    /// A failure of `step` on `file`.
    pub fn new(step: &'static str, file: &Path, why: String) -> Failure {
        Failure {
            step,
            file: file.to_path_buf(),
            why,
        }
    }
}
