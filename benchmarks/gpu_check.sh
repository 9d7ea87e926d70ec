#!/usr/bin/env bash
# The GPU check (issue #27 item 5): one script, from the checkout and the packaged weights, nothing to download.
#
#   benchmarks/gpu_check.sh            # on a CUDA machine: about 5-8 minutes on one H100
#   benchmarks/gpu_check.sh --dry      # (or GPU_CHECK_DRY=1) every step on CPU, tiny-llama, tiny limits
#
# Steps (each bounded by `timeout`; a failing step is recorded and the others still run; --dry runs them
# side by side, a GPU run one after another so that its timings are its own):
#   train    benchmarks/train_vs_peft.py --mode decoder --dtype bf16 --device cuda: prompt tuning and prefix
#            tuning, softprompt vs peft on the same batches, checkpointing off/on (samples/s, peak GPU memory)
#   serve    benchmarks/serve_generate.py --device cuda: the generation server, mixed batching vs per adapter vs base
#   roofline benchmarks/decode_roofline.py --device cuda: batched decode vs the device's matmul rate
#   fsdp     tests/interop/fsdp_worker.py: training with the frozen base sharded by accelerate's FSDP
#            (prompt tuning and prefix tuning, gradient checkpointing) under torchrun (accelerate's FSDP2) on every
#            visible GPU, compared with one plain process (loss, adapter tensors)
#   vllm     `pip install vllm` in a venv of its own (GPU_CHECK_VLLM_VENV, default /tmp/gpu_check_vllm_venv;
#            skipped when the install fails, e.g. no network) then benchmarks/vllm_check.py: the
#            prompt_embeds payload served by vLLM, greedy tokens vs softprompt's
# Results: $GPU_CHECK_OUT/gpu_*.md (+ .json), default benchmarks/results; gpu_check.md lists the steps, their
# exit codes and seconds, and names the device. Settings (environment): GPU_CHECK_OUT, GPU_CHECK_BASE
# (default smollm2-135m; qwen2.5-coder-0.5b also works), GPU_CHECK_DATA (default: shared/data or ../shared/data),
# PYTHON (default .venv/bin/python when present), GPU_CHECK_STEPS (default "train serve roofline fsdp vllm").
set -u
cd "$(dirname "$0")/.."
DRY=${GPU_CHECK_DRY:-0}
[[ "${1:-}" == "--dry" ]] && DRY=1
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
OUT=${GPU_CHECK_OUT:-benchmarks/results}
DATA=${GPU_CHECK_DATA:-}
if [[ -z "$DATA" ]]; then
  if [[ -d shared/data ]]; then DATA=shared/data; else DATA=../shared/data; fi
fi
STEPS=${GPU_CHECK_STEPS:-train serve roofline fsdp vllm}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"

if [[ "$DRY" == 1 ]]; then
  export CUDA_VISIBLE_DEVICES="" OMP_NUM_THREADS=1
  DEVICE=cpu; BASE=${GPU_CHECK_BASE:-tiny-llama}; NPROC=2
  TRAIN=(--train-limit 8 --batch-size 4 --max-length 48 --methods prefix-tuning --variants plain --timeout 120)
  SERVE=(--adapters 2 --modes mixed --streams 2 --requests 4 --new-tokens 4 --max-batch 4 --time-limit 30 --threads 1)
  ROOF=(--streams 2 --new-tokens 4 --adapters 2 --repeats 1 --threads 1)
  VLLM=(--no-server)
  FSDP=(--methods prefix-tuning --base tiny-llama)
else
  DEVICE=cuda; BASE=${GPU_CHECK_BASE:-smollm2-135m}
  NPROC=$("$PYTHON" -c "import torch; print(max(torch.cuda.device_count(), 1))")
  TRAIN=(--train-limit 512 --batch-size 16 --max-length 128 --methods prompt-tuning,prefix-tuning --timeout 240)
  SERVE=(--adapters 100 --modes mixed,per-adapter,base --streams 32 --requests 128 --new-tokens 64 --time-limit 60)
  ROOF=(--streams 32 --new-tokens 64 --adapters 100 --repeats 3)
  VLLM=()
  FSDP=(--base "$BASE")
