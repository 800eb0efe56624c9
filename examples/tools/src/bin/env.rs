//! `env`: prints the environment, one `NAME=value` per line, in the order the process got it.

fn main() {
    for (name, value) in std::env::vars_os() {
        println!("{}={}", name.to_string_lossy(), value.to_string_lossy());
    }
}
