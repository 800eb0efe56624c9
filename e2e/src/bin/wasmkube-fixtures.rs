//! `wasmkube-fixtures OUT`: writes the test modules as OCI archives for the cluster suites
//! (`hello-p1.tar`, `hello-artifact-p1.tar`, `probe-p1.tar`, `probe-p2.tar`, `probe-tools.tar`,
//! `http-hello-p2.tar`), and the native images an ordinary (runc) pod needs: `pause.tar`
//! (the sandbox image, `registry.k8s.io/pause:wasmkube-e2e`) and `hello-native.tar`.

use std::path::PathBuf;

use wasmkube_e2e::cri::{native_binary, PAUSE_IMAGE};
use wasmkube_e2e::fixtures::{hello_artifact, image, HELLO_P1, HTTP_HELLO, PROBE, PROBE_P2, TOOLS};
use wasmkube_e2e::image::Image;

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
    image(TOOLS).write_archive(&out.join("probe-tools.tar"))?;
    image(HTTP_HELLO).write_archive(&out.join("http-hello-p2.tar"))?;
    hello_artifact("docker.io/wasmkube/hello-artifact:p1")
        .write_archive(&out.join("hello-artifact-p1.tar"))?;
    let native = out.join("native");
    std::fs::create_dir_all(&native)?;
    Image::native(PAUSE_IMAGE, "pause", native_binary("pause", &native)?)
        .write_archive(&out.join("pause.tar"))?;
    Image::native(
        "docker.io/wasmkube/hello-native:1",
        "hello-native",
        native_binary("hello-native", &native)?,
    )
    .write_archive(&out.join("hello-native.tar"))?;
    for name in [
        "hello-p1",
        "hello-artifact-p1",
        "probe-p1",
        "probe-p2",
        "probe-tools",
        "http-hello-p2",
        "pause",
        "hello-native",
    ] {
        println!("wrote {}", out.join(format!("{name}.tar")).display());
    }
    Ok(())
}
