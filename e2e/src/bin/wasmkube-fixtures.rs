//! `wasmkube-fixtures OUT`: writes the test modules as OCI archives for the kind suite
//! (`hello-p1.tar`, `hello-artifact-p1.tar`, `probe-p1.tar`, `probe-p2.tar`, `http-hello-p2.tar`).

use std::path::PathBuf;

use wasmkube_e2e::fixtures::{hello_artifact, image, HELLO_P1, HTTP_HELLO, PROBE, PROBE_P2};

fn main() -> anyhow::Result<()> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "target/kind".into()),
    );
    std::fs::create_dir_all(&out)?;
    image(HELLO_P1).write_archive(&out.join("hello-p1.tar"))?;
    image(PROBE).write_archive(&out.join("probe-p1.tar"))?;
    image(PROBE_P2).write_archive(&out.join("probe-p2.tar"))?;
    image(HTTP_HELLO).write_archive(&out.join("http-hello-p2.tar"))?;
    hello_artifact("docker.io/wasmkube/hello-artifact:p1")
        .write_archive(&out.join("hello-artifact-p1.tar"))?;
    for name in [
        "hello-p1",
        "hello-artifact-p1",
        "probe-p1",
        "probe-p2",
        "http-hello-p2",
    ] {
        println!("wrote {}", out.join(format!("{name}.tar")).display());
    }
    Ok(())
}
