//! Dev tool: `cargo run -p rules --example nft_json -- FILE` prints FILE's ruleset the way
//! `nft -j list ruleset` would after `nft -f FILE`.

fn main() {
    let file = std::env::args().nth(1).expect("usage: nft_json FILE");
    let text = std::fs::read_to_string(&file).expect("read");
    match rules::parse_ruleset(&text, &file) {
        Ok(rs) => print!(
            "{}",
            rules::print_ruleset_json(&rs, &Default::default(), None)
        ),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
