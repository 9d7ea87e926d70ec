"""softprompt export: write a trained adapter in another library's format (peft, vLLM prompt_embeds vectors)."""

from __future__ import annotations

HELP = ("export a trained adapter in another format (--format peft: a peft prompt/prefix-tuning adapter; "
        "vllm-embeds: a static prompt's vectors for vLLM prompt_embeds)")
FORMATS = ("peft", "vllm-embeds")


def add_arguments(parser) -> None:
    parser.add_argument("--format", choices=FORMATS, default="peft",
                        help="peft: adapter_config.json + adapter_model.safetensors (+ softprompt head sidecar); "
                             "vllm-embeds: vllm_prompt.safetensors (P, d) + vllm_prompt.json (static prompts at the embeddings)")
    parser.add_argument("run", help="run folder (with adapter/) or adapter folder")
    parser.add_argument("out", help="output folder")


def run(args) -> int:
    from softprompt.interop.peft import PEFT_CONFIG, export_layout, export_peft
    from softprompt.train.inference import load_run_adapter

    model, meta = load_run_adapter(args.run)
    if args.format == "vllm-embeds":
        from softprompt.interop.vllm import EMBEDS_README, export_vllm_embeds

        out, n = export_vllm_embeds(model, args.out)  # raises (exit 2, one line) for other methods
        print(f"wrote {n} prompt vectors for vLLM prompt_embeds to {out}; prepend them to the token embeddings "
              f"(see {out / EMBEDS_README})")
        return 0
    layout = export_layout(model)  # raises with the list of supported methods
    out = export_peft(model, args.out)
    print(f"wrote a peft {layout.peft_type} adapter ({layout.task_type}, {layout.num_virtual_tokens} virtual tokens) "
          f"to {out}; load it with PeftModel.from_pretrained(<{model.backbone.name} model>, {str(out)!r}) "
          f"(see {out / PEFT_CONFIG})")
    return 0
