//! Progress on stderr for blob transfers of a megabyte or more, when stderr is a terminal (and
//! never in JSON mode): `pushing sha256:1a2b3c4d… 12.0/40.0 MiB`.

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use wasmkube_oci::push::Progress;

/// Transfers smaller than this show no progress.
const SHOW_FROM: u64 = 1 << 20;

/// A progress reporter for `verb` ("pushing", "pulling"), or none when nobody would see it.
pub fn reporter(verb: &'static str, enabled: bool) -> Option<Progress> {
    if !enabled || !std::io::stderr().is_terminal() {
        return None;
    }
    Some(Arc::new(move |digest: &str, done: u64, total: u64| {
        if total < SHOW_FROM {
            return;
        }
        let short = digest.get(..19).unwrap_or(digest);
        let mib = |b: u64| b as f64 / f64::from(1 << 20);
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r{verb} {short}… {:.1}/{:.1} MiB",
            mib(done),
            mib(total)
        );
        if done >= total {
            let _ = writeln!(err);
        }
    }))
}
