//! Dev tool: `cargo run -p rules --example nft -- [-s] [-p] [-a] [-n] FILE` parses FILE and prints the
//! ruleset the way `nft list ruleset` would (or the error, the way `nft -c -f` would).
//! (File reading happens here, in the example, never in the library.)

fn main() {
    let mut opts = rules::PrintOptions::default();
    let mut file = None;
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "-s" => opts.stateless = true,
            "-p" => opts.numeric_proto = true,
            "-a" => opts.handles = true,
            "-n" => opts.numeric = true,
            "-y" => opts.numeric_prio = true,
            _ => file = Some(a),
        }
    }
    let file = file.expect("usage: nft [-s] [-p] [-a] [-n] FILE");
    let text = std::fs::read_to_string(&file).expect("read");
    match rules::parse_ruleset(&text, &file) {
        Ok(rs) => {
            if let Err(e) = rules::compile(&rs) {
                eprintln!("{e}");
                std::process::exit(1);
            }
            print!("{}", rules::print_ruleset(&rs, &opts, None));
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
