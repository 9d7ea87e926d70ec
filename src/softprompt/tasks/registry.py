"""Task registry: what each benchmark task reads, predicts and is scored by.

Label orders follow the datasets hub (so both loading routes agree) and every sentiment task
uses 0 = negative, last = positive; the binary views (fpb-binary, tweeteval-binary) drop
neutral and share SST-2's label space exactly (0 negative, 1 positive).

Generation tasks (kind "generation") produce text: the text-to-text views "<task>-t2t" of the
binary sentiment tasks (target = the label word, parsed back to a label for scoring) and E2E
data-to-text (target = a human reference; scored by BLEU/ROUGE-L/METEOR/CIDEr).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from softprompt.errors import ConfigError

SPLITS = ("train", "validation", "test")
SPLIT_ALIASES = {"dev": "validation", "val": "validation", "valid": "validation"}
FPB_AGREEMENTS = ("50", "66", "75", "all")
KINDS = ("classification", "regression", "generation")


@dataclass(frozen=True)
class Task:
    """Declarative description of one task; loaders and metrics read it, nothing mutates it.

    input_fields: names of the source fields that become (text,) or (text, text_pair).
    label_names / verbalizer: one entry per class index (empty for regression); the
        verbalizer is a short answer word per class for prompt-style heads.
    metric: key of compute_metrics' output used as the headline "main" score.
    splits: every split the task has (some only via the datasets hub);
    offline_splits: the ones present under the local data dir;
    unlabeled_splits: splits whose gold labels are not public.
    parent / label_map: a binary view loads `parent` and maps each parent label index to a
        new one, or None to drop that row (counted in the LoadReport).
    agreement: Financial PhraseBank annotator-agreement file ("50", "66", "75", "all").
    kind: "classification", "regression" (must agree with is_regression) or "generation"
        (the model writes Example.target; a generation task with label_names is a text-to-text
        view whose answers are parsed back to labels with the verbalizer words).
    input_template: for generation, the model input as a str.format template over the
        Example fields {text} and {text_pair} (see tasks.text2text.render_input).
    question / answer_prefix: the zero-shot baseline's natural question (before the input)
        and the start of the assistant's answer, after which the label words are read; None:
        a generic instruction built from `description` and the verbalizer.
    """

    name: str
    benchmark: str
    description: str
    input_fields: tuple[str, ...]
    label_names: tuple[str, ...]
    verbalizer: tuple[str, ...]
    metric: str
    splits: tuple[str, ...] = SPLITS
    offline_splits: tuple[str, ...] = SPLITS
    unlabeled_splits: tuple[str, ...] = ()
    is_regression: bool = False
    grouped: bool = False
    parent: str | None = None
    label_map: tuple[int | None, ...] | None = None
    agreement: str | None = None
    kind: str = "classification"
    input_template: str = "{text}"
    question: str | None = None
    answer_prefix: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"task {self.name!r}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.is_regression != (self.kind == "regression"):
            raise ConfigError(f"task {self.name!r}: is_regression={self.is_regression} contradicts kind {self.kind!r}")

    @property
    def is_generation(self) -> bool:
        return self.kind == "generation"

    @property
    def is_text_to_text(self) -> bool:
        """A generation view of a classification task: targets are label words."""
        return self.is_generation and bool(self.label_names)

    @property
    def num_labels(self) -> int:
        """Number of classes; 1 for regression (a single score)."""
        return 1 if self.is_regression else len(self.label_names)

    @property
    def is_pair(self) -> bool:
        return len(self.input_fields) == 2

    def check_split(self, split: str) -> str:
        """The canonical split name ('dev'/'val' accepted for 'validation'); ConfigError if unknown."""
        canonical = SPLIT_ALIASES.get(split, split)
        if canonical not in self.splits:
            raise ConfigError(
                f"task {self.name!r} has no split {split!r}; its splits are: {', '.join(self.splits)}"
            )
        return canonical


def _glue(name, description, fields, labels, verbalizer, metric="accuracy", **kw) -> Task:
    kw.setdefault("unlabeled_splits", ("test",))
    return Task(name, "glue", description, fields, labels, verbalizer, metric, **kw)


def _superglue(name, description, fields, labels, verbalizer, metric="accuracy", **kw) -> Task:
    return Task(name, "superglue", description, fields, labels, verbalizer, metric, unlabeled_splits=("test",), **kw)


_NO_YES = ("no", "yes")
_SENTIMENT2 = ("negative", "positive")
_SENTIMENT3 = ("negative", "neutral", "positive")
# zero-shot: one natural question for every sentiment domain, the label word read after the prefix
_SENTIMENT_ANSWER = "The sentiment of this text is"
_ASK2 = {"question": "Is the sentiment of this text positive or negative?", "answer_prefix": _SENTIMENT_ANSWER}
_ASK3 = {"question": "Is the sentiment of this text positive, negative or neutral?", "answer_prefix": _SENTIMENT_ANSWER}

_ALL: tuple[Task, ...] = (
    # GLUE ("validation" = the dev set; test labels are hidden)
    _glue("sst2", "SST-2 movie-review sentence sentiment", ("sentence",), _SENTIMENT2, _SENTIMENT2, **_ASK2),
    _glue("cola", "CoLA grammatical acceptability", ("sentence",), ("unacceptable", "acceptable"), _NO_YES, "mcc"),
    # MRPC/QQP headline = (accuracy + macro-F1)/2 as the ID-SPAM paper reports; GLUE's own
    # (accuracy + positive-class F1)/2 is in the metrics too as "acc_f1".
    _glue("mrpc", "MRPC paraphrase detection", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"), _NO_YES, "acc_macro_f1"),
    _glue("rte", "RTE textual entailment (GLUE)", ("sentence1", "sentence2"), ("entailment", "not_entailment"), ("yes", "no")),
    _glue("wnli", "WNLI Winograd NLI", ("sentence1", "sentence2"), ("not_entailment", "entailment"), _NO_YES),
    _glue("stsb", "STS-B semantic similarity score 0..5", ("sentence1", "sentence2"), (), (), "pearson_spearman", is_regression=True,
          kind="regression"),
    _glue("qnli", "QNLI question/sentence entailment", ("question", "sentence"), ("entailment", "not_entailment"), ("yes", "no"),
          offline_splits=("validation", "test")),
    _glue("mnli", "MNLI multi-genre NLI (validation/test = matched)", ("premise", "hypothesis"),
          ("entailment", "neutral", "contradiction"), ("yes", "maybe", "no"),
          splits=SPLITS + ("validation_mismatched", "test_mismatched"), offline_splits=(),
          unlabeled_splits=("test", "test_mismatched")),
    _glue("qqp", "QQP duplicate question detection", ("question1", "question2"), ("not_duplicate", "duplicate"), _NO_YES,
          "acc_macro_f1", offline_splits=()),
    # SuperGLUE ("validation" = val.jsonl)
    _superglue("boolq", "BoolQ yes/no questions about a passage", ("passage", "question"), ("false", "true"), _NO_YES),
    _superglue("cb", "CommitmentBank 3-way entailment", ("premise", "hypothesis"),
               ("entailment", "contradiction", "neutral"), ("yes", "no", "maybe"), "acc_macro_f1"),
    _superglue("copa", "COPA: which choice is the cause/effect of the premise", ("premise", "choices"),
               ("choice1", "choice2"), ("first", "second")),
    _superglue("multirc", "MultiRC: is this answer to the question about the paragraph true", ("paragraph", "question_answer"),
               ("false", "true"), _NO_YES, "f1a_em", grouped=True),
    _superglue("wic", "WiC: is the target word used in the same sense in both sentences", ("sentence1", "sentence2_question"),
               ("false", "true"), _NO_YES),
    _superglue("superglue-rte", "RTE textual entailment (SuperGLUE)", ("premise", "hypothesis"),
               ("entailment", "not_entailment"), ("yes", "no")),
    _superglue("wsc", "WSC: does the pronoun refer to the candidate", ("text", "span_question"), ("false", "true"), _NO_YES),
    # Sentiment domains (cross-domain evaluation of an SST-2 prompt)
    Task("imdb", "imdb", "IMDB movie reviews (aclImdb v1)", ("text",), _SENTIMENT2, _SENTIMENT2, "accuracy",
         splits=("train", "test"), offline_splits=("train", "test"), **_ASK2),
    # FPB split "all": every row of the agreement file (cross-domain evaluation, nothing trains on FPB)
    Task("fpb", "fpb", "Financial PhraseBank sentences, seeded stratified 80/10/10 split", ("sentence",),
         _SENTIMENT3, _SENTIMENT3, "accuracy", splits=SPLITS + ("all",), offline_splits=SPLITS + ("all",), agreement="all",
         **_ASK3),
    Task("fpb-binary", "fpb", "Financial PhraseBank without neutral (SST-2 label space)", ("sentence",),
         _SENTIMENT2, _SENTIMENT2, "accuracy", splits=SPLITS + ("all",), offline_splits=SPLITS + ("all",),
         parent="fpb", label_map=(0, None, 1), agreement="all", **_ASK2),
    Task("tweeteval", "tweeteval", "TweetEval sentiment (tweets)", ("text",), _SENTIMENT3, _SENTIMENT3, "accuracy",
         offline_splits=("validation", "test"), **_ASK3),
    Task("tweeteval-binary", "tweeteval", "TweetEval sentiment without neutral (SST-2 label space)", ("text",),
         _SENTIMENT2, _SENTIMENT2, "accuracy", offline_splits=("validation", "test"),
         parent="tweeteval", label_map=(0, None, 1), **_ASK2),
)


# Text-to-text views: same rows and label words as the classification task, the label word as
# the target text. A neutral instruction so one prompt transfers across the sentiment domains.
TEXT_TO_TEXT_SUFFIX = "-t2t"
SENTIMENT_TEMPLATE = "Sentence: {text}\nSentiment:"
_TEXT_TO_TEXT_OF = ("sst2", "imdb", "fpb-binary", "tweeteval-binary")


def _text_to_text(task: Task) -> Task:
    return replace(
        task, name=task.name + TEXT_TO_TEXT_SUFFIX, description=f"{task.description}; text-to-text (target: the label word)",
        kind="generation", parent=task.parent or task.name, input_template=SENTIMENT_TEMPLATE,
    )


_BY_NAME = {task.name: task for task in _ALL}
_GENERATION: tuple[Task, ...] = (
    *(_text_to_text(_BY_NAME[name]) for name in _TEXT_TO_TEXT_OF),
    # E2E: the input is the meaning representation as written, "name[The Eagle], eatType[...]".
    Task("e2e", "e2e", "E2E NLG data-to-text (dev set split by MR, seeded 80/10/10)", ("mr",), (), (), "bleu",
         kind="generation"),
    Task("e2e-official", "e2e", "E2E NLG data-to-text, the official train/validation/test splits", ("mr",), (), (),
         "bleu", offline_splits=(), kind="generation"),
)

TASKS: dict[str, Task] = {task.name: task for task in _ALL + _GENERATION}


def normalize_agreement(value: str | int) -> str:
    """'50', 50, '50Agree', 'All', 'allagree' -> one of FPB_AGREEMENTS; ConfigError otherwise."""
    text = str(value).strip().lower().removesuffix("agree")
    if text not in FPB_AGREEMENTS:
        raise ConfigError(f"agreement must be one of {', '.join(FPB_AGREEMENTS)}, got {value!r}")
    return text


def get_task(name: str | Task, agreement: str | int | None = None) -> Task:
    """Look a task up by name (a Task passes through); `agreement` picks the FPB file."""
    task = name if isinstance(name, Task) else TASKS.get(str(name).strip().lower())
    if task is None:
        raise ConfigError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    if agreement is not None:
        if task.benchmark != "fpb":
            raise ConfigError(f"agreement applies to fpb tasks only, not {task.name!r}")
        task = replace(task, agreement=normalize_agreement(agreement))
    return task
