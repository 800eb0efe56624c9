//! `wsh`: a tiny interactive shell for `kubectl exec -it`: prints the prompt `wsh> `, reads a
//! line, and runs one of its built-ins — `echo WORDS...`, `pwd`, `env`, `ls [PATH]`,
//! `cat PATH`, `help`, `exit [CODE]`. End of input exits 0.

use std::io::{BufRead, Write};

fn main() {
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        print!("wsh> ");
        let _ = std::io::stdout().flush();
        let Some(Ok(line)) = lines.next() else {
            println!();
            std::process::exit(0);
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [] => {}
            ["echo", rest @ ..] => println!("{}", rest.join(" ")),
            ["pwd"] => println!("{}", std::env::var("PWD").unwrap_or_else(|_| "/".into())),
            ["env"] => std::env::vars().for_each(|(k, v)| println!("{k}={v}")),
            ["ls"] | ["ls", _] => {
                let path = words.get(1).copied().unwrap_or(".");
                match std::fs::read_dir(path) {
                    Ok(entries) => {
                        let mut names: Vec<String> = entries
                            .flatten()
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect();
                        names.sort();
                        names.iter().for_each(|n| println!("{n}"));
                    }
                    Err(e) => println!("ls: {path}: {e}"),
                }
            }
            ["cat", path] => match std::fs::read_to_string(path) {
                Ok(text) => print!("{text}"),
                Err(e) => println!("cat: {path}: {e}"),
            },
            ["help"] => println!("built-ins: echo, pwd, env, ls [PATH], cat PATH, help, exit [CODE]"),
            ["exit"] => std::process::exit(0),
            ["exit", code] => std::process::exit(code.parse().unwrap_or(1)),
            [other, ..] => println!("wsh: {other}: not a built-in (try help)"),
        }
    }
}
