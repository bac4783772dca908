#!/bin/sh
# regenerates the ratchet section of docs/CONFORMANCE.md ratchet section
cd "$(dirname "$0")/../.." || exit 1
: "${CARGO_TARGET_DIR:=target-rules}"; export CARGO_TARGET_DIR
OUT=$(CONFORMANCE_PRINT_RATCHET=1 CONFORMANCE_VERBOSE=1 cargo test -q -p rules --test conformance -- --nocapture 2>&1)
{
cat <<'HDR'
# Conformance

`rules/tests/conformance.rs` runs the nftables test corpus in `../shared/nft-conformance/` (upstream
nftables `tests/py` and `tests/shell` dumps; GPL test data, read at test time only, never copied
into this repository) against the `rules` crate:

* **py** — single-rule tests (`py/<dir>/*.t`). Each `RULE;ok[;OUTPUT]` line is added to every table and
  chain in scope (one execution per family/chain) and listed with nft's `-s -p` flags; the text must
  equal `OUTPUT` (or `RULE`), with nft-test.py's leniency for the first `{...}`. `RULE;fail` lines must
  be rejected (some are only rejected by the kernel upstream, so these are soft). `!`/`?`/`%` lines
  (set, element and object declarations) are counted as `py.set`, `py.elem`, `py.obj`. Rule lines are
  counted per file, per family of the table they ran in (`py.ok.family.ip`), and per corpus directory
  (`py.ok.dir.ip`; `any/*.t` runs in every family). nft-test.py's set leniency also applies when only the
  expected output has a `{` (an implied `icmp type { echo-reply, echo-request}` that no nft prints byte
  for byte; nft-test.py reports every output mismatch only as a warning).
* **dump** — `shell/testcases/*/dumps/*.nft` marked `yes` or `strip-count` in `ROUNDTRIP.tsv`: parse,
  print with default flags, byte-compare.
* **bogons** — fuzzer-found inputs: must not panic.

Run: `cargo test -p rules --test conformance -- --nocapture` (add `CONFORMANCE_FAILURES=<substring>`
to list failing cases, `CONFORMANCE_VERBOSE=1` for per-file rows, `CONFORMANCE_PRINT_RATCHET=1` to
print fresh ratchet lines). `rules/scripts/conformance-doc.sh` regenerates this file.

## Ratchet

The test fails if any count below drops. Raise them when things improve (never lower them to make a
change pass). Format: `ratchet KEY PASSING`. Only `ok` rule lines, dumps and bogons are ratcheted:
`fail` lines and set/element/object declarations are reported but can legitimately move either way
while features are added (upstream some of them fail only in the kernel).

```
HDR
echo "$OUT" | grep -E '^ratchet (py\.ok|dump|bogons)' | grep -v ' 0$'
echo '```'
echo
echo '## Current totals (pass / total)'
echo
echo '```'
echo "$OUT" | grep -E '^(py\.(ok|fail|set|elem|obj)(\.(family|dir)\.[a-z0-9]+)? |dump |dump\.|bogons)' 
echo '```'
echo
cat docs/conformance-differential.md
} > docs/CONFORMANCE.md
