"""softprompt import-peft: turn a peft prompt-learning adapter (prompt tuning, p-tuning, prefix tuning, CPT, cartridge,
multitask prompt tuning) into a softprompt adapter."""

from __future__ import annotations

HELP = ("import a peft PROMPT_TUNING / P_TUNING / PREFIX_TUNING / CPT / CARTRIDGE / MULTITASK_PROMPT_TUNING adapter "
        "(safetensors) as a softprompt adapter folder")


def add_arguments(parser) -> None:
    parser.add_argument("peft_dir", metavar="DIR", help="peft adapter folder (adapter_config.json + adapter_model.safetensors)")
    parser.add_argument("out", metavar="OUT", help="softprompt adapter folder to write")
    parser.add_argument("--backbone", default=None,
                        help="base model (default: the softprompt sidecar's, else base_model_name_or_path)")
    parser.add_argument("--num-labels", type=int, default=None,
                        help="classes of a new head when the adapter carries none (default 2)")
    parser.add_argument("--label-words", default=None,
                        help="comma-separated label words: score them with the LM head (verbalizer) instead of a new head")
    parser.add_argument("--task", default=None, help="task name recorded in the adapter")
    parser.add_argument("--seed", type=int, default=0, help="seed for a newly initialised head")


def run(args) -> int:
    from softprompt.adapter import save_adapter
    from softprompt.interop.peft import import_peft

    backbone = None
    if args.backbone:
        from softprompt.backbones import load_backbone

        backbone = load_backbone(args.backbone)
    words = [w.strip() for w in args.label_words.split(",")] if args.label_words else None
    model = import_peft(args.peft_dir, backbone, num_labels=args.num_labels, label_words=words, seed=args.seed)
    meta = model.adapter_meta
    info = meta["imported_from"]
    save_adapter(model, args.out, task=args.task or meta.get("task"), label_names=meta.get("label_names"),
                 imported_from=info)
    head = {"sidecar": "head from the softprompt sidecar", "peft score": "head from the adapter's score matrix",
            "verbalizer": "verbalizer head"}.get(info["head"], f"new {model.head_kind} head (untrained: train it before use)")
    print(f"imported {info['peft_type']} ({model.producer.num_tokens} virtual tokens) as method {model.method.name!r} "
          f"on {model.backbone.name}; {head}; wrote {args.out}")
    return 0
