#!/usr/bin/env bash
# `kiln-run chat` on a real model: a three-turn conversation whose turns
# reuse the cached prefix prints the same replies, byte for byte, as one
# that prefills the whole conversation every turn (--fresh); with the
# model's own template and with turn_counter.jinja, whose changing system
# line makes the cache be cut back to a short prefix (kiln_llm_truncate).
# Random-weight test models answer every context alike, so this needs real
# weights (SmolLM2 in CI).
#   check_chat.sh KILN_RUN ARTIFACT
set -euo pipefail
run=$1
art=$2
here=$(dirname "$0")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
turns=$'What is the capital of France?\nAnd of Italy?\nName one river there.'
for tmpl in "" "$here/templates/turn_counter.jinja"; do
  opt=()
  [ -n "$tmpl" ] && opt=(--chat-template="$tmpl")
  name=${tmpl:+turn_counter}
  name=${name:-own template}
  "$run" chat "$art" -n 24 "${opt[@]}" <<< "$turns" > "$tmp/reuse.out" 2> "$tmp/reuse.err"
  "$run" chat "$art" -n 24 --fresh "${opt[@]}" <<< "$turns" > "$tmp/fresh.out" 2> "$tmp/fresh.err"
  if ! cmp -s "$tmp/reuse.out" "$tmp/fresh.out"; then
    echo "FAIL ($name): replies differ with the cached prefix reused"
    diff "$tmp/reuse.out" "$tmp/fresh.out" || true
    exit 1
  fi
  reused=$(sed -n 's/.*turn 3: \([0-9]*\) cached tokens reused.*/\1/p' "$tmp/reuse.err")
  if [ -z "$reused" ] || [ "$reused" -eq 0 ]; then
    echo "FAIL ($name): turn 3 reused no cached tokens"; cat "$tmp/reuse.err"; exit 1
  fi
  echo "chat ($name): 3 turns identical to full prefills; turn 3 reused $reused cached tokens"
  grep "turn" "$tmp/reuse.err" | sed 's/^> *//; s/^/  /'
done
# The conversation is about what was asked.
grep -q "Paris" "$tmp/reuse.out" || { echo "FAIL: no 'Paris' in the replies"; cat "$tmp/reuse.out"; exit 1; }
head -c 600 "$tmp/reuse.out"
