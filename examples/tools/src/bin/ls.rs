//! `ls [PATH]...`: lists each directory's entries, sorted, one per line, directories with a
//! trailing `/`; a file is listed as itself. Several paths each get a `PATH:` heading.
//! Exit 1 if a path cannot be read (reported on stderr, the others still listed).

fn main() {
    let mut paths: Vec<String> = std::env::args().skip(1).collect();
    if paths.is_empty() {
        paths.push(".".into());
    }
    let mut status = 0;
    for (i, path) in paths.iter().enumerate() {
        if paths.len() > 1 {
            println!("{}{path}:", if i > 0 { "\n" } else { "" });
        }
        match list(path) {
            Ok(lines) => lines.iter().for_each(|l| println!("{l}")),
            Err(e) => {
                eprintln!("ls: {path}: {e}");
                status = 1;
            }
        }
    }
    std::process::exit(status);
}

fn list(path: &str) -> std::io::Result<Vec<String>> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_dir() {
        return Ok(vec![path.to_string()]);
    }
    let mut names: Vec<String> = std::fs::read_dir(path)?
        .map(|e| {
            let e = e?;
            let dir = e.file_type()?.is_dir();
            Ok(format!(
                "{}{}",
                e.file_name().to_string_lossy(),
                if dir { "/" } else { "" }
            ))
        })
        .collect::<std::io::Result<_>>()?;
    names.sort();
    Ok(names)
}
