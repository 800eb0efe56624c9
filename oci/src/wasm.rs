//! What a Wasm binary is, read from its bytes: core module or component, the WASI version it
//! targets (the artifact's `os`), and a component's top-level imports and exports (recorded in
//! the artifact config's `component` field).

use serde::Serialize;
use wasmparser::{Encoding, Parser, Payload};

use crate::media::WASM_MAGIC;

/// A core module or a component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A core module (WASI preview 1).
    Module,
    /// A component (WASI 0.2).
    Component,
}

/// What [`describe`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WasmInfo {
    /// Module or component.
    pub kind: Kind,
    /// `wasip1` for core modules, `wasip2` for components.
    pub os: &'static str,
    /// A component's top-level imports (`wasi:cli/environment@0.2.0`, …); empty for modules.
    pub imports: Vec<String>,
    /// A component's top-level exports (`wasi:cli/run@0.2.0`, …); empty for modules.
    pub exports: Vec<String>,
}

/// Reads the header and, for components, the top-level import and export names. `what` names
/// the input in the error (a file name). Function bodies are not validated here; the engine
/// does that when it compiles.
pub fn describe(bytes: &[u8], what: &str) -> Result<WasmInfo, String> {
    if bytes.len() < 8 || &bytes[..4] != WASM_MAGIC {
        return Err(format!(
            "{what} is not a WebAssembly binary (no \\0asm header); build it for wasm32-wasip1 \
             or wasm32-wasip2"
        ));
    }
    let mut info = WasmInfo {
        kind: Kind::Module,
        os: "wasip1",
        imports: Vec::new(),
        exports: Vec::new(),
    };
    // Nested modules and components have sections of their own; only depth 1 is the
    // component's interface.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| format!("{what} is not valid WebAssembly: {e}"))?;
        match payload {
            Payload::Version { encoding, .. } => {
                depth += 1;
                if depth == 1 && encoding == Encoding::Component {
                    info.kind = Kind::Component;
                    info.os = "wasip2";
                }
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(section) if depth == 1 => {
                for import in section {
                    let import = import.map_err(|e| format!("{what}: bad import: {e}"))?;
                    info.imports.push(import.name.name.to_string());
                }
            }
            Payload::ComponentExportSection(section) if depth == 1 => {
                for export in section {
                    let export = export.map_err(|e| format!("{what}: bad export: {e}"))?;
                    info.exports.push(export.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_components_and_garbage() {
        let module = wat::parse_str("(module (func (export \"_start\")))").unwrap();
        let info = describe(&module, "m.wasm").unwrap();
        assert_eq!((info.kind, info.os), (Kind::Module, "wasip1"));
        assert!(info.imports.is_empty() && info.exports.is_empty());

        let component = wat::parse_str(
            r#"(component
                 (import "wasi:cli/environment@0.2.0" (instance))
                 (core module $m (func (export "run")))
                 (component $inner (import "nested:only/inside" (instance)))
                 (core instance $i (instantiate $m))
                 (func $run (canon lift (core func $i "run")))
                 (instance $e (export "run" (func $run)))
                 (export "wasi:cli/run@0.2.0" (instance $e)))"#,
        )
        .unwrap();
        let info = describe(&component, "c.wasm").unwrap();
        assert_eq!((info.kind, info.os), (Kind::Component, "wasip2"));
        assert_eq!(info.imports, ["wasi:cli/environment@0.2.0"]);
        assert_eq!(info.exports, ["wasi:cli/run@0.2.0"]);

        let err = describe(b"#!/bin/sh\n", "run.sh").unwrap_err();
        assert!(err.contains("run.sh is not a WebAssembly binary"), "{err}");
        let err = describe(b"\0asm\x01\0\0\0\x7f", "cut.wasm").unwrap_err();
        assert!(err.contains("cut.wasm is not valid WebAssembly"), "{err}");
    }
}
