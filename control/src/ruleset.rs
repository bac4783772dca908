//! Loading a ruleset file: read, parse, check, compile. Any error comes back in nft's format with the
//! file, line and column, and nothing is applied.

use anyhow::{Context, Result};
use rules::CompiledRuleset;
use std::path::Path;

pub fn load(path: &Path) -> Result<CompiledRuleset> {
    let src = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read ruleset {}", path.display()))?;
    let name = path.display().to_string();
    let ast = rules::parse_ruleset(&src, &name).map_err(|d| anyhow::anyhow!("{d}"))?;
    rules::compile(&ast).map_err(|d| anyhow::anyhow!("{d}"))
}