fi
DEVICE_NAME=$("$PYTHON" -c "import torch; print(torch.cuda.get_device_name(0) if '$DEVICE' == 'cuda' else 'cpu')" 2>&1)
REPORT="$OUT/gpu_check.md"
{
  echo "# GPU check (benchmarks/gpu_check.sh$([[ $DRY == 1 ]] && echo ' --dry'))"
  echo
  echo "device: $DEVICE ($DEVICE_NAME); base $BASE; commit $(git rev-parse --short HEAD 2>/dev/null); $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "| step | exit code | seconds | results |"
  echo "|---|---:|---:|---|"
} > "$REPORT"
ROWS=$(mktemp -d)
trap 'rm -rf "$ROWS"' EXIT

step() {  # step NAME TIMEOUT_S RESULT_FILE COMMAND...
  local name=$1 limit=$2 result=$3; shift 3
  case " $STEPS " in *" $name "*) ;; *) return 0 ;; esac
  echo "== $name: $*" >&2
  local start=$SECONDS
  timeout --kill-after=10 "$limit" "$@" > "$OUT/gpu_$name.log" 2>&1
  local rc=$?
  [[ $rc == 124 || $rc == 137 ]] && rc="$rc (timed out after ${limit}s)"
  echo "| $name | $rc | $((SECONDS - start)) | $result |" > "$ROWS/$name"
  tail -3 "$OUT/gpu_$name.log" >&2
}
run() {  # dry mode: the steps side by side (each is mostly Python start-up); on a GPU one after another
  if [[ "$DRY" == 1 ]]; then step "$@" & else step "$@"; fi
}

run train 420 "gpu_train_vs_peft.md" "$PYTHON" benchmarks/train_vs_peft.py --mode decoder --dtype bf16 \
  --device "$DEVICE" --backbone "$BASE" --data-dir "$DATA" --out "$OUT/gpu_train_vs_peft" "${TRAIN[@]}"
run serve 300 "gpu_serve_generate.md" "$PYTHON" benchmarks/serve_generate.py --base "$BASE" --device "$DEVICE" \
  --out "$OUT/gpu_serve_generate" "${SERVE[@]}"
run roofline 120 "gpu_decode_roofline.md" "$PYTHON" benchmarks/decode_roofline.py --base "$BASE" --device "$DEVICE" \
  --out "$OUT/gpu_decode_roofline" "${ROOF[@]}"
run fsdp 240 "gpu_fsdp.md" "$PYTHON" benchmarks/fsdp_check.py --device "$DEVICE" --nproc "$NPROC" \
  --data-dir "$DATA" --out "$OUT/gpu_fsdp" "${FSDP[@]}"
if [[ "$DRY" == 1 ]]; then
  run vllm 120 "gpu_vllm.md" "$PYTHON" benchmarks/vllm_check.py --base "$BASE" --device cpu --out "$OUT/gpu_vllm" "${VLLM[@]}"
elif [[ " $STEPS " != *" vllm "* ]]; then
  :
elif VENV=${GPU_CHECK_VLLM_VENV:-/tmp/gpu_check_vllm_venv}; { [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"; } \
    && timeout 300 "$VENV/bin/python" -m pip install -q --retries 0 --timeout 10 vllm > "$OUT/gpu_vllm_install.log" 2>&1; then
  # vLLM pins its own torch: its server runs in a venv of its own, softprompt's side in ours
  step vllm 300 "gpu_vllm.md" "$PYTHON" benchmarks/vllm_check.py --base "$BASE" --device "$DEVICE" \
    --vllm-python "$VENV/bin/python" --out "$OUT/gpu_vllm"
else
  echo "| vllm | skipped | 0 | pip install vllm failed: $(tail -1 "$OUT/gpu_vllm_install.log" | tr '|' '/') |" > "$ROWS/vllm"
fi
wait
for name in train serve roofline fsdp vllm; do
  [[ -f "$ROWS/$name" ]] && cat "$ROWS/$name" >> "$REPORT"
done
cat "$REPORT"
! grep -q "^| [a-z]* | [1-9]" "$REPORT"  # exit 1 when any step failed
