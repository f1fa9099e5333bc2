r"""Translation: fine-tune a seq2seq model -> BLEU/chrF -> string-to-string SavedModel.

With no data flags it trains on the bundled English-German demo set, offline:

  tflm-translate                      # or: python -m pipelines.translate
  tflm-translate --train_data=../shared/data/multi30k/train.en.gz,../shared/data/multi30k/train.de.gz \
      --eval_data=../shared/data/multi30k/val.en,../shared/data/multi30k/val.de --model_dir=runs/multi30k
  tflm-translate --train_data=tfds:wmt14_translate/de-en --source_field=en --target_field=de
"""

from pipelines import seq2seq_pipeline
from tflm.data import demo

DEFAULTS = seq2seq_pipeline.define_flags(seq2seq_pipeline.PipelineDefaults(
    name="translate", task="translation", demo_train=demo.TRANSLATION_TRAIN, demo_eval=demo.TRANSLATION_DEV,
    source_field="source", target_field="target", max_source_length=64, max_target_length=64,
    target_vocabulary="auto", best_metric="bleu", export_name="translator", learning_rate=2e-4,
    num_epochs=15,
))


def run():
    seq2seq_pipeline.run(DEFAULTS)


if __name__ == "__main__":
    run()
