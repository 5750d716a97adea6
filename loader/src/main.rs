//! The `edge-hmac` CLI (fetch, run, sign, verify, render); built out in the loader work.

fn main() {
    eprintln!("edge-hmac: not built yet; see README");
    std::process::exit(2);
}
