//! `cargo +nightly fuzz run parse` (from `rules/`): any input, as an nft ruleset file. Whatever the
//! parser accepts must print (text and JSON), compile, and (when it has no quoted strings) print back
//! to text that parses again.
//! Seed corpus: the conformance corpus' bogons and dumps (see `rules/fuzz/README.md`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(rs) = rules::parse_ruleset(src, "fuzz.nft") else {
        return;
    };
    let text = rules::print_ruleset(&rs, &Default::default(), None);
    let _ = rules::print_ruleset_json(&rs, &Default::default(), None);
    let _ = rules::compile(&rs);
    // the listing is input nft (and sluice) accept; names written as quoted strings ("a b") are listed
    // unquoted, by nft too, so only inputs without quotes are held to this
    if src.contains('"') {
        return;
    }
    if let Err(e) = rules::parse_ruleset(&text, "listing.nft") {
        panic!("the listing of an accepted ruleset does not parse: {e}\n--- input:\n{src}\n--- listing:\n{text}");
    }
});
