use std::path::PathBuf;

use super::*;

/// An OCI layout tar as GNU tar writes it (`./index.json` entries, a blob before the index).
fn layout_tar(index: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("blobs/sha256")).unwrap();
    std::fs::write(dir.path().join("blobs/sha256/aa"), vec![b'x'; 700]).unwrap();
    std::fs::write(
        dir.path().join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("index.json"), index).unwrap();
    let out = dir.path().join("out.tar");
    let status = Command::new("tar")
        .arg("-cf")
        .arg(&out)
        .arg("-C")
        .arg(dir.path())
        .args(["./blobs", "./oci-layout", "./index.json"])
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read(out).unwrap()
}

#[test]
fn the_layout_index_names_the_image_and_its_manifest_digest() {
    let index = r#"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:0123","size":5,"annotations":{"io.containerd.image.name":"wasmkube.dev/module-stub:v1","org.opencontainers.image.ref.name":"v1"}}]}"#;
    assert_eq!(
        layout_manifest(&layout_tar(index)).unwrap(),
        (STUB_IMAGE.to_string(), "sha256:0123".to_string())
    );
    let unnamed = r#"{"schemaVersion":2,"manifests":[{"digest":"sha256:0123"}]}"#;
    let err = layout_manifest(&layout_tar(unnamed)).unwrap_err();
    assert!(err.contains("io.containerd.image.name"), "{err}");
    let err = layout_manifest(&[0; 1024]).unwrap_err();
    assert!(err.contains("not an OCI layout"), "{err}");
    let err = layout_manifest(b"short").unwrap_err();
    assert!(err.contains("not an OCI layout"), "{err}");
}

#[test]
fn the_stub_digest_is_read_from_ctr_listings_of_each_generation() {
    let v1 = "REF                         TYPE                                    DIGEST                                                                  SIZE    PLATFORMS   LABELS \n\
docker.io/library/pause:3.9 application/vnd.oci.image.manifest.v1+json sha256:1111 1.0 KiB linux/amd64 -      \n\
wasmkube.dev/module-stub:v1 application/vnd.oci.image.manifest.v1+json sha256:2222 512.0 B wasip1/wasm -      \n";
    assert_eq!(
        crate::node::parse_image_digest(v1, STUB_IMAGE).as_deref(),
        Some("sha256:2222")
    );
    let v2 = "REF TYPE DIGEST SIZE PLATFORMS LABELS\n\
wasmkube.dev/module-stub:v1 application/vnd.oci.image.manifest.v1+json sha256:3333 653.0 B wasip1/wasm io.cri-containerd.image=managed\n";
    assert_eq!(
        crate::node::parse_image_digest(v2, STUB_IMAGE).as_deref(),
        Some("sha256:3333")
    );
    let header_only = "REF TYPE DIGEST SIZE PLATFORMS LABELS\n";
    assert_eq!(
        crate::node::parse_image_digest(header_only, STUB_IMAGE),
        None
    );
    let other =
        "REF TYPE DIGEST SIZE PLATFORMS LABELS\nwasmkube.dev/module-stub:v10 t sha256:4 1 B x -\n";
    assert_eq!(crate::node::parse_image_digest(other, STUB_IMAGE), None);
}

fn host(root: PathBuf, socket: PathBuf, ctr: &str) -> Host {
    Host {
        root,
        socket,
        ctr: PathBuf::from(ctr),
        node: "node-7".to_string(),
    }
}

#[test]
fn host_programs_are_found_on_the_hosts_path_under_its_root() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("usr/bin")).unwrap();
    std::fs::write(root.path().join("usr/bin/ctr"), "").unwrap();
    let h = host(
        root.path().to_path_buf(),
        "/run/containerd/containerd.sock".into(),
        "ctr",
    );
    assert_eq!(
        h.find_program(Path::new("ctr")).unwrap(),
        PathBuf::from("/usr/bin/ctr")
    );
    assert_eq!(
        h.find_program(Path::new("/usr/bin/ctr")).unwrap(),
        PathBuf::from("/usr/bin/ctr")
    );
    let err = h.find_program(Path::new("systemctl")).unwrap_err();
    assert!(
        err.contains("node node-7") && err.contains("`systemctl` is not on the host's PATH"),
        "{err}"
    );
    let err = h.find_program(Path::new("/opt/ctr")).unwrap_err();
    assert!(err.contains("/opt/ctr does not exist on the host"), "{err}");
}

#[test]
fn a_containerd_that_does_not_answer_is_named_with_the_socket_setting() {
    let dir = tempfile::tempdir().unwrap();
    let h = host("/".into(), dir.path().join("containerd.sock"), "ctr");
    let err = import_written(Path::new("/nonexistent.tar"), Path::new("/x"), &h).unwrap_err();
    assert!(err.to_string().contains("import module stub"), "{err}");
    let err = remove(&h).unwrap_err().to_string();
    assert!(
        err.contains("step `remove module stub` failed on wasmkube.dev/module-stub:v1")
            && err.contains("node node-7: containerd does not answer on")
            && err.contains("--containerd-socket")
            && err.contains("installer.containerdSocket")
            && err.contains("ctr --address"),
        "{err}"
    );
}

#[test]
fn a_missing_ctr_names_the_node_the_command_and_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("containerd.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let h = host("/".into(), socket.clone(), "/nonexistent/ctr");
    let err = remove(&h).unwrap_err().to_string();
    let command = format!(
        "`/nonexistent/ctr --address {} --namespace k8s.io images ls`",
        socket.display()
    );
    assert!(
        err.contains("node node-7")
            && err.contains(&command)
            && err.contains("--ctr (CTR, chart value installer.ctr)"),
        "{err}"
    );
}

#[test]
fn a_shim_that_cannot_write_the_stub_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("stub.tar");
    let err = write_archive(Path::new("/bin/false"), &archive)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("step `write module stub` failed on")
            && err.contains("`/bin/false --write-stub-image"),
        "{err}"
    );
}
