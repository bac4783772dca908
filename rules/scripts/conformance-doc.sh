#!/bin/sh
# Regenerates the generated parts of docs/CONFORMANCE.md from a run of the conformance test: the
# ratchet lines (the floors, set to the counts of this run) and the current totals. Only the text
# between the marker lines
#   <!-- BEGIN GENERATED ratchet -->  …  <!-- END GENERATED ratchet -->
#   <!-- BEGIN GENERATED totals -->   …  <!-- END GENERATED totals -->
# is replaced; everything else (the hand-written sections) is kept as it is. Nothing is written when
# the test fails (a count below its floor: floors are never lowered) or a marker is missing.
set -eu
cd "$(dirname "$0")/../.." || exit 1
DOC=docs/CONFORMANCE.md
for m in ratchet totals; do
	for e in BEGIN END; do
		if [ "$(grep -c "^<!-- $e GENERATED $m -->\$" "$DOC")" != 1 ]; then
			echo "conformance-doc: $DOC needs exactly one '<!-- $e GENERATED $m -->' line" >&2
			exit 1
		fi
	done
done
if ! OUT=$(CONFORMANCE_PRINT_RATCHET=1 CONFORMANCE_VERBOSE=1 \
	cargo test -q -p rules --test conformance -- --nocapture 2>&1); then
	echo "$OUT" | tail -20 >&2
	echo "conformance-doc: the conformance test failed; $DOC left as it is" >&2
	exit 1
fi
if ! echo "$OUT" | grep -q '^ratchet '; then
	echo "$OUT" | tail -20 >&2
	echo "conformance-doc: no counts (is the corpus in ../shared/nft-conformance?); $DOC left as it is" >&2
	exit 1
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
{
	echo '```'
	echo "$OUT" | grep -E '^ratchet (py\.ok|dump|bogons)' | grep -v ' 0$'
	echo '```'
} > "$TMP/ratchet"
{
	echo '```'
	echo "$OUT" | grep -E '^(py\.(ok|fail|set|elem|obj)(\.(family|dir)\.[a-z0-9]+)? |dump |dump\.|bogons)'
	echo '```'
} > "$TMP/totals"
# copy the document, swapping what is between each pair of markers for the new text
awk -v dir="$TMP" '
	/^<!-- BEGIN GENERATED [a-z]+ -->$/ {
		print
		name = $4
		while ((getline line < (dir "/" name)) > 0) print line
		skip = 1
		next
	}
	/^<!-- END GENERATED [a-z]+ -->$/ { skip = 0 }
	!skip { print }
' "$DOC" > "$TMP/doc"
cat "$TMP/doc" > "$DOC"
echo "conformance-doc: $DOC regenerated (ratchet and totals)"
