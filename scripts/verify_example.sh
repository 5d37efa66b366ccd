#!/usr/bin/env bash
# One /verify exchange by hand, as README's "POST /verify" shows it: a question and a student's draft
# answer turned into token ids with the teacher's tokenizer, sent with curl (with the API key's header
# when the server has one), and the answer decoded: which draft tokens the teacher kept, and its
# replacement for the first one it rejected.
#
#   scripts/verify_example.sh MODEL_DIR [URL] [API_KEY]     (URL: http://127.0.0.1:8000)
set -euo pipefail
model=${1:?usage: scripts/verify_example.sh MODEL_DIR [URL] [API_KEY]}
url=${2:-http://127.0.0.1:8000}
key=${3:-}
py=${PYTHON:-.venv/bin/python}

# text -> token ids: the question through the chat template, the draft as plain tokens
context=$("$py" -c 'import json, sys; from transformers import AutoTokenizer
t = AutoTokenizer.from_pretrained(sys.argv[1])
text = t.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                             add_generation_prompt=True, tokenize=False)
print(json.dumps(t(text, add_special_tokens=False).input_ids))' "$model")
draft=$("$py" -c 'import json, sys; from transformers import AutoTokenizer
print(json.dumps(AutoTokenizer.from_pretrained(sys.argv[1])(sys.argv[2], add_special_tokens=False).input_ids))' \
  "$model" "The capital of France is Berlin.")

out=$(mktemp)
trap 'rm -f "$out"' EXIT
auth=()
if [ -n "$key" ]; then auth=(-H "Authorization: Bearer $key"); fi
curl -sS --fail-with-body "$url/verify" "${auth[@]}" -H 'content-type: application/json' -d "{
  \"items\": [{\"context_ids\": $context, \"draft_ids\": $draft}],
  \"top_k\": 25, \"temperature\": 0.2, \"top_p\": 0.5, \"num_logprobs\": 3, \"seed\": 0}" > "$out"

# the answer, decoded
"$py" - "$model" "$out" <<'PY'
import json, sys
from transformers import AutoTokenizer

tok = AutoTokenizer.from_pretrained(sys.argv[1])
answer = json.load(open(sys.argv[2]))
item = answer["items"][0]
kept = item["token_ids"][: item["num_accepted"]]
print("response:", json.dumps({k: answer[k] for k in ("model", "usage")}))
print(f"kept {item['num_accepted']} draft tokens: {tok.decode(kept)!r}")
if item["replacement_id"] is not None:
    print(f"replaced the next one with {tok.decode([item['replacement_id']])!r}")
print("teacher's top 3 at each committed position:")
for token, ids, lps in zip(item["token_ids"], item["teacher_topk_ids"], item["teacher_topk_logprobs"]):
    top = ", ".join(f"{tok.decode([i])!r} {lp:.2f}" for i, lp in zip(ids, lps))
    print(f"  {tok.decode([token])!r:>12}  <- {top}")
PY
