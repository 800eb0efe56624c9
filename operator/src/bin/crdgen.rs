//! `crdgen`: prints the WasmApp CRD (or writes it with `--write DIR`).

fn main() {
    let yaml = wasmkube_operator::crd_yaml();
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--write") => {
            let dir = args.get(2).map(String::as_str).unwrap_or("crds");
            let path = std::path::Path::new(dir).join("wasmapps.wasmkube.dev.yaml");
            if let Err(e) = std::fs::write(&path, yaml) {
                eprintln!("crdgen: cannot write {}: {e}", path.display());
                std::process::exit(1);
            }
            println!("wrote {}", path.display());
        }
        None => print!("{yaml}"),
        Some(other) => {
            eprintln!("usage: crdgen [--write DIR]   (unknown argument {other:?})");
            std::process::exit(2);
        }
    }
}
