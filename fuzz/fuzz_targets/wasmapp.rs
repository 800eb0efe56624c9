//! Fuzz target: a WasmApp manifest (YAML, as `kubectl apply` and `wasmkube manifest` read it)
//! through deserialization, the CRD's CEL rules, and — when the API server would accept it —
//! the Deployment, Service and placement the operator builds from it. Nothing may panic, and
//! the Deployment always runs the pinned module with the app's runtime class.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmkube_oci::Format;
use wasmkube_operator::api::WasmApp;
use wasmkube_operator::reconcile::resources::{self, Module};

fuzz_target!(|text: &str| {
    let Ok(app) = serde_saphyr::from_str::<WasmApp>(text) else {
        return;
    };
    if app.validate_cel().is_err() {
        return;
    }
    for format in [Format::Image, Format::Artifact] {
        let module = Module {
            pinned: format!("registry.example/app@sha256:{}", "a".repeat(64)),
            format,
        };
        let deployment = resources::deployment(&app, &module);
        let pod = deployment
            .spec
            .and_then(|s| s.template.spec)
            .expect("a deployment has a pod template");
        assert_eq!(
            pod.runtime_class_name.as_deref(),
            Some(app.spec.runtime_class_name.as_str())
        );
        if format == Format::Image {
            assert!(
                pod.containers
                    .iter()
                    .any(|c| c.image.as_deref() == Some(module.pinned.as_str())),
                "no container runs the pinned image"
            );
        }
    }
    let _ = resources::service(&app);
    let _ = resources::placement(&app);
    let _ = resources::labels(&app);
});
