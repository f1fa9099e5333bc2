"""Small data sets shipped with tflm, so every pipeline's default command runs offline.

Written for tflm from hand-written templates (no third-party text):
- sentiment: 320 train / 80 dev movie-review sentences labelled `positive` /
  `negative`; `sentence<TAB>label` with a header, like GLUE's SST-2.
- translation: 300 train / 60 dev English-German sentence pairs describing
  scenes (Multi30k style), as parallel plain-text files `.en` / `.de`.
- summarization: 240 train / 60 dev chat dialogues with one-sentence
  summaries (SAMSum style), jsonl with `dialogue` and `summary` fields.
- generation: the summarization set as prompt/completion pairs for a
  decoder-only LM (`prompt` = dialogue + "\nSummary:", `completion` = summary).
- pretraining: 1,100 train / 260 dev lines of plain text, one document per
  line: the English texts of the three sets above (dialogues on one line).
"""

import os

_HERE = os.path.dirname(os.path.abspath(__file__))
SENTIMENT_TRAIN = os.path.join(_HERE, "sentiment_train.tsv")
SENTIMENT_DEV = os.path.join(_HERE, "sentiment_dev.tsv")
TRANSLATION_TRAIN = ",".join(os.path.join(_HERE, f"translation_train.{lang}") for lang in ("en", "de"))
TRANSLATION_DEV = ",".join(os.path.join(_HERE, f"translation_dev.{lang}") for lang in ("en", "de"))
SUMMARIZATION_TRAIN = os.path.join(_HERE, "summarization_train.jsonl")
SUMMARIZATION_DEV = os.path.join(_HERE, "summarization_dev.jsonl")
PRETRAINING_TRAIN = os.path.join(_HERE, "pretraining_train.txt")
PRETRAINING_DEV = os.path.join(_HERE, "pretraining_dev.txt")
GENERATION_TRAIN = os.path.join(_HERE, "generation_train.jsonl")
GENERATION_DEV = os.path.join(_HERE, "generation_dev.jsonl")
