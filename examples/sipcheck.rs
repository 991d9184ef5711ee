//! `sipcheck`: parse and validate captured SIP messages, one datagram per file.
//!
//! ```text
//! cargo run --release --example sipcheck -- [--json] FILE...
//! ```
//!
//! Prints one line per file: what was parsed, or the response a server should send and why.
//! Exits with status 1 when any file is not ok, 2 on usage or I/O errors.

use std::process::ExitCode;

use sip_stack::sipcheck::check;

fn main() -> ExitCode {
    let mut json = false;
    let mut files = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--json" => json = true,
            "-h" | "--help" => {
                println!("usage: sipcheck [--json] FILE...");
                return ExitCode::SUCCESS;
            }
            _ => files.push(arg),
        }
    }
    if files.is_empty() {
        eprintln!("usage: sipcheck [--json] FILE...");
        return ExitCode::from(2);
    }
    let mut all_ok = true;
    for file in &files {
        let bytes = match std::fs::read(file) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{file}: {e}");
                return ExitCode::from(2);
            }
        };
        let verdict = check(&bytes);
        all_ok &= verdict.is_ok();
        if json {
            println!("{}", verdict.to_json(file));
        } else {
            println!("{}", verdict.to_text(file));
        }
    }
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
