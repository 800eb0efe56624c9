use std::collections::HashMap;

use oci_client::manifest::{OciDescriptor, OciImageManifest};

use super::*;
use crate::handoff;

fn manifest(config: &str, layers: &[&str]) -> OciImageManifest {
    OciImageManifest {
        config: OciDescriptor {
            media_type: config.to_string(),
            ..Default::default()
        },
        layers: layers
            .iter()
            .enumerate()
            .map(|(i, t)| OciDescriptor {
                media_type: t.to_string(),
                digest: format!("sha256:{i:064}"),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

#[test]
fn module_layer_accepts_each_wasm_layer_type() {
    for layer in MODULE_LAYERS {
        let m = manifest(WASM_CONFIG, &[layer]);
        assert_eq!(module_layer("r", &m).expect("wasm").media_type, *layer);
    }
}

#[test]
fn module_layer_refuses_images_and_ambiguous_artifacts_saying_what_they_are() {
    let image = manifest(
        "application/vnd.oci.image.config.v1+json",
        &["application/vnd.oci.image.layer.v1.tar+gzip"],
    );
    let err = module_layer("reg/app:1", &image)
        .expect_err("image")
        .to_string();
    assert!(err.contains("reg/app:1 is not a Wasm artifact"), "{err}");
    assert!(
        err.contains("config application/vnd.oci.image.config.v1+json, layers [application/vnd.oci.image.layer.v1.tar+gzip]"),
        "{err}"
    );
    let two = manifest(WASM_CONFIG, &[WASM_LAYER, WASM_LAYER]);
    let err = module_layer("r", &two).expect_err("two").to_string();
    assert!(err.contains("2 module layers"), "{err}");
}

#[test]
fn title_is_a_plain_file_name_or_nothing() {
    let mut layer = OciDescriptor::default();
    assert_eq!(title(&layer), None);
    for (value, want) in [
        ("hello.wasm", Some("hello.wasm")),
        ("../x.wasm", None),
        ("", None),
    ] {
        layer.annotations = Some(
            [(TITLE_ANNOTATION.to_string(), value.to_string())]
                .into_iter()
                .collect(),
        );
        assert_eq!(title(&layer), want, "{value:?}");
    }
}

#[test]
fn container_annotation_wins_over_the_pod_wide_one() {
    let mut a: HashMap<String, String> = HashMap::new();
    assert_eq!(handoff::module_reference(&a), None);
    a.insert(handoff::MODULE_ANNOTATION.into(), " reg/all:1 ".into());
    assert_eq!(handoff::module_reference(&a), Some("reg/all:1"));
    a.insert(handoff::CONTAINER_NAME_ANNOTATION.into(), "web".into());
    assert_eq!(handoff::module_reference(&a), Some("reg/all:1"));
    a.insert("wasmkube.dev/module.web".into(), "reg/web:2".into());
    assert_eq!(handoff::module_reference(&a), Some("reg/web:2"));
    a.insert(handoff::CONTAINER_NAME_ANNOTATION.into(), "other".into());
    assert_eq!(handoff::module_reference(&a), Some("reg/all:1"));
}
