//! The nft language: lexer, parser, AST, checks, canonical printer, compiled rule IR and evaluation.
//!
//! This crate does no I/O: no files, no clock, no syscalls. `include` goes through a [`Loader`] the
//! caller supplies.
//!
//! Pipeline (like nftables): [`parse_ruleset`] (parse + type check, located [`Diagnostic`]s) →
//! [`Ruleset`] (the AST, printable with [`print_ruleset`]) → [`compile`] → [`CompiledRuleset`]
//! (immutable IR, evaluated with [`CompiledRuleset::eval_chain`]).

pub mod ast;
mod classify;
pub mod compile;
pub mod diag;
pub mod dynset;
pub mod eval;
pub mod expr;
pub mod flowtable;
pub mod json;
pub mod json_in;
mod key;
pub mod lex;
pub(crate) mod misspell;
pub mod nat_effect;
pub mod obj;
pub mod parse;
pub mod print;
mod refs;
pub mod set;
pub mod stateful;
pub mod stmt;
pub mod types;

pub use ast::{Family, Hook, Ruleset};
pub use classify::IndexStats;
pub use compile::{compile, CompiledRuleset, Properties};
pub use diag::Diagnostic;
pub use eval::{ChainId, NfProto, PacketCtx, Verdict};
pub use json_in::{apply_json_owned, parse_json_ruleset};
pub use parse::{Loader, NoIncludes};
pub use print::PrintOptions;

/// A counter's value (per slot).
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct CounterValue {
    pub packets: u64,
    pub bytes: u64,
}

/// Parses and type-checks `src`: the ruleset that results from applying its commands to an empty
/// ruleset. Includes are refused; use [`parse_ruleset_with`] to supply a loader.
pub fn parse_ruleset(src: &str, filename: &str) -> Result<Ruleset, Diagnostic> {
    parse_ruleset_with(src, filename, &NoIncludes)
}

/// Like [`parse_ruleset`], resolving `include` through `loader`.
pub fn parse_ruleset_with(
    src: &str,
    filename: &str,
    loader: &dyn Loader,
) -> Result<Ruleset, Diagnostic> {
    apply_owned(Ruleset::default(), src, filename, loader)
}

/// Applies the commands in `src` (e.g. `add rule ...`, `flush ruleset`) to an existing ruleset. On
/// error the ruleset is left unchanged (commands apply as one transaction, like `nft -f`).
pub fn apply(
    rs: &mut Ruleset,
    src: &str,
    filename: &str,
    loader: &dyn Loader,
) -> Result<(), Diagnostic> {
    *rs = apply_owned(rs.clone(), src, filename, loader)?;
    Ok(())
}

/// Like [`apply`], consuming the ruleset instead of copying it first (for callers that have a copy of
/// their own, or none to keep): the result, or the error (the ruleset is dropped).
pub fn apply_owned(
    mut rs: Ruleset,
    src: &str,
    filename: &str,
    loader: &dyn Loader,
) -> Result<Ruleset, Diagnostic> {
    let texts = parse::Texts::default();
    let mut p = parse::Parser::new(&mut rs, loader, &texts, src, filename);
    p.parse_file()?;
    Ok(rs)
}

/// Prints the ruleset exactly like `nft list ruleset` (with the matching flags). With `counters`,
/// slot i's value is printed for the i-th counter statement; otherwise the values in the AST.
pub fn print_ruleset(
    rs: &Ruleset,
    opts: &PrintOptions,
    counters: Option<&[CounterValue]>,
) -> String {
    let mut p = print::Printer {
        opts,
        counters,
        slot: 0,
        out: String::new(),
        depth: 2,
    };
    p.ruleset(rs);
    p.out
}

/// The ruleset as `nft -j list ruleset` prints it: libnftables' JSON schema, one line (see [`json`]).
/// With `counters`, slot i's value is written for the i-th counter statement, as in
/// [`print_ruleset`].
pub fn print_ruleset_json(
    rs: &Ruleset,
    opts: &PrintOptions,
    counters: Option<&[CounterValue]>,
) -> String {
    json::ruleset_json(rs, opts, counters)
}

/// Prints one rule the way it appears in a listing (without indentation or handle).
pub fn print_rule(rule: &ast::Rule, opts: &PrintOptions) -> String {
    let mut p = print::Printer {
        opts,
        counters: None,
        slot: 0,
        out: String::new(),
        depth: 2,
    };
    p.rule(rule);
    p.out
}
