//! `crdgen`: prints the WasmApp CRD, or writes it into each `--write DIR...` (the repository's
//! `crds/` and the chart's `charts/wasmkube/crds/`).

fn main() {
    let yaml = wasmkube_operator::crd_yaml();
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--write") => {
            let dirs = if args.len() > 2 {
                &args[2..]
            } else {
                &["crds".to_string()][..]
            };
            for dir in dirs {
                let path = std::path::Path::new(dir).join("wasmapps.wasmkube.dev.yaml");
                if let Err(e) = std::fs::write(&path, &yaml) {
                    eprintln!("crdgen: cannot write {}: {e}", path.display());
                    std::process::exit(1);
                }
                println!("wrote {}", path.display());
            }
        }
        None => print!("{yaml}"),
        Some(other) => {
            eprintln!("usage: crdgen [--write DIR...]   (unknown argument {other:?})");
            std::process::exit(2);
        }
    }
}
