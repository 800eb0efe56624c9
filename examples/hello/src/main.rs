//! hello: prints its arguments and environment, then exits with the code given by
//! `--exit CODE` (default 0). Built for wasm32-wasip1 (a core module) and wasm32-wasip2
//! (a `wasi:cli/command` component) from this one source.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    println!("hello from wasmkube");
    for (i, arg) in args.iter().enumerate() {
        println!("arg[{i}]={arg}");
    }
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    env.sort();
    for (k, v) in env {
        println!("env {k}={v}");
    }
    let code = args
        .windows(2)
        .find(|w| w[0] == "--exit")
        .and_then(|w| w[1].parse::<i32>().ok())
        .unwrap_or(0);
    if code != 0 {
        eprintln!("exiting with {code}");
    }
    std::process::exit(code);
}
