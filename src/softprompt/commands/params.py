"""softprompt params: trainable parameters per method on a backbone (ID-SPAM paper Tables 12-13)."""

from __future__ import annotations

HELP = "print trainable parameters of every method on a backbone"


def add_arguments(parser) -> None:
    from softprompt.commands.reference import add_field_flag
    from softprompt.train.config import TrainConfig

    add_field_flag(parser, TrainConfig, "backbone", default="minilm-l6")
    parser.add_argument("--num-labels", type=int, default=2, help="classes of the classification head counted")
    parser.add_argument("--methods", default=None, help="comma-separated (default: all trainable presets)")


def run(args) -> int:
    from softprompt.backbones import load_backbone
    from softprompt.experiments.params import parameter_table
    from softprompt.methods import PRESETS

    backbone = load_backbone(args.backbone)
    methods = args.methods.split(",") if args.methods else list(PRESETS)
    rows = parameter_table(backbone, methods, args.num_labels)
    total = sum(p.numel() for p in backbone.model.parameters())
    print(f"backbone {args.backbone}: {total:,} parameters ({args.num_labels}-label head)")
    width = max([len("method"), *(len(r["method"]) for r in rows)]) + 2
    print(f"{'method':<{width}}{'trainable':>13}{'w/o head':>13}{'% backbone':>12}  site")
    for r in rows:
        print(f"{r['method']:<{width}}{r['trainable']:>13,}{r['without_head']:>13,}{r['percent_of_backbone']:>11.3f}%  {r['site']}")
    return 0
