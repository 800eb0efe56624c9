//! `cat [PATH]...`: copies each file (or stdin, for none or `-`) to stdout. Exit 1 if a file
//! cannot be read (reported on stderr, the others still copied).

use std::io::Write;

fn main() {
    let paths: Vec<String> = std::env::args().skip(1).collect();
    let paths = if paths.is_empty() {
        vec!["-".to_string()]
    } else {
        paths
    };
    let mut out = std::io::stdout().lock();
    let mut status = 0;
    for path in &paths {
        let copied = if path == "-" {
            std::io::copy(&mut std::io::stdin().lock(), &mut out).map(|_| ())
        } else {
            std::fs::File::open(path).and_then(|mut f| std::io::copy(&mut f, &mut out).map(|_| ()))
        };
        if let Err(e) = copied {
            let _ = out.flush();
            eprintln!("cat: {path}: {e}");
            status = 1;
        }
    }
    let _ = out.flush();
    std::process::exit(status);
}
